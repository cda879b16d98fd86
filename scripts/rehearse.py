#!/usr/bin/env python
"""The rehearsal at the papers' data sizes (issue 11; docs/rehearsal.md).

Builds a VOCdevkit (VOC2007 trainval 5,011, VOC2012 trainval 11,540, VOC2007 test 4,952
images with VOC XML annotations) and an ImageNet layout (1,281,167 training and 50,000
validation entries in 1,000 classes, hard links to a pool of real JPEGs) under a temporary
directory, then runs the real training scripts on them under ``mpiexec -n 4`` for a few
iterations, three starts per job (first, second with the image checks cached, and on a
one-image dataset for the network's own footprint), and reports per rank the time from
launch to the first update, the image-check time, the time per iteration and the peak
memory. Writes ``rehearsal_<job>.json`` to ``--out`` and prints a markdown table.

    make rehearse                      # all three jobs, results/bench/rehearsal_*.json
    python scripts/rehearse.py --jobs yolov2_voc_2018 --keep --workdir /tmp/rehearsal

The work directory (data, runs, caches, logs) is removed afterwards unless ``--keep``.
"""
import dataclasses
import os
import shutil
import sys
import tempfile

os.environ.setdefault('OMP_NUM_THREADS', '1')
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from chainer_yolo_dist.benchmarks import rehearsal  # noqa: E402
from chainer_yolo_dist.core import cli  # noqa: E402

JOBS = {job.name: job for job in rehearsal.JOBS}


def parse_args(argv=None):
    p = cli.Parser(description=__doc__.split('\n')[0])
    p.add_argument('--jobs', nargs='+', choices=sorted(JOBS), default=[j.name for j in
                                                                       rehearsal.JOBS])
    p.add_argument('--ranks', type=int, default=4, help='mpiexec -n (default %(default)s)')
    p.add_argument('--iterations', type=int, default=4,
                   help='updates per start (default %(default)s; the first includes start-up)')
    p.add_argument('--batchsize', type=int,
                   help='images per rank for every job (default: each job\'s, see '
                   'benchmarks/rehearsal.py JOBS)')
    p.add_argument('--scale', type=float, default=1.0,
                   help='fraction of the papers\' data sizes (default 1: the real counts)')
    p.add_argument('--imagenet-classes', type=int, default=1000)
    p.add_argument('--extra', default='', help='further options for every training command, '
                   'one string (e.g. "--model yolov2_tiny --insize 64" for a quick check)')
    p.add_argument('--timeout', type=int, default=1800, help='seconds per start')
    p.add_argument('--out', default=os.path.join(REPO, 'results', 'bench'),
                   help='where rehearsal_<job>.json go (default %(default)s)')
    p.add_argument('--workdir', help='data, runs and caches (default: a new temporary '
                   'directory)')
    p.add_argument('--keep', action='store_true', help='keep the work directory')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    workdir = args.workdir or tempfile.mkdtemp(prefix='rehearsal-')
    os.makedirs(workdir, exist_ok=True)
    jobs = [JOBS[name] for name in args.jobs]
    if args.batchsize:
        jobs = [dataclasses.replace(j, batchsize=args.batchsize) for j in jobs]
    results = []
    try:
        data = {}
        for kind in sorted({j.data for j in jobs}):
            root = os.path.join(workdir, 'data', kind)
            data[kind] = rehearsal.build_data(kind, root, args.scale, args.imagenet_classes)
            rehearsal.one_image_data(kind, os.path.join(workdir, 'data', kind + '_one_image'),
                                     args.ranks)
            print('%s data: %s, built in %.1f s (%.1f s CPU), %.1f MB on disk'
                  % (kind, data[kind]['counts'], data[kind]['build_seconds'],
                     data[kind]['build_cpu_seconds'], data[kind]['disk_bytes'] / 1e6),
                  flush=True)
        for job in jobs:
            result = rehearsal.rehearse_job(
                job, REPO, workdir, os.path.join(workdir, 'data', job.data),
                os.path.join(workdir, 'data', job.data + '_one_image'), args.ranks,
                args.iterations, args.timeout, args.extra.split(),
                log=lambda line: print(line, flush=True))
            result['data'] = data[job.data]
            result['scale'] = args.scale
            results.append(result)
            print('wrote %s' % rehearsal.write_result(args.out, result), flush=True)
    finally:
        if args.keep:
            print('kept %s' % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    for result in results:
        print('%s: %s' % (result['job'], '; '.join(result['departures'])))
    print()
    print(rehearsal.markdown_table(results))
    print()
    print('\n'.join(rehearsal.target_lines(results)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
