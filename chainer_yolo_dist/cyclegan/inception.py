"""Inception-v3 in Chainer for FID (paper 002 sec. 4.4 eq. 1 uses Inception pool features).

The layout is torchvision's ``Inception3`` without the auxiliary classifier and the final
fully connected layer, child for child and with the same names (``Conv2d_1a_3x3``,
``Mixed_5b`` ... ``Mixed_7c``; inside each, ``branch1x1`` etc. holding ``conv`` and ``bn``), so
converted PyTorch weights load by name (:func:`convert_torch_state`). ``fid_variant=True`` (the
default) applies pytorch-fid's changes that reproduce TensorFlow's 2015 FID graph: average
pooling inside the Inception blocks ignores the padding (``count_include_pad=False``), and the
last block pools its pooling branch with a max instead of an average. Only with those changes
and pytorch-fid's converted weights (``pt_inception-2015-12-05``) are FIDs comparable with the
literature. No weights can be downloaded here: pass an ``.npz`` made with
:func:`convert_torch_state`; without one the network has random weights and its features mean
nothing (the shapes are still right, which the tests check).

Input: float32 ``(N, 3, H, W)`` RGB in ``[-1, 1]`` (TensorFlow's Inception scaling, which
pytorch-fid applies as ``2 x - 1`` to images in [0, 1]), normally 299x299 (use
:func:`resize_for_inception`); any size from 75x75 up runs. Output: ``(N, 2048)`` pool features.
"""
import chainer
import chainer.functions as F
import chainer.links as L
import numpy as np

#: Side of the images Inception-v3 (and FID) expects.
INPUT_SIZE = 299
#: Smallest side the layer stack accepts (all feature maps at least 1x1).
MIN_INPUT_SIZE = 75
FEATURE_DIM = 2048


class BasicConv2d(chainer.Chain):
    """conv (no bias) -> batch norm (eps 0.001, population statistics) -> ReLU (torchvision)."""

    def __init__(self, in_ch, out_ch, ksize, stride=1, pad=0):
        super(BasicConv2d, self).__init__()
        with self.init_scope():
            self.conv = L.Convolution2D(in_ch, out_ch, ksize, stride, pad, nobias=True)
            self.bn = L.BatchNormalization(out_ch, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def _avg_pool_3x3(x, include_pad):
    # Chainer's average pooling counts the zero padding, as PyTorch's default does.
    h = F.average_pooling_2d(x, 3, 1, 1)
    if include_pad:
        return h
    ones = chainer.backend.get_array_module(x).ones((1, 1) + x.shape[2:], x.dtype)
    return h / F.average_pooling_2d(ones, 3, 1, 1).array  # mean over the real pixels only


def _max_pool(x, ksize, stride, pad=0):
    return F.max_pooling_2d(x, ksize, stride, pad, cover_all=False)  # PyTorch's floor mode


class InceptionA(chainer.Chain):
    """35x35 block: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1 -> 224 + ``pool_features``."""

    def __init__(self, in_ch, pool_features, fid_variant=True):
        super(InceptionA, self).__init__()
        self.include_pad = not fid_variant
        with self.init_scope():
            self.branch1x1 = BasicConv2d(in_ch, 64, 1)
            self.branch5x5_1 = BasicConv2d(in_ch, 48, 1)
            self.branch5x5_2 = BasicConv2d(48, 64, 5, pad=2)
            self.branch3x3dbl_1 = BasicConv2d(in_ch, 64, 1)
            self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, pad=1)
            self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, pad=1)
            self.branch_pool = BasicConv2d(in_ch, pool_features, 1)

    def forward(self, x):
        return F.concat((self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
                         self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                         self.branch_pool(_avg_pool_3x3(x, self.include_pad))))


class InceptionB(chainer.Chain):
    """35 -> 17 reduction: 3x3/2 | 1x1-3x3-3x3/2 | maxpool/2 -> 480 + ``in_ch``."""

    def __init__(self, in_ch):
        super(InceptionB, self).__init__()
        with self.init_scope():
            self.branch3x3 = BasicConv2d(in_ch, 384, 3, stride=2)
            self.branch3x3dbl_1 = BasicConv2d(in_ch, 64, 1)
            self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, pad=1)
            self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x):
        return F.concat((self.branch3x3(x),
                         self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                         _max_pool(x, 3, 2)))


