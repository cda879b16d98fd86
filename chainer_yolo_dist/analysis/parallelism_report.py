"""The data-parallelism study's readings, table and figures (study_parallelism.py runs it).

Readings (docs/parallelism.md):

- **images/s**: ``metrics.json``'s, examples of all workers over the training loop's time
  (rank 0's clock; in ``async`` the first worker's, the workers run the same number of steps).
- **time to target**: the trainer's elapsed time (validations included) at the first
  validation, one per epoch, whose top-1 reaches the target; empty when none does.
- **bytes per worker**: what one training rank moved, averaged over the ranks: in ``local``
  and ``stale`` the buffers it reduced (``bytes_reduced``), in ``sync`` the same, computed as
  the gradients' float32 bytes times the updates (ChainerMN's naive communicator reduces one
  such buffer a step; it records no count), in ``async`` the bytes it sent and received. An
  AllReduce moves about twice its buffer over the wire (ring), which is not counted.
- **wait per worker**: seconds a training rank was blocked on communication, mean and largest
  over the ranks: ``wait_s`` of ``local``, ``stale`` and ``async`` (every rank's, gathered in
  ``metrics.json``'s ``parallelism.per_rank``), and in ``sync`` the profile's AllReduce time
  (``profile.json``, the reduction's arithmetic included).
- **staleness**: of each applied gradient, in server versions (``async``, summed over the
  servers' ``parallelism_server*.json``), 1 for every update of ``stale``, 0 otherwise.
"""
import json
import os

from chainer_yolo_dist.analysis import compare
# The record and the per-run curves are study_data's: parallelism_figures.py reads them too,
# without importing this module (no import cycle).
from chainer_yolo_dist.analysis.study_data import accuracy_curve, read_study, staleness_histogram

COLUMNS = ('run', 'variant', 'mode', 'workers', 'processes', 'how', 'images_per_second', 'speedup',
           'time_to_target_s', 'final_top1', 'train_seconds', 'updates', 'staleness_mean',
           'staleness_max', 'bytes_per_worker', 'wait_mean_s', 'wait_max_s', 'status')
HEADERS = ('run', 'k', 'how', 'images/s', 'speed-up', 'time to target [s]', 'final top-1',
           'train [s]', 'updates', 'staleness mean / max', 'MB per worker',
           'wait per worker mean / max [s]', 'status')


def time_to_target(run, target):
    """Elapsed seconds at the first validation with top-1 >= ``target``, or None."""
    return next((t for t, a in zip(*accuracy_curve(run)) if a >= target), None)


def _parameters(run):
    """Parameters of the run's classifier: from its ``model.npz``, or, in a run directory
    committed without weights, from the network its ``config.json`` names (same count)."""
    from chainer_yolo_dist.classification.models import build_classifier
    from chainer_yolo_dist.classification.model_files import load_classifier
    path = os.path.join(run.path, 'model.npz')
    if os.path.isfile(path):
        model, _ = load_classifier(path)
    else:
        model = build_classifier(run.config['preset']['model'], len(run.config['class_names']),
                                 run.config['channels_scale'])
    return sum(p.size for p in model.params())


def communication(entry, run):
    """``(bytes per worker, wait mean, wait max)`` (see the module docstring); Nones where
    the run did not record them."""
    metrics = run.metrics or {}
    if entry['mode'] == 'sync':
        profile_path = os.path.join(run.path, 'profile.json')
        waits = None
        if os.path.isfile(profile_path):
            with open(profile_path, encoding='utf-8') as f:
                ranks = json.load(f)['ranks']
            waits = [sum(row['allreduce'] for row in rows) for rows in ranks]
        nbytes = None
        if metrics.get('iterations') is not None and entry['workers'] > 1:
            nbytes = 4 * _parameters(run) * metrics['iterations']
        if entry['workers'] == 1:  # one process reduces nothing
            nbytes, waits = 0, [0.0]
        return nbytes, _mean(waits), _max(waits)
    stats = metrics.get('parallelism') or {}
    per_rank = stats.get('per_rank') or ([stats] if stats else [])
    if not per_rank:
        return None, None, None
    if entry['mode'] == 'async':
        moved = [r.get('bytes_sent', 0) + r.get('bytes_received', 0) for r in per_rank]
    else:
        moved = [r.get('bytes_reduced', 0) for r in per_rank]
    waits = [r['wait_s'] for r in per_rank if 'wait_s' in r]
    return _mean(moved), _mean(waits), _max(waits)


def _mean(values):
    return None if not values else sum(values) / len(values)


def _max(values):
    return None if not values else max(values)


