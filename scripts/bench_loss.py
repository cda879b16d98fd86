#!/usr/bin/env python
"""Times YOLOv2/YOLOv3 loss target assignment and the whole loss forward + backward.

Run on one core: ``OMP_NUM_THREADS=1 python scripts/bench_loss.py``. The default workload is
the target of the losses' design: a batch of 16 images at 608 x 608 with 50 truths each, 20
classes, ChainerCV's anchors. Truth sides are log-uniform in [--min-side, --max-side] pixels
(independently for height and width), centres uniform with the box inside the image; raw
network outputs are N(0, --output-std^2), the scale of an untrained detection head.

"Target assignment" is everything before the differentiable terms
(``chainer_yolo_dist.detection.targets.TargetAssigner.assign``): validating and moving the
truths, the responsible slots, the later-truth-wins rule, the targets and the ``best_iou``
no-object mask. Prints a table and writes a JSON record (temporary file, then rename).
"""
import os
import platform
import sys
import time

import numpy as np

import chainer
from chainercv.links import YOLOv2, YOLOv3

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from chainer_yolo_dist.benchmarks.loader import cpu_model  # noqa: E402
from chainer_yolo_dist.detection.losses import YOLOv2Loss, YOLOv3Loss  # noqa: E402
from chainer_yolo_dist.core import cli  # noqa: E402


def make_truths(rng, args):
    """N arrays (R, 4) of (y_min, x_min, y_max, x_max) px inside the image, and labels."""
    bboxes, labels = [], []
    lo, hi = np.log(args.min_side), np.log(args.max_side)
    for _ in range(args.batch):
        size = np.exp(rng.uniform(lo, hi, (args.truths, 2)))
        start = rng.uniform(0, 1, (args.truths, 2)) * (args.insize - size)
        bbox = np.concatenate([start, start + size], axis=1).astype(np.float32)
        bboxes.append(np.clip(bbox, 0, args.insize))
        labels.append(rng.randint(0, args.classes, args.truths).astype(np.int32))
    return bboxes, labels


def timings(fn, repeat):
    """Wall-clock and process CPU seconds of ``repeat`` calls (after one warm-up call).

    The CPU time leaves out time spent waiting for a core, which matters on a shared
    machine; both are recorded.
    """
    fn()                                    # warm-up: layout cache, allocator
    wall, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - t0)
    return np.array(wall), np.array(cpu)


def bench(name, loss, args, rng):
    bboxes, labels = make_truths(rng, args)
    n_slot = loss.assigner.layout(args.insize).n_slot
    shape = (args.batch, n_slot)
    locs = (rng.randn(*shape, 4) * args.output_std).astype(np.float32)
    objs = (rng.randn(*shape) * args.output_std).astype(np.float32)
    confs = (rng.randn(*shape, args.classes) * args.output_std).astype(np.float32)

    def assign():
        return loss.assigner.assign(locs, bboxes, labels, args.insize)

    def forward_backward():
        vs = [chainer.Variable(a) for a in (locs, objs, confs)]
        out = loss(*vs, bboxes, labels, insize=args.insize)
        out['loss'].backward()
        return out

    targets = assign()
    row = {
        'version': name,
        'slots_per_image': n_slot,
        'responsible_slots': int(len(targets.key)),
        'ignored_slots': int((~targets.noobj).sum() - len(targets.key)),
    }
    for what, fn, repeat in (('assign', assign, args.repeat),
                             ('forward_backward', forward_backward, max(3, args.repeat // 4))):
        wall, cpu = timings(fn, repeat)
        row.update({'%s_ms_median' % what: 1e3 * float(np.median(wall)),
                    '%s_ms_min' % what: 1e3 * float(wall.min()),
                    '%s_cpu_ms_median' % what: 1e3 * float(np.median(cpu)),
                    '%s_cpu_ms_min' % what: 1e3 * float(cpu.min()),
                    '%s_repeats' % what: repeat})
    return row


def main():
    p = cli.Parser(description=__doc__.split('\n\n')[0])
    p.add_argument('--batch', type=int, default=16)
    p.add_argument('--insize', type=int, default=608)
    p.add_argument('--truths', type=int, default=50)
    p.add_argument('--classes', type=int, default=20)
    p.add_argument('--min-side', type=float, default=8.0)
    p.add_argument('--max-side', type=float, default=304.0)
    p.add_argument('--output-std', type=float, default=1.0)
    p.add_argument('--repeat', type=int, default=20)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out', help='JSON file (default: loss_target_assignment.json in a new '
                   'runs/bench/loss-<time>; results/bench holds the committed one)')
    args = p.parse_args()
    if not args.out:
        from chainer_yolo_dist.core.rundir import timestamped
        args.out = os.path.join(timestamped(os.path.join('runs', 'bench'), 'loss'),
                                'loss_target_assignment.json')
    if args.insize % 32:
        p.error('--insize must be a multiple of 32, got %d' % args.insize)
    if not 0 < args.min_side <= args.max_side <= args.insize:
        p.error('need 0 < --min-side <= --max-side <= --insize')

    rng = np.random.RandomState(args.seed)
    rows = [bench('yolov2', YOLOv2Loss(YOLOv2._anchors, args.classes), args, rng),
            bench('yolov3', YOLOv3Loss(YOLOv3._anchors, args.classes), args, rng)]
    print('batch %d, %dx%d, %d truths/image, OMP_NUM_THREADS=%s, %s, load average %.1f'
          % (args.batch, args.insize, args.insize, args.truths,
             os.environ.get('OMP_NUM_THREADS', 'unset'), cpu_model(), os.getloadavg()[0]))
    print('ms, median (min) of wall-clock and of process CPU time')
    print('%-7s %6s %5s %7s %15s %15s %15s %15s'
          % ('version', 'K', 'in R', 'ignored', 'assign wall', 'assign cpu', 'fwd+bwd wall',
             'fwd+bwd cpu'))
    for r in rows:
        print('%-7s %6d %5d %7d %15s %15s %15s %15s'
              % (r['version'], r['slots_per_image'], r['responsible_slots'],
                 r['ignored_slots'],
                 *['%.2f (%.2f)' % (r[k + '_ms_median'], r[k + '_ms_min'])
                   for k in ('assign', 'assign_cpu', 'forward_backward',
                             'forward_backward_cpu')]))

    record = {
        'what': 'loss target assignment and forward+backward time, CPU, scripts/bench_loss.py',
        'machine': {'cpu': cpu_model(), 'platform': platform.platform(),
                    'python': platform.python_version(), 'numpy': np.__version__,
                    'chainer': chainer.__version__,
                    'OMP_NUM_THREADS': os.environ.get('OMP_NUM_THREADS'),
                    'cpu_count': os.cpu_count(),
                    'load_average_1_5_15': list(os.getloadavg())},
        'workload': {k: getattr(args, k) for k in ('batch', 'insize', 'truths', 'classes',
                                                   'min_side', 'max_side', 'output_std',
                                                   'seed')},
        'target_ms': 20.0,
        'results': rows,
    }
    from chainer_yolo_dist.core.atomic import write_json
    write_json(args.out, record)
    print('wrote', args.out)


if __name__ == '__main__':
    main()
