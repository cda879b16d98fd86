"""ChainerMN wiring shared by the training scripts: one MPI process per GPU (or CPU core).

The order of start-up matters:
1. :func:`start_forkserver` before the communicator exists (ChainerMN issue #278:
   ``MultiprocessIterator`` workers forked after MPI initialisation crash or hang,
   notably over InfiniBand).
2. :func:`create_communicator`: ``pure_nccl`` where CUDA is available (the papers' choice),
   ``naive`` otherwise; each process uses GPU ``comm.intra_rank``.
3. :func:`abort_on_exception`: a rank that raises calls ``MPI_Abort`` so the whole job ends
   with a non-zero status within seconds instead of leaving the other ranks hanging in a
   collective (``CHAINERMN_FORCE_ABORT_ON_EXCEPTION`` behaviour, on by default here).
"""
import multiprocessing
import os
import sys

import numpy as np


def start_forkserver():
    """Starts the forkserver used by ``MultiprocessIterator``'s workers, before MPI."""
    if sys.platform.startswith('linux'):
        try:
            multiprocessing.set_start_method('forkserver')
        except RuntimeError:
            pass  # already set (for example by a second call in the same process)
        p = multiprocessing.Process()
        p.start()
        p.join()


def cuda_available():
    try:
        from chainer.backends import cuda
        return cuda.available
    except Exception:  # CuPy missing or broken: a CPU run
        return False


def default_communicator_name():
    return 'pure_nccl' if cuda_available() else 'naive'


def fix_nccl_pack_kernels_for_new_cupy():
    """Lets ChainerMN 7.8.1's gradient packing kernels compile under CuPy >= 10.

    ``pure_nccl`` packs all gradients into one buffer with two CUDA kernels whose source uses
    the ``half`` type. The CuPy ChainerMN was written for made it visible to every kernel;
    newer CuPy (14, on CUDA 13, seen in docs/gpu.md) no longer does, and the kernels fail to
    compile ("identifier half is undefined") at the first AllReduce. We compile the same
    source with ``cuda_fp16.h`` included first. A no-op without CuPy.
    """
    try:
        from chainer.backends import cuda
        from chainermn.communicators import _memory_utility
    except ImportError:
        return
    if not cuda.available or getattr(_memory_utility, '_fp16_include_fixed', False):
        return
    for name in ('_cupy_batched_pack_params', '_cupy_batched_unpack_params'):
        original = getattr(_memory_utility, name)

        def with_fp16_header(original=original):
            raw = cuda.raw
            cuda.raw = lambda code, *args, **kwargs: raw(
                '#include <cuda_fp16.h>\n' + code, *args, **kwargs)
            try:
                return original()
            finally:
                cuda.raw = raw
        setattr(_memory_utility, name, with_fp16_header)
    _memory_utility._fp16_include_fixed = True


def create_communicator(name=None, allreduce_grad_dtype=None):
    """Creates the ChainerMN communicator ``name`` (default: see module docstring).

    ``allreduce_grad_dtype='float16'`` is paper 001's FP16 AllReduce (``pure_nccl`` only).
    """
    import chainermn
    name = name or default_communicator_name()
    if name == 'pure_nccl':
        fix_nccl_pack_kernels_for_new_cupy()
    kwargs = {}
    if allreduce_grad_dtype is not None:
        if name != 'pure_nccl':
            raise ValueError('--allreduce-grad-dtype needs the pure_nccl communicator '
                             '(got %r)' % name)
        kwargs['allreduce_grad_dtype'] = np.dtype(allreduce_grad_dtype)
    return chainermn.create_communicator(name, **kwargs)


def abort_on_exception():
    """Makes an uncaught exception on any rank abort the whole MPI job.

    Set ``CHAINERMN_FORCE_ABORT_ON_EXCEPTION=0`` to opt out (for debugging one rank).
    """
    setting = os.environ.get('CHAINERMN_FORCE_ABORT_ON_EXCEPTION')
    if setting == '0':
        return
    from chainermn import global_except_hook  # with the variable set, importing adds it
    if setting is None:
        global_except_hook.add_hook()


def scatter_indices(n, comm, seed):
    """Splits ``range(n)``, shuffled with ``seed``, into equal shares, one per rank.

    Returns ``(indices, n_padding)``: this rank's int array, and how many examples were
    repeated in total so that every rank has the same count (ChainerMN's
    ``force_equal_length``; a rank's iterator must not run out before the others').
    """
    import chainermn
    shard = chainermn.scatter_dataset(np.arange(n), comm, shuffle=True, seed=seed)
    indices = np.asarray([shard[i] for i in range(len(shard))], dtype=np.int64)
    n_padding = len(shard) * comm.size - n
    return indices, n_padding
