#!/usr/bin/env python
"""`make demo`: the whole pipeline on the embedded synthetic shapes, on 2 CPU processes.

1. renders a grid of training samples with their boxes and class names (samples.png);
2. trains the small YOLOv3 with ``mpiexec -n 2 scripts/train_yolo.py`` (preset
   ``synthetic_demo``: the papers' linear scaling, warmup and step decay at CPU scale);
3. evaluates on the held-out test split (VOC07 mAP at IoU 0.5) and writes metrics.json;
4. puts the result beside the papers' (compare_map.py) and plots the run's loss curves.

Everything goes under a new ``runs/demo-<UTC time>/`` (or ``--out``; ``make demo-results``
refreshes the committed ``results/runs/demo/`` with ``--out results/runs/demo --overwrite``).
Extra arguments are passed to train_yolo.py, e.g. ``--seed 1``.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from chainer_yolo_dist.core import cli  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
BIN = os.path.dirname(sys.executable)


def run(cmd, timeout, env=None):
    print('+ ' + ' '.join(cmd), flush=True)
    subprocess.run(cmd, cwd=REPO, env=env, check=True, timeout=timeout)


def main(argv=None):
    p = cli.Parser(description=__doc__,
                   formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', help='run directory (default: a new runs/demo-<UTC time>)')
    p.add_argument('--processes', type=int, default=2)
    args, train_args = p.parse_known_args(argv)
    from chainer_yolo_dist.core.rundir import timestamped
    args.out = args.out or timestamped('runs', 'demo')
    env = dict(os.environ, OMP_NUM_THREADS='1', MPLBACKEND='Agg',
               CHAINERMN_FORCE_ABORT_ON_EXCEPTION='1')

    start = time.time()
    run([os.path.join(BIN, 'mpiexec'), '-n', str(args.processes), sys.executable,
         'scripts/train_yolo.py', '--out', args.out, '--no-progress', '--log-interval', '50']
        + train_args,
        timeout=3600, env=env)

    from chainer_yolo_dist.datasets import SyntheticShapesDataset
    from chainer_yolo_dist.datasets.visualize import render_samples
    render_samples(SyntheticShapesDataset('train', 16), os.path.join(REPO, args.out,
                                                                     'samples.png'))
    print('wrote %s' % os.path.join(args.out, 'samples.png'))
    run([sys.executable, 'scripts/compare_map.py', args.out, '--out',
         os.path.join(args.out, 'comparison')], timeout=300, env=env)
    run([sys.executable, 'scripts/reproduce_figures.py', '--runs', args.out, '--no-published',
         '--out', os.path.join(args.out, 'figures')], timeout=300, env=env)
    with open(os.path.join(REPO, args.out, 'metrics.json')) as f:
        metrics = json.load(f)
    print('demo: mAP %.3f on the synthetic test split, training %.0f s, whole demo %.0f s; '
          'outputs in %s' % (metrics['map'], metrics['elapsed_seconds'], time.time() - start,
                             args.out))
    return 0


if __name__ == '__main__':
    sys.exit(main())
