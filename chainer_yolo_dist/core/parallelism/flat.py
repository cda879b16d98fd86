"""A link's parameters (or gradients) as one flat vector, for MPI messages and collectives.

The asynchronous, periodic-averaging and one-step-stale modes all move parameters or
gradients between ranks as one contiguous 1-d array (one message or one ``Allreduce`` instead
of one per parameter, as ChainerMN's ``naive`` communicator packs its buffers). The order is
``sorted(link.namedparams())``, the order ChainerMN's communicators use, so it is the same on
every rank for the same network whatever the construction order.

Messages are host NumPy arrays: the MPI this project installs is not CUDA-aware, so device
memory must never reach mpi4py. :class:`PackedTransfer` moves a whole list of arrays between
their device and one host vector with **one** copy each way: on a GPU the arrays are packed
into one device vector by one ``cupy.concatenate``, copied to the host in one piece, and on
the way back copied to the device in one piece and unpacked there (device to device). Copying
each of YOLOv3's 222 parameter arrays on its own, as this module did before, paid a
synchronising copy per array every step. Host (NumPy) arrays are copied straight into (and out
of) the host vector, one slice each, with no other buffer.
"""
import chainer
import numpy as np


class _CupyOps(object):
    """The device side of a :class:`PackedTransfer` on CuPy arrays (one GPU per rank).

    The only code that touches CuPy. Kept to these few calls so that tests can stand in a
    NumPy double for it (``_ops_for``) and run every other line of the device path on a CPU.
    Callers enter :meth:`device` first, so that buffers are made and kernels run on the GPU
    holding the arrays whatever GPU is current.
    """

    def __init__(self, cupy):
        self.cupy = cupy

    def device(self, array):
        """A context manager making ``array``'s GPU current (a ``cupy.cuda.Device``)."""
        return array.device

    def same_device(self, a, b):
        return a.device.id == b.device.id

    def empty(self, size, dtype):
        return self.cupy.empty(size, dtype)

    def zeros(self, size, dtype):
        return self.cupy.zeros(size, dtype)

    def host_empty(self, size, dtype):
        # a NumPy array over page-locked memory: copies to and from the GPU run at the
        # link's full rate without the driver's intermediate pageable-memory copy
        import cupyx
        return cupyx.empty_pinned(size, dtype)

    def concatenate(self, parts, out):
        """``out[...] = concatenate(parts)``: one kernel for many same-dtype 1-d parts."""
        self.cupy.concatenate(parts, out=out)

    def download(self, device_array, host):
        """One device->host copy of the whole (size,) ``device_array`` into ``host``."""
        device_array.get(out=host)
        # get() is synchronous from CuPy 13 on; older ones return before a copy issued on a
        # non-default stream has ended, and MPI reads ``host`` next
        self.cupy.cuda.get_current_stream().synchronize()

    def upload(self, host, device_array):
        """One host->device copy of the whole (size,) ``host`` into ``device_array``."""
        device_array.set(host)
        # set() from page-locked memory may return before the copy has read ``host``, and
        # MPI may write into it next (a parameter server's reply lands in the same buffer)
        self.cupy.cuda.get_current_stream().synchronize()


_CUPY_OPS = []


def _ops_for(array):
    """None for a NumPy array (the host path); the CuPy operations for a CuPy array."""
    if isinstance(array, np.ndarray):
        return None
    from chainer.backends import cuda
    if cuda.available and isinstance(array, cuda.ndarray):
        if not _CUPY_OPS:
            _CUPY_OPS.append(_CupyOps(cuda.cupy))
        return _CUPY_OPS[0]
    raise TypeError('cannot move a %s through a host buffer: NumPy or CuPy arrays only'
                    % type(array).__name__)


def host_buffer(size, dtype, like=None):
    """An uninitialised host NumPy vector ``(size,)`` for messages: page-locked when ``like``
    (an array it will be copied to or from) is on a GPU, plain NumPy otherwise."""
    ops = None if like is None else _ops_for(like)
    return np.empty(size, dtype) if ops is None else ops.host_empty(size, dtype)


