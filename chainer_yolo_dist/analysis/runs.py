"""Reading the run directories written by ``scripts/train_yolo.py`` / ``train_darknet.py``.

A run directory holds:

- ``config.json``: every setting used; this module relies on ``comm_size`` (MPI processes =
  GPUs) and reads ``preset``, ``model``, ``dataset``, ``batchsize``, ``global_batchsize``,
  ``peak_lr``, ``epochs``, ``iterations_per_epoch``, ``inter_size`` (nodes) when present;
- ``log``: Chainer's ``LogReport`` output, a JSON list of dicts with ``epoch``,
  ``iteration``, ``elapsed_time`` and observed values (``main/loss``, ``main/accuracy``,
  ``validation/main/accuracy``, ``lr``, ...);
- ``metrics.json`` (written at the end): ``map`` (fraction, detection) or ``top1`` /
  ``top5`` (fractions, classification), and ``epochs``, ``iterations``,
  ``elapsed_seconds``, ``images_per_second``.

``log`` and ``metrics.json`` may be missing (a run still going); functions needing them
raise an error naming the run.
"""
import dataclasses
import json
import math
import os

import numpy as np


@dataclasses.dataclass
class Run:
    """One training run read from disk.

    Attributes:
        path: the run directory.
        config: contents of ``config.json``.
        log: contents of ``log`` (list of dict), empty if there is no log yet.
        metrics: contents of ``metrics.json``, or ``None`` if absent.
    """
    path: str
    config: dict
    log: list
    metrics: dict = None

    @property
    def name(self):
        return os.path.basename(os.path.normpath(self.path))

    @property
    def recipe(self):
        """The preset as the run used it (``config.json``'s ``preset``)."""
        return self.config.get('preset') or {}

    @property
    def comm_size(self):
        """The papers' k: data-parallel workers (MPI ranks x virtual ranks)."""
        return self.config['workers']

    @property
    def nodes(self):
        """Nodes the run used (ChainerMN's ``inter_size``), else ceil(k / 4), the papers'
        ABCI layout of 4 GPUs a node."""
        if self.config.get('nodes'):
            return int(self.config['nodes'])
        return math.ceil(self.comm_size / 4)

    @property
    def preset(self):
        return self.recipe.get('name')

    @property
    def peak_lr(self):
        return self.recipe.get('peak_lr', float('nan'))

    @property
    def global_batchsize(self):
        return self.recipe.get('global_batchsize', '?')

    @property
    def dataset(self):
        return self.recipe.get('dataset')

    @property
    def group(self):
        """What runs are compared across process counts by: the preset, else model/dataset."""
        if self.preset:
            return self.preset
        return '%s_%s' % (self.recipe.get('model', 'model'), self.recipe.get('dataset', 'data'))


def load_run(path):
    """Reads the run directory ``path``; returns a :class:`Run`.

    Raises:
        FileNotFoundError: no ``config.json`` in ``path``.
        ValueError: a file is not valid JSON or has the wrong shape; the message names it.
    """
    config_path = os.path.join(path, 'config.json')
    if not os.path.isfile(config_path):
        raise FileNotFoundError('%s: not a run directory (no config.json)' % path)
    config = _read_json(config_path, dict)
    size = config.get('workers')
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError('%s: "workers" must be a positive integer, got %r'
                         % (config_path, size))
    log_path = os.path.join(path, 'log')
    log = _read_json(log_path, list) if os.path.isfile(log_path) else []
    for i, entry in enumerate(log):
        if not isinstance(entry, dict) or 'epoch' not in entry:
            raise ValueError('%s: entry %d is not a LogReport dict with "epoch"'
                             % (log_path, i))
    metrics_path = os.path.join(path, 'metrics.json')
    metrics = _read_json(metrics_path, dict) if os.path.isfile(metrics_path) else None
    return Run(path=path, config=config, log=log, metrics=metrics)


