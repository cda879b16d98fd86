#!/usr/bin/env python
"""The papers' scaling experiment: one preset trained at a list of k workers, then its table
and figures (docs/study.md).

    python scripts/study.py                        # the default study (make study: about an hour)
    python scripts/study.py --workers 1,2,4 --epochs 5 --steps 3 4 --out runs/small-study
    python scripts/study.py --report-only runs/study-20260101-120000   # redraw a study

Each k runs as ``mpiexec -n R scripts/train_yolo.py --virtual-ranks k/R`` (R = the largest
divisor of k not above --ranks), with the same epochs, steps and every other setting; then
the largest k again without warmup and with the square-root scaling rule. Arguments after
``--`` go to every train_yolo.py run, e.g. ``-- --seed 1``.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from chainer_yolo_dist.analysis import study  # noqa: E402
from chainer_yolo_dist.core import cli  # noqa: E402


def parse_args(argv=None):
    p = cli.Parser(description=__doc__,
                   formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--preset', default=study.DEFAULT_PRESET)
    p.add_argument('--workers', type=cli.positive_int_list,
                   default=list(study.DEFAULT_WORKERS), help='the values of k (default '
                   '%s)' % ','.join(str(k) for k in study.DEFAULT_WORKERS))
    p.add_argument('--ranks', type=cli.COUNT, default=study.DEFAULT_RANKS,
                   help='most real MPI ranks per run (default %(default)s)')
    p.add_argument('--epochs', type=cli.COUNT, default=study.DEFAULT_EPOCHS,
                   help='epochs of every run (default %(default)s)')
    p.add_argument('--steps', type=cli.POSITIVE, nargs='*',
                   help='x0.1 decay epochs of every run (default: 70%%%% and 90%%%% of '
                   '--epochs, %s for %d)' % (' '.join('%g' % s for s in study.DEFAULT_STEPS),
                                             study.DEFAULT_EPOCHS))
    p.add_argument('--n-train-images', type=cli.COUNT, default=study.DEFAULT_N_TRAIN,
                   help='synthetic training images (default %(default)s)')
    p.add_argument('--ablations', nargs='*', default=list(study.ABLATIONS),
                   choices=list(study.ABLATIONS), help='at the largest k (default: all)')
    p.add_argument('--run-timeout', type=cli.POSITIVE, default=3600,
                   help='seconds one run may take before it is ended (default %(default)s)')
    p.add_argument('--link-bandwidth', type=cli.POSITIVE,
                   help='AllReduce bytes/s for the scaling model (default: from the measured '
                   'benchmark in results/bench)')
    cli.add_study_options(p, 'study', 'train_yolo.py')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from chainer_yolo_dist.analysis import study_report
    options = {'link_bandwidth': args.link_bandwidth}
    if args.report_only:
        for path in study_report.write_report(args.report_only, **options):
            print('wrote %s' % path)
        return 0
    out = args.out or os.path.join('runs', time.strftime('study-%Y%m%d-%H%M%S', time.gmtime()))
    try:
        record = study.run_study(
            out, preset=args.preset, workers=args.workers, max_ranks=args.ranks,
            epochs=args.epochs,
            steps=study.default_steps(args.epochs) if args.steps is None else args.steps,
            n_train=args.n_train_images,
            ablations=args.ablations, extra=args.train_args, run_timeout=args.run_timeout,
            overwrite=args.overwrite, report_options=options)
    except ValueError as e:
        print('study.py: error: %s' % e, file=sys.stderr)
        return 2
    failed = [r['name'] for r in record['runs'] if r['status'] not in ('finished', 'diverged')]
    print('study: %d runs in %.0f s (%s); outputs in %s'
          % (len(record['runs']), record['wall_seconds'],
             ', '.join('%s %s' % (r['name'], r['status']) for r in record['runs']), out))
    if failed:
        print('study.py: runs that failed (see %s): %s'
              % (os.path.join(out, 'logs'), ', '.join(failed)), file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
