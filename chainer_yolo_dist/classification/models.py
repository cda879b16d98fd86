"""The classifiers a preset or ``--model`` may name, and their construction.

Every network takes a float32 batch ``(N, 3, H, W)``, RGB in ``[0, 1]``, ``H`` and ``W``
multiples of 32, and returns logits ``(N, n_class)`` (see
:mod:`chainer_yolo_dist.classification.darknet` and :mod:`~.cnn11`). The registry lives here,
above the network modules, so that none of them has to register itself when imported.
"""
import numpy as np

from chainer_yolo_dist.classification.cnn11 import CNN11
from chainer_yolo_dist.classification.darknet import Darknet19, Darknet53, SmallDarknet

#: Name -> class of every classifier; each is built as ``cls(n_class=, channels_scale=)``.
#: ``'cnn11'`` is paper 003's 11-convolution CNN (preset cnn11_imagenet_async_2015).
CLASSIFIERS = {'darknet19': Darknet19, 'darknet53': Darknet53, 'darknet_small': SmallDarknet,
               'cnn11': CNN11}


def build_classifier(name, n_class, channels_scale=1, seed=None):
    """The classifier ``name`` (a key of :data:`CLASSIFIERS`) with random weights, drawn from
    ``seed`` if given; logits ``(N, n_class)`` for inputs ``(N, 3, H, W)``.

    Chainer's initialisers draw from NumPy's global generator; it is seeded for the build
    and restored afterwards, so a run's initial weights are a function of its seed. (Under
    ChainerMN, rank 0's weights are broadcast before the first update in any case.)
    """
    try:
        cls = CLASSIFIERS[name]
    except KeyError:
        raise ValueError('unknown classifier %r: choose one of %s'
                         % (name, ', '.join(CLASSIFIERS))) from None
    state = np.random.get_state()
    try:
        if seed is not None:
            np.random.seed(seed % 2 ** 32)
        return cls(n_class=n_class, channels_scale=channels_scale)
    finally:
        np.random.set_state(state)
