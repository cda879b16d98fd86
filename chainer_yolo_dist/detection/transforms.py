"""YOLO9000's data augmentation for detection.

Conventions (ChainerCV's): ``img`` float32 (3, H, W) RGB in [0, 255]; ``bbox`` float32 (R, 4)
as ``(y_min, x_min, y_max, x_max)`` in pixels; ``label`` int32 (R,).

Two readings of the papers' augmentation (``augmentation`` in the presets; docs/papers.md):

- ``'darknet'``: Darknet's region-layer data loader (``load_data_region``), which YOLO9000's
  code uses: a random crop whose four sides are each moved by up to ``jitter`` times the image
  side (outwards too: the outside is filled with grey), a horizontal flip, a resize to the
  output size, and hue / saturation / exposure shifts in HSV;
- ``'paper'``: what papers 000 and 001 say the detector shares with the classifier: the same
  random crop, a random rotation of up to ``angle`` degrees (Darknet's classifier ``angle=7``)
  and the hue / saturation / exposure shifts, no flip.

Boxes are moved with the image (a rotated box becomes the box around its rotated corners),
clipped to it, and dropped when less than one output pixel of height or width is left.

The pixel work is OpenCV's (:mod:`chainer_yolo_dist.datasets.imageops`), so that one loader
process on one core augments well over 100 images/s at 608 (``docs/loader.md``). The random
draws of the 'darknet' reading are the same, in the same order, as in the former
NumPy/Matplotlib/PIL implementation, and the outputs agree with it within the tolerances stated
in ``tests/test_transforms_opencv.py``.
"""
import cv2
import numpy as np
from chainercv import transforms

from chainer_yolo_dist.datasets.imageops import (chw, draw_hsv, hwc, resize_hwc, scratch,
                                                 shift_hsv_hwc)

#: Value of the area a crop takes from outside the image (Darknet fills with 0.5).
FILL = 127.5


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
        angle (float): largest random rotation in degrees (0: none, no draw from the stream).

    :func:`for_reading` builds the two readings of the papers. Called as ``aug(example, rng)``
    with a ``numpy.random.RandomState`` (see :mod:`chainer_yolo_dist.core.sampling`, which
    makes that stream reproducible).
    """

    def __init__(self, size, jitter=0.2, hue=0.1, saturation=1.5, exposure=1.5, flip=True,
                 angle=0.0):
        self.size = size
        self.jitter = jitter
        self.hue = hue
        self.saturation = saturation
        self.exposure = exposure
        self.flip = flip
        self.angle = angle

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
        if self.angle:
            degrees = rng.uniform(-self.angle, self.angle)
            out, bbox = rotate_hwc(out, bbox, degrees, out=scratch('rotated', out.shape))
        dhue, dsat, dexp = draw_hsv(rng, self.hue, self.saturation, self.exposure)
        out = chw(shift_hsv_hwc(out, dhue, dsat, dexp, out=out))
        bbox, label = clip_and_filter_bbox(bbox, label, (self.size, self.size))
        return out, bbox.astype(np.float32), label.astype(np.int32)


#: Darknet's classifier rotation (``darknet19.cfg``: ``angle=7``), which the 'paper' reading
#: applies to detection too (papers 000 sec. 2.2, 001 sec. 2.3; docs/papers.md).
PAPER_ANGLE = 7.0


def for_reading(reading, size, jitter=0.2):
    """The augmentation of a reading (a preset's ``augmentation``): 'darknet' (crop, flip,
    HSV) or 'paper' (crop, rotation up to :data:`PAPER_ANGLE` degrees, HSV, no flip)."""
    if reading == 'darknet':
        return YOLOAugmentation(size, jitter=jitter)
    if reading == 'paper':
        return YOLOAugmentation(size, jitter=jitter, flip=False, angle=PAPER_ANGLE)
    raise ValueError('unknown augmentation reading %r: paper or darknet' % (reading,))


def rotate_hwc(img, bbox, degrees, fill=FILL, out=None):
    """Rotates float32 ``(H, W, C)`` by ``degrees`` (counter-clockwise) about its centre.

    Pixels from outside the image are ``fill``. Each box becomes the axis-aligned box around
    its four rotated corners (larger than the object: the usual, loose, choice).
    Returns ``(image (H, W, C), bbox (R, 4))``.
    """
    H, W, C = img.shape
    matrix = cv2.getRotationMatrix2D(((W - 1) / 2.0, (H - 1) / 2.0), degrees, 1.0)
    rotated = cv2.warpAffine(img, matrix, (W, H), dst=out, flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=(fill,) * 4)
    if len(bbox):
        # Box coordinates are pixel edges; OpenCV's are pixel centres, half a pixel further.
        y0, x0, y1, x1 = bbox.T - 0.5
        xs = np.stack([x0, x1, x1, x0], axis=1)  # (R, 4) corners, in (x, y) for OpenCV
        ys = np.stack([y0, y0, y1, y1], axis=1)
        rx = matrix[0, 0] * xs + matrix[0, 1] * ys + matrix[0, 2] + 0.5
        ry = matrix[1, 0] * xs + matrix[1, 1] * ys + matrix[1, 2] + 0.5
        bbox = np.stack([ry.min(1), rx.min(1), ry.max(1), rx.max(1)], axis=1)
    return rotated.reshape(H, W, C), bbox.astype(np.float32)


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
