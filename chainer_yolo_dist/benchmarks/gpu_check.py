"""The GPU check: every system of the package on one GPU node, stage by stage (docs/gpu.md).

The stages are data (:data:`STAGES`): a name, a time budget, a line saying what it checks, a
command builder and a judge. ``scripts/check_gpu.py --dry-run`` prints the table, and
:func:`run_stages` runs it: each stage is its own process (a worker module of this package,
under ``mpiexec`` where it needs ranks), killed with everything it started when its budget
runs out (:mod:`.gpu_check_process`), so one hang or crash costs one stage, never the check.
Each stage ends with one line, PASS, FAIL or SKIP with the reason, and with ``--out`` the
summary ``gpu_check.json`` is rewritten (atomically) after every stage.

A worker (:mod:`.gpu_check_worker`) writes ``result.json``: named checks, facts and a summary;
:func:`judge_report` turns it, the exit status and the timeout into the verdict.
"""
import dataclasses
import datetime
import os
import platform
import shutil
import socket
import sys
import time

from chainer_yolo_dist.benchmarks import gpu_check_worker as worker_lib
from chainer_yolo_dist.benchmarks.gpu_check_process import run_with_budget

REPO = worker_lib.REPO
SUMMARY_NAME = 'gpu_check.json'
LOG_DIR_NAME = 'gpu_check_logs'
#: The lent machine's limit for one command; the one-GPU budgets must leave time to spare.
DEVICE_COMMAND_SECONDS = 600
#: Lines of each stage's own output kept in the summary and copied beside it.
LOG_TAIL_LINES = 40


@dataclasses.dataclass(frozen=True)
class Context:
    """What a stage's command builder may use: its own work directory, the GPUs of the run,
    whether this is a CPU smoke run of the check itself, and the launcher's command line
    (``--mpiexec``; None: :func:`.gpu_check_worker.mpiexec_prefix` finds one)."""

    work: str
    gpus: int
    cpu_smoke: bool = False
    python: str = sys.executable
    mpiexec: object = None


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How a stage's process ended: exit status (None if it never started), seconds, whether
    the runner killed it at its budget, its log, and the worker's ``result.json`` (or None)."""

    status: object
    seconds: float
    timed_out: bool
    log_tail: list
    result: object
    budget: float


@dataclasses.dataclass(frozen=True)
class Stage:
    """One row of the check.

    Attributes:
        name (str): the stage's name (``--only`` / ``--skip`` take it).
        budget (float): seconds; the stage's process is killed at this timeout.
        what (str): what it checks, in one line.
        command: ``Context -> argv`` (a list).
        judge: ``Outcome -> (status, summary)``, status 'PASS', 'FAIL' or 'SKIP'.
        gpus (int): GPUs it needs; with fewer it is skipped, saying so.
    """

    name: str
    budget: float
    what: str
    command: object
    judge: object = None
    gpus: int = 1

    def verdict(self, outcome):
        return (self.judge or judge_report)(outcome)


def worker(module, stage):
    """Command builder: ``python -m chainer_yolo_dist.benchmarks.MODULE STAGE --work W``."""
    def command(ctx):
        return ([ctx.python, '-m', 'chainer_yolo_dist.benchmarks.' + module, stage,
                 '--work', ctx.work] + (['--cpu-smoke'] if ctx.cpu_smoke else []))
    return command


def mpi_worker(module, stage, ranks):
    """Command builder: the same under ``mpiexec -n ranks(ctx)``."""
    def command(ctx):
        return worker_lib.mpi_command(ranks(ctx), worker(module, stage)(ctx)[1:],
                                      ctx.mpiexec)
    return command


def judge_exit(outcome):
    """PASS when the process exited 0 within its budget (for stages without a result file)."""
    if outcome.timed_out:
        return 'FAIL', 'timed out after %.0f s (its budget)' % outcome.budget
    if outcome.status != 0:
        return 'FAIL', 'exit status %s: %s' % (outcome.status, _last(outcome.log_tail))
    return 'PASS', 'exit status 0'


