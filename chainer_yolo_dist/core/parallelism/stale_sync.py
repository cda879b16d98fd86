"""One-step-stale synchronous SGD: apply step t-1's mean gradient while step t's is reduced.

ChainerMN's ``double_buffering`` overlaps the gradient AllReduce with the next forward and
backward pass by applying, at each step, the averaged gradient of the previous step; in
ChainerMN 7.8.1 it exists only for ``pure_nccl`` (GPUs). This is the same schedule on any
device, with MPI's non-blocking ``Iallreduce`` on a flat host buffer:

    step t: g_t = this rank's gradient at the current weights w_{t-2} (t-2 updates so far);
            wait for Iallreduce(g_{t-1}); start Iallreduce(g_t);
            w_{t-1} = update(w_{t-2}, mean over ranks of g_{t-1}) with the wrapped optimizer.

so the mean gradient applied to w_{t-2} was computed at w_{t-3}: one step stale.

Step 1 only starts its reduction (nothing to apply yet: ChainerMN also skips it).
:meth:`StaleSyncOptimizer.finalize` applies the last reduced gradient, so ``n`` steps give
``n`` updates. How much of the reduction hides behind the computation depends on MPI's
progress; ``stats['wait_s']`` measures what is left. Measured with the pinned MPICH 5.0.2 on
2 CPU ranks, 4 MB float32 buffers: a blocking Allreduce took 0.10 s; after 0.5 s of
computation the Wait of an ``Iallreduce`` still took 0.045 s (progress only at MPI calls
and in the background partly), and 0.000 s with ``MPICH_ASYNC_PROGRESS=1`` (a progress
thread, which costs a core).

On GPUs each step copies the packed gradients to the host once and the previous step's mean
back once (:class:`.flat.PackedTransfer`); the two host vectors are
page-locked and kept for the whole run.

Snapshots and resume: every rank applies the same mean gradient to the same weights, so the
weights and the wrapped optimizer's state are the same on every rank, and rank 0's snapshot
holds them; what a snapshot adds (:meth:`StaleSyncOptimizer.serialize`) is the step counter
and the reduction in flight: rank 0 completes it (its sum is the same on every rank; the
others complete theirs at their next step, as always) and writes the sum, which every resumed
rank applies at its next step as it would have. Any snapshot, scheduled or not, resumes
exactly (tests/test_faults_parallelism.py).
"""
import time

import chainer
import numpy as np

from chainer_yolo_dist.core.parallelism.flat import (FlatLayout, PackedTransfer, bcast_params,
                                                     host_buffer, mpi_comm_of, pack_grads,
                                                     unpack_grads)


