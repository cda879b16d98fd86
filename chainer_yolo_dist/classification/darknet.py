"""Darknet-19 (YOLO9000) and Darknet-53 (YOLOv3) ImageNet classifiers for Chainer.

ChainerCV 0.13.1 ships only the detection trunks (``Darknet19Extractor``,
``Darknet53Extractor``). The classifiers here are built from the same links in the
same order (:class:`chainercv.links.Conv2DBNActiv`, and ChainerCV's own
``ResidualBlock`` for Darknet-53), so that ``classifier.trunk[i]`` and
``yolo.extractor[i]`` have identical parameter names and shapes for every trunk
layer ``i``; :mod:`chainer_yolo_dist.detection.transfer` relies on that.

Conventions (as ChainerCV's YOLO): input ``x`` is float32 ``(N, 3, H, W)``, RGB,
scaled to ``[0, 1]`` (ChainerCV images are in ``[0, 255]``: divide by 255), with
``H`` and ``W`` multiples of 32 (224, 256, 448, ...). ``forward`` returns logits
``(N, n_class)``; the softmax belongs to the loss (``F.softmax_cross_entropy``,
``chainer.links.Classifier``) or to :meth:`predict`.

``channels_scale`` multiplies every convolution width (1 is the paper model;
1/8 gives a network of the same depth and layout that trains on a CPU).
"""
import chainer
import chainer.functions as F
import chainer.links as L
from chainercv.links import Conv2DBNActiv
from chainercv.links.model.yolo.yolo_v3 import ResidualBlock

#: Width of the first convolution of both networks at ``channels_scale=1``.
BASE_WIDTH = 32
#: Number of 3x3/1x1 convolutions per resolution in Darknet-19 (YOLO9000 Table 6),
#: the loop ``Darknet19Extractor.__init__`` uses.
DARKNET19_CONVS = (1, 1, 3, 3, 5, 5)
#: Trunk layers of Darknet-19 followed by a 2x2/2 max pooling.
DARKNET19_POOL_AFTER = (0, 1, 4, 7, 12)
#: Residual blocks per stage of Darknet-53 (paper 001 Fig. 1), as in
#: ``Darknet53Extractor.__init__``.
DARKNET53_BLOCKS = (1, 2, 8, 8, 4)
#: Input sides must be multiples of this (five halvings).
STRIDE = 32


def _leaky_relu(x):
    # Darknet's "leaky" activation; same slope as ChainerCV's YOLO extractors.
    return F.leaky_relu(x, slope=0.1)


def scaled_width(width, channels_scale):
    """Returns ``width * channels_scale`` as an int, or raises ValueError.

    The product must be a positive whole number, so that a scaled trunk has exactly
    the paper's layout with every width divided by the same factor.
    """
    scaled = width * channels_scale
    rounded = int(round(scaled))
    if rounded < 1 or abs(scaled - rounded) > 1e-6:
        raise ValueError(
            'channels_scale=%r gives a width of %r for a %d-channel layer; it must '
            'give a positive whole number of channels (e.g. 1, 1/2, 1/4, 1/8)'
            % (channels_scale, scaled, width))
    return rounded


