"""Averaging a model's float persistents (batch-normalisation running statistics) over ranks.

This replaces ``chainermn.extensions.AllreducePersistent``, which calls
``comm._multi_node_mean(None, array)`` for each array. ``pure_nccl`` does not override that
method: ChainerMN's ``_memory_utility.array_to_buffer_object`` turns a CuPy array into a
ctypes array over the *device* pointer and hands it to ``MPI_Allreduce``, and the MPICH wheel
this project installs is not CUDA-aware, so a GPU rank crashes (or averages garbage) at its
first snapshot. Here device memory only ever reaches NCCL; every other case goes through a host
NumPy buffer. Every array travels in one packed buffer: one collective per call, not one per
array.

The arithmetic is ChainerMN's: a float32 sum over the ranks, then ``array *= 1.0 / size`` in
the array's own dtype, so a CPU run averages to the same bits as it did with
``AllreducePersistent`` (the exact-resume tests rely on it).
"""
import chainer
import numpy as np

_CPU = chainer.backend.CpuDevice()


def float_persistents(link):
    """``[(name, array)]``: every floating-point persistent array under ``link``, by name.

    Names are paths from ``link`` (``'/avg_mean'``, ``'/bn1/avg_var'``); sorting them gives
    every rank the same order whatever the construction order. Integer persistents
    (BatchNormalization's ``N``, a Python int) and uninitialised ones (``None``) are left
    out, as ChainerMN leaves them.
    """
    # Chainer 7 has no Link.namedpersistents: walk the links as ChainerMN does
    named = [(('' if path == '/' else path) + '/' + name, child.__dict__[name])
             for path, child in link.namedlinks() for name in child._persistent]
    return sorted(((name, value) for name, value in named if is_float_array(value)),
                  key=lambda item: item[0])


def is_float_array(value):
    """Whether a persistent or optimizer state is a floating-point NumPy or CuPy array that
    can be written in place."""
    # NumPy or CuPy arrays; NumPy scalars cannot be updated in place, so they are not arrays
    return (hasattr(value, 'dtype') and hasattr(value, 'shape')
            and not isinstance(value, np.generic) and value.dtype.kind == 'f')


def buffer_dtype(arrays):
    """float64 if any array is float64, else float32 (float16 is summed in float32, as
    ChainerMN sums it)."""
    return np.dtype(np.float64 if any(a.dtype == np.float64 for a in arrays) else np.float32)


def pack(arrays, xp, dtype):
    """A new 1-d ``xp`` array of ``dtype``: ``arrays`` raveled and concatenated in order (its
    length is the sum of their sizes). ``arrays`` must live where ``xp`` computes."""
    return xp.concatenate([xp.ravel(a).astype(dtype, copy=False) for a in arrays])


def unpack_mean(buffer, arrays, size):
    """Writes ``buffer / size`` back into ``arrays``, in place, each in its own dtype.

    ``buffer`` is a :func:`pack` of ``arrays`` summed over ``size`` ranks (NumPy or CuPy);
    an array on another device than the buffer gets a copy sent there.
    """
    offset = 0
    for array in arrays:
        mean = buffer[offset:offset + array.size].reshape(array.shape).astype(array.dtype)
        # ChainerMN's _multi_node_mean: the sum in the array's dtype, then *= 1.0 / size
        mean *= 1.0 / size
        array[...] = chainer.backend.get_device_from_array(array).send(mean)
        offset += array.size


def mean_persistents(comm, link):
    """Averages every float persistent under ``link`` over ``comm``'s ranks, in place.

    A collective: every rank calls it with the same network (the same names, shapes and
    dtypes). On a ``pure_nccl`` communicator with every array on the GPU, the packed buffer
    is summed by NCCL on the device; otherwise it is copied to a host NumPy buffer and summed
    by ``MPI_Allreduce``. Returns the bytes of the buffer reduced (0 on one rank or with
    nothing to average).
    """
    named = float_persistents(link)
    if comm.size == 1 or not named:
        return 0
    if chainer.is_debug():
        _check_same_layout(comm, named)
    arrays = [array for _, array in named]
    dtype = buffer_dtype(arrays)
    if _on_nccl(comm, arrays):
        with arrays[0].device:
            buffer = _sum_nccl(comm, pack(arrays, chainer.backends.cuda.cupy, dtype))
            unpack_mean(buffer, arrays, comm.size)
    else:
        from mpi4py import MPI
        buffer = pack([_CPU.send(a) for a in arrays], np, dtype)
        comm.mpi_comm.Allreduce(MPI.IN_PLACE, buffer, op=MPI.SUM)
        unpack_mean(buffer, arrays, comm.size)
    return buffer.nbytes


def _on_nccl(comm, arrays):
    """True for a ``pure_nccl`` communicator with every array a CuPy array."""
    from chainer.backends import cuda
    if not cuda.available:
        return False
    from chainermn.communicators.pure_nccl_communicator import PureNcclCommunicator
    return (isinstance(comm, PureNcclCommunicator)
            and all(isinstance(a, cuda.ndarray) for a in arrays))


def _sum_nccl(comm, buffer):
    """Sums the 1-d CuPy ``buffer`` over the ranks in place with ``comm``'s NCCL communicator
    (ChainerMN's own gradient path); returns it. Runs on the current stream, after the
    kernels that packed it and before those that unpack it."""
    import cupy
    from chainermn import nccl
    from chainermn.communicators._communication_utility import _get_nccl_type_id
    # NCCL communicators belong to the device current when they are made: ChainerMN makes
    # them lazily, once the rank has chosen its GPU
    comm._init_comms()
    stream = cupy.cuda.get_current_stream()
    comm.nccl_comm.allReduce(buffer.data.ptr, buffer.data.ptr, buffer.size,
                             _get_nccl_type_id(buffer.dtype), nccl.NCCL_SUM, stream.ptr)
    return buffer


def _check_same_layout(comm, named):
    # chainer.is_debug() only (one more collective): ranks whose persistents differ would
    # otherwise sum unrelated numbers, or wait for each other forever
    layout = [(name, tuple(a.shape), a.dtype.str) for name, a in named]
    layouts = comm.mpi_comm.allgather(layout)
    if any(other != layout for other in layouts):
        raise ValueError('mean_persistents: the ranks hold different persistents (rank %d: '
                         '%d arrays); every rank must average the same network'
                         % (comm.rank, len(layout)))


class MeanPersistents(chainer.training.Extension):
    """Trainer extension: :func:`mean_persistents` of ``model`` over ``comm``.

    The drop-in replacement of ``chainermn.extensions.AllreducePersistent`` (same default
    trigger and priority: before the snapshot and evaluator writers of the same iteration).
    """

    trigger = 1, 'epoch'
    priority = chainer.training.PRIORITY_WRITER + 1

    def __init__(self, model, comm):
        self.model = model
        self.comm = comm

    def __call__(self, trainer=None):
        mean_persistents(self.comm, self.model)
