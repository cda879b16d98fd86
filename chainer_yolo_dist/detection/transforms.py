"""YOLO9000's data augmentation for detection.

Conventions (ChainerCV's): ``img`` float32 (3, H, W) RGB in [0, 255]; ``bbox`` float32 (R, 4)
as ``(y_min, x_min, y_max, x_max)`` in pixels; ``label`` int32 (R,).

Augmentation follows Darknet's region-layer data loader (``load_data_region``), which YOLO9000's
code uses (the 'darknet' reading; docs/papers.md): a random crop whose four sides are each moved by up to ``jitter`` times
the image side (outwards too: the outside is filled with grey), a horizontal flip, a resize to
the output size, and hue / saturation / exposure shifts in HSV. Boxes are moved with the image,
clipped to it, and dropped when less than one output pixel of height or width is left.
"""
import numpy as np
from chainercv import transforms

from chainer_yolo_dist.classification.transforms import distort_hsv

#: Value of the area a crop takes from outside the image (Darknet fills with 0.5).
FILL = 127.5


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
    :mod:`chainer_yolo_dist.core.sampling`, which makes that stream reproducible).
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