class InceptionC(chainer.Chain):
    """17x17 block with factorised 7x7 convolutions -> 768 channels."""

    def __init__(self, in_ch, c7, fid_variant=True):
        super(InceptionC, self).__init__()
        self.include_pad = not fid_variant
        with self.init_scope():
            self.branch1x1 = BasicConv2d(in_ch, 192, 1)
            self.branch7x7_1 = BasicConv2d(in_ch, c7, 1)
            self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), pad=(0, 3))
            self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), pad=(3, 0))
            self.branch7x7dbl_1 = BasicConv2d(in_ch, c7, 1)
            self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), pad=(3, 0))
            self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), pad=(0, 3))
            self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), pad=(3, 0))
            self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), pad=(0, 3))
            self.branch_pool = BasicConv2d(in_ch, 192, 1)

    def forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for k in range(1, 6):
            d = getattr(self, 'branch7x7dbl_%d' % k)(d)
        return F.concat((self.branch1x1(x), b7, d,
                         self.branch_pool(_avg_pool_3x3(x, self.include_pad))))


class InceptionD(chainer.Chain):
    """17 -> 8 reduction: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool/2 -> 512 + ``in_ch``."""

    def __init__(self, in_ch):
        super(InceptionD, self).__init__()
        with self.init_scope():
            self.branch3x3_1 = BasicConv2d(in_ch, 192, 1)
            self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
            self.branch7x7x3_1 = BasicConv2d(in_ch, 192, 1)
            self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), pad=(0, 3))
            self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), pad=(3, 0))
            self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x):
        d = x
        for k in range(1, 5):
            d = getattr(self, 'branch7x7x3_%d' % k)(d)
        return F.concat((self.branch3x3_2(self.branch3x3_1(x)), d, _max_pool(x, 3, 2)))


class InceptionE(chainer.Chain):
    """8x8 block with split 1x3 / 3x1 outputs -> 2048 channels.

    ``pool``: 'avg' (torchvision; pytorch-fid's ``FIDInceptionE_1`` without the padding in the
    mean) or 'max' (pytorch-fid's ``FIDInceptionE_2``, the last block, as TensorFlow's graph).
    """

    def __init__(self, in_ch, pool='avg', include_pad=True):
        super(InceptionE, self).__init__()
        self.pool, self.include_pad = pool, include_pad
        with self.init_scope():
            self.branch1x1 = BasicConv2d(in_ch, 320, 1)
            self.branch3x3_1 = BasicConv2d(in_ch, 384, 1)
            self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), pad=(0, 1))
            self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), pad=(1, 0))
            self.branch3x3dbl_1 = BasicConv2d(in_ch, 448, 1)
            self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, pad=1)
            self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), pad=(0, 1))
            self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), pad=(1, 0))
            self.branch_pool = BasicConv2d(in_ch, 192, 1)

    def forward(self, x):
        b3 = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        if self.pool == 'max':
            p = _max_pool(x, 3, 1, 1)
        else:
            p = _avg_pool_3x3(x, self.include_pad)
        return F.concat((self.branch1x1(x), self.branch3x3_2a(b3), self.branch3x3_2b(b3),
                         self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d), self.branch_pool(p)))


