"""A scheduler's stop signal costs nothing, and a hung rank ends the job (core/preemption.py).

SIGTERM to every rank (what SLURM, PBS and ABCI's scheduler send at the wall-time limit):
every rank stops at the same update, rank 0 writes a snapshot, the job exits with status 75
and one line saying how to continue, and the continued run ends with the weights of a run
that was never stopped. SIGSTOP on one rank: the watchdog ends the job, naming that rank.
"""
import os
import signal

import pytest

from conftest import assert_continued_exactly, check, run_mpi, run_python
from test_faults import TINY, _cmdline, _descendants, _finish, _start, _wait_for

pytestmark = pytest.mark.slow  # each test trains tiny detectors under mpiexec


def _ranks(proc):
    return [p for p in _descendants(proc.pid) if 'train_yolo.py' in _cmdline(p)
            and 'forkserver' not in _cmdline(p)]


def test_sigterm_snapshots_every_rank_at_one_update_and_the_run_continues_exactly(tmp_path):
    whole, stopped = tmp_path / 'whole', tmp_path / 'stopped'
    check(run_mpi(2, TINY + ['--iterations', '40', '--loaderjob', '0', '--out', str(whole)],
                  timeout=240))
    proc = _start(2, TINY + ['--iterations', '2000', '--loaderjob', '0',
                             '--out', str(stopped)])
    _wait_for(stopped / 'log', proc)
    for pid in _ranks(proc):  # as a scheduler signals every task of the job
        os.kill(pid, signal.SIGTERM)
    code, _, err, _ = _finish(proc, timeout=60)
    lines = [line for line in err.splitlines() if line.startswith('stopped by')]
    assert code == 75 and len(lines) == 1, err[-3000:]
    assert 'SIGTERM' in lines[0] and '--resume auto' in lines[0]
    snapshots = sorted(n for n in os.listdir(str(stopped)) if n.startswith('snapshot_iter_'))
    assert len(snapshots) == 1 and not (stopped / 'model.npz').exists()
    iteration = int(snapshots[0].rsplit('_', 1)[1])
    assert 1 <= iteration < 40, iteration
    check(run_mpi(2, TINY + ['--iterations', '40', '--loaderjob', '0', '--out', str(stopped),
                             '--resume', str(stopped / snapshots[0])], timeout=240))
    assert_continued_exactly(whole / 'model.npz', stopped / 'model.npz')


def test_snapshots_by_wall_time_between_the_scheduled_ones(tmp_path):
    out = tmp_path / 'run'
    check(run_mpi(2, TINY + ['--iterations', '6', '--loaderjob', '0', '--out', str(out),
                             '--snapshot-minutes', '0.00001', '--keep-snapshots', '10'],
                  timeout=240))
    # Every update is more than 0.6 ms after the last snapshot: one after every update.
    assert sorted(int(n.rsplit('_', 1)[1]) for n in os.listdir(str(out))
                  if n.startswith('snapshot_iter_')) == [1, 2, 3, 4, 5, 6]


def test_a_stopped_rank_is_named_by_the_watchdog_and_the_job_ends(tmp_path):
    out = tmp_path / 'run'
    proc = _start(2, TINY + ['--iterations', '100000', '--loaderjob', '0', '--out', str(out),
                             '--watchdog-minutes', '0.1'])
    _wait_for(out / 'log', proc)
    stopped = _ranks(proc)[-1]
    os.kill(stopped, signal.SIGSTOP)
    try:
        code, _, err, seconds = _finish(proc, timeout=90)
    finally:
        for pid in [stopped] + _descendants(stopped):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    assert code != 0, err[-3000:]
    assert 'ranks that did not arrive: 1 ' in err and 'watchdog' in err, err[-3000:]


def test_sigterm_to_every_process_of_the_job_at_once_stops_it_once_with_a_snapshot(tmp_path):
    """At its time limit Slurm signals every process of the job at once: mpiexec (which
    forwards the signal to the ranks again), the ranks, their forkservers and loader workers.
    The helpers ignore it (the rank ends them), the repeat is the same request."""
    out = tmp_path / 'run'
    proc = _start(2, TINY + ['--iterations', '100000', '--loaderjob', '1', '--out', str(out)])
    _wait_for(out / 'log', proc)
    everything = [proc.pid] + _descendants(proc.pid)
    assert sum('forkserver' in _cmdline(p) for p in everything) >= 2  # one per rank
    for pid in everything:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    code, _, err, _ = _finish(proc, timeout=60)
    lines = [line for line in err.splitlines() if line.startswith('stopped by')]
    assert code == 75 and len(lines) == 1, err[-3000:]
    assert any(n.startswith('snapshot_iter_') for n in os.listdir(str(out)))


def test_a_repeated_stop_signal_is_one_request_and_a_later_one_ends_at_once():
    code = ('import os, signal, time\n'
            'from chainer_yolo_dist.core.preemption import SignalFlag\n'
            'flag = SignalFlag(["SIGUSR1"], repeat_seconds=1.0)\n'
            'os.kill(os.getpid(), signal.SIGUSR1); os.kill(os.getpid(), signal.SIGUSR1)\n'
            'print(flag.received, flush=True)\n'
            'time.sleep(1.5)\n'
            'os.kill(os.getpid(), signal.SIGUSR1)\n'
            'time.sleep(5)\n'
            'print("still alive", flush=True)\n')
    proc = run_python(['-c', code], timeout=60)
    assert proc.returncode == -signal.SIGUSR1, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stdout.split() == ['SIGUSR1']
