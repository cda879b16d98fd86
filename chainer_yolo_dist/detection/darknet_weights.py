"""Darknet's own binary weights (``*.weights``, ``*.conv.N``): read, write, load.

The papers start detection from Darknet's ImageNet-pretrained weights (paper 000 sec. 2.2:
the first 18 layers of Darknet-19, ``darknet19_448.conv.23``; paper 001 sec. 2.3: the 52
convolutions of Darknet-53, ``darknet53.conv.74``). This module reads those files, and the
full ``.weights`` of the classifiers and detectors, into this package's
:class:`~chainer_yolo_dist.classification.darknet.Darknet19` / ``Darknet53`` (``channels_scale=1``)
and into ChainerCV's ``YOLOv2`` / ``YOLOv3``.

File format (Darknet ``src/parser.c``, ``save_weights_upto`` / ``load_weights_upto``;
little-endian): int32 ``major``, ``minor``, ``revision``; then ``seen`` (images trained on)
as int64 if ``major * 10 + minor >= 2``, else int32. Then, for every ``[convolutional]``
layer in cfg order (maxpool, shortcut, route, reorg, upsample, region/yolo, avgpool and
softmax hold nothing), float32 arrays of ``n`` = filters values each:
with ``batch_normalize=1``: biases (BN beta), scales (gamma), rolling mean, rolling
variance, then the weights ``(n, c, k, k)`` in C order; without BN: biases, then weights.
A partial file ``NAME.conv.N`` (``darknet partial``) holds the convolutions among the first
``N`` *Darknet layers* (all layer types counted), and nothing else.

Batch normalisation: Darknet's GPU forward computes ``(x - mean) / sqrt(var + 1e-5)`` (its CPU
path ``(x - mean) / (sqrt(var) + 1e-6)``), ChainerCV's ``Conv2DBNActiv`` ``sqrt(var + 2e-5)``;
a layer loaded from a Darknet file takes Darknet's :data:`DARKNET_BN_EPS`.

Mapping (the layer order of ChainerCV's ``examples/yolo/darknet2npz.py`` for the
detectors): :func:`darknet_layout` lists one entry per Darknet cfg layer, so that entry
``i`` is Darknet layer ``i``. Detector heads: Darknet's region/yolo layers order each
anchor's outputs ``(x, y, w, h, obj, classes...)``, ChainerCV's ``(y, x, h, w, obj, ...)``;
the head convolutions' output channels are swapped accordingly on reading and writing.
"""
import collections
import os
import re
import zipfile

import chainer
import numpy as np
from chainer import backend
from chainer.links import Convolution2D
from chainer.links import Linear
from chainercv.links import Conv2DBNActiv
from chainercv.links.model.yolo.yolo_v2 import Darknet19Extractor
from chainercv.links.model.yolo.yolo_v3 import Darknet53Extractor

from chainer_yolo_dist.classification.darknet import DARKNET19_POOL_AFTER
from chainer_yolo_dist.classification.darknet import DARKNET53_BLOCKS
from chainer_yolo_dist.classification.darknet import Darknet19
from chainer_yolo_dist.classification.darknet import Darknet53
from chainer_yolo_dist.core import bn_eps
from chainer_yolo_dist.core.atomic import atomic_path

#: Darknet layers of the pretrained trunk in Darknet's own partial files: the first 23
#: layers of ``darknet19_448.cfg`` hold its 18 trunk convolutions (paper 000 sec. 2.2),
#: the first 74 of ``darknet53.cfg`` its 52 convolutions (paper 001 sec. 2.3).
DARKNET19_TRUNK_CUTOFF = 23
DARKNET53_TRUNK_CUTOFF = 74

#: Version written by :func:`save_darknet_weights`: Darknet's own (``major, minor,
#: revision`` = 0, 2, 0), which stores ``seen`` as int64.
DARKNET_VERSION = (0, 2, 0)

#: The epsilon of Darknet's batch normalisation on GPUs (``normalize_kernel``, also cuDNN's
#: ``.00001`` in ``forward_batchnorm_layer_gpu``), which its published weights were trained
#: and are run with; the layers :func:`load_darknet_weights` fills take it, since with a
#: running variance near 1e-5 the eps is a large part of the divisor.
DARKNET_BN_EPS = 1e-5

_PARTIAL_SUFFIX = re.compile(r'\.conv\.(\d+)$')

