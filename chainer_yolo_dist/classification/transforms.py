"""Classification augmentation of YOLO9000 / Darknet for ``(img, label)`` examples.

YOLO9000 sec. 3 trains Darknet-19 on ImageNet with "random crops, rotations, and hue,
saturation, and exposure shifts"; Darknet's classifier loader (``load_data_augment`` with
``random_augment_image`` and ``random_distort_image``) does, per image:

1. pick an aspect factor ``a`` (``rand_scale(aspect)``: in ``[1/aspect', aspect']`` with
   ``aspect' = max(aspect, 1/aspect)``), a target shorter side ``r`` uniform in
   ``[min_crop, max_crop]`` and an angle uniform in ``[-angle, angle]`` degrees;
2. sample an ``size x size`` window of the image scaled so its shorter side is ``r``
   (the width additionally stretched by ``1/a``), rotated by the angle about the image
   centre, and shifted by a random offset that keeps it inside the scaled image where it
   can; bilinear interpolation, pixels from outside the image are 0 (Darknet's
   ``get_pixel_extend``);
3. flip horizontally with probability 1/2;
4. shift hue by up to ``hue`` of the circle and scale saturation and exposure by
   ``rand_scale`` factors (:func:`chainer_yolo_dist.datasets.imageops.distort_hsv`).

Defaults are ``darknet19.cfg`` / ``darknet53.cfg``'s (``angle=7 hue=.1 saturation=.75
exposure=.75 aspect=.75``); ``min_crop`` / ``max_crop`` default to Darknet's own defaults for a
``size`` input, ``size`` and ``2 * size`` (224 to 448 for the paper's 224 training).
Validation follows Darknet's ``validate_classifier_single``: shorter side resized to ``size``,
then the centre ``size x size`` crop (:class:`CenterCrop`).

The pixel work is OpenCV's (``cv2.warpAffine`` for step 2, ``cv2.cvtColor`` for step 4,
``cv2.resize`` for validation), so that one loader process on one core augments several hundred
images/s at 224 (``docs/loader.md``); the random draws are those, in the order, of the former
NumPy implementation and the outputs agree with it within the tolerances stated in
``tests/test_transforms_opencv.py``.

Conventions: ``img`` float32 ``(3, H, W)`` RGB in ``[0, 255]`` in and out; ``label`` int32
passes through unchanged. Transforms are called as ``t(example, rng)`` with a
``numpy.random.RandomState`` (see :mod:`chainer_yolo_dist.core.sampling`).
"""
import math

import cv2
import numpy as np

from chainer_yolo_dist.datasets.imageops import (chw, draw_hsv, hwc, resize_hwc, scratch,
                                                 shift_hsv_hwc)


def _rand_scale(rng, s):
    # Darknet's rand_scale(s): uniform between 1 and s, inverted half of the time.
    scale = rng.uniform(min(1.0, s), max(1.0, s))
    return scale if rng.randint(2) else 1.0 / scale


def rotate_scale_crop_hwc(img, size, rad, scale, dy, dx, aspect, fill=0.0, out=None):
    """:func:`rotate_scale_crop` on float32 ``(H, W, C)``; returns float32 ``(size, size, C)``.

    One ``cv2.warpAffine`` with the inverse map below, bilinear, constant ``fill`` outside.
    OpenCV quantises the sampling position to 1/32 pixel (``INTER_TAB_SIZE``), so a pixel may
    differ from exact bilinear interpolation by up to 1/64 of the local intensity step.
    ``out``: optional float32 ``(size, size, C)`` to write to.
    """
    H, W = img.shape[:2]
    cos, sin = math.cos(rad), math.sin(rad)
    # (u, v) = (a (x + x0), b (y + y0)); (xs, ys) = R (u, v) + centre.
    a, b = aspect / scale, 1.0 / scale
    x0, y0 = dx - size / 2.0, dy - size / 2.0
    inverse = np.array([[cos * a, -sin * b, cos * a * x0 - sin * b * y0 + W / 2.0],
                        [sin * a, cos * b, sin * a * x0 + cos * b * y0 + H / 2.0]])
    res = cv2.warpAffine(img, inverse, (size, size), dst=out,
                         flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=(fill,) * 4)
    return res.reshape(size, size, img.shape[2])


