"""Four multi-node Adam optimizers keep two ranks' CycleGAN networks identical.

Usage: cyclegan_sync.py  (under mpiexec -n 2). Every rank builds its networks from its OWN seed
(so only the multi-node optimizers' first-update broadcast can make them equal) and trains on
its OWN images; after the steps rank 0 checks that all four networks are bit-identical on both
ranks, that they moved away from rank 0's initial weights, and that the ranks' losses differed
(each saw different data). Prints 'OK' on rank 0.
"""
import chainer
import chainermn
import numpy as np

from chainer_yolo_dist.cyclegan.networks import PatchDiscriminator, ResnetGenerator
from chainer_yolo_dist.cyclegan.updater import (
    ADAM_ALPHA, ADAM_BETA1, NETWORKS, CycleGANUpdater, discriminator_lr)

STEPS = 4


def params(net):
    return {name: p.array.copy() for name, p in sorted(net.namedparams())}


def main():
    comm = chainermn.create_communicator('naive')
    np.random.seed(100 + comm.rank)  # different initial weights on each rank
    nets = {'gen_ab': ResnetGenerator(n_blocks=1, ngf=4), 'gen_ba': ResnetGenerator(1, 4),
            'dis_a': PatchDiscriminator(ndf=4), 'dis_b': PatchDiscriminator(ndf=4)}
    initial0 = comm.bcast_obj({k: params(v) for k, v in nets.items()} if comm.rank == 0 else None,
                              root=0)
    optimizers = {}
    for name in NETWORKS:
        alpha = ADAM_ALPHA if name.startswith('gen') else discriminator_lr(ADAM_ALPHA)
        opt = chainermn.create_multi_node_optimizer(
            chainer.optimizers.Adam(alpha=alpha, beta1=ADAM_BETA1), comm)
        opt.setup(nets[name])
        optimizers[name] = opt
    rng = np.random.RandomState(7 + comm.rank)  # each rank its own data
    data = [(rng.uniform(-1, 1, (3, 32, 32)).astype(np.float32),
             rng.uniform(-1, 1, (3, 32, 32)).astype(np.float32)) for _ in range(STEPS)]
    iterator = chainer.iterators.SerialIterator(data, 1, shuffle=False)
    updater = CycleGANUpdater(iterator, optimizers, pool_size=2, pool_seed=2 * comm.rank)
    losses = []
    for _ in range(STEPS):
        observation = {}
        with chainer.reporter.Reporter().scope(observation):
            updater.update()
        losses.append(float(observation['gen/loss'].array))
    # The first update of each multi-node optimizer only broadcasts rank 0's weights.
    assert optimizers['gen_ab'].t == STEPS - 1, optimizers['gen_ab'].t
    assert optimizers['dis_b'].alpha == ADAM_ALPHA / 2
    mine = {k: params(v) for k, v in nets.items()}
    gathered = comm.gather_obj((mine, losses))
    if comm.rank == 0:
        (p0, l0), (p1, l1) = gathered
        for net in NETWORKS:
            for name in p0[net]:
                assert np.array_equal(p0[net][name], p1[net][name]), (net, name)
            moved = sum(not np.array_equal(p0[net][n], initial0[net][n]) for n in p0[net])
            assert moved == len(p0[net]), (net, moved)  # every parameter was updated
        assert l0 != l1  # the ranks trained on different images
        print('OK')


if __name__ == '__main__':
    main()
