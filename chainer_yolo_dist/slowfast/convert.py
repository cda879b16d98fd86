"""Kinetics SlowFast / Slow R50 weights in PyTorch naming -> this package's trunk layout.

Paper 004 sec. 3.3 starts from Kinetics-600 weights. Published checkpoints are PyTorch state
dicts of FAIR's two implementations, in their own parameter names:

- PySlowFast (github facebookresearch/SlowFast, ``slowfast/models/video_model_builder.py``):
  ``s1.pathway{p}_stem.{conv,bn}``, ``s{2..5}.pathway{p}_res{b}.{branch1,branch1_bn}`` and
  ``.branch2.{a,a_bn,b,b_bn,c,c_bn}``, laterals ``s{1..4}_fuse.{conv_f2s,bn}``, classifier
  ``head.projection``; the Slow-only ``ResNet`` has the same names without pathway 1 and fusion.
- PyTorchVideo (github facebookresearch/pytorchvideo, ``models/slowfast.py``, ``resnet.py``,
  ``stem.py``, ``head.py``; hub ``slowfast_r50`` = PySlowFast's ``SLOWFAST_8x8_R50``):
  ``blocks.0.multipathway_blocks.{p}.{conv,norm}``, ``blocks.{1..4}.multipathway_blocks.{p}
  .res_blocks.{b}.{branch1_conv,branch1_norm}`` and ``.branch2.{conv_a,norm_a,conv_b,norm_b,
  conv_c,norm_c}``, laterals ``blocks.{0..3}.multipathway_fusion.{conv_fast_to_slow,norm}``,
  classifier ``blocks.6.proj``; the Slow-only ``create_resnet`` net is ``blocks.0.{conv,norm}``,
  ``blocks.{1..4}.res_blocks.{b}...``, ``blocks.5.proj``; the AVA detector
  (``slowfast_r50_detection``) nests the trunk under ``model.`` with ``detection_head.proj``.

Pathway ``p`` = 0 is Slow, 1 is Fast. These names were read from those repositories' sources;
``tests/test_slowfast_convert.py`` spells out some of them literally, with their shapes at R50.

Mapping (arrays are copied, never transposed: PyTorch's ``Conv3d`` weight ``(out, in, t, h, w)``
is ``L.ConvolutionND``'s ``W``; all convolutions are bias-free in both): conv ``weight -> W``;
``BatchNorm3d`` ``weight -> gamma``, ``bias -> beta``, ``running_mean -> avg_mean``,
``running_var -> avg_var``; ``num_batches_tracked`` is dropped and Chainer's ``N`` (batches
seen in fine-tune mode) written as 0. The classifier (Kinetics-400/600: 400/600 classes; AVA:
80) is dropped, the AVA head being trained new. Everything else is refused.

The input is a dict ``{name: numpy array}`` (the state dict exported to an ``.npz``, see
``scripts/convert_slowfast_weights.py``); the output is the trunk-only ``.npz`` layout
(``slow/...``, ``fast/...``, ``laterals/...``) that ``--pretrained`` reads
(:func:`chainer_yolo_dist.slowfast.models.load_trunk`).
"""
import re

import chainer
import numpy as np

from chainer_yolo_dist.slowfast import networks
from chainer_yolo_dist.slowfast.models import MODELS
from chainer_yolo_dist.slowfast.networks import SlowFast

NAMINGS = ('pyslowfast', 'pytorchvideo')

#: Our BN array -> PyTorch's ``BatchNorm3d`` entry.
BN_ARRAYS = (('gamma', 'weight'), ('beta', 'bias'), ('avg_mean', 'running_mean'),
             ('avg_var', 'running_var'))
