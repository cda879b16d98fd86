"""Forward FLOPs of a Chainer network, counted from the functions it really calls.

:class:`FlopHook` is a ``chainer.FunctionHook``: inside ``with hook:`` every convolution,
transposed convolution and fully connected layer that runs adds ``2 x multiply-adds`` (the
usual FLOP convention) to its totals. It reads the geometry from the function's inputs and
attributes, so it counts what the network computes, not what a table says it should:

- ``Convolution2DFunction``, ``ConvolutionND`` (``F.convolution_nd``, the GPU path of the
  SlowFast trunk) and ``TapConvolution3D`` (its CPU path): ``outputs x (W.size / out_channels)``
  with ``x (N, C, d1, ...)``, ``W (O, C / groups, k1, ...)``;
- ``Deconvolution2DFunction``: every input element is scattered through ``C_out / groups x kh
  x kw`` weights, so ``N x H_in x W_in x W.size`` with ``W (C_in, C_out / groups, kh, kw)``;
- ``LinearFunction``: ``N x out x in``.

Normalisation, activations, pooling, padding and RoIAlign are not counted (a few per cent of a
CNN's total, and memory-bound rather than FLOP-bound on a GPU).
"""
import chainer
from chainer.utils import conv

CONV_ND_LABELS = ('ConvolutionND', 'TapConvolution3D')


def _outsize(size, k, s, p, d, cover_all=False):
    return conv.get_conv_outsize(size, k, s, p, cover_all, d)


class FlopHook(chainer.FunctionHook):
    """Counts forward FLOPs by kind: ``conv`` (2D and ND), ``deconv`` and ``linear``."""

    name = 'FlopHook'

    def __init__(self):
        self.conv = 0
        self.deconv = 0
        self.linear = 0

    @property
    def total(self):
        return self.conv + self.deconv + self.linear

    def forward_postprocess(self, function, in_data):
        label = function.label
        # An old-style chainer.Function (TapConvolution3D) arrives wrapped in a FunctionAdapter.
        function = getattr(function, 'function', function)
        if label == 'Convolution2DFunction':
            x, w = in_data[0], in_data[1]
            oh = _outsize(x.shape[2], w.shape[2], function.sy, function.ph, function.dy,
                          function.cover_all)
            ow = _outsize(x.shape[3], w.shape[3], function.sx, function.pw, function.dx,
                          function.cover_all)
            self.conv += 2 * x.shape[0] * oh * ow * w.size
        elif label in CONV_ND_LABELS:
            x, w = in_data[0], in_data[1]
            cover_all = getattr(function, 'cover_all', False)
            outputs = x.shape[0] * w.shape[0]
            for n, k, s, p, d in zip(x.shape[2:], w.shape[2:], function.stride, function.pad,
                                     function.dilate):
                outputs *= _outsize(n, k, s, p, d, cover_all)
            self.conv += 2 * outputs * (w.size // w.shape[0])
        elif label == 'Deconvolution2DFunction':
            x, w = in_data[0], in_data[1]
            self.deconv += 2 * x.shape[0] * x.shape[2] * x.shape[3] * w.size
        elif label == 'LinearFunction':
            x, w = in_data[0], in_data[1]
            self.linear += 2 * x.shape[0] * w.shape[0] * w.shape[1]


def count_forward_flops(function, *args):
    """Runs ``function(*args)`` once in test mode without a graph and returns the
    :class:`FlopHook` that watched it."""
    hook = FlopHook()
    with hook, chainer.using_config('train', False), chainer.no_backprop_mode():
        function(*args)
    return hook
