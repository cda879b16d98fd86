"""Copy ImageNet-pretrained Darknet trunks into ChainerCV's YOLO detectors.

Paper 000 sec. 2.2 (after YOLO9000): YOLOv2 starts from the first 18 layers of
Darknet-19 (its 19th, the 1x1 class convolution, is dropped). Paper 001 sec. 2.3:
YOLOv3 starts from the 52 convolution layers of Darknet-53 (the FC is dropped).

Everything is built on one idea: a *trunk layer list*, the ordered
:class:`chainercv.links.Conv2DBNActiv` links of a trunk, extracted the same way
from a classifier and from a detector's extractor
(:func:`darknet19_trunk_layers`, :func:`darknet53_trunk_layers`), then copied
pairwise by :func:`copy_conv_bn_layers`. A detector whose extractor starts with
the children of :func:`chainer_yolo_dist.classification.darknet.darknet53_trunk` (any
``channels_scale``) works with :func:`transfer_darknet53_to_yolov3` unchanged.
"""
from chainer import backend
from chainercv.links import Conv2DBNActiv
from chainercv.links.model.yolo.yolo_v3 import ResidualBlock

from chainer_yolo_dist.classification.darknet import DARKNET53_BLOCKS
from chainer_yolo_dist.classification.darknet import Darknet19
from chainer_yolo_dist.classification.darknet import Darknet53
from chainer_yolo_dist.classification.model_files import (N_DARKNET19_TRUNK,
                                                          inspect_classifier_file,
                                                          load_classifier)

#: Children of a Darknet-53 trunk ChainList (stem, then per stage a downsampling
#: conv and its residual blocks) and the convolutions they hold.
N_DARKNET53_CHILDREN = 1 + sum(1 + n for n in DARKNET53_BLOCKS)
N_DARKNET53_CONVS = 1 + sum(1 + 2 * n for n in DARKNET53_BLOCKS)

# Conv2DBNActiv's parameters and BN running statistics, in the order they are listed.
_PARAMS = (('conv', 'W'), ('bn', 'gamma'), ('bn', 'beta'))
_PERSISTENTS = (('bn', 'avg_mean'), ('bn', 'avg_var'))


def _children(link, classifier_type, n, what):
    if isinstance(link, classifier_type):
        link = link.trunk
    try:
        children = list(link)
    except TypeError:
        raise TypeError('%s: expected a %s classifier or a ChainList trunk/extractor, got %s'
                        % (what, classifier_type.__name__, type(link).__name__)) from None
    if len(children) < n:
        raise ValueError('%s: %s has %d children, a trunk needs at least %d'
                         % (what, type(link).__name__, len(children), n))
    return children[:n]


def _expect_conv_bn(layer, what, position):
    if not isinstance(layer, Conv2DBNActiv):
        raise ValueError('%s: %s is a %s, expected a Conv2DBNActiv'
                         % (what, position, type(layer).__name__))
    return layer


def darknet19_trunk_layers(link):
    """The 18 trunk layers of a Darknet-19 classifier or a YOLOv2 extractor.

    Args:
        link: a :class:`~chainer_yolo_dist.classification.darknet.Darknet19`, or a
            ChainList whose first 18 children are the trunk
            (``chainercv``'s ``Darknet19Extractor``, ``Darknet19.trunk``).

    Returns:
        list of 18 :class:`~chainercv.links.Conv2DBNActiv`, input side first.
    """
    what = 'Darknet-19 trunk'
    children = _children(link, Darknet19, N_DARKNET19_TRUNK, what)
    return [_expect_conv_bn(c, what, 'child %d' % i) for i, c in enumerate(children)]


