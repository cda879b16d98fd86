"""The papers' scaling experiment, run end to end: one preset trained at a list of k workers.

Papers 000 (sec. 5.2) and 001 (sec. 5.2) keep the per-GPU batch n, the epochs, the base rate
eta, the warmup and the decay steps fixed, grow the number of GPUs k, apply the linear
scaling rule, and measure accuracy and time. :func:`run_study` does the same with
``scripts/train_yolo.py``: worker count k runs as ``mpiexec -n R train_yolo.py
--virtual-ranks k/R`` (R real MPI ranks, each acting as k/R data-parallel workers; the update
equals that of k real ranks, ``core/updaters.py``), with R the largest divisor of k not above
``ranks`` (2 on this project's 2-core machine). Every run gets the same training arguments,
so each processes the same number of images (the same epochs).

Two ablations the papers did not run, at the largest k: without warmup
(``--warmup-epochs 0 --warmup-hold-epochs 0``: the peak rate from the first update) and with
the square-root scaling rule (``--lr-rule sqrt_k_eta``: peak sqrt(k) * eta).

A run that diverges (the non-finite-loss guard stops it: exit status non-zero,
``NonFiniteLossError ... at iteration N`` in ``error.txt.rank*``) is a result, recorded with
its iteration, and the study goes on; a run that fails otherwise (or times out) is recorded
as failed, the study goes on, and :func:`run_study` reports it.

Layout of a study directory::

    study.json            the plan, each run's command, exit status, wall time and outcome
    study.csv, study.md   the table (study_report.py), the generalisation check, speed-ups
    study_loss.png        paper 000 Figs. 2/3: loss against epoch, 1 worker beside k workers
    study_map.png         mAP against k and against the batch share, with the papers' points
    study_speedup.png     speed-up and efficiency against real ranks, with the model's
    runs/NAME/            each run directory, as train_yolo.py writes it (compare_map.py and
                          reproduce_figures.py read them unchanged)
    logs/NAME.txt         each run's standard output and error
"""
import dataclasses
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import time

# The main series' name (the default variant below) is also read by study_report.py.
from chainer_yolo_dist.analysis.study_data import MAIN
from chainer_yolo_dist.core import atomic, presets

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN_SCRIPT = os.path.join('scripts', 'train_yolo.py')

#: The default study (``make study``), on the embedded synthetic data (docs/study.md says
#: how it was sized): the demo's 1,000 training images and n = 8, k = 1 ... 32, i.e. global
#: batches of 0.8% to 25.6% of the training set, around the papers' 7% (000) and 9% (001).
#: 20 epochs with the x0.1 steps at 14 and 18 (70% and 90%, as the demo preset's 19 and 24
#: of 27 and the papers' 60 and 90 of 100); the warmup is the preset's (eta for 1 epoch,
#: then linear to the peak at epoch 2).
DEFAULT_PRESET = 'synthetic_demo'
DEFAULT_WORKERS = (1, 2, 4, 8, 16, 32)
DEFAULT_RANKS = 2
DEFAULT_EPOCHS = 20
DEFAULT_STEPS = (14.0, 18.0)
#: Where the steps fall by default for other epochs: 70% and 90% of them.
STEP_FRACTIONS = (0.7, 0.9)
DEFAULT_N_TRAIN = 1000

#: Ablation name -> (what it changes, in words; train_yolo.py arguments).
ABLATIONS = {
    'no-warmup': ('without warmup', ('--warmup-epochs', '0', '--warmup-hold-epochs', '0')),
    'sqrt': ('square-root rule', ('--lr-rule', 'sqrt_k_eta')),
}

#: LogReport entries per epoch the study asks for (each the mean loss of its iterations):
#: enough for the loss curves and the last epoch's mean, without logging every iteration at
#: small k (LogReport rewrites its whole file at every entry).
LOG_ENTRIES_PER_EPOCH = 10

_DIVERGED = re.compile(r'NonFiniteLossError: non-finite loss .* at iteration (\d+)')


@dataclasses.dataclass(frozen=True)
class PlannedRun:
    """One training run of a study: ``workers`` = k = ``ranks`` x ``virtual_ranks``."""

    name: str
    workers: int
    ranks: int
    variant: str = MAIN
    extra_args: tuple = ()

    @property
    def virtual_ranks(self):
        return self.workers // self.ranks


def real_ranks(k, max_ranks):
    """The MPI ranks that run k workers: the largest divisor of k not above ``max_ranks``."""
    return max(r for r in range(1, min(k, max_ranks) + 1) if k % r == 0)


