"""AVA head: RoIAlign conventions on hand-made maps, pooling, loss."""
import numpy as np
import pytest

import chainer
import chainer.functions as F

from chainer_yolo_dist.slowfast.head import (
    ActionDetector, AVAHead, DetectorLoss, multilabel_loss, roi_align_2d)
from chainer_yolo_dist.slowfast.networks import SlowFast


def ramp(h=8, w=8):
    """One-channel map whose value at cell (y, x) is 10 y + x (bilinear interpolation is exact)."""
    return (10. * np.arange(h)[:, None] + np.arange(w)).astype(np.float32)[None, None]


def test_roi_align_legacy_samples_cell_k_at_k():
    # Box rows/cols 2..6 at scale 1, 2 x 2 bins of 2 cells, 2 x 2 samples per bin at
    # 2.5, 3.5 | 4.5, 5.5: the bin means are at 3 and 5, so 10 * 3 + 3 = 33, ...
    out = roi_align_2d(ramp(), np.array([[2, 2, 6, 6]], np.float32), np.zeros(1, np.int32),
                       2, 1.)
    np.testing.assert_allclose(out.array[0, 0], [[33, 35], [53, 55]], atol=1e-5)


def test_head_aligned_convention_samples_cell_k_at_k_plus_half():
    # Same box in a 16x-downsampled map: aligned=True subtracts half a cell (8 input pixels),
    # so the bin centres are at 2.5 and 4.5 cells. A 1x1 pooled bin (roi_size 2, then the max
    # over the 2 x 2 bins) of a ramp is its bottom-right bin: 10 * 4.5 + 4.5 = 49.5.
    head = AVAHead([1], n_class=1, roi_size=2, spatial_scale=1. / 16, aligned=True)
    feat = np.repeat(ramp()[:, :, None], 3, axis=2)  # (1, 1, T=3, 8, 8), constant in time
    rois = np.array([[32, 32, 96, 96]], np.float32)  # cells 2..6 at stride 16
    pooled = head.pooled_features([feat], rois, np.zeros(1, np.int32)).array
    np.testing.assert_allclose(pooled, [[49.5]], atol=1e-4)
    legacy = AVAHead([1], n_class=1, roi_size=2, spatial_scale=1. / 16, aligned=False)
    np.testing.assert_allclose(
        legacy.pooled_features([feat], rois, np.zeros(1, np.int32)).array, [[55.]], atol=1e-4)


def test_head_averages_time_and_concatenates_pathways_per_box():
    # Pathway A: time frames hold 0 and 2 x ramp -> mean = ramp. Pathway B: constant 7 on clip 1.
    a = np.concatenate([0 * ramp()[:, :, None], 2 * ramp()[:, :, None]], axis=2)
    a = np.concatenate([a, a + 100], axis=0)  # clip 1 is clip 0 + 100 (mean over time + 100)
    b = np.zeros((2, 2, 4, 8, 8), np.float32)
    b[1] = 7.
    head = AVAHead([1, 2], n_class=3, roi_size=2, spatial_scale=1., aligned=False)
    rois = np.array([[2, 2, 6, 6], [2, 2, 6, 6]], np.float32)
    pooled = head.pooled_features([a, b], rois, np.array([0, 1], np.int32)).array
    np.testing.assert_allclose(pooled, [[55, 0, 0], [155, 7, 7]], atol=1e-4)
    with chainer.using_config('train', False):
        logits = head([a, b], rois, np.array([0, 1], np.int32)).array
    np.testing.assert_allclose(logits, pooled @ head.fc.W.array.T + head.fc.b.array, rtol=1e-5)


@pytest.mark.parametrize('scale,sampling', [(1. / 16, None), (0.5, None), (0.5, 2)])
def test_matrix_roi_align_equals_chainer_operator_and_its_gradient(scale, sampling):
    rng = np.random.RandomState(0)
    x = rng.randn(2, 3, 9, 11).astype(np.float32)
    rois = np.array([[0, 0, 16, 16], [10, 20, 100, 170], [-10, -5, 50, 40],
                     [60, 100, 200, 300], [3, 4, 5, 6]], np.float32)
    idx = np.array([0, 1, 1, 0, 1], np.int32)
    gy = rng.randn(5, 3, 7, 7).astype(np.float32)
    grads = []
    for fn in (F.roi_average_align_2d, roi_align_2d):
        v = chainer.Variable(x.copy())
        y = fn(v, rois, idx, 7, scale, sampling)
        y.grad = gy
        y.backward()
        grads.append((y.array, v.grad))
    np.testing.assert_allclose(grads[0][0], grads[1][0], atol=1e-5)
    np.testing.assert_allclose(grads[0][1], grads[1][1], atol=1e-5)


def test_multilabel_loss_is_mean_binary_cross_entropy():
    logits = np.array([[0., 2.], [-1., 3.]], np.float32)
    labels = np.array([[1, 0], [0, 1]], np.int32)
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))
    expected = -np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p))
    assert abs(float(multilabel_loss(logits, labels).array) - expected) < 1e-6


def test_detector_end_to_end_shapes_and_gradient():
    trunk = SlowFast(width=8, blocks=(1, 1, 1, 1))
    model = DetectorLoss(ActionDetector(trunk, n_class=5))
    assert model.detector.head.spatial_scale == 1. / 16
    clips = np.random.RandomState(0).uniform(0, 1, (2, 3, 8, 64, 64)).astype(np.float32)
    rois = np.array([[0, 0, 32, 32], [16, 8, 64, 40], [10, 10, 50, 60]], np.float32)
    idx = np.array([0, 0, 1], np.int32)
    labels = np.array([[1, 0, 0, 1, 0], [0, 0, 0, 0, 0], [0, 1, 1, 0, 1]], np.int32)
    model.cleargrads()  # Chainer starts parameter gradients as NaN until cleared
    loss = model(clips, rois, idx, labels)
    loss.backward()
    assert loss.shape == () and np.isfinite(loss.array)
    assert np.abs(trunk.fast.conv1.W.grad).sum() > 0  # gradient reaches the Fast pathway
    scores = model.detector.predict(clips, rois, idx)
    assert scores.shape == (3, 5) and (scores > 0).all() and (scores < 1).all()


def test_detector_runs_in_float64_for_equivalence_tests():
    with chainer.using_config('dtype', np.float64):
        det = ActionDetector(SlowFast(width=8, blocks=(1, 1, 1, 1)), n_class=3)
    clips = np.random.RandomState(2).uniform(0, 1, (1, 3, 4, 32, 32))
    rois = np.array([[0, 0, 32, 32]], np.float32)
    det.cleargrads()
    logits = det(clips, rois, np.zeros(1, np.int32))
    assert logits.dtype == np.float64
    multilabel_loss(logits, np.array([[1, 0, 1]], np.int32)).backward()
    assert det.trunk.fast.conv1.W.grad.dtype == np.float64