def table_row(entry, run, target, base_ips=None):
    """One row (:data:`COLUMNS`) for a ``parallelism.json`` entry and its Run (or None)."""
    row = dict.fromkeys(COLUMNS)
    row.update(run=entry['name'], variant=entry['variant'], mode=entry['mode'],
               workers=entry['workers'], processes=entry['processes'], how=entry['how'],
               status=entry['status'])
    if run is None:
        return row
    metrics = run.metrics or {}
    ips = metrics.get('images_per_second')
    hist = staleness_histogram(entry, run)
    n = sum(hist.values())
    nbytes, wait_mean, wait_max = communication(entry, run)
    row.update(images_per_second=ips, time_to_target_s=time_to_target(run, target),
               final_top1=metrics.get('top1'), train_seconds=metrics.get('elapsed_seconds'),
               updates=n or None, bytes_per_worker=nbytes, wait_mean_s=wait_mean,
               wait_max_s=wait_max)
    if ips and base_ips:
        row['speedup'] = ips / base_ips
    if n:
        row['staleness_mean'] = sum(s * c for s, c in hist.items()) / n
        row['staleness_max'] = max(hist)
    return row


def table_rows(pairs, target):
    """Rows of every planned run; speed-ups over the 1-worker ``sync`` run when there is
    one with a throughput."""
    base = next((r for e, r in pairs if e['workers'] == 1 and r is not None and r.metrics),
                None)
    base_ips = base.metrics.get('images_per_second') if base is not None else None
    return [table_row(entry, run, target, base_ips) for entry, run in pairs]


def to_markdown(rows):
    lines = ['| ' + ' | '.join(HEADERS) + ' |', '|' + ' --- |' * len(HEADERS)]
    for r in rows:
        stale = ('' if r['staleness_mean'] is None
                 else '%.2f / %d' % (r['staleness_mean'], r['staleness_max']))
        wait = ('' if r['wait_mean_s'] is None
                else '%.3g / %.3g' % (r['wait_mean_s'], r['wait_max_s']))
        lines.append('| ' + ' | '.join([
            r['run'], str(r['workers']), r['how'], _fmt(r['images_per_second'], '%.1f'),
            _fmt(r['speedup'], '%.2fx'), _fmt(r['time_to_target_s'], '%.0f'),
            _fmt(r['final_top1'], '%.3f'), _fmt(r['train_seconds'], '%.0f'),
            _fmt(r['updates'], '%d'), stale,
            _fmt(None if r['bytes_per_worker'] is None else r['bytes_per_worker'] / 1e6,
                 '%.1f'), wait, r['status']]) + ' |')
    return '\n'.join(lines) + '\n'


def _fmt(value, fmt):
    return '' if value is None else fmt % value


def study_markdown(record, rows):
    """``parallelism.md``: what ran, the table, the readings."""
    target = record['target_top1']
    lines = ['# Data-parallelism study: %s at k = %s' % (
                 record['preset'], ', '.join(str(k) for k in record['workers'])), '',
             'Every run: `%s` (scripts/train_darknet.py). `sync` runs k workers as virtual '
             'ranks of at most %d processes; `async`, `local` and `stale` as k real ranks '
             '(`async` plus its server rank), oversubscribing the machine\'s %s cores when '
             'k is larger. Written by `scripts/study_parallelism.py`; docs/parallelism.md '
             'says what each column means.' % (' '.join(record['train_args']),
                                               record['max_ranks'], record.get('cpu_count')),
             '', 'Time to target: elapsed training time at the first epoch whose validation '
             'top-1 reaches %g. Speed-up: images/s over the 1-worker sync run.' % target,
             '', to_markdown(rows)]
    failed = [r['run'] for r in rows if r['status'] != 'finished']
    if failed:
        lines += ['Runs that did not finish (see `logs/`): %s' % ', '.join(failed), '']
    if record.get('wall_seconds') is not None:
        lines += ['The study took %.0f s.' % record['wall_seconds'], '']
    return '\n'.join(lines)


def write_report(out, dpi=100):
    """Writes ``parallelism.csv``, ``parallelism.md`` and the three figures into ``out``;
    returns the paths written."""
    from chainer_yolo_dist.analysis import parallelism_figures
    from chainer_yolo_dist.core import atomic
    record, pairs = read_study(out, 'parallelism.json')
    rows = table_rows(pairs, record['target_top1'])
    written = []
    for name, text in (('parallelism.csv', compare.to_csv(rows, COLUMNS)),
                       ('parallelism.md', study_markdown(record, rows))):
        path = os.path.join(out, name)
        atomic.write_text(path, text)
        written.append(path)
    return written + parallelism_figures.draw(out, pairs, rows, record['target_top1'],
                                              record['max_ranks'], dpi)
