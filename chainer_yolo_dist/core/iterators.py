"""The iterators over a rank's training share and over a validation share."""
import threading
import time

import chainer

from chainer_yolo_dist.core import mpi, sharding
from chainer_yolo_dist.core.sampling import (EpochDrawSampler, EpochOrderSampler,
                                             EpochSampledDataset, draws_per_epoch, stream_seed)

#: Shared memory per MultiprocessIterator for passing batches from the workers (bytes).
SHARED_MEMORY = 100 * 1000 * 1000


def train_iterator(shard, batchsize, seed, loaderjob, shuffle=True, order_sampler=None,
                   persistent=True):
    """An iterator with reproducible epochs over ``shard``, an
    :class:`~chainer_yolo_dist.core.sampling.EpochSampledDataset`.

    ``loaderjob`` worker processes (``MultiprocessIterator``) load and augment the examples;
    0 loads them in this process. ``order_sampler`` replaces the default per-epoch permutation
    of the shard (e.g. :class:`~chainer_yolo_dist.core.sampling.EpochDrawSampler`).
    ``persistent=False`` re-creates the worker processes at every
    epoch boundary (:class:`EpochRestartingIterator`); the batches are the same either way.
    """
    if order_sampler is None:
        order_sampler = EpochOrderSampler(shard.n, seed=seed, shuffle=shuffle)
    if loaderjob:
        cls = WatchedMultiprocessIterator if persistent else EpochRestartingIterator
        return cls(shard, batchsize, n_processes=loaderjob, order_sampler=order_sampler,
                   shared_mem=SHARED_MEMORY)
    return chainer.iterators.SerialIterator(shard, batchsize, order_sampler=order_sampler)


class WatchedMultiprocessIterator(chainer.iterators.MultiprocessIterator):
    """``MultiprocessIterator`` whose worker processes are watched: if one dies (killed, out
    of memory), the batch it was loading is lost and the iterator would wait forever, so the
    job is ended (:func:`~chainer_yolo_dist.core.mpi.abort`) with the worker named.

    A failure *inside* a worker (an unreadable image) is raised in the iterator's prefetch
    thread, which :func:`~chainer_yolo_dist.core.mpi.abort_on_exception` covers.
    """

    #: Seconds between two looks at the workers.
    POLL_SECONDS = 0.5

    def __next__(self):
        batch = super().__next__()
        loop = self._prefetch_loop
        if loop is not None and loop is not getattr(self, '_watched', None):
            self._watched = loop  # a new loop (at start, after a reset) gets its own watcher
            threading.Thread(target=self._watch, args=(loop,), daemon=True,
                             name='loader-watchdog').start()
        return batch

    next = __next__  # the updater calls next(), which the base class binds to its own

    def _watch(self, loop):
        pool = loop._pool
        pids = {p.pid for p in pool._pool}
        while not loop._comm.is_terminated:
            time.sleep(self.POLL_SECONDS)
            # The pool replaces a dead worker with a new process; its task is lost.
            gone = pids - {p.pid for p in pool._pool}
            if gone and not loop._comm.is_terminated:
                mpi.abort('a data-loading worker process (pid %s) of rank %d died; the batch '
                          'it was loading is lost: ending the whole MPI job'
                          % (', '.join(str(p) for p in sorted(gone)), mpi._world_rank()))


class EpochRestartingIterator(WatchedMultiprocessIterator):
    """A ``MultiprocessIterator`` whose worker processes end with each epoch and are started
    anew for the next, as PyTorch's ``DataLoader`` does without ``persistent_workers`` (the
    cause of the epoch-boundary stall of paper 004 sec. 4.2, Table 3).

    Chainer's ``MultiprocessIterator`` keeps one pool for the iterator's life and prefetches
    across the epoch boundary, so it has no such stall. Here, once the last batch of an epoch
    has been handed out, the pool and the prefetch thread are ended (the batch they prefetched
    is dropped) and the next call starts a new pool, which must start its processes, receive
    the dataset and load the first batch before it returns. The position in the epochs is
    kept, and with :class:`~chainer_yolo_dist.core.sampling.EpochSampledDataset` every batch
    is the one the persistent iterator would give.
    """

    def __next__(self):
        batch = super().__next__()
        if self.is_new_epoch:
            self._restart_workers()
        return batch

    next = __next__

    def _restart_workers(self):
        state, previous = self._state, self._previous_epoch_detail
        # The communicator first: the watchdog then knows the pool's end is no failure.
        self._comm.terminate()
        self._prefetch_loop.terminate()
        self._initialize_loop()  # new communicator and prefetch loop, started on next()
        self._reset_state(state.current_position, state.epoch, state.is_new_epoch,
                          state.order)
        self._previous_epoch_detail = previous


def worker_iterators(train, transform, settings, comm):
    """The training iterators of this process's workers (``settings.virtual_ranks`` of them).

    Worker ``w`` of the run's ``k`` reads share ``w`` of the shuffled training set
    (:func:`~chainer_yolo_dist.core.sharding.scatter_indices`), augmented with its own random
    streams. The ``settings.loaderjob`` loader processes are divided among the workers (a
    worker left with none loads in this process).

    Returns:
        ``(iterators, n_padding, iterations_per_epoch)``.
    """
    virtual = settings.virtual_ranks
    shares, n_padding = sharding.scatter_indices(len(train), comm, settings.seed, virtual)
    iterators = []
    for v, share in enumerate(shares):
        shard = EpochSampledDataset(sharding.subset(train, share), transform,
                                    seed=stream_seed(settings.seed, comm.rank * virtual + v))
        iterators.append(train_iterator(shard, settings.batchsize, settings.seed,
                                        settings.loaderjob // virtual,
                                        persistent=settings.persistent_workers))
    return iterators, n_padding, (shares[0].end - shares[0].begin) / settings.batchsize


def eval_iterator(dataset, batchsize, loaderjob):
    """One pass over ``dataset`` in order (for evaluation)."""
    if loaderjob:
        return chainer.iterators.MultiprocessIterator(
            dataset, batchsize, repeat=False, shuffle=False, n_processes=loaderjob)
    return chainer.iterators.SerialIterator(dataset, batchsize, repeat=False, shuffle=False)


def drawn_iterator(train, transform, settings, comm, scale, replace=False, resample='epoch'):
    """This process's training iterator over the whole of ``train``, drawing
    ``ceil(scale * len(train) / comm.size)`` examples per epoch with its own random stream
    (:class:`~chainer_yolo_dist.core.sampling.EpochDrawSampler`; paper 002 sec. 3.2) instead of
    reading a fixed share. Every rank gets the same count, so the ranks' epochs end together.

    Returns ``(iterator, count)``; ``count / settings.batchsize`` updates make an epoch.
    """
    if settings.virtual_ranks != 1:
        raise ValueError('per-epoch random draws (sampling scale) work with --virtual-ranks 1 '
                         'only')
    count = draws_per_epoch(len(train), scale, comm.size)
    dataset = EpochSampledDataset(train, transform, seed=stream_seed(settings.seed, comm.rank))
    sampler = EpochDrawSampler(len(train), count, settings.seed, comm.rank, replace, resample)
    return train_iterator(dataset, settings.batchsize, settings.seed, settings.loaderjob,
                          order_sampler=sampler), count
