"""Where a data-parallel training step spends its time, measured phase by phase.

:func:`time_steps` runs real training steps (the project's data pipeline, network, loss,
ChainerMN multi-node optimizer) and times each phase separately:

- ``data``: waiting for the next batch from the iterator (augmentation runs in worker
  processes, so this is only the part not overlapped with computation) plus the converter;
- ``forward``: the network's forward pass;
- ``loss``: the YOLO loss with its target assignment;
- ``backward``: back-propagation through loss and network;
- ``allreduce``: ``comm.multi_node_mean_grad`` (the gradient average across ranks);
- ``update``: MomentumSGD with weight decay.

Each rank times its own steps; ranks are synchronised (barrier) before every step so that a
rank's AllReduce time does not include waiting for a slower rank's computation of the
previous step.
"""
import time

import chainer
import numpy as np

from chainer_yolo_dist.core import iterators, optimizers, sampling, sharding
from chainer_yolo_dist.datasets import SyntheticShapesDataset
from chainer_yolo_dist.detection.models import build_loss, build_model
from chainer_yolo_dist.detection.multiscale import MultiScaleConverter
from chainer_yolo_dist.detection.train_chain import YOLOTrainChain
from chainer_yolo_dist.detection.transforms import YOLOAugmentation

PHASES = ('data', 'forward', 'loss', 'backward', 'allreduce', 'update')


def time_steps(comm, model_name='yolov2', insize=416, batchsize=4, steps=5, warmup=2,
               loaderjob=1, seed=0):
    """Times ``steps`` training steps after ``warmup`` untimed ones, on every rank.

    Returns a dict (on every rank) with per-rank mean seconds per phase, ``step`` seconds,
    images/s per process and in total (``comm.size * batchsize / step``).
    """
    n_images = comm.size * batchsize * (steps + warmup + 1)
    data = SyntheticShapesDataset('train', n_images, size=insize, seed=seed)
    share = sharding.worker_share(n_images, comm.size, comm.rank, seed)
    shard = sampling.EpochSampledDataset(sharding.subset(data, share),
                                         YOLOAugmentation(insize),
                                         seed=sampling.stream_seed(seed, comm.rank))
    iterator = iterators.train_iterator(shard, batchsize, seed, loaderjob)
    converter = MultiScaleConverter(insize)
    np.random.seed(seed)
    model = build_model(model_name, len(data.class_names))
    loss_fn = build_loss(model)
    chain = YOLOTrainChain(model, loss_fn)
    init_input = np.zeros((1, 3, insize, insize), np.float32)
    optimizer = optimizers.multi_node(
        chainer.optimizers.MomentumSGD(lr=1e-5, momentum=0.9),
        [chainer.optimizer_hooks.WeightDecay(0.0005)], chain, comm,
        init=lambda: model(init_input))
    actual = optimizer.actual_optimizer
    totals = {phase: [] for phase in PHASES}
    for step in range(warmup + steps):
        comm.mpi_comm.Barrier()
        t0 = time.perf_counter()
        x, bboxes, labels = converter(next(iterator))
        t1 = time.perf_counter()
        locs, objs, confs = model(x)
        t2 = time.perf_counter()
        loss = loss_fn(locs, objs, confs, bboxes, labels, insize=insize)['loss']
        t3 = time.perf_counter()
        chain.cleargrads()
        loss.backward()
        t4 = time.perf_counter()
        comm.multi_node_mean_grad(chain)
        t5 = time.perf_counter()
        actual.update()
        t6 = time.perf_counter()
        if step >= warmup:
            for phase, (a, b) in zip(PHASES, ((t0, t1), (t1, t2), (t2, t3), (t3, t4),
                                              (t4, t5), (t5, t6))):
                totals[phase].append(b - a)
    iterator.finalize()
    mine = {phase: float(np.mean(v)) for phase, v in totals.items()}
    per_rank = comm.gather_obj(mine)
    result = None
    if comm.rank == 0:
        phases = {phase: float(np.mean([r[phase] for r in per_rank])) for phase in PHASES}
        step_seconds = sum(phases.values())
        result = {
            'model': model_name, 'insize': insize, 'batchsize_per_process': batchsize,
            'processes': comm.size, 'steps_timed': steps,
            'phase_seconds': phases,
            'phase_share': {p: s / step_seconds for p, s in phases.items()},
            'step_seconds': step_seconds,
            'images_per_second_per_process': batchsize / step_seconds,
            'images_per_second_total': comm.size * batchsize / step_seconds,
            'parameters': int(sum(p.size for p in model.params())),
        }
    return comm.bcast_obj(result)