#: One Darknet cfg layer. ``kind`` is the cfg section name (``'convolutional'``,
#: ``'maxpool'``, ...); for convolutions ``name`` is the link's name under the root
#: (``'/extractor/3/1'``), ``link`` the Conv2DBNActiv / Convolution2D / Linear,
#: ``batch_normalize`` whether the file stores BN (else a bias), ``yolo_head`` whether the
#: output channels are a YOLO head's (x, y, w, h order in Darknet, y, x, h, w in ChainerCV).
DarknetLayer = collections.namedtuple(
    'DarknetLayer', ('index', 'kind', 'name', 'link', 'batch_normalize', 'yolo_head'))


# --- The file: header and float32 body ------------------------------------------------------

def _read_header(path):
    """``(header dict, header size in bytes)``; ValueError naming the file if implausible."""
    size = os.path.getsize(path)
    with open(path, 'rb') as f:
        head = f.read(20)
    if len(head) < 16:
        raise ValueError('%s: %d bytes, too short for a Darknet weights header (16 or 20 bytes)'
                         % (path, size))
    major, minor, revision = (int(v) for v in np.frombuffer(head[:12], '<i4'))
    if not all(0 <= v < 1000 for v in (major, minor, revision)):
        raise ValueError('%s: not a Darknet weights file (its header is no version Darknet '
                         'writes, 0.1.x or 0.2.x)%s' % (path, '' if zipfile.is_zipfile(path)
                                                        else ', nor an .npz (no zip archive)'))
    if major * 10 + minor >= 2:
        if len(head) < 20:
            raise ValueError('%s: %d bytes, too short for a Darknet %d.%d header (20 bytes)'
                             % (path, size, major, minor))
        seen, header_bytes = int(np.frombuffer(head[12:20], '<i8')[0]), 20
    else:
        seen, header_bytes = int(np.frombuffer(head[12:16], '<i4')[0]), 16
    if (size - header_bytes) % 4:
        raise ValueError('%s: not a Darknet weights file: %d bytes after the %d-byte header '
                         'are not a whole number of float32 values'
                         % (path, size - header_bytes, header_bytes))
    header = {'major': major, 'minor': minor, 'revision': revision, 'seen': seen,
              'header_bytes': header_bytes}
    return header, header_bytes


def read_darknet_weights(path):
    """Reads a Darknet weights file.

    Args:
        path (str): a ``.weights`` or ``.conv.N`` file.
    Returns:
        ``(header, values)``: ``header`` a dict with ``major``, ``minor``, ``revision``,
        ``seen`` (images the network was trained on) and ``header_bytes`` (16 or 20);
        ``values`` a 1-D float32 array of everything after the header, in file order.
    Raises:
        ValueError: the header is implausible or the body is not whole float32 values.
    """
    header, header_bytes = _read_header(path)
    values = np.fromfile(path, dtype='<f4', offset=header_bytes).astype(np.float32, copy=False)
    return header, values


def is_darknet_weights_file(path):
    """True if ``path`` holds Darknet weights rather than a Chainer ``.npz``.

    The test does not rely on the name (files get renamed): the file must exist, must not
    be a zip archive (every ``.npz`` is one), and must have a Darknet header (version
    numbers below 1000, as Darknet's writers produce) followed by whole float32 values. A
    file that is no zip archive but is named as Darknet names its files (``*.weights``,
    ``*.conv.N``) counts too, so that a damaged one is refused by what is wrong with it as
    Darknet weights, not as a broken ``.npz``.
    """
    if not os.path.isfile(path) or zipfile.is_zipfile(path):
        return False
    if partial_cutoff(path) is not None or path.endswith('.weights'):
        return True
    try:
        _read_header(path)
    except (OSError, ValueError):
        return False
    return True


def partial_cutoff(path):
    """``N`` of a Darknet partial file ``*.conv.N`` (``darknet53.conv.74`` -> 74), else None."""
    match = _PARTIAL_SUFFIX.search(os.path.basename(path))
    return int(match.group(1)) if match else None


# --- Which Darknet layer is which link -------------------------------------------------------

class _Layout(object):
    def __init__(self, root):
        self.names = {id(link): name for name, link in root.namedlinks()}
        self.layers = []

    def conv(self, link, batch_normalize=True, yolo_head=False):
        expected = Conv2DBNActiv if batch_normalize else (Convolution2D, Linear)
        if not isinstance(link, expected):
            raise ValueError('Darknet layer %d: expected a %s, found a %s'
                             % (len(self.layers), 'Conv2DBNActiv' if batch_normalize
                                else 'Convolution2D with bias', type(link).__name__))
        self.layers.append(DarknetLayer(len(self.layers), 'convolutional', self.names[id(link)],
                                        link, batch_normalize, yolo_head))

    def other(self, kind):
        self.layers.append(DarknetLayer(len(self.layers), kind, None, None, False, False))

    def darknet19_trunk(self, layers):
        # darknet19_448.cfg: a 2x2/2 maxpool after trunk convolutions 0, 1, 4, 7, 12.
        for i, link in enumerate(layers[:18]):
            self.conv(link)
            if i in DARKNET19_POOL_AFTER:
                self.other('maxpool')

    def darknet53_trunk(self, children):
        # darknet53.cfg: stem; per stage a 3x3/2 conv, then blocks of 1x1, 3x3, shortcut.
        self.conv(children[0])
        i = 1
        for n_block in DARKNET53_BLOCKS:
            self.conv(children[i])
            for block in children[i + 1:i + 1 + n_block]:
                self.conv(block[0])
                self.conv(block[1])
                self.other('shortcut')
            i += 1 + n_block


