#!/usr/bin/env python
"""Training throughput for 1 and 2 (or more) processes, and where a step's time goes.

    python scripts/benchmark.py                                  # YOLOv2 at 416, batch 4
    python scripts/benchmark.py --model yolov3_small --insize 128 --batchsize 8

For each process count it launches ``mpiexec -n K`` (naive communicator on CPUs, one thread per
process) running real training steps (chainer_yolo_dist.benchmarks.train_step), then prints a table
of images/s per process and in total, the speed-up over one process, and each phase's share of a
step (data loading, forward, loss with target assignment, backward, AllReduce, update). Writes
``results/bench/train_step_<model>_<insize>.json`` and a figure beside it. A benchmark, not a test:
run it on an otherwise idle machine.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from chainer_yolo_dist.core import cli  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def parse_args(argv=None):
    p = cli.Parser(description=__doc__,
                   formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--model', default='yolov2')
    p.add_argument('--insize', type=int, default=416)
    p.add_argument('--batchsize', type=int, default=4, help='images per process')
    p.add_argument('--steps', type=int, default=5)
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--processes', type=int, nargs='+', default=[1, 2])
    p.add_argument('--loaderjob', type=int, default=1)
    p.add_argument('--out', help='output directory (default: a new runs/bench/train_step-<time>;'
                   ' results/bench holds the committed measurements)')
    p.add_argument('--worker', help=argparse.SUPPRESS)  # internal: result file of one run
    return p.parse_args(argv)


def worker(args):
    from chainer_yolo_dist.core import mpi as distributed
    distributed.start_forkserver()
    distributed.abort_on_exception()
    import chainermn
    from chainer_yolo_dist.benchmarks.train_step import time_steps
    comm = chainermn.create_communicator('naive')
    result = time_steps(comm, args.model, args.insize, args.batchsize, args.steps,
                        args.warmup, args.loaderjob)
    if comm.rank == 0:
        with open(args.worker, 'w') as f:
            json.dump(result, f)


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    from chainer_yolo_dist.benchmarks.train_step import PHASES
    from chainer_yolo_dist.core.atomic import write_json
    env = dict(os.environ, OMP_NUM_THREADS='1', CHAINERMN_FORCE_ABORT_ON_EXCEPTION='1',
               MPLBACKEND='Agg')
    runs = []
    for k in args.processes:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, 'result.json')
            cmd = [os.path.join(os.path.dirname(sys.executable), 'mpiexec'), '-n', str(k),
                   sys.executable, os.path.abspath(__file__), '--worker', path,
                   '--model', args.model, '--insize', str(args.insize),
                   '--batchsize', str(args.batchsize), '--steps', str(args.steps),
                   '--warmup', str(args.warmup), '--loaderjob', str(args.loaderjob)]
            subprocess.run(cmd, cwd=REPO, env=env, check=True, timeout=3600)
            with open(path) as f:
                runs.append(json.load(f))
    base = runs[0]['images_per_second_total']
    print('%s at %d, batch %d per process, %d timed steps, one thread per process'
          % (args.model, args.insize, args.batchsize, args.steps))
    header = '%-9s %9s %9s %8s ' % ('processes', 'img/s/pr', 'img/s', 'speedup') + \
        ' '.join('%9s' % p for p in PHASES)
    print(header)
    for r in runs:
        r['speedup_vs_first'] = r['images_per_second_total'] / base
        print('%-9d %9.2f %9.2f %7.2fx ' % (r['processes'], r['images_per_second_per_process'],
                                            r['images_per_second_total'], r['speedup_vs_first'])
              + ' '.join('%8.1f%%' % (100 * r['phase_share'][p]) for p in PHASES))
    if not args.out:
        from chainer_yolo_dist.core.rundir import timestamped
        args.out = timestamped(os.path.join(REPO, 'runs', 'bench'), 'train_step')
    stem = os.path.join(args.out, 'train_step_%s_%d' % (args.model, args.insize))
    write_json(stem + '.json', {
        'machine': {'platform': platform.platform(), 'processor': platform.processor(),
                    'cpus': os.cpu_count(), 'python': platform.python_version()},
        'how': 'scripts/benchmark.py ' + ' '.join(argv if argv is not None else sys.argv[1:]),
        'runs': runs})
    _plot(runs, PHASES, stem + '.png', args)
    print('wrote %s.json and %s.png' % (stem, stem))
    return 0


def _plot(runs, phases, path, args):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 4))
    labels = [str(r['processes']) for r in runs]
    bottom = [0.0] * len(runs)
    for phase in phases:
        values = [r['phase_seconds'][phase] for r in runs]
        ax0.bar(labels, values, bottom=bottom, label=phase)
        bottom = [b + v for b, v in zip(bottom, values)]
    ax0.set_xlabel('processes')
    ax0.set_ylabel('seconds per step (mean over ranks)')
    ax0.legend(fontsize=8)
    ax0.set_title('%s %d, batch %d per process' % (args.model, args.insize, args.batchsize))
    ks = [r['processes'] for r in runs]
    ax1.plot(ks, [r['speedup_vs_first'] for r in runs], 'o-', label='measured')
    ax1.plot(ks, [k / ks[0] for k in ks], 'k--', label='ideal')
    ax1.set_xlabel('processes')
    ax1.set_ylabel('total throughput / %d process' % ks[0])
    ax1.set_xticks(ks)
    ax1.legend()
    ax1.set_title('speed-up (images/s, all ranks)')
    fig.tight_layout()
    from chainer_yolo_dist.core.atomic import save_figure as save
    save(fig, path, dpi=90)
    plt.close(fig)


if __name__ == '__main__':
    sys.exit(main())