#: Our bottleneck link -> (PySlowFast, PyTorchVideo) module inside a residual block.
BLOCK_LINKS = {
    'conv_a': ('branch2.a', 'branch2.conv_a'), 'bn_a': ('branch2.a_bn', 'branch2.norm_a'),
    'conv_b': ('branch2.b', 'branch2.conv_b'), 'bn_b': ('branch2.b_bn', 'branch2.norm_b'),
    'conv_c': ('branch2.c', 'branch2.conv_c'), 'bn_c': ('branch2.c_bn', 'branch2.norm_c'),
    'proj': ('branch1', 'branch1_conv'), 'bn_proj': ('branch1_bn', 'branch1_norm'),
}
#: The classifier of each naming (dropped): PySlowFast's, PyTorchVideo's SlowFast ``Net`` and
#: its Slow-only ``create_resnet`` net.
HEADS = {'pyslowfast': 'head.projection', 'pytorchvideo': 'blocks.6.proj',
         'pytorchvideo/slow': 'blocks.5.proj'}
#: PyTorchVideo's AVA detector (``DetectionBBoxNetwork``): trunk under ``model.``.
PTV_DETECTION = ('model.', 'detection_head.proj')
#: A DataParallel / DDP wrapper's prefix.
DDP_PREFIX = 'module.'


def _module(naming, slow_only, pathway, link_path):
    """The source module of our link ``link_path`` (``conv1``, ``stages/i/b/conv_a``,
    ``laterals/i/bn``...) in pathway ``pathway`` (0 Slow, 1 Fast; None for laterals)."""
    parts = link_path.split('/')
    pysf = naming == 'pyslowfast'
    if parts[0] == 'laterals':
        i, link = int(parts[1]), parts[2]
        if pysf:
            return 's%d_fuse.%s' % (i + 1, {'conv': 'conv_f2s', 'bn': 'bn'}[link])
        return 'blocks.%d.multipathway_fusion.%s' % (
            i, {'conv': 'conv_fast_to_slow', 'bn': 'norm'}[link])
    if parts[0] in ('conv1', 'bn1'):
        if pysf:
            return 's1.pathway%d_stem.%s' % (pathway, 'conv' if parts[0] == 'conv1' else 'bn')
        stem = 'blocks.0.' if slow_only else 'blocks.0.multipathway_blocks.%d.' % pathway
        return stem + ('conv' if parts[0] == 'conv1' else 'norm')
    _, i, b, link = parts  # stages/i/b/link
    i, b = int(i), int(b)
    inner = BLOCK_LINKS[link][0 if pysf else 1]
    if pysf:
        return 's%d.pathway%d_res%d.%s' % (i + 2, pathway, b, inner)
    stage = 'blocks.%d.' % (i + 1) + ('' if slow_only else 'multipathway_blocks.%d.' % pathway)
    return stage + 'res_blocks.%d.%s' % (b, inner)


def name_map(trunk, naming):
    """``{our array name: source name}`` for every array of ``trunk`` (a
    :class:`~chainer_yolo_dist.slowfast.networks.SlowFast`); ``N`` of each BN maps to None."""
    if naming not in NAMINGS:
        raise ValueError('unknown naming %r: choose one of %s' % (naming, ', '.join(NAMINGS)))
    out = {}
    for path, link in sorted(trunk.namedlinks(skipself=True)):
        path = path.lstrip('/')
        if link.__class__.__name__ == 'BatchNormalization':
            arrays = BN_ARRAYS + (('N', None),)
        elif hasattr(link, 'W') and not list(link.children()):
            arrays = (('W', 'weight'),)
        else:
            continue
        top, rest = path.split('/', 1)
        pathway = {'slow': 0, 'fast': 1}.get(top)
        link_path = path if top == 'laterals' else rest
        module = _module(naming, trunk.slow_only, pathway, link_path)
        for ours, theirs in arrays:
            out[path + '/' + ours] = None if theirs is None else module + '.' + theirs
    return out


