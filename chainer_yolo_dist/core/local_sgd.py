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
"""
import time

import numpy as np

from chainer_yolo_dist.core.flat import (FlatLayout, assign, bcast_params, mpi_comm_of,
                                         pack_params, to_host, unpack_params)

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
    return hasattr(value, 'dtype') and hasattr(value, 'shape') and value.dtype.kind == 'f'


def _persistent_arrays(link):
    # float persistents only: batch normalisation's running mean and variance, not its
    # integer counters
    return [value for _, value in sorted(link.namedpersistents()) if _is_float_array(value)]


def _average_arrays(mpi, arrays):
    """Averages a list of same-dtype (NumPy or CuPy) arrays across ranks in place, with one
    Allreduce of a host buffer; returns its size in bytes."""
    if not arrays:
        return 0
    flat = np.concatenate([to_host(a).ravel() for a in arrays])
    from mpi4py import MPI
    mpi.Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM)
    flat /= mpi.size
    offset = 0
    for a in arrays:
        assign(a, flat[offset:offset + a.size].reshape(a.shape))
        offset += a.size
    return flat.nbytes


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
            steps=0, stats={'steps': 0, 'updates': 0, 'averagings': 0, 'wait_s': 0.0,
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
        """Averages the parameters (and the chosen extras) across ranks now (collective)."""
        link = self.actual_optimizer.target
        start = time.perf_counter()
        layout = FlatLayout.of(link)
        flat = np.empty(layout.size, layout.dtype)
        pack_params(link, flat)
        nbytes = _average_arrays(self.mpi, [flat])
        unpack_params(link, flat)
        if self.average_state:
            nbytes += _average_arrays(self.mpi, _state_arrays(link))
        if self.average_persistents:
            nbytes += _average_arrays(self.mpi, _persistent_arrays(link))
        self.stats['wait_s'] += time.perf_counter() - start
        self.stats['bytes_reduced'] += nbytes
        self.stats['averagings'] += 1

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
