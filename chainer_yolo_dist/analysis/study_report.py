"""The scaling study's readings: its table, the generalisation check, speed-ups (study.py runs it).

Readings chosen (docs/study.md):

- **Last epoch's loss**: the mean of the LogReport entries (each the mean loss of its
  iterations, averaged over ranks and virtual ranks) whose iteration falls in the run's last
  epoch, ``(last - iterations_per_epoch, last]``; for a diverged run, the last epoch before it
  stopped.
- **Wall time**: the training loop's time (``metrics.json``'s ``elapsed_seconds``; for a run
  that stopped early, the last log entry's ``elapsed_time``), without start-up and the final
  evaluation; ``study.json`` also records each command's whole wall time.
- **Generalisation check** (paper 000 sec. 5.2.1: on VOC the k-GPU loss curve crossed the
  1-GPU curve several times at 16 to 64 GPUs and never at 128, whose mAP fell; on Filmrole
  the curve at 32 GPUs never crossed, and its accuracy was worse): both curves are averaged
  over bins of ``1 / bins_per_epoch`` epochs; a crossing is a change of sign of (k-worker
  loss - 1-worker loss) between consecutive bins both have; it is placed where the linear
  interpolation between the bin centres is zero.
- **Speed-up** against real ranks: images per second of a run over that of the 1-worker run
  (one process), as the papers divide the one-GPU time per epoch by the k-GPU time at the same
  per-GPU batch; efficiency is the speed-up over the real ranks. The prediction is
  ``analysis/scaling.py``'s model for the same runs (see :func:`predicted_images_per_second`).
"""
import json
import math
import os

import numpy as np

from chainer_yolo_dist.analysis import compare
from chainer_yolo_dist.analysis import scaling
# The record, the main series' name and the loss curves are study_data's: study.py and
# study_figures.py read them too, without importing this module (no import cycle).
from chainer_yolo_dist.analysis.study_data import (BINS_PER_EPOCH, LOSS_KEY, MAIN,
                                                   binned_loss, read_study)

COLUMNS = ('run', 'variant', 'workers', 'ranks', 'virtual_ranks', 'global_batch',
           'batch_share_percent', 'peak_lr', 'map_percent', 'last_epoch_loss',
           'train_seconds', 'images_per_second', 'diverged_at_iteration', 'status')
HEADERS = ('run', 'variant', 'k', 'ranks x virtual', 'global batch', 'share of training set',
           'peak lr', 'mAP [%]', 'last epoch loss', 'wall time [s]', 'images/s',
           'diverged at iteration', 'status')

#: The measured benchmark that calibrates the AllReduce of the scaling model on this machine.
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH_FILE = os.path.join(REPO, 'results', 'bench', 'train_step_yolov3_small_128.json')


# ---- the table -----------------------------------------------------------------------------

def last_epoch_loss(run, key=LOSS_KEY):
    """Mean of ``key`` over the log entries of the run's last (logged) epoch, or None."""
    entries = [e for e in run.log if e.get(key) is not None and 'iteration' in e]
    per_epoch = run.config.get('iterations_per_epoch')
    if not entries or not per_epoch:
        return None
    last = max(e['iteration'] for e in entries)
    values = [float(e[key]) for e in entries if e['iteration'] > last - float(per_epoch)]
    values = [v for v in values if math.isfinite(v)]
    return float(np.mean(values)) if values else None


def train_seconds(run):
    """The training loop's seconds: metrics.json's, else the last log entry's, else None."""
    if run.metrics and run.metrics.get('elapsed_seconds') is not None:
        return float(run.metrics['elapsed_seconds'])
    timed = [e for e in run.log if e.get('elapsed_time') is not None]
    return float(timed[-1]['elapsed_time']) if timed else None


def images_per_second(run):
    """metrics.json's images per second, else logged iterations x global batch / seconds."""
    if run.metrics and run.metrics.get('images_per_second') is not None:
        return float(run.metrics['images_per_second'])
    timed = [e for e in run.log if e.get('elapsed_time') and 'iteration' in e]
    batch = run.recipe.get('global_batchsize')
    if not timed or not isinstance(batch, (int, float)):
        return None
    return timed[-1]['iteration'] * batch / float(timed[-1]['elapsed_time'])


