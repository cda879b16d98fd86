"""CycleGAN networks: instance norm by hand, reflection padding gradient, shapes, Zhu's totals."""
import chainer
import numpy as np
import pytest
from chainer import gradient_check

from chainer_yolo_dist.cyclegan.networks import (
    INIT_STD, InstanceNormalization, PatchDiscriminator, ResnetGenerator, count_parameters,
    default_n_blocks, receptive_field, reflection_pad)


def test_instance_norm_against_hand_computation():
    # One sample, one channel, the 2x2 plane [[1, 2], [3, 6]]: mean 3, biased variance
    # ((-2)^2 + (-1)^2 + 0 + 3^2) / 4 = 3.5.
    x = np.array([[[[1., 2.], [3., 6.]]]], np.float32)
    y = InstanceNormalization(1)(x).array
    expected = (np.array([[1., 2.], [3., 6.]]) - 3.0) / np.sqrt(3.5 + 1e-5)
    np.testing.assert_allclose(y[0, 0], expected, rtol=1e-5)


def test_instance_norm_uses_each_sample_and_channel_alone():
    rng = np.random.RandomState(0)
    x = (rng.randn(2, 3, 4, 5) * [[[[1.]], [[5.]], [[0.1]]]] + 7).astype(np.float32)
    norm = InstanceNormalization(3)
    for mode in (True, False):  # no running statistics: same in test mode
        with chainer.using_config('train', mode):
            y = norm(x).array
        mean = x.mean(axis=(2, 3), keepdims=True)
        var = x.var(axis=(2, 3), keepdims=True)  # biased, as PyTorch's InstanceNorm2d
        np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5), rtol=1e-4, atol=1e-5)
    assert not list(norm.params())  # affine-free by default (Zhu)


def test_instance_norm_affine_has_gamma_beta():
    norm = InstanceNormalization(2, affine=True)
    norm.gamma.array[:] = [2., 3.]
    norm.beta.array[:] = [1., -1.]
    x = np.arange(16, dtype=np.float32).reshape(1, 2, 2, 4)
    y = norm(x).array
    base = InstanceNormalization(2)(x).array
    np.testing.assert_allclose(y[0, 0], 2 * base[0, 0] + 1, rtol=1e-5)
    np.testing.assert_allclose(y[0, 1], 3 * base[0, 1] - 1, rtol=1e-5)


def test_reflection_pad_forward_and_gradient():
    rng = np.random.RandomState(1)
    x = rng.randn(2, 2, 5, 4)
    y = reflection_pad(x, 2).array
    np.testing.assert_array_equal(y, np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)), 'reflect'))
    # The mirrored border's gradient must reach the pixels it was copied from, which
    # F.pad(mode='reflect') of Chainer 7.8.1 drops.
    gy = rng.randn(2, 2, 9, 8)
    gradient_check.check_backward(lambda v: reflection_pad(v, 2), x, gy, dtype=np.float64,
                                  atol=1e-6, rtol=1e-6)
    gx = rng.randn(2, 2, 5, 4)
    gradient_check.check_double_backward(lambda v: reflection_pad(v, 2), x, gy, gx,
                                         dtype=np.float64, atol=1e-6, rtol=1e-6)


def test_generator_shapes_range_and_parameter_count():
    gen = ResnetGenerator(n_blocks=2, ngf=4)
    x = np.random.RandomState(0).uniform(-1, 1, (2, 3, 16, 24)).astype(np.float32)
    y = gen(x).array
    assert y.shape == (2, 3, 16, 24) and y.dtype == np.float32
    assert np.all(np.abs(y) <= 1)
    with pytest.raises(ValueError, match='multiples of 4'):
        gen(np.zeros((1, 3, 18, 16), np.float32))


def test_paper_sizes_match_zhus_totals():
    # Zhu's PyTorch code prints 11.378 M (resnet_9blocks), 7.838 M (resnet_6blocks) and
    # 2.765 M (basic 70x70 PatchGAN) parameters for ngf = ndf = 64 with instance norm; counted
    # by hand: 9472 + 73856 + 295168 + n_blocks * 1180160 + 295040 + 73792 + 9411, and
    # 3136 + 131200 + 524544 + 2097664 + 8193.
    assert count_parameters(ResnetGenerator(9)) == 11378179
    assert count_parameters(ResnetGenerator(6)) == 7837699
    assert count_parameters(PatchDiscriminator()) == 2764737
    assert default_n_blocks(256) == 9 and default_n_blocks(128) == 6


