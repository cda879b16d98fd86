"""The detection networks: ChainerCV's YOLOs, unchanged, plus one small YOLOv3 for CPUs.

All networks take images scaled to [0, 1], CHW RGB, of any square size that is a multiple of
32, and return ChainerCV's raw ``(locs, objs, confs)``: ``locs`` (N, K, 4) as
``(ty, tx, th, tw)``, ``objs`` (N, K), ``confs`` (N, K, n_fg_class).

ChainerCV builds its decoding tables (``_default_bbox``, ``_step``) for ``insize = 416`` in
``__init__``; :func:`set_insize` rebuilds them for another size so that ChainerCV's own
``predict`` and ``_decode`` evaluate at, for example, 608 (paper 001) or 128 (the demo).
"""
import itertools

import chainer
import chainer.functions as F
import numpy as np
from chainer.links import Convolution2D
from chainercv.experimental.links import YOLOv2Tiny
from chainercv.links import YOLOv2, YOLOv3, Conv2DBNActiv
from chainercv.links.model.yolo.yolo_base import YOLOBase
from chainercv.links.model.yolo.yolo_v2 import YOLOv2Base

from chainer_yolo_dist.classification.darknet import (SMALL_BLOCKS, SMALL_WIDTHS,
                                                      small_darknet_trunk)
from chainer_yolo_dist.detection.losses import YOLOv2Loss, YOLOv3Loss


def _leaky_relu(x):
    return F.leaky_relu(x, slope=0.1)


def _upsample(x):
    return F.unpooling_2d(x, 2, cover_all=False)