def rotate_scale_crop(img, size, rad, scale, dy, dx, aspect, fill=0.0):
    """Darknet's ``rotate_crop_image``: a ``size x size`` window of a scaled, rotated image.

    Output pixel ``(y, x)`` takes the input at
    ``R(rad) @ (((x - size/2 + dx) * aspect / scale), ((y - size/2 + dy) / scale)) + centre``,
    so ``scale`` magnifies, ``aspect > 1`` squeezes the image horizontally, and ``(dy, dx)``
    moves the window (in output pixels) from the image centre. Pixel ``(i, j)`` of ``img`` is
    at ``(i, j)``; samples blend bilinearly with ``fill`` outside the image (Darknet's
    ``get_pixel_extend`` returns 0 there).

    Args:
        img: float32 ``(3, H, W)``.
    Returns:
        float32 ``(3, size, size)``.
    """
    return chw(rotate_scale_crop_hwc(hwc(img), size, rad, scale, dy, dx, aspect, fill))


class DarknetAugmentation(object):
    """Random crop, rotation, flip and HSV shift of an ``(img, label)`` example.

    Args:
        size (int): side of the square output.
        min_crop, max_crop (int): range of the shorter side the image is scaled to before
            the window is cut (default ``size`` and ``2 * size``, Darknet's).
        angle (float): largest rotation, degrees.
        aspect (float): aspect jitter (Darknet's ``aspect``; 1 disables it).
        hue, saturation, exposure: :func:`~chainer_yolo_dist.datasets.imageops.distort_hsv`'s.
        flip (bool): random horizontal flip.
        fill (float): value of pixels from outside the image (Darknet: 0).

    ``aug((img, label), rng) -> (img, label)``, img float32 ``(3, size, size)`` in [0, 255].
    """

    def __init__(self, size, min_crop=None, max_crop=None, angle=7.0, aspect=0.75, hue=0.1,
                 saturation=0.75, exposure=0.75, flip=True, fill=0.0):
        self.size = int(size)
        self.min_crop = int(min_crop) if min_crop else self.size
        self.max_crop = int(max_crop) if max_crop else 2 * self.size
        if not 0 < self.min_crop <= self.max_crop:
            raise ValueError('DarknetAugmentation: need 0 < min_crop <= max_crop, got %d and %d'
                             % (self.min_crop, self.max_crop))
        if aspect <= 0:
            raise ValueError('DarknetAugmentation: aspect must be positive, got %r' % (aspect,))
        self.angle = float(angle)
        self.aspect = float(aspect)
        self.hue, self.saturation, self.exposure = hue, saturation, exposure
        self.flip = flip
        self.fill = fill

    def __call__(self, example, rng):
        img, label = example
        img = np.asarray(img, dtype=np.float32)
        _, H, W = img.shape
        aspect = _rand_scale(rng, self.aspect)
        shorter = rng.randint(self.min_crop, self.max_crop + 1)
        scale = shorter / min(H, W * aspect)
        rad = math.radians(rng.uniform(-self.angle, self.angle))
        # Half the slack between the scaled image and the window: a shift up to this keeps
        # the window inside the image when the image is larger (Darknet's random_augment_args).
        slack_x = abs(W * scale / aspect - self.size) / 2.0
        slack_y = abs(H * scale - self.size) / 2.0
        dx = rng.uniform(-slack_x, slack_x)
        dy = rng.uniform(-slack_y, slack_y)
        C = img.shape[0]
        src = hwc(img, out=scratch('source', (H, W, C)))
        out = rotate_scale_crop_hwc(src, self.size, rad, scale, dy, dx, aspect, self.fill,
                                    out=scratch('output', (self.size, self.size, C)))
        if self.flip and rng.randint(2):
            cv2.flip(out, 1, dst=out)
        dhue, dsat, dexp = draw_hsv(rng, self.hue, self.saturation, self.exposure)
        out = chw(shift_hsv_hwc(out, dhue, dsat, dexp, out=out))
        return out, label


class CenterCrop(object):
    """Shorter side resized to ``size``, then the centre ``size x size`` crop (validation).

    ``t((img, label), rng=None) -> (img, label)``, img float32 ``(3, size, size)``.
    """

    def __init__(self, size):
        self.size = int(size)

    def __call__(self, example, rng=None):
        img, label = example
        _, H, W = np.shape(img)
        # ChainerCV's transforms.scale(fit_short=True): the shorter side becomes size exactly,
        # the longer one int(size * longer / shorter).
        if H < W:
            h, w = self.size, int(self.size * W / H)
        else:
            h, w = int(self.size * H / W), self.size
        # transforms.center_crop's offsets (Python's round: halves go to the even side).
        top, left = int(round((h - self.size) / 2.)), int(round((w - self.size) / 2.))
        out = resize_hwc(hwc(img), (h, w))[top:top + self.size, left:left + self.size]
        return chw(out), label