def judge_report(outcome):
    """The verdict from a worker's ``result.json``: SKIP with the worker's reason; FAIL on a
    timeout, a non-zero exit, a missing result or any failed check (named, with its detail);
    PASS when every check passed (at least one), with the worker's summary."""
    result = outcome.result or {}
    checks = result.get('checks') or []
    failed = ['%s: %s' % (c['name'], c['detail']) for c in checks if not c['ok']]
    if outcome.timed_out:
        done = ', '.join(c['name'] for c in checks if c['ok'])
        return 'FAIL', ('timed out after %.0f s (its budget)%s%s'
                        % (outcome.budget, '; failed: ' + '; '.join(failed) if failed else '',
                           '; passed before: ' + done if done else ''))
    if result.get('skip') and not failed:
        return 'SKIP', result['skip']
    if failed:
        return 'FAIL', '; '.join(failed)
    if outcome.status != 0:
        return 'FAIL', 'exit status %s: %s' % (outcome.status, _last(outcome.log_tail))
    if not outcome.result:
        return 'FAIL', 'the stage wrote no result.json'
    if not checks:
        return 'FAIL', 'the stage made no check'
    return 'PASS', result.get('summary') or '%d checks passed' % len(checks)


def _last(lines):
    """The last line of a stage's output, for a failure's summary."""
    return lines[-1] if lines else '(no output)'


def _multi(ctx):
    """Ranks of the multi-GPU stages: one per GPU of the run."""
    return ctx.gpus


#: The check, in the order it runs. The budgets of the one-GPU stages sum to 540 s, under the
#: lent machine's 600 s per command (docs/gpu.md); the three multi-GPU stages run with two
#: GPUs or more and skip otherwise. They are estimates, not measurements (no GPU was lent to
#: the task that wrote them): from the H100 run of docs/gpu.md (YOLOv3 at 416, batch 8:
#: 1.2 s per update without cuDNN), a few seconds per process start, and CuPy compiling its
#: kernels on a fresh machine in the first stages that need them (parity, detection). The
#: first GPU run's seconds per stage (gpu_check.json) are the numbers to set them from.
STAGES = (
    Stage('environment', 25, 'CuPy, CUDA runtime and driver, NCCL and cuDNN versions, the '
          'devices; kernels compile (NVRTC, the FP16 pack kernels), cuBLAS and the imports '
          'every stage needs', worker('gpu_check_env', 'environment')),
    Stage('parity', 75, 'the same float32 inputs on NumPy and CuPy: values and input and '
          'parameter gradients of the YOLOv2/v3 losses, CycleGAN losses and its two '
          'FunctionNodes, the classification loss, the SlowFast conv3d, RoIAlign, head and '
          'network', worker('gpu_check_parity', 'parity')),
    Stage('persistents', 30, 'mpiexec -n 2 on one GPU, naive communicator, host-buffer guard '
          'on: mean_persistents averages BatchNormalization statistics held in CuPy arrays '
          'exactly, in place', mpi_worker('gpu_check_persistents', 'persistents',
                                          lambda ctx: 2)),
    Stage('detection', 110, 'train_yolo.py, synthetic demo preset, multi-scale, evaluation '
          'at the end: finite and falling loss; resumed from the snapshot at 30 equals the '
          'uninterrupted 60; --profile phases add up to the measured update time',
          worker('gpu_check_training', 'detection')),
    Stage('classification', 80, 'train_darknet.py, synthetic demo preset, in every mode '
          '(sync, sync + LARS, local, stale; async as server + worker under mpiexec -n 2): '
          'finite losses, evaluation', worker('gpu_check_training', 'classification')),
    Stage('cyclegan', 70, 'train_cyclegan.py demo: a run with a snapshot, its resumption '
          'compared, one Frechet distance timed', worker('gpu_check_training', 'cyclegan')),
    Stage('slowfast', 90, 'train_slowfast.py demo with --profile; one paper-size forward '
          'and backward (slowfast.memory.paper_size_step): time and peak memory',
          worker('gpu_check_training', 'slowfast')),
    Stage('throughput', 60, 'images/s of YOLOv2 and YOLOv3 at 416, batch 8, after warm-up',
          worker('gpu_check_throughput', 'throughput')),
    Stage('multi_ranks', 60, 'mpiexec -n G, pure_nccl: every rank on its own GPU (distinct '
          'PCI bus ids); NCCL gradient mean and broadcast exact',
          mpi_worker('gpu_check_multi', 'ranks', _multi), gpus=2),
    Stage('multi_detection', 150, 'mpiexec -n G train_yolo.py with pure_nccl, FP32 and FP16 '
          'AllReduce: both finite, losses close', worker('gpu_check_multi', 'detection'),
          gpus=2),
    Stage('multi_async', 90, 'mpiexec -n G train_darknet.py --parallelism async: one server, '
          'G - 1 workers on their own GPUs', worker('gpu_check_multi', 'async'), gpus=2),
)


