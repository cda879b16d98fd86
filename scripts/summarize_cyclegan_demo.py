#!/usr/bin/env python
"""The end of ``make demo-cyclegan``: Table 2's columns for both detectors, the Frechet
distances and the cycle loss, printed and written to DEMO_DIR/summary.json and summary.md.

    python scripts/summarize_cyclegan_demo.py DEMO_DIR

DEMO_DIR holds the runs ``cyclegan``, ``detector_a`` and ``detector_c`` (docs/cyclegan.md).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from chainer_yolo_dist.analysis import cyclegan_demo  # noqa: E402
from chainer_yolo_dist.core.atomic import write_json, write_text  # noqa: E402
from chainer_yolo_dist.core import cli  # noqa: E402


def main(argv=None):
    parser = cli.Parser(description=__doc__.split('\n')[0])
    parser.add_argument('demo_dir', metavar='DEMO_DIR')
    args = parser.parse_args(argv)
    try:
        summary = cyclegan_demo.demo_summary(args.demo_dir)
    except (OSError, ValueError) as e:
        parser.exit(2, 'summarize_cyclegan_demo.py: error: %s\n' % e)
    text = cyclegan_demo.format_summary(summary)
    sys.stdout.write(text)
    write_json(os.path.join(args.demo_dir, 'summary.json'), summary)
    write_text(os.path.join(args.demo_dir, 'summary.md'), text)
    print('wrote %s and summary.md' % os.path.join(args.demo_dir, 'summary.json'))
    return 0


if __name__ == '__main__':
    sys.exit(main())
