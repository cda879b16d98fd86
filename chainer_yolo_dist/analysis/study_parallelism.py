"""The data-parallelism study: the four modes (and LARS) trained side by side at several k.

Issue 14 / paper 003: paper 003 chose asynchronous data parallelism (its method unspecified;
the package reads it as parameter servers after Dean et al.'s Downpour) over synchronous SGD
"on the hypothesis that a short update cycle matters most";
this study measures, at CPU scale on the synthetic classification crops, what each mode of
``scripts/train_darknet.py --parallelism`` gives: images per second, wall time to a target
validation accuracy, the final top-1, the staleness of the applied gradients, the bytes each
worker moved and the time it waited for communication.

How k workers run (2 cores): ``sync`` (and ``sync-lars``) takes ChainerMN's virtual ranks,
``mpiexec -n R --virtual-ranks k/R`` with R the largest divisor of k not above ``max_ranks``
(the update equals that of k real ranks, ``core/updaters.py``); ``async``, ``local`` and
``stale`` do not take virtual ranks, so k workers are k real MPI ranks (plus the server rank
of ``async``), oversubscribing the cores when k exceeds them. A 1-worker run is the same
update in every mode; only ``sync`` runs at k = 1 (one process), the reference of speed-ups.

Every run gets the same preset, data, epochs and warmup (so each processes the same number of
images), and validates every epoch (the accuracy-against-time curve). A run that fails or
times out is recorded and the study goes on (the launching, timeouts and outcomes are
:mod:`chainer_yolo_dist.analysis.study`'s).

Layout of a study directory::

    parallelism.json       the plan, each run's command, exit status, wall time and outcome
    parallelism.csv/.md    the table (parallelism_report.py)
    parallelism_accuracy.png, parallelism_throughput.png, parallelism_staleness.png
    runs/NAME/             each run directory as train_darknet.py writes it
    logs/NAME.txt          each run's standard output and error
"""
import dataclasses
import os
import sys
import time

from chainer_yolo_dist.analysis import study
from chainer_yolo_dist.core import atomic

TRAIN_SCRIPT = os.path.join('scripts', 'train_darknet.py')
PRESET = 'synthetic_classification_demo'

#: Variant name -> (``--parallelism`` mode, further train_darknet.py arguments, in words).
VARIANTS = {
    'sync': ('sync', (), 'gradients averaged every step (ChainerMN)'),
    'sync-lars': ('sync', ('--lars',), 'sync with LARS (GradientLARS)'),
    'async': ('async', (), '1 parameter server, no staleness bound (Downpour)'),
    'local': ('local', (), 'weights averaged every 4 steps (Darknet)'),
    'stale': ('stale', (), 'the average applied one step late'),
}
#: Modes whose k workers may be virtual ranks of fewer processes.
VIRTUAL_MODES = ('sync',)

#: The default study (``make study-parallelism``), sized for about 8-10 minutes on 2 idle cores
#: (docs/parallelism.md says how it was estimated): the demo preset's 1,024 training images
#: for 6 epochs (the first at eta, the peak at epoch 2), 256 validation images every epoch,
#: k = 1 (sync only), 2 and 4; a run is ended after 10 minutes.
DEFAULT_WORKERS = (1, 2, 4)
DEFAULT_RANKS = 2
DEFAULT_EPOCHS = 6
DEFAULT_WARMUP_EPOCHS = 2
DEFAULT_WARMUP_HOLD_EPOCHS = 1  # the preset's (paper 001 sec. 4.1: the first epoch at eta)
DEFAULT_N_TRAIN = 1024
DEFAULT_N_TEST = 256
#: Validation top-1 the "time to target" column waits for (4 classes: chance is 0.25).
DEFAULT_TARGET = 0.8
DEFAULT_RUN_TIMEOUT = 600


@dataclasses.dataclass(frozen=True)
class PlannedRun:
    """One run: ``workers`` = k; ``processes`` MPI ranks (the server included), each of
    ``virtual_ranks`` workers."""

    name: str
    variant: str
    mode: str
    workers: int
    processes: int
    virtual_ranks: int
    servers: int
    extra_args: tuple = ()

    @property
    def how(self):
        """How the k workers run, in words."""
        if self.virtual_ranks > 1:
            return '%d ranks x %d virtual' % (self.processes, self.virtual_ranks)
        if self.servers:
            return '%d ranks (%d server + %d workers)' % (self.processes, self.servers,
                                                          self.workers)
        return '%d rank%s' % (self.processes, '' if self.processes == 1 else 's')


def plan(workers=DEFAULT_WORKERS, variants=tuple(VARIANTS), max_ranks=DEFAULT_RANKS):
    """The runs: for each variant, each k of ``workers`` (k = 1 for the ``sync`` variants
    only: one worker is the same update in every mode, and ``async`` would need a server).

    Raises:
        ValueError: no k, a k below 1 or repeated, an unknown variant, ``max_ranks`` < 1.
    """
    workers = sorted(int(k) for k in workers)
    if not workers or workers[0] < 1 or len(set(workers)) != len(workers):
        raise ValueError('--workers must be distinct positive integers, got %r' % (workers,))
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise ValueError('unknown or no variant(s) %s; known: %s'
                         % (', '.join(unknown), ', '.join(VARIANTS)))
    if max_ranks < 1:
        raise ValueError('--ranks must be >= 1, got %r' % (max_ranks,))
    width = len(str(max(workers)))
    runs = []
    for variant in variants:
        mode, args, _ = VARIANTS[variant]
        for k in workers:
            if k == 1 and mode != 'sync':
                continue
            if mode in VIRTUAL_MODES:
                ranks = study.real_ranks(k, max_ranks)
                processes, virtual, servers = ranks, k // ranks, 0
            else:
                servers = 1 if mode == 'async' else 0
                processes, virtual = k + servers, 1
            runs.append(PlannedRun('%s-k%0*d' % (variant, width, k), variant, mode, k,
                                   processes, virtual, servers, tuple(args)))
    return runs