def select(stages, only=None, skip=None):
    """The stages named in ``only`` (all if empty), less those in ``skip``, in table order;
    ValueError for a name not in the table."""
    names = [s.name for s in stages]
    for name in list(only or ()) + list(skip or ()):
        if name not in names:
            raise ValueError('no stage %r: the stages are %s' % (name, ', '.join(names)))
    return [s for s in stages if (not only or s.name in only) and s.name not in (skip or ())]


def total_budget(stages, gpus):
    """Seconds the stages that run with ``gpus`` GPUs may take at most."""
    return sum(s.budget for s in stages if s.gpus <= gpus)


def describe(stages, gpus, scale=1.0):
    """The dry run's lines: each stage with its budget (or why it is skipped), then the total."""
    lines = ['%-16s %7s  %s' % ('stage', 'budget', 'what it checks')]
    for s in stages:
        budget = '%5.0f s' % (s.budget * scale) if s.gpus <= gpus else '  skip '
        why = '' if s.gpus <= gpus else ' [SKIP: needs %d GPUs, %d given]' % (s.gpus, gpus)
        lines.append('%-16s %7s  %s%s' % (s.name, budget, s.what, why))
    total = total_budget(stages, gpus) * scale
    lines.append('total budget with %d GPU%s: %.0f s (%.1f min)'
                 % (gpus, '' if gpus == 1 else 's', total, total / 60.))
    return lines


def stage_env(work, deadline, gpus=1, mpiexec=None, base=None):
    """The environment of a stage's process: the repository first on ``PYTHONPATH`` (entries
    made absolute: ranks and workers may change directory), one OpenMP thread pool of at most
    4 per process unless set, unbuffered output, the Agg plots backend, a failing rank ending
    its MPI job, the host-buffer guard on every communicator
    (``CHAINER_YOLO_DIST_CHECK_MPI_BUFFERS``), and the workers' launcher, deadline and GPU
    count (:mod:`.gpu_check_worker`)."""
    env = dict(os.environ if base is None else base)
    paths = [p for p in env.get('PYTHONPATH', '').split(os.pathsep) if p]
    env['PYTHONPATH'] = os.pathsep.join([REPO] + [os.path.abspath(p) for p in paths])
    env.setdefault('OMP_NUM_THREADS', str(max(1, min(4, os.cpu_count() or 1))))
    env['PYTHONUNBUFFERED'] = '1'
    env['MPLBACKEND'] = 'Agg'
    env['CHAINERMN_FORCE_ABORT_ON_EXCEPTION'] = '1'
    env['CHAINER_YOLO_DIST_CHECK_MPI_BUFFERS'] = '1'
    env.setdefault('CHAINER_YOLO_DIST_CACHE', os.path.join(work, 'cache'))
    env[worker_lib.ENV_DEADLINE] = '%.3f' % deadline
    env[worker_lib.ENV_GPUS] = str(gpus)
    if mpiexec:
        env[worker_lib.ENV_MPIEXEC] = mpiexec
    return env


def format_line(index, count, record):
    """A stage's one line: ``[i/n] name STATUS seconds / budget  summary``."""
    return ('[%d/%d] %-16s %-4s %6.1f s / %3.0f s  %s'
            % (index, count, record['stage'], record['status'], record['seconds'],
               record['budget_seconds'], record['summary']))


