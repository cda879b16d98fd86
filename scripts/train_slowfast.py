#!/usr/bin/env python
"""Train SlowFast action detection data-parallel with ChainerMN, as in paper 004.

    mpiexec -n 512 python scripts/train_slowfast.py --preset slowfast_ava_2021 \\
        --data-dir AVA --model slowfast_r50_k7 --pretrained kinetics_sf.npz
    mpiexec -n 2 python scripts/train_slowfast.py        # CPU demo on synthetic action clips

(``kinetics_sf.npz``: PySlowFast's Kinetics weights converted by
``scripts/convert_slowfast_weights.py``; their laterals have a 7x1x1 temporal kernel, hence
``--model slowfast_r50_k7``.)

Every setting comes from a preset (``chainer_yolo_dist/presets/*.toml``, each value citing its
paper and section); an option given on the command line overrides the preset's value. The
batch is in labelled clips per process (paper 004: 8 per GPU); the learning rate is
``eta * global_batch / reference_batch`` (paper 004: 0.05 per 32, i.e. 0.05 per node), reached
by linear warmup. Run with ``-h`` for every option; see docs/slowfast.md.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from chainer_yolo_dist.core import cli  # noqa: E402

OUT_PARENT = 'runs'


def parse_args(argv=None):
    p, g = cli.training_parser(__doc__, 'slowfast_demo', 'docs/slowfast.md')
    g.add_argument('--model', help='slowfast_r50, slowfast_r50_k7 (7x1x1 laterals, '
                   'as PySlowFast\'s published weights), slow_r50, slowfast_narrow or '
                   'slow_narrow')
    g.add_argument('--dataset', help='synthetic_actions or ava')
    cli.add_preset_overrides(
        g, lr_rules_help='custom (reference_batch from the preset: paper 004 0.05 per 32 '
        'boxes), k_eta, kn_256_eta, literal_knEta', insize_help='clip side in pixels '
        '(multiple of 32; AVA: the short side)')
    g.add_argument('--clip-frames', type=cli.COUNT, help='Fast-pathway frames per clip (paper 004 '
                   'sec. 3.2: 16; PySlowFast SLOWFAST_32x2: 32)')

    d = p.add_argument_group('data')
    d.add_argument('--data-dir', help='AVA v2.2 directory (CSV files, label maps, frames/)')
    d.add_argument('--n-train-clips', type=cli.COUNT, default=2000, help='synthetic train clips')
    d.add_argument('--n-test-clips', type=cli.COUNT, default=200, help='synthetic test clips')
    d.add_argument('--max-actors', type=cli.COUNT, default=3, help='synthetic actors per clip, '
                   'at most')
    d.add_argument('--eval-boxes', help='AVA: evaluate on a person detector\'s boxes, a CSV '
                   'in AVA\'s format (video_id, second, x1, y1, x2, y2, [action_id,] score; '
                   'normalised), e.g. PySlowFast\'s ava_detection_val_boxes_and_labels.csv '
                   '(paper 004 used Detectron\'s); default: the ground-truth boxes of '
                   'ava_val_v2.2.csv. metrics.json records which (eval_boxes)')
    d.add_argument('--eval-score-thresh', type=cli.Bounded(float, 0, 1), default=0.8,
                   help='with --eval-boxes: keep boxes scoring at least this (default '
                   '%(default)s, PySlowFast AVA.DETECTION_SCORE_THRESH)')
    d.add_argument('--no-augment', dest='augment', action='store_false',
                   help='AVA: no scale jitter, crop or flip')
    d.add_argument('--dropout', type=cli.FRACTION, help='dropout before the head\'s linear layer '
                   '(default: 0.5, PySlowFast MODEL.DROPOUT_RATE)')

    r = p.add_argument_group('run')
    cli.add_run_options(r, out=OUT_PARENT, eval_interval=0, eval_batchsize=4)
    r.add_argument('--pretrained', help='.npz holding a SlowFast trunk of this layout (e.g. '
                   'Kinetics-600 weights, paper 004 sec. 3.3, converted by '
                   'scripts/convert_slowfast_weights.py; or a model.npz of this script); '
                   'without it the network is trained from scratch')
    return p.parse_args(argv)


def main(argv=None):
    return cli.run(parse_args(argv), 'slowfast', OUT_PARENT)


if __name__ == '__main__':
    sys.exit(main())
