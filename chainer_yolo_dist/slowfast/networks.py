"""SlowFast R50 (Feichtenhofer et al., ICCV 2019) and its Slow-only twin, in Chainer.

Built from ``L.ConvolutionND`` (as :class:`.conv3d.Conv3D`), ``L.BatchNormalization`` and
``F.max_pooling_nd``. Layout (SlowFast paper Table 1; PySlowFast
``configs/AVA/SLOWFAST_32x2_R50_SHORT.yaml``):

================  ======================================  ======================================
stage             Slow pathway                            Fast pathway (alpha x frames, C/beta)
================  ======================================  ======================================
input             every alpha-th frame of the clip        all frames of the clip
conv1             1x7x7, 64, stride (1,2,2)               5x7x7, 8, stride (1,2,2)
pool1             max 1x3x3, stride (1,2,2)               max 1x3x3, stride (1,2,2)
res2 (x3)         [1x1x1, 64;  1x3x3, 64;  1x1x1, 256]    [3x1x1, 8;  1x3x3, 8;  1x1x1, 32]
res3 (x4)         [1x1x1, 128; 1x3x3, 128; 1x1x1, 512]    [3x1x1, 16; 1x3x3, 16; 1x1x1, 64]
res4 (x6)         [3x1x1, 256; 1x3x3, 256; 1x1x1, 1024]   [3x1x1, 32; 1x3x3, 32; 1x1x1, 128]
res5 (x3)         [3x1x1, 512; 1x3x3, 512; 1x1x1, 2048]   [3x1x1, 64; 1x3x3, 64; 1x1x1, 256]
================  ======================================  ======================================

The spatial stride of a stage sits on its 3x3 convolution (PySlowFast ``STRIDE_1X1: False``):
res3 and res4 halve H and W;
res5 keeps them and dilates its 3x3 convolutions by 2, the AVA detection configuration (SlowFast
paper, AVA detection architecture: res5 spatial stride 1 instead of 2, dilation 2; PySlowFast
``configs/AVA/SLOWFAST_32x2_R50_SHORT.yaml``: ``SPATIAL_STRIDES [[1,1],[2,2],[2,2],[1,1]]``,
``SPATIAL_DILATIONS [[1,1],[1,1],[1,1],[2,2]]``), so res5 is at 1/16 of the input size.
``res5_stride=2, res5_dilation=1`` gives the Kinetics classifier layout.

Lateral connections (SlowFast paper sec. 3.4, "time-strided convolution"): after conv1/pool1 and
after res2, res3, res4, a ``k x 1 x 1`` convolution of the Fast features with temporal stride
alpha and ``2 C/beta`` outputs (PySlowFast ``FUSION_CONV_CHANNEL_RATIO: 2``), batch-normalised and
ReLU'd, is concatenated to the Slow features along the channels. The paper states ``k = 5``; the
PySlowFast 8x8 and AVA 32x2 configs use ``FUSION_KERNEL_SZ: 7`` (selectable: ``fusion_kernel``).

Convolutions are :class:`.conv3d.Conv3D`: ``L.ConvolutionND`` links (same parameters) computed on
the CPU as sums over kernel taps, several times faster there than Chainer's im2col, and on a GPU
without cuDNN by im2col in pieces whose column buffer stays under a limit (the Fast conv1's is
4.7 GB at the paper's size; :mod:`.memory`).

Conventions: the clip ``x`` is float32 ``(N, 3, T, H, W)`` (the Fast pathway's frames, T a
multiple of alpha, H and W multiples of 32); the Slow pathway reads ``x[:, :, ::alpha]``.
:meth:`SlowFast.forward` returns the res5 maps ``[slow (N, 32 width, T/alpha, H/16, W/16),
fast (N, 32 width/beta_inv, T, H/16, W/16)]`` (2048 and 256 channels at R50). Batch normalisation
is ``L.BatchNormalization`` (PySlowFast ``BN.MOMENTUM 0.1`` = Chainer ``decay 0.9``, eps 1e-5).
"""
import chainer
import chainer.functions as F
import chainer.links as L
from chainer import initializers

from chainer_yolo_dist.slowfast.conv3d import Conv3D

