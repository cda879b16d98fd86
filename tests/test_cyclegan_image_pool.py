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


class _DeviceArray(np.ndarray):
    """Stands in for CuPy arrays on the CPU: like CuPy, NumPy functions refuse to mix it with
    host arrays (np.stack of both raises), so a pool holding both kinds fails as on a GPU."""

    def __array_function__(self, func, types, args, kwargs):
        if any(t is not _DeviceArray for t in types):
            raise TypeError('%s mixes host and device arrays' % func.__name__)
        return super().__array_function__(func, types, args, kwargs)


class _FakeDevice(chainer.backend.CpuDevice):
    """A "device" whose arrays are :class:`_DeviceArray`; anything else sent there is copied
    into one (as ``GpuDevice.send`` copies NumPy arrays into CuPy ones)."""

    def send_array(self, array):
        if type(array) is _DeviceArray:
            return array
        return np.array(array).view(_DeviceArray)


def _device_img(v):
    return _FakeDevice().send(_img(v))


def test_a_resumed_pool_holds_one_kind_and_saves_again():
    # Issue 21 (4): after --resume the pool's images came back as NumPy while new fakes were
    # device arrays, and the next snapshot's stack failed. Now they are moved to the pool's
    # device on loading, and new images are stored there.
    first = ImagePool(size=4, seed=3, device=_FakeDevice())
    for v in range(6):
        first.query(_device_img(v))
    assert all(type(x) is _DeviceArray for x in first.images)
    buf = io.BytesIO()
    chainer.serializers.save_npz(buf, first)  # written from the host
    buf.seek(0)
    with np.load(buf) as f:
        assert type(f['images']) is np.ndarray and f['images'].shape == (4, 3, 2, 2)
    buf.seek(0)
    resumed = ImagePool(size=4, seed=0, device=_FakeDevice())
    chainer.serializers.load_npz(buf, resumed)
    assert all(type(x) is _DeviceArray for x in resumed.images)
    for v in range(6, 12):  # new pushes, some swapping out loaded images
        resumed.query(_device_img(v))
    assert all(type(x) is _DeviceArray for x in resumed.images)
    again = io.BytesIO()
    chainer.serializers.save_npz(again, resumed)  # the stack that failed
    assert all(type(x) is _DeviceArray for x in resumed.images)  # saving moves nothing
    # and the round trip continues exactly as an uninterrupted pool does
    straight = ImagePool(size=4, seed=3, device=_FakeDevice())
    expected = [float(straight.query(_device_img(v))[0, 0, 0, 0]) for v in range(12)][6:]
    buf.seek(0)
    check = ImagePool(size=4, seed=0, device=_FakeDevice())
    chainer.serializers.load_npz(buf, check)
    assert [float(check.query(_device_img(v))[0, 0, 0, 0]) for v in range(6, 12)] == expected


def test_images_from_another_device_are_stored_on_the_pool_s():
    pool = ImagePool(size=2, seed=1, device=_FakeDevice())
    for v in range(5):
        out = pool.query(_img(v))  # host images, a "device" pool
        assert type(out) is np.ndarray
        assert all(type(x) is _DeviceArray for x in pool.images)
    assert isinstance(ImagePool(size=2, seed=1).device, chainer.backend.CpuDevice)  # default
    # the fake device refuses mixing, as CuPy does: what the old pool ran into
    with pytest.raises(TypeError, match='mixes'):
        np.stack([_img(0)[0], _device_img(1)[0]])
