"""The CPU tap-sum 3D convolution, and the piecewise im2col of GPUs without cuDNN, equal
Chainer's ``F.convolution_nd`` in value and gradient."""
import numpy as np
import pytest

import chainer
import chainer.functions as F
from chainer import gradient_check

from chainer_yolo_dist.slowfast import conv3d
from chainer_yolo_dist.slowfast.conv3d import Conv3D, convolution_3d


@pytest.mark.parametrize('x_shape,w_shape,stride,pad,dilate', [
    ((2, 3, 6, 9, 10), (4, 3, 5, 7, 7), (1, 2, 2), (2, 3, 3), (1, 1, 1)),  # Fast conv1
    ((2, 5, 4, 7, 7), (3, 5, 1, 3, 3), (1, 1, 1), (0, 2, 2), (1, 2, 2)),   # dilated res5 3x3
    ((2, 4, 8, 5, 5), (6, 4, 5, 1, 1), (4, 1, 1), (2, 0, 0), (1, 1, 1)),   # lateral, stride alpha
    ((1, 2, 3, 6, 6), (2, 2, 1, 3, 3), (1, 2, 2), (0, 1, 1), (1, 1, 1)),   # strided 3x3
])
def test_tap_convolution_equals_convolution_nd(x_shape, w_shape, stride, pad, dilate):
    rng = np.random.RandomState(0)
    x, w = rng.randn(*x_shape), rng.randn(*w_shape)
    results = []
    for fn in (F.convolution_nd, convolution_3d):
        vx, vw = chainer.Variable(x.copy()), chainer.Variable(w.copy())
        y = fn(vx, vw, stride=stride, pad=pad, dilate=dilate)
        y.grad = np.cos(np.arange(y.size)).reshape(y.shape)  # a fixed, non-trivial gradient
        y.backward()
        results.append((y.array, vx.grad, vw.grad))
    for ours, chainers in zip(results[1], results[0]):
        assert ours.shape == chainers.shape
        np.testing.assert_allclose(ours, chainers, rtol=1e-10, atol=1e-10)
    assert np.abs(results[1][1]).sum() > 0 and np.abs(results[1][2]).sum() > 0


def test_link_has_convolution_nd_parameters_and_attributes():
    link = Conv3D(3, 8, (5, 7, 7), stride=(1, 2, 2), pad=(2, 3, 3))
    assert link.W.shape == (8, 3, 5, 7, 7) and link.b is None
    assert link.ksize == (5, 7, 7) and link.stride == (1, 2, 2) and link.dilate == (1, 1, 1)
    x = np.random.RandomState(1).randn(1, 3, 4, 16, 16).astype(np.float32)
    np.testing.assert_allclose(link(x).array, F.convolution_nd(x, link.W, stride=(1, 2, 2),
                                                               pad=(2, 3, 3)).array, atol=1e-4)


# --- Bounded-memory im2col (the GPU path without cuDNN), run on the CPU with the same code ---

def _conv_and_grads(fn, x, w, **kwargs):
    vx, vw = chainer.Variable(x.copy()), chainer.Variable(w.copy())
    y = fn(vx, vw, **kwargs)
    y.grad = np.sin(np.arange(y.size) * 0.37).reshape(y.shape)  # fixed, non-trivial
    y.backward()
    return y.array, vx.grad, vw.grad


def _limit(x_shape, w_shape, stride, pad, dilate, unit, k):
    """``k`` clips' or ``k`` output frames' (of one clip) worth of float64 column bytes."""
    total = conv3d.column_bytes(x_shape, w_shape, stride, pad, dilate, itemsize=8)
    per_clip = total // x_shape[0]
    if unit == 'clips':
        return k * per_clip
    return k * per_clip // conv3d.output_shape(x_shape, w_shape, stride, pad, dilate)[0]


