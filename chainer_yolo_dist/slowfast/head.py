"""The AVA detection head of SlowFast: per-person RoIAlign features -> multi-label action scores.

As PySlowFast's ``ResNetRoIHead`` (SlowFast paper sec. 5.1): for each pathway's res5 map
``(N, C, T, H, W)`` an average over T, RoIAlign of every person box to ``7 x 7`` at
``spatial_scale = 1/16`` (res5 stride 1, see :mod:`.networks`), a spatial max pooling to
``(R, C)``; the pathways are concatenated, dropout 0.5 is applied, a linear layer gives one logit
per class, and training uses per-class sigmoid binary cross-entropy (multi-label; PySlowFast
``LOSS_FUNC: bce``, ``HEAD_ACT: sigmoid``). The dropout mask is drawn on the host
(:func:`dropout_mask`), so that GPU runs draw the CPU's masks and resume exactly.

Box convention: ``rois`` float32 ``(R, 4)`` as ``(y_min, x_min, y_max, x_max)`` in input-clip
pixel-edge coordinates (the box of pixel rows ``r0..r1`` has ``y_min = r0``, ``y_max = r1 + 1``),
with ``roi_indices`` int32 ``(R,)`` naming each box's clip in the batch.

RoIAlign convention. ``F.roi_average_align_2d`` (Chainer 7) is the legacy (Detectron 2018)
RoIAlign: it maps a box coordinate ``u`` to feature coordinate ``u * spatial_scale`` where feature
cell ``k`` is sampled *at* ``k`` (its centre), and it enlarges boxes to at least one cell.
PySlowFast uses ``ROIAlign(..., aligned=True)`` (``DETECTION.ALIGNED: True``): ``u * scale - 0.5``,
i.e. cell ``k`` covers ``[k, k + 1)`` and its centre is ``k + 0.5``, with no minimum size. With
``aligned=True`` this head shifts each box by ``-0.5 / spatial_scale`` pixels before calling the
legacy operator, which reproduces the aligned sampling points exactly for boxes of at least one
feature cell (16 input pixels) on each side; smaller boxes still get the legacy one-cell minimum.

``F.roi_average_align_2d`` runs a Python loop per output element on the CPU (seconds per batch
for a narrow network). :func:`roi_align_2d` therefore computes the same operator on the CPU as
two small matrix products per box (bilinear weights are separable in y and x); it is tested equal
to ``F.roi_average_align_2d`` and is differentiable through ``F.matmul``. On a GPU the Chainer
kernel is used.
"""
import math

import numpy as np

import chainer
import chainer.functions as F
import chainer.links as L
from chainer.backends import cuda

from chainer_yolo_dist.core import finite

#: RoIAlign output size and feature stride at res5 (PySlowFast ``DETECTION.ROI_XFORM_RESOLUTION
#: 7``, ``DETECTION.SPATIAL_SCALE_FACTOR 16``).
ROI_SIZE = 7
SPATIAL_SCALE = 1. / 16
#: Dropout before the classifier (PySlowFast AVA configs ``MODEL.DROPOUT_RATE: 0.5``).
DROPOUT = 0.5


def _axis_weights(starts, bin_size, n_bins, grid, limit):
    """Averaged bilinear weights along one axis: ``(n_bins, limit)`` float64.

    Reproduces ``F.roi_average_align_2d``: sample ``i`` of bin ``p`` lies at
    ``start + p * bin + (i + 0.5) * bin / grid``; a sample outside ``[-1, limit]`` contributes
    zero (but still counts in the average); inside, it is clamped to ``[0, limit - 1]`` and split
    linearly between its two neighbouring cells.
    """
    w = np.zeros((n_bins, limit))
    for p in range(n_bins):
        for i in range(grid):
            y = starts + p * bin_size + (i + .5) * bin_size / grid
            if y < -1 or y > limit:
                continue
            y = min(max(y, 0.), limit - 1.)
            lo = int(math.floor(y))
            hi = min(lo + 1, limit - 1)
            frac = y - lo
            w[p, lo] += (1. - frac) / grid
            w[p, hi] += frac / grid
    return w


