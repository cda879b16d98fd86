"""Packed host transfers (core/parallelism/flat.py ``PackedTransfer``): exact round trips, and on a
GPU one copy each way per step in every mode that moves parameters or gradients through MPI.

No GPU here. The device path runs on a NumPy stand-in for CuPy: :class:`FakeOps` replaces
``flat._ops_for`` for arrays of the NumPy subclass :class:`DeviceArray` ("on the device"), and
counts the copies to and from the host. So every line of the device path runs except the few
CuPy calls inside ``flat._CupyOps``. The modes run in this process against :class:`FakeComm`,
a two-rank world whose other rank is a fixed vector, and a stand-in for ``mpi4py.MPI``: it
refuses any buffer that is not a plain host NumPy array, as the project's MPI guard does.
"""
import contextlib
import sys

import chainer
import chainer.links as L
import numpy as np
import pytest

from chainer_yolo_dist.core.parallelism import flat
from chainer_yolo_dist.core.parallelism import parameter_server as ps
from chainer_yolo_dist.core.parallelism.flat import (FlatLayout, PackedTransfer, pack_grads,
                                                     pack_params, unpack_grads, unpack_params)
from chainer_yolo_dist.core.parallelism.local_sgd import LocalSGDOptimizer
from chainer_yolo_dist.core.parallelism.stale_sync import StaleSyncOptimizer


class DeviceArray(np.ndarray):
    """A NumPy array standing for a CuPy array."""


class FakeOps(object):
    """``flat._CupyOps`` on NumPy: the same five operations, counted."""

    def __init__(self):
        self.downloads = 0
        self.uploads = 0
        self.allocations = 0  # device vectors made

    def device(self, array):
        return contextlib.nullcontext()

    def same_device(self, a, b):
        return True

    def empty(self, size, dtype):
        self.allocations += 1
        return np.empty(size, dtype).view(DeviceArray)

    def zeros(self, size, dtype):
        return np.zeros(size, dtype).view(DeviceArray)

    def host_empty(self, size, dtype):
        return np.empty(size, dtype)

    def concatenate(self, parts, out):
        np.concatenate(parts, out=out)

    def download(self, device_array, host):
        assert isinstance(device_array, DeviceArray) and type(host) is np.ndarray
        assert device_array.shape == host.shape and device_array.dtype == host.dtype
        self.downloads += 1
        host[...] = device_array.view(np.ndarray)

    def upload(self, host, device_array):
        assert isinstance(device_array, DeviceArray) and type(host) is np.ndarray
        assert device_array.shape == host.shape and device_array.dtype == host.dtype
        self.uploads += 1
        device_array.view(np.ndarray)[...] = host


@pytest.fixture
def ops(monkeypatch):
    fake = FakeOps()
    monkeypatch.setattr(flat, '_ops_for',
                        lambda a: fake if isinstance(a, DeviceArray) else None)
    return fake


class Net(chainer.Chain):
    """Parameters of every rank a network has: 4-d, 2-d, 1-d and 0-d (and a BN's
    persistents)."""

    def __init__(self, dtype=np.float32, seed=0):
        super().__init__()
        rng = np.random.RandomState(seed)
        # links cast array initialisers to the configured dtype
        with self.init_scope(), chainer.using_config('dtype', np.dtype(dtype)):
            self.conv = L.Convolution2D(3, 4, 3, initialW=rng.randn(4, 3, 3, 3).astype(dtype),
                                        initial_bias=rng.randn(4).astype(dtype))
            self.bn = L.BatchNormalization(4, dtype=dtype)
            self.fc = L.Linear(4, 5, initialW=rng.randn(5, 4).astype(dtype), nobias=True)
            self.scale = chainer.Parameter(np.asarray(rng.randn(), dtype))
        self.bn.gamma.array[...] = rng.randn(4)
        self.bn.beta.array[...] = rng.randn(4)
        self.bn.avg_mean[...] = rng.randn(4)
        self.bn.avg_var[...] = rng.rand(4) + 0.5


