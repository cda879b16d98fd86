"""Measured accuracy of runs beside the papers' published accuracy for the same setting.

The published value of a run is looked up by its preset and its process count
(``comm_size`` = GPUs):

============================  ============================================
preset                        published table (column)
============================  ============================================
``yolov2_voc_2018``           paper 000 Table 3 (``map_percent``)
``yolov2_voc_2019``           paper 001 Table 2 (``map_yolov2_percent``)
``yolov3_voc_2019``           paper 001 Table 2 (``map_yolov3_percent``)
``darknet53_imagenet_2019``   paper 001 top-1 (sec. 5.2.1)
``darknet19_imagenet_2019``   paper 001 top-1 (sec. 5.2.2, 64 GPUs only)
``cyclegan_synthia2bdd_2019`` paper 002 FID at 200 epochs (sec. 4.4)
``slowfast_ava_2021``         paper 004 Table 5 frame mAP (without the repeat
                              sampler; nodes = GPUs / 4)
============================  ============================================

Any other preset, or a GPU count the paper did not print, has no published value. Every
system's runs are reported: ``map`` (detection mAP, or SlowFast's frame mAP) and ``top1``
(classification) in ``metrics.json`` are fractions, shown in percent; ``fid`` (CycleGAN) is a
distance, shown as it is (lower is better). A CycleGAN run measured with the package's
default extractor instead of Inception-v3 is not comparable with a published FID.
"""
import csv
import io
import os

from chainer_yolo_dist.analysis import published

#: preset -> (table, column, row filter, metric, source as cited)
SOURCES = {
    'yolov2_voc_2018': ('p000_table3_voc_map', 'map_percent', {}, 'mAP',
                        'paper 000 Table 3'),
    'yolov2_voc_2019': ('p001_table2_voc_map', 'map_yolov2_percent', {}, 'mAP',
                        'paper 001 Table 2'),
    'yolov3_voc_2019': ('p001_table2_voc_map', 'map_yolov3_percent', {}, 'mAP',
                        'paper 001 Table 2'),
    'darknet53_imagenet_2019': ('p001_imagenet_top1', 'top1_percent', {'model': 'darknet53'},
                                'top-1', 'paper 001 sec. 5.2.1'),
    'darknet19_imagenet_2019': ('p001_imagenet_top1', 'top1_percent', {'model': 'darknet19'},
                                'top-1', 'paper 001 sec. 5.2.2'),
    'cyclegan_synthia2bdd_2019': ('p002_scaling_fid', 'fid', {}, 'FID', 'paper 002 sec. 4.4'),
    'slowfast_ava_2021': ('p004_table5_ava_map', 'map_without_repeat_sampler', {},
                          'frame mAP', 'paper 004 Table 5'),
}
#: Tables whose rows are nodes of 4 GPUs (paper 004's ABCI layout), not GPUs.
BY_NODES = ('p004_table5_ava_map',)
#: Metrics in percent (from fractions); the others (FID) are shown as they are.
PERCENT = ('mAP', 'top-1', 'frame mAP')
NO_VALUE = 'no published value'
#: A row's fields (and the CSV's columns); ``*_percent`` hold the FID itself for metric FID.
COLUMNS = ('run', 'preset', 'gpus', 'metric', 'published_percent', 'measured_percent',
           'difference', 'source', 'departures')


