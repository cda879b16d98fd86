"""Multi-scale training (YOLO9000 sec. 2; paper 000 sec. 2.2): one input size per batch.

The size must be the same on every rank: :func:`multiscale_size` draws it as a pure function of
(seed, iteration), so every rank, and a resumed run, draw the same one without communicating.
:class:`MultiScaleConverter` resizes the whole batch in the main process, after the worker
processes have produced fixed-size images (at the largest size).
"""
import chainer
import chainer.functions as F
import numpy as np
from chainercv import transforms

from chainer_yolo_dist.core.devices import images_to_device


def multiscale_size(iteration, sizes, every, seed):
    """The input size of the batch of update ``iteration`` (0-based).

    Drawn uniformly from ``sizes`` every ``every`` iterations, as a pure function of
    ``(seed, iteration // every)``: identical on every rank and after a resume.
    """
    if len(sizes) == 1:
        return sizes[0]
    rng = np.random.RandomState([seed % (2 ** 32), iteration // every])
    return int(sizes[rng.randint(len(sizes))])


def multiscale_sizes(min_size, max_size, step=32):
    """``(min_size, min_size + 32, ..., max_size)``: YOLO9000's {320, ..., 608}."""
    if min_size % step or max_size % step or min_size > max_size:
        raise ValueError('multi-scale range must be multiples of %d with min <= max, got '
                         '%d..%d' % (step, min_size, max_size))
    return tuple(range(min_size, max_size + 1, step))


class MultiScaleConverter(object):
    """Batches ``(img, bbox, label)`` examples at the current input size.

    Returns ``(x, bboxes, labels)``: ``x`` (N, 3, S, S) float32 scaled to [0, 1] on
    ``device`` (the YOLOs' input range), ``bboxes`` / ``labels`` lists of N arrays with the
    boxes rescaled to S. ``insize`` is set by :class:`MultiScaleExtension` (or by hand).
    """

    def __init__(self, insize):
        self.insize = insize

    def __call__(self, batch, device=None):
        x = images_to_device([example[0] for example in batch], device)
        _, _, H, W = x.shape
        if (H, W) != (self.insize, self.insize):
            x = F.resize_images(x, (self.insize, self.insize)).array
        bboxes = [transforms.resize_bbox(example[1], (H, W), (self.insize, self.insize))
                  for example in batch]
        labels = [example[2] for example in batch]
        return x, bboxes, labels


class MultiScaleExtension(chainer.training.Extension):
    """Sets the converter's input size before every update (YOLO9000 multi-scale training).

    Runs after each update and at start-up (also after ``--resume``), so update ``i`` always
    uses :func:`multiscale_size` ``(i, ...)``.
    """

    trigger = 1, 'iteration'
    priority = chainer.training.PRIORITY_WRITER

    def __init__(self, converter, sizes, every=10, seed=0):
        self.converter = converter
        self.sizes = tuple(sizes)
        self.every = every
        self.seed = seed

    def _set(self, trainer):
        self.converter.insize = multiscale_size(
            trainer.updater.iteration, self.sizes, self.every, self.seed)

    def initialize(self, trainer):
        self._set(trainer)

    def __call__(self, trainer):
        self._set(trainer)
