"""YOLO9000's data augmentation and the multi-scale batch converter.

Conventions (ChainerCV's): ``img`` float32 (3, H, W) RGB in [0, 255]; ``bbox`` float32 (R, 4)
as ``(y_min, x_min, y_max, x_max)`` in pixels; ``label`` int32 (R,).

Augmentation follows Darknet's region-layer data loader (``load_data_region``), which YOLO9000
and the papers use: a random crop whose four sides are each moved by up to ``jitter`` times
the image side (outwards too: the outside is filled with grey), a horizontal flip, a resize to
the output size, and hue / saturation / exposure shifts in HSV. Boxes are moved with the image,
clipped to it, and dropped when less than one output pixel of height or width is left.

Multi-scale training (YOLO9000 sec. 2) needs one input size per batch, the same on every rank;
:class:`MultiScaleConverter` resizes the whole batch in the main process, after the worker
processes have produced fixed-size images, and :func:`multiscale_size` draws the size as a pure
function of (seed, iteration) so that every rank, and a resumed run, draw the same one.
"""
import chainer
import chainer.functions as F
import numpy as np
from chainercv import transforms
from matplotlib.colors import hsv_to_rgb, rgb_to_hsv

#: Value of the area a crop takes from outside the image (Darknet fills with 0.5).
FILL = 127.5


def _rand_scale(rng, s):
    """Darknet's ``rand_scale``: a factor in [1/s, s], as likely below 1 as above."""
    scale = rng.uniform(1, s)
    return scale if rng.randint(2) else 1 / scale


def distort_hsv(img, hue, saturation, exposure, rng):
    """Shifts hue by up to ``hue`` (a fraction of the circle) and scales saturation and value.

    Args:
        img: float32 (3, H, W) RGB in [0, 255].
    Returns:
        float32 (3, H, W) RGB in [0, 255].
    """
    dhue = rng.uniform(-hue, hue)
    dsat = _rand_scale(rng, saturation)
    dexp = _rand_scale(rng, exposure)
    hsv = rgb_to_hsv(np.clip(img.transpose(1, 2, 0) / 255, 0, 1))
    hsv[..., 0] = (hsv[..., 0] + dhue) % 1.0
    hsv[..., 1] = np.clip(hsv[..., 1] * dsat, 0, 1)
    hsv[..., 2] = np.clip(hsv[..., 2] * dexp, 0, 1)
    return (hsv_to_rgb(hsv) * 255).astype(np.float32).transpose(2, 0, 1)


def crop_with_fill(img, y0, x0, h, w, fill=FILL):
    """Crops the window ``[y0, y0 + h) x [x0, x0 + w)``, which may reach outside the image.

    Returns float32 (3, h, w); pixels outside ``img`` are ``fill``.
    """
    C, H, W = img.shape
    out = np.full((C, h, w), fill, dtype=np.float32)
    sy, sx = max(y0, 0), max(x0, 0)
    ey, ex = min(y0 + h, H), min(x0 + w, W)
    if sy < ey and sx < ex:
        out[:, sy - y0:ey - y0, sx - x0:ex - x0] = img[:, sy:ey, sx:ex]
    return out


def clip_and_filter_bbox(bbox, label, size, min_side=1.0):
    """Clips boxes to a (H, W) image and drops those left thinner than ``min_side`` pixels."""
    H, W = size
    bbox = bbox.copy()
    bbox[:, 0::2] = np.clip(bbox[:, 0::2], 0, H)
    bbox[:, 1::2] = np.clip(bbox[:, 1::2], 0, W)
    keep = ((bbox[:, 2] - bbox[:, 0]) >= min_side) & ((bbox[:, 3] - bbox[:, 1]) >= min_side)
    return bbox[keep], label[keep]


class YOLOAugmentation(object):
    """YOLO9000 / Darknet augmentation of one ``(img, bbox, label)`` example.

    Args:
        size (int): side of the square output image.
        jitter (float): largest move of each crop side, as a fraction of the image side
            (Darknet's ``jitter``; 0.2 in ``yolo-voc.cfg``, 0.3 in ``yolov2-voc.cfg``).
        hue, saturation, exposure: Darknet's ``hue=.1 saturation=1.5 exposure=1.5``.
        flip (bool): random horizontal flip.

    Called as ``aug(example, rng)`` with a ``numpy.random.RandomState`` (see
    :mod:`chainer_yolo_dist.sampling`, which makes that stream reproducible).
    """

    def __init__(self, size, jitter=0.2, hue=0.1, saturation=1.5, exposure=1.5, flip=True):
        self.size = size
        self.jitter = jitter
        self.hue = hue
        self.saturation = saturation
        self.exposure = exposure
        self.flip = flip

    def __call__(self, in_data, rng):
        img, bbox, label = in_data
        _, H, W = img.shape
        dh, dw = int(H * self.jitter), int(W * self.jitter)
        top, bottom = rng.randint(-dh, dh + 1, size=2)
        left, right = rng.randint(-dw, dw + 1, size=2)
        h, w = H - top - bottom, W - left - right
        img = crop_with_fill(img, top, left, h, w)
        bbox = transforms.translate_bbox(bbox, -top, -left)
        bbox, label = clip_and_filter_bbox(bbox, label, (h, w), min_side=0)

        img = transforms.resize(img, (self.size, self.size))
        bbox = transforms.resize_bbox(bbox, (h, w), (self.size, self.size))
        if self.flip and rng.randint(2):
            img = img[:, :, ::-1]
            bbox = transforms.flip_bbox(bbox, (self.size, self.size), x_flip=True)
        img = distort_hsv(img, self.hue, self.saturation, self.exposure, rng)
        bbox, label = clip_and_filter_bbox(bbox, label, (self.size, self.size))
        return img, bbox.astype(np.float32), label.astype(np.int32)


class ResizeTransform(object):
    """Resizes ``(img, bbox, label[, ...])`` to a square ``size`` without augmentation."""

    def __init__(self, size):
        self.size = size

    def __call__(self, in_data, rng=None):
        img, bbox = in_data[:2]
        _, H, W = img.shape
        img = transforms.resize(img, (self.size, self.size))
        bbox = transforms.resize_bbox(bbox, (H, W), (self.size, self.size))
        return (img, bbox) + tuple(in_data[2:])


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
        imgs = np.stack([example[0] for example in batch]).astype(np.float32)
        imgs /= 255
        _, _, H, W = imgs.shape
        x = chainer.dataset.to_device(device, imgs)
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
