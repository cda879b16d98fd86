"""3D convolution for SlowFast: tap sums on the CPU, bounded-memory im2col on a GPU without cuDNN.

CPU. Chainer's CPU ``F.convolution_nd`` builds an im2col array of ``N C kT kH kW T' H' W'``
elements and then copies it once more into the layout ``tensordot`` needs. For SlowFast's Fast
conv1 (5 x 7 x 7 on 3 channels: 245 taps) that is 245 times the input, and it took over 90% of a
narrow network's step on the CPU (see ``docs/slowfast.md``). Here the same convolution is
``y = sum over taps (a, b, c) of W[:, :, a, b, c] . x_padded[:, :, a::s, b::s, c::s]``: one small
matrix product per tap on a strided view, never more than one input-sized temporary. Gradients
are the transposed sums. It equals ``F.convolution_nd`` (tested in value and gradient).

GPU with cuDNN (CuPy 13 + cuDNN 8, ``chainer.should_use_cudnn('>=auto')``): ``F.convolution_nd``
as it is; cuDNN needs no column buffer (its workspace is capped by Chainer's
``cuda.set_max_workspace_size``).

GPU without cuDNN (CuPy 14 has none; or ``use_cudnn='never'``): Chainer's ``F.convolution_nd``
falls back to im2col, a ``col`` array ``(N, C, k1, k2, k3, o1, o2, o3)`` (:func:`column_bytes`),
and builds one of the same size again in each backward pass (``deconvolution_nd``'s ``gcol`` for
the input gradient, a second im2col for the weight gradient), plus ``tensordot``'s contiguous
copy. For the Fast conv1 at the preset's size (8 clips of 16 x 224 x 224) ``col`` alone is
4.72 GB (:func:`.memory.column_table` lists every layer). :func:`bounded_convolution_3d`
therefore splits such a convolution into pieces whose ``col`` stays under :func:`column_limit`
(default :data:`COLUMN_LIMIT_BYTES`): first over the batch, and when one clip alone is over the
limit, over output time as well (each piece reads the input frames its outputs need,
zero-padded at the clip's ends exactly as the whole convolution pads). The pieces are
``F.convolution_nd`` calls joined by ``F.concat``, so Chainer's autograd gives the backward
pass, and the backward buffers are bounded by the same pieces. It equals the single call in
value and gradient (tested on the CPU, where ``F.convolution_nd`` runs the same im2col
algorithm).
"""
import contextlib
import itertools

import numpy as np

import chainer
import chainer.functions as F
import chainer.links as L
from chainer.backends import cuda

#: Largest im2col column buffer (bytes) one convolution builds on a GPU without cuDNN; a bigger
#: one is computed in pieces. Override per call with ``with column_limit_of(bytes):`` (or
#: ``chainer.using_config(COLUMN_LIMIT_CONFIG, bytes)``); ``None`` there disables the pieces.
COLUMN_LIMIT_BYTES = 1 << 30
#: The ``chainer.config`` key that overrides :data:`COLUMN_LIMIT_BYTES`.
COLUMN_LIMIT_CONFIG = 'conv3d_column_limit'


def _triple(v):
    return tuple(int(a) for a in v) if isinstance(v, (tuple, list)) else (int(v),) * 3


def output_shape(x_shape, W_shape, stride=1, pad=0, dilate=1):
    """``(o1, o2, o3)`` of a convolution of ``x (N, C, d1, d2, d3)`` by ``W (O, C, k1, k2, k3)``
    (Chainer's ``cover_all=False``)."""
    return tuple((n + 2 * p - d * (k - 1) - 1) // s + 1 for n, k, s, p, d in
                 zip(x_shape[2:], W_shape[2:], _triple(stride), _triple(pad), _triple(dilate)))


def column_bytes(x_shape, W_shape, stride=1, pad=0, dilate=1, itemsize=4):
    """Bytes of Chainer's im2col buffer ``col (N, C, k1, k2, k3, o1, o2, o3)`` for this
    convolution.

    ``x_shape`` ``(N, C, d1, d2, d3)``, ``W_shape`` ``(O, C, k1, k2, k3)``; ``itemsize`` of the
    input's dtype (4: float32). The backward pass builds buffers of the same size (see the module
    docstring).
    """
    n = int(x_shape[0]) * int(x_shape[1])
    for v in tuple(W_shape[2:]) + output_shape(x_shape, W_shape, stride, pad, dilate):
        n *= int(v)
    return n * int(itemsize)


def column_limit():
    """The column-buffer limit in force: ``chainer.config.conv3d_column_limit`` if set (None: no
    limit), else :data:`COLUMN_LIMIT_BYTES`."""
    return getattr(chainer.config, COLUMN_LIMIT_CONFIG, COLUMN_LIMIT_BYTES)


@contextlib.contextmanager
def column_limit_of(limit):
    """``with column_limit_of(bytes):`` bounds the column buffers of the 3D convolutions inside
    (None: unbounded, i.e. Chainer's single im2col)."""
    with chainer.using_config(COLUMN_LIMIT_CONFIG, limit):
        yield