def run_stages(stages, work, gpus, out=None, cpu_smoke=False, scale=1.0, mpiexec=None,
               log=print, base_env=None):
    """Runs ``stages`` in order, one process each, and returns their records.

    Args:
        stages: :class:`Stage` rows (the check's :data:`STAGES`, or a test's).
        work (str): parent of every stage's working directory (``work/<stage>``).
        gpus (int): GPUs of this run; a stage needing more is skipped.
        out (str or None): where ``gpu_check.json`` and each stage's log tail are written
            (after every stage, atomically).
        cpu_smoke (bool): passed to the workers (``--cpu-smoke``).
        scale (float): multiplies every budget (a slow machine, a smoke run).
        mpiexec (str or None): the launcher's command line for the workers (default: theirs).
        log: prints one line per stage.
    """
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')
    records = []
    for index, stage in enumerate(stages, 1):
        budget = stage.budget * scale
        record = {'stage': stage.name, 'budget_seconds': budget, 'seconds': 0.0,
                  'what': stage.what}
        if stage.gpus > gpus:
            record.update(status='SKIP', summary='needs %d GPUs, %d available (--gpus)'
                          % (stage.gpus, gpus))
        else:
            record.update(_run_one(stage, budget, work, gpus, cpu_smoke, mpiexec, base_env))
        records.append(record)
        log(format_line(index, len(stages), record))
        if out:
            _write_out(out, records, stages, gpus, started, cpu_smoke, scale)
    return records


def _run_one(stage, budget, work, gpus, cpu_smoke, mpiexec, base_env):
    stage_work = os.path.join(os.path.abspath(work), stage.name)
    # A fresh directory: a reused --work would otherwise hold the last check's run
    # directories, which the training scripts refuse to overwrite.
    shutil.rmtree(stage_work, ignore_errors=True)
    os.makedirs(stage_work)
    ctx = Context(stage_work, gpus, cpu_smoke, mpiexec=mpiexec)
    log_path = os.path.join(stage_work, 'stage.log')
    env = stage_env(stage_work, time.time() + budget, gpus, mpiexec, base_env)
    try:
        argv = stage.command(ctx)
    except Exception as e:  # no mpiexec, for example: this stage cannot start
        return {'status': 'FAIL', 'summary': 'cannot start: %s' % e, 'command': None,
                'log_tail': [], 'details': None}
    status, seconds, timed_out = run_with_budget(argv, budget, log_path, env=env, cwd=REPO)
    tail = worker_lib.tail_lines(log_path, LOG_TAIL_LINES)
    result = worker_lib.read_result(stage_work)
    verdict, summary = stage.verdict(Outcome(status, seconds, timed_out, tail, result, budget))
    return {'status': verdict, 'summary': summary, 'seconds': round(seconds, 2),
            'exit_status': status, 'timed_out': timed_out, 'command': argv,
            'details': result, 'log_tail': tail, 'log': log_path}


def _write_out(out, records, stages, gpus, started, cpu_smoke, scale):
    """``out/gpu_check.json`` (atomically) and ``out/gpu_check_logs/<stage>.log``."""
    from chainer_yolo_dist.core.atomic import atomic_path, write_json
    counts = {s: sum(r['status'] == s for r in records) for s in ('PASS', 'FAIL', 'SKIP')}
    summary = {
        'check': 'scripts/check_gpu.py', 'started_utc': started, 'host': socket.gethostname(),
        'python': platform.python_version(), 'gpus': gpus, 'cpu_smoke': cpu_smoke,
        'budget_scale': scale, 'complete': len(records) == len(stages),
        'counts': counts, 'seconds_total': round(sum(r['seconds'] for r in records), 2),
        'budget_total': total_budget(stages, gpus) * scale,
        'stages': [{k: v for k, v in r.items() if k != 'log'} for r in records],
    }
    write_json(os.path.join(out, SUMMARY_NAME), worker_lib._finite_json(summary))
    last = records[-1]
    with atomic_path(os.path.join(out, LOG_DIR_NAME, last['stage'] + '.log')) as tmp:
        with open(tmp, 'w') as f:
            f.write('\n'.join(last.get('log_tail') or []) + '\n')


def probe_cuda():
    """``(number of GPUs, reason when 0)``, asking CuPy directly (no Chainer import)."""
    try:
        import cupy
    except Exception as e:  # not installed, or a broken CUDA installation
        return 0, 'CuPy cannot be imported (%s: %s)' % (type(e).__name__, e)
    try:
        count = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as e:  # no driver, or no device visible
        return 0, 'CuPy %s finds no CUDA device (%s: %s)' % (cupy.__version__,
                                                             type(e).__name__, e)
    return count, None if count else 'CuPy %s sees 0 CUDA devices' % cupy.__version__


def exit_status(records):
    """0 when no stage failed, 1 otherwise."""
    return 1 if any(r['status'] == 'FAIL' for r in records) else 0
