"""YOLO9000's data augmentation and the multi-scale batch converter.

Conventions (ChainerCV's): ``img`` float32 (3, H, W) RGB in [0, 255]; ``bbox`` float32 (R, 4)
as ``(y_min, x_min, y_max, x_max)`` in pixels; ``label`` int32 (R,).

Augmentation follows Darknet's region-layer data loader (``load_data_region``), which YOLO9000
and the papers use: a random crop whose four sides are each moved by up to ``jitter`` times
the image side (outwards too: the outside is filled with grey), a horizontal flip, a resize to
the output size, and hue / saturation / exposure shifts in HSV. Boxes are moved with the image,
clipped to it, and dropped when less than one output pixel of height or width is left.

The pixel work is OpenCV's (colour conversion and resizing), on float32 ``(H, W, 3)`` arrays, so
that one loader process on one core augments well over 100 images/s at 608 (``docs/loader.md``);
every resize picks its OpenCV interpolation explicitly, so the output does not depend on
whether ChainerCV would choose cv2 or PIL. The random draws are the same, in the same order, as
in the former NumPy/Matplotlib/PIL implementation, and the outputs agree with it within the
tolerances stated in ``tests/test_transforms_opencv.py``.

Multi-scale training (YOLO9000 sec. 2) needs one input size per batch, the same on every rank;
:class:`MultiScaleConverter` resizes the whole batch in the main process, after the worker
processes have produced fixed-size images, and :func:`multiscale_size` draws the size as a pure
function of (seed, iteration) so that every rank, and a resumed run, draw the same one.
"""
import math
import threading

import chainer
import chainer.functions as F
import cv2
import numpy as np
from chainercv import transforms

# Loader workers are one process per core (Chainer's MultiprocessIterator forks them): OpenCV's
# own thread pool would start one thread per core in every worker and oversubscribe the node.
# 0 makes every OpenCV call run in the calling thread.
cv2.setNumThreads(0)

#: Value of the area a crop takes from outside the image (Darknet fills with 0.5).
FILL = 127.5


def _rand_scale(rng, s):
    """Darknet's ``rand_scale``: a factor in [1/s, s], as likely below 1 as above."""
    scale = rng.uniform(1, s)
    return scale if rng.randint(2) else 1 / scale


def draw_hsv(rng, hue, saturation, exposure):
    """The three random factors of :func:`distort_hsv`, drawn in its order."""
    dhue = rng.uniform(-hue, hue)
    dsat = _rand_scale(rng, saturation)
    dexp = _rand_scale(rng, exposure)
    return dhue, dsat, dexp


def shift_hsv_hwc(img, dhue, dsat, dexp, out=None):
    """Adds ``dhue`` (fraction of the circle) to hue, multiplies saturation and value, clipped.

    The HSV of Darknet's ``distort_image`` and of Matplotlib's ``rgb_to_hsv``: V the largest
    channel, S = (V - smallest) / V, H in six linear sectors; S and V clipped to their top.

    Args:
        img: float32 ``(H, W, 3)`` RGB in [0, 255] (values outside are clipped first).
        dhue (float): hue shift, |dhue| < 1; dsat, dexp (float): positive factors.
        out: optional C-contiguous float32 ``(H, W, 3)`` to write the result to; ``img``
            itself is allowed (every step below is pixel-wise, so it works in place).
    Returns:
        float32 ``(H, W, 3)`` RGB in [0, 255]: ``out``, or a new array.
    """
    # Every step writes into ``out`` or a reused scratch array: a fresh multi-megabyte array
    # per step costs more in page faults than the arithmetic (measured: 19 ms against 6 ms per
    # image at 608).
    hsv = cv2.threshold(np.ascontiguousarray(img, dtype=np.float32), 0, 0,
                        cv2.THRESH_TOZERO, dst=out)[1]
    cv2.threshold(hsv, 255, 0, cv2.THRESH_TRUNC, dst=hsv)
    # OpenCV's float HSV: H in degrees [0, 360), S in [0, 1], V in the input's scale (255).
    cv2.cvtColor(hsv, cv2.COLOR_RGB2HSV, dst=hsv)
    # One pass for the three channels. The hue offset is taken in [0, 360): HSV2RGB reduces a
    # hue in [0, 720) modulo 360 itself (a negative hue it would not).
    affine = np.array([[1, 0, 0, (dhue * 360.0) % 360.0],
                       [0, dsat, 0, 0],
                       [0, 0, dexp, 0]], np.float32)
    # Into a second array: OpenCV's transform is slower in place (0.8 against 0.6 ms at 608).
    shifted = cv2.transform(hsv, affine, dst=scratch('hsv', hsv.shape))
    for channel, factor, top in ((1, dsat, 1.0), (2, dexp, 255.0)):
        if factor > 1:  # only an enlarged channel can pass its top
            plane = cv2.extractChannel(shifted, channel)
            cv2.threshold(plane, top, 0, cv2.THRESH_TRUNC, dst=plane)
            cv2.insertChannel(plane, shifted, channel)
    return cv2.cvtColor(shifted, cv2.COLOR_HSV2RGB, dst=hsv)


