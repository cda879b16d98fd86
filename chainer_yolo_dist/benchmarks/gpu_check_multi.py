"""GPU check, the multi-GPU stages (two GPUs or more; G = the run's ``--gpus``).

- ``ranks`` (under ``mpiexec -n G``): ``pure_nccl`` with every rank on its own GPU, as
  ``core.devices.select_device`` places them (distinct PCI bus ids, gathered and compared
  here too); NCCL's gradient mean (``multi_node_mean_grad``) gives exactly the mean of the
  ranks' gradients (small integers: exact in float32) and ``bcast_data`` rank 0's weights.
- ``detection``: ``mpiexec -n G train_yolo.py`` (synthetic demo, ``pure_nccl``) with FP32 and
  with FP16 AllReduce (paper 001), the same seed: both finite, FP16 really used (the run's
  config), and every logged loss of the FP16 run within :data:`FP16_LOSS_RTOL` of the FP32
  run's.
- ``async``: ``mpiexec -n G train_darknet.py --parallelism async``: one parameter server and
  G - 1 workers, each worker on its own GPU: finite losses and a final evaluation.
"""
import os
import socket
import sys

import numpy as np

from chainer_yolo_dist.benchmarks import gpu_check_judges as judges
from chainer_yolo_dist.benchmarks import gpu_check_worker as worker
from chainer_yolo_dist.benchmarks.gpu_check_training import check_losses, check_run

#: FP16-AllReduced losses may differ from FP32's by this fraction at each log entry (the
#: gradients are rounded to 11 significant bits before they are averaged; 20 updates).
FP16_LOSS_RTOL = 0.1
DETECTION = {'iterations': 20, 'log': 5, 'per_rank_images': 32, 'test': 16}
ASYNC = {'iterations': 12, 'log': 4, 'train': 256, 'test': 64}
SMOKE_DETECTION = {'iterations': 4, 'log': 2, 'per_rank_images': 8, 'test': 8}
SMOKE_ASYNC = {'iterations': 4, 'log': 2, 'train': 64, 'test': 32}


def gpus():
    """The run's GPU count (the runner's ``--gpus``), 2 without a runner."""
    return int(os.environ.get(worker.ENV_GPUS, '2'))


def ranks(report, options):
    import chainer
    import chainer.links as L
    from chainer_yolo_dist.core import devices, mpi
    comm = mpi.create_communicator('naive' if options.cpu_smoke else 'pure_nccl')
    device = -1
    if not options.cpu_smoke:
        device = devices.select_device(comm.mpi_comm, True, devices.gpu_count())
        chainer.backends.cuda.get_device_from_id(device).use()
    place = (socket.gethostname(), devices.pci_bus_id(device) if device >= 0 else None, device)
    np.random.seed(0)
    link = L.Linear(3, 2)
    if device >= 0:
        link.to_device('@cupy:%d' % device)
    for param in link.params():
        param.array[...] = comm.rank  # rank 0's zeros must reach every rank
        param.grad = link.xp.full(param.shape, comm.rank + 1, param.dtype)
    comm.multi_node_mean_grad(link)
    comm.bcast_data(link)
    cpu = chainer.backend.CpuDevice()
    mine = {'place': place,
            'grads': [cpu.send(p.grad) for p in link.params()],
            'weights': [cpu.send(p.array) for p in link.params()]}
    gathered = comm.gather_obj(mine)
    if comm.rank != 0:
        return
    size = len(gathered)
    places = [g['place'] for g in gathered]
    report.fact('places', places)
    bus = [(host, pci) for host, pci, _ in places]
    distinct = options.cpu_smoke or len(set(bus)) == size
    report.check('one GPU per rank', distinct, '; '.join(
        'rank %d: %s GPU %s (%s)' % (r, host, dev, pci) for r, (host, pci, dev) in
        enumerate(places)))
    mean = (size + 1) / 2.
    report.check('NCCL gradient mean exact', all(
        np.array_equal(g, np.full(g.shape, mean, g.dtype)) for r in gathered
        for g in r['grads']), 'every gradient %g on %d ranks' % (mean, size))
    report.check('NCCL broadcast', all(not w.any() for r in gathered for w in r['weights']),
                 'rank 0\'s weights on every rank')
    report.summary = '%d ranks on %d distinct GPUs: NCCL mean and broadcast exact' % (
        size, len(set(bus)))


