"""Classifier files: what a saved Darknet classifier holds, and loading it back.

``scripts/train_darknet.py`` writes ``model.npz`` (the classifier alone) and trainer snapshots;
the detector's ``--pretrained`` and the classifier's own fine-tuning stage read them here.
"""
from chainer_yolo_dist.classification.darknet import DARKNET19_CONVS
from chainer_yolo_dist.classification.models import CLASSIFIERS
from chainer_yolo_dist.core import bn_eps

#: Convolutions of a Darknet-19 trunk (all but the class convolution).
N_DARKNET19_TRUNK = sum(DARKNET19_CONVS)

#: Name, under a file's prefix, of the first trunk convolution: present in every classifier
#: file, and its output width is ``BASE_WIDTH * channels_scale``.
_FIRST_CONV = 'trunk/0/conv/W'


class ClassifierFile(object):
    """What a classifier file holds, read from its array names and shapes alone.

    Attributes:
        path (str): the file.
        prefix (str): where the classifier's arrays start: ``''`` in a ``model.npz``,
            ``'updater/model:main/predictor/'`` in a trainer snapshot of ``train_darknet.py``.
        kind (str): ``'darknet19'``, ``'darknet53'``, ``'darknet_small'`` or ``'cnn11'``.
        n_class (int): classes of the head.
        channels_scale (float): width factor (1 for the paper models).
        head (str or None): CNN11's head, ``'conv'`` or ``'linear'``; None for Darknet.
    """

    def __init__(self, path, prefix, kind, n_class, channels_scale, head=None):
        self.path, self.prefix, self.kind = path, prefix, kind
        self.n_class, self.channels_scale = n_class, channels_scale
        self.head = head

    @property
    def description(self):
        return '%s classifier (channels_scale %g, %d classes)' % (
            {'darknet19': 'Darknet-19', 'darknet53': 'Darknet-53',
             'darknet_small': 'small Darknet',
             'cnn11': 'CNN11 (%s head)' % self.head}[self.kind],
            self.channels_scale, self.n_class)

    def build(self):
        """A classifier of this file's architecture, with random weights."""
        extra = {'head': self.head} if self.kind == 'cnn11' else {}
        return CLASSIFIERS[self.kind](n_class=self.n_class, channels_scale=self.channels_scale,
                                      **extra)


def _not_a_classifier(path, reason):
    return ValueError('%s: not a Darknet-19/Darknet-53/CNN11 classifier file (model.npz or '
                      'trainer snapshot of train_darknet.py): %s' % (path, reason))


