"""What every stage worker of the GPU check shares (``scripts/check_gpu.py``, docs/gpu.md).

A stage of the check runs as its own process (``python -m chainer_yolo_dist.benchmarks.
gpu_check_<part> STAGE --work DIR``), started and, past its time budget, killed by the runner
(:mod:`.gpu_check`). A worker records what it checked in a :class:`Report`, which it rewrites
to ``DIR/result.json`` after every check: when the runner has to kill a stage that hangs, what
the stage had already found is still there to report.

The runner hands every worker, through the environment:

- :data:`ENV_MPIEXEC`: the ``mpiexec`` command line prefix to use (Open MPI's needs flags as
  root, MPICH's none; :func:`mpiexec_prefix` finds one when unset);
- :data:`ENV_DEADLINE`: when the stage's budget ends (seconds since the epoch), so that a
  worker running several sub-runs gives each what is left and can name the one that did not
  finish, instead of being killed with it;
- :data:`ENV_GPUS`: the GPUs of the run (``--gpus``), the ranks of the multi-GPU stages.
"""
import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import traceback

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESULT_NAME = 'result.json'
ENV_MPIEXEC = 'CHAINER_YOLO_DIST_MPIEXEC'
ENV_DEADLINE = 'CHAINER_YOLO_DIST_STAGE_DEADLINE'
ENV_GPUS = 'CHAINER_YOLO_DIST_CHECK_GPUS'
#: Seconds a worker keeps for itself after a sub-run's timeout, to write its result before the
#: runner's own timeout kills the stage.
MARGIN_SECONDS = 3.0
#: Lines of a failed sub-run's output a worker prints (into the stage's own log).
FAILURE_LINES = 25
#: Open MPI refuses to start as root without the first flag (the lent machine runs as root),
#: and more ranks than it counts slots without the second. Its shared-memory transport copies
#: between processes with CMA (``process_vm_readv``), which containers without the ptrace
#: capability refuse ("Read -1, expected ..., errno = 1"); the third asks for plain copies.
OPEN_MPI_FLAGS = ('--allow-run-as-root', '--oversubscribe',
                  '--mca', 'btl_vader_single_copy_mechanism', 'none')