def chunk_plan(x_shape, W_shape, stride=1, pad=0, dilate=1, itemsize=4, limit=None):
    """``(clips per piece, output frames per piece)`` keeping each piece's ``col`` under ``limit``.

    ``(N, o1)`` (one piece) when the whole buffer fits or ``limit`` is None. Otherwise as many
    whole clips per piece as fit; if one clip does not fit, one clip per piece and as many output
    frames (the first spatial axis of the output, time) as fit, at least one: a single output
    frame over the limit is not split further (H and W are never split; at SlowFast's sizes one
    frame of the largest layer is 37 MB).
    """
    n = int(x_shape[0])
    o1 = output_shape(x_shape, W_shape, stride, pad, dilate)[0]
    total = column_bytes(x_shape, W_shape, stride, pad, dilate, itemsize)
    if limit is None or total <= limit:
        return n, o1
    per_clip = total // n
    if per_clip <= limit:
        return max(1, int(limit // per_clip)), o1
    per_frame = per_clip // o1
    return 1, max(1, int(limit // per_frame))


def _time_piece(x, W, o0, o1, stride, pad, dilate):
    """Output frames ``[o0, o1)`` of the convolution of ``x (n, C, D, H, W)``: the input frames
    they read, zero-padded where they reach past the clip (padding as the whole convolution's),
    convolved with no time padding."""
    depth = x.shape[2]
    start = o0 * stride[0] - pad[0]
    stop = (o1 - 1) * stride[0] + dilate[0] * (W.shape[2] - 1) + 1 - pad[0]
    lo, hi = max(0, -start), max(0, stop - depth)
    piece = x[:, :, max(start, 0):min(stop, depth)]
    if lo or hi:
        piece = F.pad(piece, ((0, 0), (0, 0), (lo, hi), (0, 0), (0, 0)), 'constant')
    return F.convolution_nd(piece, W, stride=stride, pad=(0,) + pad[1:], dilate=dilate)


def bounded_convolution_3d(x, W, stride=1, pad=0, dilate=1, limit=None):
    """Bias-free ``F.convolution_nd`` of ``x (N, C, D1, D2, D3)`` by ``W (O, C, k1, k2, k3)`` ->
    ``(N, O, o1, o2, o3)``, computed in pieces (:func:`chunk_plan`) so that no im2col buffer
    exceeds ``limit`` bytes; one plain call when it fits. Same values and gradients as one call
    (each output element is the same sum over the same inputs)."""
    stride, pad, dilate = _triple(stride), _triple(pad), _triple(dilate)
    x_shape, W_shape = x.shape, W.shape
    per_piece, frames = chunk_plan(x_shape, W_shape, stride, pad, dilate,
                                   np.dtype(x.dtype).itemsize, limit)
    n, o1 = x_shape[0], output_shape(x_shape, W_shape, stride, pad, dilate)[0]
    if per_piece >= n and frames >= o1:
        return F.convolution_nd(x, W, stride=stride, pad=pad, dilate=dilate)
    # split_axis (not one get_item per piece): its backward is one concatenation of the
    # pieces' input gradients, not a zero-filled input-sized array per piece.
    clips = F.split_axis(x, list(range(per_piece, n, per_piece)), axis=0) if per_piece < n \
        else (x,)
    out = []
    for clip in clips:
        if frames >= o1:
            out.append(F.convolution_nd(clip, W, stride=stride, pad=pad, dilate=dilate))
        else:
            out.append(F.concat([_time_piece(clip, W, t, min(t + frames, o1), stride, pad,
                                             dilate) for t in range(0, o1, frames)], axis=2))
    return out[0] if len(out) == 1 else F.concat(out, axis=0)


def uses_cudnn(x, W, dilate=1):
    """Whether Chainer's ``F.convolution_nd`` takes its cuDNN path for these inputs (as its
    ``ConvolutionND._use_cudnn``: cuDNN enabled and allowed by ``chainer.config.use_cudnn``,
    equal dtypes, dilation only from cuDNN 6)."""
    if chainer.backend.get_array_module(x) is np:
        return False
    if cuda._cudnn_version < 6000 and any(d != 1 for d in _triple(dilate)):
        return False
    return chainer.should_use_cudnn('>=auto') and x.dtype == W.dtype


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
    """Bias-free 3D convolution ``(N, C, D1, D2, D3) x (O, C, k1, k2, k3) -> (N, O, o1, o2, o3)``.

    CPU: tap sums (:class:`TapConvolution3D`, no column buffer). GPU: ``F.convolution_nd``,
    through cuDNN when Chainer would use it, else in pieces bounded by :func:`column_limit`
    (:func:`bounded_convolution_3d`). Only the im2col path is chunked: it is the only one that
    builds the column buffer (cuDNN's workspace is capped by Chainer; the CPU path has none).
    """
    stride, pad, dilate = _triple(stride), _triple(pad), _triple(dilate)
    if chainer.backend.get_array_module(x) is np:
        return TapConvolution3D(stride, pad, dilate)(x, W)
    if uses_cudnn(x, W, dilate):
        return F.convolution_nd(x, W, stride=stride, pad=pad, dilate=dilate)
    return bounded_convolution_3d(x, W, stride, pad, dilate, column_limit())


class Conv3D(L.ConvolutionND):
    """``L.ConvolutionND(3, ...)`` (same parameters, same names) computed by
    :func:`convolution_3d`.

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