def _ranks(options):
    return 2 if options.cpu_smoke else gpus()


def detection(report, options):
    sizes = SMOKE_DETECTION if options.cpu_smoke else DETECTION
    n = _ranks(options)
    runs = {}
    for dtype in ('float32', 'float16'):
        out = os.path.join(options.work, dtype)
        args = [worker.script('train_yolo.py'), '--preset', 'synthetic_demo',
                '--iterations', str(sizes['iterations']), '--log-interval', str(sizes['log']),
                '--n-train-images', str(n * sizes['per_rank_images']),
                '--n-test-images', str(sizes['test']), '--loaderjob', '2', '--no-progress',
                '--seed', '0', '--out', out]
        if dtype == 'float16':  # FP32 is the preset's (and pure_nccl's) own
            args += ['--allreduce-grad-dtype', dtype]
        status, _, tail = worker.run_logged(report, dtype, worker.mpi_command(n, args),
                                            options.work)
        if check_run(report, '%s AllReduce' % dtype, status, tail):
            check_losses(report, dtype, out)
            runs[dtype] = out
    if len(runs) < 2:
        return
    used = judges.find_key(judges.read_or_none(os.path.join(runs['float16'], 'config.json')) or {},
                           'allreduce_grad_dtype')
    report.check('FP16 AllReduce in force', options.cpu_smoke or used == 'float16',
                 'config: allreduce_grad_dtype = %s' % used)
    logs = {d: judges.read_or_none(os.path.join(out, 'log')) or [] for d, out in runs.items()}
    pairs = list(zip((e['main/loss'] for e in logs['float32'] if 'main/loss' in e),
                     (e['main/loss'] for e in logs['float16'] if 'main/loss' in e)))
    worst = max((abs(b - a) / abs(a) for a, b in pairs if a), default=float('nan'))
    report.fact('fp16_vs_fp32_max_relative_loss_difference', worst)
    report.check('FP16 losses close to FP32', pairs and worst <= FP16_LOSS_RTOL,
                 'largest relative difference %.3g over %d log entries (tolerance %g)'
                 % (worst, len(pairs), FP16_LOSS_RTOL))
    speed = {d: (judges.read_or_none(os.path.join(out, 'metrics.json')) or {}).get(
        'images_per_second') for d, out in runs.items()}
    report.fact('images_per_second', speed)
    report.summary = ('%d ranks: FP32 %.1f images/s, FP16 %.1f images/s, losses within %.2g'
                      % (n, judges.number(speed.get('float32')),
                         judges.number(speed.get('float16')), worst))


def async_mode(report, options):
    sizes = SMOKE_ASYNC if options.cpu_smoke else ASYNC
    n = max(2, _ranks(options))
    out = os.path.join(options.work, 'async')
    args = [worker.script('train_darknet.py'), '--preset', 'synthetic_classification_demo',
            '--parallelism', 'async', '--iterations', str(sizes['iterations']),
            '--log-interval', str(sizes['log']), '--n-train-images', str(sizes['train']),
            '--n-test-images', str(sizes['test']), '--eval-interval', '0', '--loaderjob', '1',
            '--no-progress', '--out', out]
    status, _, tail = worker.run_logged(report, 'async', worker.mpi_command(n, args),
                                        options.work)
    if not check_run(report, 'async', status, tail):
        return
    check_losses(report, 'async', out)
    metrics = judges.read_or_none(os.path.join(out, 'metrics.json')) or {}
    report.fact('parallelism', metrics.get('parallelism'))
    report.check('async evaluation', judges.finite(metrics.get('top1')),
                 'top-1 %s with 1 server and %d workers' % (metrics.get('top1'), n - 1))
    report.summary = '1 server + %d workers: top-1 %.3f, %.1f images/s' % (
        n - 1, judges.number(metrics.get('top1')),
        judges.number(metrics.get('images_per_second')))


if __name__ == '__main__':
    sys.exit(worker.main({'ranks': ranks, 'detection': detection, 'async': async_mode},
                         description=__doc__))
