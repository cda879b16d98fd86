"""The papers' published tables, read from ``results/published/*.csv``.

Every number there is copied from the papers (see ``results/published/README.md`` for the
table or section each one comes from); nothing measured by this project is stored there.
A cell the paper leaves empty (``-`` or no value) is an empty CSV cell and loads as ``None``.

    >>> from chainer_yolo_dist.analysis import published
    >>> published.table('p000_table3_voc_map')[0]
    {'gpus': 1, 'map_percent': 69.3}
"""
import csv
import os

#: Directory holding the CSVs (the source checkout; the package is installed editable).
PUBLISHED_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))),
                             'results', 'published')

#: Each table's columns, in file order, with the type of its cells.
SCHEMAS = {
    'p000_table3_voc_map': (('gpus', int), ('map_percent', float)),
    'p000_table4_voc_time_cost': (('gpus', int), ('time_s', float), ('cost_c', float)),
    'p000_table5_filmrole_time_cost': (('gpus', int), ('time_s', float), ('cost_c', float)),
    'p000_peak_lr': (('dataset', str), ('gpus', int), ('lr', float)),
    'p001_table2_voc_map': (('gpus', int), ('batch', int), ('map_yolov2_percent', float),
                            ('map_yolov3_percent', float)),
    'p001_imagenet_top1': (('model', str), ('gpus', int), ('top1_percent', float)),
    'p001_speedups': (('model', str), ('gpus', int), ('speedup', float)),
    'p002_table2_person_detection': (
        ('run', str), ('description', str), ('tp', int), ('fp', int), ('fn', int),
        ('precision', float), ('recall', float), ('f1', float), ('map_percent', float)),
    'p002_scaling_fid': (('gpus', int), ('time_h', float), ('speedup', float), ('fid', float)),
    'p004_table3_workers': (('workers', int), ('stall_s', float), ('ten_iterations_s', float)),
    'p004_table4_compute_comm': (('nodes', int), ('compute_percent', float),
                                 ('comm_percent', float)),
    'p004_table5_ava_map': (('nodes', int), ('map_without_repeat_sampler', float),
                            ('map_with_repeat_sampler', float)),
    'p004_five_epoch_time': (('nodes', int), ('minutes_before', float),
                             ('minutes_after', float)),
    # Headline numbers stated only in the running text (speed-ups, ratios, shares).
    'headline_numbers': (('paper', str), ('source', str), ('quantity', str), ('value', float),
                         ('unit', str)),
}


def names():
    """Names of all published tables (file names without ``.csv``), sorted."""
    return sorted(SCHEMAS)


def path(name):
    """Path of the CSV of table ``name`` (with or without the ``.csv`` suffix)."""
    return os.path.join(PUBLISHED_DIR, _check_name(name) + '.csv')


def table(name, directory=None):
    """Loads one published table.

    Args:
        name: a name from :func:`names`, with or without ``.csv``.
        directory: where the CSVs are; defaults to :data:`PUBLISHED_DIR`.

    Returns:
        list of dict, one per row in file order, keyed by the schema's columns; cells are
        ``int``, ``float`` or ``str`` as the schema says, and ``None`` where the paper has
        no value.

    Raises:
        KeyError: unknown table name.
        ValueError: the file's header differs from the schema, or a cell does not parse;
            the message names the file, line and column.
    """
    name = _check_name(name)
    filename = os.path.join(directory or PUBLISHED_DIR, name + '.csv')
    schema = SCHEMAS[name]
    with open(filename, newline='', encoding='utf-8') as f:
        reader = csv.reader(f)
        header = next(reader, None)
        expected = [column for column, _ in schema]
        if header != expected:
            raise ValueError('%s: header %r, expected %r' % (filename, header, expected))
        rows = []
        for cells in reader:
            if not cells:
                continue
            if len(cells) != len(schema):
                raise ValueError('%s, line %d: %d cells, expected %d'
                                 % (filename, reader.line_num, len(cells), len(schema)))
            row = {}
            for (column, kind), cell in zip(schema, cells):
                row[column] = _parse(cell, kind, filename, reader.line_num, column)
            rows.append(row)
    return rows


def column(name, key, **where):
    """Values of column ``key`` of table ``name`` in row order, of the rows :func:`select`
    keeps for ``where``."""
    return [row[key] for row in select(name, **where)]


def select(name, **where):
    """Rows of table ``name`` whose cells equal every keyword given (e.g. ``gpus=64``)."""
    rows = table(name)
    if rows and where:
        unknown = set(where) - set(rows[0])
        if unknown:
            raise KeyError('%s has no column(s) %s' % (name, ', '.join(sorted(unknown))))
    return [row for row in rows if all(row[k] == v for k, v in where.items())]


def _check_name(name):
    if name.endswith('.csv'):
        name = name[:-len('.csv')]
    if name not in SCHEMAS:
        raise KeyError('no published table %r; known: %s' % (name, ', '.join(names())))
    return name


def _parse(cell, kind, filename, line, column):
    cell = cell.strip()
    if cell == '':
        return None
    try:
        return kind(cell)
    except ValueError:
        raise ValueError('%s, line %d, column %r: cannot read %r as %s'
                         % (filename, line, column, cell, kind.__name__)) from None
