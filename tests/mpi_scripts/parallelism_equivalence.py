"""Each parallelism mode against synchronous SGD (ChainerMN, naive communicator), in float64.

Usage: parallelism_equivalence.py MODE OUT.npz [--servers N] [--lars] [--average-state]
  async: ranks < N serve (staleness bound 0, push and pull every step), the others work;
         then the workers alone run ChainerMN's synchronous optimizer from the same initial
         weights on the same per-worker batches.
  local: every rank works, weights averaged every step (period 1); then synchronous SGD on
         the same ranks and batches.
  stale: every rank works with one-step-stale updates; rank 0 then replays the same schedule
         serially (step t's mean gradient computed on the current weights, applied one step
         later, the last one at finalize) as the reference.
The lowest-ranked worker writes OUT.npz with ``mode/<param>`` and ``reference/<param>``.
"""
import argparse

import chainer
import chainermn
import numpy as np

import parallel_common as pc
from chainer_yolo_dist.core import mpi as distributed
from chainer_yolo_dist.core.parallelism import parameter_server as ps
from chainer_yolo_dist.core.parallelism.local_sgd import LocalSGDOptimizer
from chainer_yolo_dist.core.optimizers import add_regularization, regularization_hook
from chainer_yolo_dist.core.parallelism.stale_sync import StaleSyncOptimizer

STEPS = 3
LR, MOMENTUM, WEIGHT_DECAY = 0.1, 0.9, 0.01


def momentum_sgd():
    return chainer.optimizers.MomentumSGD(lr=LR, momentum=MOMENTUM)


def sync_reference(mpi_comm, worker, lars):
    """ChainerMN's multi-node optimizer on the given ranks, every call an update."""
    comm = chainermn.create_communicator('naive', mpi_comm=mpi_comm)
    model = pc.build()
    optimizer = chainermn.create_multi_node_optimizer(momentum_sgd(), comm)
    optimizer.setup(model)
    add_regularization(optimizer, WEIGHT_DECAY, lars=lars)
    comm.bcast_data(model)
    optimizer.is_changed(model)  # as training.build_optimizer: the first call updates too
    for step in range(STEPS):
        optimizer.update(model, *pc.batch(step, worker))
    assert optimizer.t == STEPS
    return pc.params(model)


def serial_stale_reference(n_workers, lars):
    """One process replaying the one-step-stale schedule over ``n_workers`` batches."""
    model = pc.build()
    optimizer = momentum_sgd()
    optimizer.setup(model)
    add_regularization(optimizer, WEIGHT_DECAY, lars=lars)
    pending = None
    for step in range(STEPS):
        grads = []
        for worker in range(n_workers):
            model.cleargrads()
            model(*pc.batch(step, worker)).backward()
            grads.append({n: p.grad.copy() for n, p in model.namedparams()})
        mean = {n: np.mean([g[n] for g in grads], axis=0) for n in grads[0]}
        if pending is not None:
            for n, p in model.namedparams():
                p.grad = pending[n]
            optimizer.update()
        pending = mean
    for n, p in model.namedparams():
        p.grad = pending[n]
    optimizer.update()
    return pc.params(model)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('mode', choices=('async', 'local', 'stale'))
    parser.add_argument('out')
    parser.add_argument('--servers', type=int, default=1)
    parser.add_argument('--lars', action='store_true')
    parser.add_argument('--average-state', action='store_true')
    args = parser.parse_args()
    distributed.abort_on_exception()
    from mpi4py import MPI
    world = MPI.COMM_WORLD
    result = reference = None

    if args.mode == 'async':
        roles = ps.split_world(world, args.servers)
        if roles.is_server:
            opt = momentum_sgd()
            hook = regularization_hook(WEIGHT_DECAY, args.lars)
            ps.run_server(world, opt, n_servers=args.servers, max_staleness=0,
                          hooks=[hook] if hook else [])
        else:
            worker = world.rank - args.servers
            model = pc.build()
            opt = ps.ParameterServerOptimizer(world, n_servers=args.servers, max_staleness=0)
            opt.setup(model)
            for step in range(STEPS):
                opt.update(model, *pc.batch(step, worker))
            opt.finalize()
            result = pc.params(model)
        if not roles.is_server:
            reference = sync_reference(roles.local_comm, world.rank - args.servers, args.lars)
        first_worker = args.servers
    elif args.mode == 'local':
        model = pc.build()
        opt = LocalSGDOptimizer(momentum_sgd(), world, period=1,
                                average_state=args.average_state)
        opt.setup(model)
        add_regularization(opt, WEIGHT_DECAY, lars=args.lars)
        for step in range(STEPS):
            opt.update(model, *pc.batch(step, world.rank))
        opt.finalize()
        assert opt.stats['averagings'] == STEPS
        result = pc.params(model)
        reference = sync_reference(world, world.rank, args.lars)
        first_worker = 0
    else:
        model = pc.build()
        opt = StaleSyncOptimizer(momentum_sgd(), world)
        opt.setup(model)
        add_regularization(opt, WEIGHT_DECAY, lars=args.lars)
        for step in range(STEPS):
            opt.update(model, *pc.batch(step, world.rank))
        assert opt.t == STEPS - 1  # step 1 only started its reduction
        opt.finalize()
        assert opt.t == STEPS
        assert opt.stats['updates'] == STEPS and opt.stats['staleness'] == {1: STEPS}
        result = pc.params(model)
        if world.rank == 0:
            reference = serial_stale_reference(world.size, args.lars)
        first_worker = 0

    if world.rank == first_worker:
        arrays = {'mode/' + k: v for k, v in result.items()}
        arrays.update({'reference/' + k: v for k, v in reference.items()})
        arrays['initial/all'] = np.concatenate(
            [v.ravel() for _, v in sorted(pc.params(pc.build()).items())])
        np.savez(args.out, **arrays)


if __name__ == '__main__':
    main()