class PackedTransfer(object):
    """Moves a list of arrays to one flat host vector and back, in one copy each way.

    The arrays (NumPy, or CuPy on one GPU) are concatenated in list order, raveled; their
    sizes must add up to the host vector's length. Keep one object per stream of messages (a
    mode's parameters, its gradients): on a GPU it keeps its device *staging* vector for the
    next call while the size, dtype and GPU stay the same, so a step allocates nothing.

    Host arrays: :meth:`pack` writes each array into its slice of ``out`` and :meth:`unpack`
    reads it back, with no other buffer (what this module always did on CPUs).

    Device arrays: :meth:`pack` concatenates them into the staging vector (one kernel) and
    copies it to ``out`` (one device->host copy); :meth:`unpack` copies the host vector into
    the staging vector (one host->device copy) and then into each array on the device.
    With ``accumulate`` the sum is kept on the device (one in-place add per array, no second
    device vector) and, with ``defer``, copied to the host only by :meth:`flush`: a parameter
    server's worker that sums P steps before a push makes one copy per push, not per step.

    Attributes:
        staging: the device vector ``(size,)``, or None (host arrays, or nothing moved yet).
    """

    def __init__(self):
        self.staging = None
        self._holds_pack = False  # staging holds the last pack (an accumulation adds to it)
        self._pending = False  # staging holds a pack not yet copied to the host (deferred)

    def _staging_for(self, ops, like, size, dtype):
        staging = self.staging
        if (staging is None or staging.size != size or staging.dtype != dtype
                or not ops.same_device(staging, like)):
            if self._pending:
                raise RuntimeError('a deferred pack was never flushed to the host')
            staging = self.staging = ops.empty(size, dtype)
            self._holds_pack = False
        return staging

    def pack(self, arrays, out, sizes=None, accumulate=False, defer=False):
        """Writes (or with ``accumulate`` adds) the raveled ``arrays`` into ``out``.

        Args:
            arrays: list of arrays; ``None`` (a parameter without a gradient) counts as zeros
                of its ``sizes`` entry.
            out: host NumPy vector ``(sum(sizes),)``; its dtype is the sum's dtype.
            sizes: list of int, the arrays' sizes (needed only where an entry is None).
            accumulate: add to the previous pack of this object instead of overwriting.
            defer: device arrays only: leave the result on the device until :meth:`flush`
                (``out`` is not written now). Host arrays are always written at once.

        Returns:
            out.
        """
        if sizes is None:
            sizes = [a.size for a in arrays]
        if sum(sizes) != out.size:
            raise ValueError('arrays of %d elements in all do not fill a vector of %d'
                             % (sum(sizes), out.size))
        like = next((a for a in arrays if a is not None), self.staging)
        ops = None if like is None else _ops_for(like)
        _check_one_device(ops, like, arrays)
        if ops is None:
            _pack_host(arrays, sizes, out, accumulate)
            return out
        with ops.device(like):
            staging = self._staging_for(ops, like, out.size, out.dtype)
            if accumulate:
                if not self._holds_pack:
                    raise RuntimeError('nothing to accumulate onto: pack without '
                                       'accumulate first')
                offset = 0
                for a, n in zip(arrays, sizes):
                    if a is not None:
                        staging[offset:offset + n] += a.ravel()
                    offset += n
            else:
                ops.concatenate([ops.zeros(n, out.dtype) if a is None else a.ravel()
                                 for a, n in zip(arrays, sizes)], staging)
            self._holds_pack = True
            self._pending = bool(defer)
            if not defer:
                ops.download(staging, out)
        return out

    def flush(self, out):
        """Copies a deferred pack to the host vector ``out`` (one copy); otherwise does
        nothing (host arrays were written at once). Returns out."""
        if self._pending:
            ops = _ops_for(self.staging)
            with ops.device(self.staging):
                ops.download(self.staging, out)
            self._pending = False
        return out

    def unpack(self, flat, arrays):
        """``arrays[i][...] = flat[offset_i:offset_i + size_i].reshape(shape_i)``, in place.

        Args:
            flat: host NumPy vector ``(sum of the arrays' sizes,)``.
            arrays: list of arrays (none None), written in their own dtype.
        """
        if sum(a.size for a in arrays) != flat.size:
            raise ValueError('a vector of %d elements does not fill arrays of %d'
                             % (flat.size, sum(a.size for a in arrays)))
        ops = _ops_for(arrays[0])
        _check_one_device(ops, arrays[0], arrays)
        if ops is None:
            offset = 0
            for a in arrays:
                a[...] = flat[offset:offset + a.size].reshape(a.shape)
                offset += a.size
            return
        if self._pending:
            raise RuntimeError('unpacking would overwrite a deferred pack not yet flushed')
        with ops.device(arrays[0]):
            staging = self._staging_for(ops, arrays[0], flat.size, flat.dtype)
            ops.upload(flat, staging)
            self._holds_pack = False
            offset = 0
            for a in arrays:
                a[...] = staging[offset:offset + a.size].reshape(a.shape)
                offset += a.size