def train_args(epochs, warmup_epochs, warmup_hold_epochs, n_train, n_test, extra=()):
    """The arguments every run shares: preset, data sizes, epochs, warmup, validation every
    epoch, loading in the training process (no loader workers competing for the cores)."""
    return (['--preset', PRESET, '--n-train-images', str(n_train), '--n-test-images',
             str(n_test), '--epochs', str(epochs), '--warmup-epochs', '%g' % warmup_epochs,
             '--warmup-hold-epochs', '%g' % warmup_hold_epochs, '--eval-interval', '1',
             '--loaderjob', '0'] + list(extra))


def command(run, shared_args, out, python=sys.executable, mpiexec=None):
    """``mpiexec -n P python train_darknet.py --parallelism MODE ...`` for ``run``; ``sync``
    runs with ``--profile`` (its AllReduce time is its communication wait)."""
    mpiexec = mpiexec or os.path.join(os.path.dirname(python), 'mpiexec')
    every = study.log_interval(PRESET, run.workers, _n_train(shared_args))
    cmd = [mpiexec, '-n', str(run.processes), python, TRAIN_SCRIPT,
           '--parallelism', run.mode, '--out', os.path.join(out, 'runs', run.name),
           '--no-progress', '--log-interval', str(every)]
    if run.mode == 'sync':
        cmd += ['--virtual-ranks', str(run.virtual_ranks), '--profile']
    return cmd + list(shared_args) + list(run.extra_args)


def _n_train(args):
    return int(args[args.index('--n-train-images') + 1])


def run_study(out, workers=DEFAULT_WORKERS, variants=tuple(VARIANTS), max_ranks=DEFAULT_RANKS,
              epochs=DEFAULT_EPOCHS, warmup_epochs=DEFAULT_WARMUP_EPOCHS,
              warmup_hold_epochs=DEFAULT_WARMUP_HOLD_EPOCHS, n_train=DEFAULT_N_TRAIN,
              n_test=DEFAULT_N_TEST, target=DEFAULT_TARGET,
              extra=(), run_timeout=DEFAULT_RUN_TIMEOUT, overwrite=False, log=print):
    """Runs the plan, then writes the table and figures
    (:func:`chainer_yolo_dist.analysis.parallelism_report.write_report`).

    Args:
        out: the study directory (new or empty; ``overwrite`` clears it).
        target: the validation top-1 of the "time to target" column.
        extra: further train_darknet.py arguments, the same for every run.
        run_timeout: seconds a run may take before it is ended and recorded as 'timeout'.
    Returns:
        the record (also ``out/parallelism.json``).
    """
    from chainer_yolo_dist.analysis import parallelism_report
    runs = plan(workers, variants, max_ranks)
    if not 0 < target <= 1:
        raise ValueError('--target must be a top-1 accuracy in (0, 1], got %r' % (target,))
    if not 0 <= warmup_hold_epochs < warmup_epochs < epochs:
        raise ValueError('the warmup must hold the first rate for fewer epochs than it takes '
                         'to reach the peak, before the last epoch: got hold %g, peak at %g, '
                         '%d epochs' % (warmup_hold_epochs, warmup_epochs, epochs))
    out = os.path.abspath(out)
    study.prepare_out(out, overwrite)
    shared = train_args(epochs, warmup_epochs, warmup_hold_epochs, n_train, n_test, extra)
    record = {'preset': PRESET, 'workers': sorted(int(k) for k in workers),
              'variants': list(variants), 'max_ranks': max_ranks, 'target_top1': target,
              'train_args': shared, 'cpu_count': os.cpu_count(), 'runs': []}
    env = study.run_env()
    start = time.time()
    for run in runs:
        cmd = command(run, shared, out)
        log_path = os.path.join(out, 'logs', run.name + '.txt')
        log('[%s] k = %d: %s' % (run.name, run.workers, run.how))
        code, seconds = study.execute(cmd, log_path, run_timeout, env)
        run_dir = os.path.join(out, 'runs', run.name)
        status, at = study.outcome(run_dir, code, log_path)
        study.drop_snapshots(run_dir, status)
        log('[%s] %s in %.0f s' % (run.name, status, seconds))
        record['runs'].append(dict(dataclasses.asdict(run), how=run.how, command=cmd,
                                   returncode=code, wall_seconds=seconds, status=status,
                                   diverged_at=at))
        atomic.write_json(os.path.join(out, 'parallelism.json'), record)
    record['wall_seconds'] = time.time() - start
    atomic.write_json(os.path.join(out, 'parallelism.json'), record)
    for path in parallelism_report.write_report(out):
        log('wrote %s' % path)
    return record
