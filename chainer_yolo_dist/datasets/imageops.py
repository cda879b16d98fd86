"""Image operations shared by the systems' augmentations, on OpenCV.

Conventions: ChainerCV's ``(C, H, W)`` float32 RGB in [0, 255] at the interfaces, OpenCV's
C-contiguous ``(H, W, C)`` float32 inside (:func:`hwc` and :func:`chw` convert; the datasets'
images are ``(C, H, W)`` views of interleaved memory, which :func:`hwc` takes without a copy).
Every resize picks its OpenCV interpolation explicitly, so that no output depends on whether
ChainerCV would choose cv2 or PIL. Intermediate images go to per-thread reusable arrays
(:func:`scratch`): measured in ``docs/loader.md``, fresh multi-megabyte arrays cost more in page
faults than the arithmetic.
"""
import math
import threading

import cv2
import numpy as np

# Loader workers are one process per core (Chainer's MultiprocessIterator forks them): OpenCV's
# own thread pool would start one thread per core in every worker and oversubscribe the node.
# 0 makes every OpenCV call run in the calling thread.
cv2.setNumThreads(0)


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

    When ``img`` is already a ``(C, H, W)`` view of C-contiguous float32 ``(H, W, C)`` memory
    (what :func:`chainer_yolo_dist.datasets.validation.read_image` returns), the result is that
    memory, ``img.transpose(1, 2, 0)``, made read-only: no copy, and ``out`` is not used. It
    shares memory with ``img``, so callers only read it (every augmentation here reads its
    source and writes into other arrays; the read-only flag makes a write raise instead of
    altering the dataset's image). Otherwise the planes are interleaved into ``out``
    (optional float32 ``(H, W, C)``, see :func:`scratch`) or a new array.
    """
    C, H, W = img.shape
    interleaved = img.transpose(1, 2, 0)
    if interleaved.dtype == np.float32 and interleaved.flags.c_contiguous:
        interleaved.flags.writeable = False
        return interleaved
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