def _pack_host(arrays, sizes, out, accumulate):
    # NumPy arrays: straight into their slices of the host vector (ravel is a view of a
    # contiguous array), so there is no other copy
    offset = 0
    for a, n in zip(arrays, sizes):
        view = out[offset:offset + n]
        if a is None:
            if not accumulate:
                view[...] = 0
        elif accumulate:
            view += a.ravel()
        else:
            view[...] = a.ravel()
        offset += n


def _check_one_device(ops, like, arrays):
    # one staging vector serves one GPU; a list spread over GPUs, or mixing host and device
    # arrays, would need one per device
    for a in arrays:
        if a is not None and (_ops_for(a) is not ops
                              or (ops is not None and not ops.same_device(a, like))):
            raise ValueError('the arrays of one packed transfer must all be on one device')


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


def pack_params(link, out, transfer=None):
    """Copies ``link``'s parameters into the host vector ``out`` (layout order); returns out.

    ``transfer``: a :class:`PackedTransfer` to reuse across calls (default: a new one).
    """
    return (transfer or PackedTransfer()).pack([p.array for p in _params(link)], out)


def unpack_params(link, flat, transfer=None):
    """Copies the host vector ``flat`` into ``link``'s parameters, in place."""
    (transfer or PackedTransfer()).unpack(flat, [p.array for p in _params(link)])


def pack_grads(link, out, accumulate=False, defer=False, transfer=None):
    """Copies (or with ``accumulate``, adds) ``link``'s gradients into ``out``; returns out.

    A parameter without a gradient (unused in this forward pass) counts as zero, as
    ChainerMN's ``zero_fill`` does. ``accumulate`` and ``defer`` are
    :meth:`PackedTransfer.pack`'s: on a GPU an accumulation adds to the previous pack of the
    same ``transfer``, and a deferred one reaches ``out`` at ``transfer.flush(out)``.
    """
    params = _params(link)
    return (transfer or PackedTransfer()).pack(
        [p.grad for p in params], out, sizes=[p.array.size for p in params],
        accumulate=accumulate, defer=defer)


def unpack_grads(link, flat, transfer=None):
    """Sets ``link``'s gradients to the values of ``flat`` (copies; allocates missing ones)."""
    params = _params(link)
    for p in params:
        if p.grad is None:
            # a zero gradient on the parameter's own device, then overwritten like the others
            device = chainer.backend.get_device_from_array(p.array)
            with chainer.using_device(device):
                p.grad = device.xp.zeros_like(p.array)
    (transfer or PackedTransfer()).unpack(flat, [p.grad for p in params])


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
    number of bytes broadcast. ``mpi_comm`` is an mpi4py communicator.

    One packed device->host copy on ``root``, one host->device copy on the others (``root``
    keeps its parameters as they are).
    """
    layout = FlatLayout.of(link)
    # once per run: a plain (pageable) host vector, not worth pinning
    flat = np.empty(layout.size, layout.dtype)
    if mpi_comm.rank == root:
        pack_params(link, flat)
    mpi_comm.Bcast(flat, root=root)
    if mpi_comm.rank != root:
        unpack_params(link, flat)
    return flat.nbytes
