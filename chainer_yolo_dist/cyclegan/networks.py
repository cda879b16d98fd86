"""CycleGAN's networks (Zhu et al. 2017; paper 002 appendix A.1.1 names two generators and two
discriminators, and sec. 3.1 follows Zhu et al.'s implementation, whose layouts these are).

- :class:`ResnetGenerator`: Johnson et al.'s residual generator as Zhu's ``ResnetGenerator``:
  c7s1-64, d128, d256, ``n_blocks`` residual blocks (9 at 256 px, 6 at 128 px), u128, u64,
  c7s1-3, tanh. Reflection padding before every 7x7 and residual 3x3 convolution.
- :class:`PatchDiscriminator`: the 70x70 PatchGAN, Zhu's ``NLayerDiscriminator`` with
  ``n_layers=3``: C64 (no normalisation) - C128 - C256 - C512, 4x4 kernels, stride 2 except the
  last two convolutions, leaky ReLU 0.2, then a 1-channel 4x4 convolution (no activation: the
  LSGAN loss takes raw scores).
- :class:`InstanceNormalization`: Chainer 7.8.1 has none; affine-free by default as Zhu's
  ``norm='instance'`` (PyTorch ``InstanceNorm2d(affine=False)``), eps 1e-5, biased variance.

Every convolution has a bias, as Zhu's code gives one when the normalisation is instance norm.
Weights are drawn from N(0, 0.02) and biases set to 0 (Zhu's ``init_type='normal'``,
``init_gain=0.02``). With ``ngf=64`` / ``ndf=64`` the generator has 11,378,179 parameters with
9 blocks (7,837,699 with 6) and the discriminator 2,764,737 (the totals Zhu's code prints,
11.378 M and 2.765 M); smaller ``ngf`` / ``ndf`` give the same layout for CPU demos.

Images are float32 ``(N, 3, H, W)`` RGB in ``[-1, 1]`` (the generator's tanh range).
"""
import chainer
import chainer.functions as F
import chainer.links as L
import numpy as np
from chainer import function_node

#: Zhu et al.'s weight initialisation: N(0, 0.02).
INIT_STD = 0.02


def _init():
    return chainer.initializers.Normal(INIT_STD)


class ReflectionPad2D(function_node.FunctionNode):
    """Reflection padding of the last two axes (PyTorch ``ReflectionPad2d``, NumPy 'reflect').

    ``F.pad(x, ..., mode='reflect')`` is not used because Chainer 7.8.1's ``Pad.backward`` only
    slices the centre out of the output gradient, which is right for constant padding and
    wrong for reflection: the gradients of the mirrored border pixels would be lost. Here the
    backward pass folds them back onto the pixels they were copied from.
    """

    def __init__(self, pad):
        self.pad = int(pad)

    def forward(self, inputs):
        x, = inputs
        xp = chainer.backend.get_array_module(x)
        p = self.pad
        if p >= x.shape[2] or p >= x.shape[3]:
            raise ValueError('reflection padding %d needs H and W > %d, got %dx%d'
                             % (p, p, x.shape[2], x.shape[3]))
        self._shape = x.shape
        return xp.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), mode='reflect'),

    def backward(self, indexes, grad_outputs):
        return _ReflectionFold2D(self.pad).apply(grad_outputs)


class _ReflectionFold2D(function_node.FunctionNode):
    """Adjoint of :class:`ReflectionPad2D`: adds each mirrored border back onto its source.

    ``(N, C, H + 2p, W + 2p) -> (N, C, H, W)``. Its own adjoint is the padding again, so
    second derivatives work too.
    """

    def __init__(self, pad):
        self.pad = int(pad)

    def forward(self, inputs):
        gy, = inputs
        return _fold(_fold(gy, self.pad, 2), self.pad, 3),

    def backward(self, indexes, grad_outputs):
        return ReflectionPad2D(self.pad).apply(grad_outputs)


def _fold(g, p, axis):
    """Sums reflection-padded values (by ``p`` along ``axis``) back onto their sources."""
    n = g.shape[axis] - 2 * p  # the unpadded length

    def sl(start, stop, step=1):
        index = [slice(None)] * g.ndim
        index[axis] = slice(start, stop, step)
        return tuple(index)

    out = g[sl(p, p + n)].copy()
    # Padded positions 0..p-1 hold sources p..1; positions p+n..2p+n-1 hold n-2..n-1-p.
    out[sl(1, p + 1)] += g[sl(p - 1, None, -1)] if p else 0
    out[sl(n - 1 - p, n - 1)] += g[sl(2 * p + n - 1, p + n - 1, -1)]
    return out