def darknet_layout(link):
    """The Darknet cfg layers of ``link``, entry ``i`` being Darknet layer ``i``.

    Supported (Darknet's cfg in brackets; the layer counts are Darknet's):

    - :class:`Darknet19` at ``channels_scale=1`` (``darknet19_448.cfg``, 26 layers, 19
      convolutions, the last with bias: the class layer, ``head``);
    - :class:`Darknet53` at ``channels_scale=1`` (``darknet53.cfg``, 78 layers, 53
      convolutions; the last, 1x1 with bias after the avgpool, is ``head``, a ``Linear``);
    - ChainerCV ``YOLOv2`` (``yolov2-voc.cfg``, 32 layers, 23 convolutions: the trunk,
      two 3x3, the 1x1 passthrough conv before ``reorg``, a 3x3, the head with bias);
    - ChainerCV ``YOLOv3`` (``yolov3.cfg``, 107 layers, 75 convolutions: the trunk, then
      per scale the neck convs of ``extractor``, ``subnet[s]`` (3x3 and head with bias),
      ``yolo``, ``route``, the 1x1 before ``upsample``, ``route``).

    Returns:
        list of :class:`DarknetLayer`.
    Raises:
        ValueError: another network, or a classifier narrower than Darknet's.
    """
    layout = _Layout(link)
    if isinstance(link, (Darknet19, Darknet53)):
        if link.channels_scale != 1:
            raise ValueError('Darknet weights hold the paper widths (channels_scale 1); this %s '
                             'has channels_scale %g' % (type(link).__name__, link.channels_scale))
        if isinstance(link, Darknet19):
            layout.darknet19_trunk(list(link.trunk))
            layout.conv(link.head, batch_normalize=False)
            layout.other('avgpool')
        else:
            layout.darknet53_trunk(list(link.trunk))
            layout.other('avgpool')
            layout.conv(link.head, batch_normalize=False)
        layout.other('softmax')
        return layout.layers

    extractor = getattr(link, 'extractor', None)
    ext = list(extractor) if isinstance(extractor, chainer.ChainList) else []
    if type(extractor) is Darknet19Extractor:
        layout.darknet19_trunk(ext)
        layout.conv(ext[18])
        layout.conv(ext[19])
        layout.other('route')     # layers=-9: back to the 13th conv, before its maxpool
        layout.conv(ext[20])
        layout.other('reorg')
        layout.other('route')     # layers=-1,-4: reorg output first, then ext[19]'s
        layout.conv(ext[21])
        layout.conv(link.subnet, batch_normalize=False, yolo_head=True)
        layout.other('region')
        return layout.layers
    if type(extractor) is Darknet53Extractor:
        layout.darknet53_trunk(ext[:29])
        for scale in range(3):
            start = 29 + 6 * scale
            if scale > 0:
                layout.other('route')     # layers=-4: the last 1x1 of the previous scale
                layout.conv(ext[start - 1])
                layout.other('upsample')
                layout.other('route')     # layers=-1, 61 / -1, 36: upsampled map first
            for i in range(start, start + 5):
                layout.conv(ext[i])
            layout.conv(link.subnet[scale][0])
            layout.conv(link.subnet[scale][1], batch_normalize=False, yolo_head=True)
            layout.other('yolo')
        return layout.layers
    raise ValueError('no Darknet weights layout for a %s (extractor %s): Darknet files fit '
                     'Darknet19 / Darknet53 (channels_scale 1) and ChainerCV YOLOv2 / YOLOv3'
                     % (type(link).__name__, type(extractor).__name__))


def _trunk_cutoff(link):
    """Darknet layers of the pretrained trunk for ``link``'s network (23 or 74)."""
    if isinstance(link, Darknet19) or type(getattr(link, 'extractor', None)) is \
            Darknet19Extractor:
        return DARKNET19_TRUNK_CUTOFF
    return DARKNET53_TRUNK_CUTOFF