def to_device(link):
    """Moves ``link``'s parameters and persistents "to the device" (DeviceArray views)."""
    for p in link.params():
        p.array = p.array.view(DeviceArray)
    link.bn.avg_mean = link.bn.avg_mean.view(DeviceArray)
    link.bn.avg_var = link.bn.avg_var.view(DeviceArray)
    return link


def arrays_of(link):
    named = [(n, p.array) for n, p in sorted(link.namedparams())]
    named += [('/bn/avg_mean', link.bn.avg_mean), ('/bn/avg_var', link.bn.avg_var)]
    return {n: np.asarray(a).view(np.ndarray).copy() for n, a in named}


def assert_same_bits(a, b):
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].dtype == b[name].dtype and a[name].shape == b[name].shape, name
        assert a[name].tobytes() == b[name].tobytes(), name


def set_grads(link, step, device, skip=()):
    """A deterministic gradient of every parameter but ``skip`` at ``step``."""
    for name, p in sorted(link.namedparams()):
        if name in skip:
            p.grad = None
            continue
        g = np.sin(np.arange(p.size, dtype=p.dtype) + 7 * step + len(name)).reshape(p.shape)
        p.grad = g.view(DeviceArray) if device else g


def copies_per_step(net, opt, ops, steps, device, skip=lambda step: ()):
    """``steps`` updates of ``opt`` on set_grads' gradients: each one's (device -> host,
    host -> device) copies, as ``ops`` counts them."""
    copies = []
    for step in range(steps):
        before = ops.downloads, ops.uploads
        set_grads(net, step, device, skip=skip(step))
        opt.update()
        copies.append((ops.downloads - before[0], ops.uploads - before[1]))
    return copies


# -- the transfer itself ------------------------------------------------------------------

@pytest.mark.parametrize('dtype', [np.float16, np.float32, np.float64])
def test_round_trip_is_exact_and_one_copy_each_way(ops, dtype):
    host_net, device_net = Net(dtype), to_device(Net(dtype))
    layout = FlatLayout.of(host_net)
    assert layout.size == 108 + 4 + 4 + 4 + 20 + 1 and layout.dtype == dtype
    on_host = pack_params(host_net, np.empty(layout.size, dtype))
    assert ops.downloads == 0  # NumPy parameters: straight into the host vector
    transfer = PackedTransfer()
    from_device = pack_params(device_net, np.empty(layout.size, dtype), transfer=transfer)
    assert ops.downloads == 1 and ops.uploads == 0
    assert on_host.tobytes() == from_device.tobytes()
    # the layout's offsets hold each parameter, raveled
    for name, offset, size in zip(layout.names, layout.offsets, layout.sizes):
        p = dict(host_net.namedparams())[name]
        assert on_host[offset:offset + size].tobytes() == p.array.tobytes()

    target = to_device(Net(dtype, seed=1))
    unpack_params(target, from_device, transfer=transfer)
    assert ops.uploads == 1 and ops.allocations == 1  # the staging vector was reused
    assert all(isinstance(p.array, DeviceArray) for p in target.params())
    assert_same_bits(
        {n: np.asarray(p.array).view(np.ndarray) for n, p in target.namedparams()},
        {n: p.array for n, p in host_net.namedparams()})
    other = Net(dtype, seed=2)
    unpack_params(other, on_host)
    assert_same_bits({n: p.array for n, p in other.namedparams()},
                     {n: p.array for n, p in host_net.namedparams()})


def test_arrays_of_mixed_dtypes_travel_in_their_common_dtype(ops):
    rng = np.random.RandomState(0)
    half = rng.randn(3, 2).astype(np.float16)
    single = rng.randn(5).astype(np.float32)
    results = []
    for device in (False, True):
        arrays = [a.copy().view(DeviceArray) if device else a.copy() for a in (half, single)]
        out = PackedTransfer().pack(arrays, np.empty(11, np.float32))
        results.append(out)
        for a in arrays:
            a[...] = 0
        PackedTransfer().unpack(out, arrays)
        assert arrays[0].dtype == np.float16
        assert arrays[0].tobytes() == half.tobytes()
        assert arrays[1].tobytes() == single.tobytes()
    assert results[0].tobytes() == results[1].tobytes()
    assert ops.downloads == 1 and ops.uploads == 1