def darknet53_trunk_layers(link):
    """The 52 trunk convolutions of a Darknet-53 classifier or a YOLOv3 extractor.

    Args:
        link: a :class:`~chainer_yolo_dist.classification.darknet.Darknet53`, or a
            ChainList whose first 29 children are the trunk as
            ``Darknet53Extractor`` organizes it: a Conv2DBNActiv, then per stage a
            stride-2 Conv2DBNActiv and ``DARKNET53_BLOCKS[k]`` ``ResidualBlock`` s
            of two Conv2DBNActiv each.

    Returns:
        list of 52 :class:`~chainercv.links.Conv2DBNActiv`, residual blocks
        flattened (1x1 before 3x3), input side first.
    """
    what = 'Darknet-53 trunk'
    children = _children(link, Darknet53, N_DARKNET53_CHILDREN, what)
    layers = [_expect_conv_bn(children[0], what, 'child 0')]
    i = 1
    for k, n_block in enumerate(DARKNET53_BLOCKS):
        layers.append(_expect_conv_bn(children[i], what,
                                      'child %d (stage %d downsampling)' % (i, k)))
        i += 1
        for _ in range(n_block):
            block = children[i]
            if not isinstance(block, ResidualBlock) or len(block) != 2:
                raise ValueError('%s: child %d (stage %d) is a %s, expected a ResidualBlock '
                                 'of two Conv2DBNActiv' % (what, i, k, type(block).__name__))
            layers.extend(_expect_conv_bn(c, what, 'child %d/%d' % (i, j))
                          for j, c in enumerate(block))
            i += 1
    return layers


def _link_names(root):
    return {id(link): name for name, link in root.namedlinks()}


def _name(names, layer, index):
    # Layers not reachable from the root still get a stable, readable name.
    return names.get(id(layer), '<trunk layer %d>' % index)


