"""Batch-norm statistics averaged over two ranks, and the host-buffer guard (under mpiexec).

Usage: mean_persistents.py OUT_DIR  (writes OUT_DIR/rankR.json; asserts as it goes)
Needs CHAINER_YOLO_DIST_CHECK_MPI_BUFFERS=1 (the tests' conftest sets it).
"""
import ctypes
import json
import os
import sys

import numpy as np

from chainer_yolo_dist.core import host_buffers

assert host_buffers.install_if_requested(), 'run with %s=1' % host_buffers.ENV
host_buffers.install_if_requested()  # a second install must change nothing

import chainer  # noqa: E402
import chainer.links as L  # noqa: E402
import chainermn  # noqa: E402
from mpi4py import MPI  # noqa: E402

from chainer_yolo_dist.core.persistents import MeanPersistents, mean_persistents  # noqa: E402


class FakeDeviceArray(object):
    """What a CuPy array looks like to mpi4py: a CUDA array interface and no host buffer."""
    __cuda_array_interface__ = {'shape': (2,), 'typestr': '<f4', 'data': (0, False),
                                'version': 3}


def build(rank):
    """Two nested BatchNormalization links (float32, float16), and a float64 one beside a
    float32 one, each with running statistics of this rank's own, and N = 10 + rank."""
    model = chainer.Chain()
    with model.init_scope():
        model.bn = L.BatchNormalization(3)
        model.block = chainer.Chain()
        with model.block.init_scope():
            model.block.bn = L.BatchNormalization((2, 2), dtype=np.float16)
    wide = chainer.Chain()
    with wide.init_scope():
        wide.bn = L.BatchNormalization(4, dtype=np.float64)
        wide.narrow = L.BatchNormalization(2)
    rng = np.random.RandomState(100 + rank)
    for link in (model.bn, model.block.bn, wide.bn, wide.narrow):
        link.avg_mean[...] = rng.normal(size=link.avg_mean.shape)
        link.avg_var[...] = rng.uniform(0.5, 2, size=link.avg_var.shape)
        link.N = 10 + rank
    return model, wide


def stats(link):
    return {path + '/' + name: getattr(child, name).copy()
            for path, child in link.namedlinks() for name in child._persistent
            if isinstance(getattr(child, name), np.ndarray)}


def refused(call):
    """The TypeError message ``call`` raises (it must raise one)."""
    try:
        call()
    except TypeError as e:
        return str(e)
    raise AssertionError('the guard let a non-host buffer through')