def table_row(entry, run):
    """One row (:data:`COLUMNS`) of the study table for the planned run ``entry`` (a
    ``study.json`` run record) and its run directory ``run`` (or None)."""
    row = dict.fromkeys(COLUMNS)
    row.update(run=entry['name'], variant=entry['variant'], workers=entry['workers'],
               ranks=entry['ranks'], virtual_ranks=entry['virtual_ranks'],
               status=entry['status'], diverged_at_iteration=entry.get('diverged_at'))
    if run is None:
        return row
    recipe = run.recipe
    batch = recipe.get('global_batchsize')
    share = recipe.get('batch_fraction')
    if share is None and batch and recipe.get('n_train'):
        share = batch / recipe['n_train']
    row.update(global_batch=batch, batch_share_percent=None if share is None else 100 * share,
               peak_lr=recipe.get('peak_lr'), last_epoch_loss=last_epoch_loss(run),
               train_seconds=train_seconds(run), images_per_second=images_per_second(run))
    if run.metrics and run.metrics.get('map') is not None:
        row['map_percent'] = 100 * float(run.metrics['map'])
    return row


def table_rows(pairs):
    return [table_row(entry, run) for entry, run in pairs]


def to_csv(rows):
    """Rows as CSV text with header :data:`COLUMNS`; empty cells where there is no value."""
    return compare.to_csv(rows, COLUMNS)


def to_markdown(rows):
    """Rows as a Markdown table in the papers' form (k, batch, share, lr, mAP, time)."""
    lines = ['| ' + ' | '.join(HEADERS) + ' |', '|' + ' --- |' * len(HEADERS)]
    for row in rows:
        cells = [row['run'], row['variant'], str(row['workers']),
                 '%d x %d' % (row['ranks'], row['virtual_ranks']),
                 _fmt(row['global_batch'], '%d'), _fmt(row['batch_share_percent'], '%.1f%%'),
                 _fmt(row['peak_lr'], '%.4g'), _fmt(row['map_percent'], '%.1f'),
                 _fmt(row['last_epoch_loss'], '%.3g'), _fmt(row['train_seconds'], '%.0f'),
                 _fmt(row['images_per_second'], '%.1f'),
                 _fmt(row['diverged_at_iteration'], '%d'), row['status']]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def _fmt(value, fmt):
    return '' if value is None else fmt % value


# ---- the generalisation check --------------------------------------------------------------

def crossings(base, run, bins_per_epoch=BINS_PER_EPOCH, key=LOSS_KEY):
    """Where ``run``'s loss curve crosses ``base``'s (paper 000 sec. 5.2.1).

    Returns:
        dict: ``epochs`` (the crossings, in epochs), ``compared`` (bins both curves have),
        ``above`` (share of them where ``run``'s loss is the higher), ``from_epoch`` /
        ``to_epoch`` (the compared range: first bin's start, last bin's end).
    """
    a, b = binned_loss(base, bins_per_epoch, key), binned_loss(run, bins_per_epoch, key)
    common = sorted(set(a) & set(b))
    diff = [(i, b[i] - a[i]) for i in common]
    found = []
    previous = None
    for i, d in diff:
        if d == 0:
            continue
        if previous is not None and (previous[1] > 0) != (d > 0):
            (i0, d0), (i1, d1) = previous, (i, d)
            centre0, centre1 = (i0 + 0.5) / bins_per_epoch, (i1 + 0.5) / bins_per_epoch
            found.append(centre0 + (centre1 - centre0) * d0 / (d0 - d1))
        previous = (i, d)
    above = sum(1 for _, d in diff if d > 0) / len(diff) if diff else None
    return {'epochs': found, 'compared': len(diff), 'above': above,
            'from_epoch': common[0] / bins_per_epoch if common else None,
            'to_epoch': (common[-1] + 1) / bins_per_epoch if common else None}


def describe_crossings(result):
    """One sentence for :func:`crossings`' result."""
    if not result['compared']:
        return 'no common logged epochs to compare'
    span = 'epochs %g to %g' % (result['from_epoch'], result['to_epoch'])
    n = len(result['epochs'])
    if n == 0:
        side = 'above' if result['above'] > 0.5 else 'below'
        return 'never crosses: the k-worker loss stays %s the 1-worker loss over %s' % (side,
                                                                                        span)
    above = 'above the 1-worker loss in %.0f%% of %s' % (100 * result['above'], span)
    if n == 1:
        return 'crosses once, at epoch %.1f; %s' % (result['epochs'][0], above)
    shown = ', '.join('%.1f' % e for e in result['epochs'][:8])
    more = ', ...' if n > 8 else ''
    return ('crosses %d times, at epochs %s%s (first %.1f, last %.1f); %s'
            % (n, shown, more, result['epochs'][0], result['epochs'][-1], above))


