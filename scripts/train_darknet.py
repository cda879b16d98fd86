#!/usr/bin/env python
"""Train the Darknet-19 / Darknet-53 ImageNet classifiers data-parallel with ChainerMN.

    mpiexec -n 64 python scripts/train_darknet.py --preset darknet53_imagenet_2019 \\
        --data-dir ILSVRC2012                     # paper 001 sec. 4.1
    mpiexec -n 2 python scripts/train_darknet.py  # CPU demo on synthetic shapes

Every setting comes from a preset (``chainer_yolo_dist/presets/*.toml``); an option given on
the command line overrides the preset's value. The ImageNet presets follow paper 001 sec. 4.1:
``lr = k * n / 256 * eta`` with eta = 0.1 and n = 32, the first epoch at eta then a linear
ramp to the peak at epoch 5, polynomial decay of power 2, 200 epochs, momentum 0.9, weight
decay 0.0005, 224 x 224 input. The YOLO9000 fine-tuning at 448 is a second run started from
the first one's ``model.npz`` (docs/darknet_training.md):

    python scripts/train_darknet.py --preset darknet19_imagenet_2019 --data-dir ILSVRC2012 \\
        --pretrained RUN224/model.npz --insize 448 --eta 1e-3 --epochs 10 \\
        --warmup-epochs 0 --warmup-hold-epochs 0

Outputs in --out: log, config.json, metrics.json (top1, top5, ...), accuracy.png, loss.png,
snapshots and model.npz (the classifier alone: what ``train_yolo.py --pretrained`` takes).
Run with ``-h`` for every option.
"""
import argparse
import fractions
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from chainer_yolo_dist.core import cli  # noqa: E402

OUT_PARENT = 'runs'

# --dataset synthetic means the classification crops of the synthetic shapes.
DATASET_NAMES = {'synthetic': 'synthetic_classification',
                 'synthetic_classification': 'synthetic_classification',
                 'imagenet': 'imagenet'}


def _dataset(value):
    try:
        return DATASET_NAMES[value]
    except KeyError:
        raise argparse.ArgumentTypeError('choose synthetic or imagenet, not %r' % value)


def _fraction(value):
    try:
        scale = float(fractions.Fraction(value))
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError('expected a number such as 1, 0.25 or 1/8, not %r'
                                         % value)
    if scale <= 0:
        raise argparse.ArgumentTypeError('must be positive, not %r' % value)
    return scale


def parse_args(argv=None):
    p, g = cli.training_parser(__doc__, 'synthetic_classification_demo')
    g.add_argument('--model', choices=['darknet19', 'darknet53', 'darknet_small', 'cnn11'])
    g.add_argument('--dataset', type=_dataset, help='synthetic or imagenet')
    cli.add_preset_overrides(
        g, lr_rules_help='kn_256_eta (lr = k*n/256*eta, paper 001), k_eta, literal_knEta, '
        'sqrt_k_eta (sqrt(k)*eta)',
        insize_help='training and validation input size (multiple of 32): 224, or 448 for '
        'the fine-tuning stage')
    g.add_argument('--n-class', type=cli.COUNT, help='synthetic classes (ImageNet: from the data)')

    r = p.add_argument_group('run')
    cli.add_parallelism_options(p.add_argument_group('data parallelism'))
    cli.add_run_options(r, out=OUT_PARENT, eval_interval=1,
                        eval_batchsize=64)
    r.add_argument('--channels-scale', type=_fraction,
                   help='width factor of every convolution: 1 is the paper model (default on '
                   'ImageNet), 1/8 the CPU demo (default on synthetic data)')
    r.add_argument('--data-dir', help='ImageNet root: train/<wnid>/*.JPEG and '
                   'val/<wnid>/*.JPEG, or the root of the --train-list/--val-list paths')
    r.add_argument('--train-list', help='"path label" lines for training (list layout)')
    r.add_argument('--val-list', help='"path label" lines for validation (list layout)')
    r.add_argument('--decode-images', dest='image_check', action='store_const',
                   const='decode', default=argparse.SUPPRESS,
                   help='deprecated: --image-check decode')
    r.add_argument('--no-check-images', dest='image_check', action='store_const',
                   const='none', default=argparse.SUPPRESS,
                   help='deprecated: --image-check none')
    r.add_argument('--n-train-images', type=cli.COUNT, default=1024, help='synthetic train size')
    r.add_argument('--n-test-images', type=cli.COUNT, default=256, help='synthetic test size')
    r.add_argument('--image-size', type=cli.COUNT, default=32, help='synthetic image size')
    r.add_argument('--pretrained', help='classifier (model.npz or snapshot of this script) to '
                   'start from, same network and classes: the 448 fine-tuning stage')
    r.add_argument('--no-augment', dest='augment', action='store_false',
                   help='centre crop only, no augmentation')
    r.add_argument('--min-crop', type=cli.COUNT, help='shortest side before the random crop '
                   '(default --insize, Darknet\'s)')
    r.add_argument('--max-crop', type=cli.COUNT, help='longest side before the random crop '
                   '(default 2 x --insize, Darknet\'s)')
    r.add_argument('--angle', type=cli.Bounded(float, 0, 180), default=7.0,
                   help='largest random rotation in degrees (darknet19.cfg: 7)')
    return p.parse_args(argv)


def main(argv=None):
    return cli.run(parse_args(argv), 'classification', OUT_PARENT)


if __name__ == '__main__':
    sys.exit(main())
