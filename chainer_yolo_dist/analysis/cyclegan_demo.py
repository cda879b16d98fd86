"""What ``make demo-cyclegan`` shows at its end, read from its run directories.

The demo (docs/cyclegan.md) writes ``cyclegan/`` (``train_cyclegan.py``), ``detector_a/`` and
``detector_c/`` (``train_yolo.py`` on Table 2's sets a, "real" only, and c, "real" + "CG"
translated by the trained generator) under one directory. :func:`demo_summary` gathers what
paper 002 and issue 15 ask it to show: Table 2's columns for both detectors (TP, FP, FN,
precision, recall, F1 at the stated score threshold, mAP@0.5), the Frechet distance of the
generated B to the real B against that of the untranslated A, and the cycle loss at the start
and the end. The distances come from the run's extractor (by default not Inception-v3: not
comparable with paper 002's FIDs, only with each other).
"""
import os

from chainer_yolo_dist.analysis import compare
from chainer_yolo_dist.analysis import runs as runs_lib

CYCLEGAN = 'cyclegan'
DETECTORS = ('detector_a', 'detector_c')
#: metrics.json values of the CycleGAN run carried into the summary.
CYCLEGAN_KEYS = ('fid', 'fid_baseline', 'fid_extractor', 'fid_history', 'cycle_loss_first',
                 'cycle_loss_last', 'epochs', 'iterations', 'elapsed_seconds', 'comm_size',
                 'networks_in_sync')


def _finished(path):
    run = runs_lib.load_run(path)
    if run.metrics is None:
        raise ValueError('%s: the run has not finished (no metrics.json)' % path)
    return run


def demo_summary(demo_dir, cyclegan=CYCLEGAN, detectors=DETECTORS):
    """The demo's outcome as a JSON-ready dict.

    Returns:
        dict with ``cyclegan`` (:data:`CYCLEGAN_KEYS` of its metrics.json),
        ``generated_below_untranslated`` (the generated B's distance to B is below the
        untranslated A's), ``cycle_loss_fell``, ``detectors`` (per run: Table 2's columns,
        ``map_percent`` in percent, the score and IoU thresholds, the training split and
        seconds) and ``table2`` (:func:`~chainer_yolo_dist.analysis.compare.table2_rows`: each
        detector beside paper 002's row).

    Raises:
        FileNotFoundError / ValueError: a run directory is missing, unreadable or unfinished,
            naming it.
    """
    gan = _finished(os.path.join(demo_dir, cyclegan))
    dets = [_finished(os.path.join(demo_dir, name)) for name in detectors]
    g = {k: gan.metrics.get(k) for k in CYCLEGAN_KEYS}
    out = {'demo_dir': demo_dir, 'cyclegan': g,
           'generated_below_untranslated': _less(g['fid'], g['fid_baseline']),
           'cycle_loss_fell': _less(g['cycle_loss_last'], g['cycle_loss_first']),
           'detectors': {}, 'table2': compare.table2_rows(dets)}
    for run in dets:
        counts = run.metrics.get('counts')
        if counts is None:
            raise ValueError('%s/metrics.json: no Table 2 counts ("counts"); was it trained by '
                             'train_yolo.py with an evaluation?' % run.path)
        row = {c: counts[c] for c in compare.TABLE2_COLUMNS if c in counts}
        row.update(map_percent=100.0 * float(run.metrics['map']),
                   score_thresh=counts.get('score_thresh'), iou_thresh=counts.get('iou_thresh'),
                   train_split=(run.config.get('data') or {}).get('train_split'),
                   iterations=run.metrics.get('iterations'),
                   elapsed_seconds=run.metrics.get('elapsed_seconds'))
        out['detectors'][run.name] = row
    return out


def _less(a, b):
    return None if a is None or b is None else bool(a < b)


def format_summary(summary):
    """:func:`demo_summary` as text: Table 2 (Markdown), then the Frechet distances and the
    cycle loss."""
    g = summary['cyclegan']
    lines = ['Paper 002 Table 2\'s columns, detectors evaluated on "real" only:', '',
             compare.table2_markdown(summary['table2']).rstrip('\n'), '']
    if g['fid'] is not None and g['fid_baseline'] is not None:
        lines.append('Frechet distance to real B (%s):' % g['fid_extractor'])
        lines.append('  generated B = gen_ab(A): %.4g   untranslated A: %.4g   ratio %.3f'
                     % (g['fid'], g['fid_baseline'], g['fid'] / g['fid_baseline']))
    if g['cycle_loss_first'] is not None:
        lines.append('Cycle-consistency loss (mean over ranks): %.3f at the start -> %.3f at '
                     'the end' % (g['cycle_loss_first'], g['cycle_loss_last']))
    lines.append('CycleGAN: %s iterations on %s processes, %.0f s; detectors: %s'
                 % (g['iterations'], g['comm_size'], g['elapsed_seconds'] or 0,
                    ', '.join('%s %.0f s' % (name, d['elapsed_seconds'] or 0)
                              for name, d in summary['detectors'].items())))
    return '\n'.join(lines) + '\n'
