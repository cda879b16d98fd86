"""Resume of ``local`` and ``stale`` at the optimizer level (no trainer), in float64.

Usage: mpiexec -n 2 parallelism_resume.py OUT.json

Each case runs the small network of parallel_common.py for STEPS steps on every rank (each rank
on its own batches) and, apart, for HALF steps, then "snapshots" as the trainer does: every rank
calls ``parallelism.prepare_snapshot`` where the case says so (the snapshot trigger), rank 0
alone serialises its optimizer and model (its snapshot writer), and every rank builds a new
network and optimizer and loads that one snapshot (the optimizer first, then rank 0's model, in
the order of Chainer's ``StandardUpdater.serialize``), then takes the remaining steps. Rank 0
writes, per case, whether every rank's weights and optimizer state after STEPS steps, and its
weights after ``finalize``, are bitwise those of the uninterrupted run, and the warnings the
resume gave.

Cases: ``local`` (period 3, the snapshot at step 4, between two averagings) with the gather at
the snapshot, with it foreseen by ``snapshot_every``, and unforeseen (no gather: a warning, not
exact); ``stale`` with no gather (its reduction in flight is completed by rank 0 alone).
"""
import json
import sys
import warnings

import chainer
import numpy as np
from mpi4py import MPI

import parallel_common as pc
from chainer_yolo_dist.core import parallelism
from chainer_yolo_dist.core.parallelism.local_sgd import LocalSGDOptimizer, _state_arrays
from chainer_yolo_dist.core.parallelism.stale_sync import StaleSyncOptimizer

STEPS, HALF = 8, 4
COMM = MPI.COMM_WORLD


def momentum_sgd():
    return chainer.optimizers.MomentumSGD(lr=0.1, momentum=0.9)


def build(case):
    model = pc.build()
    if case == 'stale':
        optimizer = StaleSyncOptimizer(momentum_sgd(), COMM)
    else:
        optimizer = LocalSGDOptimizer(momentum_sgd(), COMM, period=3,
                                      snapshot_every=HALF if case == 'local_foreseen' else None)
    return model, optimizer.setup(model)


def steps(model, optimizer, first, last):
    for step in range(first, last):
        optimizer.update(model, *pc.batch(step, COMM.rank))


def state(model):
    """This rank's weights and optimizer state, as host copies."""
    return [a.copy() for _, a in sorted(pc.params(model).items())] + [
        np.array(a) for a in _state_arrays(model)]


def finish(model, optimizer):
    before = state(model)
    optimizer.finalize()
    return before, state(model)[:len(pc.params(model))]


def snapshot(model, optimizer, case):
    if case != 'local_unforeseen':
        parallelism.prepare_snapshot(optimizer)  # the snapshot trigger, on every rank
    written = None
    if COMM.rank == 0:  # rank 0 alone writes; host copies, as the npz file holds
        serializer = chainer.serializers.DictionarySerializer()
        optimizer.serialize(serializer['optimizer'])
        model.serialize(serializer['model'])
        written = {key: np.array(value) for key, value in serializer.target.items()}
    return COMM.bcast(written, root=0)


def resumed(case):
    model, optimizer = build(case)
    steps(model, optimizer, 0, HALF)
    written = snapshot(model, optimizer, case)
    optimizer.finalize()  # the stopped run's end (completes its reduction in flight)
    model, optimizer = build(case)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        loader = chainer.serializers.NpzDeserializer(written)
        optimizer.serialize(loader['optimizer'])
        model.serialize(loader['model'])
    steps(model, optimizer, HALF, STEPS)
    return finish(model, optimizer), [str(w.message) for w in caught]


def main():
    out = sys.argv[1]
    results = {}
    for case in ('local_gathered', 'local_foreseen', 'local_unforeseen', 'stale'):
        model, optimizer = build(case)
        steps(model, optimizer, 0, STEPS)
        reference = finish(model, optimizer)
        again, caught = resumed(case)
        diffs = [float(np.max(np.abs(a - b))) if a.size else 0.0
                 for before, after in zip(reference, again) for a, b in zip(before, after)]
        every = COMM.gather(max(diffs), root=0)
        caught = COMM.gather(caught, root=0)
        if COMM.rank == 0:
            results[case] = {'max_diff': every, 'warnings': caught}
    if COMM.rank == 0:
        with open(out, 'w') as f:
            json.dump(results, f, indent=1)


if __name__ == '__main__':
    main()
