"""Resume in every parallelism mode (docs/reliability.md, "Resume in every parallelism mode").

A run stopped after a snapshot and resumed from it ends with the bits of a run that was never
stopped: ``local`` (each rank's own weights and momentum, gathered into the snapshot), ``stale``
(the reduced gradient in flight) and ``async`` with staleness bound 0 (the servers' shards,
optimizer state, versions). ``async`` without a bound resumes, but not exactly: its updates
land in the order the messages arrive.

The runs are scripts/train_darknet.py on the synthetic classification demo (64 training
images, 8 iterations, a snapshot every 4); the whole run snapshots at the same iterations as
the stopped one, so both average the batch-normalisation statistics at the same moments.
"""
import json
import math
import sys
import types

import chainer
import numpy as np
import pytest

from conftest import check, run_mpi
from test_parallelism_transfer import (DeviceArray, FakeComm, FakeMPI, FakeOps, Net, arrays_of,
                                       assert_same_bits, other_rank, set_grads, to_device)

from chainer_yolo_dist.core.parallelism import flat, modes, scheduled_snapshots
from chainer_yolo_dist.core.parallelism.local_sgd import LocalSGDOptimizer, _state_arrays
from chainer_yolo_dist.core.parallelism.stale_sync import StaleSyncOptimizer

RUN = ['scripts/train_darknet.py', '--n-train-images', '64', '--n-test-images', '16',
       '--loaderjob', '0', '--eval-interval', '0', '--no-progress', '--snapshot-interval', '4',
       '--log-interval', '1']
SCRIPT = 'tests/mpi_scripts/parallelism_resume.py'


def _json(path):
    return json.loads(path.read_text())


def _train(processes, options, out, iterations, resume=None):
    args = RUN + options + ['--iterations', str(iterations), '--out', str(out)]
    if resume is not None:
        args += ['--resume', str(resume)]
    return check(run_mpi(processes, args, timeout=240))


def _stopped_and_resumed(tmp_path, processes, options):
    """The whole run (8 iterations), and a run stopped at 4 then resumed in place to 8."""
    whole, stopped = tmp_path / 'whole', tmp_path / 'stopped'
    _train(processes, options, whole, 8)
    _train(processes, options, stopped, 4)
    proc = _train(processes, options, stopped, 8, resume=stopped / 'snapshot_iter_4')
    return whole, stopped, proc


def _assert_same_bits(whole, stopped):
    with np.load(str(whole / 'model.npz')) as a, np.load(str(stopped / 'model.npz')) as b:
        assert sorted(a.files) == sorted(b.files) and len(a.files) > 50
        different = [key for key in a.files if not np.array_equal(a[key], b[key])]
        assert not different, different
    log_whole, log_stopped = _json(whole / 'log'), _json(stopped / 'log')
    assert log_stopped[-1]['iteration'] == 8
    for key in ('main/loss', 'main/accuracy', 'lr'):  # no lr in async: the servers set it
        assert log_stopped[-1].get(key) == log_whole[-1].get(key), key


# --- what each mode saves, at the optimizer level (float64, two ranks, no trainer) --------------

def test_local_and_stale_optimizers_resume_exactly_from_rank_0s_snapshot(tmp_path):
    out = tmp_path / 'resume.json'
    check(run_mpi(2, [SCRIPT, str(out)], timeout=120))
    results = _json(out)
    for case in ('local_gathered', 'local_foreseen', 'stale'):
        assert results[case]['max_diff'] == [0.0, 0.0], (case, results[case])
        assert results[case]['warnings'] == [[], []], case
    # a snapshot local SGD did not see coming (by wall time, a stop signal) holds rank 0's
    # state alone: the run continues from it on every rank, not exactly, and says so
    unforeseen = results['local_unforeseen']
    assert all(d > 1e-3 for d in unforeseen['max_diff']), unforeseen
    assert len(unforeseen['warnings'][0]) == 1 and unforeseen['warnings'][1] == []
    assert 'not exactly' in unforeseen['warnings'][0][0]