def test_gradients_missing_are_zero_and_a_sum_stays_on_the_device_until_flushed(ops):
    skip = ('/fc/W',)
    host_net, device_net = Net(), to_device(Net())
    size = FlatLayout.of(host_net).size
    on_host, from_device = np.empty(size, np.float32), np.full(size, np.nan, np.float32)
    transfer = PackedTransfer()
    for step in range(3):
        set_grads(host_net, step, device=False, skip=skip)
        set_grads(device_net, step, device=True, skip=skip)
        pack_grads(host_net, on_host, accumulate=step > 0)
        pack_grads(device_net, from_device, accumulate=step > 0, defer=step < 2,
                   transfer=transfer)
        # deferred steps leave the host vector alone; the last one copies the sum once
        assert ops.downloads == (1 if step == 2 else 0)
        assert np.isnan(from_device).all() == (step < 2)
    assert on_host.tobytes() == from_device.tobytes()
    layout = FlatLayout.of(host_net)
    i = layout.names.index('/fc/W')
    assert not on_host[layout.offsets[i]:layout.offsets[i] + layout.sizes[i]].any()
    transfer.flush(from_device)
    assert ops.downloads == 1  # nothing was pending

    # unpacking gradients allocates a missing one on the parameter's device
    device_net.cleargrads()
    unpack_grads(device_net, from_device, transfer=transfer)
    host_net.cleargrads()
    unpack_grads(host_net, on_host)
    assert ops.uploads == 1
    assert isinstance(device_net.fc.W.grad, DeviceArray)
    assert_same_bits({n: np.asarray(p.grad).view(np.ndarray)
                      for n, p in device_net.namedparams()},
                     {n: p.grad for n, p in host_net.namedparams()})


def test_a_deferred_sum_is_flushed_once_and_misuse_is_refused(ops):
    net = to_device(Net())
    size = FlatLayout.of(net).size
    out = np.zeros(size, np.float32)
    transfer = PackedTransfer()
    set_grads(net, 0, device=True)
    with pytest.raises(RuntimeError, match='nothing to accumulate onto'):
        pack_grads(net, out, accumulate=True, transfer=transfer)
    pack_grads(net, out, defer=True, transfer=transfer)
    with pytest.raises(RuntimeError, match='not yet flushed'):
        unpack_params(net, out, transfer=transfer)
    transfer.flush(out)
    transfer.flush(out)
    assert ops.downloads == 1
    expected = np.concatenate([p.grad.view(np.ndarray).ravel()
                               for _, p in sorted(net.namedparams())])
    assert out.tobytes() == expected.tobytes()
    with pytest.raises(ValueError, match='one device'):
        transfer.pack([np.ones(3, np.float32), np.ones(2, np.float32).view(DeviceArray)],
                      np.empty(5, np.float32))
    with pytest.raises(ValueError, match='do not fill'):
        transfer.pack([np.ones(3, np.float32)], np.empty(4, np.float32))


# -- the modes, against a two-rank world whose other rank is a fixed vector --------------

class FakeRequest(object):
    def Wait(self):
        pass


class FakeMPI(object):
    """The names of ``mpi4py.MPI`` the modes use."""
    IN_PLACE = object()
    SUM = object()

    class Request(object):
        @staticmethod
        def Waitall(requests):
            for r in requests:
                r.Wait()

        @staticmethod
        def Testall(requests):
            return True


def other_rank(size, dtype):
    """What the other rank contributes to a sum of ``size`` elements."""
    return np.linspace(-1, 1, size).astype(dtype)


