#!/usr/bin/env python
"""Redraws the papers' figures from results/published, and plots measured runs.

    python scripts/reproduce_figures.py [--runs RUN_DIR ...] [--out DIR]

Without --runs: the published-data figures (mAP, speed-up, cost against GPUs; paper 004's
stall and communication shares). With --runs: also, per group of runs, loss against epoch
(1 process beside k processes, as paper 000 Figs. 2/3), accuracy curves for classification
runs (paper 001 Fig. 3), the Frechet distance against epoch for CycleGAN runs (paper 002
Fig. 6, one curve per process count, the published FIDs in a panel apart) and the measured
speed-up. RUN_DIR is a run directory or a directory
of them.
"""
import os
import sys

from chainer_yolo_dist.analysis import figures, runs
from chainer_yolo_dist.core import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv=None):
    parser = cli.Parser(description=__doc__.split('\n')[0])
    parser.add_argument('--runs', nargs='+', metavar='RUN_DIR', default=[])
    parser.add_argument('--out', help='output directory (default: a new runs/figures-<time>; '
                        'results/figures holds the committed published figures)')
    parser.add_argument('--dpi', type=int, default=100)
    parser.add_argument('--no-published', action='store_true',
                        help='draw only the measured-run figures')
    args = parser.parse_args(argv)
    from chainer_yolo_dist.core.rundir import timestamped
    args.out = args.out or timestamped(os.path.join(REPO, 'runs'), 'figures')
    written = []
    if not args.no_published:
        written += figures.draw_published(args.out, args.dpi)
    if args.runs:
        try:
            found = runs.find_runs(args.runs)
            paths, notes = figures.draw_measured(found, args.out, args.dpi)
        except (OSError, ValueError) as e:
            parser.exit(2, 'reproduce_figures.py: error: %s\n' % e)
        written += paths
        for note in notes:
            print('note: %s' % note, file=sys.stderr)
    for path in written:
        print(path)


if __name__ == '__main__':
    main()
