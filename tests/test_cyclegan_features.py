"""The download-free default extractor: pooled Darknet-19 / 8 features, and its training."""
import numpy as np
import pytest

from chainer_yolo_dist.cyclegan.features import (
    PooledFeatures, build_default_extractor, train_default_extractor)
from chainer_yolo_dist.cyclegan.fid import frechet_distance_of_features


def test_pooled_features_shape_and_resizing():
    extractor = build_default_extractor()
    rng = np.random.RandomState(0)
    f = extractor(rng.uniform(-1, 1, (5, 3, 48, 48)).astype(np.float32))  # resized to 64
    assert f.shape == (5, 128) and f.dtype == np.float64 and np.all(np.isfinite(f))
    small_batches = PooledFeatures(extractor.model, batchsize=2)
    x = rng.uniform(-1, 1, (5, 3, 64, 64)).astype(np.float32)
    np.testing.assert_allclose(small_batches(x), extractor(x), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError):
        extractor(np.zeros((2, 64, 64), np.float32))


def test_any_callable_returning_a_map():
    extractor = PooledFeatures(lambda x: x * 2.0, input_size=8)
    x = np.full((2, 3, 8, 8), 0.5, np.float32)  # [-1, 1] -> 0.75 in [0, 1], times 2
    np.testing.assert_allclose(extractor(x), 1.5)


def test_training_lowers_the_loss_and_weights_round_trip(tmp_path):
    path = str(tmp_path / 'extractor.npz')
    model, log = train_default_extractor(path, n_images=64, epochs=3, batchsize=16, n_test=16)
    assert [e for e, _, _ in log] == [0, 1, 2]
    assert log[-1][1] < log[0][1]  # mean training loss fell
    extractor = build_default_extractor(path)
    x = np.random.RandomState(1).uniform(-1, 1, (4, 3, 64, 64)).astype(np.float32)
    np.testing.assert_array_equal(extractor(x), PooledFeatures(model)(x))
    # The same images give the same features: distance 0.
    f = extractor(np.concatenate([x, x[::-1]]))
    assert frechet_distance_of_features(f, f) == pytest.approx(0.0, abs=1e-6)