def distort_hsv(img, hue, saturation, exposure, rng):
    """Shifts hue by up to ``hue`` (a fraction of the circle) and scales saturation and value.

    Darknet's ``random_distort_image``: ``dhue`` uniform in ``[-hue, hue]``, saturation and
    exposure factors :func:`_rand_scale`, drawn from ``rng`` in that order.

    Args:
        img: float32 (3, H, W) RGB in [0, 255].
    Returns:
        float32 (3, H, W) RGB in [0, 255].
    """
    dhue, dsat, dexp = draw_hsv(rng, hue, saturation, exposure)
    return chw(shift_hsv_hwc(hwc(img), dhue, dsat, dexp))


_scratch = threading.local()


def scratch(name, shape):
    """A reusable C-contiguous float32 array of ``shape``, one per ``name`` and thread.

    The augmentations write their intermediate images here instead of into fresh arrays: a
    fresh multi-megabyte array costs a page fault per 4 KiB when first written, which on the
    machine of ``docs/loader.md`` took longer than the arithmetic. Each name keeps one flat
    block, grown when a larger shape is asked for; the caller must be done with the previous
    contents. Per thread, so that a ``MultithreadIterator``'s workers do not share one.
    """
    size = math.prod(shape)
    block = getattr(_scratch, name, None)
    if block is None or block.size < size:
        block = np.empty(size, np.float32)
        setattr(_scratch, name, block)
    return block[:size].reshape(shape)


def hwc(img, out=None):
    """float32 ``(C, H, W)`` -> C-contiguous float32 ``(H, W, C)`` (OpenCV's layout).

    ``out``: optional float32 ``(H, W, C)`` to write to (see :func:`scratch`).
    """
    C, H, W = img.shape
    planes = [np.ascontiguousarray(plane, dtype=np.float32) for plane in img]
    # cv2.merge interleaves contiguous planes several times faster than a transposed copy.
    return cv2.merge(planes, dst=out).reshape(H, W, C)


def chw(img):
    """float32 ``(H, W, C)`` -> a new C-contiguous float32 ``(C, H, W)`` (ChainerCV's layout)."""
    return np.ascontiguousarray(img.transpose(2, 0, 1))


