"""One CycleGAN training step for Chainer's trainer, and the learning-rate rules of paper 002.

:class:`CycleGANUpdater` does what Zhu's ``optimize_parameters`` does: translate both ways,
update both generators on the generator objective (:func:`losses.generator_losses`), then update
both discriminators on real images against fakes drawn through an :class:`ImagePool`. Each
network has its own optimizer; with ChainerMN multi-node optimizers every update averages that
network's gradients over all ranks (paper 002 sec. 3.2: Horovod's ``DistributedOptimizer``
there), so ranks that start equal stay equal while each trains on its own images.

Learning rates (paper 002 appendix A.1.2, Zhu et al.'s schedule): Adam, alpha 2e-4, constant
for 100 epochs then linearly over 100 more (:func:`linear_decay`); beta1 0.5 and the decay
reaching 0 are Zhu et al.'s implementation's (paper 002 sec. 3.1 follows it), not printed in
the paper; the process
count does not scale it (paper 002 sec. 3.2). The discriminators' rate: see
:func:`discriminator_lr`.
"""
import math

import chainer
import numpy as np
from chainer.dataset import convert

from chainer_yolo_dist.core import finite
from chainer_yolo_dist.cyclegan import data, losses
from chainer_yolo_dist.cyclegan.image_pool import POOL_SIZE, ImagePool

#: Adam step size (paper 002 appendix A.1.2) and first-moment decay (Zhu et al.'s
#: implementation, which paper 002 sec. 3.1 follows).
ADAM_ALPHA = 2e-4
ADAM_BETA1 = 0.5
#: Paper 002 appendix A.1.2: epochs at the initial rate, then epochs of linear decay.
CONSTANT_EPOCHS = 100
DECAY_EPOCHS = 100
#: How the discriminators' rate relates to the generators' (see :func:`discriminator_lr`).
DIS_LR_RULES = ('half', 'equal')

NETWORKS = ('gen_ab', 'gen_ba', 'dis_a', 'dis_b')


def linear_decay(epoch, constant_epochs=CONSTANT_EPOCHS, decay_epochs=DECAY_EPOCHS):
    """Rate factor for the epoch with 0-based index ``epoch``: 1, then linearly towards 0.

    Zhu's ``lambda_rule``: ``1 - max(0, epoch + 1 - constant_epochs) / (decay_epochs + 1)``,
    stepped once per epoch (a fractional ``epoch`` is floored). Epochs ``0 .. 99`` train at
    factor 1, epoch 100 at 100/101, ..., epoch 199 (the last) at 1/101; the factor reaches 0 at
    epoch 200, where training ends. This is the 2019 code the paper ran (PyTorch 1.0), which
    steps the scheduler at the end of each epoch.
    """
    e = math.floor(epoch)
    if e < 0:
        raise ValueError('epoch must be >= 0, got %r' % (epoch,))
    return max(0.0, 1.0 - max(0, e + 1 - constant_epochs) / float(decay_epochs + 1))


def discriminator_lr(gen_lr, rule='half'):
    """The discriminators' Adam step size given the generators' ``gen_lr``.

    - ``'half'`` (default, paper 002 appendix A.1.2 reading): "the discriminator's learning
      rate is 1/2 of the generator's", so ``gen_lr / 2``.
    - ``'equal'``: Zhu's code, where both rates are equal and the "slower discriminator" of Zhu
      et al. sec. 7.1 is the factor 0.5 on the discriminator loss (kept in both rules, see
      :func:`losses.discriminator_loss`). Under Adam, scaling a loss hardly changes the steps,
      so the two rules really differ; paper 002 states the first.
    """
    if rule not in DIS_LR_RULES:
        raise ValueError('dis_lr_rule must be one of %s, got %r' % (DIS_LR_RULES, rule))
    return gen_lr / 2.0 if rule == 'half' else gen_lr


@chainer.dataset.converter()
def pair_converter(batch, device=None):
    """``[(a, b), ...]`` of ``(3, H, W)`` images -> ``(a (N, 3, H, W), b (N, 3, H, W))``,
    float32 in [-1, 1] on ``device`` (a ``chainer.backend.Device``; None: where they are).

    Images come as the training data stores them (:func:`data.stored_form`): uint8 in
    [0, 255] cross to the device as uint8 (a quarter of float32's bytes) and are scaled there
    by :func:`data.scale_to_network`, the same float32 operations as on the host, so the
    batch is bitwise what converting first would give; float32 images are already in
    [-1, 1] and are stacked as they are.
    """
    return tuple(_network_batch([pair[k] for pair in batch], device) for k in (0, 1))


def _network_batch(images, device):
    """One domain's images (uint8 [0, 255] or float32 [-1, 1], each ``(3, H, W)``) ->
    float32 ``(N, 3, H, W)`` in [-1, 1] on ``device``."""
    if device is None:
        device = chainer.backend.CpuDevice()
    if all(x.dtype == np.uint8 for x in images):
        return data.scale_to_network(device.send(np.stack(images)))
    # Float images (resized or rendered: no lossless uint8 form), or a mixed batch.
    return device.send(np.stack([data.to_network(x) for x in images]))


