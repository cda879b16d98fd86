"""Periodic weight averaging ("local SGD"): each worker steps alone, weights averaged every H.

Darknet's multi-GPU training (Redmon's code for YOLO; papers 000/001 trained with ChainerMN's
synchronous AllReduce instead, so this is an alternative to their method, not theirs) steps
each GPU's network independently and averages the weights, biases and batch-normalisation
scales every 4 batches (``train_networks(..., interval=4)`` -> ``sync_nets``), not the momentum
and not the running statistics: :data:`DARKNET_PERIOD` with the defaults below. Averaging every
step (``period=1``) with plain ``MomentumSGD`` (+ ``WeightDecay``) is synchronous SGD exactly:
the update is linear in the gradient and in the momentum, so the mean of the ranks' updates is
the update with the mean gradient, and the mean of their momenta is the synchronous momentum
(tested in float64). It is not with a non-linear rule such as ``GradientLARS`` (each rank scales
its own gradient by its own norm), which is why LARS on local SGD is a different method.

On GPUs an averaging costs one packed device->host copy of the parameters, an ``Allreduce`` of
that host vector over MPI and one copy back (:class:`.flat.PackedTransfer`;
docs/parallelism.md, "What the modes cost on GPUs"), every H steps.

Snapshots and resume: between two averagings every rank holds its own weights, and with the
default ``average_state=False`` always its own momentum; the trainer snapshot is rank 0's
alone. So at each snapshot every rank's weights and optimizer state are gathered to rank 0 as
host arrays (:meth:`LocalSGDOptimizer.prepare_snapshot`, a collective) and written into the
snapshot with the step counter (:meth:`LocalSGDOptimizer.serialize`); a resumed rank takes its
own row back before its next step, so a resumed run ends with the bits of an uninterrupted one
(tests/test_faults_parallelism.py). The gather runs on every rank after the steps where the
run's scheduled snapshot falls (``snapshot_every``: ``--snapshot-interval``, or
``--iterations`` at the end); a snapshot the optimizer did not see coming (one asked by wall
time or a stop signal, unless ``prepare_snapshot`` is wired to the snapshot trigger) holds rank
0's state alone, and a run resumed from it says so and gives every rank rank 0's weights and
momentum: resumable, not exact. Rank 0 holds every rank's weights and state for the moment of
the write: ``ranks x 2 x`` the model's size in host memory.
"""
import time
import warnings

import chainer
import numpy as np

from chainer_yolo_dist.core.parallelism.flat import (FlatLayout, PackedTransfer, bcast_params,
                                                     host_buffer, mpi_comm_of)
from chainer_yolo_dist.core.persistents import float_persistents, is_float_array

#: Batches between two weight averagings in Darknet's multi-GPU training.
DARKNET_PERIOD = 4


def _state_arrays(link):
    """The optimizer-state arrays (e.g. MomentumSGD's ``v``), in a fixed order."""
    arrays = []
    for _, param in sorted(link.namedparams()):
        rule = param.update_rule
        if rule is None or rule.state is None:
            continue
        for key in sorted(rule.state):
            value = rule.state[key]
            if is_float_array(value):
                arrays.append(value)
    return arrays


def _groups_by_dtype(segments):
    """``[(dtype, [segment, ...])]``: the non-empty segments (lists of arrays), each with the
    dtype ``numpy.concatenate`` would give it, grouped by that dtype in first-seen order."""
    groups = {}
    for segment in segments:
        if segment:
            dtype = np.result_type(*[a.dtype for a in segment])
            groups.setdefault(dtype, []).append(segment)
    return list(groups.items())