def resize_hwc(img, size, out=None):
    """Resizes float32 ``(H, W, C)`` to ``size = (h, w)``, always with OpenCV.

    An axis that grows is interpolated bilinearly (``cv2.INTER_LINEAR``, pixel centres at
    half-integers: the values ChainerCV's PIL backend computes). An axis that shrinks is
    averaged over the input each output pixel covers (``cv2.INTER_AREA``), so that, like
    PIL's bilinear filter, which widens with the reduction, a reduced image does not alias;
    when one axis grows and the other shrinks, the two are resized one after the other.
    (Darknet's own ``resize_image`` interpolates without averaging; the former PIL path, which
    this keeps close to, did average.)

    ``out``: optional float32 ``(h, w, C)`` to write to. Returns float32 ``(h, w, C)``, never
    ``img`` itself.
    """
    h, w = size
    H, W, C = img.shape
    if (H, W) == (h, w):
        if out is None:
            return img.copy()
        out[...] = img
        return out
    if h >= H and w >= W:
        res = cv2.resize(img, (w, h), dst=out, interpolation=cv2.INTER_LINEAR)
    elif h <= H and w <= W:
        res = cv2.resize(img, (w, h), dst=out, interpolation=cv2.INTER_AREA)
    elif w < W:  # shrink the width first, then enlarge the height
        res = cv2.resize(img, (w, H), dst=scratch('resize_pass', (H, w, C)),
                         interpolation=cv2.INTER_AREA)
        res = cv2.resize(res, (w, h), dst=out, interpolation=cv2.INTER_LINEAR)
    else:
        res = cv2.resize(img, (W, h), dst=scratch('resize_pass', (h, W, C)),
                         interpolation=cv2.INTER_AREA)
        res = cv2.resize(res, (w, h), dst=out, interpolation=cv2.INTER_LINEAR)
    return res.reshape(h, w, C)


def crop_with_fill_hwc(img, y0, x0, h, w, fill=FILL, out=None):
    """:func:`crop_with_fill` on float32 ``(H, W, C)``; returns ``(h, w, C)``.

    A view of ``img`` when the window lies inside it; otherwise a new array, or ``out``.
    """
    H, W, C = img.shape
    sy, sx = max(y0, 0), max(x0, 0)
    ey, ex = min(y0 + h, H), min(x0 + w, W)
    if sy >= ey or sx >= ex:
        if out is None:
            return np.full((h, w, C), fill, dtype=np.float32)
        out[...] = fill
        return out
    inside = img[sy:ey, sx:ex]
    if (sy - y0, sx - x0, ey - sy, ex - sx) == (0, 0, h, w):
        return inside
    res = cv2.copyMakeBorder(inside, sy - y0, y0 + h - ey, sx - x0, x0 + w - ex,
                             cv2.BORDER_CONSTANT, dst=out, value=(fill,) * 4)
    return res.reshape(h, w, C)


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
        C = img.shape[0]
        src = hwc(img, out=scratch('source', (H, W, C)))
        out = crop_with_fill_hwc(src, top, left, h, w, out=scratch('crop', (h, w, C)))
        bbox = transforms.translate_bbox(bbox, -top, -left)
        bbox, label = clip_and_filter_bbox(bbox, label, (h, w), min_side=0)

        out = resize_hwc(out, (self.size, self.size),
                         out=scratch('output', (self.size, self.size, C)))
        bbox = transforms.resize_bbox(bbox, (h, w), (self.size, self.size))
        if self.flip and rng.randint(2):
            cv2.flip(out, 1, dst=out)
            bbox = transforms.flip_bbox(bbox, (self.size, self.size), x_flip=True)
        dhue, dsat, dexp = draw_hsv(rng, self.hue, self.saturation, self.exposure)
        out = chw(shift_hsv_hwc(out, dhue, dsat, dexp, out=out))
        bbox, label = clip_and_filter_bbox(bbox, label, (self.size, self.size))
        return out, bbox.astype(np.float32), label.astype(np.int32)


class ResizeTransform(object):
    """Resizes ``(img, bbox, label[, ...])`` to a square ``size`` without augmentation."""

    def __init__(self, size):
        self.size = size

    def __call__(self, in_data, rng=None):
        img, bbox = in_data[:2]
        _, H, W = img.shape
        img = chw(resize_hwc(hwc(img), (self.size, self.size)))
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
