"""Batching of ``(clip, bbox, label)`` examples with a varying number of boxes per clip.

Clips are copied to the device in the dtype the loader gives them (uint8 for AVA's frames, a
quarter of float32's bytes: 19 MB instead of 77 MB for the paper's 8 clips of 16 x 224 x 224)
and converted, and normalised for :func:`concat_normalised_clips`, there. The conversions are
exact (uint8 -> float32) or IEEE-rounded float32 operations, so the result is the host
computation's bit for bit.
"""
import numpy as np

from chainer.dataset import to_device

from chainer_yolo_dist.slowfast.transforms import normalise


def concat_clips(batch, device=None):
    """``(clips (N, 3, T, H, W), rois (R, 4), roi_indices (R,), labels (R, n_class))``.

    ``rois`` are the examples' boxes ``(y_min, x_min, y_max, x_max)`` in clip pixels, in batch
    order; ``roi_indices[r]`` is the clip of box ``r``. Every clip must have the same shape. The
    arrays are float32 / float32 / int32 / int32, sent to ``device`` (a Chainer device spec). The
    clips travel in their stored dtype (uint8 stays uint8; mixed dtypes in their common type)
    and become float32 on the device.
    """
    dtype = np.result_type(*[np.asarray(b[0]).dtype for b in batch])
    if dtype.kind not in 'uf':  # signed integers or bool: sent as float32, as before
        dtype = np.dtype(np.float32)
    clips = np.stack([np.asarray(b[0], dtype) for b in batch])
    rois = np.concatenate([np.asarray(b[1], np.float32).reshape(-1, 4) for b in batch])
    roi_indices = np.concatenate([np.full(len(b[1]), i, np.int32)
                                  for i, b in enumerate(batch)])
    labels = np.concatenate([np.asarray(b[2], np.int32) for b in batch])
    clips, rois, roi_indices, labels = (to_device(device, a)
                                        for a in (clips, rois, roi_indices, labels))
    return clips.astype(np.float32, copy=False), rois, roi_indices, labels


def concat_normalised_clips(batch, device=None):
    """:func:`concat_clips` of raw clips (``[0, 255]``), then ``(x / 255 - 0.45) / 0.225`` on the
    device (:func:`.transforms.normalise`): the training and evaluation converter."""
    clips, rois, roi_indices, labels = concat_clips(batch, device)
    return normalise(clips), rois, roi_indices, labels