def main(out_dir):
    comm = chainermn.create_communicator('naive')
    assert comm.size == 2, comm.size
    checked = host_buffers.checked_class()
    assert type(comm.mpi_comm) is checked, type(comm.mpi_comm)
    result = {'rank': comm.rank}

    # --- the average
    model, wide = build(comm.rank)
    before = {'model': stats(model), 'wide': stats(wide)}
    everyone = comm.mpi_comm.allgather(before)  # pickled: independent of the code under test
    result['bytes_model'] = mean_persistents(comm, model)
    MeanPersistents(wide, comm)()
    for key, link in (('model', model), ('wide', wide)):
        after = stats(link)
        for name, value in sorted(after.items()):  # the same order on both ranks
            a, b = everyone[0][key][name], everyone[1][key][name]
            assert value.dtype == a.dtype, (name, value.dtype)
            # ChainerMN's _multi_node_mean on the same array: the same bits
            reference = before[key][name].copy()
            comm._multi_node_mean(None, reference)
            assert value.tobytes() == reference.tobytes(), (key, name, value, reference)
            if value.dtype != np.float16:  # exact: a + b is exact in the wider type
                assert np.array_equal(value, (a + b) * value.dtype.type(0.5)), (key, name)
    assert (model.bn.N, model.block.bn.N, wide.bn.N) == (10 + comm.rank,) * 3
    # 3 + 3 float32 and 4 + 4 float16 numbers, packed in one float32 buffer
    assert result['bytes_model'] == (6 + 8) * 4, result['bytes_model']
    result['mean_ok'] = True

    # --- the guard refuses what is not host memory, through every argument form
    host = (ctypes.c_ubyte * 8)()
    messages = [
        refused(lambda: comm.mpi_comm.Allreduce(MPI.IN_PLACE, host)),
        refused(lambda: comm.mpi_comm.Allreduce(MPI.IN_PLACE, FakeDeviceArray())),
        refused(lambda: comm.mpi_comm.Allreduce(sendbuf=np.zeros(2, np.float32),
                                                recvbuf=[host, MPI.BYTE], op=MPI.SUM)),
        refused(lambda: comm.mpi_comm.Allreduce(
            MPI.IN_PLACE, MPI.buffer.fromaddress(ctypes.addressof(host), 8))),
        refused(lambda: comm.mpi_comm.Allreduce(
            MPI.IN_PLACE, np.ctypeslib.as_array((ctypes.c_float * 2)()))),
        refused(lambda: comm.mpi_comm.Bcast(memoryview(host), root=0)),
        refused(lambda: comm.mpi_comm.Send((host, MPI.BYTE), dest=1 - comm.rank)),
    ]
    assert all(m.startswith(('Allreduce:', 'Bcast:', 'Send:')) for m in messages), messages
    assert 'ctypes' in messages[0] and 'CUDA' in messages[1], messages
    result['refused'] = messages

    # --- and lets host buffers through: mpi4py directly, and ChainerMN's own methods
    x = np.array([comm.rank + 1.0, 2.0], np.float32)
    total = np.empty_like(x)
    comm.mpi_comm.Allreduce(x, total, op=MPI.SUM)
    assert total.tolist() == [3.0, 4.0], total
    inplace = bytearray(np.float32([1, 2]).tobytes())
    comm.mpi_comm.Allreduce(MPI.IN_PLACE, [inplace, MPI.FLOAT], op=MPI.SUM)
    assert np.frombuffer(inplace, np.float32).tolist() == [2.0, 4.0]
    assert comm.allreduce(x).tolist() == [3.0, 4.0]
    assert comm.bcast(x, root=1).tolist() == [2.0, 2.0]
    gathered = comm.allgather(x)
    assert [g.tolist() for g in gathered] == [[1.0, 2.0], [2.0, 2.0]]
    if comm.rank == 0:
        comm.send(x, dest=1, tag=3)
    else:
        assert comm.recv(source=0, tag=3).tolist() == [1.0, 2.0]
    comm.bcast_data(model)
    for param in model.params():
        param.grad = np.full_like(param.array, comm.rank)
    comm.multi_node_mean_grad(model)
    assert all((p.grad == 0.5).all() for p in model.params())

    # --- sub-communicators still work (and are checked where ChainerMN builds on them)
    sub = comm.split(comm.rank, 0)
    assert type(sub.mpi_comm) is checked and sub.size == 1
    pair = chainermn.create_communicator('naive', mpi_comm=comm.mpi_comm.Split(0, comm.rank))
    assert type(pair.mpi_comm) is checked and pair.size == 2
    again = chainermn.create_communicator('naive', mpi_comm=comm.mpi_comm)
    assert type(again.mpi_comm) is checked
    assert pair.allreduce_obj(comm.rank) == 1 and sub.allreduce_obj(5) == 5
    assert mean_persistents(sub, model) == 0  # one rank: nothing to do
    dup, part = comm.mpi_comm.Dup(), comm.mpi_comm.Split(comm.rank, 0)
    assert type(dup) is checked and type(part) is checked and part.size == 1
    assert comm.mpi_comm == MPI.COMM_WORLD
    nobody = comm.mpi_comm.Split(MPI.UNDEFINED, 0)
    assert nobody == MPI.COMM_NULL and type(nobody) is MPI.Intracomm
    dup.Free()
    part.Free()
    result['methods'] = sorted(host_buffers.buffer_methods(MPI.Intracomm))

    with open(os.path.join(out_dir, 'rank%d.json' % comm.rank), 'w') as f:
        json.dump(result, f)


if __name__ == '__main__':
    main(sys.argv[1])