def find_runs(paths, skipped=None):
    """Runs under ``paths``, in the order given.

    Each path is either a run directory (has ``config.json``) or a directory whose immediate
    subdirectories are runs (e.g. ``results/runs``), taken in sorted order.

    Args:
        skipped (list or None): if given, what is not a readable run is left out and
            ``(path, reason)`` appended here instead of raising: a run directory that cannot
            be read (invalid JSON, wrong shape), and any other path given or entry of a
            directory of runs (a file, a folder holding only ``.lock``, a folder of figures;
            see :func:`why_not_a_run`), so that ``runs/*`` reads as ``runs/`` does.
    Raises:
        FileNotFoundError: a path does not exist; with ``skipped`` None, a path is neither a
            run nor a directory of runs; with ``skipped`` given, no path holds a run.
    """
    runs = []

    def add(path):
        try:
            runs.append(load_run(path))
        except ValueError as e:
            if skipped is None:
                raise
            skipped.append((path, str(e)))

    def not_a_run(path):
        if skipped is None:
            raise FileNotFoundError('%s: neither a run directory nor a directory of runs '
                                    '(no config.json in it or its subdirectories)' % path)
        skipped.append((path, why_not_a_run(path)))

    for path in paths:
        if not os.path.exists(path):
            raise FileNotFoundError('%s: no such directory' % path)
        if is_run(path):
            add(path)
            continue
        entries = sorted(os.path.join(path, d) for d in os.listdir(path)
                         if not d.startswith('.')) if os.path.isdir(path) else []
        found = [d for d in entries if is_run(d)]
        if not found:
            not_a_run(path)
            continue
        for d in entries:
            if d in found:
                add(d)
            elif skipped is not None:
                skipped.append((d, why_not_a_run(d)))
    if not runs and skipped:
        raise FileNotFoundError('no run among %s: %s' % (
            ', '.join(paths), '; '.join('%s: %s' % s for s in skipped[:3])
            + ('; ...' if len(skipped) > 3 else '')))
    return runs


def is_run(path):
    """Whether ``path`` is a run directory (holds ``config.json``)."""
    return os.path.isfile(os.path.join(path, 'config.json'))


def why_not_a_run(path):
    """A few words on what ``path`` (no run directory) is, for the note that skips it."""
    name = os.path.basename(os.path.normpath(path))
    if not os.path.isdir(path):
        if name.startswith('fid_extractor') and name.endswith('.npz'):
            return 'a file (the FID feature extractor\'s weights), not a run'
        return 'a file, not a run'
    entries = os.listdir(path)
    if not entries:
        return 'an empty folder (no config.json), not a run'
    if entries == ['.lock']:
        return 'holds only .lock (a start that failed, or one still starting), not a run'
    if all(e.endswith('.png') for e in entries):
        return 'a folder of figures, not a run'
    return 'no config.json in it or its subdirectories'


def log_series(run, key):
    """Values of ``key`` over training, from the entries of ``run.log`` that have it.

    Returns:
        (epochs, values): float64 arrays of shape (T,); x is the fractional epoch (see
        :func:`epoch_of`).

    Raises:
        ValueError: no log entry has ``key``, naming the run's log file.
    """
    entries = [e for e in run.log if e.get(key) is not None]
    if not entries:
        raise ValueError('%s: no log entry has %r' % (os.path.join(run.path, 'log'), key))
    x = np.array([epoch_of(run, e) for e in entries], dtype=np.float64)
    y = np.array([e[key] for e in entries], dtype=np.float64)
    return x, y


def epoch_of(run, entry):
    """Fractional epoch of a log entry: ``epoch_detail`` if logged, else ``iteration /
    iterations_per_epoch`` from config.json (the training scripts log every few iterations,
    where LogReport's ``epoch`` only counts completed epochs), else ``epoch``."""
    if 'epoch_detail' in entry:
        return float(entry['epoch_detail'])
    per_epoch = run.config.get('iterations_per_epoch')
    if per_epoch and 'iteration' in entry:
        return entry['iteration'] / float(per_epoch)
    return float(entry['epoch'])


def seconds_per_epoch(run):
    """Mean wall-clock seconds per epoch of ``run``.

    From ``metrics.json`` (``elapsed_seconds / epochs``) when present, else from the last log
    entry (``elapsed_time / epoch``).

    Raises:
        ValueError: neither source gives a time, naming the run.
    """
    m = run.metrics or {}
    if m.get('elapsed_seconds') and m.get('epochs'):
        return float(m['elapsed_seconds']) / float(m['epochs'])
    timed = [e for e in run.log if e.get('elapsed_time') and epoch_of(run, e) > 0]
    if timed:
        last = timed[-1]
        return float(last['elapsed_time']) / epoch_of(run, last)
    raise ValueError('%s: no elapsed time in metrics.json or log' % run.path)


def _read_json(path, kind):
    try:
        with open(path, encoding='utf-8') as f:
            value = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError('%s: invalid JSON (%s)' % (path, e)) from None
    if not isinstance(value, kind):
        raise ValueError('%s: expected a JSON %s, got %s'
                         % (path, 'object' if kind is dict else 'list', type(value).__name__))
    return value
