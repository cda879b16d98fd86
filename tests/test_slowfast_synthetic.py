"""Synthetic action clips: determinism, shapes, and labels that agree with the drawn motion."""
import numpy as np
import pytest

from chainer_yolo_dist.slowfast.batch import concat_clips
from chainer_yolo_dist.slowfast.synthetic import (
    ACTION_NAMES, SyntheticActionClips, mask_box)

N = 24


@pytest.fixture(scope='module')
def data():
    return SyntheticActionClips(N, split='train', seed=3)


def column(name):
    return ACTION_NAMES.index(name)


def test_examples_shapes_and_conventions(data):
    for i in range(6):
        clip, bbox, label = data[i]
        assert clip.shape == (3, 16, 64, 64) and clip.dtype == np.float32
        assert 0 <= clip.min() and clip.max() <= 255
        assert bbox.dtype == np.float32 and label.dtype == np.int32
        assert 1 <= len(bbox) <= 3 and label.shape == (len(bbox), len(ACTION_NAMES))
        assert (bbox[:, :2] >= 0).all() and (bbox[:, 2:] <= 64).all()
        assert (bbox[:, :2] < bbox[:, 2:]).all()


def test_deterministic_per_seed_split_index(data):
    again = SyntheticActionClips(N, split='train', seed=3)
    for i in (0, 5, 17):
        for a, b in zip(data[i], again[i]):
            np.testing.assert_array_equal(a, b)
    other_split = SyntheticActionClips(N, split='val', seed=3)[0][0]
    other_seed = SyntheticActionClips(N, split='train', seed=4)[0][0]
    assert not np.array_equal(data[0][0], other_split)
    assert not np.array_equal(data[0][0], other_seed)
    with pytest.raises(ValueError, match='split'):
        SyntheticActionClips(1, split='dev')


def test_labels_agree_with_the_drawn_motion(data):
    seen = np.zeros(len(ACTION_NAMES), int)
    for i in range(N):
        clip, bbox, label = data[i]
        for actor, box, lab in zip(data.actors(i), bbox, label):
            seen += lab
            first, last = actor.mask(0, 64), actor.mask(15, 64)
            x_first = np.nonzero(first)[1].mean()
            x_last = np.nonzero(last)[1].mean()
            if lab[column('move_right')]:
                assert x_last > x_first + 10  # at least 1 px per frame over 15 frames
            elif lab[column('move_left')]:
                assert x_last < x_first - 10
            else:
                assert abs(x_last - x_first) < 1.5
            if lab[column('grow')]:
                assert last.sum() > 1.4 * first.sum()
            elif lab[column('shrink')]:
                assert last.sum() < first.sum() / 1.4
            assert bool(lab[column('spin')]) == (actor.spin != 0)
            if lab[column('blink')]:  # dimmed on odd frames only
                np.testing.assert_allclose(actor.colour_at(1), 0.45 * actor.colour_at(0))
                np.testing.assert_allclose(actor.colour_at(2), actor.colour_at(0))
            else:
                np.testing.assert_allclose(actor.colour_at(1), actor.colour_at(0))
            assert lab[column('still')] == (lab[:6].sum() == 0)
            # The box is the actor's own pixels at the keyframe (T // 2 = 8).
            assert tuple(box) == mask_box(actor.mask(8, 64))
    assert (seen > 0).all(), seen  # every action occurs in 24 clips


def test_spin_and_blink_alias_at_the_slow_stride(data):
    # pi / 8 per frame: 90 degrees every 4 frames, so a 4-fold symmetric shape looks unchanged
    # to a pathway reading every 4th frame while it turns between consecutive frames; a blink of
    # period 2 has the same brightness every 4th frame.
    blinkers = [a for i in range(N) for a in data.actors(i) if a.blink]
    assert blinkers and all((a.colour_at(t) == a.colour_at(0)).all() for a in blinkers
                            for t in range(0, 16, 4))
    for i in range(N):
        for actor in data.actors(i):
            if actor.spin and actor.speed == 0 and actor.growth == 0:
                m0, m1, m4 = (actor.mask(t, 64) for t in (0, 1, 4))
                assert (m0 != m4).sum() <= 0.05 * m0.sum()
                assert (m0 != m1).sum() > 0.1 * m0.sum()
                return
    pytest.fail('no purely spinning actor in the sample')


def test_batches_concatenate_boxes_with_clip_indices(data):
    clips, rois, idx, labels = concat_clips([data[0], data[1], data[2]])
    n = [len(data[i][1]) for i in range(3)]
    assert clips.shape == (3, 3, 16, 64, 64)
    assert rois.shape == (sum(n), 4) and labels.shape == (sum(n), len(ACTION_NAMES))
    assert idx.tolist() == [0] * n[0] + [1] * n[1] + [2] * n[2]
