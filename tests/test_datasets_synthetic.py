"""The procedural coloured-shapes datasets: determinism, splits, conventions, geometry."""
import colorsys
import hashlib

import numpy as np
import pytest

from chainer_yolo_dist.datasets.synthetic import (CLASS_NAMES, Canvas, SyntheticShapesDataset,
                                                  SyntheticShapesClassificationDataset,
                                                  object_colour, shape_mask, _HUES)


def digests(ds, n):
    return {hashlib.sha1(ds[i][0].tobytes()).hexdigest() for i in range(n)}


@pytest.mark.parametrize('cls', [SyntheticShapesDataset, SyntheticShapesClassificationDataset])
def test_same_seed_gives_identical_arrays_in_any_access_order(cls):
    a, b = cls(seed=3, n_images=20), cls(seed=3, n_images=20)
    later_first = [b[i] for i in reversed(range(20))][::-1]
    for i in range(20):
        for x, y in zip(a[i], later_first[i]):
            np.testing.assert_array_equal(x, y)
            assert x.dtype == y.dtype


@pytest.mark.parametrize('cls', [SyntheticShapesDataset, SyntheticShapesClassificationDataset])
def test_different_seed_gives_different_images(cls):
    a, b = cls(seed=0, n_images=20), cls(seed=1, n_images=20)
    assert not digests(a, 20) & digests(b, 20)


@pytest.mark.parametrize('cls', [SyntheticShapesDataset, SyntheticShapesClassificationDataset])
def test_train_val_test_splits_share_no_image(cls):
    sets = [digests(cls(split=s, n_images=150, size=32), 150) for s in ('train', 'val', 'test')]
    assert all(len(s) == 150 for s in sets)
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])


def test_detection_samples_follow_chainercv_conventions():
    ds = SyntheticShapesDataset(n_images=150, size=96, n_class=6)
    assert ds.class_names == ('disc', 'square', 'triangle', 'cross', 'ring', 'diamond')
    assert ds.keys == ('img', 'bbox', 'label')
    seen = set()
    for i in range(len(ds)):
        img, bbox, label = ds[i]
        assert img.shape == (3, 96, 96) and img.dtype == np.float32
        assert img.min() >= 0 and img.max() <= 255
        assert bbox.dtype == np.float32 and bbox.shape == (len(label), 4)
        assert label.dtype == np.int32
        assert np.all((label >= 0) & (label < 6))
        assert np.all(bbox[:, :2] >= 0) and np.all(bbox[:, 2:] <= 96)
        assert np.all(bbox[:, 0] < bbox[:, 2]) and np.all(bbox[:, 1] < bbox[:, 3])
        seen.update(label.tolist())
    assert seen == set(range(6))


def test_object_count_covers_zero_to_max_objects():
    counts = [len(SyntheticShapesDataset(n_images=300, size=64)[i][2]) for i in range(300)]
    assert min(counts) == 0 and max(counts) == 6
    assert len(set(counts)) == 7
    few = SyntheticShapesDataset(n_images=100, size=64, max_objects=2)
    assert max(len(few[i][2]) for i in range(100)) == 2


def test_object_sizes_span_the_requested_scale_range():
    ds = SyntheticShapesDataset(n_images=300, size=128)
    bbox = np.concatenate([ds[i][1] for i in range(300)])
    longest = np.maximum(bbox[:, 2] - bbox[:, 0], bbox[:, 3] - bbox[:, 1])
    # Sides are log-uniform in [8, 85] px before the aspect ratio stretches one of them.
    assert longest.min() < 12 and longest.max() > 80
    assert 15 < np.median(longest) < 45
    big = SyntheticShapesDataset(n_images=30, size=128, min_scale=0.5, max_scale=0.5,
                                 max_objects=1)
    bbox = np.concatenate([big[i][1] for i in range(30)])
    longest = np.maximum(bbox[:, 2] - bbox[:, 0], bbox[:, 3] - bbox[:, 1])
    assert longest.min() >= 64 * 0.9  # the larger side is at least the nominal side


