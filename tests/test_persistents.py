"""core/persistents.py (batch-norm statistics averaged over ranks) and the host-buffer guard."""
import json
import os
import sys

import chainer
import chainer.links as L
import numpy as np
import pytest

from conftest import check, run_mpi
from chainer_yolo_dist.core import persistents
from chainer_yolo_dist.core.persistents import (MeanPersistents, buffer_dtype,
                                                float_persistents, mean_persistents, pack,
                                                unpack_mean)

SCRIPTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'mpi_scripts')


def _arrays():
    rng = np.random.RandomState(0)
    return [rng.normal(size=(2, 3)).astype(np.float32),
            rng.normal(size=(4,)).astype(np.float16),
            np.array(1.5, np.float32)]


def test_pack_then_unpack_mean_of_identical_ranks_gives_each_array_back():
    arrays = _arrays()
    originals = [a.copy() for a in arrays]
    assert buffer_dtype(arrays) == np.float32
    buffer = pack(arrays, np, buffer_dtype(arrays))
    assert buffer.shape == (6 + 4 + 1,) and buffer.dtype == np.float32
    assert buffer[6:10].tolist() == originals[1].astype(np.float32).tolist()
    # four ranks holding the same values: the sum over them, then the mean
    unpack_mean(buffer * 4, arrays, 4)
    for a, o in zip(arrays, originals):
        assert a.dtype == o.dtype and a.shape == o.shape
        assert a.tobytes() == o.tobytes()
    assert buffer_dtype(arrays + [np.zeros(2, np.float64)]) == np.float64


def test_unpack_mean_is_chainermn_arithmetic():
    # ChainerMN's _multi_node_mean: sum in float32, cast to the array's dtype, *= 1.0 / size
    a0, a1 = _arrays(), [np.asarray(x * 3 + 1) for x in _arrays()]
    summed = pack(a0, np, np.float32) + pack(a1, np, np.float32)
    targets = [np.empty_like(x) for x in a0]
    unpack_mean(summed, targets, 3)
    for t, x, y in zip(targets, a0, a1):
        expected = np.asarray(x.astype(np.float32) + y.astype(np.float32))
        expected = expected.astype(x.dtype)
        expected *= 1.0 / 3
        assert t.tobytes() == expected.tobytes()


class _FakeMPIModule(object):
    """Stands in for ``mpi4py.MPI``: MPI is not initialised in the pytest process."""
    IN_PLACE, SUM = object(), object()


@pytest.fixture(autouse=True)
def fake_mpi(monkeypatch):
    import mpi4py
    monkeypatch.setattr(mpi4py, 'MPI', _FakeMPIModule, raising=False)
    monkeypatch.setitem(sys.modules, 'mpi4py.MPI', _FakeMPIModule)


class _FakeMpi(object):
    """An mpi4py communicator of 2 ranks whose other rank holds ``other`` (a packed buffer)."""

    def __init__(self, other):
        self.other, self.calls = other, 0

    def Allreduce(self, sendbuf, recvbuf, op=None):
        assert sendbuf is _FakeMPIModule.IN_PLACE and op is _FakeMPIModule.SUM
        assert isinstance(recvbuf, np.ndarray) and recvbuf.dtype == np.float32
        recvbuf += self.other
        self.calls += 1


class _FakeComm(object):
    size, rank = 2, 0

    def __init__(self, other):
        self.mpi_comm = _FakeMpi(other)


def _model(seed):
    model = chainer.Chain()
    with model.init_scope():
        model.b = L.BatchNormalization(3)
        model.a = L.BatchNormalization(2)
        model.lazy = L.BatchNormalization(axis=0)  # no statistics before its first call
    rng = np.random.RandomState(seed)
    for link in (model.a, model.b):
        link.avg_mean[...] = rng.normal(size=link.avg_mean.shape)
        link.N = seed
    return model


def test_mean_persistents_host_path_one_allreduce_sorted_names_ints_untouched():
    mine, theirs = _model(1), _model(2)
    names = [name for name, _ in float_persistents(mine)]
    assert names == ['/a/avg_mean', '/a/avg_var', '/b/avg_mean', '/b/avg_var']
    other = pack([a for _, a in float_persistents(theirs)], np, np.float32)
    comm = _FakeComm(other)
    expected = [(x + y) * np.float32(0.5) for (_, x), (_, y)
                in zip(float_persistents(mine), float_persistents(theirs))]
    assert mean_persistents(comm, mine) == other.nbytes
    assert comm.mpi_comm.calls == 1  # one packed buffer, not one collective per array
    for (_, got), want in zip(float_persistents(mine), expected):
        assert got.tobytes() == want.tobytes()
    assert mine.a.N == 1 and mine.b.N == 1 and mine.lazy.avg_mean is None


def test_nothing_to_do_on_one_rank_and_the_extension_matches_chainermns():
    comm = _FakeComm(None)
    comm.size = 1
    assert mean_persistents(comm, _model(1)) == 0 and comm.mpi_comm.calls == 0
    chainermn = pytest.importorskip('chainermn')
    reference = chainermn.extensions.AllreducePersistent
    assert MeanPersistents.trigger == reference.trigger
    assert MeanPersistents.priority == reference.priority
    assert not persistents._on_nccl(comm, [np.zeros(1)])


def test_two_ranks_average_and_the_guard_refuses_non_host_buffers(tmp_path):
    check(run_mpi(2, [os.path.join(SCRIPTS, 'mean_persistents.py'), str(tmp_path)],
                  timeout=120))
    for rank in range(2):
        result = json.loads((tmp_path / ('rank%d.json' % rank)).read_text())
        assert result['rank'] == rank and result['mean_ok']
        assert result['bytes_model'] == 56
        refused = result['refused']
        assert len(refused) == 7 and 'ctypes object' in refused[0]
        assert 'CUDA array' in refused[1] and 'raw address' in refused[3]
        assert {'Allreduce', 'Iallreduce', 'Bcast', 'Send', 'Isend', 'Recv', 'Irecv',
                'Sendrecv', 'Gatherv', 'Allgatherv', 'Scatterv', 'Alltoallv',
                'Reduce_scatter'} <= set(result['methods'])