#: Bottleneck blocks per stage of a 3D ResNet-50 (SlowFast paper Table 1).
R50_BLOCKS = (3, 4, 6, 3)
#: Bottleneck inner width of res2 at the paper size (PySlowFast ``WIDTH_PER_GROUP: 64``).
R50_WIDTH = 64
#: Fast pathway frame-rate ratio alpha and channel ratio 1/beta (paper 004 sec. 3.3, tau=8,
#: alpha=4, beta=8; SlowFast paper sec. 3).
ALPHA = 4
BETA_INV = 8
#: Temporal kernel of the lateral (Fast -> Slow) convolution: SlowFast paper sec. 3.4 ("5x1^2").
FUSION_KERNEL = 5
#: Lateral output channels as a multiple of the Fast channels ("2 beta C", paper sec. 3.4).
FUSION_RATIO = 2
#: Temporal kernel of the first bottleneck convolution per stage (res2..res5) and of conv1
#: (PySlowFast ``_TEMPORAL_KERNEL_BASIS['slowfast']``; SlowFast paper Table 1).
SLOW_TEMPORAL_KERNELS = {'conv1': 1, 'res': (1, 1, 3, 3)}
FAST_TEMPORAL_KERNELS = {'conv1': 5, 'res': (3, 3, 3, 3)}
#: Spatial strides of res2..res5 and the dilations of their 3x3 convolutions (AVA layout).
AVA_SPATIAL_STRIDES = (1, 2, 2, 1)
AVA_SPATIAL_DILATIONS = (1, 1, 1, 2)
#: Batch normalisation as PySlowFast (momentum 0.1, eps 1e-5).
BN_DECAY = 0.9
BN_EPS = 1e-5