@pytest.fixture
def fake_device(monkeypatch):
    """test_parallelism_transfer.py's stand-ins: a NumPy "CuPy" for :class:`DeviceArray`s, and
    an ``mpi4py.MPI`` that refuses anything but host NumPy buffers (through the comms)."""
    import mpi4py
    ops = FakeOps()
    monkeypatch.setattr(flat, '_ops_for', lambda a: ops if isinstance(a, DeviceArray) else None)
    monkeypatch.setattr(mpi4py, 'MPI', FakeMPI, raising=False)
    monkeypatch.setitem(sys.modules, 'mpi4py.MPI', FakeMPI)
    return ops


class GatheringComm(FakeComm):
    """Rank 0 of two (test_parallelism_transfer.py's), with a gather: the other rank's row is
    :func:`other_rank`."""

    def Gather(self, sendbuf, recvbuf, root):
        assert root == 0 == self.rank
        self._host(recvbuf)[0] = self._host(sendbuf)
        recvbuf[1] = other_rank(sendbuf.size, sendbuf.dtype)


def _host_copies(arrays):
    return [np.asarray(a).view(np.ndarray).copy() for a in arrays]


def _written(optimizer):
    """What rank 0's snapshot holds of ``optimizer`` (host copies, as in the file)."""
    serializer = chainer.serializers.DictionarySerializer()
    optimizer.serialize(serializer)
    return {key: np.array(value) for key, value in serializer.target.items()}


def test_local_snapshot_on_a_gpu_gathers_host_vectors_and_puts_back_this_ranks_row(
        fake_device):
    """The device path on test_parallelism_transfer.py's NumPy stand-in for CuPy: the gather
    gives MPI host vectors only, and the resumed rank's weights (on the device) and momentum
    are its own again, bitwise, whatever the updater loaded."""
    net = to_device(Net())
    optimizer = LocalSGDOptimizer(chainer.optimizers.MomentumSGD(lr=0.1), GatheringComm(),
                                  period=3).setup(net)
    for step in range(2):  # between two averagings
        set_grads(net, step, True)
        optimizer.update()
    optimizer.prepare_snapshot()
    written = _written(optimizer)
    mine, state = arrays_of(net), _host_copies(_state_arrays(net))
    rows = written['local_sgd/rows0']
    assert written['local_sgd/ranks'] == 2 and written['local_sgd/steps'] == 2
    assert rows.shape == (2, sum(p.size for p in net.params()) + sum(a.size for a in state))
    assert rows[1].tobytes() == other_rank(rows.shape[1], rows.dtype).tobytes()

    again = to_device(Net(seed=1))
    resumed = LocalSGDOptimizer(chainer.optimizers.MomentumSGD(lr=0.1), GatheringComm(),
                                period=3).setup(again)
    resumed.serialize(chainer.serializers.NpzDeserializer(written))
    assert resumed.steps == 2
    resumed.prepare_snapshot()  # like the next step, it first puts this rank's row back
    assert all(isinstance(p.array, DeviceArray) for p in again.params())
    got = arrays_of(again)
    assert_same_bits({k: v for k, v in mine.items() if '/avg_' not in k},
                     {k: v for k, v in got.items() if '/avg_' not in k})
    for a, b in zip(state, _host_copies(_state_arrays(again))):
        assert a.tobytes() == b.tobytes()


def test_stale_snapshot_on_a_gpu_holds_the_sum_in_flight_and_applies_it_next(fake_device):
    def build():
        net = to_device(Net())
        return net, StaleSyncOptimizer(chainer.optimizers.MomentumSGD(lr=0.1),
                                       FakeComm()).setup(net)

    net, optimizer = build()
    for step in range(3):
        set_grads(net, step, True)
        optimizer.update()
    written = _written(optimizer)
    assert written['stale_sync/steps'] == 3 and written['stale_sync/updates'] == 2
    again, resumed = build()
    resumed.serialize(chainer.serializers.NpzDeserializer(written))
    for p, q in zip(again.params(), net.params()):  # the updater loads rank 0's model
        p.array[...] = q.array
    again.cleargrads()  # (Net's gradients are host arrays until a step sets them)
    optimizer.finalize()  # the last reduced gradient, applied
    resumed.finalize()
    assert_same_bits(arrays_of(net), arrays_of(again))
    assert resumed.stats['updates'] == optimizer.stats['updates'] == 3


