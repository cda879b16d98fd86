"""A guard, for tests: only host memory may reach mpi4py's buffer methods.

The MPICH this project installs is not CUDA-aware. Given a ctypes array over a device pointer
(what ChainerMN's ``_memory_utility`` makes of a CuPy array), an object exporting
``__cuda_array_interface__`` or an ``MPI.buffer`` made from a raw address, ``MPI_Allreduce``
and friends read device memory as host memory: a crash or silent garbage, on GPU ranks only,
so a CPU test run never sees it. With ``CHAINER_YOLO_DIST_CHECK_MPI_BUFFERS=1`` (the test
suite sets it for every process it launches), :func:`install_if_requested` makes every
ChainerMN communicator's ``mpi_comm`` a :func:`checked` one, which raises ``TypeError`` on
any such buffer on the CPU as well.

The checked communicator is an ``mpi4py.MPI.Intracomm`` subclass sharing the original's
handle (not a duplicate): every method, attribute and ``isinstance`` test behaves as before,
and the buffer methods (every upper-case method with a ``buf``, ``sendbuf`` or ``recvbuf``
argument, found from mpi4py's own signatures) check their buffers first; communicators
split from it are checked too. A ctypes array is refused even over host memory, since nothing
tells its address from a device one: ChainerMN's ``non_cuda_aware`` communicator, which stages
through pinned host memory that way, does not pass the guard (this project uses ``naive`` and
``pure_nccl``).
"""
import array
import ctypes
import functools
import inspect
import mmap
import os

import numpy as np

ENV = 'CHAINER_YOLO_DIST_CHECK_MPI_BUFFERS'

_CTYPES = (ctypes.Array, ctypes._SimpleCData, ctypes.Structure, ctypes.Union, ctypes._Pointer)
_HOST_TYPES = (np.ndarray, np.generic, bytes, bytearray, array.array, mmap.mmap)


def install_if_requested():
    """:func:`install` when ``CHAINER_YOLO_DIST_CHECK_MPI_BUFFERS=1``; returns whether it is
    installed."""
    if os.environ.get(ENV) == '1':
        install()
        return True
    return False


def install():
    """Wraps ``MpiCommunicatorBase.__init__`` (once): after it, ``self.mpi_comm`` is checked.

    Only after: ChainerMN's own set-up (``_init_ranks``) runs on the original. Communicators
    made later by ``comm.split()`` or ``chainermn.create_communicator(name, mpi_comm=...)``
    pass through the same ``__init__``, so they are checked too, as are the mpi4py
    communicators split from a checked one.
    """
    from chainermn.communicators import mpi_communicator_base
    cls = mpi_communicator_base.MpiCommunicatorBase
    original = cls.__init__
    if getattr(original, '_checks_host_buffers', False):
        return

    @functools.wraps(original)
    def __init__(self, mpi_comm, *args, **kwargs):
        original(self, mpi_comm, *args, **kwargs)
        self.mpi_comm = checked(self.mpi_comm)

    __init__._checks_host_buffers = True
    cls.__init__ = __init__


def checked(mpi_comm):
    """``mpi_comm`` as a buffer-checking ``Intracomm`` sharing its handle; other kinds
    (intercommunicators, topologies, ``COMM_NULL``, an already checked one) are returned
    unchanged."""
    from mpi4py import MPI
    if type(mpi_comm) is not MPI.Intracomm or mpi_comm == MPI.COMM_NULL:
        return mpi_comm
    return checked_class()(mpi_comm)


def buffer_methods(comm_class):
    """``{name: (signature, buffer parameter names)}`` of ``comm_class``'s upper-case methods
    taking a buffer (``Allreduce``: ``('sendbuf', 'recvbuf')``; ``Bcast``: ``('buf',)``)."""
    methods = {}
    for name in dir(comm_class):
        if not name[:1].isupper():
            continue
        try:
            signature = inspect.signature(getattr(comm_class, name))
        except (TypeError, ValueError):  # not a method, or one without a signature
            continue
        params = tuple(p for p in signature.parameters if p.endswith('buf'))
        if params:
            methods[name] = (signature, params)
    return methods


