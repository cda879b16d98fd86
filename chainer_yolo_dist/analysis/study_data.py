"""The two studies' records read back: shared by their runners, reports and figures.

``study.py`` / ``study_parallelism.py`` write a record (``study.json`` / ``parallelism.json``)
and one run directory per planned run; ``study_report.py`` / ``parallelism_report.py`` read
them into tables and hand the same readings to ``study_figures.py`` /
``parallelism_figures.py``. What several of those modules read lives here, so that a report
and its figures, or a runner and its report, never import each other both ways.
"""
import glob
import json
import math
import os

import numpy as np

from chainer_yolo_dist.analysis import runs as runs_lib

#: The scaling study's main series (linear scaling rule with warmup), as its ``study.json``
#: records name the variant; the ablations carry other names.
MAIN = 'linear rule, warmup'
#: The logged training loss the scaling study reads.
LOSS_KEY = 'main/loss'
#: Bins per epoch of the generalisation check's loss curves.
BINS_PER_EPOCH = 2
#: The logged validation top-1 the parallelism study reads.
ACCURACY_KEY = 'validation/main/accuracy'


def read_study(out, record_file='study.json'):
    """``(record, [(entry, Run or None)])``: ``out/record_file`` (``study.json``, or
    ``parallelism.json`` of the parallelism study) and each planned run's directory under
    ``out/runs/`` (None where the run left no ``config.json``, e.g. refused at set-up)."""
    path = os.path.join(out, record_file)
    with open(path, encoding='utf-8') as f:
        record = json.load(f)
    pairs = []
    for entry in record['runs']:
        run_dir = os.path.join(out, 'runs', entry['name'])
        run = (runs_lib.load_run(run_dir)
               if os.path.isfile(os.path.join(run_dir, 'config.json')) else None)
        pairs.append((entry, run))
    return record, pairs


def binned_loss(run, bins_per_epoch=BINS_PER_EPOCH, key=LOSS_KEY):
    """The logged loss averaged over bins of ``1 / bins_per_epoch`` epochs.

    Returns:
        ``{bin index: mean}``; bin ``b`` holds the entries at fractional epochs in
        ``(b / bins_per_epoch, (b + 1) / bins_per_epoch]`` (an entry is logged at the end of
        its iterations). Non-finite values are left out.
    """
    epochs, values = runs_lib.log_series(run, key)
    bins = {}
    for t, v in zip(epochs, values):
        if math.isfinite(v):
            b = max(0, math.ceil(t * bins_per_epoch - 1e-9) - 1)
            bins.setdefault(b, []).append(v)
    return {b: float(np.mean(v)) for b, v in sorted(bins.items())}


def accuracy_curve(run):
    """``(seconds, top-1)`` of every logged validation, in order: two lists of equal length."""
    points = [(float(e['elapsed_time']), float(e[ACCURACY_KEY])) for e in run.log
              if e.get(ACCURACY_KEY) is not None and e.get('elapsed_time') is not None]
    return [p[0] for p in points], [p[1] for p in points]


def staleness_histogram(entry, run):
    """``{staleness: applied gradients}`` of a parallelism-study run: in ``async`` summed over
    the servers' ``parallelism_server*.json``, 1 for every update of ``stale``, 0 otherwise
    (``{}`` where the run recorded no updates)."""
    if entry['mode'] == 'async':
        total = {}
        for path in sorted(glob.glob(os.path.join(run.path, 'parallelism_server*.json'))):
            with open(path, encoding='utf-8') as f:
                for s, n in json.load(f).get('staleness', {}).items():
                    total[int(s)] = total.get(int(s), 0) + int(n)
        return dict(sorted(total.items()))
    updates = (run.metrics or {}).get('iterations')
    if updates is None:
        return {}
    return {1 if entry['mode'] == 'stale' else 0: int(updates)}