def test_every_mode_honours_resume():
    for name, mode in modes.MODES.items():
        assert 'resume' in mode.run_options, name
        modes.check(name, {'resume': 'runs/x/snapshot_iter_4'}, {})  # not refused


def test_local_gathers_at_the_scheduled_snapshots():
    def settings(interval, stop):
        return types.SimpleNamespace(snapshot_interval=interval, stop_trigger=stop)
    assert scheduled_snapshots(settings(4, (10, 'iteration'))) == 4
    assert scheduled_snapshots(settings(0, (10, 'iteration'))) == 10  # at the end
    assert scheduled_snapshots(settings(0, (3, 'epoch'))) is None


# --- the training script, stopped after a snapshot and resumed ----------------------------------

@pytest.mark.slow  # three 2-rank runs
def test_local_resumes_exactly_between_two_averagings(tmp_path):
    # averaging every 3 steps: at the snapshot (iteration 4) every rank holds its own weights,
    # and its own momentum (not averaged, as Darknet)
    whole, stopped, proc = _stopped_and_resumed(tmp_path, 2, ['--parallelism', 'local',
                                                              '--average-every', '3'])
    assert 'resumed from' in proc.stdout and 'RuntimeWarning' not in proc.stderr
    _assert_same_bits(whole, stopped)
    parallelism = _json(stopped / 'metrics.json')['parallelism']
    assert parallelism['steps'] == 8 and parallelism['averagings'] == 3  # 3, 6, and the end


@pytest.mark.slow  # three 2-rank runs
def test_stale_resumes_exactly_with_its_reduction_in_flight(tmp_path):
    whole, stopped, _ = _stopped_and_resumed(tmp_path, 2, ['--parallelism', 'stale'])
    _assert_same_bits(whole, stopped)
    parallelism = _json(stopped / 'metrics.json')['parallelism']
    assert parallelism['steps'] == 8 and parallelism['updates'] == 8


@pytest.mark.slow  # three runs of 1 server + 2 workers
def test_async_with_staleness_bound_0_resumes_exactly(tmp_path):
    whole, stopped, proc = _stopped_and_resumed(tmp_path, 3, ['--parallelism', 'async',
                                                              '--max-staleness', '0'])
    assert 'parameter servers resume from' in proc.stdout
    _assert_same_bits(whole, stopped)
    a, b = (_json(out / 'parallelism_server0.json') for out in (whole, stopped))
    for key in ('updates', 'staleness', 'pushes', 'max_clock_gap'):
        assert a[key] == b[key], key  # the server's statistics cover the whole run


@pytest.mark.slow  # two runs of 1 server + 2 workers, and a refused resume
def test_async_without_bound_resumes_but_not_exactly(tmp_path):
    out = tmp_path / 'run'
    _train(3, ['--parallelism', 'async'], out, 4)
    proc = _train(3, ['--parallelism', 'async'], out, 8, resume=out / 'snapshot_iter_4')
    assert 'parameter servers resume from' in proc.stdout
    log = _json(out / 'log')
    assert [e['iteration'] for e in log] == list(range(1, 9))
    assert all(math.isfinite(e['main/loss']) for e in log)
    server = _json(out / 'parallelism_server0.json')
    assert server['updates'] == 2 * 8 and sum(server['staleness'].values()) == 16
    assert _json(out / 'metrics.json')['parallelism']['pushes'] == 8
    # another staleness bound is another run: refused by name on every rank, and the servers
    # stop too (no rank is left waiting)
    other = run_mpi(3, RUN + ['--parallelism', 'async', '--max-staleness', '0', '--iterations',
                              '8', '--out', str(tmp_path / 'other'), '--resume',
                              str(out / 'snapshot_iter_8')], timeout=120)
    assert other.returncode == 2, other.stderr[-3000:]
    assert 'max_staleness None (now 0)' in other.stderr
