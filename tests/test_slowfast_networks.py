"""SlowFast R50 trunk: layout, parameter count and FLOPs against the published figures."""
import numpy as np
import pytest

import chainer

from chainer_yolo_dist.slowfast.networks import (
    SlowFast, count_parameters, slow_r50, slowfast_r50)

# Published figures of the Kinetics-400 classifiers (400-way linear head, res5 stride 2), from the
# PyTorchVideo model zoo (FAIR; the same architectures as PySlowFast): parameters (M) and
# GFLOPs (multiply-adds) per view. SlowFast paper Table 2/5a lists 36.1 / 65.7 / 27.3 GFLOPs.
PUBLISHED = {
    # name: (kwargs, params M, GFLOPs)
    'SlowFast 4x16 R50': (dict(alpha=8, fusion_kernel=5), 34.48, 36.69),
    'SlowFast 8x8 R50': (dict(alpha=4, fusion_kernel=7), 34.57, 65.71),
    'Slow 4x16 R50': (dict(alpha=8, slow_only=True), 32.45, 27.55),
    'Slow 8x8 R50': (dict(alpha=4, slow_only=True), 32.45, 54.52),
}
KINETICS_CLASSES = 400


@pytest.fixture(scope='module')
def r50():
    return slowfast_r50()


def test_lateral_and_stage_channels_at_paper_configuration(r50):
    # Slow res2..res5 first blocks read their own channels plus 2 * beta * C from the Fast side.
    first = [stage[0].conv_a.W.shape[1] for stage in r50.slow.stages]
    assert first == [64 + 16, 256 + 64, 512 + 128, 1024 + 256]
    assert [stage[0].conv_a.W.shape[1] for stage in r50.fast.stages] == [8, 32, 64, 128]
    assert [len(s) for s in r50.slow.stages] == [3, 4, 6, 3]
    # Temporal kernels: Slow 1,1,3,3 (res2..res5), Fast 3 throughout; conv1 1x7x7 / 5x7x7.
    assert [s[0].conv_a.ksize[0] for s in r50.slow.stages] == [1, 1, 3, 3]
    assert [s[0].conv_a.ksize[0] for s in r50.fast.stages] == [3, 3, 3, 3]
    assert r50.slow.conv1.ksize == (1, 7, 7) and r50.fast.conv1.ksize == (5, 7, 7)
    for lat, c in zip(r50.laterals, [8, 32, 64, 128]):
        assert lat.conv.ksize == (5, 1, 1) and lat.conv.stride == (4, 1, 1)
        assert lat.conv.W.shape[:2] == (2 * c, c)
    # AVA layout: res5 keeps the resolution (stride 1) and dilates its 3x3 convolutions by 2.
    assert r50.slow.stages[3][0].conv_b.stride == (1, 1, 1)
    assert r50.slow.stages[3][0].conv_b.dilate == (1, 2, 2)
    assert r50.spatial_stride == 16 and r50.out_channels == [2048, 256]


def test_forward_shapes_at_paper_configuration(r50):
    x = np.random.RandomState(0).uniform(-1, 1, (1, 3, 8, 64, 64)).astype(np.float32)
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        slow, fast = r50(x)
    assert slow.shape == (1, 2048, 2, 4, 4)  # T / alpha frames, H / 16
    assert fast.shape == (1, 256, 8, 4, 4)
    assert r50.feature_shapes(8, 64, 64) == [(2048, 2, 4, 4), (256, 8, 4, 4)]


@pytest.mark.parametrize('name', sorted(PUBLISHED))
def test_parameters_and_flops_match_published(name):
    kwargs, params_m, gflops = PUBLISHED[name]
    net = SlowFast(res5_stride=2, res5_dilation=1, **kwargs)
    head = sum(net.out_channels) * KINETICS_CLASSES
    n_param = count_parameters(net) + head + KINETICS_CLASSES
    assert abs(n_param / 1e6 - params_m) < 0.006, n_param
    # Published FLOPs are counted at the 256 x 256 test crop with 32 Fast frames (8 x 8: Slow 8
    # frames, alpha 4; 4 x 16: Slow 4 frames, alpha 8). Convolutions + the linear layer only.
    macs = net.macs(32, 256, 256)[0] + head
    assert abs(macs / 1e9 - gflops) / gflops < 0.02, macs / 1e9


def test_fast_pathway_reaches_slow_output_through_laterals_only_in_slowfast():
    # Frames 1, 2, 3 of each group of alpha are seen by the Fast pathway only.
    rng = np.random.RandomState(1)
    x = rng.uniform(-1, 1, (1, 3, 8, 32, 32)).astype(np.float32)
    x2 = x.copy()
    x2[:, :, 1::4] += 1.0
    for slow_only, changes in ((False, True), (True, False)):
        net = SlowFast(width=8, blocks=(1, 1, 1, 1), slow_only=slow_only, zero_init=False)
        with chainer.using_config('train', False), chainer.no_backprop_mode():
            a, b = net(x)[0].array, net(x2)[0].array
        assert a.shape == (1, 256, 2, 2, 2)
        assert (np.abs(a - b).max() > 1e-4) == changes


def test_slow_only_is_the_slow_pathway_without_laterals():
    sf, so = SlowFast(width=16, blocks=(1, 1, 1, 1)), slow_r50(width=16, blocks=(1, 1, 1, 1))
    fast_and_laterals = count_parameters(sf.fast) + count_parameters(sf.laterals)
    extra_inputs = sum(s[0].conv_a.W[:, -2 * c:].size + s[0].proj.W[:, -2 * c:].size
                       for s, c in zip(sf.slow.stages, [2, 8, 16, 32]))
    assert count_parameters(sf) - fast_and_laterals - extra_inputs == count_parameters(so)


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError, match='beta_inv'):
        SlowFast(width=12, beta_inv=8)
    with pytest.raises(ValueError, match='alpha'):
        SlowFast(width=8, blocks=(1, 1, 1, 1)).split(np.zeros((1, 3, 6, 32, 32), np.float32))
