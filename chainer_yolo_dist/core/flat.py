"""A link's parameters (or gradients) as one flat vector, for MPI messages and collectives.

The asynchronous, periodic-averaging and one-step-stale modes all move parameters or
gradients between ranks as one contiguous 1-d array (one message or one ``Allreduce`` instead
of one per parameter, as ChainerMN's ``naive`` communicator packs its buffers). Messages are host (NumPy)
arrays; parameters on a GPU are copied through the host. The order is
``sorted(link.namedparams())``, the order ChainerMN's communicators use, so it is the same on
every rank for the same network whatever the construction order.
"""
import chainer
import numpy as np

_CPU = chainer.backend.CpuDevice()


def to_host(array):
    """A NumPy view or copy of a NumPy or CuPy array (messages leave from host memory)."""
    return _CPU.send(array)


def assign(dst, host):
    """``dst[...] = host`` for a NumPy or CuPy ``dst`` and a NumPy ``host`` of its shape."""
    if isinstance(dst, np.ndarray):
        dst[...] = host
    else:
        dst[...] = chainer.backend.get_device_from_array(dst).send(
            np.ascontiguousarray(host))


class FlatLayout(object):
    """Names, shapes and offsets of a link's parameters in a flat vector.

    Args:
        entries: list of ``(name, shape)``, in flat order.
        dtype: the parameters' common dtype (float32, or float64 in the equivalence tests).

    Attributes:
        names (list of str), shapes (list of tuple), sizes (list of int),
        offsets (list of int): parameter ``i`` is ``flat[offsets[i]:offsets[i] + sizes[i]]``,
        reshaped to ``shapes[i]``.
        size (int): length of the flat vector.
    """

    def __init__(self, entries, dtype):
        self.names = [name for name, _ in entries]
        self.shapes = [tuple(int(d) for d in shape) for _, shape in entries]
        self.sizes = [int(np.prod(shape, dtype=np.int64)) for shape in self.shapes]
        self.offsets = [int(o) for o in np.cumsum([0] + self.sizes[:-1])]
        self.size = int(sum(self.sizes))
        self.dtype = np.dtype(dtype)

    @classmethod
    def of(cls, link):
        """The layout of ``link``; every parameter must be initialised, all of one dtype."""
        params = sorted(link.namedparams())
        missing = [name for name, p in params if p.array is None]
        if missing:
            raise ValueError(
                'parameters %s are not initialised: run one forward pass (or give the '
                'links their input sizes) before setting up a distributed optimizer'
                % ', '.join(missing[:5]))
        if not params:
            raise ValueError('%s has no parameters' % type(link).__name__)
        dtypes = sorted(set(str(p.array.dtype) for _, p in params))
        if len(dtypes) != 1:
            raise ValueError('parameters of mixed dtypes %s cannot share one flat buffer'
                             % dtypes)
        return cls([(name, p.array.shape) for name, p in params], dtypes[0])

    def to_tuple(self):
        """A picklable description, for broadcasting the layout to ranks without the model."""
        return (list(zip(self.names, self.shapes)), self.dtype.str)

    @classmethod
    def from_tuple(cls, description):
        entries, dtype = description
        return cls(entries, dtype)

    def check(self, link):
        """Raises ValueError unless ``link`` has exactly this layout."""
        other = FlatLayout.of(link)
        if other.names != self.names or other.shapes != self.shapes:
            raise ValueError('the model differs from the one the flat layout was made for')


def _params(link):
    return [p for _, p in sorted(link.namedparams())]


def pack_params(link, out):
    """Copies ``link``'s parameters into the 1-d array ``out`` (layout order); returns out."""
    offset = 0
    for p in _params(link):
        n = p.array.size
        out[offset:offset + n] = to_host(p.array).ravel()
        offset += n
    return out


def unpack_params(link, flat):
    """Copies the 1-d array ``flat`` into ``link``'s parameters, in place."""
    offset = 0
    for p in _params(link):
        n = p.array.size
        assign(p.array, flat[offset:offset + n].reshape(p.array.shape))
        offset += n


def pack_grads(link, out, accumulate=False):
    """Copies (or with ``accumulate``, adds) ``link``'s gradients into ``out``; returns out.

    A parameter without a gradient (unused in this forward pass) counts as zero, as
    ChainerMN's ``zero_fill`` does.
    """
    offset = 0
    for p in _params(link):
        n = p.array.size
        view = out[offset:offset + n]
        if p.grad is None:
            if not accumulate:
                view[...] = 0
        elif accumulate:
            view += to_host(p.grad).ravel()
        else:
            view[...] = to_host(p.grad).ravel()
        offset += n
    return out


def unpack_grads(link, flat):
    """Sets ``link``'s gradients to the values of ``flat`` (copies; allocates missing ones)."""
    offset = 0
    for p in _params(link):
        n = p.array.size
        g = flat[offset:offset + n].reshape(p.array.shape)
        if p.grad is None:
            p.grad = chainer.backend.get_device_from_array(p.array).send(g.copy())
        else:
            assign(p.grad, g)
        offset += n


def shard_bounds(layout, n_shards):
    """Splits the flat vector into ``n_shards`` contiguous pieces cut at parameter boundaries.

    Cutting only between parameters keeps each parameter whole on one server, so per-layer
    hooks (``GradientLARS`` takes each parameter's norm) act on whole layers there as they do
    in one process. The cuts are chosen greedily so that the pieces are about equal in size
    (Downpour SGD shards the model across its parameter servers the same way).

    Returns:
        list of ``n_shards + 1`` ints (flat offsets); shard ``s`` is ``[b[s], b[s + 1])``.
    """
    n_params = len(layout.sizes)
    if not 1 <= n_shards <= n_params:
        raise ValueError('cannot split %d parameters into %d shards (one server needs at '
                         'least one whole parameter)' % (n_params, n_shards))
    ends = np.cumsum(layout.sizes)
    bounds = [0]
    for s in range(1, n_shards):
        target = layout.size * s / n_shards
        # the parameter boundary closest to the ideal cut, leaving at least one
        # parameter for each of the shards still to come
        first = layout.offsets.index(bounds[-1]) + 1
        last = n_params - (n_shards - s)
        candidates = list(range(first, last + 1))
        best = min(candidates, key=lambda i: abs(ends[i - 1] - target))
        bounds.append(int(ends[best - 1]))
    bounds.append(layout.size)
    return bounds


def mpi_comm_of(comm):
    """The mpi4py communicator of a ChainerMN communicator (or ``comm`` itself)."""
    return getattr(comm, 'mpi_comm', comm)


def bcast_params(mpi_comm, link, root=0):
    """Gives every rank ``root``'s parameters (one ``Bcast`` of the flat vector); returns the
    number of bytes broadcast. ``mpi_comm`` is an mpi4py communicator."""
    layout = FlatLayout.of(link)
    flat = np.empty(layout.size, layout.dtype)
    if mpi_comm.rank == root:
        pack_params(link, flat)
    mpi_comm.Bcast(flat, root=root)
    unpack_params(link, flat)
    return flat.nbytes
