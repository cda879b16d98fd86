#!/usr/bin/env python
"""Measured mAP / top-1 / FID / frame mAP of runs beside the papers' value for the setting.

    python scripts/compare_map.py RUN_DIR [RUN_DIR ...] [--out PREFIX]

Each RUN_DIR is a run directory (with config.json) or a directory of them. Prints a Markdown
table; with ``--out PREFIX`` also writes it to PREFIX.md and as CSV to PREFIX.csv. A run that
departs from its paper's setting (other data, iterations, pretraining, k) is marked "not
comparable" with the reasons, and gets no difference. Every system's runs are reported:
detection mAP and classification top-1 (percent), CycleGAN's Frechet distance, SlowFast's
frame mAP (percent). What is not a finished run is skipped with a note: a run that has not
finished (no metrics.json) or cannot be read, a file (the FID extractor's weights), a folder
holding only ``.lock``, a folder of figures.

Person detectors (preset ``yolov3_person_bdd_2019``, or any detector with ``--table2-row``)
are also put beside paper 002 Table 2's row: TP, FP, FN, precision, recall, F1 and mAP@0.5
(the row is the run's training split when it is named a..g, or ``--table2-row``); with
``--out`` also written to PREFIX_table2.md.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from chainer_yolo_dist.analysis import compare, runs  # noqa: E402
from chainer_yolo_dist.core.atomic import write_text  # noqa: E402
from chainer_yolo_dist.core import cli  # noqa: E402


def main(argv=None):
    parser = cli.Parser(description=__doc__.split('\n')[0])
    parser.add_argument('run_dirs', nargs='+', metavar='RUN_DIR')
    parser.add_argument('--out', metavar='PREFIX',
                        help='also write PREFIX.md and PREFIX.csv')
    parser.add_argument('--table2-row', metavar='ROW',
                        help='paper 002 Table 2 row (a..g) to put detector runs beside')
    args = parser.parse_args(argv)
    skipped = []
    try:
        found = runs.find_runs(args.run_dirs, skipped=skipped)
        finished = [run for run in found if run.metrics is not None]
        skipped += [(run.path, 'not finished (no metrics.json)') for run in found
                    if run.metrics is None]
        rows = compare.comparison_rows(finished)
        person = compare.table2_rows(finished, args.table2_row)
    except (OSError, ValueError) as e:
        parser.exit(2, 'compare_map.py: error: %s\n' % e)
    markdown = compare.to_markdown(rows)
    sys.stdout.write(markdown)
    for path, reason in skipped:
        print('skipped %s: %s' % (path, reason))
    if person:
        table2 = compare.table2_markdown(person)
        sys.stdout.write('\nBeside paper 002 Table 2 (person detection):\n' + table2)
    if args.out:
        if person:
            write_text(args.out + '_table2.md', table2)
        write_text(args.out + '.md', markdown)
        write_text(args.out + '.csv', compare.to_csv(rows))
        print('wrote %s.md and %s.csv' % (args.out, args.out))


if __name__ == '__main__':
    main()