def generalisation_rows(pairs, bins_per_epoch=BINS_PER_EPOCH):
    """Per run with k > 1: ``{'run', 'workers', 'variant', 'crossings' (dict), 'text'}``,
    against the 1-worker run; empty without a 1-worker run with a logged loss."""
    base = _base(pairs)
    if base is None:
        return []
    out = []
    for entry, run in pairs:
        if run is None or run is base or not _has_loss(run):
            continue
        result = crossings(base, run, bins_per_epoch)
        text = describe_crossings(result)
        if entry.get('diverged_at'):
            text += ' (diverged at iteration %d)' % entry['diverged_at']
        out.append({'run': entry['name'], 'workers': entry['workers'],
                    'variant': entry['variant'], 'crossings': result, 'text': text})
    return out


def _base(pairs):
    return next((run for entry, run in pairs
                 if entry['workers'] == 1 and run is not None and _has_loss(run)), None)


def _has_loss(run):
    return any(e.get(LOSS_KEY) is not None for e in run.log)


# ---- speed-up ------------------------------------------------------------------------------

def bench_link_bandwidth(path=BENCH_FILE):
    """Bytes per second of this machine's 2-process AllReduce, from the measured benchmark
    (``scripts/benchmark.py``): the parameters x 4 bytes over the AllReduce seconds of 2
    processes less those of 1 (the hook's own cost). None when the file is absent."""
    if not os.path.isfile(path):
        return None
    with open(path, encoding='utf-8') as f:
        bench = json.load(f)
    by_processes = {r['processes']: r for r in bench['runs']}
    if 1 not in by_processes or 2 not in by_processes:
        return None
    extra = (by_processes[2]['phase_seconds']['allreduce']
             - by_processes[1]['phase_seconds']['allreduce'])
    return by_processes[2]['parameters'] * 4 / extra if extra > 0 else None


def predicted_images_per_second(image_seconds, ranks, virtual_ranks, batchsize, grad_bytes,
                                link_bandwidth):
    """``analysis/scaling.py``'s model for R ranks of V virtual workers on one machine.

    An update costs each rank the compute of its ``V * n`` images, ``V * n * t_img`` (``t_img``
    measured by the 1-worker run: everything but the AllReduce), then a ring AllReduce of
    the gradients over the R ranks (:func:`scaling.ring_allreduce_seconds`, every link the
    machine's shared memory at ``link_bandwidth``, latency in it); it moves ``k * n``
    images. Assumes R idle cores: the model has no term for ranks and loader processes
    sharing cores.
    """
    topology = scaling.Topology(gpus_per_node=max(ranks, 1), nvlink_bandwidth=link_bandwidth,
                                nvlink_latency=0.0)
    compute = virtual_ranks * batchsize * image_seconds
    allreduce = scaling.ring_allreduce_seconds(grad_bytes, ranks, topology)
    return ranks * virtual_ranks * batchsize / (compute + allreduce)


