"""k workers as ranks x virtual ranks: the same updates however k is split (run under mpiexec).

Usage: virtual_ranks.py V OUT.npz  (with mpiexec -n R: k = R * V workers)
Trains the small YOLOv3 (float64 network, float32 loss, as tests/mpi_scripts/equivalence.py)
for a few updates with the package's own pieces: the workers' shares and iterators
(core.iterators.worker_iterators), the multi-node optimizer and DataParallelUpdater. Each
worker's batch normalisation sees its own n examples, on a real or a virtual rank alike.
"""
import sys
import types

import chainer
import chainer.functions as F
import chainermn
import numpy as np

from chainer_yolo_dist.core.iterators import worker_iterators
from chainer_yolo_dist.core.optimizers import multi_node
from chainer_yolo_dist.core.updaters import DataParallelUpdater
from chainer_yolo_dist.datasets import SyntheticShapesDataset
from chainer_yolo_dist.detection.models import build_loss, build_model
from chainer_yolo_dist.detection.multiscale import MultiScaleConverter
from chainer_yolo_dist.detection.train_chain import YOLOTrainChain

BATCH = 2
STEPS = 3


def main(virtual_ranks, out):
    comm = chainermn.create_communicator('naive')
    chainer.global_config.dtype = np.float64
    np.random.seed(0)  # identical initial weights in every process
    model = build_model('yolov3_small', 4)
    loss = build_loss(model)

    def float32_loss(locs, objs, confs, *args, **kwargs):
        return loss(*[F.cast(v, np.float32) for v in (locs, objs, confs)], *args, **kwargs)

    chain = YOLOTrainChain(model, float32_loss)
    init_input = np.zeros((1, 3, 64, 64), np.float64)
    optimizer = multi_node(chainer.optimizers.MomentumSGD(lr=0.01, momentum=0.9),
                           [chainer.optimizer_hooks.WeightDecay(0.0005)], chain, comm,
                           init=lambda: model(init_input))
    data = SyntheticShapesDataset('train', 4 * BATCH * STEPS, size=64, seed=3)
    settings = types.SimpleNamespace(virtual_ranks=virtual_ranks, seed=5, batchsize=BATCH,
                                     loaderjob=0, persistent_workers=True)
    iterators, _, _ = worker_iterators(data, None, settings, comm)
    converter = MultiScaleConverter(64)

    def to_float64(batch, device=None):
        x, bboxes, labels = converter(batch, device)
        return x.astype(np.float64), bboxes, labels

    updater = DataParallelUpdater(iterators, optimizer, to_float64, -1)
    reporter = chainer.Reporter()  # as the trainer has it
    reporter.add_observer('main', chain)
    for _ in range(STEPS):
        with reporter.scope({}):
            updater.update()
    assert optimizer.t == STEPS
    if comm.rank == 0:
        np.savez(out, **{name: p.array for name, p in model.namedparams()})


if __name__ == '__main__':
    main(int(sys.argv[1]), sys.argv[2])