class SmallDarknetExtractor(chainer.Chain):
    """A narrow Darknet53-style trunk with a YOLOv3 neck, for training on CPUs.

    The same building blocks as ChainerCV's ``Darknet53Extractor`` (3x3 stride-2
    ``Conv2DBNActiv`` downsampling, ``ResidualBlock`` of 1x1 + 3x3, leaky ReLU 0.1, nearest
    upsampling and concatenation across scales) with fewer channels and blocks.

    Args:
        widths (tuple of int): channels of the stem and of the five stride-2 stages.
        blocks (tuple of int): residual blocks in each of the five stages.
        neck (tuple of int): channels of the neck at strides 32, 16, 8.

    ``forward(x)`` with ``x`` (N, 3, S, S) returns three feature maps at strides 32, 16, 8:
    (N, 2 * neck[s], S / stride, S / stride) each.
    """

    strides = (32, 16, 8)

    def __init__(self, widths=SMALL_WIDTHS, blocks=SMALL_BLOCKS, neck=(128, 64, 32)):
        super().__init__()
        with self.init_scope():
            # The classifier SmallDarknet has the same trunk: its weights transfer here.
            self.trunk = small_darknet_trunk(widths, blocks)
            self.lateral = chainer.ChainList()
            self.head = chainer.ChainList()
        for i, n in enumerate(neck):
            if i > 0:
                # Reduces the coarser map's channels before upsampling, as YOLOv3 does.
                self.lateral.append(Conv2DBNActiv(n, 1, activ=_leaky_relu))
            self.head.append(chainer.Sequential(
                Conv2DBNActiv(n, 1, activ=_leaky_relu),
                Conv2DBNActiv(n * 2, 3, pad=1, activ=_leaky_relu),
                Conv2DBNActiv(n, 1, activ=_leaky_relu)))
        self.neck = tuple(neck)
        self.insize = 416
        self.grids = tuple(self.insize // s for s in self.strides)

    def forward(self, x):
        h = x
        routes = []
        for stage in self.trunk:
            h = stage(h)
            routes.append(h)
        # Stride-8 and stride-16 trunk outputs feed the finer heads.
        skips = [routes[-2], routes[-3]]
        ys = []
        h = routes[-1]
        for i, head in enumerate(self.head):
            if i > 0:
                h = F.concat((_upsample(self.lateral[i - 1](h)), skips[i - 1]))
            h = head(h)
            ys.append(h)
        return ys


class YOLOv3Small(YOLOv3):
    """A small YOLOv3 (three scales, per-class logistic) for CPU training and the demo.

    It inherits ChainerCV's ``YOLOv3.forward`` / ``_decode`` / ``predict`` unchanged; only the
    extractor is narrower and the anchors (``(h, w)`` in input pixels, 3 per scale, coarsest
    scale first as in ``YOLOv3._anchors``) suit small inputs.
    """

    # Anchors for objects from about 8 to 90 pixels in a 128-pixel image (the synthetic
    # dataset): a tall, a square and a wide anchor per scale, sizes about 2.3x apart.
    _anchors = (
        ((90, 45), (64, 64), (45, 90)),
        ((40, 20), (28, 28), (20, 40)),
        ((17, 8), (12, 12), (8, 17)))

    def __init__(self, n_fg_class, anchors=None, **extractor_options):
        # YOLOv3.__init__ would build the full Darknet53 extractor: skip to the base.
        YOLOBase.__init__(self)
        if anchors is not None:
            self._anchors = tuple(tuple(tuple(a) for a in scale) for scale in anchors)
        self.n_fg_class = n_fg_class
        self.use_preset('visualize')
        with self.init_scope():
            self.extractor = SmallDarknetExtractor(**extractor_options)
            self.subnet = chainer.ChainList()
        for i, n in enumerate(self.extractor.neck):
            self.subnet.append(chainer.Sequential(
                Conv2DBNActiv(n * 2, 3, pad=1, activ=_leaky_relu),
                Convolution2D(len(self._anchors[i]) * (4 + 1 + self.n_fg_class), 1)))
        set_insize(self, self.extractor.insize)


#: The smallest input side every network here accepts (their stride): a forward pass at it
#: creates their lazily initialised parameters as one at the training size would.
INIT_SIDE = 32


def initialize_lazy_parameters(model):
    """Creates ``model``'s lazily initialised parameters with one forward pass at
    :data:`INIT_SIDE` on the model's current device (call it on the host, before
    ``to_gpu``, so the draws come from NumPy's seeded generator). Every parameter is set
    afterwards; weights, statistics and the model's input size are left as they were."""
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        model(model.xp.zeros((1, 3, INIT_SIDE, INIT_SIDE), np.float32))


#: Networks selectable with ``--model``: name -> constructor (the loss follows the head:
#: :func:`build_loss`).
MODELS = {
    'yolov2': YOLOv2,
    'yolov2_tiny': YOLOv2Tiny,
    'yolov3': YOLOv3,
    'yolov3_small': YOLOv3Small,
}


def build_model(name, n_fg_class):
    """Returns the network ``name`` (a key of :data:`MODELS`) with random weights."""
    try:
        cls = MODELS[name]
    except KeyError:
        raise ValueError('unknown model %r: choose one of %s' % (name, ', '.join(MODELS)))
    return cls(n_fg_class=n_fg_class)


def is_yolov2(model):
    return isinstance(model, YOLOv2Base)


def build_loss(model, **options):
    """The training loss that matches ``model``'s head (docs/loss.md), with its anchors."""
    if is_yolov2(model):
        return YOLOv2Loss(anchors=model._anchors, n_fg_class=model.n_fg_class, **options)
    return YOLOv3Loss(anchors=model._anchors, n_fg_class=model.n_fg_class,
                      strides=getattr(model.extractor, 'strides', (32, 16, 8)), **options)


def set_insize(model, insize):
    """Makes ChainerCV's decoding (``predict``) work at a square ``insize`` (multiple of 32).

    Rebuilds ``extractor.insize``, the grid sizes, ``_default_bbox`` (and ``_step`` for
    YOLOv3) exactly as ChainerCV's constructors do for 416, on the model's device.
    """
    if insize % 32:
        raise ValueError('insize must be a multiple of 32, got %d' % insize)
    xp = model.xp
    ext = model.extractor
    ext.insize = insize
    default_bbox = []
    if is_yolov2(model):
        ext.grid = insize // 32
        for v, u in itertools.product(range(ext.grid), repeat=2):
            for h, w in model._anchors:
                default_bbox.append((v, u, h, w))
        model._default_bbox = xp.asarray(np.array(default_bbox, dtype=np.float32))
        return model
    ext.grids = tuple(insize // s for s in (32, 16, 8))
    step = []
    for k, grid in enumerate(ext.grids):
        for v, u in itertools.product(range(grid), repeat=2):
            for h, w in model._anchors[k]:
                default_bbox.append((v, u, h, w))
                step.append(insize / grid)
    model._default_bbox = xp.asarray(np.array(default_bbox, dtype=np.float32))
    model._step = xp.asarray(np.array(step, dtype=np.float32))
    return model