def published_value(preset, gpus):
    """Published accuracy for ``preset`` on ``gpus`` GPUs.

    Returns:
        (value, source): value in percent, or ``None`` where the paper prints none;
        source names the paper and table, or says there is no published value.
    """
    if preset not in SOURCES:
        return None, NO_VALUE
    name, column, where, _, source = SOURCES[preset]
    if name in BY_NODES:
        if gpus % 4:
            return None, NO_VALUE
        where = dict(where, nodes=gpus // 4)
    else:
        where = dict(where, gpus=gpus)
    values = published.column(name, column, **where)
    if not values or values[0] is None:
        return None, NO_VALUE
    return values[0], source


def measured_value(run):
    """The run's final accuracy in percent and its metric name.

    Returns:
        (value, metric): from ``metrics.json``: ``fid`` as it is (metric ``'FID'``,
        CycleGAN), else in percent ``map`` (metric ``'frame mAP'`` for a SlowFast run,
        ``'mAP'`` for a detector) or ``top1`` (metric ``'top-1'``); ``(None, metric)`` when
        the run has no metrics yet, the metric then being the one its preset is published
        with.

    Raises:
        ValueError: the value is not a fraction in [0, 1] (or a FID not a finite number
            >= 0), or no metric is present, naming the file.
    """
    metrics = run.metrics
    where = os.path.join(run.path, 'metrics.json')
    if metrics is None:
        metric = SOURCES[run.preset][3] if run.preset in SOURCES else ''
        return None, metric
    if metrics.get('fid') is not None:
        value = float(metrics['fid'])
        if not 0.0 <= value < float('inf'):
            raise ValueError('%s: "fid" = %r is not a distance >= 0' % (where, value))
        return value, 'FID'
    # SlowFast's metrics.json holds its frame count; its models are slowfast_* and slow_*.
    slowfast = 'n_test_frames' in metrics or str(run.recipe.get('model', '')).startswith(
        'slow')
    for key, metric in (('map', 'frame mAP' if slowfast else 'mAP'), ('top1', 'top-1')):
        if metrics.get(key) is not None:
            value = float(metrics[key])
            if not 0.0 <= value <= 1.0:
                raise ValueError('%s: %r = %r is not a fraction in [0, 1]'
                                 % (os.path.join(run.path, 'metrics.json'), key, value))
            return 100.0 * value, metric
    raise ValueError('%s: none of "map", "top1", "fid" present' % where)


def comparison_rows(runs):
    """One dict per run with :data:`COLUMNS`; ``difference`` = measured - published, in
    percentage points, ``None`` where either side is missing or where the run departs from
    its paper's setting (``departures``, from ``config.json``: other data, iterations,
    pretraining, k, ...), so that no such run reads as a reproduction."""
    rows = []
    for run in runs:
        measured, metric = measured_value(run)
        pub, source = published_value(run.preset, run.comm_size)
        if run.preset in SOURCES and SOURCES[run.preset][3] != metric:
            # A run measured with another metric than the paper's is not comparable.
            pub, source = None, NO_VALUE
        departures = _departures(run)
        if metric == 'FID' and 'inception' not in _extractor(run).lower():
            departures = '; '.join(filter(None, [
                departures, 'Frechet distance with the default extractor, not Inception-v3']))
        comparable = pub is not None and not departures
        diff = measured - pub if comparable and measured is not None else None
        rows.append({'run': run.name, 'preset': run.preset or '', 'gpus': run.comm_size,
                     'metric': metric, 'published_percent': pub,
                     'measured_percent': measured, 'difference': diff, 'source': source,
                     'departures': ('not comparable: ' + departures) if departures else ''})
    return rows


def _departures(run):
    """The run's departures from its paper's setting (config.json), joined by '; '."""
    departures = '; '.join(d for d in run.config.get('departures', [])
                           if not d.startswith('communicator '))
    if run.config.get('iterations'):
        departures = '; '.join(filter(None, [departures, 'stopped after %d iterations'
                                             % run.config['iterations']]))
    return departures


def _extractor(run):
    return str((run.metrics or {}).get('fid_extractor') or run.config.get('fid_extractor')
               or '')


def to_markdown(rows):
    """Rows as a Markdown table (numbers to 2 decimals, empty where missing); the metric
    cell names the unit: percent for accuracies, the FID as it is."""
    header = ('run', 'preset', 'GPUs', 'metric', 'published', 'measured',
              'difference', 'source', 'setting')
    lines = ['| ' + ' | '.join(header) + ' |', '|' + ' --- |' * len(header)]
    for row in rows:
        cells = [_cell(row[c], signed=(c == 'difference')) for c in COLUMNS]
        if row['metric'] in PERCENT:
            cells[COLUMNS.index('metric')] += ' %'
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def to_csv(rows, columns=COLUMNS):
    """Rows (dicts) as CSV text with header ``columns``; missing numbers are empty cells."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator='\n')
    writer.writerow(columns)
    for row in rows:
        writer.writerow(['' if row[c] is None else row[c] for c in columns])
    return out.getvalue()


def _cell(value, signed=False):
    if value is None:
        return ''
    if isinstance(value, float):
        return ('%+.2f' if signed else '%.2f') % value
    return str(value)


# --- paper 002 Table 2: a person detector beside the published row -----------------------------

TABLE2 = 'p002_table2_person_detection'
#: Presets whose runs are person detectors of paper 002 sec. 3.3.
PERSON_PRESETS = ('yolov3_person_bdd_2019', 'yolov3_person_demo')
TABLE2_COLUMNS = ('tp', 'fp', 'fn', 'precision', 'recall', 'f1', 'map_percent')


def table2_row_id(run, row=None):
    """Which Table 2 row (``'a'`` .. ``'g'``, ``'f_runner_up'``) ``run`` stands beside:
    ``row`` if given, else the run's training split when it is named after a row (e.g. a
    VOC-format image set ``c``), else None."""
    ids = [r['run'] for r in published.table(TABLE2)]
    if row is not None:
        if row not in ids:
            raise ValueError('paper 002 Table 2 has rows %s, not %r' % (', '.join(ids), row))
        return row
    split = (run.config.get('data') or {}).get('train_split')
    return split if split in ids else None


def table2_rows(runs, row=None):
    """For each person-detector run (preset in :data:`PERSON_PRESETS`, or any run with
    Table 2's counts when ``row`` is given): the published row and the measured one.

    Returns a list of dicts with ``source``, ``description`` and :data:`TABLE2_COLUMNS`
    (``map_percent`` in percent; measured counts from ``metrics.json``'s ``counts`` at its
    ``score_thresh``), and ``setting`` (the run's departures, as :func:`comparison_rows`)."""
    out = []
    for run in runs:
        counts = (run.metrics or {}).get('counts')
        if counts is None or (run.preset not in PERSON_PRESETS and row is None):
            continue
        row_id = table2_row_id(run, row)
        if row_id is not None:
            pub = published.select(TABLE2, run=row_id)[0]
            out.append(dict({c: pub[c] for c in TABLE2_COLUMNS},
                            source='paper 002 Table 2 (%s)' % row_id,
                            description=pub['description'], setting=''))
        departures = _departures(run)
        measured = {c: counts[c] for c in TABLE2_COLUMNS if c in counts}
        measured['map_percent'] = 100.0 * float(run.metrics['map'])
        out.append(dict(measured, source='run %s' % run.name,
                        description='score >= %g, IoU %g' % (counts['score_thresh'],
                                                             counts['iou_thresh']),
                        setting=('not comparable: ' + departures) if departures else ''))
    return out


def table2_markdown(rows):
    """:func:`table2_rows` as a Markdown table."""
    header = ('source', 'description', 'TP', 'FP', 'FN', 'precision', 'recall', 'F1',
              'mAP@0.5 %', 'setting')
    lines = ['| ' + ' | '.join(header) + ' |', '|' + ' --- |' * len(header)]
    for r in rows:
        cells = [r['source'], r['description']] + [_cell(r[c]) for c in TABLE2_COLUMNS] + \
            [r['setting']]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'
