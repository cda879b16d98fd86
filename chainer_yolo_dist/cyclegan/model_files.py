"""Reading a trained generator back from a CycleGAN run's files."""
import json
import os

import chainer
import numpy as np

from chainer_yolo_dist.cyclegan.networks import ResnetGenerator

#: Where the generators' arrays start: in ``model.npz``, and in a trainer snapshot.
PREFIXES = ('', 'updater/model:')


def load_generator(path, direction='ab', ngf=None, n_blocks=None):
    """The generator ``gen_<direction>`` of ``path`` (``model.npz`` or ``snapshot_iter_N`` of
    train_cyclegan.py); its width and depth come from the ``config.json`` beside it unless
    given. Raises ValueError naming the file when it holds no such generator."""
    if direction not in ('ab', 'ba'):
        raise ValueError("direction must be 'ab' or 'ba', got %r" % (direction,))
    config = os.path.join(os.path.dirname(os.path.abspath(path)), 'config.json')
    if ngf is None or n_blocks is None:
        if not os.path.isfile(config):
            raise ValueError('%s: no config.json beside it; give --ngf and --n-blocks' % path)
        with open(config) as f:
            cfg = json.load(f)
        ngf = cfg['ngf'] if ngf is None else ngf
        n_blocks = cfg['n_blocks'] if n_blocks is None else n_blocks
    try:
        with np.load(path) as f:
            keys = f.files
    except (OSError, ValueError) as e:
        raise ValueError('%s: not a .npz of train_cyclegan.py (%s)' % (path, e)) from e
    name = 'gen_' + direction
    prefix = next((p + name + '/' for p in PREFIXES
                   if any(k.startswith(p + name + '/') for k in keys)), None)
    if prefix is None:
        raise ValueError('%s: no %s arrays (not a train_cyclegan.py model.npz or snapshot)'
                         % (path, name))
    gen = ResnetGenerator(n_blocks, ngf)
    chainer.serializers.load_npz(path, gen, path=prefix)
    return gen
