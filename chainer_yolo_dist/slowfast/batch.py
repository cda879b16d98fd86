"""Batching of ``(clip, bbox, label)`` examples with a varying number of boxes per clip."""
import numpy as np

from chainer.dataset import to_device


def concat_clips(batch, device=None):
    """``(clips (N, 3, T, H, W), rois (R, 4), roi_indices (R,), labels (R, n_class))``.

    ``rois`` are the examples' boxes ``(y_min, x_min, y_max, x_max)`` in clip pixels, in batch
    order; ``roi_indices[r]`` is the clip of box ``r``. Every clip must have the same shape. The
    arrays are float32 / float32 / int32 / int32, sent to ``device`` (a Chainer device spec).
    """
    clips = np.stack([np.asarray(b[0], np.float32) for b in batch])
    rois = np.concatenate([np.asarray(b[1], np.float32).reshape(-1, 4) for b in batch])
    roi_indices = np.concatenate([np.full(len(b[1]), i, np.int32)
                                  for i, b in enumerate(batch)])
    labels = np.concatenate([np.asarray(b[2], np.int32) for b in batch])
    return tuple(to_device(device, a) for a in (clips, rois, roi_indices, labels))
