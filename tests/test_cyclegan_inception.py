"""Inception-v3 for FID: builds, gives (N, 2048), torchvision's size, loads converted weights.

The network is tested with random weights (none can be downloaded here). The 299x299 case runs
one image (a few seconds on a CPU); the rest use the smallest valid input, 75x75.
"""
import os

import numpy as np
import pytest

from chainer_yolo_dist.cyclegan import inception as I  # noqa: E741
from chainer_yolo_dist.cyclegan.networks import count_parameters


@pytest.fixture(scope='module')
def net():
    return I.InceptionV3()


def test_pool_features_shape_at_299_and_at_the_minimum(net):
    x = np.random.RandomState(0).uniform(-1, 1, (1, 3, 299, 299)).astype(np.float32)
    f = net.features(x)
    assert f.shape == (1, I.FEATURE_DIM) and np.all(np.isfinite(f)) and np.all(f >= 0)
    small = np.random.RandomState(1).uniform(-1, 1, (2, 3, 75, 75)).astype(np.float32)
    assert net.features(small).shape == (2, 2048)
    with pytest.raises(ValueError, match='75'):
        net.features(np.zeros((1, 3, 64, 64), np.float32))


def test_resize_for_inception():
    x = np.random.RandomState(2).uniform(-1, 1, (2, 3, 64, 80)).astype(np.float32)
    y = I.resize_for_inception(x)
    assert y.shape == (2, 3, 299, 299) and y.min() >= -1 and y.max() <= 1


def test_parameter_count_is_torchvisions_trunk(net):
    # torchvision's inception_v3 has 27,161,264 parameters; without the final fc
    # (2048 * 1000 + 1000 = 2,049,000) and the auxiliary classifier (98,560 + 2,459,136 +
    # 769,000 = 3,326,696) that leaves 21,785,568.
    assert count_parameters(net) == 27161264 - 2049000 - 3326696


def test_average_pool_without_padding_in_the_mean():
    x = np.ones((1, 1, 4, 4), np.float32)
    with_pad = I._avg_pool_3x3(x, include_pad=True).array
    without = I._avg_pool_3x3(x, include_pad=False).array
    assert with_pad[0, 0, 0, 0] == pytest.approx(4 / 9.)  # torchvision's default
    np.testing.assert_allclose(without, 1.0)  # pytorch-fid's count_include_pad=False


def test_torch_state_dict_converts_and_loads(net, tmp_path):
    # A state dict with torchvision's names, built from this network's values.
    inverse = {v: k for k, v in I._TORCH_TO_CHAINER.items()}
    state = {}
    for link_name, link in net.namedlinks(skipself=True):
        if hasattr(link, 'avg_mean'):
            base = link_name.strip('/').replace('/', '.')
            state[base + '.weight'] = link.gamma.array
            state[base + '.bias'] = link.beta.array
            state[base + '.running_mean'] = np.random.RandomState(3).rand(link.avg_mean.size)
            state[base + '.running_var'] = link.avg_var + 1.0
            state[base + '.num_batches_tracked'] = np.array(7)
        elif hasattr(link, 'W') and link_name.endswith('conv'):
            state[link_name.strip('/').replace('/', '.') + '.weight'] = link.W.array
    state['fc.weight'] = np.zeros((1008, 2048), np.float32)  # pytorch-fid's 1008 classes
    state['AuxLogits.conv0.conv.weight'] = np.zeros((128, 768, 1, 1), np.float32)
    assert ('bn', 'weight') in inverse.values()
    path = os.path.join(str(tmp_path), 'inception.npz')
    out = I.convert_torch_state(state, path)
    assert 'Mixed_7c/branch_pool/bn/avg_var' in out and 'fc/W' not in out
    loaded = I.InceptionV3(weights=path)  # strict: every parameter and statistic present
    np.testing.assert_array_equal(loaded.Mixed_5b.branch1x1.conv.W.array,
                                  net.Mixed_5b.branch1x1.conv.W.array)
    np.testing.assert_array_equal(loaded.Mixed_7c.branch_pool.bn.avg_var,
                                  net.Mixed_7c.branch_pool.bn.avg_var + 1.0)
    with pytest.raises(ValueError, match='cannot map'):
        I.convert_torch_state({'Mixed_5b.branch1x1.conv.bias': np.zeros(3)})
