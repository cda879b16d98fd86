#!/usr/bin/env python
"""Epoch-boundary stall benchmark (paper 004 sec. 4.2, Table 3) on this machine.

For 0, 2, 4, 6, 8 loader workers, with the workers kept across epochs (the package's default)
and re-created each epoch (``--no-persistent-workers``, as PyTorch without persistent
workers): the stall at each epoch boundary and the time of 10 iterations. Writes
``stall.json`` and ``stall.png`` to ``--out`` (default: a new ``runs/bench/<UTC time>/``; the
committed figure is made with ``--out results/bench``). See
:mod:`chainer_yolo_dist.benchmarks.stall` and docs/slowfast.md.
"""
import os

for _name in ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS'):
    os.environ[_name] = '1'

import sys  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from chainer_yolo_dist.benchmarks import stall  # noqa: E402
from chainer_yolo_dist.core import cli, mpi  # noqa: E402


def main(argv=None):
    p = cli.Parser(description=__doc__.split('\n')[0])
    p.add_argument('--out', help='output directory (default: a new runs/bench/<time>/)')
    p.add_argument('--workers', type=int, nargs='+', default=list(stall.WORKERS))
    p.add_argument('--n-clips', type=int, default=96, help='clips per epoch (default 96)')
    p.add_argument('--batchsize', type=int, default=8, help='clips per batch (paper 004: 8)')
    p.add_argument('--epochs', type=int, default=3, help='epochs (boundaries + 1)')
    p.add_argument('--step-seconds', type=float, default=0.,
                   help='simulated accelerator time per iteration (a sleep; default 0)')
    p.add_argument('--annotations', type=int, default=stall.AVA_TRAIN_LABELS,
                   help='AVA-like annotation records the dataset carries (default: paper '
                   '004\'s 195k training labels)')
    p.add_argument('--clip-frames', type=int, default=16)
    p.add_argument('--clip-size', type=int, default=64)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--append', action='store_true', help='add these worker counts to the '
                   'stall.json already in --out (same settings), so that a busy machine can '
                   'measure them in several shorter runs')
    args = p.parse_args(argv)
    if args.epochs < 2 or args.n_clips < 2 * args.batchsize:
        p.error('need --epochs >= 2 and at least two batches per epoch')
    mpi.start_forkserver()  # the workers start as in the training scripts
    print('%8s %-11s %10s %12s %10s %12s' % ('workers', 'workers', 'stall s', 'epoch extra s',
                                             'start-up s', '10 iter. s'), flush=True)

    def show(r):
        print('%8d %-11s %10.3f %12.3f %10.3f %12.3f'
              % (r['workers'], 'kept' if r['persistent'] else 're-created',
                 r['mean_stall_s'], stall.mean_epoch_excess(r), r['startup_s'],
                 r['ten_iterations_s']), flush=True)

    record = stall.run(args.workers, args.n_clips, args.batchsize, args.epochs,
                       args.step_seconds, args.annotations, args.clip_frames, args.clip_size,
                       args.seed, log=show)
    if args.append:
        if not args.out:
            p.error('--append needs --out')
        record = stall.merge(os.path.join(args.out, 'stall.json'), record)
    json_path, png_path = stall.write_outputs(record, args.out or stall.default_out_dir())
    print('load average before %s, after %s' % (record['load_average_before'],
                                                record['load_average_after']))
    print('wrote %s and %s' % (json_path, png_path))
    return 0


if __name__ == '__main__':
    sys.exit(main())
