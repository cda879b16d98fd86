"""AVA clip transforms as PySlowFast applies them (``datasets/ava_dataset.py``, cv2 path).

Training: scale the short side to a random integer in ``[256, 320]``
(``DATA.TRAIN_JITTER_SCALES``), crop ``224 x 224`` at a random place (``DATA.TRAIN_CROP_SIZE``),
flip horizontally with probability 0.5; boxes follow and are clipped to the crop. Test: the whole
frame with its short side at 224 (``DATA.TEST_CROP_SIZE``; done by :class:`.ava.AVAClips`
``size``). Both then normalise ``(x / 255 - 0.45) / 0.225`` per channel (PySlowFast ``DATA.MEAN``,
``DATA.STD`` defaults). PySlowFast's optional colour jitter is off in the AVA configs and is not
provided.

Arrays: ``clip`` ``(3, T, H, W)`` in ``[0, 255]``, uint8 (AVA's frames) or float32 (synthetic
clips), kept in its dtype by the transforms; ``bbox`` float32 ``(R, 4)``
``(y_min, x_min, y_max, x_max)`` in pixels of that clip. A uint8 clip is resized as uint8, i.e.
rounded to integers, as PySlowFast's ``cv2_transform`` resizes its uint8 frames before
``astype(np.float32)``. Normalisation (:func:`normalise`) runs on the training device, after the
uint8 batch is copied there (:func:`.batch.concat_normalised_clips`): a quarter of the bytes of
a float32 copy.
"""
import chainer
import cv2
import numpy as np

TRAIN_JITTER_SCALES = (256, 320)
TRAIN_CROP_SIZE = 224
MEAN = 0.45
STD = 0.225


def normalise(clip):
    """``(clip / 255 - 0.45) / 0.225`` as float32, on the clip's device (NumPy or CuPy).

    Each step is a float32 operation with a Python-float operand in both libraries (CuPy follows
    NumPy's scalar casting), IEEE-rounded, so a CuPy array gives the NumPy result bit for bit.
    The clip may be uint8 (AVA's frames, converted here, exactly) or float32.
    """
    xp = chainer.backend.get_array_module(clip)
    return ((xp.asarray(clip, np.float32) / 255. - MEAN) / STD).astype(np.float32, copy=False)


def resize_clip(clip, height, width):
    """Every frame of ``(3, T, H, W)`` resized to ``(height, width)`` (bilinear)."""
    c, t = clip.shape[:2]
    frames = clip.transpose(1, 2, 3, 0)  # (T, H, W, 3)
    out = np.stack([cv2.resize(np.ascontiguousarray(f), (width, height),
                               interpolation=cv2.INTER_LINEAR) for f in frames])
    return out.reshape(t, height, width, c).transpose(3, 0, 1, 2)


def _randint(rng, low, high):
    """An integer in ``[low, high]`` from a ``Generator`` or a ``RandomState``."""
    if hasattr(rng, 'integers'):
        return int(rng.integers(low, high + 1))
    return int(rng.randint(low, high + 1))


def random_scale_crop_flip(clip, bbox, rng, scales=TRAIN_JITTER_SCALES,
                           crop=TRAIN_CROP_SIZE, flip_p=0.5):
    """The training augmentation; returns ``(clip (3, T, crop, crop), bbox (R, 4))``, the clip
    in its input dtype (uint8 or float32).

    ``rng`` is a ``numpy.random.Generator`` (or ``RandomState``) owned by the caller, so that a
    run is reproducible. Boxes are scaled, shifted into the crop, clipped to it (a box outside the
    crop becomes empty, as in PySlowFast, which keeps it), and mirrored with the frames.
    """
    _, _, h, w = clip.shape
    short = _randint(rng, scales[0], scales[1])
    if h <= w:
        new_h, new_w = short, int(round(w * short / float(h)))
    else:
        new_h, new_w = int(round(h * short / float(w))), short
    clip = resize_clip(clip, new_h, new_w)
    bbox = np.asarray(bbox, np.float32) * np.array(
        [new_h / float(h), new_w / float(w)] * 2, np.float32)
    y0, x0 = _randint(rng, 0, new_h - crop), _randint(rng, 0, new_w - crop)
    clip = clip[:, :, y0:y0 + crop, x0:x0 + crop]
    bbox = bbox - np.array([y0, x0, y0, x0], np.float32)
    bbox = np.clip(bbox, 0, crop)
    if rng.uniform() < flip_p:
        clip = clip[:, :, :, ::-1]
        bbox = np.stack([bbox[:, 0], crop - bbox[:, 3], bbox[:, 2], crop - bbox[:, 1]], axis=1)
    return np.ascontiguousarray(clip), bbox.astype(np.float32)  # the clip keeps its dtype
