"""CycleGAN's objective as Zhu et al.'s code computes it (paper 002 appendix A.1 names the three
terms and their weights; the loss forms are Zhu et al.'s implementation's, which it follows).

Naming: ``gen_ab`` maps domain A to B (Zhu's ``netG_A``), ``gen_ba`` maps B to A (``netG_B``);
``dis_b`` tells real B from ``gen_ab``'s output (Zhu's ``netD_A``), ``dis_a`` real A from
``gen_ba``'s output (``netD_B``).

- Adversarial term: least squares (LSGAN, Zhu's default ``gan_mode='lsgan'``, not stated in
  paper 002): the mean
  squared difference between a discriminator's patch scores and the target 1 (real) or 0 (fake).
- Cycle consistency: ``lambda_cycle * (|G_ba(G_ab(a)) - a|_1 + |G_ab(G_ba(b)) - b|_1)``, each a
  mean over pixels, ``lambda_cycle = 10`` (paper 002 A.1.2).
- Identity: ``lambda_id * (|G_ab(b) - b|_1 + |G_ba(a) - a|_1)``, ``lambda_id = 5`` (paper 002
  A.1.2; Zhu writes it as 0.5 x the cycle weight).
- Discriminator: ``0.5 * (mse(D(real), 1) + mse(D(fake), 0))`` (Zhu's code halves it).

Reported values are the weighted terms, as Zhu's code prints them.
"""
import chainer
import chainer.functions as F

#: Paper 002 appendix A.1.2 (Zhu et al. sec. 7.1): cycle-consistency weight.
LAMBDA_CYCLE = 10.0
#: Paper 002 appendix A.1.2: identity-mapping weight, 0.5 x ``LAMBDA_CYCLE``.
LAMBDA_ID = 5.0


def lsgan_loss(score, real):
    """Mean of ``(score - t)^2`` with ``t = 1`` if ``real`` else 0; ``score`` any shape."""
    target = chainer.backend.get_array_module(score).full(score.shape, 1.0 if real else 0.0,
                                                          dtype=score.dtype)
    return F.mean_squared_error(score, target)


def discriminator_loss(dis, real, fake):
    """``0.5 * (lsgan(D(real), 1) + lsgan(D(fake), 0))``; ``fake`` should carry no graph."""
    return 0.5 * (lsgan_loss(dis(real), True) + lsgan_loss(dis(fake), False))


def l1(x, y):
    """Mean absolute difference over all elements (PyTorch ``L1Loss``)."""
    return F.mean_absolute_error(x, y)


def generator_losses(gen_ab, gen_ba, dis_a, dis_b, a, b, lambda_cycle=LAMBDA_CYCLE,
                     lambda_id=LAMBDA_ID):
    """All generator terms for one batch pair; reports them and returns them.

    Args:
        gen_ab, gen_ba: generators A->B and B->A, ``(N, 3, H, W) -> (N, 3, H, W)``.
        dis_a, dis_b: discriminators of domain A and B (raw patch scores).
        a, b: arrays ``(N, 3, H, W)`` in ``[-1, 1]``; A and B may differ in N only if the
            networks allow it (the paper uses N = 1 each).
        lambda_cycle, lambda_id (float): weights; ``lambda_id = 0`` skips the identity pass.

    Returns:
        dict: ``loss`` (the total to minimise), ``loss_gan``, ``loss_cycle``, ``loss_id``
        (Variables) and ``fake_a``, ``fake_b`` (the translated images, Variables with graph).
        ``gen/loss``, ``gen/loss_gan``, ``gen/loss_cycle``, ``gen/loss_id`` are reported.
    """
    fake_b = gen_ab(a)
    fake_a = gen_ba(b)
    loss_gan = lsgan_loss(dis_b(fake_b), True) + lsgan_loss(dis_a(fake_a), True)
    loss_cycle = lambda_cycle * (l1(gen_ba(fake_b), a) + l1(gen_ab(fake_a), b))
    if lambda_id:
        loss_id = lambda_id * (l1(gen_ab(b), b) + l1(gen_ba(a), a))
    else:
        loss_id = chainer.Variable(gen_ab.xp.zeros((), a.dtype))
    loss = loss_gan + loss_cycle + loss_id
    chainer.report({'gen/loss': loss, 'gen/loss_gan': loss_gan, 'gen/loss_cycle': loss_cycle,
                    'gen/loss_id': loss_id})
    return {'loss': loss, 'loss_gan': loss_gan, 'loss_cycle': loss_cycle, 'loss_id': loss_id,
            'fake_a': fake_a, 'fake_b': fake_b}