def _convolutions(layout, n_layers, path):
    if n_layers is None:
        n_layers = len(layout)
    if not 0 < n_layers <= len(layout):
        raise ValueError('%s: n_layers=%r, the network has %d Darknet layers'
                         % (path, n_layers, len(layout)))
    return [layer for layer in layout[:n_layers] if layer.kind == 'convolutional'], n_layers


def _materialize(link):
    # ChainerCV's detectors create their convolutions with in_channels=None: one tiny
    # forward gives every W its shape (as darknet2npz.py does at 416). 64 px is the
    # smallest side that YOLOv2's reorg and YOLOv3's upsampling accept.
    if any(param.array is None for param in link.params()):
        x = link.xp.zeros((1, 3, 64, 64), dtype=np.float32)
        with chainer.using_config('train', False), chainer.no_backprop_mode():
            link(x)


def _yolo_head_order(n_out, n_fg_class):
    """Output-channel permutation between Darknet's (x, y, w, h) and ChainerCV's (y, x, h, w).

    It swaps x/y and w/h inside each anchor's ``5 + n_fg_class`` channels, so it is its own
    inverse: ``chainercv = darknet[order]`` and ``darknet = chainercv[order]``.
    """
    per_anchor = 5 + n_fg_class
    order = np.arange(n_out).reshape(-1, per_anchor)
    order[:, :4] = order[:, [1, 0, 3, 2]]
    return order.ravel()


def _arrays(layer):
    """``[(name, parameter or BN statistic)]`` of one conv, in Darknet's file order."""
    link = layer.link
    if layer.batch_normalize:
        bn = link.bn
        return [('bn/beta', bn.beta), ('bn/gamma', bn.gamma), ('bn/avg_mean', bn.avg_mean),
                ('bn/avg_var', bn.avg_var), ('conv/W', link.conv.W)]
    if link.b is None:
        raise ValueError('%s has no bias, but Darknet stores one for a convolution without '
                         'batch normalization' % layer.name)
    return [('b', link.b), ('W', link.W)]


def _array_of(holder):
    return holder.array if isinstance(holder, chainer.Variable) else holder


# --- Loading ---------------------------------------------------------------------------------

def load_darknet_weights(path, link, n_layers=None, allow_trailing=False):
    """Loads a Darknet weights file into ``link`` (see :func:`darknet_layout`).

    Everything is read and checked before anything is written: a failed call leaves
    ``link``'s values unchanged (ChainerCV's lazily created convolutions may have been
    given their shapes and initial values).

    Args:
        path (str): Darknet ``.weights`` or partial ``.conv.N`` file.
        link: :class:`Darknet19` / :class:`Darknet53` (``channels_scale=1``, any
            ``n_class``), or ChainerCV ``YOLOv2`` / ``YOLOv3`` (any ``n_fg_class``).
        n_layers (int): read the convolutions among the first ``n_layers`` *Darknet layers*
            (Darknet's ``partial`` cutoff). Default: ``N`` for a file named ``*.conv.N``,
            else all layers of ``link``.
        allow_trailing (bool): accept values left after those layers (a full file read
            partially, as Darknet's ``load_weights_upto`` does); otherwise an error.
    The batch normalisations it fills take Darknet's eps, :data:`DARKNET_BN_EPS`.

    Returns:
        list of str: names of the loaded layers, in file order (e.g. ``/trunk/0``,
        ``/extractor/3/1``, ``/subnet/2/1``).
    Raises:
        ValueError (one line, naming the file): the file ends before the last layer (how
        many layers were read), has values left over (how many), or does not line up with
        the network (a negative BN running variance, or a non-finite value); or ``link`` is
        not supported.
    """
    _, values = read_darknet_weights(path)
    if n_layers is None:
        n_layers = partial_cutoff(path)
    layout = darknet_layout(link)
    convs, n_layers = _convolutions(layout, n_layers, path)
    _materialize(link)
    n_fg_class = getattr(link, 'n_fg_class', None)
    what = ('the first %d Darknet layers of %s' % (n_layers, type(link).__name__)
            if n_layers < len(layout) else type(link).__name__)

    plan = []
    offset = 0
    for k, layer in enumerate(convs):
        arrays = _arrays(layer)
        need = sum(_array_of(holder).size for _, holder in arrays)
        if offset + need > values.size:
            raise ValueError(
                '%s: truncated Darknet weights for %s: %d of %d convolutional layers were read; '
                'the file ends inside layer %d (%s, Darknet layer %d), %d float32 values short '
                '(%d after the header). Nothing was loaded.'
                % (path, what, k, len(convs), k + 1, layer.name, layer.index,
                   offset + need - values.size, values.size))
        for attr, holder in arrays:
            target = _array_of(holder)
            data = values[offset:offset + target.size].reshape(target.shape)
            offset += target.size
            if layer.yolo_head:
                data = data[_yolo_head_order(target.shape[0], n_fg_class)]
            if not np.isfinite(data).all() or (attr == 'bn/avg_var' and (data < 0).any()):
                raise ValueError(
                    '%s: convolutional layer %d of %d (%s) has %s values in %s: the file does '
                    'not hold %s (its layers do not line up). Nothing was loaded.'
                    % (path, k + 1, len(convs), layer.name,
                       'non-finite' if not np.isfinite(data).all() else 'negative', attr, what))
            plan.append((holder, data))
    left = values.size - offset
    if left and not allow_trailing:
        raise ValueError(
            '%s: %d bytes (%d float32 values) left over after all %d convolutional layers of '
            '%s: the file holds a bigger network (more classes, or a full classifier or '
            'detector: read its trunk with load_darknet_trunk). Nothing was loaded.'
            % (path, 4 * left, left, len(convs), what))
    for holder, data in plan:
        backend.copyto(_array_of(holder), data)
    for layer in convs:
        if layer.batch_normalize:
            # Read by BatchNormalization's forward; carried in model.npz and snapshots.
            bn_eps.set_eps(layer.link.bn, DARKNET_BN_EPS)
    return [layer.name for layer in convs]