def test_box_is_the_tight_box_of_the_drawn_shape():
    canvas = Canvas(np.random.default_rng(0), 64)
    assert canvas.try_add(CLASS_NAMES.index('square'), cy=20.0, cx=30.0, h=10.0, w=16.0)
    img, bbox, label = canvas.render(noise_sigma=0.0)
    np.testing.assert_array_equal(bbox, [[15, 22, 25, 38]])
    np.testing.assert_array_equal(label, [1])
    inside = img[:, 15:25, 22:38].reshape(3, -1)
    assert np.ptp(inside, axis=1).max() < 0.3 * 255  # one shaded colour
    # the object's hue (blue) fills the box; the desaturated background does not look like it
    r, g, b = inside.mean(axis=1) / 255
    assert abs(colorsys.rgb_to_hsv(r, g, b)[0] * 360 - _HUES[1]) < 10


def test_new_object_may_not_hide_more_than_half_of_an_earlier_one():
    canvas = Canvas(np.random.default_rng(0), 64)
    square = CLASS_NAMES.index('square')
    assert canvas.try_add(square, 32.0, 20.0, 20.0, 20.0)  # x 10..30
    assert not canvas.try_add(square, 32.0, 24.0, 20.0, 20.0)  # would hide 80%
    assert canvas.try_add(square, 32.0, 36.0, 20.0, 20.0)  # x 26..46 hides 20%
    _, bbox, _ = canvas.render()
    # the first square's box shrinks to its visible part, as VOC annotates
    np.testing.assert_array_equal(bbox, [[22, 10, 42, 26], [22, 26, 42, 46]])


def test_classes_differ_in_shape_and_hue():
    u = np.linspace(-1, 1, 41)[None, :]
    v = np.linspace(-1, 1, 41)[:, None]
    masks = {k: shape_mask(k, u, v) for k in CLASS_NAMES}
    for a in CLASS_NAMES:
        assert masks[a].any()
        for b in CLASS_NAMES:
            if a < b:
                assert np.mean(masks[a] != masks[b]) > 0.05, (a, b)
    hues = np.array(_HUES[:6])
    gaps = np.abs((hues[:, None] - hues[None, :] + 180) % 360 - 180)
    assert gaps[~np.eye(6, dtype=bool)].min() >= 60
    rng = np.random.default_rng(0)
    for k in range(len(CLASS_NAMES)):
        r, g, b = object_colour(rng, k) / 255
        h, s, val = colorsys.rgb_to_hsv(r, g, b)
        assert abs((h * 360 - _HUES[k] + 180) % 360 - 180) <= 8.5 and s >= 0.64 and val >= 0.59


def test_classification_samples():
    ds = SyntheticShapesClassificationDataset(n_images=80, n_class=5)
    assert ds.class_names == CLASS_NAMES[:5] and ds.keys == ('img', 'label')
    labels = []
    for i in range(len(ds)):
        img, label = ds[i]
        assert img.shape == (3, 64, 64) and img.dtype == np.float32
        assert 0 <= img.min() and img.max() <= 255
        assert isinstance(label, np.int32) and 0 <= label < 5
        labels.append(int(label))
    assert set(labels) == set(range(5))


def test_indexing_bounds_slicing_and_arguments():
    ds = SyntheticShapesDataset(n_images=3, size=32)
    assert len(list(ds)) == 3  # iteration stops: out-of-range raises IndexError
    with pytest.raises(IndexError):
        ds[3]
    np.testing.assert_array_equal(ds[-1][0], ds[2][0])
    sub = ds.slice[[0, 2]]
    np.testing.assert_array_equal(sub[1][0], ds[2][0])
    assert SyntheticShapesDataset(n_class=8).class_names == CLASS_NAMES
    with pytest.raises(ValueError, match='n_class'):
        SyntheticShapesDataset(n_class=9)
    with pytest.raises(ValueError, match='split'):
        SyntheticShapesDataset(split='dev')