def roi_align_weights(rois, height, width, outsize, spatial_scale, sampling_ratio=None):
    """Per-box weight matrices ``(Wy (R, outh, H), Wx (R, outw, W))`` of RoIAlign (legacy).

    ``out[r, c] = Wy[r] @ x[roi_indices[r], c] @ Wx[r].T`` equals ``F.roi_average_align_2d``.
    ``rois`` is a NumPy ``(R, 4)`` array ``(y_min, x_min, y_max, x_max)`` in input pixels.
    """
    outh, outw = (outsize, outsize) if np.isscalar(outsize) else outsize
    sr_h, sr_w = (sampling_ratio, sampling_ratio) if not isinstance(sampling_ratio, tuple) \
        else sampling_ratio
    rois = np.asarray(rois, np.float64) * spatial_scale
    wy = np.zeros((len(rois), outh, height), np.float32)
    wx = np.zeros((len(rois), outw, width), np.float32)
    for r, (y0, x0, y1, x1) in enumerate(rois):
        rh, rw = max(y1 - y0, 1.), max(x1 - x0, 1.)
        gh = sr_h if sr_h else int(math.ceil(rh / outh))
        gw = sr_w if sr_w else int(math.ceil(rw / outw))
        wy[r] = _axis_weights(y0, rh / outh, outh, gh, height)
        wx[r] = _axis_weights(x0, rw / outw, outw, gw, width)
    return wy, wx


def roi_align_2d(x, rois, roi_indices, outsize, spatial_scale, sampling_ratio=None):
    """RoIAlign with ``F.roi_average_align_2d``'s semantics: ``(N, C, H, W)`` ->
    ``(R, C, oh, ow)``.

    On the CPU it is computed as ``Wy @ x @ Wx^T`` per box (exact, fast, differentiable); on a GPU
    it calls ``F.roi_average_align_2d``.
    """
    xp = chainer.backend.get_array_module(x)
    if xp is not np:
        return F.roi_average_align_2d(x, rois, roi_indices, outsize, spatial_scale,
                                      sampling_ratio)
    n_roi = len(rois)
    _, c, h, w = x.shape
    wy, wx = roi_align_weights(cuda.to_cpu(rois), h, w, outsize, spatial_scale, sampling_ratio)
    wy, wx = wy.astype(x.dtype), wx.astype(x.dtype)
    feats = F.get_item(x, np.asarray(roi_indices, np.int32))  # (R, C, H, W)
    t = F.matmul(F.reshape(feats, (n_roi, c * h, w)), wx, transb=True)  # (R, C*H, ow)
    outw = wx.shape[1]
    t = F.transpose(F.reshape(t, (n_roi, c, h, outw)), (0, 2, 1, 3))  # (R, H, C, ow)
    t = F.matmul(wy, F.reshape(t, (n_roi, h, c * outw)))  # (R, oh, C*ow)
    return F.transpose(F.reshape(t, (n_roi, wy.shape[1], c, outw)), (0, 2, 1, 3))


def shift_to_aligned(rois, spatial_scale):
    """Boxes shifted by ``-0.5 / spatial_scale``: the legacy operator then samples as aligned."""
    return rois - rois.dtype.type(0.5 / spatial_scale)  # a scalar, so CuPy arrays work too


class AVAHead(chainer.Chain):
    """Per-box action logits from the res5 maps of each pathway.

    Args:
        in_channels (list of int): channels of each pathway's map (``SlowFast.out_channels``).
        n_class (int): number of action classes (80 trained in AVA v2.2, 60 evaluated).
        roi_size (int): RoIAlign output side (7).
        spatial_scale (float): feature/input size ratio (1/16 with res5 stride 1).
        dropout (float): dropout ratio before the linear layer (0.5).
        aligned (bool): sample as ``ROIAlign(aligned=True)`` (PySlowFast) rather than legacy.
    """

    def __init__(self, in_channels, n_class, roi_size=ROI_SIZE, spatial_scale=SPATIAL_SCALE,
                 dropout=DROPOUT, aligned=True):
        super(AVAHead, self).__init__()
        self.roi_size = roi_size
        self.spatial_scale = spatial_scale
        self.dropout = dropout
        self.aligned = aligned
        self.n_class = n_class
        with self.init_scope():
            # PySlowFast initialises the projection with std 0.01 and zero bias.
            self.fc = L.Linear(sum(in_channels), n_class,
                               initialW=chainer.initializers.Normal(0.01))

    def pooled_features(self, features, rois, roi_indices):
        """``(R, sum C)``: temporal average, RoIAlign, spatial max, per pathway, concatenated.

        ``features``: list of ``(N, C_p, T_p, H, W)`` maps; ``rois`` ``(R, 4)`` float32 in input
        pixels (y_min, x_min, y_max, x_max); ``roi_indices`` ``(R,)`` int32.
        """
        xp = chainer.backend.get_array_module(rois)
        rois = xp.asarray(rois, np.float32)
        if self.aligned:
            rois = shift_to_aligned(rois, self.spatial_scale)
        roi_indices = xp.asarray(roi_indices, np.int32)
        pooled = []
        for feat in features:
            h = F.mean(feat, axis=2)  # temporal average pooling over the whole map
            h = roi_align_2d(h, rois, roi_indices, self.roi_size, self.spatial_scale)
            pooled.append(F.max(h, axis=(2, 3)))
        return F.concat(pooled, axis=1)

    def forward(self, features, rois, roi_indices):
        """Logits ``(R, n_class)``; dropout is active only under ``chainer.config.train``, with
        the mask of :func:`dropout_mask` (drawn on the host, on every device)."""
        h = self.pooled_features(features, rois, roi_indices)
        if chainer.config.train:
            mask = dropout_mask(h.shape, self.dropout, h.dtype)
            h = F.dropout(h, self.dropout,
                          mask=chainer.backend.get_device_from_array(h.array).send(mask))
        return self.fc(h)