def detect_naming(names):
    """``(naming, prefix)`` of a state dict's names; ValueError if neither naming fits."""
    names = set(names)
    for naming, prefix, key in (
            ('pyslowfast', '', 's1.pathway0_stem.conv.weight'),
            ('pytorchvideo', '', 'blocks.0.multipathway_blocks.0.conv.weight'),
            ('pytorchvideo', '', 'blocks.0.conv.weight'),
            ('pytorchvideo', PTV_DETECTION[0],
             'model.blocks.0.multipathway_blocks.0.conv.weight')):
        if key in names:
            return naming, prefix
    raise ValueError('neither PySlowFast (s1.pathway0_stem.conv.weight) nor PyTorchVideo '
                     '(blocks.0.multipathway_blocks.0.conv.weight, blocks.0.conv.weight) '
                     'naming: no stem convolution found')


def infer_config(state, naming):
    """:class:`SlowFast` keyword arguments read off the arrays' shapes: ``width`` (Slow stem
    channels), ``blocks`` (residual blocks per stage), ``slow_only``, ``beta_inv`` (Slow / Fast
    stem channels), ``fusion_kernel`` and ``fusion_ratio`` (the first lateral's ``t`` and
    out / in). Temporal kernels, strides and alpha are not in the weights' shapes: the first two
    are fixed by the network (a different kernel shows as a mis-shaped array), alpha is free."""
    if naming == 'pyslowfast':
        slow_stem, fast_stem = 's1.pathway0_stem.conv.weight', 's1.pathway1_stem.conv.weight'
        lateral = 's1_fuse.conv_f2s.weight'
        block = re.compile(r's(\d)\.pathway0_res(\d+)\.')
    else:
        slow_stem = 'blocks.0.multipathway_blocks.0.conv.weight'
        fast_stem = 'blocks.0.multipathway_blocks.1.conv.weight'
        lateral = 'blocks.0.multipathway_fusion.conv_fast_to_slow.weight'
        block = re.compile(r'blocks\.(\d)\.(?:multipathway_blocks\.0\.)?res_blocks\.(\d+)\.')
        if 'blocks.0.conv.weight' in state:
            slow_stem = 'blocks.0.conv.weight'
    offset = 2 if naming == 'pyslowfast' else 1
    counts = [0, 0, 0, 0]
    for name in state:
        m = block.match(name)
        if m and 0 <= int(m.group(1)) - offset < 4:
            i = int(m.group(1)) - offset
            counts[i] = max(counts[i], int(m.group(2)) + 1)
    config = {'width': int(state[slow_stem].shape[0]), 'blocks': tuple(counts),
              'slow_only': fast_stem not in state}
    if not config['slow_only']:
        config['beta_inv'] = config['width'] // int(state[fast_stem].shape[0])
        if lateral not in state:
            raise ValueError('a Fast pathway but no lateral connection (%s)' % lateral)
        w = state[lateral].shape
        config['fusion_kernel'] = int(w[2])
        config['fusion_ratio'] = int(w[0]) // int(w[1])
    if min(counts) < 1:
        raise ValueError('residual blocks per stage %s: a stage has none' % (counts,))
    return config