class InceptionV3(chainer.Chain):
    """Inception-v3 trunk: ``(N, 3, H, W)`` in [-1, 1] -> ``(N, 2048)`` average-pooled features.

    Args:
        fid_variant (bool): pytorch-fid's TensorFlow-compatible pooling (module doc).
        weights (str): optional ``.npz`` from :func:`convert_torch_state`, loaded strictly.

    Always run in test mode (population statistics of batch normalisation); :meth:`features`
    sets that itself.
    """

    def __init__(self, fid_variant=True, weights=None):
        super(InceptionV3, self).__init__()
        self.fid_variant = fid_variant
        with self.init_scope():
            self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
            self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
            self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, pad=1)
            self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
            self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
            self.Mixed_5b = InceptionA(192, 32, fid_variant)
            self.Mixed_5c = InceptionA(256, 64, fid_variant)
            self.Mixed_5d = InceptionA(288, 64, fid_variant)
            self.Mixed_6a = InceptionB(288)
            self.Mixed_6b = InceptionC(768, 128, fid_variant)
            self.Mixed_6c = InceptionC(768, 160, fid_variant)
            self.Mixed_6d = InceptionC(768, 160, fid_variant)
            self.Mixed_6e = InceptionC(768, 192, fid_variant)
            self.Mixed_7a = InceptionD(768)
            self.Mixed_7b = InceptionE(1280, 'avg', include_pad=not fid_variant)
            self.Mixed_7c = InceptionE(2048, 'max' if fid_variant else 'avg',
                                       include_pad=not fid_variant)
        if weights is not None:
            chainer.serializers.load_npz(weights, self)

    def forward(self, x):
        if x.ndim != 4 or x.shape[1] != 3 or min(x.shape[2:]) < MIN_INPUT_SIZE:
            raise ValueError('InceptionV3 expects (N, 3, H, W) with H, W >= %d, got shape %r'
                             % (MIN_INPUT_SIZE, tuple(x.shape)))
        h = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        h = _max_pool(h, 3, 2)
        h = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(h))
        h = _max_pool(h, 3, 2)
        for name in ('Mixed_5b', 'Mixed_5c', 'Mixed_5d', 'Mixed_6a', 'Mixed_6b', 'Mixed_6c',
                     'Mixed_6d', 'Mixed_6e', 'Mixed_7a', 'Mixed_7b', 'Mixed_7c'):
            h = getattr(self, name)(h)
        return F.mean(h, axis=(2, 3))

    def features(self, x):
        """``(N, 2048)`` NumPy/CuPy features of ``x`` (test mode, no graph)."""
        with chainer.using_config('train', False), chainer.no_backprop_mode():
            return self.forward(x).array


def resize_for_inception(x, size=INPUT_SIZE):
    """Bilinear resize of ``(N, 3, H, W)`` to ``size`` x ``size`` (pytorch-fid resizes too)."""
    if x.shape[2:] == (size, size):
        return x
    return F.resize_images(x, (size, size), align_corners=False).array


# torchvision / pytorch-fid parameter names -> Chainer's, per layer kind.
_TORCH_TO_CHAINER = {('conv', 'weight'): 'W', ('bn', 'weight'): 'gamma',
                     ('bn', 'bias'): 'beta', ('bn', 'running_mean'): 'avg_mean',
                     ('bn', 'running_var'): 'avg_var'}
# Parts of a torchvision/pytorch-fid state dict that this trunk has no use for.
_TORCH_UNUSED_PREFIXES = ('fc.', 'AuxLogits.')


def convert_torch_state(state, out_path=None):
    """Maps a torchvision / pytorch-fid Inception-v3 ``state_dict`` onto this network's names.

    Args:
        state (dict): parameter name -> NumPy array, e.g. ``{k: v.numpy() for k, v in
            torch.load('pt_inception-2015-12-05-6726825d.pth').items()}`` (done where PyTorch
            is installed; this package does not need it).
        out_path (str): if given, the result is saved there with ``numpy.savez`` for
            ``InceptionV3(weights=out_path)``.

    Returns:
        dict: Chainer name (``Mixed_5b/branch1x1/conv/W``) -> array, with every
        batch-normalisation count ``N`` set to 0 (Chainer's only extra persistent value).
        Raises ValueError on a name it cannot place.
    """
    out = {}
    for name, value in state.items():
        if name.startswith(_TORCH_UNUSED_PREFIXES) or name.endswith('num_batches_tracked'):
            continue
        parts = name.split('.')
        key = tuple(parts[-2:])
        if key not in _TORCH_TO_CHAINER:
            raise ValueError('cannot map Inception-v3 parameter %r' % (name,))
        out['/'.join(parts[:-1] + [_TORCH_TO_CHAINER[key]])] = np.asarray(value, np.float32)
        if key[0] == 'bn':
            out['/'.join(parts[:-1] + ['N'])] = np.asarray(0)
    if out_path is not None:
        np.savez(out_path, **out)
    return out