def _expected_conv_shape(dst, src_shape, prev_dst):
    """Shape dst.conv.W has, or will have when its lazy initialization happens.

    ChainerCV's extractors create convolutions with ``in_channels=None``; inside a
    trunk every layer's input is the previous layer's output (true of Darknet-19,
    and of Darknet-53 with residual blocks flattened), so the input width is the
    previous layer's ``out_channels``. The first layer's input is the image.
    """
    conv = dst.conv
    if conv.W.array is not None:
        return conv.W.shape
    in_channels = src_shape[1] if prev_dst is None else prev_dst.conv.out_channels
    kh, kw = conv.ksize if isinstance(conv.ksize, tuple) else (conv.ksize, conv.ksize)
    return (conv.out_channels, in_channels // conv.groups, kh, kw)


def copy_conv_bn_layers(src_root, src_layers, dst_root, dst_layers):
    """Copies conv weights, BN scale/shift and BN running statistics pairwise.

    All shapes are checked before anything is written, so a failed call leaves
    ``dst_root`` exactly as it was. Lazily initialized destination convolutions
    are initialized with the copied weights (as ``load_npz`` would).

    Args:
        src_root (chainer.Link): link holding ``src_layers`` (names in errors).
        src_layers (list of Conv2DBNActiv): source trunk, input side first.
        dst_root (chainer.Link): link holding ``dst_layers`` (names returned).
        dst_layers (list of Conv2DBNActiv): destination trunk, same length.

    Returns:
        list of str: the written names relative to ``dst_root`` (as in
        ``dst_root.namedparams()``), per layer ``conv/W``, ``bn/gamma``,
        ``bn/beta``, ``bn/avg_mean``, ``bn/avg_var``.

    Raises:
        ValueError: the lists differ in length, or a shape differs; the message
            names the layer and gives both shapes.
    """
    if len(src_layers) != len(dst_layers):
        raise ValueError('cannot copy %d trunk layers into %d'
                         % (len(src_layers), len(dst_layers)))
    src_names = _link_names(src_root)
    dst_names = _link_names(dst_root)
    mismatches = []
    plan = []
    for i, (src, dst) in enumerate(zip(src_layers, dst_layers)):
        src_name, dst_name = _name(src_names, src, i), _name(dst_names, dst, i)
        prev = dst_layers[i - 1] if i > 0 else None
        pairs = [(getattr(getattr(src, c), p), getattr(getattr(dst, c), p), c + '/' + p)
                 for c, p in _PARAMS + _PERSISTENTS]
        for src_value, dst_value, attr in pairs:
            if getattr(src_value, 'array', src_value) is None:
                raise ValueError('trunk layer %d %s: classifier %s/%s is not initialized '
                                 '(nothing to copy)' % (i, attr, src_name, attr))
            src_shape = tuple(src_value.shape)
            if attr == 'conv/W':
                dst_shape = tuple(_expected_conv_shape(dst, src_shape, prev))
            else:
                dst_shape = tuple(dst_value.shape)
            if src_shape != dst_shape:
                mismatches.append('trunk layer %d %s: classifier %s/%s has shape %s, detector '
                                  '%s/%s has shape %s' % (i, attr, src_name, attr, src_shape,
                                                          dst_name, attr, dst_shape))
        plan.append((src, dst, dst_name))
    if mismatches:
        more = ('; and %d more mismatches' % (len(mismatches) - 1)) if len(mismatches) > 1 else ''
        raise ValueError('cannot transfer the trunk, nothing was copied: %s%s. Classifier and '
                         'detector trunks must have equal widths (same channels_scale).'
                         % (mismatches[0], more))

    copied = []
    for src, dst, dst_name in plan:
        for c, p in _PARAMS:
            # copydata crosses devices and initializes a lazy destination.
            getattr(getattr(dst, c), p).copydata(getattr(getattr(src, c), p))
            copied.append('%s/%s/%s' % (dst_name, c, p))
        for c, p in _PERSISTENTS:
            backend.copyto(getattr(getattr(dst, c), p), getattr(getattr(src, c), p))
            copied.append('%s/%s/%s' % (dst_name, c, p))
    return copied


def transfer_darknet19_to_yolov2(classifier, yolov2):
    """Initializes YOLOv2's trunk from a Darknet-19 classifier (paper 000 sec. 2.2).

    Copies the first 18 conv+BN layers (weights, gamma, beta, running mean and
    variance) into ``yolov2.extractor[0:18]``; the class convolution and every
    other YOLOv2 layer are left untouched.

    Args:
        classifier (Darknet19): the pretrained classifier.
        yolov2: a ``chainercv.links.YOLOv2`` or any link whose ``extractor``
            starts with 18 Conv2DBNActiv of the same widths.

    Returns:
        list of str: the 90 written names, e.g. ``/extractor/0/conv/W``.
    """
    return copy_conv_bn_layers(classifier, darknet19_trunk_layers(classifier),
                               yolov2, darknet19_trunk_layers(yolov2.extractor))


def transfer_darknet53_to_yolov3(classifier, yolov3):
    """Initializes YOLOv3's trunk from a Darknet-53 classifier (paper 001 sec. 2.3).

    Copies the 52 conv+BN layers into ``yolov3.extractor[0:29]`` (residual blocks
    included); the FC and every other YOLOv3 layer are left untouched.

    Args:
        classifier (Darknet53): the pretrained classifier.
        yolov3: a ``chainercv.links.YOLOv3`` or any link whose ``extractor``
            starts with a Darknet-53 trunk of the same widths (see
            :func:`darknet53_trunk_layers`).

    Returns:
        list of str: the 260 written names, e.g. ``/extractor/3/1/bn/avg_var``.
    """
    return copy_conv_bn_layers(classifier, darknet53_trunk_layers(classifier),
                               yolov3, darknet53_trunk_layers(yolov3.extractor))


# --- Transferring a saved classifier by file path (``--pretrained``) ---------------------

#: Which classifier each paper detector's extractor takes, with the ``--model`` name.
_DETECTOR_TRUNKS = (('Darknet19Extractor', 'darknet19', 'YOLOv2 (--model yolov2)'),
                    ('SmallDarknetExtractor', 'darknet_small',
                     'the small YOLOv3 (--model yolov3_small)'),
                    ('Darknet53Extractor', 'darknet53', 'YOLOv3 (--model yolov3)'))


def transfer_small_darknet(classifier, detector):
    """Copies the trunk of a :class:`~chainer_yolo_dist.classification.darknet.SmallDarknet`
    into the CPU detector ``YOLOv3Small``, whose extractor is built from the same
    :func:`~chainer_yolo_dist.classification.darknet.small_darknet_trunk`: every parameter
    and batch-normalisation statistic by name, shapes checked first, all or nothing.

    Returns:
        list of str: the detector's written names (e.g. ``/extractor/trunk/1/0/conv/W``).
    """
    src, dst = classifier.trunk, detector.extractor.trunk
    for name, param in dst.namedparams():
        if param.array is None:  # created lazily: it takes the classifier's shape
            param.initialize(dict(src.namedparams())[name].shape)
    source, target = dict(_arrays(src)), dict(_arrays(dst))
    if sorted(source) != sorted(target):
        raise ValueError('the classifier\'s and the detector\'s trunks differ: %s'
                         % sorted(set(source) ^ set(target))[:4])
    for name in source:
        if source[name].shape != target[name].shape:
            raise ValueError('%s: the classifier has shape %s, the detector %s: train the '
                             'classifier with --channels-scale 1'
                             % (name, source[name].shape, target[name].shape))
    for name in sorted(source):
        target[name][...] = backend.get_array_module(target[name]).asarray(source[name])
    return ['/extractor/trunk' + name for name in sorted(source)]


def _arrays(link):
    """``(name, array)`` of every parameter and float persistent (BN statistics) of ``link``."""
    for name, param in link.namedparams():
        yield name, param.array
    for path, child in link.namedlinks():
        for attr in child._persistent:
            value = getattr(child, attr)
            if getattr(value, 'dtype', None) is not None and value.dtype.kind == 'f':
                yield path + '/' + attr, value


#: The classifier each detector takes its trunk from (``--model`` name -> classifier kind).
TRUNK_OF = {'yolov2': 'darknet19', 'yolov3': 'darknet53', 'yolov3_small': 'darknet_small'}


def check_pretrained(path, model):
    """Raises ValueError unless ``path`` holds a classifier whose trunk the detector ``model``
    (a ``--model`` name) takes; reads only the file's array names and shapes. A Darknet
    weights file (``darknet53.conv.74``, ...) is checked layer by layer when it is loaded."""
    from chainer_yolo_dist.detection.darknet_weights import is_darknet_weights_file
    if is_darknet_weights_file(path):
        paper_models = ('yolov2', 'yolov3')  # Darknet's files hold the paper networks only
        if model not in paper_models:
            raise ValueError('%s: Darknet weights load into the paper models (--model %s), '
                             'not %s' % (path, ' or --model '.join(paper_models), model))
        _check_darknet_length(path, model)
        return None
    info = inspect_classifier_file(path)
    paper_pairs = ('a Darknet-19 classifier transfers into YOLOv2 (--model yolov2), a '
                   'Darknet-53 one into YOLOv3 (--model yolov3), a small Darknet one into '
                   'the CPU detector (--model yolov3_small)')
    if model not in TRUNK_OF:
        raise ValueError('%s: cannot transfer a %s into %s, whose trunk is not a Darknet one: '
                         'transfer needs the paper models (%s)'
                         % (path, info.description, model, paper_pairs))
    if TRUNK_OF[model] != info.kind:
        raise ValueError('%s holds a %s, which does not match --model %s: %s'
                         % (path, info.description, model, paper_pairs))
    if info.channels_scale != 1:
        raise ValueError('%s holds a %s; %s takes the paper width: train the classifier with '
                         '--channels-scale 1' % (path, info.description, model))
    return info


def darknet_trunk_values(model):
    """float32 values of the Darknet trunk that ``model`` ('yolov2' or 'yolov3') starts from
    (Darknet-19's 18 convolutions, Darknet-53's 52; each BN-convolution stores beta, gamma,
    mean and variance, then its weights), counted from the layouts of ``darknet.py``."""
    from chainer_yolo_dist.classification.darknet import BASE_WIDTH, DARKNET19_CONVS
    convs = []  # (out, in, ksize)
    if model == 'yolov2':
        in_ch = 3
        for k, n_conv in enumerate(DARKNET19_CONVS):
            for i in range(n_conv):
                out_ch, ksize = ((BASE_WIDTH << k, 3) if i % 2 == 0
                                 else (BASE_WIDTH << (k - 1), 1))
                convs.append((out_ch, in_ch, ksize))
                in_ch = out_ch
    else:
        convs.append((BASE_WIDTH, 3, 3))
        for k, n_block in enumerate(DARKNET53_BLOCKS):
            narrow, wide = BASE_WIDTH << k, BASE_WIDTH << (k + 1)
            convs.append((wide, narrow, 3))
            convs += [(narrow, wide, 1), (wide, narrow, 3)] * n_block
    return sum(4 * out_ch + out_ch * in_ch * ksize * ksize for out_ch, in_ch, ksize in convs)


def _check_darknet_length(path, model):
    """ValueError naming ``path`` when the Darknet file ends before ``model``'s trunk does
    (a cut download or copy): refused before any data is read, not when it is loaded."""
    import os
    from chainer_yolo_dist.detection.darknet_weights import _read_header
    _, header_bytes = _read_header(path)
    have = (os.path.getsize(path) - header_bytes) // 4
    need = darknet_trunk_values(model)
    if have < need:
        raise ValueError('%s: truncated Darknet weights: %d float32 values after the header, '
                         'the %s trunk needs %d (%d bytes short)'
                         % (path, have, 'Darknet-19' if model == 'yolov2' else 'Darknet-53',
                            need, 4 * (need - have)))


def load_pretrained(path, detector):
    """Initialises ``detector``'s trunk from ``path``: a classifier file of this package
    (:func:`transfer_pretrained`) or Darknet's own weights (``darknet19_448.conv.23``,
    ``darknet53.conv.74``, full ``.weights``). Returns what was written, for the log."""
    from chainer_yolo_dist.detection.darknet_weights import (is_darknet_weights_file,
                                                             load_darknet_trunk)
    if is_darknet_weights_file(path):
        return '%d Darknet layers' % len(load_darknet_trunk(path, detector))
    return '%d arrays' % len(transfer_pretrained(path, detector))


def transfer_pretrained(path, detector):
    """Initialises a paper detector's trunk from the classifier file ``path`` (``--pretrained``).

    A Darknet-19 classifier goes into YOLOv2 (paper 000 sec. 2.2:
    :func:`transfer_darknet19_to_yolov2`), a Darknet-53 one into YOLOv3 (paper 001 sec. 2.3:
    :func:`transfer_darknet53_to_yolov3`). The classifier is rebuilt from the file alone
    (network, ``n_class`` and ``channels_scale`` read from the stored arrays), so only the
    path is needed.

    Args:
        path (str): ``model.npz`` or trainer snapshot written by ``scripts/train_darknet.py``.
        detector: ``chainercv.links.YOLOv2`` or ``YOLOv3`` (the paper models).
    Returns:
        list of str: the detector's written names (e.g. ``/extractor/0/conv/W``).
    Raises:
        ValueError: the file is not a classifier, the pair does not match (Darknet-19 into
            YOLOv3, a detector whose trunk is not a Darknet one such as the small YOLOv3,
            or different widths); nothing is copied then.
    """
    info = inspect_classifier_file(path)
    extractor = type(getattr(detector, 'extractor', None)).__name__
    wanted = [(kind, name) for cls, kind, name in _DETECTOR_TRUNKS if cls == extractor]
    paper_pairs = 'a Darknet-19 classifier transfers into YOLOv2 (--model yolov2), a Darknet-53 ' \
                  'one into YOLOv3 (--model yolov3)'
    if not wanted:
        raise ValueError('%s: cannot transfer a %s into a %s, whose trunk (%s) is not a Darknet '
                         'one: transfer needs the paper models (%s)'
                         % (path, info.description, type(detector).__name__, extractor,
                            paper_pairs))
    kind, name = wanted[0]
    if kind != info.kind:
        raise ValueError('%s holds a %s, which does not match the detector %s: %s'
                         % (path, info.description, type(detector).__name__, paper_pairs))
    classifier, _ = load_classifier(path)
    transfer = {'darknet19': transfer_darknet19_to_yolov2,
                'darknet53': transfer_darknet53_to_yolov3,
                'darknet_small': transfer_small_darknet}[kind]
    try:
        return transfer(classifier, detector)
    except ValueError as e:
        raise ValueError('%s: %s. The file holds a %s; %s takes the paper width: train the '
                         'classifier with --channels-scale 1' % (path, e, info.description,
                                                                 name)) from e
