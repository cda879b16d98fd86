"""CycleGAN losses on hand-checkable cases: constant 'networks' with known outputs."""
import chainer
import chainer.functions as F
import numpy as np

from chainer_yolo_dist.cyclegan.losses import (
    LAMBDA_CYCLE, LAMBDA_ID, discriminator_loss, generator_losses, lsgan_loss)


def test_weights_are_the_papers():
    assert LAMBDA_CYCLE == 10.0 and LAMBDA_ID == 5.0  # paper 002 appendix A.1.2


def test_lsgan_loss_by_hand():
    score = np.array([[[[0.5, 2.0], [1.0, -1.0]]]], np.float32)
    # real: ((-0.5)^2 + 1^2 + 0 + (-2)^2) / 4 = 5.25 / 4; fake: (0.25 + 4 + 1 + 1) / 4
    np.testing.assert_allclose(lsgan_loss(score, True).array, 5.25 / 4)
    np.testing.assert_allclose(lsgan_loss(score, False).array, 6.25 / 4)


def test_discriminator_loss_is_half_the_sum():
    dis = lambda x: x * 2.0  # noqa: E731  scores = 2 * pixels
    real = np.full((1, 1, 2, 2), 0.5, np.float32)   # scores 1: real loss 0
    fake = np.full((1, 1, 2, 2), 0.25, np.float32)  # scores 0.5: fake loss 0.25
    np.testing.assert_allclose(discriminator_loss(dis, real, fake).array, 0.5 * 0.25)


def test_generator_losses_by_hand():
    # G_ab adds 0.1, G_ba subtracts 0.3; both discriminators score an image by its pixels.
    gen_ab = chainer.Sequential(lambda x: x + 0.1)
    gen_ba = chainer.Sequential(lambda x: x - 0.3)
    dis = lambda x: x  # noqa: E731
    a = np.full((1, 3, 4, 4), 0.2, np.float32)
    b = np.full((1, 3, 4, 4), -0.4, np.float32)
    reporter = chainer.reporter.Reporter()
    observed = {}
    with reporter.scope(observed):
        out = generator_losses(gen_ab, gen_ba, dis, dis, a, b)
    # fake_b = 0.3 -> (0.3 - 1)^2 = 0.49; fake_a = -0.7 -> (-1.7)^2 = 2.89
    np.testing.assert_allclose(out['loss_gan'].array, 0.49 + 2.89, rtol=1e-6)
    # Both cycles are off by 0.2: 10 * (0.2 + 0.2)
    np.testing.assert_allclose(out['loss_cycle'].array, 4.0, rtol=1e-6)
    # Identity: |G_ab(b) - b| = 0.1, |G_ba(a) - a| = 0.3: 5 * 0.4
    np.testing.assert_allclose(out['loss_id'].array, 2.0, rtol=1e-6)
    np.testing.assert_allclose(out['loss'].array, 3.38 + 4.0 + 2.0, rtol=1e-6)
    for key in ('gen/loss', 'gen/loss_gan', 'gen/loss_cycle', 'gen/loss_id'):
        assert key in observed
    np.testing.assert_allclose(float(observed['gen/loss_cycle'].array), 4.0, rtol=1e-6)


def test_identity_weight_zero_skips_the_identity_pass():
    calls = []
    gen = chainer.Sequential(lambda x: calls.append(1) or x)
    a = np.zeros((1, 3, 4, 4), np.float32)
    out = generator_losses(gen, gen, F.identity, F.identity, a, a, lambda_id=0)
    assert float(out['loss_id'].array) == 0.0 and len(calls) == 4  # 2 translations, 2 cycles


def test_gradients_reach_both_generators():
    gen_ab = chainer.links.Bias(shape=(3, 1, 1))
    gen_ba = chainer.links.Bias(shape=(3, 1, 1))
    a = np.full((2, 3, 4, 4), 0.2, np.float32)
    b = np.full((2, 3, 4, 4), -0.1, np.float32)
    out = generator_losses(gen_ab, gen_ba, F.identity, F.identity, a, b)
    gen_ab.cleargrads()
    gen_ba.cleargrads()
    out['loss'].backward()
    assert np.abs(gen_ab.b.grad).sum() > 0 and np.abs(gen_ba.b.grad).sum() > 0
