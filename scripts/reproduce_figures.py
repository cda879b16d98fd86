#!/usr/bin/env python
"""Redraws the papers' figures from results/published, and plots measured runs.

    python scripts/reproduce_figures.py [--runs RUN_DIR ...] [--out DIR]

Without --runs: the published-data figures (mAP, speed-up, cost against GPUs; paper 004's
stall and communication shares). With --runs: also, per group of runs, loss against epoch
(1 process beside k processes, as paper 000 Figs. 2/3), accuracy curves for classification
runs (paper 001 Fig. 3), the Frechet distance against epoch for CycleGAN runs (paper 002
Fig. 6, one curve per process count, the published FIDs in a panel apart) and the measured
speed-up. RUN_DIR is a run directory or a directory of them; what is not a run (a file, a
folder holding only ``.lock``, a folder of figures) is skipped with a note, as is a run with
no log. A call that fails leaves no output folder behind.
"""
import os
import sys

from chainer_yolo_dist.analysis import figures, runs
from chainer_yolo_dist.core import cli
from chainer_yolo_dist.core.atomic import staged_folder


def main(argv=None):
    parser = cli.Parser(description=__doc__.split('\n')[0])
    parser.add_argument('--runs', nargs='+', metavar='RUN_DIR', default=[])
    parser.add_argument('--out', help='output directory (default: a new runs/figures-<time> '
                        'in the current directory, as the training scripts write their runs; '
                        'results/figures holds the committed published figures)')
    parser.add_argument('--dpi', type=cli.COUNT, default=100)
    parser.add_argument('--no-published', action='store_true',
                        help='draw only the measured-run figures')
    args = parser.parse_args(argv)
    found, skipped = [], []
    if args.runs:
        try:  # what is not a run (runs/* holds files, lock-only folders, figures) is noted
            found = runs.find_runs(args.runs, skipped=skipped)
        except (OSError, ValueError) as e:
            parser.exit(2, 'reproduce_figures.py: error: %s\n' % e)
        for path, reason in skipped:
            print('note: skipped %s: %s' % (path, reason), file=sys.stderr)
    from chainer_yolo_dist.core.rundir import timestamped
    out = args.out or timestamped('runs', 'figures')
    if os.path.exists(out) and not os.path.isdir(out):
        parser.exit(2, 'reproduce_figures.py: error: --out %s: exists and is not a folder\n'
                    % out)
    written, notes = [], []
    try:
        with staged_folder(out) as folder:
            if not args.no_published:
                written += figures.draw_published(folder, args.dpi)
            if found:
                paths, notes = figures.draw_measured(found, folder, args.dpi)
                written += paths
    except (OSError, ValueError) as e:
        parser.exit(2, 'reproduce_figures.py: error: %s\n' % e)
    for note in notes:
        print('note: %s' % note, file=sys.stderr)
    for path in written:
        print(os.path.join(out, os.path.basename(path)))


if __name__ == '__main__':
    main()
