#!/usr/bin/env python
"""The data-parallelism study (issue 14, paper 003): sync, sync with LARS, async (parameter
server), local (periodic averaging) and stale (one step late) trained side by side on the
synthetic classification crops at several k, then the table and figures (docs/parallelism.md).

    python scripts/study_parallelism.py              # the default (make study-parallelism)
    python scripts/study_parallelism.py --workers 2 --epochs 2 --warmup-epochs 1 \\
        --warmup-hold-epochs 0.5 --n-train-images 128 --n-test-images 32 \\
        --out runs/tiny-parallelism
    python scripts/study_parallelism.py --report-only runs/parallelism-20260101-120000

``sync`` runs k workers as virtual ranks of at most --ranks processes; ``async``, ``local``
and ``stale`` take no virtual ranks, so k workers are k real ranks (``async`` one more, its
server). Arguments after ``--`` go to every train_darknet.py run, e.g. ``-- --seed 1``.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from chainer_yolo_dist.analysis import study_parallelism as sp  # noqa: E402
from chainer_yolo_dist.core import cli  # noqa: E402


def parse_args(argv=None):
    p = cli.Parser(description=__doc__,
                   formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--workers', type=cli.positive_int_list, default=list(sp.DEFAULT_WORKERS),
                   help='the values of k (default %s)'
                   % ','.join(str(k) for k in sp.DEFAULT_WORKERS))
    p.add_argument('--variants', nargs='+', default=list(sp.VARIANTS),
                   choices=list(sp.VARIANTS), help='(default: all)')
    p.add_argument('--ranks', type=cli.COUNT, default=sp.DEFAULT_RANKS,
                   help='most processes of a sync run (default %(default)s)')
    p.add_argument('--epochs', type=cli.COUNT, default=sp.DEFAULT_EPOCHS,
                   help='epochs of every run (default %(default)s)')
    p.add_argument('--warmup-epochs', type=cli.NON_NEGATIVE, default=sp.DEFAULT_WARMUP_EPOCHS,
                   help='epoch at which the warmup reaches the peak (default %(default)s)')
    p.add_argument('--warmup-hold-epochs', type=cli.NON_NEGATIVE,
                   default=sp.DEFAULT_WARMUP_HOLD_EPOCHS,
                   help='epochs at the first rate eta (default %(default)s)')
    p.add_argument('--n-train-images', type=cli.COUNT, default=sp.DEFAULT_N_TRAIN)
    p.add_argument('--n-test-images', type=cli.COUNT, default=sp.DEFAULT_N_TEST)
    p.add_argument('--target', type=cli.Bounded(float, 0, 1), default=sp.DEFAULT_TARGET,
                   help='validation top-1 of the time-to-target column (default %(default)s)')
    p.add_argument('--run-timeout', type=cli.POSITIVE, default=sp.DEFAULT_RUN_TIMEOUT,
                   help='seconds one run may take before it is ended (default %(default)s)')
    cli.add_study_options(p, 'parallelism', 'train_darknet.py')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from chainer_yolo_dist.analysis import parallelism_report
    if args.report_only:
        for path in parallelism_report.write_report(args.report_only):
            print('wrote %s' % path)
        return 0
    out = args.out or os.path.join(
        'runs', time.strftime('parallelism-%Y%m%d-%H%M%S', time.gmtime()))
    try:
        record = sp.run_study(
            out, workers=args.workers, variants=args.variants, max_ranks=args.ranks,
            epochs=args.epochs, warmup_epochs=args.warmup_epochs,
            warmup_hold_epochs=args.warmup_hold_epochs,
            n_train=args.n_train_images, n_test=args.n_test_images, target=args.target,
            extra=args.train_args, run_timeout=args.run_timeout, overwrite=args.overwrite)
    except ValueError as e:
        print('study_parallelism.py: error: %s' % e, file=sys.stderr)
        return 2
    failed = [r['name'] for r in record['runs'] if r['status'] != 'finished']
    print('study: %d runs in %.0f s; outputs in %s' % (len(record['runs']),
                                                       record['wall_seconds'], out))
    if failed:
        print('study_parallelism.py: runs that did not finish (see %s): %s'
              % (os.path.join(out, 'logs'), ', '.join(failed)), file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
