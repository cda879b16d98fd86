"""AVA head: RoIAlign conventions on hand-made maps, pooling, dropout masks, loss."""
import types

import numpy as np
import pytest

import chainer
import chainer.functions as F

from chainer_yolo_dist.core.sampling import ForwardRandomness
from chainer_yolo_dist.slowfast.head import (
    ActionDetector, AVAHead, DetectorLoss, dropout_mask, multilabel_loss, roi_align_2d)
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


@pytest.mark.parametrize('dtype,ratio', [(np.float32, 0.5), (np.float64, 0.3), (np.float32, 0.)])
def test_host_dropout_mask_is_chainers_cpu_mask(dtype, ratio):
    """The same draws from NumPy's generator, the same scaled values and dtype, bit for bit."""
    x = np.ones((5, 7), dtype)
    np.random.seed(11)
    with chainer.using_config('train', True):
        _, chainers = F.dropout(x, ratio, return_mask=True)
    np.random.seed(11)
    ours = dropout_mask(x.shape, ratio, dtype)
    assert ours.dtype == chainers.dtype == dtype
    assert np.array_equal(ours, chainers)


def _features(seed=0):
    rng = np.random.RandomState(seed)
    return ([rng.randn(2, 16, 2, 4, 4).astype(np.float32),
             rng.randn(2, 4, 8, 4, 4).astype(np.float32)],
            np.array([[0, 0, 32, 32], [8, 8, 40, 56], [16, 0, 64, 64]], np.float32),
            np.array([0, 1, 1], np.int32))


def test_head_passes_the_host_mask_and_keeps_the_cpu_results(monkeypatch):
    """Logits as before the change (Chainer drawing the mask itself on the CPU); F.dropout is
    always given a mask, so cuDNN's dropout states are never used on a GPU."""
    np.random.seed(3)
    head = AVAHead([16, 4], n_class=6, spatial_scale=1. / 16)
    features, rois, idx = _features()
    with chainer.using_config('train', True):
        np.random.seed(5)
        before = head.fc(F.dropout(head.pooled_features(features, rois, idx), 0.5)).array
        np.random.seed(5)
        plain = F.dropout
        masks = []

        def only_with_mask(x, ratio, **kwargs):
            assert kwargs.get('mask') is not None
            masks.append(kwargs['mask'])
            return plain(x, ratio, **kwargs)

        monkeypatch.setattr(F, 'dropout', only_with_mask)
        after = head(features, rois, idx).array
    assert np.array_equal(before, after) and len(masks) == 1
    assert set(np.unique(masks[0])) == {0., 2.}
    with chainer.using_config('train', False):  # no draw in test mode
        state = np.random.get_state()[1].copy()
        head(features, rois, idx)
        assert np.array_equal(state, np.random.get_state()[1]) and len(masks) == 1


def _masks_of_updates(first, last, seed=7, rank=1):
    """Dropout masks of updates ``first..last`` as a trainer draws them: ForwardRandomness
    seeds before the first update (``initialize``; at iteration ``first - 1``, the iteration a
    snapshot restores, when resuming) and after every update."""
    ext = ForwardRandomness(seed, rank)
    trainer = types.SimpleNamespace(updater=types.SimpleNamespace(iteration=first - 1))
    ext.initialize(trainer)
    masks = []
    for iteration in range(first, last + 1):
        masks.append(dropout_mask((3, 20), 0.5, np.float32))  # the update's forward
        trainer.updater.iteration = iteration
        ext(trainer)
    return masks


def test_masks_repeat_per_seed_and_resume_exactly():
    full = _masks_of_updates(1, 6)
    again = _masks_of_updates(1, 6)
    assert all(np.array_equal(a, b) for a, b in zip(full, again))
    assert not np.array_equal(full[0], full[1])  # a new mask every update
    resumed = _masks_of_updates(4, 6)  # a new process resumed from snapshot_iter_3
    assert all(np.array_equal(a, b) for a, b in zip(full[3:], resumed))
    other_rank = _masks_of_updates(1, 2, rank=0)
    assert not np.array_equal(full[0], other_rank[0])