def plan(workers, max_ranks=DEFAULT_RANKS, ablations=tuple(ABLATIONS)):
    """The runs of a study: one per k in ``workers`` (ascending, k = 1 first, since every
    comparison is against it), then each ablation at the largest k.

    Raises:
        ValueError: no k, a k below 1 or repeated, k = 1 missing, an unknown ablation.
    """
    workers = [int(k) for k in workers]
    if not workers or min(workers) < 1 or len(set(workers)) != len(workers):
        raise ValueError('--workers must be distinct positive integers, got %r' % (workers,))
    if 1 not in workers:
        raise ValueError('--workers must include 1: every comparison (loss curves, '
                         'speed-up) is against the 1-worker run')
    if max_ranks < 1:
        raise ValueError('--ranks must be >= 1, got %r' % (max_ranks,))
    unknown = [a for a in ablations if a not in ABLATIONS]
    if unknown:
        raise ValueError('unknown ablation(s) %s; known: %s' % (', '.join(unknown),
                                                                ', '.join(ABLATIONS)))
    width = len(str(max(workers)))
    runs = [PlannedRun('k%0*d' % (width, k), k, real_ranks(k, max_ranks))
            for k in sorted(workers)]
    top = max(workers)
    for ablation in ablations:
        variant, args = ABLATIONS[ablation]
        runs.append(PlannedRun('k%0*d-%s' % (width, top, ablation), top,
                               real_ranks(top, max_ranks), variant, tuple(args)))
    return runs


def default_steps(epochs):
    """The x0.1 decay epochs for ``epochs``: 70% and 90% of them, to whole epochs (14 and 18
    of 20), as the papers' 60 and 90 of 100 and the demo preset's 19 and 24 of 27."""
    return tuple(float(round(f * epochs)) for f in STEP_FRACTIONS)