class FakeComm(object):
    """Rank ``rank`` of two. Sums add :func:`other_rank`; a parameter server (rank 0) replies
    to every request with version 1 and the parameters ``served``; every message sent is
    kept in ``sent`` as ``(tag, copy)``. Every buffer must be a plain host NumPy array."""

    size = 2

    def __init__(self, rank=0, served=None):
        self.rank = rank
        self.served = served
        self.sent = []
        self.allreduces = 0

    @staticmethod
    def _host(buf):
        assert type(buf) is np.ndarray, 'MPI was given a %s' % type(buf).__name__
        return buf

    def _sum(self, sendbuf, recvbuf, op):
        assert sendbuf is FakeMPI.IN_PLACE and op is FakeMPI.SUM
        self._host(recvbuf)[...] += other_rank(recvbuf.size, recvbuf.dtype)
        self.allreduces += 1

    def Allreduce(self, sendbuf, recvbuf, op):
        self._sum(sendbuf, recvbuf, op)

    def Iallreduce(self, sendbuf, recvbuf, op):
        self._sum(sendbuf, recvbuf, op)
        return FakeRequest()

    def bcast(self, obj, root):
        assert root == self.rank
        return obj

    def Bcast(self, buf, root):
        if root != self.rank:  # the server's final shard
            self._host(buf)[...] = self.served
        self._host(buf)

    def Isend(self, buf, dest, tag):
        self.sent.append((tag, self._host(buf).copy()))
        return FakeRequest()

    def Send(self, buf, dest, tag):
        self.sent.append((tag, self._host(buf).copy()))

    def Irecv(self, buf, source, tag):
        self._host(buf)[...] = [1, 1] if tag == ps.TAG_REPLY else self.served
        return FakeRequest()


@pytest.fixture
def fake_mpi(monkeypatch):
    import mpi4py
    monkeypatch.setattr(mpi4py, 'MPI', FakeMPI, raising=False)
    monkeypatch.setitem(sys.modules, 'mpi4py.MPI', FakeMPI)


def run_local(device, ops, steps=3):
    net = to_device(Net()) if device else Net()
    comm = FakeComm()
    opt = LocalSGDOptimizer(chainer.optimizers.MomentumSGD(lr=0.1), comm, period=1,
                            average_state=True, average_persistents=True).setup(net)
    copies = copies_per_step(net, opt, ops, steps, device)
    states = {'%s/v' % n: np.asarray(p.update_rule.state['v']).view(np.ndarray).copy()
              for n, p in net.namedparams()}
    return net, opt, comm, copies, states


def test_local_sgd_moves_one_vector_each_way_per_averaging(ops, fake_mpi):
    host_net, host_opt, host_comm, host_copies, host_states = run_local(False, ops)
    assert host_copies == [(0, 0)] * 3
    net, opt, comm, copies, states = run_local(True, ops)
    # parameters, momenta and BN statistics: one copy down and one up per averaging, and,
    # as before, one Allreduce each
    assert copies == [(1, 1)] * 3
    assert comm.allreduces == host_comm.allreduces == 3 * 3
    assert opt.stats['bytes_reduced'] == host_opt.stats['bytes_reduced'] == 3 * 4 * (
        2 * 141 + 8)
    assert isinstance(net.bn.avg_mean, DeviceArray)
    assert_same_bits(arrays_of(net), arrays_of(host_net))
    assert_same_bits(states, host_states)
    # BN statistics do not change without a forward pass: three averagings with the other
    # rank's vector, in the arithmetic the mode always used (sum, then / size)
    stats0 = Net()
    expected = np.concatenate([stats0.bn.avg_mean, stats0.bn.avg_var])
    for _ in range(3):
        expected = (expected + other_rank(8, np.float32)) / np.float32(2)
    got = np.concatenate([host_net.bn.avg_mean, host_net.bn.avg_var])
    assert got.tobytes() == expected.tobytes()