def dropout_mask(shape, ratio, dtype):
    """The scaled dropout mask ``(shape)`` of ``dtype``: 0 or ``1 / (1 - ratio)``, drawn on the
    host from NumPy's global generator exactly as Chainer's CPU ``F.dropout`` draws it
    (``numpy.random.rand(*shape) >= ratio``, times the scale in ``dtype``).

    Why not let ``F.dropout`` draw: on a GPU with cuDNN it uses cuDNN's dropout states, seeded
    once per process from ``os.urandom`` (or ``CHAINER_SEED``), whose position is in no snapshot;
    without cuDNN it draws from CuPy's generator. Drawn here, the masks are the CPU run's on every
    device, and a run resumed from a snapshot draws the uninterrupted run's masks, because
    :class:`~chainer_yolo_dist.core.sampling.ForwardRandomness` reseeds NumPy's generator from
    ``(seed, rank, iteration)`` before every update. The mask is ``R x C`` (at R50: 2304 floats
    per box), so drawing it on the host and copying it costs little.
    """
    scale = np.dtype(dtype).type(1. / (1 - ratio))
    flag = np.random.rand(*shape) >= ratio
    return (scale * flag).astype(dtype, copy=False)  # already dtype; F.dropout requires it


def multilabel_loss(logits, labels):
    """Mean per-class sigmoid binary cross-entropy over ``R x n_class`` entries.

    ``labels`` int32 ``(R, n_class)`` of 0/1 (PySlowFast ``nn.BCELoss`` with mean reduction).
    """
    return F.sigmoid_cross_entropy(logits, labels, normalize=True, reduce='mean')


class ActionDetector(chainer.Chain):
    """Trunk (:class:`.networks.SlowFast`) + :class:`AVAHead`; ``forward`` returns logits.

    ``forward(clips, rois, roi_indices)``: clips float32 ``(N, 3, T, H, W)``, rois ``(R, 4)``
    float32 in clip pixels, roi_indices ``(R,)`` int32 -> logits ``(R, n_class)``.
    """

    def __init__(self, trunk, n_class, **head_kwargs):
        super(ActionDetector, self).__init__()
        head_kwargs.setdefault('spatial_scale', 1. / trunk.spatial_stride)
        with self.init_scope():
            self.trunk = trunk
            self.head = AVAHead(trunk.out_channels, n_class, **head_kwargs)

    def forward(self, clips, rois, roi_indices):
        return self.head(self.trunk(clips), rois, roi_indices)

    def predict(self, clips, rois, roi_indices):
        """Per-class probabilities ``(R, n_class)`` as a NumPy/CuPy array, in test mode."""
        with chainer.using_config('train', False), chainer.no_backprop_mode():
            return F.sigmoid(self.forward(clips, rois, roi_indices)).array


class DetectorLoss(chainer.Chain):
    """Training chain ``forward(clips, rois, roi_indices, labels)`` -> scalar BCE loss,
    reported.

    In training mode a non-finite loss raises
    :class:`~chainer_yolo_dist.core.finite.NonFiniteLossError` naming the iteration
    (``iteration``, set by the updater: :class:`~chainer_yolo_dist.core.updaters.
    DataParallelUpdater`) before the backward pass, so no update, and no file, holds it."""

    def __init__(self, detector):
        super(DetectorLoss, self).__init__()
        with self.init_scope():
            self.detector = detector
        self.iteration = None  # set by the updater for the error message

    def forward(self, clips, rois, roi_indices, labels):
        loss = multilabel_loss(self.detector(clips, rois, roi_indices), labels)
        # A host float: ChainerMN 7.8.1's ObservationAggregator moves a reported Variable with
        # a ChainerX call that fails without ChainerX.
        value = float(loss.array)
        if chainer.config.train:
            finite.check_loss(value, self.iteration)
        chainer.reporter.report({'loss': value}, self)
        return loss