def _conv(in_channels, out_channels, ksize, stride=1):
    return Conv2DBNActiv(in_channels, out_channels, ksize, stride=stride,
                         pad=ksize // 2, activ=_leaky_relu)


def darknet19_trunk(channels_scale=1):
    """The 18 conv+BN+leaky layers of Darknet-19, in ``Darknet19Extractor`` order.

    Input channels are given explicitly, so every parameter is initialized on
    construction (unlike ChainerCV's lazily initialized extractor).

    Returns:
        list of :class:`chainercv.links.Conv2DBNActiv`: layer ``i`` has the same
        shapes as ``Darknet19Extractor()[i]`` at ``channels_scale=1``. A 2x2/2 max
        pooling follows the layers in :data:`DARKNET19_POOL_AFTER`.
    """
    width = scaled_width(BASE_WIDTH, channels_scale)
    layers = []
    in_ch = 3
    for k, n_conv in enumerate(DARKNET19_CONVS):
        for i in range(n_conv):
            # 3x3 convolutions at the stage width alternate with 1x1 bottlenecks
            # at half of it.
            if i % 2 == 0:
                out_ch, ksize = width << k, 3
            else:
                out_ch, ksize = width << (k - 1), 1
            layers.append(_conv(in_ch, out_ch, ksize))
            in_ch = out_ch
    return layers


def darknet53_trunk(channels_scale=1):
    """The 52 conv+BN+leaky layers of Darknet-53, grouped as ``Darknet53Extractor``.

    Returns:
        list of 29 links: a :class:`~chainercv.links.Conv2DBNActiv` (32 3x3), then
        per stage ``k`` a stride-2 3x3 ``Conv2DBNActiv`` followed by
        ``DARKNET53_BLOCKS[k]`` ChainerCV ``ResidualBlock`` s, each holding a 1x1
        and a 3x3 ``Conv2DBNActiv``. Child ``i`` has the same parameter names and
        shapes as ``Darknet53Extractor()[i]`` at ``channels_scale=1``.
    """
    width = scaled_width(BASE_WIDTH, channels_scale)
    layers = [_conv(3, width, 3)]
    for k, n_block in enumerate(DARKNET53_BLOCKS):
        narrow, wide = width << k, width << (k + 1)
        layers.append(_conv(narrow, wide, 3, stride=2))
        for _ in range(n_block):
            layers.append(ResidualBlock(_conv(wide, narrow, 1),
                                        _conv(narrow, wide, 3)))
    return layers


def darknet53_stage_ends():
    """Indices of the trunk children that end each resolution of Darknet-53.

    Returns:
        tuple of 6 ints: the first convolution, then the last residual block of
        each stage, i.e. ``(0, 2, 5, 14, 23, 28)``.
    """
    ends = [0]
    for n_block in DARKNET53_BLOCKS:
        ends.append(ends[-1] + 1 + n_block)
    return tuple(ends)


def darknet19_stage_ends():
    """Indices of the trunk layers that end each resolution of Darknet-19.

    Returns:
        tuple of 6 ints ``(0, 1, 4, 7, 12, 17)``: the pooled layers and the last one.
    """
    return DARKNET19_POOL_AFTER + (sum(DARKNET19_CONVS) - 1,)


class _DarknetClassifier(chainer.Chain):
    """Shared input checks, pooling and :meth:`predict` of the two classifiers."""

    def __init__(self, n_class, channels_scale):
        super().__init__()
        if int(n_class) != n_class or n_class < 1:
            raise ValueError('n_class must be a positive integer, got %r' % (n_class,))
        self.n_class = int(n_class)
        self.channels_scale = channels_scale

    def _check_input(self, x):
        shape = x.shape
        if len(shape) != 4 or shape[1] != 3:
            raise ValueError('%s expects a batch of RGB images (N, 3, H, W), got shape %r'
                             % (type(self).__name__, tuple(shape)))
        if shape[2] % STRIDE or shape[3] % STRIDE or shape[2] == 0 or shape[3] == 0:
            raise ValueError('%s expects H and W to be positive multiples of %d, got %dx%d'
                             % (type(self).__name__, STRIDE, shape[2], shape[3]))

    def features(self, x):
        """Feature maps at strides 1, 2, 4, 8, 16, 32.

        Args:
            x: ``(N, 3, H, W)`` float32, RGB in ``[0, 1]``, H and W multiples of 32.

        Returns:
            list of 6 Variables, map ``s`` of shape ``(N, C_s, H / 2**s, W / 2**s)``
            taken where the trunk leaves that resolution.
        """
        self._check_input(x)
        ends = set(self._stage_ends)
        maps = []
        h = x
        for i, link in enumerate(self.trunk):
            h = link(h)
            if i in ends:
                maps.append(h)
                h = self._downsample(i, h)
        return maps

    def _downsample(self, i, h):
        return h

    def predict(self, x):
        """Class probabilities for a batch, in test mode without a graph.

        Args:
            x: ``(N, 3, H, W)`` float32 array, RGB in ``[0, 1]``.

        Returns:
            array ``(N, n_class)`` of softmax probabilities (rows sum to 1).
        """
        with chainer.using_config('train', False), chainer.no_backprop_mode():
            return F.softmax(self.forward(x)).array


class Darknet19(_DarknetClassifier):
    """Darknet-19 of YOLO9000 (``darknet19.cfg``), the backbone of YOLOv2.

    18 conv+BN+leaky(0.1) layers with 5 max poolings (:attr:`trunk`, one to one
    with ``Darknet19Extractor[0:18]``), then the 19th convolution: a 1x1 to
    ``n_class`` with bias and no BN or activation (:attr:`head`), then global
    average pooling. YOLO9000 drops that 19th layer when building the detector.

    Args:
        n_class (int): number of classes (1000 for ImageNet).
        channels_scale (float): multiplies every width; 1 is the paper model.

    ``forward(x)``: ``x`` ``(N, 3, H, W)`` float32 RGB in ``[0, 1]``, H and W
    multiples of 32 -> logits ``(N, n_class)``.
    """

    _stage_ends = darknet19_stage_ends()

    def __init__(self, n_class=1000, channels_scale=1):
        super().__init__(n_class, channels_scale)
        trunk = darknet19_trunk(channels_scale)
        with self.init_scope():
            self.trunk = chainer.ChainList(*trunk)
            self.head = L.Convolution2D(trunk[-1].conv.out_channels, self.n_class, 1)

    def _downsample(self, i, h):
        if i in DARKNET19_POOL_AFTER:
            return F.max_pooling_2d(h, 2, stride=2)
        return h

    def forward(self, x):
        h = self.head(self.features(x)[-1])
        return F.mean(h, axis=(2, 3))


class Darknet53(_DarknetClassifier):
    """Darknet-53 of YOLOv3, exactly paper 001 Fig. 1 (``darknet53.cfg``).

    52 conv+BN+leaky(0.1) layers, 23 of them in residual blocks (:attr:`trunk`,
    29 children one to one with ``Darknet53Extractor[0:29]``), global average
    pooling, then a fully connected layer to ``n_class`` (:attr:`head`).

    Args:
        n_class (int): number of classes (1000 for ImageNet).
        channels_scale (float): multiplies every width; 1 is the paper model.

    ``forward(x)``: ``x`` ``(N, 3, H, W)`` float32 RGB in ``[0, 1]``, H and W
    multiples of 32 -> logits ``(N, n_class)``.
    """

    _stage_ends = darknet53_stage_ends()

    def __init__(self, n_class=1000, channels_scale=1):
        super().__init__(n_class, channels_scale)
        trunk = darknet53_trunk(channels_scale)
        with self.init_scope():
            self.trunk = chainer.ChainList(*trunk)
            self.head = L.Linear(trunk[-1][-1].conv.out_channels, self.n_class)

    def forward(self, x):
        h = F.mean(self.features(x)[-1], axis=(2, 3))
        return self.head(h)


#: Widths of the stem and of the five stride-2 stages, and residual blocks per stage, of the
#: narrow Darknet-53-style trunk of the CPU detector (``detection.models.YOLOv3Small``).
SMALL_WIDTHS = (8, 16, 32, 64, 128, 256)
SMALL_BLOCKS = (0, 1, 2, 2, 1)


def small_darknet_trunk(widths=SMALL_WIDTHS, blocks=SMALL_BLOCKS):
    """The narrow trunk: a 3x3 stem, then per stage a stride-2 3x3 and its residual blocks
    (1x1 to half the width, 3x3 back), leaky ReLU 0.1: Darknet-53's building blocks, fewer and
    narrower. A ``ChainList`` of 6 children (stem, then one ``Sequential`` per stage), so a
    classifier and the CPU detector built from it share every parameter name."""
    trunk = chainer.ChainList()
    trunk.append(Conv2DBNActiv(widths[0], 3, pad=1, activ=_leaky_relu))
    for k, n_block in enumerate(blocks):
        stage = chainer.Sequential(
            Conv2DBNActiv(widths[k + 1], 3, stride=2, pad=1, activ=_leaky_relu))
        for _ in range(n_block):
            stage.append(ResidualBlock(
                Conv2DBNActiv(widths[k + 1] // 2, 1, activ=_leaky_relu),
                Conv2DBNActiv(widths[k + 1], 3, pad=1, activ=_leaky_relu)))
        trunk.append(stage)
    return trunk


class SmallDarknet(_DarknetClassifier):
    """The CPU detector's narrow trunk (:func:`small_darknet_trunk`) as a classifier: global
    average pooling and a fully connected layer to ``n_class``. Trained on the synthetic
    classification data, its trunk initialises ``--model yolov3_small`` (``--pretrained``), the
    papers' classifier -> detector path at CPU scale.

    Args:
        n_class (int): number of classes.
        channels_scale (float): multiplies every width of :data:`SMALL_WIDTHS`; 1 is the width
            the CPU detector has.
    """

    _stage_ends = (0, 1, 2, 3, 4, 5)

    def __init__(self, n_class, channels_scale=1):
        super().__init__(n_class, channels_scale)
        widths = tuple(scaled_width(w, channels_scale) for w in SMALL_WIDTHS)
        with self.init_scope():
            self.trunk = small_darknet_trunk(widths)
            self.head = L.Linear(widths[-1], self.n_class)

    def forward(self, x):
        h = F.mean(self.features(x)[-1], axis=(2, 3))
        return self.head(h)