def test_local_sgd_averages_in_the_arithmetic_it_always_used(ops, fake_mpi):
    net = Net()
    opt = LocalSGDOptimizer(chainer.optimizers.MomentumSGD(lr=0.1), FakeComm(),
                            period=1).setup(net)
    set_grads(net, 0, device=False)
    local = Net()
    local_opt = chainer.optimizers.MomentumSGD(lr=0.1)
    local_opt.setup(local)
    set_grads(local, 0, device=False)
    local_opt.update()
    opt.update()
    # what the former code did: pack, np.concatenate, Allreduce, divide in place, unpack
    packed = np.concatenate([pack_params(local, np.empty(141, np.float32))])
    packed += other_rank(141, np.float32)
    packed /= 2
    assert pack_params(net, np.empty(141, np.float32)).tobytes() == packed.tobytes()


def run_stale(device, ops, steps=3):
    net = to_device(Net()) if device else Net()
    opt = StaleSyncOptimizer(chainer.optimizers.MomentumSGD(lr=0.1), FakeComm()).setup(net)
    copies = copies_per_step(net, opt, ops, steps, device,
                             skip=lambda step: ('/scale',) if step == 1 else ())
    before = ops.uploads
    opt.finalize()
    copies.append((0, ops.uploads - before))
    return net, opt, copies


def test_stale_mode_moves_one_vector_each_way_per_step(ops, fake_mpi):
    host_net, host_opt, host_copies = run_stale(False, ops)
    assert host_copies == [(0, 0)] * 4
    net, opt, copies = run_stale(True, ops)
    # step 1 only sends (nothing to apply yet); finalize applies the last mean
    assert copies == [(1, 0), (1, 1), (1, 1), (0, 1)]
    assert opt.stats['updates'] == host_opt.stats['updates'] == 3
    assert all(isinstance(p.array, DeviceArray) for p in net.params())
    assert_same_bits(arrays_of(net), arrays_of(host_net))


def run_worker(device, ops, push_every, steps):
    net = to_device(Net()) if device else Net()
    served = np.arange(141, dtype=np.float32) / 7
    comm = FakeComm(rank=1, served=served)
    opt = ps.ParameterServerOptimizer(comm, n_servers=1, push_every=push_every,
                                      pull_every=2).setup(net)
    copies = copies_per_step(net, opt, ops, steps, device)
    before = ops.downloads, ops.uploads
    stats = opt.finalize()
    copies.append((ops.downloads - before[0], ops.uploads - before[1]))
    pushed = [buf for tag, buf in comm.sent if tag == ps.TAG_GRAD]
    return net, stats, copies, pushed, served


@pytest.mark.parametrize('push_every', [1, 3])
def test_parameter_server_worker_copies_once_per_push_and_once_per_pull(ops, fake_mpi,
                                                                        push_every):
    steps = 4
    host = run_worker(False, ops, push_every, steps)
    assert host[2] == [(0, 0)] * (steps + 1)
    net, stats, copies, pushed, served = run_worker(True, ops, push_every, steps)
    if push_every == 1:
        # a push every step; the pull asked for at step 2 is loaded at step 3; finalize
        # loads the pull of step 4 and the final parameters
        assert copies == [(1, 0), (1, 0), (1, 1), (1, 0), (0, 2)]
    else:
        # steps 1-3 summed on the device and copied once at step 3 (which also loads the
        # pull asked for at step 2); finalize pushes step 4 alone, then loads step 4's
        # pull and the final parameters
        assert copies == [(0, 0), (0, 0), (1, 1), (0, 0), (1, 2)]
    assert stats['pushes'] == host[1]['pushes'] == len(pushed) == len(host[3])
    for a, b in zip(pushed, host[3]):
        assert a.tobytes() == b.tobytes()
    if push_every == 3:  # the first push is the sum of three steps' gradients
        grads = Net()
        total = np.zeros(141, np.float32)
        for step in range(3):
            set_grads(grads, step, device=False)
            pack_grads(grads, total, accumulate=step > 0)
        assert pushed[0].tobytes() == total.tobytes()
    assert_same_bits(arrays_of(net), arrays_of(host[0]))
    assert pack_params(host[0], np.empty(141, np.float32)).tobytes() == served.tobytes()
