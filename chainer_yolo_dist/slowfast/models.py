"""The action detectors a preset or ``--model`` may name, and their pretrained trunk files.

=================  ==========================================================================
name               network
=================  ==========================================================================
slowfast_r50       SlowFast R50 (paper 004 sec. 3.3: tau 8, alpha 4, beta 8), AVA layout
slowfast_r50_k7    the same with 7x1x1 laterals (PySlowFast ``FUSION_KERNEL_SZ: 7``: its 8x8 and
                   AVA 32x2 configs, and the published SLOWFAST_8x8_R50 Kinetics weights)
slow_r50           the Slow-only R50 of the same Slow pathway (the SlowFast paper's baseline)
slowfast_narrow    the SlowFast layout at width 8, one bottleneck per stage (CPU demo)
slow_narrow        its Slow-only twin (CPU demo)
=================  ==========================================================================

Every detector is :class:`~chainer_yolo_dist.slowfast.head.ActionDetector`: the trunk and the
AVA head (RoIAlign, max pooling, dropout 0.5, linear, sigmoid).
"""
import chainer
import numpy as np

from chainer_yolo_dist.slowfast.head import ActionDetector
from chainer_yolo_dist.slowfast.networks import SlowFast

#: name -> keyword arguments of :class:`~chainer_yolo_dist.slowfast.networks.SlowFast`.
MODELS = {
    'slowfast_r50': {},
    'slowfast_r50_k7': {'fusion_kernel': 7},
    'slow_r50': {'slow_only': True},
    'slowfast_narrow': {'width': 8, 'blocks': (1, 1, 1, 1)},
    'slow_narrow': {'width': 8, 'blocks': (1, 1, 1, 1), 'slow_only': True},
}


def build_detector(name, n_class, dropout=None):
    """The :class:`ActionDetector` ``name`` for ``n_class`` actions (``dropout``: the head's
    ratio, default 0.5)."""
    if name not in MODELS:
        raise ValueError('unknown action detector %r: choose one of %s'
                         % (name, ', '.join(MODELS)))
    head = {} if dropout is None else {'dropout': dropout}
    return ActionDetector(SlowFast(**MODELS[name]), n_class, **head)


def uninitialised_parameters(link):
    """Paths of ``link``'s parameters that have no array yet (shaped at the first forward)."""
    return [path for path, param in link.namedparams() if param.array is None]


def materialise_parameters(detector, size=32):
    """Gives every parameter of ``detector`` (on the host) its array before it moves to a device.

    The detectors of :data:`MODELS` name every input size, so their parameters are drawn at
    construction, on the host, from NumPy's generator (seeded by ``--seed``); then this does
    nothing. A parameter left without an array (a link built with ``in_size=None``) would be
    drawn at the first forward on the GPU, from CuPy's generator, so the same seed would give
    other weights there: such parameters are created here by one forward of a zero clip
    ``(1, 3, alpha, size, size)`` with one box, in test mode and without backprop (no batch
    statistics change, no dropout mask is drawn). Returns the paths it created.
    """
    missing = uninitialised_parameters(detector)
    if not missing:
        return []
    if detector.xp is not np:
        raise ValueError('parameters %s have no array and the detector is not on the host: '
                         'create them before moving it to a device' % ', '.join(missing))
    clip = np.zeros((1, 3, detector.trunk.alpha, size, size), chainer.get_dtype())
    box = np.array([[0, 0, size, size]], np.float32)
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        detector(clip, box, np.zeros(1, np.int32))
    still = uninitialised_parameters(detector)
    if still:
        raise ValueError('parameters %s are not created by a forward pass' % ', '.join(still))
    return missing


#: Where a detector's trunk starts in the files :func:`load_trunk` reads.
TRUNK_PREFIXES = ('', 'trunk/', 'updater/model:main/detector/trunk/')


def trunk_prefix(path):
    """The prefix of the trunk's arrays in ``path``: a trunk-only ``.npz`` (``slow/...``), a
    ``model.npz`` of this package (``trunk/...``) or a trainer snapshot; ValueError naming the
    file otherwise."""
    from chainer_yolo_dist.core.snapshots import npz_problem
    problem = npz_problem(path)  # a file cut short: one line, not zipfile's traceback
    if problem:
        raise ValueError('%s: not a readable .npz file: %s' % (path, problem))
    try:
        with np.load(path) as f:
            keys = f.files
    except (OSError, ValueError) as e:
        raise ValueError('%s: not a readable .npz file (%s)' % (path, e)) from e
    for prefix in reversed(TRUNK_PREFIXES):
        if any(k.startswith(prefix + 'slow/conv1/') for k in keys):
            return prefix
    raise ValueError('%s: no SlowFast trunk in it (no slow/conv1/ arrays under any of the '
                     'prefixes %s)' % (path, ', '.join(repr(p) for p in TRUNK_PREFIXES)))


def load_trunk(path, detector):
    """Loads the trunk of ``detector`` from ``path`` (e.g. Kinetics-600 weights converted to
    this layout, paper 004 sec. 3.3); the head stays as initialised. A file of another
    network (width, depth, pathways) raises ValueError naming the file and the array."""
    prefix = trunk_prefix(path)
    try:
        chainer.serializers.load_npz(path, detector.trunk, path=prefix)
    except (KeyError, ValueError) as e:
        raise ValueError('%s: does not fit the trunk being trained: %s'
                         % (path, e.args[0] if e.args else e)) from e
    return prefix
