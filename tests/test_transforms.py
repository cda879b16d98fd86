"""YOLO9000 augmentation, multi-scale sizes and the batch converter."""
import numpy as np
import pytest

from chainer_yolo_dist.detection.multiscale import (MultiScaleConverter, multiscale_size,
                                                    multiscale_sizes)
from chainer_yolo_dist.detection.transforms import (ResizeTransform, YOLOAugmentation,
                                                    clip_and_filter_bbox, crop_with_fill)


def _example():
    img = np.zeros((3, 100, 80), np.float32)
    img[:, 10:50, 10:30] = 200  # the object's pixels
    bbox = np.array([[10, 10, 50, 30], [0, 0, 100, 80]], np.float32)
    label = np.array([1, 2], np.int32)
    return img, bbox, label


def test_augmentation_keeps_boxes_inside_the_output_and_on_their_object():
    aug = YOLOAugmentation(64, jitter=0.3, hue=0, saturation=1, exposure=1)
    for seed in range(50):
        img, bbox, label = aug(_example(), np.random.RandomState(seed))
        assert img.shape == (3, 64, 64) and img.dtype == np.float32
        assert bbox.dtype == np.float32 and label.dtype == np.int32
        assert len(bbox) == len(label)
        assert (bbox >= 0).all() and (bbox <= 64).all()
        assert ((bbox[:, 2:] - bbox[:, :2]) >= 1).all()
        for box, lab in zip(bbox, label):
            if lab == 1:  # the bright object fills its (clipped) box
                y0, x0, y1, x1 = np.round(box).astype(int)
                inner = img[:, y0 + 1:y1 - 1, x0 + 1:x1 - 1]
                assert inner.size == 0 or inner.mean() > 150


def test_augmentation_is_a_function_of_the_random_stream():
    aug = YOLOAugmentation(48)
    a = aug(_example(), np.random.RandomState(7))
    b = aug(_example(), np.random.RandomState(7))
    c = aug(_example(), np.random.RandomState(8))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


def test_augmentation_flips_boxes_with_the_image():
    aug = YOLOAugmentation(100, jitter=0, hue=0, saturation=1, exposure=1)
    flipped = None
    for seed in range(20):
        img, bbox, _ = aug(_example(), np.random.RandomState(seed))
        if bbox[0, 1] > 50:  # x of the object moved to the right half: flipped
            flipped = bbox[0]
            break
    assert flipped is not None
    # Original box x 10..30 of 80, resized to 100 wide: 12.5..37.5; mirrored: 62.5..87.5.
    np.testing.assert_allclose(flipped[[1, 3]], [100 - 37.5, 100 - 12.5], atol=1e-4)


def test_hsv_shift_stays_in_range():
    aug = YOLOAugmentation(32, jitter=0, hue=0.5, saturation=3, exposure=3)
    img, _, _ = aug((np.random.RandomState(0).uniform(0, 255, (3, 32, 32)).astype(np.float32),
                     np.zeros((0, 4), np.float32), np.zeros((0,), np.int32)),
                    np.random.RandomState(1))
    assert img.min() >= 0 and img.max() <= 255


def test_boxes_that_lose_their_area_are_dropped():
    bbox = np.array([[-10, -10, -2, 5], [5, 5, 20, 20], [10, 62, 20, 70]], np.float32)
    label = np.array([0, 1, 2], np.int32)
    kept, kept_label = clip_and_filter_bbox(bbox, label, (64, 64))
    np.testing.assert_array_equal(kept_label, [1, 2])
    np.testing.assert_array_equal(kept, [[5, 5, 20, 20], [10, 62, 20, 64]])


def test_crop_outside_the_image_is_filled_grey():
    img = np.full((3, 4, 4), 9, np.float32)
    out = crop_with_fill(img, -2, 1, 4, 5, fill=127.5)
    assert out.shape == (3, 4, 5)
    assert (out[:, :2] == 127.5).all() and (out[:, 2:, :3] == 9).all()
    assert (out[:, 2:, 3:] == 127.5).all()


def test_multiscale_size_is_shared_by_ranks_and_changes_every_n_iterations():
    sizes = multiscale_sizes(320, 608)
    assert sizes == tuple(range(320, 609, 32))
    drawn = [multiscale_size(i, sizes, 10, seed=3) for i in range(400)]
    # Constant within each block of 10 iterations, a pure function of the iteration.
    for block in range(40):
        assert len(set(drawn[block * 10:(block + 1) * 10])) == 1
    assert drawn == [multiscale_size(i, sizes, 10, seed=3) for i in range(400)]
    assert set(drawn) == set(sizes)
    assert drawn != [multiscale_size(i, sizes, 10, seed=4) for i in range(400)]
    with pytest.raises(ValueError):
        multiscale_sizes(300, 608)


def test_converter_resizes_the_batch_and_its_boxes():
    examples = [ResizeTransform(64)(_example()) for _ in range(2)]
    conv = MultiScaleConverter(32)
    x, bboxes, labels = conv(examples)
    assert x.shape == (2, 3, 32, 32) and x.dtype == np.float32
    assert 0 <= x.min() and x.max() <= 1
    np.testing.assert_allclose(bboxes[0], examples[0][1] / 2)
    np.testing.assert_array_equal(labels[1], examples[1][2])


def test_rotation_moves_the_box_with_the_object():
    from chainer_yolo_dist.detection.transforms import rotate_hwc
    img = np.zeros((100, 100, 3), np.float32)
    img[10:30, 40:60] = 200  # the object: rows 10-30, columns 40-60
    bbox = np.array([[10, 40, 30, 60]], np.float32)
    # 90 degrees counter-clockwise about the centre: the top edge goes to the left edge.
    rotated, moved = rotate_hwc(img, bbox, 90)
    ys, xs = np.nonzero(rotated[..., 0] > 100)
    y0, x0, y1, x1 = moved[0]
    assert ys.min() == y0 and ys.max() == y1 - 1 and xs.min() == x0 and xs.max() == x1 - 1
    np.testing.assert_allclose(moved[0], [40, 10, 60, 30], atol=1e-4)
    # Any angle: the box still holds every pixel of the object.
    rotated, moved = rotate_hwc(img, bbox, 7, fill=0)
    ys, xs = np.nonzero(rotated[..., 0] > 1)
    y0, x0, y1, x1 = moved[0]
    assert ys.min() >= np.floor(y0) - 1 and ys.max() <= np.ceil(y1)
    assert xs.min() >= np.floor(x0) - 1 and xs.max() <= np.ceil(x1)


def test_the_two_readings_of_the_papers_augmentation():
    from chainer_yolo_dist.detection.transforms import PAPER_ANGLE, for_reading
    darknet, paper = for_reading('darknet', 64), for_reading('paper', 64)
    assert darknet.flip and not darknet.angle
    assert not paper.flip and paper.angle == PAPER_ANGLE == 7.0
    img, bbox, label = _example()
    out, boxes, labels = paper((img, bbox, label), np.random.RandomState(0))
    assert out.shape == (3, 64, 64) and boxes.shape[1] == 4 and len(boxes) == len(labels)
    with pytest.raises(ValueError, match='paper or darknet'):
        for_reading('flip', 64)
