"""Zhu's image pool: fills first, then swaps with probability 0.5; own RNG; exact resume."""
import io

import chainer
import numpy as np
import pytest

from chainer_yolo_dist.cyclegan.image_pool import POOL_SIZE, ImagePool


def _img(v):
    return np.full((1, 3, 2, 2), v, np.float32)


def test_fills_then_returns_old_images_about_half_the_time():
    assert POOL_SIZE == 50
    pool = ImagePool(size=4, seed=0)
    for v in range(4):  # while filling, every image comes back unchanged
        np.testing.assert_array_equal(pool.query(_img(v)), _img(v))
    returned_old = 0
    n = 400
    for v in range(4, 4 + n):
        out = pool.query(_img(v))
        assert out.shape == (1, 3, 2, 2)
        if out[0, 0, 0, 0] != v:
            returned_old += 1
            assert out[0, 0, 0, 0] < v  # an earlier fake
    assert 0.4 < returned_old / n < 0.6
    assert len(pool.images) == 4


def test_batches_and_zero_size_and_no_global_rng():
    np.random.seed(1)
    before = np.random.get_state()[1].copy()
    pool = ImagePool(size=3, seed=5)
    out = pool.query(np.stack([_img(v)[0] for v in range(5)]))
    assert out.shape == (5, 3, 2, 2)
    np.testing.assert_array_equal(out[:3, 0, 0, 0], [0, 1, 2])
    np.testing.assert_array_equal(np.random.get_state()[1], before)
    x = _img(7)
    assert ImagePool(size=0).query(x) is x
    with pytest.raises(ValueError):
        ImagePool(size=-1)


def _run(pool, start, stop):
    return [float(pool.query(_img(v))[0, 0, 0, 0]) for v in range(start, stop)]


def test_serialize_resume_continues_exactly():
    straight = ImagePool(size=5, seed=3)
    expected = _run(straight, 0, 40)

    first = ImagePool(size=5, seed=3)
    got = _run(first, 0, 17)
    buf = io.BytesIO()
    chainer.serializers.save_npz(buf, first)
    buf.seek(0)
    resumed = ImagePool(size=5, seed=99)  # a different seed: the state must come from the file
    chainer.serializers.load_npz(buf, resumed)
    got += _run(resumed, 17, 40)
    assert got == expected


def test_serialize_empty_pool():
    pool = ImagePool(size=5, seed=3)
    buf = io.BytesIO()
    chainer.serializers.save_npz(buf, pool)
    buf.seek(0)
    other = ImagePool(size=5, seed=4)
    _run(other, 0, 3)
    chainer.serializers.load_npz(buf, other)
    assert other.images == []
    assert _run(other, 0, 30) == _run(ImagePool(size=5, seed=3), 0, 30)
