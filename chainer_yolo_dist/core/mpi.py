"""Start-up and the communicator: one MPI process per GPU (or CPU core).

The order of start-up matters:
1. :func:`start_forkserver` before the communicator exists (ChainerMN issue #278:
   ``MultiprocessIterator`` workers forked after MPI initialisation crash or hang,
   notably over InfiniBand).
2. :func:`create_communicator`: ``pure_nccl`` where a CUDA GPU is visible (the papers' choice),
   ``naive`` otherwise; :func:`~.devices.select_device` then gives each training rank its GPU.
3. :func:`abort_on_exception`: a rank that raises, in any thread, calls ``MPI_Abort`` so the
   whole job ends with a non-zero status within seconds instead of leaving the other ranks
   hanging in a collective (on by default; ``CHAINERMN_FORCE_ABORT_ON_EXCEPTION=0`` opts out).
"""
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback

import numpy as np


def start_forkserver(ignore_signals=()):
    """Starts the forkserver used by ``MultiprocessIterator``'s workers, before MPI.

    A training run (``core.cli.run``) passes its stop signals as ``ignore_signals``: the
    forkserver and every loader worker it forks ignore them, since a scheduler signals every
    process of the job at its time limit, and the rank, not its helpers, decides when to stop
    (a worker that died of the signal would end the job before the snapshot). Workers still
    end with their rank: ``MultiprocessIterator`` closes and joins its pool. A
    ``multiprocessing.Pool`` in such a process must be closed and joined too, not only
    terminated: ``Pool.terminate`` ends live workers with SIGTERM, which they ignore.
    """
    if sys.platform.startswith('linux'):
        try:
            multiprocessing.set_start_method('forkserver')
        except RuntimeError:
            pass  # already set (for example by a second call in the same process)
        numbers = [getattr(signal, name) for name in ignore_signals]
        # An ignored disposition survives fork and exec: set it while the server starts.
        previous = [signal.signal(number, signal.SIG_IGN) for number in numbers]
        try:
            p = multiprocessing.Process()
            p.start()
            p.join()
        finally:
            for number, handler in zip(numbers, previous):
                signal.signal(number, handler)


def cuda_available():
    """Whether this process sees a CUDA GPU: CuPy importing is not enough (a GPU-less login
    or CPU node may have it installed)."""
    from chainer_yolo_dist.core.devices import gpu_count
    return gpu_count() > 0


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
    from chainer_yolo_dist.core import host_buffers
    # $CHAINER_YOLO_DIST_CHECK_MPI_BUFFERS=1 (the test suite, the GPU check): every buffer a
    # ChainerMN communicator hands to mpi4py must be host memory.
    host_buffers.install_if_requested()
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


#: Where the failing rank also writes its message (set once the run directory is known).
ERROR_FILE = None
#: Seconds between printing the message and MPI_Abort, so that mpiexec forwards the output
#: before it kills the job (without it the message was lost in about 1 run of 10).
FLUSH_SECONDS = 0.5


#: How often a rank waiting in :func:`wait_idle` looks whether the others have arrived.
IDLE_POLL_SECONDS = 0.005


def wait_idle(comm):
    """A barrier that sleeps while it waits, where MPI's blocking collectives poll.

    MPICH's and Open MPI's ranks spin on a core while they wait in a collective. When the
    ranks outnumber the cores (the rehearsal's 4 ranks on 2 cores, a login node), the ranks
    waiting for rank 0 to build the datasets took half its CPU time; before such a wait every
    rank enters this barrier (``MPI_Ibarrier``, tested every :data:`IDLE_POLL_SECONDS`).
    """
    request = comm.mpi_comm.Ibarrier()
    while not request.Test():
        time.sleep(IDLE_POLL_SECONDS)


def abort(message):
    """Prints ``message`` on stderr, writes it to :data:`ERROR_FILE`, then ends the whole MPI
    job (``MPI_Abort``): the other ranks are killed wherever they wait.

    The message names the failing rank and its host (``rank R on HOST: ...``; MPICH's own
    banner names only a process id): a ``rank R:`` it starts a line with gets the host, and a
    message naming neither gets the prefix (after a leading ``error:``)."""
    rank = _world_rank()
    message = _with_origin(message, rank)
    text = message if message.endswith('\n') else message + '\n'
    try:
        sys.stdout.flush()
        sys.stderr.write(text)
        sys.stderr.flush()
        if ERROR_FILE:
            with open('%s.rank%d' % (ERROR_FILE, rank), 'w') as f:
                f.write(text)
    finally:
        time.sleep(FLUSH_SECONDS)
        try:
            from mpi4py import MPI
            MPI.COMM_WORLD.Abort(1)
        finally:
            os._exit(1)