def load_darknet_trunk(path, link):
    """Initializes ``link``'s Darknet trunk from a Darknet file (``--pretrained``).

    Paper 000 sec. 2.2: YOLOv2 starts from the first 18 layers of Darknet-19 (Darknet
    layers 0-22, ``darknet19_448.conv.23``); paper 001 sec. 2.3: YOLOv3 from the 52
    convolutions of Darknet-53 (layers 0-73, ``darknet53.conv.74``). Any Darknet file that
    starts with that trunk is accepted: the partial file, the full classifier weights, or
    a full detector's; what follows the trunk is not read.

    Args:
        path (str): Darknet weights file.
        link: ChainerCV ``YOLOv2`` / ``YOLOv3``, or :class:`Darknet19` / :class:`Darknet53`.
    Returns:
        list of str: the 18 or 52 loaded layer names (e.g. ``/extractor/0``).
    Raises:
        ValueError: a partial file that stops before the trunk ends, or any error of
            :func:`load_darknet_weights`.
    """
    darknet_layout(link)      # refuses unsupported networks before anything else
    cutoff = _trunk_cutoff(link)
    stored = partial_cutoff(path)
    if stored is not None and stored < cutoff:
        raise ValueError('%s holds the first %d Darknet layers; the %s trunk needs the first %d'
                         % (path, stored, type(link).__name__, cutoff))
    return load_darknet_weights(path, link, n_layers=cutoff, allow_trailing=True)


# --- Writing ---------------------------------------------------------------------------------

def save_darknet_weights(path, link, n_layers=None, seen=0, version=DARKNET_VERSION):
    """Writes ``link``'s weights in Darknet's format (what Darknet's ``save_weights`` writes).

    Args:
        path (str): output file; a name ``*.conv.N`` implies ``n_layers=N``.
        link: a network :func:`darknet_layout` supports.
        n_layers (int): write the convolutions among the first ``n_layers`` Darknet layers
            (Darknet's ``partial``); default all.
        seen (int): images trained on, stored in the header.
        version: ``(major, minor, revision)``; ``seen`` is int64 when ``major * 10 + minor
            >= 2`` (Darknet's rule), else int32.
    Returns:
        list of str: names of the written layers, in file order.
    """
    if n_layers is None:
        n_layers = partial_cutoff(path)
    layout = darknet_layout(link)
    convs, _ = _convolutions(layout, n_layers, path)
    _materialize(link)
    major, minor, revision = (int(v) for v in version)
    n_fg_class = getattr(link, 'n_fg_class', None)
    with atomic_path(path) as tmp, open(tmp, 'wb') as f:
        f.write(np.array([major, minor, revision], '<i4').tobytes())
        f.write(np.array([seen], '<i8' if major * 10 + minor >= 2 else '<i4').tobytes())
        for layer in convs:
            for _, holder in _arrays(layer):
                data = backend.CpuDevice().send(_array_of(holder))
                if layer.yolo_head:
                    data = data[_yolo_head_order(data.shape[0], n_fg_class)]
                np.ascontiguousarray(data, dtype='<f4').tofile(f)
    return [layer.name for layer in convs]
