"""A parameter-server training run on the small network (float32), for the tests.

Usage: parameter_server_run.py OUTDIR [--servers N] [--steps K] [--max-staleness S]
       [--push-every P] [--pull-every Q] [--slow-rank R] [--die exit|raise --die-rank R
       --die-step K]
Ranks < N serve, the others work on their own batches. Rank 0 writes OUTDIR/stats.json
(parameter_server.gather_stats plus each worker's loss before and accuracy after training on
held-out batches). ``--slow-rank`` makes one worker sleep 20 ms a step. ``--die`` makes rank
R end abruptly at step K (``os._exit(3)``, or an uncaught exception that ChainerMN's global
except hook turns into MPI_Abort), first writing the time to OUTDIR/died.txt.
"""
import argparse
import json
import os
import time

import chainer
import chainer.functions as F
import numpy as np

import parallel_common as pc
from chainer_yolo_dist.core import mpi as distributed
from chainer_yolo_dist.core.parallelism import parameter_server as ps
from chainer_yolo_dist.core.optimizers import build_optimizer

HELD_OUT = 10 ** 6  # step index of the evaluation batches (never trained on)
# Momentum 0.9 makes this small network diverge within 60 steps even in one process, and the
# delayed gradients of asynchronous SGD act as extra momentum (Mitliagkas et al. 2016,
# "Asynchrony begets momentum"): with momentum 0.5 the result of a run varied with the timing.
# Plain SGD on the server.
LR, MOMENTUM = 0.1, 0.0


def evaluate(model, worker):
    x, t = pc.batch(HELD_OUT, worker, batchsize=64, dtype=np.float32)
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        y = model.predictor(x)
    return float(F.softmax_cross_entropy(y, t).array), float(F.accuracy(y, t).array)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('out')
    parser.add_argument('--servers', type=int, default=1)
    parser.add_argument('--steps', type=int, default=60)
    parser.add_argument('--max-staleness', type=int, default=None)
    parser.add_argument('--push-every', type=int, default=1)
    parser.add_argument('--pull-every', type=int, default=1)
    parser.add_argument('--slow-rank', type=int, default=None)
    parser.add_argument('--server-max-staleness', type=int, default=None,
                        help='a different bound on the servers (a configuration error)')
    parser.add_argument('--die', choices=('exit', 'raise'))
    parser.add_argument('--die-rank', type=int, default=None)
    parser.add_argument('--die-step', type=int, default=3)
    args = parser.parse_args()
    distributed.abort_on_exception()
    from mpi4py import MPI
    world = MPI.COMM_WORLD
    roles = ps.split_world(world, args.servers)
    if roles.is_server:
        stats = ps.run_server(
            world, lambda link: build_optimizer(link, lr=LR, momentum=MOMENTUM, weight_decay=1e-4),
            n_servers=args.servers,
            max_staleness=(args.max_staleness if args.server_max_staleness is None
                           else args.server_max_staleness))
        record = stats.as_dict()
    else:
        worker = world.rank - args.servers
        model = pc.build(dtype=np.float32)
        opt = ps.ParameterServerOptimizer(world, args.servers, push_every=args.push_every,
                                          pull_every=args.pull_every,
                                          max_staleness=args.max_staleness)
        opt.setup(model)
        loss_before, _ = evaluate(model, worker)
        for step in range(args.steps):
            if args.die and world.rank == args.die_rank and step == args.die_step:
                with open(os.path.join(args.out, 'died.txt'), 'w') as f:
                    f.write(repr(time.time()))
                if args.die == 'exit':
                    os._exit(3)
                raise RuntimeError('worker %d fails on purpose at step %d'
                                   % (world.rank, step))
            if world.rank == args.slow_rank:
                time.sleep(0.02)
            opt.update(model, *pc.batch(step, worker, dtype=np.float32))
        record = dict(opt.finalize())
        record['loss_before'] = loss_before
        record['loss_after'], record['accuracy_after'] = evaluate(model, worker)
        record['checksum'] = float(sum(p.array.sum() for _, p in model.namedparams()))
    summary = ps.gather_stats(world, record)
    if world.rank == 0:
        with open(os.path.join(args.out, 'stats.json'), 'w') as f:
            json.dump(summary, f, indent=1, sort_keys=True)


if __name__ == '__main__':
    main()
