#!/usr/bin/env python
"""Measured mAP / top-1 of runs beside the papers' published value for the same setting.

    python scripts/compare_map.py RUN_DIR [RUN_DIR ...] [--out PREFIX]

Each RUN_DIR is a run directory (with config.json) or a directory of them. Prints a Markdown
table and writes it to PREFIX.md and as CSV to PREFIX.csv (default: ``comparison`` in the
first RUN_DIR).
"""
import argparse
import os
import sys

from chainer_yolo_dist.analysis import compare, runs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('run_dirs', nargs='+', metavar='RUN_DIR')
    parser.add_argument('--out', metavar='PREFIX',
                        help='write PREFIX.md and PREFIX.csv (default: RUN_DIR/comparison)')
    args = parser.parse_args(argv)
    try:
        rows = compare.comparison_rows(runs.find_runs(args.run_dirs))
    except (OSError, ValueError) as e:
        parser.exit(2, 'compare_map.py: error: %s\n' % e)
    prefix = args.out or os.path.join(args.run_dirs[0], 'comparison')
    markdown = compare.to_markdown(rows)
    compare.write_text(prefix + '.md', markdown)
    compare.write_text(prefix + '.csv', compare.to_csv(rows))
    sys.stdout.write(markdown)
    print('wrote %s.md and %s.csv' % (prefix, prefix))


if __name__ == '__main__':
    main()
