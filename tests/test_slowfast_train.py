"""End to end on one process: a narrow SlowFast + AVA head learns from synthetic clips."""
import numpy as np

import chainer

from chainer_yolo_dist.slowfast.batch import concat_clips
from chainer_yolo_dist.slowfast.head import ActionDetector, DetectorLoss
from chainer_yolo_dist.slowfast.networks import SlowFast
from chainer_yolo_dist.slowfast.synthetic import ACTION_NAMES, SyntheticActionClips


def test_narrow_slowfast_loss_falls_on_synthetic_clips():
    # Small clips keep Chainer's CPU im2col for 3D convolutions cheap (about 1 s per step).
    data = SyntheticActionClips(4, seed=0, size=32, n_frames=8)
    clips, rois, idx, labels = concat_clips([data[i] for i in range(4)])
    clips = clips / 255.
    np.random.seed(0)  # dropout masks
    model = DetectorLoss(ActionDetector(SlowFast(width=8, blocks=(1, 1, 1, 1)),
                                        len(ACTION_NAMES)))
    opt = chainer.optimizers.Adam(alpha=1e-3)
    opt.setup(model)
    reporter = chainer.reporter.Reporter()
    reporter.add_observer('main', model)
    losses = []
    for _ in range(10):
        observation = {}
        with reporter.scope(observation):
            opt.update(model, clips, rois, idx, labels)
        losses.append(float(observation['main/loss']))
    assert np.isfinite(losses).all()
    # The reported training loss of the last two steps is well below that of the first two.
    assert np.mean(losses[-2:]) < 0.85 * np.mean(losses[:2]), losses