class CycleGANUpdater(chainer.training.StandardUpdater):
    """Generators, then discriminators, once per batch of ``(a, b)`` pairs.

    Args:
        iterator: yields lists of ``(a, b)`` pairs, ``a`` and ``b`` ``(3, H, W)``, float32 in
            ``[-1, 1]`` or uint8 in ``[0, 255]`` (:func:`pair_converter`; one pair per
            process per step in the paper).
        optimizers (dict): ``gen_ab``, ``gen_ba``, ``dis_a``, ``dis_b``, each set up on its
            network (plain or ChainerMN multi-node optimizers).
        lambda_cycle, lambda_id (float): loss weights (10 and 5, paper 002 appendix A.1.2).
        pool_size (int): history of fakes per discriminator (50, Zhu); each pool keeps its
            images on its discriminator's device.
        pool_seed (int): seed of the two pools (A's uses ``pool_seed``, B's ``pool_seed + 1``);
            give each rank its own, e.g. ``seed * 1000 + 2 * rank``.
        converter, device: as for ``StandardUpdater``.

    Reports ``gen/loss``, ``gen/loss_gan``, ``gen/loss_cycle``, ``gen/loss_id``,
    ``dis_a/loss``, ``dis_b/loss`` (this rank's values). :meth:`serialize` adds both pools to
    what ``StandardUpdater`` saves.

    Divergence: the generators' total loss is checked before the generators' update and the
    discriminators' sum before theirs; a NaN or infinite one raises
    :class:`~chainer_yolo_dist.core.finite.NonFiniteLossError` naming the update's number
    (1 for the first) and the loss's parts, which ends the run (``core/mpi``) before that
    update. (A discriminator loss that alone diverges is found after the generators' update
    of the same iteration, made with their finite loss; no file is written in between.)
    """

    def __init__(self, iterator, optimizers, lambda_cycle=losses.LAMBDA_CYCLE,
                 lambda_id=losses.LAMBDA_ID, pool_size=POOL_SIZE, pool_seed=0,
                 converter=pair_converter, device=None):
        missing = [k for k in NETWORKS if k not in optimizers]
        if missing:
            raise ValueError('optimizers lacks %s (needs %s)' % (missing, NETWORKS))
        super(CycleGANUpdater, self).__init__(iterator, {k: optimizers[k] for k in NETWORKS},
                                              converter=converter, device=device)
        self.lambda_cycle, self.lambda_id = float(lambda_cycle), float(lambda_id)
        # Each pool on the device of the discriminator it feeds: the fakes come from there and
        # go back there, and a pool restored from a snapshot is moved there (ImagePool).
        self.pool_a = ImagePool(pool_size, seed=pool_seed,
                                device=optimizers['dis_a'].target.device)
        self.pool_b = ImagePool(pool_size, seed=pool_seed + 1,
                                device=optimizers['dis_b'].target.device)

    def networks(self):
        """``(gen_ab, gen_ba, dis_a, dis_b)``."""
        return tuple(self.get_optimizer(k).target for k in NETWORKS)

    def update_core(self):
        iterator = self.get_iterator('main')
        a, b = convert._call_converter(self.converter, iterator.next(), self.input_device)
        gen_ab, gen_ba, dis_a, dis_b = self.networks()
        opt = {k: self.get_optimizer(k) for k in NETWORKS}

        # Generators (Zhu: the discriminators are frozen here; in Chainer their gradients are
        # simply cleared before their own step).
        out = losses.generator_losses(gen_ab, gen_ba, dis_a, dis_b, a, b,
                                      self.lambda_cycle, self.lambda_id)
        self._check_finite(out['loss'], {'gen/' + k: out[k]
                                         for k in ('loss_gan', 'loss_cycle', 'loss_id')})
        gen_ab.cleargrads()
        gen_ba.cleargrads()
        out['loss'].backward()
        opt['gen_ab'].update()
        opt['gen_ba'].update()
        fake_a, fake_b = out['fake_a'].array, out['fake_b'].array
        del out  # frees the generators' graph before the discriminator pass

        # Discriminators, on fakes from the history (no graph into the generators).
        loss_dis_a = losses.discriminator_loss(dis_a, a, self.pool_a.query(fake_a))
        loss_dis_b = losses.discriminator_loss(dis_b, b, self.pool_b.query(fake_b))
        loss_dis = loss_dis_a + loss_dis_b
        self._check_finite(loss_dis, {'dis_a/loss': loss_dis_a, 'dis_b/loss': loss_dis_b})
        dis_a.cleargrads()
        dis_b.cleargrads()
        loss_dis.backward()
        opt['dis_a'].update()
        opt['dis_b'].update()
        chainer.report({'dis_a/loss': loss_dis_a, 'dis_b/loss': loss_dis_b})

        if self.auto_new_epoch and iterator.is_new_epoch:
            for o in opt.values():
                o.new_epoch(auto=True)

    def _check_finite(self, loss, parts):
        """Raises :class:`~chainer_yolo_dist.core.finite.NonFiniteLossError` naming this
        update's number and the loss's ``parts`` if the scalar ``loss`` is NaN or infinite,
        before its backward pass and update (the parts cross to the host only then)."""
        value = float(loss.array)
        if not math.isfinite(value):
            finite.check_loss(value, self.iteration + 1,
                              {k: float(v.array) for k, v in parts.items()})

    def serialize(self, serializer):
        super(CycleGANUpdater, self).serialize(serializer)
        self.pool_a.serialize(serializer['pool_a'])
        self.pool_b.serialize(serializer['pool_b'])
