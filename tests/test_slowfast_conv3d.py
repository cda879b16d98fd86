"""The CPU tap-sum 3D convolution equals Chainer's ``F.convolution_nd`` in value and gradient."""
import numpy as np
import pytest

import chainer
import chainer.functions as F

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