def reflection_pad(x, pad):
    """``(N, C, H, W) -> (N, C, H + 2 pad, W + 2 pad)``, mirrored without repeating the edge."""
    return ReflectionPad2D(pad).apply((x,))[0]


class InstanceNormalization(chainer.Link):
    """Instance normalisation: each (sample, channel) plane to zero mean and unit variance.

    ``y[n, c] = (x[n, c] - mean(x[n, c])) / sqrt(var(x[n, c]) + eps)`` with the biased variance
    over the plane, then ``gamma[c] * y + beta[c]`` if ``affine``. Statistics always come from
    the input itself, in training and test mode alike (PyTorch ``InstanceNorm2d`` with its
    default ``track_running_stats=False``, as Zhu uses it).

    Args:
        n_channels (int): C.
        eps (float): added to the variance (1e-5, PyTorch's default).
        affine (bool): learn ``gamma`` (init 1) and ``beta`` (init 0); False is Zhu's default.

    ``forward(x)``: ``x`` ``(N, C, ...)`` with at least one spatial axis -> same shape.
    """

    def __init__(self, n_channels, eps=1e-5, affine=False):
        super(InstanceNormalization, self).__init__()
        self.n_channels, self.eps, self.affine = int(n_channels), float(eps), bool(affine)
        if affine:
            with self.init_scope():
                self.gamma = chainer.Parameter(chainer.initializers.One(), (self.n_channels,))
                self.beta = chainer.Parameter(chainer.initializers.Zero(), (self.n_channels,))

    def forward(self, x):
        if x.ndim < 3 or x.shape[1] != self.n_channels:
            raise ValueError('InstanceNormalization(%d) expects (N, %d, ...), got shape %r'
                             % (self.n_channels, self.n_channels, tuple(x.shape)))
        if self.affine:
            gamma, beta = self.gamma, self.beta
        else:
            xp = self.xp
            dtype = x.dtype
            gamma = xp.ones(self.n_channels, dtype)
            beta = xp.zeros(self.n_channels, dtype)
        # Group normalisation with one channel per group is instance normalisation.
        return F.group_normalization(x, self.n_channels, gamma, beta, eps=self.eps)


class _ConvNormReLU(chainer.Chain):
    """conv -> instance norm -> ReLU, with optional reflection padding before the conv."""

    def __init__(self, in_ch, out_ch, ksize, stride=1, pad=0, reflect=0, relu=True):
        super(_ConvNormReLU, self).__init__()
        self.reflect, self.relu = reflect, relu
        with self.init_scope():
            self.conv = L.Convolution2D(in_ch, out_ch, ksize, stride, pad, initialW=_init())
            self.norm = InstanceNormalization(out_ch)

    def forward(self, x):
        if self.reflect:
            x = reflection_pad(x, self.reflect)
        h = self.norm(self.conv(x))
        return F.relu(h) if self.relu else h


class ResidualBlock(chainer.Chain):
    """Zhu's ``ResnetBlock``: x + [pad1, conv3, IN, ReLU, pad1, conv3, IN](x); no dropout.

    ``(N, C, H, W) -> (N, C, H, W)``.
    """

    def __init__(self, channels):
        super(ResidualBlock, self).__init__()
        with self.init_scope():
            self.c1 = _ConvNormReLU(channels, channels, 3, reflect=1)
            self.c2 = _ConvNormReLU(channels, channels, 3, reflect=1, relu=False)

    def forward(self, x):
        return x + self.c2(self.c1(x))


class _UpNormReLU(chainer.Chain):
    """Transposed conv 3x3 stride 2 (PyTorch padding=1, output_padding=1) -> IN -> ReLU.

    ``(N, C_in, H, W) -> (N, C_out, 2H, 2W)``. Chainer's ``outsize`` adds the extra row and
    column at the bottom and right, as PyTorch's ``output_padding`` does.
    """

    def __init__(self, in_ch, out_ch):
        super(_UpNormReLU, self).__init__()
        with self.init_scope():
            self.deconv = L.Deconvolution2D(in_ch, out_ch, 3, 2, 1, initialW=_init())
            self.norm = InstanceNormalization(out_ch)

    def forward(self, x):
        h, w = x.shape[2:]
        y = F.deconvolution_2d(x, self.deconv.W, self.deconv.b, stride=2, pad=1,
                               outsize=(2 * h, 2 * w))
        return F.relu(self.norm(y))