def speedup_rows(pairs, link_bandwidth=None):
    """Per run of the main series with a throughput: images/s, speed-up and efficiency over
    the 1-worker run, and the model's predicted images/s and speed-up.

    Returns ``(rows, notes)``; notes state the model's inputs (or why there is none).
    """
    base_pair = next(((e, r) for e, r in pairs if e['workers'] == 1 and r is not None
                      and images_per_second(r)), None)
    if base_pair is None:
        return [], ['no speed-up: the 1-worker run has no throughput']
    base = base_pair[1]
    base_ips = images_per_second(base)
    notes = []
    bandwidth, source = link_bandwidth, 'given'
    if bandwidth is None:
        bandwidth = bench_link_bandwidth()
        source = 'from scripts/benchmark.py\'s measurement, %s' % os.path.relpath(BENCH_FILE,
                                                                                  REPO)
    recipe = base.recipe
    grad_bytes = None
    if bandwidth and recipe.get('model'):
        params = scaling.model_facts(recipe['model'], recipe['n_class'])[0]
        grad_bytes = 4 * params  # the naive communicator reduces in float32
        notes.append('model: t_img = 1 / %.2f s per image (the 1-worker run), gradients %d '
                     'parameters x 4 bytes, AllReduce link %.2g GB/s (%s)'
                     % (base_ips, params, bandwidth / 1e9, source))
    else:
        notes.append('no prediction: no AllReduce bandwidth (give --link-bandwidth)')
    rows = []
    for entry, run in pairs:
        if run is None or entry['variant'] != MAIN:
            continue
        ips = images_per_second(run)
        if ips is None:
            continue
        predicted = None
        if grad_bytes:
            predicted = predicted_images_per_second(
                1.0 / base_ips, entry['ranks'], entry['virtual_ranks'],
                run.recipe['batchsize_per_gpu'], grad_bytes, bandwidth)
        rows.append({'run': entry['name'] + (' (diverged)' if entry['status'] == 'diverged'
                                             else ''),
                     'workers': entry['workers'],
                     'ranks': entry['ranks'], 'virtual_ranks': entry['virtual_ranks'],
                     'images_per_second': ips, 'speedup': ips / base_ips,
                     'efficiency': ips / base_ips / entry['ranks'],
                     'predicted_images_per_second': predicted,
                     'predicted_speedup': None if predicted is None else predicted / base_ips})
    return rows, notes


def speedup_markdown(rows):
    header = ('run', 'k', 'real ranks', 'virtual', 'images/s', 'speed-up', 'efficiency',
              'model images/s', 'model speed-up')
    lines = ['| ' + ' | '.join(header) + ' |', '|' + ' --- |' * len(header)]
    for r in rows:
        lines.append('| ' + ' | '.join([
            r['run'], str(r['workers']), str(r['ranks']), str(r['virtual_ranks']),
            '%.1f' % r['images_per_second'], '%.2fx' % r['speedup'],
            '%.0f%%' % (100 * r['efficiency']),
            _fmt(r['predicted_images_per_second'], '%.1f'),
            _fmt(r['predicted_speedup'], '%.2fx')]) + ' |')
    return '\n'.join(lines) + '\n'


# ---- the report ----------------------------------------------------------------------------

def study_markdown(record, rows, general, speedups, notes):
    """``study.md``: the table, the generalisation check and the speed-ups."""
    lines = ['# Scaling study: %s at k = %s' % (record['preset'],
                                                ', '.join(str(k) for k in record['workers'])),
             '',
             'Same per-worker batch, epochs, base rate, warmup and decay steps for every run '
             '(`%s`); k = real ranks x virtual ranks. Written by `scripts/study.py`; '
             'docs/study.md says what each column means.' % ' '.join(record['train_args']),
             '', to_markdown(rows),
             '## Generalisation check (paper 000 sec. 5.2.1)', '',
             'Paper 000 read curves that cross the 1-GPU curve several times as generalising '
             'like one GPU, and a curve that never crosses as generalising worse. Loss '
             'averaged over %g-epoch bins.' % (1 / BINS_PER_EPOCH), '']
    lines += ['- %s (k = %d, %s): %s' % (g['run'], g['workers'], g['variant'], g['text'])
              for g in general] or ['- no 1-worker run with a logged loss: nothing to compare']
    lines += ['', '## Speed-up against real ranks', '']
    lines += [speedup_markdown(speedups) if speedups else 'no throughput measured', '']
    lines += ['- %s' % n for n in notes]
    failed = [r['run'] for r in rows if r['status'] not in ('finished', 'diverged')]
    if failed:
        lines += ['', 'Runs that neither finished nor diverged (see `logs/`): %s'
                  % ', '.join(failed)]
    return '\n'.join(lines) + '\n'


def write_report(out, link_bandwidth=None, dpi=100):
    """Writes ``study.csv``, ``study.md`` and the three figures of the study in ``out``;
    returns the paths written."""
    from chainer_yolo_dist.analysis import study_figures
    from chainer_yolo_dist.core import atomic
    record, pairs = read_study(out)
    rows = table_rows(pairs)
    general = generalisation_rows(pairs)
    speedups, notes = speedup_rows(pairs, link_bandwidth)
    written = []
    for name, text in (('study.csv', to_csv(rows)),
                       ('study.md', study_markdown(record, rows, general, speedups, notes))):
        path = os.path.join(out, name)
        atomic.write_text(path, text)
        written.append(path)
    written += study_figures.draw(out, pairs, rows, speedups, dpi)
    return written
