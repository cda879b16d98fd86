#!/usr/bin/env python
"""Summarise ``make demo-slowfast``: SlowFast against Slow-only, chance and the published pair.

    python scripts/summarize_slowfast_demo.py results/runs/demo-slowfast

Reads ``<dir>/slowfast`` and ``<dir>/slow`` (run directories of ``train_slowfast.py``), prints
frame mAP@0.5 on the held-out clips of both, the chance level on those clips, paper 004's
published AVA pair (SlowFast 24.2, Slow-only 19.0: another dataset) and each run's profile in
Table 4's form, and writes ``<dir>/summary.json``
(``chainer_yolo_dist/analysis/slowfast_demo.py``).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from chainer_yolo_dist.analysis import slowfast_demo  # noqa: E402
from chainer_yolo_dist.core import cli  # noqa: E402


def main(argv=None):
    p = cli.Parser(description=__doc__,
                   formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('demo_dir', help='directory holding the slowfast/ and slow/ runs')
    args = p.parse_args(argv)
    try:
        summary = slowfast_demo.write_summary(args.demo_dir)
    except ValueError as e:
        sys.exit(str(e))
    for line in slowfast_demo.format_summary(summary):
        print(line)
    print('wrote %s' % os.path.join(args.demo_dir, 'summary.json'))
    return 0


if __name__ == '__main__':
    sys.exit(main())
