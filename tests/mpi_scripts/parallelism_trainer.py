"""Each mode, built by core.parallelism, driven by Chainer's StandardUpdater and Trainer.

Usage: parallelism_trainer.py MODE OUTDIR  (MODE: sync, async, local, stale; mpiexec -n 3)
sync: the 3 ranks train with ChainerMN's synchronous optimizer;
async: rank 0 serves (no staleness bound, pull every 2 steps), ranks 1-2 train;
local: the 3 ranks train, weights averaged every 4 steps (Darknet's period);
stale: the 3 ranks train with one-step-stale averaged gradients.
Each training rank runs ITERATIONS iterations of the small network (float32) over its share
of a dataset (chainermn.scatter_dataset over par.data_comm), then writes OUTDIR/rank<R>.json:
its held-out loss before and after, iterations, a checksum of its final weights, the mode's
stats; a server writes OUTDIR/server<R>.json.
"""
import json
import os
import sys

import chainer
import chainer.functions as F
import chainermn
import numpy as np

import parallel_common as pc
from chainer_yolo_dist.core import mpi as distributed
from chainer_yolo_dist.core import parallelism

ITERATIONS = 40
# Momentum 0.9 diverges on this small network. Stale gradients act as extra momentum
# (Mitliagkas et al. 2016, "Asynchrony begets momentum"); with momentum 0.5 on top, the outcome
# of a 40-step asynchronous run varied from run to run (held-out loss 0.6 to 1.2) with the
# timing. Plain SGD on the servers.
SETTINGS = parallelism.OptimizerSettings(lr=0.1, momentum=0.5, weight_decay=1e-4)
ASYNC_SETTINGS = SETTINGS._replace(momentum=0.0)


def held_out_loss(model):
    x, t = pc.batch(10 ** 6, 0, batchsize=64, dtype=np.float32)
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        return float(F.softmax_cross_entropy(model.predictor(x), t).array)


def main(mode, out):
    distributed.abort_on_exception()
    comm = chainermn.create_communicator('naive')
    par = parallelism.setup_parallelism(mode, comm, n_servers=1)
    if par.is_server:
        stats = parallelism.serve(par, ASYNC_SETTINGS)
        with open(os.path.join(out, 'server%d.json' % comm.rank), 'w') as f:
            json.dump(stats.as_dict(), f)
        return
    model = pc.build(dtype=np.float32)
    optimizer = parallelism.build_parallel_optimizer(par, model, SETTINGS, pull_every=2)
    loss_before = held_out_loss(model)
    data_comm = par.data_comm
    examples = None
    if data_comm.rank == 0:
        examples = []
        for step in range(ITERATIONS):
            x, t = pc.batch(step, 0, batchsize=4 * data_comm.size, dtype=np.float32)
            examples.extend(zip(x, t))
    share = chainermn.scatter_dataset(examples, data_comm, shuffle=True, seed=0)
    it = chainer.iterators.SerialIterator(share, 4, shuffle=True)
    updater = chainer.training.StandardUpdater(it, optimizer)
    trainer = chainer.training.Trainer(updater, (ITERATIONS, 'iteration'), out=out)
    trainer.run()
    stats = parallelism.finish(optimizer)
    record = {'rank': comm.rank, 'iteration': updater.iteration, 'loss_before': loss_before,
              'loss_after': held_out_loss(model), 'stats': stats,
              'checksum': float(sum(float(p.array.sum()) for p in model.params()))}
    with open(os.path.join(out, 'rank%d.json' % comm.rank), 'w') as f:
        json.dump(record, f)


if __name__ == '__main__':
    main(sys.argv[1], sys.argv[2])
