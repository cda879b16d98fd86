"""k ranks with batch b == one process with batch k*b (run under mpiexec, and alone).

Usage: equivalence.py OUT.npz  (run with -n 1 and batch k*b, or -n k and batch b)
Trains the small YOLOv3 for a few updates with the project's multi-node optimizer, loss and
converter, on the k*b examples of each step split across ranks in rank order, with batch
statistics taken over the global batch (create_mnbn_model), no augmentation.

The network runs in float64 (the loss itself in float32, as it requires): in float32, the
different summation order of one and k processes is amplified by the 30-odd batch
normalisations' backward passes to about 1e-3 relative after a few updates, which would hide
a real error of that size. In float64 the two runs agree to about 1e-12 absolute (the test
allows 1e-9 absolute or 1e-7 relative: a float32-sized error would still fail it).
"""
import sys

import chainer
import chainer.functions as F
import chainermn
import numpy as np

from chainer_yolo_dist.datasets import SyntheticShapesDataset
from chainer_yolo_dist.detection.models import build_loss, build_model
from chainer_yolo_dist.detection.train_chain import YOLOTrainChain
from chainer_yolo_dist.core.optimizers import multi_node
from chainer_yolo_dist.detection.multiscale import MultiScaleConverter

GLOBAL_BATCH = 4
STEPS = 3


def main(out):
    comm = chainermn.create_communicator('naive')
    chainer.global_config.dtype = np.float64
    np.random.seed(0)  # identical initial weights in every process
    model = build_model('yolov3_small', 4)
    loss = build_loss(model)

    def float32_loss(locs, objs, confs, *args, **kwargs):
        return loss(*[F.cast(v, np.float32) for v in (locs, objs, confs)], *args, **kwargs)

    # create_mnbn_model returns a copy with synchronised batch normalisation.
    chain = chainermn.links.create_mnbn_model(YOLOTrainChain(model, float32_loss), comm)
    model = chain.model
    init_input = np.zeros((1, 3, 64, 64), np.float64)
    optimizer = multi_node(chainer.optimizers.MomentumSGD(lr=0.01, momentum=0.9),
                           [chainer.optimizer_hooks.WeightDecay(0.0005)], chain, comm,
                           init=lambda: model(init_input))
    data = SyntheticShapesDataset('train', GLOBAL_BATCH * STEPS, size=64, seed=3)
    converter = MultiScaleConverter(64)
    local = GLOBAL_BATCH // comm.size
    for step in range(STEPS):
        start = step * GLOBAL_BATCH + comm.rank * local
        x, bboxes, labels = converter([data[i] for i in range(start, start + local)])
        x = x.astype(np.float64)
        # Each rank's loss is its own mean; the optimizer averages the gradients.
        optimizer.update(chain, x, bboxes, labels)
    assert optimizer.t == STEPS  # every call updated (none spent on the first broadcast)
    if comm.rank == 0:
        np.savez(out, **{name: p.array for name, p in model.namedparams()})


if __name__ == '__main__':
    main(sys.argv[1])