class LocalSGDOptimizer(object):
    """Wraps a Chainer optimizer: local updates, parameters averaged every ``period`` steps.

    Set up like ChainerMN's multi-node optimizer: ``opt = LocalSGDOptimizer(MomentumSGD(...),
    comm, period=4); opt.setup(model); opt.add_hook(...)``; attributes not defined here
    (``lr``, ``t``, ``add_hook``, ...) are the wrapped optimizer's. The setup broadcasts
    rank 0's weights so that every replica starts equal.

    Args:
        actual_optimizer: a Chainer optimizer (not yet set up).
        comm: ChainerMN or mpi4py communicator over the workers.
        period (int): H, steps between averagings (``DARKNET_PERIOD`` = 4 is Darknet's).
        average_state (bool): also average the optimizer state (momentum) at each averaging.
            Darknet does not (default False).
        average_persistents (bool): also average batch-normalisation running statistics.
            Darknet does not (default False); a recipe averages them before evaluating.
        snapshot_every (int or None): the run snapshots after every step that is a multiple
            of this (the trainer's iteration trigger): every rank's state is gathered to rank
            0 then (:meth:`prepare_snapshot`). None: only when ``prepare_snapshot`` is called.

    Attributes:
        stats (dict): steps, updates (local), averagings, ``wait_s`` (time in the Allreduces),
        ``bytes_reduced`` (bytes of the buffers reduced, per rank).
    """

    def __init__(self, actual_optimizer, comm, period=DARKNET_PERIOD, average_state=False,
                 average_persistents=False, snapshot_every=None):
        if int(period) != period or period < 1:
            raise ValueError('period must be a positive integer, got %r' % (period,))
        if snapshot_every is not None and (int(snapshot_every) != snapshot_every
                                           or snapshot_every < 1):
            raise ValueError('snapshot_every must be None or a positive integer, got %r'
                             % (snapshot_every,))
        mpi = mpi_comm_of(comm)
        self.__dict__.update(
            actual_optimizer=actual_optimizer, mpi=mpi, period=int(period),
            average_state=average_state, average_persistents=average_persistents,
            snapshot_every=snapshot_every,
            # per dtype: (PackedTransfer, host vector), reused by every averaging
            _transfers={}, steps=0,
            # the step of the last gather (every rank) and, on rank 0, its per-rank matrices
            _gathered_at=None, _gathered=None,
            _restored=None,  # this rank's own state read from a snapshot, for the next step
            stats={'steps': 0, 'updates': 0, 'averagings': 0, 'wait_s': 0.0,
                   'bytes_reduced': 0})

    def setup(self, link):
        FlatLayout.of(link)  # every parameter initialised, one dtype
        self.actual_optimizer.setup(link)
        bcast_params(self.mpi, link, root=0)
        return self

    def update(self, lossfun=None, *args, **kwds):
        """One local step of the wrapped optimizer; every ``period``-th, an averaging; after
        a step the run snapshots at, the gather of every rank's state to rank 0."""
        self._take_restored()
        self.__dict__['_gathered'] = None  # the last snapshot's rows, written by now
        self.actual_optimizer.update(lossfun, *args, **kwds)
        self.__dict__['steps'] += 1
        self.stats['steps'] += 1
        self.stats['updates'] += 1  # local updates, one per step
        if self.steps % self.period == 0:
            self.average()
        if self.snapshot_every and self.steps % self.snapshot_every == 0:
            self.prepare_snapshot()

    def average(self):
        """Averages the parameters (and the chosen extras) across ranks now (collective).

        The parameters, the optimizer state and the persistents (those chosen) travel in one
        host vector, packed on the device in one go (one device->host copy, one back); each
        of them is then summed by its own ``Allreduce`` of its slice, as when each had its
        own buffer. Extras of another dtype than the parameters get a vector of their own.
        """
        from mpi4py import MPI
        self._take_restored()
        link = self.actual_optimizer.target
        start = time.perf_counter()
        FlatLayout.of(link)  # still every parameter initialised, of one dtype
        segments = [[p.array for _, p in sorted(link.namedparams())]]
        if self.average_state:
            segments.append(_state_arrays(link))
        if self.average_persistents:
            segments.append([value for _, value in float_persistents(link)])
        nbytes = 0
        for dtype, group in _groups_by_dtype(segments):
            arrays = [a for segment in group for a in segment]
            transfer, flat = self._buffers(dtype, sum(a.size for a in arrays), arrays[0])
            transfer.pack(arrays, flat)
            offset = 0
            for segment in group:
                piece = flat[offset:offset + sum(a.size for a in segment)]
                self.mpi.Allreduce(MPI.IN_PLACE, piece, op=MPI.SUM)
                piece /= self.mpi.size
                offset += piece.size
                nbytes += piece.nbytes
            transfer.unpack(flat, arrays)
        self.stats['wait_s'] += time.perf_counter() - start
        self.stats['bytes_reduced'] += nbytes
        self.stats['averagings'] += 1

    def _buffers(self, dtype, size, like):
        """The transfer and host vector ``(size,)`` of ``dtype``, kept between averagings."""
        transfer, flat = self._transfers.get(dtype, (PackedTransfer(), None))
        if flat is None or flat.size != size:
            flat = host_buffer(size, dtype, like)
        self._transfers[dtype] = transfer, flat
        return transfer, flat

    def finalize(self):
        """Averages once more if steps were taken since the last averaging, so that every
        rank ends with the same (averaged) model. Returns stats."""
        self._take_restored()
        if self.steps % self.period:
            self.average()
        return self.stats

    # -- snapshots --------------------------------------------------------------------------
    def _rank_segments(self):
        """What differs between ranks: the weights and the optimizer state, as two lists of
        arrays in a fixed order (the same on every rank and in every run)."""
        link = self.actual_optimizer.target
        return [[p.array for _, p in sorted(link.namedparams())], _state_arrays(link)]

    def _ranks_agree(self):
        # right after an averaging of the weights and the state every rank holds the same
        return self.steps % self.period == 0 and self.average_state

    def prepare_snapshot(self):
        """Gathers every rank's weights and optimizer state to rank 0 (a collective on every
        rank; nothing to do twice for one step, nor where the ranks agree), for the snapshot
        rank 0 writes after this step (:meth:`serialize`)."""
        if self._gathered_at == self.steps:
            return
        self._take_restored()
        gathered = []
        if not self._ranks_agree():
            for dtype, group in _groups_by_dtype(self._rank_segments()):
                # once per snapshot: plain host vectors, not the averaging's pinned ones; a
                # transfer per segment (a state read from a snapshot is on the host until the
                # next step moves it to the weights' device)
                sizes = [sum(a.size for a in segment) for segment in group]
                flat = np.empty(sum(sizes), dtype)
                offset = 0
                for segment, size in zip(group, sizes):
                    PackedTransfer().pack(segment, flat[offset:offset + size])
                    offset += size
                rows = (np.empty((self.mpi.size, flat.size), dtype) if self.mpi.rank == 0
                        else None)
                self.mpi.Gather(flat, rows, root=0)
                gathered.append(rows)
        self.__dict__.update(_gathered_at=self.steps,
                             _gathered=gathered if self.mpi.rank == 0 else None)

    def serialize(self, serializer):
        """The wrapped optimizer's state (rank 0's momentum), then under ``local_sgd/``: the
        step counter and the counts of ``stats``, and, when written after
        :meth:`prepare_snapshot` of this step, every rank's weights and optimizer state
        (``rows<i>``, one row per rank; ``ranks``: how many rows, 0 where every rank held rank
        0's state, -1 where the others' own states were not gathered)."""
        self.actual_optimizer.serialize(serializer)
        own = serializer['local_sgd']
        counts = ('updates', 'averagings', 'bytes_reduced')
        if isinstance(serializer, chainer.serializer.Serializer):
            own('steps', self.steps)
            for key in counts:
                own(key, self.stats[key])
            gathered = self._gathered if self._gathered_at == self.steps else None
            if gathered:
                ranks = self.mpi.size
            elif gathered is not None or self._ranks_agree():
                ranks = 0  # every rank holds what rank 0 holds
            else:
                ranks = -1  # not gathered: the others' own states are not in the snapshot
            own('ranks', ranks)
            for i, rows in enumerate(gathered or []):
                own('rows%d' % i, rows)
            return
        try:
            steps = int(own('steps', 0))
            ranks = int(own('ranks', 0))
        except KeyError:
            raise ValueError('the snapshot holds no local-SGD state (written before issue 23 '
                             'or by another mode): --parallelism local cannot resume from it '
                             'exactly') from None
        self.__dict__['steps'] = self.stats['steps'] = steps
        for key in counts:
            self.stats[key] = type(self.stats[key])(own(key, self.stats[key]))
        self.__dict__.update(_gathered_at=None, _gathered=None, _restored=None)
        if ranks > 0:
            if ranks != self.mpi.size:
                raise ValueError('the snapshot holds the local-SGD state of %d ranks, this '
                                 'run has %d' % (ranks, self.mpi.size))
            n_groups = len(_groups_by_dtype(self._rank_segments()))
            # the updater loads rank 0's weights after this: this rank's own row is put back
            # at its next step (_take_restored)
            self.__dict__['_restored'] = [np.array(own('rows%d' % i, None)[self.mpi.rank])
                                          for i in range(n_groups)]
        elif ranks < 0 and self.mpi.rank == 0:
            warnings.warn(
                'local SGD: the snapshot of step %d holds rank 0\'s weights and momentum '
                'alone (a snapshot the optimizer did not foresee: by wall time, a stop '
                'signal, or at the end of a run counted in epochs): every rank resumes from '
                'them, so the run continues, but not exactly as it would have' % steps,
                RuntimeWarning)

    def _take_restored(self):
        """Puts this rank's own weights and optimizer state, read from a snapshot, back in
        place (once, before anything uses them)."""
        restored = self._restored
        if restored is None:
            return
        self.__dict__['_restored'] = None
        groups = _groups_by_dtype(self._rank_segments())
        if len(groups) != len(restored):
            raise ValueError('the snapshot\'s local-SGD state does not fit this model')
        for (_, group), row in zip(groups, restored):
            arrays = [a for segment in group for a in segment]
            if sum(a.size for a in arrays) != row.size:
                raise ValueError('the snapshot\'s local-SGD state does not fit this model')
            offset = 0
            for a in arrays:  # each on its own device (a state still on the host at resume)
                piece = row[offset:offset + a.size].reshape(a.shape).astype(a.dtype)
                a[...] = chainer.backend.get_device_from_array(a).send(piece)
                offset += a.size

    def __getattr__(self, name):
        return getattr(self.actual_optimizer, name)

    def __setattr__(self, name, value):
        setattr(self.actual_optimizer, name, value)
