"""GPU check, stage ``throughput``: training images per second of YOLOv2 and YOLOv3 at 416.

One process, one GPU, batch 8 (the batch of docs/gpu.md's earlier measurements): synthetic
shapes augmented as in training (before the clock starts: the loader's worker processes do it
while the GPU computes), then, timed, the multi-scale converter at a fixed 416 (host-to-device
copy and scaling), the network, the loss with its target assignment, back-propagation and
MomentumSGD with weight decay. :data:`WARMUP` untimed updates (CuPy compiles its kernels, the
memory pool grows), then :data:`STEPS` timed ones, each ended by a device synchronisation.
Reported: the median seconds per update and images/s, and the memory pool's size.

Without cuDNN (CuPy 14) every convolution is im2col + cuBLAS: docs/gpu.md reports about 5-7
images/s for both at this size on an H100; with cuDNN 8.9 expect several times more. The
stage passes when both networks train (finite losses) and gives the rates; it sets no speed
threshold, as the GPU and the stack vary.
"""
import statistics
import sys
import time

import numpy as np

from chainer_yolo_dist.benchmarks import gpu_check_worker as worker

WARMUP, STEPS, BATCH, INSIZE = 2, 3, 8, 416
#: The CPU smoke run's sizes: the same code at a size a CPU steps through in seconds.
SMOKE = {'warmup': 1, 'steps': 1, 'batch': 2, 'insize': 128}


def time_updates(model_name, device, insize, batch, warmup, steps, seed=0):
    """``{'seconds_per_update', 'images_per_second', 'losses', ...}`` of ``model_name``."""
    import chainer
    from chainer_yolo_dist.datasets import SyntheticShapesDataset
    from chainer_yolo_dist.detection.models import (build_loss, build_model,
                                                    initialize_lazy_parameters)
    from chainer_yolo_dist.detection.multiscale import MultiScaleConverter
    from chainer_yolo_dist.detection.train_chain import YOLOTrainChain
    from chainer_yolo_dist.detection.transforms import YOLOAugmentation
    np.random.seed(seed)
    data = SyntheticShapesDataset('train', batch * (warmup + steps), size=insize, seed=seed)
    model = build_model(model_name, len(data.class_names))
    initialize_lazy_parameters(model)  # on the host, from NumPy's seeded generator
    chain = YOLOTrainChain(model, build_loss(model))
    device.use()
    chain.to_device(device)
    optimizer = chainer.optimizers.MomentumSGD(lr=1e-5, momentum=0.9)
    optimizer.setup(chain)
    optimizer.add_hook(chainer.optimizer_hooks.WeightDecay(0.0005))
    augment = YOLOAugmentation(insize)
    rng = np.random.RandomState(seed)
    converter = MultiScaleConverter(insize)
    sync = getattr(getattr(device, 'device', None), 'synchronize', lambda: None)
    times, losses = [], []
    for step in range(warmup + steps):
        examples = [augment(data[step * batch + i], rng) for i in range(batch)]
        sync()
        start = time.perf_counter()
        x, bboxes, labels = converter(examples, device)
        loss = chain(x, bboxes, labels)
        chain.cleargrads()
        loss.backward()
        optimizer.update()
        losses.append(float(loss.array))
        sync()
        if step >= warmup:
            times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    pool = None
    if device.xp is not np:
        pool = int(device.xp.get_default_memory_pool().total_bytes())
    return {'model': model_name, 'insize': insize, 'batch': batch, 'timed_updates': steps,
            'seconds_per_update': seconds, 'images_per_second': batch / seconds,
            'update_seconds': times, 'losses': losses, 'memory_pool_bytes': pool,
            'parameters': int(sum(p.size for p in model.params()))}


def throughput(report, options):
    import chainer
    size = SMOKE if options.cpu_smoke else {'warmup': WARMUP, 'steps': STEPS, 'batch': BATCH,
                                            'insize': INSIZE}
    device = chainer.get_device('@numpy' if options.cpu_smoke else '@cupy:0')
    rates = []
    for name in ('yolov2', 'yolov3'):
        result = report.fact(name, time_updates(name, device, size['insize'], size['batch'],
                                                size['warmup'], size['steps']))
        finite = all(np.isfinite(result['losses']))
        report.check(name, finite, '%.2f images/s (%.2f s per update of %d at %d), losses '
                     '%s' % (result['images_per_second'], result['seconds_per_update'],
                             size['batch'], size['insize'],
                             ', '.join('%.4g' % v for v in result['losses'])))
        rates.append('%s %.2f images/s' % (name, result['images_per_second']))
    report.summary = '%s at %d, batch %d on %s' % (', '.join(rates), size['insize'],
                                                   size['batch'], device)


if __name__ == '__main__':
    sys.exit(worker.main({'throughput': throughput}, description=__doc__))