@pytest.mark.parametrize('x_shape,w_shape,stride,pad,dilate,limit,plan', [
    # Fast conv1 geometry: 3 clips, 2 per piece (batch pieces only).
    ((3, 3, 6, 9, 10), (4, 3, 5, 7, 7), (1, 2, 2), (2, 3, 3), (1, 1, 1), ('clips', 2), (2, 6)),
    # One clip is over the limit: one clip and 2 output frames per piece (time pieces, both
    # clip ends zero-padded as the whole convolution pads them; the last piece is shorter).
    ((2, 3, 7, 9, 10), (4, 3, 5, 7, 7), (1, 2, 2), (2, 3, 3), (1, 1, 1), ('frames', 2),
     (1, 2)),
    # Lateral: temporal stride alpha = 4, kernel 5, one output frame per piece.
    ((2, 4, 16, 5, 5), (6, 4, 5, 1, 1), (4, 1, 1), (2, 0, 0), (1, 1, 1), ('frames', 1),
     (1, 1)),
    # A limit under one output frame still computes one frame per piece.
    ((1, 2, 5, 4, 4), (3, 2, 3, 3, 3), (1, 1, 1), (1, 1, 1), (1, 1, 1), ('frames', 0.5),
     (1, 1)),
    # Dilated in time (not in the trunk, but the slice arithmetic must hold), 3 frames a piece.
    ((1, 2, 9, 6, 6), (3, 2, 3, 3, 3), (1, 1, 1), (2, 1, 1), (2, 1, 1), ('frames', 3), (1, 3)),
    # Limit above the buffer: one plain call.
    ((2, 5, 4, 7, 7), (3, 5, 1, 3, 3), (1, 1, 1), (0, 2, 2), (1, 2, 2), ('clips', 2), (2, 4)),
])
def test_bounded_convolution_equals_one_call_in_value_and_gradient(
        x_shape, w_shape, stride, pad, dilate, limit, plan):
    rng = np.random.RandomState(2)
    x, w = rng.randn(*x_shape), rng.randn(*w_shape)
    limit = int(_limit(x_shape, w_shape, stride, pad, dilate, *limit))
    assert conv3d.chunk_plan(x_shape, w_shape, stride, pad, dilate, 8, limit) == plan
    whole = _conv_and_grads(F.convolution_nd, x, w, stride=stride, pad=pad, dilate=dilate)
    pieces = _conv_and_grads(conv3d.bounded_convolution_3d, x, w, stride=stride, pad=pad,
                             dilate=dilate, limit=limit)
    for ours, chainers in zip(pieces, whole):
        assert ours.shape == chainers.shape
        np.testing.assert_allclose(ours, chainers, rtol=1e-12, atol=1e-12)
    assert np.abs(pieces[1]).sum() > 0 and np.abs(pieces[2]).sum() > 0


def test_bounded_convolution_passes_gradient_check():
    """Numerical gradients of the piecewise (batch and time) convolution, float64."""
    rng = np.random.RandomState(3)
    x, w = rng.randn(2, 2, 5, 4, 4), rng.randn(3, 2, 3, 3, 3)
    gy = rng.randn(2, 3, 5, 2, 2)
    limit = 2 * 2 * 27 * 4 * 8  # two output frames of one clip

    def f(x, w):
        return conv3d.bounded_convolution_3d(x, w, stride=(1, 2, 2), pad=1, limit=limit)

    assert conv3d.chunk_plan(x.shape, w.shape, (1, 2, 2), 1, 1, 8, limit) == (1, 2)
    gradient_check.check_backward(f, (x, w), gy, dtype=np.float64, atol=1e-7,
                                  rtol=1e-7)


def test_column_bytes_is_the_im2col_buffer():
    """The array Chainer's im2col builds (the CPU's im2col_nd_cpu has the GPU's shape)."""
    from chainer.utils import conv_nd
    x_shape, w_shape = (2, 3, 6, 9, 10), (4, 3, 5, 7, 7)
    col = conv_nd.im2col_nd_cpu(np.zeros(x_shape, np.float32), (5, 7, 7), (1, 2, 2), (2, 3, 3))
    assert col.shape == (2, 3, 5, 7, 7, 6, 5, 5)
    assert col.nbytes == conv3d.column_bytes(x_shape, w_shape, (1, 2, 2), (2, 3, 3))


def test_paths_and_limit_setting():
    x = np.zeros((1, 3, 4, 8, 8), np.float32)
    w = np.zeros((2, 3, 3, 3, 3), np.float32)
    assert not conv3d.uses_cudnn(x, w)  # the CPU takes the tap sums, never im2col
    assert conv3d.column_limit() == conv3d.COLUMN_LIMIT_BYTES == 1 << 30
    with conv3d.column_limit_of(123):
        assert conv3d.column_limit() == 123
    with conv3d.column_limit_of(None):
        assert conv3d.column_limit() is None
        assert conv3d.chunk_plan((8, 3, 16, 224, 224), (8, 3, 5, 7, 7), (1, 2, 2), (2, 3, 3),
                                 1, 4, conv3d.column_limit()) == (8, 16)
    assert conv3d.column_limit() == conv3d.COLUMN_LIMIT_BYTES


def test_every_piece_stays_under_the_limit(monkeypatch):
    """Each ``F.convolution_nd`` the bounded path makes builds at most ``limit`` column bytes,
    and the pieces cover the output exactly once."""
    calls = []
    plain = F.convolution_nd

    def recording(x, W, stride, pad, dilate):
        calls.append(conv3d.column_bytes(x.shape, W.shape, stride, pad, dilate, itemsize=8))
        return plain(x, W, stride=stride, pad=pad, dilate=dilate)

    monkeypatch.setattr(conv3d.F, 'convolution_nd', recording)
    x_shape, w_shape, stride, pad = (3, 3, 7, 9, 10), (4, 3, 5, 7, 7), (1, 2, 2), (2, 3, 3)
    total = conv3d.column_bytes(x_shape, w_shape, stride, pad, itemsize=8)
    limit = total // 3 // 7 * 3  # three of a clip's seven output frames
    x = np.random.RandomState(4).randn(*x_shape)
    y = conv3d.bounded_convolution_3d(x, np.ones(w_shape), stride, pad, limit=limit)
    assert y.shape == (3, 4, 7, 5, 5)
    assert len(calls) == 3 * 3 and max(calls) <= limit  # 3 clips x pieces of 3, 3, 1 frames
    assert sum(calls) == total