def log_interval(preset_name, k, n_train, batchsize=None):
    """Iterations per LogReport entry for k workers: about :data:`LOG_ENTRIES_PER_EPOCH` a
    epoch, at least 1 (an epoch is ``ceil(n_train / k) / n`` iterations)."""
    overrides = {'batchsize_per_gpu': batchsize} if batchsize else {}
    per_epoch = presets.load(preset_name, k, n_train=n_train, **overrides).iterations_per_epoch
    return max(1, int(per_epoch // LOG_ENTRIES_PER_EPOCH))


def train_args(preset, epochs, steps, n_train, extra):
    """The arguments every run of the study shares: the preset, the epochs and the decay
    steps (fixed across k, as the papers fix them), the training-set size, and ``extra``
    (more train_yolo.py options, the same for every run)."""
    args = ['--preset', preset, '--n-train-images', str(n_train)]
    if epochs is not None:
        args += ['--epochs', str(epochs)]
    if steps is not None:
        args += ['--steps'] + ['%g' % s for s in steps]
    return args + list(extra)


def command(run, shared_args, out, log_every, python=sys.executable, mpiexec=None):
    """The command line of ``run``: ``mpiexec -n R python train_yolo.py --virtual-ranks V``
    with its run directory ``out/runs/NAME``."""
    mpiexec = mpiexec or os.path.join(os.path.dirname(python), 'mpiexec')
    return ([mpiexec, '-n', str(run.ranks), python, TRAIN_SCRIPT,
             '--virtual-ranks', str(run.virtual_ranks),
             '--out', os.path.join(out, 'runs', run.name), '--no-progress',
             '--log-interval', str(log_every)] + list(shared_args) + list(run.extra_args))


def divergence(run_dir, stderr=''):
    """The iteration at which a run diverged, from its ``error.txt.rank*`` files or its
    standard error (the non-finite-loss guard's message), or None."""
    texts = [stderr]
    for path in sorted(glob.glob(os.path.join(run_dir, 'error.txt.rank*'))):
        with open(path, encoding='utf-8', errors='replace') as f:
            texts.append(f.read())
    for text in texts:
        match = _DIVERGED.search(text or '')
        if match:
            return int(match.group(1))
    return None


def execute(cmd, log_path, timeout, env=None):
    """Runs ``cmd`` in its own process group, output to ``log_path``; on timeout the whole
    group (mpiexec and its ranks) is ended. Returns ``(returncode or None on timeout,
    seconds)``."""
    start = time.time()
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    with open(log_path, 'w') as log:
        log.write('+ %s\n' % ' '.join(cmd))
        log.flush()
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _end_group(proc)
            code = None
        except BaseException:
            # Ctrl-C reaches only this process (the run has its own session): end the run too.
            _end_group(proc)
            raise
    return code, time.time() - start


def _end_group(proc):
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def outcome(run_dir, code, log_path):
    """``(status, diverged_at)``: 'finished' (metrics.json written), 'diverged' (with the
    iteration), 'timeout' or 'failed'."""
    if code == 0 and os.path.isfile(os.path.join(run_dir, 'metrics.json')):
        return 'finished', None
    text = ''
    if os.path.isfile(log_path):
        with open(log_path, encoding='utf-8', errors='replace') as f:
            text = f.read()
    at = divergence(run_dir, text)
    if at is not None:
        return 'diverged', at
    return ('timeout' if code is None else 'failed'), None


def prepare_out(out, overwrite=False):
    """Makes ``out`` the study directory: new or empty, or cleared with ``overwrite``."""
    if os.path.isdir(out) and os.listdir(out):
        if not overwrite:
            raise ValueError('%s already holds files: give another --out, or --overwrite to '
                             'clear it' % out)
        shutil.rmtree(out)
    os.makedirs(out, exist_ok=True)


def run_study(out, preset=DEFAULT_PRESET, workers=DEFAULT_WORKERS, max_ranks=DEFAULT_RANKS,
              epochs=DEFAULT_EPOCHS, steps=DEFAULT_STEPS, n_train=DEFAULT_N_TRAIN,
              ablations=tuple(ABLATIONS), extra=(), run_timeout=3600, overwrite=False,
              log=print, report_options=None):
    """Trains ``preset`` at each k of ``workers`` (and the ablations), then writes the table
    and the figures (:func:`chainer_yolo_dist.analysis.study_report.write_report`).

    Args:
        out: the study directory (new or empty; ``overwrite`` clears it).
        epochs, steps: the same for every run (None: the preset's).
        n_train: synthetic training images (``--n-train-images``; other datasets are read
            whole).
        extra: further train_yolo.py arguments, the same for every run.
        run_timeout: seconds a run may take before it is ended and recorded as 'timeout'.
        report_options: keyword arguments of ``write_report`` (e.g. the scaling model's
            link bandwidth).
    Returns:
        the study record (also ``out/study.json``): the plan and each run's outcome.
    """
    from chainer_yolo_dist.analysis import study_report
    runs = plan(workers, max_ranks, ablations)
    # The preset, epochs and steps are checked before anything runs.
    overrides = {'epochs': epochs} if epochs is not None else {}
    if steps is not None:
        overrides['steps'] = list(steps)
    paper = presets.load(preset, 1, **overrides)
    # --n-train-images sizes the generated data only; a preset of real data knows its size.
    n_log = n_train if paper.dataset == 'synthetic' else paper.n_train
    out = os.path.abspath(out)  # the runs start in the repository, wherever this runs
    prepare_out(out, overwrite)
    shared = train_args(preset, epochs, steps, n_train, extra)
    batchsize = _option(extra, '--batchsize', int)
    env = run_env()
    record = {'preset': preset, 'workers': sorted(int(k) for k in workers),
              'max_ranks': max_ranks, 'epochs': epochs, 'steps': list(steps or ()),
              'n_train': n_train, 'train_args': shared, 'runs': []}
    study_start = time.time()
    for run in runs:
        every = log_interval(preset, run.workers, n_log, batchsize)
        cmd = command(run, shared, out, every)
        log_path = os.path.join(out, 'logs', run.name + '.txt')
        log('[%s] k = %d: %d rank%s x %d virtual, %s' % (
            run.name, run.workers, run.ranks, '' if run.ranks == 1 else 's',
            run.virtual_ranks, run.variant))
        code, seconds = execute(cmd, log_path, run_timeout, env)
        run_dir = os.path.join(out, 'runs', run.name)
        status, at = outcome(run_dir, code, log_path)
        drop_snapshots(run_dir, status)
        log('[%s] %s%s in %.0f s (log: %s)' % (run.name, status,
                                               ' at iteration %d' % at if at else '', seconds,
                                               log_path))
        record['runs'].append(dict(dataclasses.asdict(run), virtual_ranks=run.virtual_ranks,
                                   command=cmd, returncode=code, wall_seconds=seconds,
                                   status=status, diverged_at=at))
        atomic.write_json(os.path.join(out, 'study.json'), record)
    record['wall_seconds'] = time.time() - study_start
    atomic.write_json(os.path.join(out, 'study.json'), record)
    written = study_report.write_report(out, **(report_options or {}))
    for path in written:
        log('wrote %s' % path)
    return record


def run_env():
    """The environment of a study's runs: one thread per rank, no display, unbuffered output,
    a rank that raises ends the job, and this checkout first on the path."""
    return dict(os.environ, OMP_NUM_THREADS='1', MPLBACKEND='Agg', PYTHONUNBUFFERED='1',
                CHAINERMN_FORCE_ABORT_ON_EXCEPTION='1',
                PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))


def drop_snapshots(run_dir, status):
    """A finished run's trainer snapshot is removed (the study never resumes; model.npz, the
    trained network, stays): it would double the size of every run directory."""
    if status == 'finished':
        for path in glob.glob(os.path.join(run_dir, 'snapshot_iter_*')):
            os.unlink(path)


def _option(args, name, kind):
    args = list(args)
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return kind(args[i + 1])
        if arg.startswith(name + '='):
            return kind(arg.split('=', 1)[1])
    return None
