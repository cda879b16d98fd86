#!/usr/bin/env python
"""Loader benchmark: JPEG decode + augmentation images/s on one core, workers per GPU.

Measures :mod:`chainer_yolo_dist.benchmarks.loader`'s cases (detection at 416 and 608,
classification at 224, on 500x375 JPEGs generated into a temporary directory) in this one
process, single-threaded, and writes ``loader.json`` and ``loader.png`` to ``--out`` (default:
a new ``runs/bench/<UTC timestamp>/``; the committed figures are made with ``--out
results/bench``). See ``docs/loader.md``.

One thread: a loader worker is one process per core, so the per-core rate is the number that
sizes a node. ``OMP_NUM_THREADS=1`` (set here before NumPy is imported) keeps BLAS/OpenMP from
starting threads, and ``cv2.setNumThreads(0)`` makes every OpenCV call run in the calling
thread instead of spreading over OpenCV's pool; with either left on, one process would use
several cores and the rate would no longer be per core. On a shared machine run it as
``nice -n -5 python scripts/bench_loader.py`` (where allowed): the record keeps the niceness
and the load average before and after.
"""
import os

for _name in ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS'):
    os.environ[_name] = '1'

import json  # noqa: E402
import sys  # noqa: E402

import cv2  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from chainer_yolo_dist.benchmarks import loader as bench_loader  # noqa: E402
from chainer_yolo_dist.core import cli  # noqa: E402


def main(argv=None):
    parser = cli.Parser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default=None,
                        help='output directory (default: a new runs/bench/<timestamp>/)')
    parser.add_argument('--n-images', type=int, default=48, help='JPEGs generated (default 48)')
    parser.add_argument('--repeat', type=int, default=3,
                        help='passes over the images per case (default 3)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--quality', type=int, default=bench_loader.QUALITY,
                        help='JPEG quality (default %d: files of VOC\'s mean size)'
                        % bench_loader.QUALITY)
    parser.add_argument('--cpu', type=int, default=None,
                        help='pin the process to this CPU (default: let the kernel choose)')
    args = parser.parse_args(argv)
    if args.n_images < 1 or args.repeat < 1:
        parser.error('--n-images and --repeat must be at least 1')
    cv2.setNumThreads(0)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    out_dir = args.out or bench_loader.default_out_dir()
    record = bench_loader.run(n_images=args.n_images, repeat=args.repeat, seed=args.seed,
                              quality=args.quality)
    json_path, png_path = bench_loader.write_outputs(record, out_dir)
    print('load average before %s, after %s; niceness %d'
          % (record['load_average_before'], record['load_average_after'],
             record['environment']['niceness']))
    print('%-20s %-14s %9s %9s %10s %9s  workers/GPU for 200, 1000 img/s'
          % ('case', 'decode', 'decode ms', 'aug ms', 'img/s/core', 'img/s wall'))
    for name, case in record['cases'].items():
        for reader, entry in case['readers'].items():
            workers = entry['workers_per_gpu']
            target = case['target_images_per_s_per_core']
            print('%-20s %-14s %9.2f %9.2f %10.1f %9.1f  %s, %s%s'
                  % (name, reader, entry['decode_ms'], case['augment_ms'],
                     entry['images_per_s_per_core'], entry['images_per_s_wall'],
                     workers['200'], workers['1000'],
                     '' if target is None else '  (target %d: %s)'
                     % (target, 'met' if entry['meets_target'] else 'NOT met')))
    print('wrote %s and %s' % (json_path, png_path))
    return record


if __name__ == '__main__':
    json.dumps(main())  # the record is JSON-able