def is_open_mpi(mpiexec):
    """Whether ``mpiexec`` (a path) is Open MPI's launcher (MPICH's Hydra says 'HYDRA')."""
    try:
        out = subprocess.run([mpiexec, '--version'], capture_output=True, text=True,
                             timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    text = out.stdout + out.stderr
    return 'Open MPI' in text or 'OpenRTE' in text


def find_mpiexec():
    """The ``mpiexec`` beside this interpreter (a venv's MPICH matches its mpi4py), else the
    first on ``PATH`` (the lent machine's Open MPI), else None."""
    beside = os.path.join(os.path.dirname(sys.executable), 'mpiexec')
    if os.access(beside, os.X_OK):
        return beside
    return shutil.which('mpiexec')


def mpiexec_prefix(explicit=None):
    """The launcher's command line up to ``-n``: ``explicit`` (a path or a command line), else
    $CHAINER_YOLO_DIST_MPIEXEC, else :func:`find_mpiexec` plus :data:`OPEN_MPI_FLAGS` where it
    is Open MPI. Returns a list, empty when no launcher is found."""
    given = explicit or os.environ.get(ENV_MPIEXEC)
    if given:
        return shlex.split(given)
    path = find_mpiexec()
    if path is None:
        return []
    return [path] + (list(OPEN_MPI_FLAGS) if is_open_mpi(path) else [])


def mpi_command(n, args, mpiexec=None):
    """``mpiexec -n N python ARGS`` as a list (``args`` after the interpreter; ``mpiexec``: the
    launcher's command line, see :func:`mpiexec_prefix`)."""
    prefix = mpiexec_prefix(mpiexec)
    if not prefix:
        raise RuntimeError('no mpiexec found (beside %s or on PATH); set %s'
                           % (sys.executable, ENV_MPIEXEC))
    return prefix + ['-n', str(n), sys.executable] + list(args)


def script(name):
    """The path of ``scripts/NAME`` in this repository."""
    return os.path.join(REPO, 'scripts', name)


def seconds_left(default=600.0):
    """Seconds until this stage's deadline less :data:`MARGIN_SECONDS` (``default`` when the
    worker runs alone, without a runner)."""
    deadline = os.environ.get(ENV_DEADLINE)
    if not deadline:
        return default
    return max(1.0, float(deadline) - time.time() - MARGIN_SECONDS)


class Report(object):
    """A stage's findings: named checks (pass or fail, with a one-line detail), facts
    (measurements), a one-line summary, or a reason to skip. Every change is written to
    ``work/result.json`` at once (atomically), so a killed stage leaves what it found."""

    def __init__(self, stage, work, write=True):
        self.stage, self.work, self.enabled = stage, work, write
        self.checks, self.facts = [], {}
        self.summary = None
        self.skip = None
        self.error = None

    def check(self, name, ok, detail=''):
        """Records check ``name``; returns ``ok`` (a bool)."""
        ok = bool(ok)
        self.checks.append({'name': name, 'ok': ok, 'detail': str(detail)})
        if self.enabled:
            print('%s: %s %s' % ('ok' if ok else 'FAILED', name, detail), flush=True)
        self.write()
        return ok

    def fact(self, key, value):
        self.facts[key] = value
        self.write()
        return value

    def skipped(self, reason):
        """The whole stage does not apply here (for the reason given)."""
        self.skip = str(reason)
        self.write()

    def as_dict(self):
        return {'stage': self.stage, 'checks': self.checks, 'facts': self.facts,
                'summary': self.summary, 'skip': self.skip, 'error': self.error}

    def write(self):
        if not self.enabled:  # the MPI workers' other ranks: rank 0 writes the result
            return
        from chainer_yolo_dist.core.atomic import write_json
        write_json(os.path.join(self.work, RESULT_NAME), _finite_json(self.as_dict()))


def _finite_json(obj):
    """``obj`` with NaN and infinities as strings: strict JSON, and the value still readable."""
    if isinstance(obj, float) and (obj != obj or obj in (float('inf'), float('-inf'))):
        return repr(obj)
    if isinstance(obj, dict):
        return {str(k): _finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_json(v) for v in obj]
    if hasattr(obj, 'item') and getattr(obj, 'ndim', None) == 0:  # NumPy scalars
        return _finite_json(obj.item())
    return obj


def read_result(work):
    """The ``result.json`` a worker left in ``work``, or None."""
    try:
        with open(os.path.join(work, RESULT_NAME)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def run_logged(report, name, argv, work, env=None, timeout=None):
    """Runs ``argv`` in the repository with its output in ``work/NAME.log``.

    The timeout is what is left of the stage's budget unless given. Returns
    ``(exit status or None if it timed out, seconds, last lines of its output)``; a failure is
    also printed, so that the stage's own log shows why.
    """
    log_path = os.path.join(work, name + '.log')
    timeout = seconds_left() if timeout is None else min(timeout, seconds_left())
    print('$ ' + ' '.join(shlex.quote(a) for a in argv), flush=True)
    start = time.time()
    with open(log_path, 'w') as log:
        # In the stage's own session (no new one): the runner's clean-up at the stage's
        # budget finds the sub-run's processes there, orphaned loader workers included.
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            status = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            from chainer_yolo_dist.benchmarks.gpu_check_process import kill_session
            kill_session(proc)
            status = None
    seconds = time.time() - start
    tail = tail_lines(log_path, FAILURE_LINES)
    if status != 0:
        print('%s: %s after %.1f s; last lines:\n%s'
              % (name, 'timed out' if status is None else 'exit status %d' % status, seconds,
                 '\n'.join(tail)), flush=True)
    report.fact('%s_seconds' % name, round(seconds, 2))
    return status, seconds, tail


def run_parallel(report, runs, work, env=None):
    """Runs every ``{name: argv}`` at once (each logged to ``work/NAME.log``) and waits for
    all within what is left of the stage's budget; a run still going then is ended.

    Returns ``{name: (exit status or None, seconds, last lines)}``. Concurrent runs share the
    GPU and the cores: they start up (imports, CUDA contexts, kernel loading) in parallel.
    """
    from chainer_yolo_dist.benchmarks.gpu_check_process import kill_session
    deadline = time.time() + seconds_left()
    started = {}
    for name, argv in runs.items():
        print('$ ' + ' '.join(shlex.quote(a) for a in argv), flush=True)
        log = open(os.path.join(work, name + '.log'), 'w')
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        started[name] = (proc, log, time.time())
    out = {}
    for name, (proc, log, start) in started.items():
        try:
            status = proc.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            kill_session(proc)
            status = None
        log.close()
        seconds = time.time() - start
        tail = tail_lines(os.path.join(work, name + '.log'), FAILURE_LINES)
        if status != 0:
            print('%s: %s; last lines:\n%s' % (name, outcome(status, tail), '\n'.join(tail)),
                  flush=True)
        report.fact('%s_seconds' % name, round(seconds, 2))
        out[name] = (status, seconds, tail)
    return out


def tail_lines(path, n=8):
    """The last ``n`` non-empty lines of a text file ([] if unreadable)."""
    try:
        with open(path, errors='replace') as f:
            lines = [line.rstrip() for line in f if line.strip()]
    except OSError:
        return []
    return lines[-n:]


def outcome(status, tail):
    """A one-line reason for a sub-run's failure (``status`` None: timed out)."""
    if status is None:
        return 'did not finish within the stage budget'
    return 'exit status %d: %s' % (status, tail[-1] if tail else '(no output)')


def _launcher_size():
    """The MPI job's size as the launcher set it (1 for a process started alone)."""
    for name in ('PMI_SIZE', 'OMPI_COMM_WORLD_SIZE', 'PMIX_SIZE'):
        if os.environ.get(name, '').isdigit():
            return int(os.environ[name])
    return 1


def main(stages, argv=None, description=None):
    """A worker module's ``main``: ``STAGE --work DIR [--cpu-smoke]``.

    ``stages`` maps a stage name to ``function(report, options)``. An exception becomes a
    failed check named 'error' (with the traceback's last lines), and exit status 1. Under
    ``mpiexec`` only rank 0 writes the result (the rank as the launcher set it: MPI is not
    started here), and every rank runs the stage.
    """
    p = argparse.ArgumentParser(description=description)
    p.add_argument('stage', choices=sorted(stages))
    p.add_argument('--work', required=True, help='directory for this stage\'s files')
    p.add_argument('--cpu-smoke', action='store_true',
                   help='run on the CPU at the smallest sizes: checks the check itself on a '
                   'machine without a GPU (the verdicts say nothing of a GPU)')
    options = p.parse_args(argv)
    os.makedirs(options.work, exist_ok=True)
    from chainer_yolo_dist.core.cli import launcher_rank
    report = Report(options.stage, options.work, write=launcher_rank() == 0)
    report.write()
    try:
        stages[options.stage](report, options)
    except Exception as e:  # a worker's own failure is the stage's finding, named
        lines = traceback.format_exc().strip().splitlines()
        report.error = lines[-6:]
        report.check('error', False, '%s: %s' % (type(e).__name__, e))
        traceback.print_exc()
        if _launcher_size() > 1:  # the other ranks may wait in a collective: end the job
            from chainer_yolo_dist.core import mpi
            mpi.abort('%s: %s' % (type(e).__name__, e))
        return 1
    report.write()  # the summary, set last
    return 0