def _conv(in_ch, out_ch, ksize, stride=(1, 1, 1), dilate=(1, 1, 1)):
    """A bias-free 3D convolution with 'same' padding (per axis ``dilate * (k // 2)``)."""
    pad = tuple(d * (k // 2) for k, d in zip(ksize, dilate))
    return Conv3D(in_ch, out_ch, ksize, stride=stride, pad=pad, dilate=dilate,
                  initialW=initializers.HeNormal())


def _bn(ch, zero_gamma=False):
    return L.BatchNormalization(ch, decay=BN_DECAY, eps=BN_EPS,
                                initial_gamma=0. if zero_gamma else 1.)


def conv_macs(conv, out_shape):
    """Multiply-adds of one ``L.ConvolutionND`` producing ``out_shape = (C, T, H, W)``."""
    k = 1
    for s in conv.ksize:
        k *= s
    n_out = 1
    for s in out_shape:
        n_out *= s
    return n_out * k * conv.W.shape[1]  # W is (out, in / groups, kT, kH, kW)


def conv_out_shape(conv, shape):
    """Output ``(C, T, H, W)`` of ``conv`` for an input of shape ``(C_in, T, H, W)``."""
    dims = []
    for n, k, s, p, d in zip(shape[1:], conv.ksize, conv.stride, conv.pad, conv.dilate):
        dims.append((n + 2 * p - d * (k - 1) - 1) // s + 1)
    return (conv.out_channels,) + tuple(dims)


class Bottleneck3D(chainer.Chain):
    """3D ResNet bottleneck: ``tx1x1`` -> ``1x3x3`` (spatial stride, dilation) -> ``1x1x1``.

    Input ``(N, in_ch, T, H, W)``; output ``(N, out_ch, T, H / stride, W / stride)``. A 1x1x1
    projection with BN forms the shortcut when the shape changes. With ``zero_init`` the last BN
    starts with gamma 0, so each block starts as the identity (PySlowFast
    ``ZERO_INIT_FINAL_BN: True`` in the AVA configs).
    """

    def __init__(self, in_ch, inner_ch, out_ch, t_kernel, stride=1, dilation=1, zero_init=True):
        super(Bottleneck3D, self).__init__()
        with self.init_scope():
            self.conv_a = _conv(in_ch, inner_ch, (t_kernel, 1, 1))
            self.bn_a = _bn(inner_ch)
            self.conv_b = _conv(inner_ch, inner_ch, (1, 3, 3), stride=(1, stride, stride),
                                dilate=(1, dilation, dilation))
            self.bn_b = _bn(inner_ch)
            self.conv_c = _conv(inner_ch, out_ch, (1, 1, 1))
            self.bn_c = _bn(out_ch, zero_gamma=zero_init)
            if in_ch != out_ch or stride != 1:
                self.proj = _conv(in_ch, out_ch, (1, 1, 1), stride=(1, stride, stride))
                self.bn_proj = _bn(out_ch)
            else:
                self.proj = None

    def forward(self, x):
        h = F.relu(self.bn_a(self.conv_a(x)))
        h = F.relu(self.bn_b(self.conv_b(h)))
        h = self.bn_c(self.conv_c(h))
        shortcut = x if self.proj is None else self.bn_proj(self.proj(x))
        return F.relu(h + shortcut)

    def macs(self, shape):
        """``(multiply-adds, output shape)`` for an input ``(C, T, H, W)``."""
        total = 0
        h = shape
        for conv in (self.conv_a, self.conv_b, self.conv_c):
            h = conv_out_shape(conv, h)
            total += conv_macs(conv, h)
        if self.proj is not None:
            total += conv_macs(self.proj, conv_out_shape(self.proj, shape))
        return total, h


class Pathway(chainer.Chain):
    """One pathway: conv1 + pool1 and four bottleneck stages (res2..res5).

    ``in_extra`` gives the channels concatenated to this pathway's input of each stage by
    lateral connections (zeros for the Fast pathway and for Slow-only).
    """

    def __init__(self, width, blocks, temporal_kernels, in_extra=(0, 0, 0, 0),
                 strides=AVA_SPATIAL_STRIDES, dilations=AVA_SPATIAL_DILATIONS, zero_init=True):
        super(Pathway, self).__init__()
        self.width = width
        self.out_channels = []
        with self.init_scope():
            self.conv1 = _conv(3, width, (temporal_kernels['conv1'], 7, 7), stride=(1, 2, 2))
            self.bn1 = _bn(width)
            self.stages = chainer.ChainList()
            in_ch = width
            for i, n_block in enumerate(blocks):
                inner, out = width * 2 ** i, width * 4 * 2 ** i
                stage = chainer.ChainList()
                for b in range(n_block):
                    stage.append(Bottleneck3D(
                        (in_ch + in_extra[i]) if b == 0 else out, inner, out,
                        temporal_kernels['res'][i], strides[i] if b == 0 else 1,
                        dilations[i], zero_init))
                self.stages.append(stage)
                self.out_channels.append(out)
                in_ch = out

    def stem(self, x):
        """``(N, 3, T, H, W)`` -> ``(N, width, T, H/4, W/4)``: conv1 (stride 2), max pool 3x3/2."""
        h = F.relu(self.bn1(self.conv1(x)))
        return F.max_pooling_nd(h, (1, 3, 3), stride=(1, 2, 2), pad=(0, 1, 1), cover_all=False)

    def stage(self, i, h):
        for block in self.stages[i]:
            h = block(h)
        return h


class Lateral(chainer.Chain):
    """Time-strided conv Fast -> Slow: ``(N, C, T, H, W)`` -> ``(N, ratio C, T/alpha, H, W)``.

    Kernel ``k x 1 x 1``, stride ``(alpha, 1, 1)``, padding ``k // 2`` in time, then BN and ReLU
    (PySlowFast ``FuseFastToSlow``).
    """

    def __init__(self, fast_ch, alpha, kernel, ratio):
        super(Lateral, self).__init__()
        with self.init_scope():
            self.conv = Conv3D(fast_ch, ratio * fast_ch, (kernel, 1, 1), stride=(alpha, 1, 1),
                               pad=(kernel // 2, 0, 0), initialW=initializers.HeNormal())
            self.bn = _bn(ratio * fast_ch)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class SlowFast(chainer.Chain):
    """SlowFast (or Slow-only) 3D ResNet trunk; returns the res5 feature map of each pathway.

    Args:
        width (int): res2 inner width of the Slow pathway (64 = R50, the paper size; 8 or 16 for
            a CPU-sized network of the same layout). Stage widths are ``width * (1, 2, 4, 8)``
            inside and four times that at the output.
        blocks (tuple): bottleneck blocks per stage res2..res5 (``(3, 4, 6, 3)`` = R50).
        alpha (int): Fast/Slow frame ratio; the Slow pathway reads every alpha-th input frame.
        beta_inv (int): Slow/Fast channel ratio (the Fast width is ``width // beta_inv``).
        fusion_kernel (int): temporal kernel of the lateral convolutions (5 paper, 7 PySlowFast).
        fusion_ratio (int): lateral output channels per Fast channel (2).
        slow_only (bool): drop the Fast pathway and the laterals (the "Slow-only" baseline of the
            SlowFast paper, Table 5/AVA Table 7); the Slow pathway is unchanged otherwise.
        res5_stride, res5_dilation: 1 and 2 for detection (AVA), 2 and 1 for classification.
        zero_init (bool): zero-initialise each block's last BN gamma.

    Input ``x``: float32 ``(N, 3, T, H, W)``, ``T`` a multiple of ``alpha``; ``H``, ``W`` multiples
    of 32. Output: list of res5 maps, ``[(N, 32 width, T/alpha, H/s, W/s)]`` for Slow-only, and
    ``[slow, fast (N, 32 width/beta_inv, T, H/s, W/s)]`` for SlowFast, ``s = 16`` with
    ``res5_stride=1`` and 32 otherwise. :attr:`out_channels` lists the channels of each map.
    """

    def __init__(self, width=R50_WIDTH, blocks=R50_BLOCKS, alpha=ALPHA, beta_inv=BETA_INV,
                 fusion_kernel=FUSION_KERNEL, fusion_ratio=FUSION_RATIO, slow_only=False,
                 res5_stride=1, res5_dilation=2, zero_init=True):
        super(SlowFast, self).__init__()
        if len(blocks) != 4 or min(blocks) < 1:
            raise ValueError('blocks must give 4 positive stage depths, got %r' % (blocks,))
        if not slow_only and width % beta_inv:
            raise ValueError('width %d is not a multiple of beta_inv %d' % (width, beta_inv))
        self.alpha = alpha
        self.slow_only = slow_only
        self.width = width
        self.blocks = tuple(blocks)
        strides = AVA_SPATIAL_STRIDES[:3] + (res5_stride,)
        dilations = AVA_SPATIAL_DILATIONS[:3] + (res5_dilation,)
        self.spatial_stride = 4 * strides[1] * strides[2] * strides[3]
        with self.init_scope():
            if slow_only:
                self.slow = Pathway(width, blocks, SLOW_TEMPORAL_KERNELS, (0, 0, 0, 0),
                                    strides, dilations, zero_init)
                self.fast = None
                self.laterals = None
            else:
                fast_w = width // beta_inv
                fast_out = [fast_w] + [fast_w * 4 * 2 ** i for i in range(3)]
                extra = tuple(fusion_ratio * c for c in fast_out)
                self.slow = Pathway(width, blocks, SLOW_TEMPORAL_KERNELS, extra, strides,
                                    dilations, zero_init)
                self.fast = Pathway(fast_w, blocks, FAST_TEMPORAL_KERNELS, (0, 0, 0, 0),
                                    strides, dilations, zero_init)
                self.laterals = chainer.ChainList(
                    *[Lateral(c, alpha, fusion_kernel, fusion_ratio) for c in fast_out])
        self.out_channels = [self.slow.out_channels[-1]]
        if not slow_only:
            self.out_channels.append(self.fast.out_channels[-1])

    def split(self, x):
        """The pathway inputs: ``[x[:, :, ::alpha]]`` or ``[x[:, :, ::alpha], x]``."""
        if x.shape[2] % self.alpha:
            raise ValueError('clip length %d is not a multiple of alpha=%d'
                             % (x.shape[2], self.alpha))
        slow = x[:, :, ::self.alpha]
        return [slow] if self.slow_only else [slow, x]

    def forward(self, x):
        inputs = self.split(x)
        if self.slow_only:
            h = self.slow.stem(inputs[0])
            for i in range(4):
                h = self.slow.stage(i, h)
            return [h]
        s, f = self.slow.stem(inputs[0]), self.fast.stem(inputs[1])
        for i in range(4):
            s = F.concat((s, self.laterals[i](f)), axis=1)
            s, f = self.slow.stage(i, s), self.fast.stage(i, f)
        return [s, f]

    def feature_shapes(self, n_frames, height, width):
        """``[(C, T, H, W)]`` of the res5 maps for a ``(3, n_frames, height, width)`` clip."""
        return self.macs(n_frames, height, width)[1]

    def macs(self, n_frames, height, width):
        """Analytic multiply-adds of all convolutions for one clip; ``(macs, res5 shapes)``.

        Counts every ``ConvolutionND`` (trunk, shortcuts, laterals) as
        ``outputs x (C_in x kT x kH x kW)``; batch normalisation, ReLU and pooling are not
        counted (they are under 1% of the total). ``n_frames`` is the Fast clip length.
        """
        total = 0
        shapes = []
        paths = [self.slow] if self.slow_only else [self.slow, self.fast]
        in_shapes = [(3, n_frames // self.alpha, height, width), (3, n_frames, height, width)]
        cur = []
        for p, shape in zip(paths, in_shapes):
            h = conv_out_shape(p.conv1, shape)
            total += conv_macs(p.conv1, h)
            h = (h[0], h[1], (h[2] + 1) // 2, (h[3] + 1) // 2)  # max pool 3x3/2, pad 1
            cur.append(h)
        for i in range(4):
            if not self.slow_only:
                lat = self.laterals[i].conv
                lo = conv_out_shape(lat, cur[1])
                total += conv_macs(lat, lo)
                cur[0] = (cur[0][0] + lo[0],) + cur[0][1:]
            for j, p in enumerate(paths):
                for block in p.stages[i]:
                    m, cur[j] = block.macs(cur[j])
                    total += m
        shapes = list(cur)
        return total, shapes


def count_parameters(link):
    """Number of scalar parameters (weights, biases, BN scale and shift) of ``link``."""
    return sum(p.size for p in link.params())


def slowfast_r50(**kwargs):
    """SlowFast R50 at the paper configuration (tau 8, alpha 4, beta 1/8, AVA res5 layout)."""
    return SlowFast(**kwargs)


def slow_r50(**kwargs):
    """The Slow-only R50 of the same Slow pathway (the SlowFast paper's baseline)."""
    kwargs['slow_only'] = True
    return SlowFast(**kwargs)