def inspect_classifier_file(path):
    """Identifies the Darknet classifier stored in ``path``.

    Accepted: the ``model.npz`` that ``scripts/train_darknet.py`` writes (the classifier
    alone, ``chainer.serializers.save_npz(path, classifier)``), and its trainer snapshots
    (``snapshot_iter_N``: the classifier sits under ``updater/model:main/predictor/``).
    Darknet-19 and Darknet-53 are told apart by their trunk (Darknet-53's has residual
    blocks, ``trunk/2/0/...``), CNN11 (paper 003) by its flat trunk of 10 (1x1 convolution
    head) or 11 (linear head) layers; ``n_class`` comes from the head's bias,
    ``channels_scale`` from the first convolution's width (``BASE_WIDTH``, or CNN11's 64, at
    scale 1).

    Returns:
        :class:`ClassifierFile`.
    Raises:
        ValueError: not a readable npz, or no single Darknet classifier in it; the message
            names the file.
    """
    import numpy as np
    from chainer_yolo_dist.classification.cnn11 import CNN11_WIDTHS
    from chainer_yolo_dist.classification.darknet import BASE_WIDTH, SMALL_WIDTHS
    from chainer_yolo_dist.core.snapshots import npz_problem
    problem = npz_problem(path)  # a file cut short: one line, not zipfile's traceback
    if problem:
        raise ValueError('%s: cannot read a classifier snapshot (npz) from it: %s'
                         % (path, problem))
    try:
        npz = np.load(path)
    except (OSError, ValueError, EOFError) as e:
        raise ValueError('%s: cannot read a classifier snapshot (npz) from it (%s: %s)'
                         % (path, type(e).__name__, e)) from e
    with npz:
        names = set(npz.files)
        prefixes = sorted(k[:-len(_FIRST_CONV)] for k in names
                          if k == _FIRST_CONV or k.endswith('/' + _FIRST_CONV))
        if not prefixes and any('extractor/' in k for k in names):
            raise ValueError('%s: this is a detector (train_yolo.py\'s), not a classifier: '
                             'evaluate it with scripts/eval_yolo.py' % path)
        if not prefixes and any('slow/conv1/' in k for k in names):
            raise ValueError('%s: this is a SlowFast model, not a classifier: '
                             'train_slowfast.py evaluates it (frame mAP, in its run\'s '
                             'metrics.json)' % path)
        if len(prefixes) != 1:
            raise _not_a_classifier(path, 'expected one "%s" array, found %d'
                                    % (_FIRST_CONV, len(prefixes)))
        prefix = prefixes[0]
        if prefix + 'trunk/1/0/conv/W' in names:  # stages are Sequentials: the CPU trunk
            kind = 'darknet_small'
        elif prefix + 'trunk/2/0/conv/W' in names:
            kind = 'darknet53'
        elif prefix + 'trunk/%d/conv/W' % (N_DARKNET19_TRUNK - 1) in names:
            kind = 'darknet19'
        elif (prefix + 'trunk/9/conv/W' in names and prefix + 'trunk/11/conv/W' not in names):
            kind = 'cnn11'
        else:
            raise _not_a_classifier(path, 'the trunk under "%s" is neither Darknet-19 (18 '
                                    'convolutions), Darknet-53 (residual blocks) nor CNN11 (10 '
                                    'or 11 convolutions)' % prefix)
        if prefix + 'head/b' not in names:
            raise _not_a_classifier(path, 'no classifier head "%shead/b"' % prefix)
        n_class = _array(npz, path, prefix + 'head/b').shape[0]
        width = _array(npz, path, prefix + _FIRST_CONV).shape[0]
        head = None
        if kind == 'cnn11':
            head = 'conv' if _array(npz, path, prefix + 'head/W').ndim == 4 else 'linear'
            if (prefix + 'trunk/10/conv/W' in names) != (head == 'linear'):
                raise _not_a_classifier(path, 'a CNN11 trunk of %d layers with a %s head'
                                        % (11 if head == 'conv' else 10, head))
    base = {'darknet_small': SMALL_WIDTHS[0], 'cnn11': CNN11_WIDTHS[0]}.get(kind, BASE_WIDTH)
    return ClassifierFile(path, prefix, kind, int(n_class), width / base, head)


def _array(npz, path, key):
    """``npz[key]``; ValueError naming ``path`` when its data are damaged."""
    import zipfile
    import zlib
    try:
        return npz[key]
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
        raise ValueError('%s: cannot read a classifier snapshot (npz) from it: corrupt array '
                         '%s (%s: %s)' % (path, key, type(e).__name__, e)) from e


def load_classifier(path, classifier=None):
    """Loads the classifier in ``path`` (see :func:`inspect_classifier_file`).

    Args:
        path (str): ``model.npz`` or trainer snapshot of ``train_darknet.py``.
        classifier: a Darknet19/Darknet53 to load into (it must match the file: same
            network, ``n_class`` and ``channels_scale``), or None to build the matching one.
    Returns:
        (classifier, :class:`ClassifierFile`)
    Raises:
        ValueError: the file does not hold a classifier matching ``classifier``.
    """
    import chainer
    info = inspect_classifier_file(path)
    if classifier is None:
        classifier = info.build()
    elif (type(classifier) is not CLASSIFIERS[info.kind] or classifier.n_class != info.n_class
          or classifier.channels_scale != info.channels_scale
          or getattr(classifier, 'head_kind', None) != info.head):
        raise ValueError('%s holds a %s, which cannot be loaded into a %s (channels_scale %g, '
                         '%d classes): give the same --model, --channels-scale and classes'
                         % (path, info.description, type(classifier).__name__,
                            classifier.channels_scale, classifier.n_class))
    bn_eps.restore_eps(path, classifier, info.prefix)  # Darknet's, where a Darknet file began
    chainer.serializers.load_npz(path, classifier, path=info.prefix)
    return classifier, info