def convert(state, naming='auto', trunk=None):
    """``state`` ``{name: array}`` (a PyTorch state dict as NumPy) -> ``(arrays, info)``.

    ``arrays``: ``{our name: float32 array}``, every array of the :class:`SlowFast` trunk the
    weights describe (``N`` = 0), or of ``trunk`` if given (a network already built, whose names
    and shapes the weights must then fit; saves building an R50 here). ``info``: ``naming``,
    ``config`` (the SlowFast keyword arguments), ``dropped`` (``{name: shape}`` of the classifier),
    ``n_params`` (scalars converted, BN running statistics excluded), ``n_dropped_params``.
    ValueError with one line on a missing, extra or mis-shaped array.
    """
    state = {k[len(DDP_PREFIX):] if k.startswith(DDP_PREFIX) else k: v
             for k, v in state.items()}
    detected, prefix = detect_naming(state)
    if naming == 'auto':
        naming = detected
    elif naming not in NAMINGS:
        raise ValueError('unknown naming %r: choose auto or one of %s'
                         % (naming, ', '.join(NAMINGS)))
    elif naming != detected:
        raise ValueError('naming %s asked, but the names are %s' % (naming, detected))
    trunk_state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    config = infer_config(trunk_state, naming)
    if prefix:
        head = PTV_DETECTION[1]
    elif naming == 'pytorchvideo' and config['slow_only']:
        head = HEADS['pytorchvideo/slow']
    else:
        head = HEADS[naming]
    if trunk is None:
        trunk = SlowFast(**config)
    names = name_map(trunk, naming)
    arrays, used = {}, set()
    for ours, theirs in names.items():
        link_array = _array_of(trunk, ours)
        if theirs is None:
            arrays[ours] = np.zeros((), dtype=np.int64)  # Chainer BN's N (a Python int 0)
            continue
        if theirs not in trunk_state:
            raise ValueError('missing %s%s (for %s, shape %s)'
                             % (prefix, theirs, ours, link_array.shape))
        value = np.asarray(trunk_state[theirs])
        if value.shape != link_array.shape:
            raise ValueError('%s%s has shape %s, the network (%s) needs %s for %s'
                             % (prefix, theirs, value.shape, _describe(config), link_array.shape,
                                ours))
        arrays[ours] = value.astype(np.float32)
        used.add(prefix + theirs)
    dropped = {}
    for name, value in state.items():
        if name in used or name.endswith('.num_batches_tracked'):
            continue
        if name.startswith(head + '.'):
            dropped[name] = tuple(np.shape(value))
            continue
        raise ValueError('unexpected %s %s: not part of a %s trunk or its classifier %s'
                         % (name, tuple(np.shape(value)), _describe(config), head))
    n_params = sum(a.size for k, a in arrays.items()
                   if not k.endswith(('/avg_mean', '/avg_var', '/N')))
    info = {'naming': naming, 'config': config, 'dropped': dropped, 'n_params': n_params,
            'n_dropped_params': sum(int(np.prod(s)) for s in dropped.values())}
    return arrays, info


def fitting_model(config):
    """The :data:`~chainer_yolo_dist.slowfast.models.MODELS` name whose trunk is ``config``
    (as :func:`infer_config` returns it), or None (e.g. a narrow or an R101 network)."""
    r50 = {'width': networks.R50_WIDTH, 'blocks': networks.R50_BLOCKS, 'slow_only': False,
           'beta_inv': networks.BETA_INV, 'fusion_kernel': networks.FUSION_KERNEL,
           'fusion_ratio': networks.FUSION_RATIO}
    for name, kwargs in MODELS.items():
        want = dict(r50, **kwargs)
        if want['slow_only']:
            want = {k: want[k] for k in ('width', 'blocks', 'slow_only')}
        if want == config:
            return name
    return None


def _array_of(trunk, name):
    """The array ``name`` (``slow/conv1/W``, ``.../bn1/avg_mean``...) of ``trunk``."""
    link = trunk
    *path, attr = name.split('/')
    for part in path:
        link = link[int(part)] if isinstance(link, chainer.ChainList) else getattr(link, part)
    value = getattr(link, attr)
    return np.asarray(getattr(value, 'array', value))


def _describe(config):
    kind = 'Slow-only' if config['slow_only'] else 'SlowFast'
    extra = '' if config['slow_only'] else ', beta 1/%d, lateral %dx1x1' % (
        config['beta_inv'], config['fusion_kernel'])
    return '%s width %d, blocks %s%s' % (kind, config['width'], config['blocks'], extra)


def to_source(trunk, naming, head=None):
    """The inverse: ``trunk``'s arrays as a state dict in ``naming`` (BN ``N`` left out, no
    ``num_batches_tracked``), plus ``head`` ``{name: array}`` if given. For tests."""
    state = {}
    for ours, theirs in name_map(trunk, naming).items():
        if theirs is not None:
            state[theirs] = _array_of(trunk, ours).copy()
    state.update(head or {})
    return state
