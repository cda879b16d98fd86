"""3D convolution for the CPU as a sum over kernel taps, and the link the SlowFast trunk uses.

Chainer's CPU ``F.convolution_nd`` builds an im2col array of ``N C kT kH kW T' H' W'`` elements
and then copies it once more into the layout ``tensordot`` needs. For SlowFast's Fast conv1
(5 x 7 x 7 on 3 channels: 245 taps) that is 245 times the input, and it took over 90% of a
narrow network's step on the CPU (see ``docs/slowfast.md``). Here the same convolution is
``y = sum over taps (a, b, c) of W[:, :, a, b, c] . x_padded[:, :, a::s, b::s, c::s]``: one small
matrix product per tap on a strided view, never more than one input-sized temporary. Gradients
are the transposed sums. It equals ``F.convolution_nd`` (tested in value and gradient); on a GPU
:class:`Conv3D` calls ``F.convolution_nd`` (cuDNN).
"""
import itertools

import numpy as np

import chainer
import chainer.functions as F
import chainer.links as L


def _tap_slices(taps, dilate, stride, out_shape):
    """Slices of the padded input read by kernel tap ``taps`` (one per spatial axis)."""
    return tuple(slice(t * d, t * d + s * (o - 1) + 1, s)
                 for t, d, s, o in zip(taps, dilate, stride, out_shape))


class TapConvolution3D(chainer.Function):
    """``(N, C, D1, D2, D3) x (O, C, k1, k2, k3) -> (N, O, o1, o2, o3)``, bias-free, CPU only."""

    def __init__(self, stride, pad, dilate):
        self.stride, self.pad, self.dilate = tuple(stride), tuple(pad), tuple(dilate)

    def _geometry(self, x_shape, w_shape):
        ksize = w_shape[2:]
        out = tuple((n + 2 * p - d * (k - 1) - 1) // s + 1 for n, k, s, p, d in
                    zip(x_shape[2:], ksize, self.stride, self.pad, self.dilate))
        return ksize, out

    def _padded_channels_first(self, x):
        """``(C, N, D1 + 2 p1, ...)``: the padded input with channels leading, contiguous."""
        return np.pad(x.transpose(1, 0, 2, 3, 4),
                      ((0, 0), (0, 0)) + tuple((p, p) for p in self.pad))

    def forward_cpu(self, inputs):
        x, w = inputs
        ksize, out = self._geometry(x.shape, w.shape)
        xc = self._padded_channels_first(x)
        y = np.zeros((w.shape[0], int(np.prod((x.shape[0],) + out))), dtype=x.dtype)
        for taps in itertools.product(*(range(k) for k in ksize)):
            index = (slice(None), slice(None)) + _tap_slices(taps, self.dilate, self.stride, out)
            y += w[(slice(None), slice(None)) + taps].dot(xc[index].reshape(x.shape[1], -1))
        y = y.reshape((w.shape[0], x.shape[0]) + out)  # (O, N, o1, o2, o3)
        return np.ascontiguousarray(y.transpose(1, 0, 2, 3, 4)),

    def backward_cpu(self, inputs, grad_outputs):
        x, w = inputs
        gy, = grad_outputs
        ksize, out = self._geometry(x.shape, w.shape)
        n, c = x.shape[:2]
        xc = self._padded_channels_first(x)
        gyc = np.ascontiguousarray(gy.transpose(1, 0, 2, 3, 4)).reshape(w.shape[0], -1)
        gxc = np.zeros_like(xc)
        gw = np.zeros_like(w)
        for taps in itertools.product(*(range(k) for k in ksize)):
            index = (slice(None), slice(None)) + _tap_slices(taps, self.dilate, self.stride, out)
            tap = (slice(None), slice(None)) + taps
            gw[tap] = gyc.dot(xc[index].reshape(c, -1).T)
            gxc[index] += w[tap].T.dot(gyc).reshape((c, n) + out)
        crop = tuple(slice(p, p + d) for p, d in zip(self.pad, x.shape[2:]))
        gx = gxc[(slice(None), slice(None)) + crop].transpose(1, 0, 2, 3, 4)
        return np.ascontiguousarray(gx), gw


def convolution_3d(x, W, stride=1, pad=0, dilate=1):
    """Bias-free 3D convolution: tap sums on the CPU, ``F.convolution_nd`` elsewhere."""
    def triple(v):
        return tuple(v) if isinstance(v, (tuple, list)) else (v,) * 3
    if chainer.backend.get_array_module(x) is not np:
        return F.convolution_nd(x, W, stride=stride, pad=pad, dilate=dilate)
    return TapConvolution3D(triple(stride), triple(pad), triple(dilate))(x, W)


class Conv3D(L.ConvolutionND):
    """``L.ConvolutionND(3, ...)`` (same parameters, same names) computed by :func:`convolution_3d`.

    Only the bias-free, ungrouped case the SlowFast trunk uses is accepted.
    """

    def __init__(self, in_channels, out_channels, ksize, stride=1, pad=0, dilate=1,
                 initialW=None):
        super(Conv3D, self).__init__(3, in_channels, out_channels, ksize, stride=stride,
                                     pad=pad, nobias=True, initialW=initialW, dilate=dilate)

    def forward(self, x):
        if self.W.array is None:
            self._initialize_params(x.shape[1])
        return convolution_3d(x, self.W, self.stride, self.pad, self.dilate)