class ResnetGenerator(chainer.Chain):
    """CycleGAN's generator: ``(N, 3, H, W) -> (N, 3, H, W)`` in ``[-1, 1]``.

    Layers (Zhu's notation, ``k`` = ``ngf``): c7s1-k, d2k, d4k, ``n_blocks`` x R4k, u2k, uk,
    c7s1-3, tanh. ``H`` and ``W`` must be multiples of 4 (two stride-2 halvings, two
    doublings) and at least 8 (reflection padding of 3 needs more than 3 pixels).

    Args:
        n_blocks (int): residual blocks; Zhu uses 9 at 256x256 and 6 at 128x128.
        ngf (int): width of the first layer (64 in the paper; smaller for CPU demos).
        in_channels, out_channels (int): 3 for RGB.
    """

    def __init__(self, n_blocks=9, ngf=64, in_channels=3, out_channels=3):
        super(ResnetGenerator, self).__init__()
        self.n_blocks, self.ngf = int(n_blocks), int(ngf)
        with self.init_scope():
            self.c7_in = _ConvNormReLU(in_channels, ngf, 7, reflect=3)
            self.down1 = _ConvNormReLU(ngf, 2 * ngf, 3, stride=2, pad=1)
            self.down2 = _ConvNormReLU(2 * ngf, 4 * ngf, 3, stride=2, pad=1)
            self.blocks = chainer.Sequential(*[ResidualBlock(4 * ngf) for _ in range(n_blocks)])
            self.up1 = _UpNormReLU(4 * ngf, 2 * ngf)
            self.up2 = _UpNormReLU(2 * ngf, ngf)
            self.c7_out = L.Convolution2D(ngf, out_channels, 7, initialW=_init())

    def forward(self, x):
        if x.ndim != 4 or x.shape[2] % 4 or x.shape[3] % 4 or min(x.shape[2:]) < 8:
            raise ValueError('ResnetGenerator expects (N, C, H, W) with H and W multiples of 4 '
                             'and at least 8, got shape %r' % (tuple(x.shape),))
        h = self.down2(self.down1(self.c7_in(x)))
        h = self.up2(self.up1(self.blocks(h)))
        return F.tanh(self.c7_out(reflection_pad(h, 3)))


def default_n_blocks(size):
    """Zhu's choice of residual blocks: 9 for images of 256 px and more, 6 below."""
    return 9 if size >= 256 else 6


class PatchDiscriminator(chainer.Chain):
    """70x70 PatchGAN: ``(N, 3, H, W) -> (N, 1, H', W')`` raw realness scores, one per patch.

    Zhu's ``NLayerDiscriminator(ndf, n_layers)``: 4x4 convolutions with zero padding 1; the
    first ``n_layers`` have stride 2 (the first without normalisation), then one stride-1
    convolution to ``ndf * min(2**n_layers, 8)`` channels and the stride-1 1-channel output.
    Leaky ReLU slope 0.2 after every layer but the last. With ``n_layers=3`` each score sees a
    70x70 input patch (:func:`receptive_field`); a 256x256 input gives 30x30 scores, 64x64
    gives 6x6.
    """

    def __init__(self, ndf=64, n_layers=3, in_channels=3):
        super(PatchDiscriminator, self).__init__()
        self.ndf, self.n_layers = int(ndf), int(n_layers)
        self.strides = (2,) * n_layers + (1, 1)
        widths = [in_channels] + [ndf * min(2 ** k, 8) for k in range(n_layers + 1)] + [1]
        with self.init_scope():
            self.convs = chainer.ChainList(*[
                L.Convolution2D(widths[k], widths[k + 1], 4, self.strides[k], 1,
                                initialW=_init()) for k in range(n_layers + 2)])
            self.norms = chainer.ChainList(*[InstanceNormalization(w)
                                             for w in widths[2:n_layers + 2]])

    def forward(self, x):
        h = F.leaky_relu(self.convs[0](x), 0.2)
        for conv, norm in zip(self.convs[1:-1], self.norms):
            h = F.leaky_relu(norm(conv(h)), 0.2)
        return self.convs[-1](h)


def receptive_field(ksizes, strides):
    """Input pixels seen by one output of stacked convolutions: r <- (r - 1) * s + k, backwards."""
    r = 1
    for k, s in reversed(list(zip(ksizes, strides))):
        r = (r - 1) * s + k
    return r


def count_parameters(link):
    """Number of scalar parameters of a link (all initialised at construction here)."""
    return int(sum(np.prod(p.shape) for p in link.params()))