@functools.lru_cache(maxsize=None)
def checked_class():
    """The ``mpi4py.MPI.Intracomm`` subclass whose buffer methods check their buffers."""
    from mpi4py import MPI
    namespace = {'__doc__': 'An Intracomm whose buffer methods refuse non-host memory.'}
    for name, (signature, params) in buffer_methods(MPI.Intracomm).items():
        namespace[name] = _checking(getattr(MPI.Intracomm, name), name, signature, params)
    # communicators made from a checked one are checked too (Dup and Clone already return
    # the caller's class): ChainerMN's hierarchical communicators Split theirs lazily
    for name in ('Split', 'Split_type', 'Create', 'Create_group'):
        namespace[name] = _checking_result(getattr(MPI.Intracomm, name))
    return type('HostBufferIntracomm', (MPI.Intracomm,), namespace)


def _checking_result(method):
    @functools.wraps(method)
    def checking_result(self, *args, **kwargs):
        return checked(method(self, *args, **kwargs))
    return checking_result


def _checking(method, name, signature, params):
    @functools.wraps(method)
    def checking(self, *args, **kwargs):
        try:
            bound = signature.bind(self, *args, **kwargs).arguments
        except TypeError:  # wrong arguments: let mpi4py say what is wrong with them
            bound = {}
        for param in params:
            if param in bound:
                check_host_buffer(bound[param], name, param)
        return method(self, *args, **kwargs)
    return checking


def check_host_buffer(buf, method='MPI', param='buf'):
    """Raises ``TypeError`` unless ``buf`` is a host buffer spec for mpi4py.

    Accepted: ``None``, ``MPI.IN_PLACE``, NumPy arrays and scalars, ``bytes``, ``bytearray``,
    ``array.array``, ``mmap``, a ``memoryview`` or ``MPI.buffer`` over one of those (or over
    mpi4py's own allocation), and the list forms ``[data, type]``, ``[data, count, type]``,
    ``[data, counts, displs, type]`` with such a ``data``.
    """
    from mpi4py import MPI
    if buf is None or buf is MPI.IN_PLACE:
        return
    data = buf[0] if isinstance(buf, (list, tuple)) and buf else buf
    if not _is_host(data, MPI):
        raise TypeError('%s: %s is %s, not host memory: this MPI is not CUDA-aware; pass a '
                        'NumPy array (device arrays go through NCCL or to_cpu first)'
                        % (method, param, _describe(buf, data)))


def _is_host(data, MPI):
    if isinstance(data, np.ndarray):
        return _owner_is_host(data)
    if isinstance(data, _HOST_TYPES):
        return True
    if isinstance(data, MPI.buffer):  # obj is None when made from a raw address
        owner = data.obj
        return owner is not None and (type(owner).__module__ == MPI.__name__
                                      or _is_host(owner, MPI))
    if isinstance(data, memoryview):
        return data.obj is not None and _is_host(data.obj, MPI)
    return False  # ctypes, __cuda_array_interface__, DLPack, anything unknown


def _owner_is_host(array):
    # a NumPy array over a ctypes object or a CUDA array (np.ctypeslib.as_array of a device
    # pointer) is device memory in NumPy clothing
    base = array.base
    while base is not None:
        if isinstance(base, _CTYPES) or hasattr(base, '__cuda_array_interface__'):
            return False
        base = (base.base if isinstance(base, np.ndarray)
                else base.obj if isinstance(base, memoryview) else None)
    return True


def _describe(buf, data):
    what = _kind(data)
    return what if data is buf else 'a %s whose data is %s' % (type(buf).__name__, what)


def _kind(data):
    viewer = isinstance(data, memoryview) or type(data).__name__ == 'buffer'  # MPI.buffer
    owner = getattr(data, 'obj', None) if viewer else None
    kind = ('a ctypes object' if isinstance(data, _CTYPES)
            else 'a CUDA array' if hasattr(data, '__cuda_array_interface__')
            else 'a NumPy array over ctypes or device memory' if isinstance(data, np.ndarray)
            else 'a %s over %s' % (type(data).__name__, _kind(owner)) if owner is not None
            else 'a %s over a raw address' % type(data).__name__ if viewer
            else 'an object of unknown memory')
    return '%s (%s.%s)' % (kind, type(data).__module__, type(data).__qualname__)
