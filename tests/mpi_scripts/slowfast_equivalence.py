"""k SlowFast workers as ranks x virtual ranks: the same updates however k is split.

Usage: slowfast_equivalence.py V PROFILE OUT.npz  (with mpiexec -n R: k = R * V workers;
PROFILE 1 times every phase with DataParallelUpdater(profile=True), 0 does not)
Trains the narrow SlowFast detector in float64 (dropout off: masks would differ per process)
for a few updates with the package's pieces: the workers' shares and iterators
(core.iterators.worker_iterators), the multi-node optimizer and DataParallelUpdater. Every
synthetic clip has one actor, so every worker's loss is a mean over the same number of boxes
and the mean of the workers' gradients is the gradient of the global batch's loss.
"""
import sys
import types

import chainer
import chainermn
import numpy as np

from chainer_yolo_dist.core.iterators import worker_iterators
from chainer_yolo_dist.core.optimizers import multi_node
from chainer_yolo_dist.core.updaters import DataParallelUpdater
from chainer_yolo_dist.slowfast.batch import concat_clips
from chainer_yolo_dist.slowfast.head import DetectorLoss
from chainer_yolo_dist.slowfast.models import build_detector
from chainer_yolo_dist.slowfast.synthetic import SyntheticActionClips

BATCH = 2
STEPS = 3
WORKERS = 2


def main(virtual_ranks, profile, out):
    comm = chainermn.create_communicator('naive')
    chainer.global_config.dtype = np.float64
    np.random.seed(0)  # identical initial weights in every process
    detector = build_detector('slowfast_narrow', 7, dropout=0.)
    chain = DetectorLoss(detector)
    optimizer = multi_node(chainer.optimizers.MomentumSGD(lr=0.05, momentum=0.9),
                           [chainer.optimizer_hooks.WeightDecay(1e-4)], chain, comm)
    initial = {name: p.array.copy() for name, p in detector.namedparams()}
    data = SyntheticActionClips(WORKERS * BATCH * STEPS, seed=3, n_frames=8, size=32,
                                max_actors=1)
    settings = types.SimpleNamespace(virtual_ranks=virtual_ranks, seed=5, batchsize=BATCH,
                                     loaderjob=0, persistent_workers=True)
    iterators, _, _ = worker_iterators(data, None, settings, comm)

    def to_float64(batch, device=None):
        clips, rois, roi_indices, labels = concat_clips(batch, device)
        return clips.astype(np.float64) / 255., rois, roi_indices, labels

    updater = DataParallelUpdater(iterators, optimizer, to_float64, -1, profile=bool(profile))
    reporter = chainer.Reporter()  # as the trainer has it
    reporter.add_observer('main', chain)
    for _ in range(STEPS):
        observation = {}
        with reporter.scope(observation):
            updater.update()
        assert ('time/allreduce' in observation) == bool(profile)
    assert optimizer.t == STEPS
    if comm.rank == 0:
        params = {name: p.array for name, p in detector.namedparams()}
        changed = sum(not np.array_equal(v, initial[k]) for k, v in params.items())
        np.savez(out, _changed=changed, **params)


if __name__ == '__main__':
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
