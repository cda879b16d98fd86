"""Each mode driven by Chainer's own StandardUpdater and Trainer, on every rank of the job.

Usage: parallelism_trainer.py MODE OUTDIR  (MODE: async, local, stale; run under mpiexec -n 3)
async: rank 0 serves (no staleness bound, pull every 2 steps), ranks 1-2 train;
local: the 3 ranks train, weights averaged every 4 steps (Darknet's period);
stale: the 3 ranks train with one-step-stale averaged gradients.
Each worker trains the small network (float32) for ITERATIONS iterations over its own share
of a dataset (chainermn.scatter_dataset over the workers' communicator), then writes
OUTDIR/rank<R>.json: its held-out loss before and after, iterations, a checksum of its final
weights, and the mode's stats.
"""
import json
import os
import sys

import chainer
import chainer.functions as F
import chainermn
import numpy as np

import parallel_common as pc
from chainer_yolo_dist import distributed
from chainer_yolo_dist.core import parameter_server as ps
from chainer_yolo_dist.core.local_sgd import DARKNET_PERIOD, LocalSGDOptimizer
from chainer_yolo_dist.core.optimizers import add_regularization, build_optimizer
from chainer_yolo_dist.core.stale_sync import StaleSyncOptimizer

ITERATIONS = 40
LR, MOMENTUM, WEIGHT_DECAY = 0.1, 0.5, 1e-4  # momentum 0.9 diverges on this small network
# Stale gradients act as extra momentum (Mitliagkas et al. 2016, "Asynchrony begets
# momentum"); with momentum 0.5 on top, the outcome of a 40-step asynchronous run varied from
# run to run (held-out loss 0.6 to 1.2) with the thread timing. Plain SGD on the server:
ASYNC_MOMENTUM = 0.0


def held_out_loss(model):
    x, t = pc.batch(10 ** 6, 0, batchsize=64, dtype=np.float32)
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        return float(F.softmax_cross_entropy(model.predictor(x), t).array)


def main(mode, out):
    distributed.abort_on_exception()
    from mpi4py import MPI
    world = MPI.COMM_WORLD
    n_servers = 1 if mode == 'async' else 0
    if n_servers:
        roles = ps.split_world(world, n_servers)
        if roles.is_server:
            stats = ps.run_server(
                world, lambda link: build_optimizer(link, LR, ASYNC_MOMENTUM, WEIGHT_DECAY),
                n_servers=n_servers)
            with open(os.path.join(out, 'server%d.json' % world.rank), 'w') as f:
                json.dump(stats.as_dict(), f)
            return
        workers = chainermn.create_communicator('naive', mpi_comm=roles.local_comm)
    else:
        workers = chainermn.create_communicator('naive', mpi_comm=world)
    model = pc.build(dtype=np.float32)
    if mode == 'async':
        optimizer = ps.ParameterServerOptimizer(world, n_servers, pull_every=2)
        optimizer.setup(model)
    else:
        actual = chainer.optimizers.MomentumSGD(lr=LR, momentum=MOMENTUM)
        if mode == 'local':
            optimizer = LocalSGDOptimizer(actual, workers, period=DARKNET_PERIOD)
        else:
            optimizer = StaleSyncOptimizer(actual, workers)
        optimizer.setup(model)
        add_regularization(optimizer, WEIGHT_DECAY)
    loss_before = held_out_loss(model)
    examples = None
    if workers.rank == 0:
        examples = []
        for step in range(ITERATIONS):
            x, t = pc.batch(step, 0, batchsize=4 * workers.size, dtype=np.float32)
            examples.extend(zip(x, t))
    share = chainermn.scatter_dataset(examples, workers, shuffle=True, seed=0)
    it = chainer.iterators.SerialIterator(share, 4, shuffle=True)
    updater = chainer.training.StandardUpdater(it, optimizer)
    trainer = chainer.training.Trainer(updater, (ITERATIONS, 'iteration'), out=out)
    trainer.run()
    stats = optimizer.finalize()
    record = {'rank': world.rank, 'iteration': updater.iteration, 'loss_before': loss_before,
              'loss_after': held_out_loss(model), 'stats': stats,
              'checksum': float(sum(float(p.array.sum()) for p in model.params()))}
    with open(os.path.join(out, 'rank%d.json' % world.rank), 'w') as f:
        json.dump(record, f)


if __name__ == '__main__':
    main(sys.argv[1], sys.argv[2])