def test_discriminator_shapes_and_70_pixel_receptive_field():
    dis = PatchDiscriminator(ndf=4)
    y = dis(np.zeros((2, 3, 64, 64), np.float32)).array
    assert y.shape == (2, 1, 6, 6)  # 64 -> 32 -> 16 -> 8 -> 7 -> 6
    assert dis.strides == (2, 2, 2, 1, 1)
    assert all(c.W.shape[2:] == (4, 4) for c in dis.convs)
    assert receptive_field([4] * 5, dis.strides) == 70
    # Measured, not only computed, on the convolution stack (instance normalisation couples all
    # positions of a plane, so it is left out here): perturb one input pixel; the score at (0, 0)
    # reacts only if the pixel lies in its field, input rows/columns -23 .. 46 (the zero padding
    # of 1 at each of the five layers shifts it left), 70 pixels.
    dis = PatchDiscriminator(ndf=2)
    rng = np.random.RandomState(0)
    for conv in dis.convs:  # unit-scale weights so that a far pixel's effect is not tiny
        conv.W.array[:] = rng.randn(*conv.W.shape)

    def convs_only(x):
        h = x
        for conv in dis.convs[:-1]:
            h = chainer.functions.leaky_relu(conv(h), 0.2)
        return dis.convs[-1](h).array[0, 0, 0, 0]

    x = rng.randn(1, 3, 96, 96).astype(np.float32)
    base = convs_only(x)
    seen = []
    for pos in (45, 46, 47, 48):
        x2 = x.copy()
        x2[0, :, pos, pos] += 10.0
        seen.append(bool(abs(convs_only(x2) - base) > 1e-3))
    assert seen == [True, True, False, False]


def test_weights_are_n_0_002_and_biases_zero():
    gen = ResnetGenerator(n_blocks=9, ngf=64)
    w = gen.blocks[0].c1.conv.W.array
    assert abs(w.mean()) < 1e-3 and abs(w.std() - INIT_STD) < 1e-3
    assert not gen.blocks[0].c1.conv.b.array.any()


def test_initial_networks_are_complete_on_the_host_and_equal_for_equal_seeds():
    # Issue 21 (7): every parameter exists (drawn from NumPy's generator seeded by --seed)
    # before the recipe moves the networks to a GPU; none is left for CuPy's generator.
    from chainer_yolo_dist.cyclegan.parts import initial_networks, uninitialised_parameters
    first, second = initial_networks(4, 4, 1, seed=7), initial_networks(4, 4, 1, seed=7)
    assert uninitialised_parameters(first) == []
    assert all(isinstance(p.array, np.ndarray) for p in first.params())
    a, b = dict(first.namedparams()), dict(second.namedparams())
    assert a.keys() == b.keys() and len(a) > 0
    assert all(np.array_equal(a[k].array, b[k].array) for k in a)
    other = dict(initial_networks(4, 4, 1, seed=8).namedparams())
    assert any(not np.array_equal(a[k].array, other[k].array) for k in a if k.endswith('/W'))


def test_a_lazily_shaped_parameter_is_created_on_the_host(monkeypatch):
    # Should a layer ever infer its input width at the first forward, initial_networks runs
    # that forward on the host, so the draw still comes from the seeded NumPy generator.
    import chainer.links as L
    from chainer_yolo_dist.cyclegan import networks, parts
    original = networks.PatchDiscriminator.__init__

    def lazy_init(self, ndf=64, n_layers=3, in_channels=3):
        original(self, ndf, n_layers, in_channels)
        # the last convolution with its input width left to the first forward
        self.convs._children[-1] = None
        lazy = L.Convolution2D(None, 1, 4, 1, 1, initialW=networks._init())
        lazy.name = str(n_layers + 1)
        self.convs._children[-1] = lazy

    monkeypatch.setattr(networks.PatchDiscriminator, '__init__', lazy_init)
    nets = parts.Networks(4, 4, 1)
    assert parts.uninitialised_parameters(nets) == ['/dis_a/convs/4/W', '/dis_b/convs/4/W']
    first, second = parts.initial_networks(4, 4, 1, 5), parts.initial_networks(4, 4, 1, 5)
    assert parts.uninitialised_parameters(first) == []
    w1, w2 = first.dis_a.convs[4].W.array, second.dis_a.convs[4].W.array
    assert w1.shape == (1, 32, 4, 4) and np.array_equal(w1, w2)