def _with_origin(message, rank):
    """``message`` naming ``rank R on HOST``, unless it does already (see :func:`abort`)."""
    import socket
    origin = 'rank %d on %s' % (rank, socket.gethostname())
    if origin + ':' in message:
        return message
    named = 'rank %d: ' % rank
    lines = message.split('\n')
    for i in reversed(range(len(lines))):  # the last: a traceback may hold anything
        line = lines[i]
        for lead in ('', 'error: '):
            if line.startswith(lead + named):
                lines[i] = lead + origin + ': ' + line[len(lead + named):]
                return '\n'.join(lines)
    if message.startswith('error: '):
        return 'error: %s: %s' % (origin, message[len('error: '):])
    return '%s: %s' % (origin, message)


def _world_rank():
    try:
        from mpi4py import MPI
        return MPI.COMM_WORLD.Get_rank()
    except Exception:  # MPI not importable: a single process
        return 0


class SetupError(Exception):
    """A user's mistake found before training (bad option, missing or bad data, a preset or
    pretrained file that does not fit), raised on every rank alike: :func:`main` prints it as
    one ``error: ...`` line from rank 0 and exits with status 2, without a traceback."""


#: Exit status of a run stopped by a signal after writing its snapshot (EX_TEMPFAIL: "try
#: again"; core/preemption.py): a job script can requeue on it.
PREEMPTED_STATUS = 75


class Preempted(Exception):
    """Raised on every training rank at the iteration boundary after a stop signal, once
    the snapshot is written (``core.preemption.raise_if_stopped``); :func:`main` turns it
    into :data:`PREEMPTED_STATUS`."""

    def __init__(self, message, report=True, end_world=False):
        super().__init__(message)
        #: Whether this rank prints the message (the first training rank does).
        self.report = report
        #: True when ranks that run no trainer (parameter servers) must be ended too.
        self.end_world = end_world


def main(run, debug=False):
    """Runs ``run()`` (a script's body) and returns its exit status; a :class:`SetupError`
    becomes ``error: MESSAGE`` on rank 0's stderr and status 2 (``debug``: the traceback)."""
    try:
        return run()
    except Preempted as e:
        # Every training rank stops here at the same iteration, its snapshot written.
        if e.report:
            sys.stderr.write('%s\n' % e)
            sys.stderr.flush()
        if e.end_world:  # parameter servers run no trainer: they are ended with the job
            time.sleep(FLUSH_SECONDS)
            from mpi4py import MPI
            MPI.COMM_WORLD.Abort(PREEMPTED_STATUS)
        return PREEMPTED_STATUS
    except SetupError as e:
        if debug:
            raise
        if _world_rank() == 0:
            sys.stderr.write('error: %s\n' % e)
            sys.stderr.flush()
        return 2


def _hook(exctype, value, tb, where='main thread'):
    from chainer_yolo_dist.core.finite import NonFiniteError
    if issubclass(exctype, NonFiniteError):
        # A diverged run is a result, not a bug: the message says where, no traceback.
        abort('error: rank %d: %s: %s' % (_world_rank(), exctype.__name__, value))
    detail = ''.join(traceback.format_exception(exctype, value, tb))
    abort('%s\nrank %d: uncaught %s in the %s; ending the whole MPI job'
          % (detail.rstrip(), _world_rank(), exctype.__name__, where))


def _thread_hook(args):
    if args.exc_type is SystemExit:
        return
    _hook(args.exc_type, args.exc_value, args.exc_traceback,
          'thread %r' % getattr(args.thread, 'name', '?'))


def abort_on_exception():
    """Makes an uncaught exception on any rank, in any thread, abort the whole MPI job.

    Covers the main thread (``sys.excepthook``) and every other thread
    (``threading.excepthook``): a data-loading failure surfaces in the iterator's prefetch
    thread, where ChainerMN's own hook never sees it and the other ranks would wait forever.
    Set ``CHAINERMN_FORCE_ABORT_ON_EXCEPTION=0`` to opt out (for debugging one rank).
    """
    if os.environ.get('CHAINERMN_FORCE_ABORT_ON_EXCEPTION') == '0':
        return
    sys.excepthook = _hook
    threading.excepthook = _thread_hook
