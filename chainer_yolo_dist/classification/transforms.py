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
   ``rand_scale`` factors (:func:`distort_hsv`).

Defaults are ``darknet19.cfg`` / ``darknet53.cfg``'s (``angle=7 hue=.1 saturation=.75
exposure=.75 aspect=.75``); ``min_crop`` / ``max_crop`` default to Darknet's own defaults for a
``size`` input, ``size`` and ``2 * size`` (224 to 448 for the paper's 224 training).
Validation follows Darknet's ``validate_classifier_single``: shorter side resized to ``size``,
then the centre ``size x size`` crop (:class:`CenterCrop`).

Conventions: ``img`` float32 ``(3, H, W)`` RGB in ``[0, 255]`` in and out; ``label`` int32
passes through unchanged. Transforms are called as ``t(example, rng)`` with a
``numpy.random.RandomState`` (see :mod:`chainer_yolo_dist.core.sampling`).
"""
import math

import numpy as np
from chainercv import transforms
from matplotlib.colors import hsv_to_rgb, rgb_to_hsv


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


def bilinear_sample(img, ys, xs, fill=0.0):
    """Samples ``img`` at real-valued pixel coordinates with bilinear interpolation.

    Args:
        img: float32 ``(C, H, W)``.
        ys, xs: float arrays of one shape ``S`` (row and column coordinates; pixel ``(i, j)``
            of ``img`` is at ``(i, j)``).
        fill (float): value of the pixels outside ``img`` that a sample blends in.
    Returns:
        float32 ``(C,) + S``.
    """
    C, H, W = img.shape
    y0 = np.floor(ys).astype(np.int64)
    x0 = np.floor(xs).astype(np.int64)
    wy = (ys - y0).astype(np.float32)
    wx = (xs - x0).astype(np.float32)
    out = np.zeros((C,) + ys.shape, dtype=np.float32)
    for dy, weight_y in ((0, 1 - wy), (1, wy)):
        for dx, weight_x in ((0, 1 - wx), (1, wx)):
            yy, xx = y0 + dy, x0 + dx
            inside = (yy >= 0) & (yy < H) & (xx >= 0) & (xx < W)
            values = np.where(inside, img[:, np.clip(yy, 0, H - 1), np.clip(xx, 0, W - 1)],
                              np.float32(fill))
            out += values * (weight_y * weight_x)
    return out


def rotate_scale_crop(img, size, rad, scale, dy, dx, aspect, fill=0.0):
    """Darknet's ``rotate_crop_image``: a ``size x size`` window of a scaled, rotated image.

    Output pixel ``(y, x)`` takes the input at
    ``R(rad) @ (((x - size/2 + dx) * aspect / scale), ((y - size/2 + dy) / scale)) + centre``,
    so ``scale`` magnifies, ``aspect > 1`` squeezes the image horizontally, and ``(dy, dx)``
    moves the window (in output pixels) from the image centre.

    Args:
        img: float32 ``(3, H, W)``.
    Returns:
        float32 ``(3, size, size)``.
    """
    _, H, W = img.shape
    grid_y, grid_x = np.meshgrid(np.arange(size, dtype=np.float64),
                                 np.arange(size, dtype=np.float64), indexing='ij')
    u = (grid_x - size / 2.0 + dx) * aspect / scale
    v = (grid_y - size / 2.0 + dy) / scale
    cos, sin = math.cos(rad), math.sin(rad)
    xs = cos * u - sin * v + W / 2.0
    ys = sin * u + cos * v + H / 2.0
    return bilinear_sample(img, ys, xs, fill)


class DarknetAugmentation(object):
    """Random crop, rotation, flip and HSV shift of an ``(img, label)`` example.

    Args:
        size (int): side of the square output.
        min_crop, max_crop (int): range of the shorter side the image is scaled to before
            the window is cut (default ``size`` and ``2 * size``, Darknet's).
        angle (float): largest rotation, degrees.
        aspect (float): aspect jitter (Darknet's ``aspect``; 1 disables it).
        hue, saturation, exposure: :func:`distort_hsv`'s.
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
        out = rotate_scale_crop(img, self.size, rad, scale, dy, dx, aspect, self.fill)
        if self.flip and rng.randint(2):
            out = out[:, :, ::-1]
        out = distort_hsv(out, self.hue, self.saturation, self.exposure, rng)
        return out, label


class CenterCrop(object):
    """Shorter side resized to ``size``, then the centre ``size x size`` crop (validation).

    ``t((img, label), rng=None) -> (img, label)``, img float32 ``(3, size, size)``.
    """

    def __init__(self, size):
        self.size = int(size)

    def __call__(self, example, rng=None):
        img, label = example
        img = transforms.scale(np.asarray(img, dtype=np.float32), self.size, fit_short=True)
        img = transforms.center_crop(img, (self.size, self.size))
        return img.astype(np.float32, copy=False), label
