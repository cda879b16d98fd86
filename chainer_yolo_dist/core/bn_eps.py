"""A batch normalisation's epsilon carried in model files.

``chainer.links.BatchNormalization`` keeps ``eps`` as a plain attribute, so ``model.npz`` and
trainer snapshots do not hold it, and a network loaded from them gets ChainerCV's 2e-5 again.
Layers filled from a Darknet file run with Darknet's 1e-5 (``detection/darknet_weights.py``)
and are trained so: :func:`set_eps` makes their ``eps`` a persistent value, which every
``save_npz`` then writes as ``<link path>/eps``, and :func:`restore_eps`, called before
``load_npz`` of such a file into a freshly built network, registers it on the same layers, so
that the load gives it back. A file without ``/eps`` entries changes nothing.
"""
import chainer
import numpy as np


def set_eps(bn, eps):
    """Gives ``bn`` (a BatchNormalization) the epsilon ``eps``, stored in its model files."""
    if 'eps' not in bn._persistent:
        del bn.eps  # a plain attribute until now: add_persistent refuses an existing name
        bn.add_persistent('eps', float(eps))
    else:
        bn.eps = float(eps)


def restore_eps(path, link, prefix=''):
    """Before ``chainer.serializers.load_npz(path, link, path=prefix)``: every
    BatchNormalization under ``link`` whose epsilon ``path`` stores takes it as a persistent
    value (:func:`set_eps`). Returns the number of layers."""
    with np.load(path) as f:
        keys = {k for k in f.files if k.endswith('/eps')}
    found = 0
    for name, child in link.namedlinks(skipself=True):
        key = prefix + name.lstrip('/') + '/eps'
        if isinstance(child, chainer.links.BatchNormalization) and key in keys:
            set_eps(child, child.eps)
            found += 1
    return found
