"""Evaluation gathered across ranks equals one process's (run under mpiexec).

Usage: gathered_eval.py OUT.json
Two detectors: the small YOLOv3 after a few training updates (a real network), and a
deterministic noisy oracle (ground truth jittered per image) whose mAP is far from 0 and 1.
Rank 0 writes the distributed result and its own single-process result for each.
"""
import json
import sys

import chainer
import chainermn
import numpy as np

from chainer_yolo_dist.datasets import SyntheticShapesDataset
from chainer_yolo_dist.detection.evaluation import evaluate_detection
from chainer_yolo_dist.detection.models import build_loss, build_model, set_insize
from chainer_yolo_dist.detection.train_chain import YOLOTrainChain
from chainer_yolo_dist.detection.multiscale import MultiScaleConverter


class NoisyOracle(object):
    """Predicts each image's truths with box noise, a missed box and a false positive."""

    def __init__(self, dataset):
        self.truths = {float(img.sum()): (bbox, label) for img, bbox, label in dataset}

    def predict(self, imgs):
        bboxes, labels, scores = [], [], []
        for img in imgs:
            bbox, label = self.truths[float(img.sum())]
            rng = np.random.RandomState(int(img.sum()) % 2 ** 31)
            noisy = bbox + rng.normal(0, 3, bbox.shape).astype(np.float32)
            fake = np.array([[5, 5, 30, 30]], np.float32)
            keep = rng.rand(len(bbox)) > 0.2
            bboxes.append(np.concatenate([noisy[keep], fake]))
            labels.append(np.concatenate([label[keep], [rng.randint(4)]]).astype(np.int32))
            scores.append(rng.rand(int(keep.sum()) + 1).astype(np.float32))
        return bboxes, labels, scores


def main(out):
    comm = chainermn.create_communicator('naive')
    shapes = SyntheticShapesDataset('test', 13, size=64, seed=1)
    # Images laid out as the datasets' reader returns them: (3, H, W) views of (H, W, 3).
    test = chainer.datasets.TransformDataset(shapes, lambda example: (
        np.ascontiguousarray(example[0].transpose(1, 2, 0)).transpose(2, 0, 1),) + example[1:])
    np.random.seed(0)
    model = build_model('yolov3_small', 4)
    chain = YOLOTrainChain(model, build_loss(model))
    optimizer = chainer.optimizers.MomentumSGD(lr=0.001)
    optimizer.setup(chain)
    x, bboxes, labels = MultiScaleConverter(64)(
        list(SyntheticShapesDataset('train', 4, size=64, seed=1)))
    for _ in range(3):
        optimizer.update(chain, x, bboxes, labels)
    set_insize(model, 64)
    model.use_preset('evaluate')
    results = {}
    for name, detector in (('yolov3_small', model), ('oracle', NoisyOracle(test))):
        distributed = evaluate_detection(detector, test, comm, batchsize=3,
                                         class_names=shapes.class_names)
        single = (evaluate_detection(detector, test, None, batchsize=5,
                                     class_names=shapes.class_names) if comm.rank == 0 else None)
        results[name] = {'distributed': distributed, 'single': single}
    if comm.rank == 0:
        with open(out, 'w') as f:
            json.dump(results, f)


if __name__ == '__main__':
    main(sys.argv[1])
