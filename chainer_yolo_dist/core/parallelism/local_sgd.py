"""Periodic weight averaging ("local SGD"): each worker steps alone, weights averaged every H.

Darknet's multi-GPU training (the YOLO papers' own code; paper 000/001 train with it) steps
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
"""
import time

import numpy as np

from chainer_yolo_dist.core.parallelism.flat import (FlatLayout, PackedTransfer, bcast_params,
                                                     host_buffer, mpi_comm_of)

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
            if _is_float_array(value):
                arrays.append(value)
    return arrays


def _is_float_array(value):
    # NumPy or CuPy arrays; a NumPy scalar cannot be written in place, so it is not one
    return (hasattr(value, 'dtype') and hasattr(value, 'shape')
            and not isinstance(value, np.generic) and value.dtype.kind == 'f')


def _persistent_arrays(link):
    """Float persistents (batch normalisation's running mean and variance, not its integer
    counters), sorted by their full names: a link's persistent names are a set, whose order
    differs between processes, and every rank must pack them in the same order. (Chainer
    7.8.1's links have no ``namedpersistents``; this walks ``namedlinks`` as
    :func:`.persistents.float_persistents` does.)"""
    named = []
    for path, child in link.namedlinks():
        prefix = '' if path == '/' else path
        for name in child._persistent:
            value = getattr(child, name)
            if _is_float_array(value):
                named.append((prefix + '/' + name, value))
    return [value for _, value in sorted(named, key=lambda item: item[0])]


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

    Attributes:
        stats (dict): steps, updates (local), averagings, ``wait_s`` (time in the Allreduces),
        ``bytes_reduced`` (bytes of the buffers reduced, per rank).
    """

    def __init__(self, actual_optimizer, comm, period=DARKNET_PERIOD, average_state=False,
                 average_persistents=False):
        if int(period) != period or period < 1:
            raise ValueError('period must be a positive integer, got %r' % (period,))
        mpi = mpi_comm_of(comm)
        self.__dict__.update(
            actual_optimizer=actual_optimizer, mpi=mpi, period=int(period),
            average_state=average_state, average_persistents=average_persistents,
            # per dtype: (PackedTransfer, host vector), reused by every averaging
            _transfers={}, steps=0,
            stats={'steps': 0, 'updates': 0, 'averagings': 0, 'wait_s': 0.0,
                   'bytes_reduced': 0})

    def setup(self, link):
        FlatLayout.of(link)  # every parameter initialised, one dtype
        self.actual_optimizer.setup(link)
        bcast_params(self.mpi, link, root=0)
        return self

    def update(self, lossfun=None, *args, **kwds):
        """One local step of the wrapped optimizer; every ``period``-th, an averaging."""
        self.actual_optimizer.update(lossfun, *args, **kwds)
        self.__dict__['steps'] += 1
        self.stats['steps'] += 1
        self.stats['updates'] += 1  # local updates, one per step
        if self.steps % self.period == 0:
            self.average()

    def average(self):
        """Averages the parameters (and the chosen extras) across ranks now (collective).

        The parameters, the optimizer state and the persistents (those chosen) travel in one
        host vector, packed on the device in one go (one device->host copy, one back); each
        of them is then summed by its own ``Allreduce`` of its slice, as when each had its
        own buffer. Extras of another dtype than the parameters get a vector of their own.
        """
        from mpi4py import MPI
        link = self.actual_optimizer.target
        start = time.perf_counter()
        FlatLayout.of(link)  # still every parameter initialised, of one dtype
        segments = [[p.array for _, p in sorted(link.namedparams())]]
        if self.average_state:
            segments.append(_state_arrays(link))
        if self.average_persistents:
            segments.append(_persistent_arrays(link))
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
        if self.steps % self.period:
            self.average()
        return self.stats

    def __getattr__(self, name):
        return getattr(self.actual_optimizer, name)

    def __setattr__(self, name, value):
        setattr(self.actual_optimizer, name, value)