class StaleSyncOptimizer(object):
    """Wraps a Chainer optimizer: gradients averaged across ranks, applied one step late.

    ``opt = StaleSyncOptimizer(MomentumSGD(...), comm); opt.setup(model); opt.add_hook(...)``;
    attributes not defined here (``lr``, ``t``, ``add_hook``, ...) are the wrapped optimizer's
    (its ``t`` counts applied updates). The setup broadcasts rank 0's weights.

    Attributes:
        stats (dict): steps, updates, ``staleness`` (``{1: updates}``), ``wait_s`` (time
        blocked on the reductions), ``bytes_reduced`` (bytes of the buffers reduced, per rank).
    """

    def __init__(self, actual_optimizer, comm):
        self.__dict__.update(
            actual_optimizer=actual_optimizer, mpi=mpi_comm_of(comm), _buffers=None,
            _transfer=PackedTransfer(), _request=None, _pending=None,
            stats={'steps': 0, 'updates': 0, 'staleness': {}, 'wait_s': 0.0,
                   'bytes_reduced': 0})

    def setup(self, link):
        layout = FlatLayout.of(link)
        self.actual_optimizer.setup(link)
        bcast_params(self.mpi, link, root=0)
        like = next(iter(link.params())).array  # page-locked host vectors for a GPU model
        self.__dict__['_buffers'] = [host_buffer(layout.size, layout.dtype, like)
                                     for _ in range(2)]
        return self

    def update(self, lossfun=None, *args, **kwds):
        from mpi4py import MPI
        target = self.actual_optimizer.target
        if lossfun is not None:
            loss = lossfun(*args, **kwds)
            target.cleargrads()
            loss.backward()
            del loss
        # the two buffers alternate: one is being reduced while the other is filled
        buf = self._buffers[self.stats['steps'] % 2]
        pack_grads(target, buf, transfer=self._transfer)
        previous = self._wait()
        self.__dict__['_request'] = self.mpi.Iallreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        self.__dict__['_pending'] = buf
        self.stats['bytes_reduced'] += buf.nbytes
        self.stats['steps'] += 1
        if previous is not None:
            self._apply(previous)

    def _wait(self):
        """Completes the reduction in flight; returns its buffer (the sum) or None."""
        self._complete()
        buf = self._pending
        self.__dict__['_pending'] = None
        return buf

    def _complete(self):
        """Waits for the reduction in flight, if any; its sum stays pending, to be applied."""
        if self._request is None:
            return
        start = time.perf_counter()
        self._request.Wait()
        self.stats['wait_s'] += time.perf_counter() - start
        self.__dict__['_request'] = None

    def _apply(self, summed):
        target = self.actual_optimizer.target
        # in place (the same quotient as ``summed / size``): the buffer is packed afresh at
        # its next use, so no step allocates a vector
        summed /= self.mpi.size
        unpack_grads(target, summed, transfer=self._transfer)
        self.actual_optimizer.update()
        self.stats['updates'] += 1
        # every applied gradient is one update old (the histogram, as the parameter server's)
        self.stats['staleness'] = {1: self.stats['updates']}

    def serialize(self, serializer):
        """The wrapped optimizer's state, then under ``stale_sync/``: the step counter, the
        counts of ``stats`` and ``in_flight``, the summed gradient of the last step, not yet
        applied (empty when none). Writing completes this rank's reduction in flight (on rank
        0, which writes the snapshot: no collective); the others complete theirs at their next
        step."""
        self.actual_optimizer.serialize(serializer)
        own = serializer['stale_sync']
        counts = ('steps', 'updates', 'bytes_reduced')
        if isinstance(serializer, chainer.serializer.Serializer):
            self._complete()
            for key in counts:
                own(key, self.stats[key])
            own('in_flight', self._pending if self._pending is not None
                else np.zeros(0, self._buffers[0].dtype))
            return
        try:
            values = {key: int(own(key, 0)) for key in counts}
            in_flight = np.asarray(own('in_flight', None))
        except KeyError:
            raise ValueError('the snapshot holds no stale-synchronous state (written before '
                             'issue 23 or by another mode): --parallelism stale cannot resume '
                             'from it exactly') from None
        if self._request is not None:
            raise RuntimeError('load a snapshot before the first step, not during a run')
        self.stats.update(values)
        self.stats['staleness'] = {1: values['updates']} if values['updates'] else {}
        pending = None
        if in_flight.size:
            # the buffer the step that started it filled; the next step fills the other
            pending = self._buffers[(values['steps'] - 1) % 2]
            if in_flight.shape != pending.shape:
                raise ValueError('the snapshot\'s gradient in flight has %d elements, this '
                                 'model %d' % (in_flight.size, pending.size))
            pending[...] = in_flight
        self.__dict__['_pending'] = pending

    def finalize(self):
        """Applies the last step's reduced gradient (a collective wait). Returns stats."""
        last = self._wait()
        if last is not None:
            self._apply(last)
        return self.stats

    def __getattr__(self, name):
        return getattr(self.actual_optimizer, name)

    def __setattr__(self, name, value):
        setattr(self.actual_optimizer, name, value)
