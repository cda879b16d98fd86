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
        --pretrained RUN224/model.npz --insize 448 --lr 1e-3 --epochs 10 \\
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

from chainer_yolo_dist import distributed  # noqa: E402

# Options that override preset fields: option dest -> Preset field.
PRESET_OPTIONS = {
    'model': 'model', 'dataset': 'dataset', 'batchsize': 'batchsize_per_gpu',
    'epochs': 'epochs', 'lr': 'eta', 'lr_rule': 'lr_rule', 'insize': 'insize',
    'warmup_epochs': 'warmup_epochs', 'warmup_hold_epochs': 'warmup_hold_epochs',
    'decay': 'decay', 'steps': 'steps', 'poly_power': 'poly_power',
    'burn_in': 'burn_in_iterations', 'momentum': 'momentum',
    'weight_decay': 'weight_decay', 'communicator': 'communicator',
    'allreduce_grad_dtype': 'allreduce_grad_dtype', 'cudnn_fast_bn': 'cudnn_fast_bn',
    'n_class': 'n_class',
}
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
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--preset', default='synthetic_classification_demo',
                   help='settings to start from (default: %(default)s; see docs/presets.md)')
    g = p.add_argument_group('overrides of preset values (default: the preset\'s)')
    g.add_argument('--model', choices=['darknet19', 'darknet53'])
    g.add_argument('--dataset', type=_dataset, help='synthetic or imagenet')
    g.add_argument('--batchsize', type=int, help='images per process (the papers\' n)')
    g.add_argument('--epochs', type=int)
    g.add_argument('--lr', type=float, help='single-process learning rate eta')
    g.add_argument('--lr-rule', help='kn_256_eta (lr = k*n/256*eta, paper 001), k_eta, '
                   'literal_knEta')
    g.add_argument('--insize', type=int, help='training and validation input size '
                   '(multiple of 32): 224, or 448 for the fine-tuning stage')
    g.add_argument('--warmup-epochs', type=float)
    g.add_argument('--warmup-hold-epochs', type=float)
    g.add_argument('--decay', help='poly, step or constant')
    g.add_argument('--steps', type=float, nargs='*')
    g.add_argument('--poly-power', type=float)
    g.add_argument('--burn-in', type=int, help='Darknet burn-in iterations (0: off)')
    g.add_argument('--momentum', type=float)
    g.add_argument('--weight-decay', type=float)
    g.add_argument('--communicator', help='ChainerMN communicator (default: pure_nccl with '
                   'CUDA, naive without)')
    g.add_argument('--allreduce-grad-dtype', choices=['float16', 'float32'],
                   help='paper 001: float16 AllReduce with float32 compute (pure_nccl)')
    g.add_argument('--cudnn-fast-bn', action='store_const', const=True,
                   help='chainer.config.cudnn_fast_batch_normalization (paper 001)')
    g.add_argument('--n-class', type=int, help='synthetic classes (ImageNet: from the data)')

    r = p.add_argument_group('run')
    r.add_argument('--channels-scale', type=_fraction,
                   help='width factor of every convolution: 1 is the paper model (default on '
                   'ImageNet), 1/8 the CPU demo (default on synthetic data)')
    r.add_argument('--data-dir', help='ImageNet root: train/<wnid>/*.JPEG and '
                   'val/<wnid>/*.JPEG, or the root of the --train-list/--val-list paths')
    r.add_argument('--train-list', help='"path label" lines for training (list layout)')
    r.add_argument('--val-list', help='"path label" lines for validation (list layout)')
    r.add_argument('--on-bad-sample', choices=['error', 'skip'], default='error')
    r.add_argument('--no-check-images', dest='check_images', action='store_false',
                   help='do not decode every image at start-up (an unreadable image then '
                   'fails when it is read)')
    r.add_argument('--n-train-images', type=int, default=1024, help='synthetic train size')
    r.add_argument('--n-test-images', type=int, default=256, help='synthetic test size')
    r.add_argument('--image-size', type=int, default=32, help='synthetic image size')
    r.add_argument('--iterations', type=int, help='stop after this many updates instead of '
                   'at the preset\'s epochs (the schedule stays in epochs)')
    r.add_argument('--seed', type=int, default=0,
                   help='seeds the synthetic data, the shuffle and the augmentation')
    r.add_argument('--out', default='results/runs/train_darknet')
    r.add_argument('--resume', help='trainer snapshot to continue from (same number of ranks)')
    r.add_argument('--pretrained', help='classifier (model.npz or snapshot of this script) to '
                   'start from, same network and classes: the 448 fine-tuning stage')
    r.add_argument('--no-augment', action='store_true', help='centre crop only, no YOLO9000 '
                   'augmentation')
    r.add_argument('--min-crop', type=int, help='shortest side before the random crop '
                   '(default --insize, Darknet\'s)')
    r.add_argument('--max-crop', type=int, help='longest side before the random crop '
                   '(default 2 x --insize, Darknet\'s)')
    r.add_argument('--angle', type=float, default=7.0,
                   help='largest random rotation in degrees (darknet19.cfg: 7)')
    r.add_argument('--double-buffering', action='store_true',
                   help='overlap AllReduce with the next step (pure_nccl only)')
    r.add_argument('--loaderjob', type=int, default=2,
                   help='worker processes per rank for data loading (0: in-process)')
    r.add_argument('--eval-interval', type=float, default=1,
                   help='validate every N epochs (0: only at the end)')
    r.add_argument('--eval-batchsize', type=int, default=64)
    r.add_argument('--log-interval', type=int, default=10, help='iterations per log entry')
    r.add_argument('--snapshot-interval', type=int, default=0,
                   help='iterations between snapshots (0: at the end only)')
    r.add_argument('--no-progress', action='store_true')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    distributed.start_forkserver()  # before MPI starts: ChainerMN issue #278
    distributed.abort_on_exception()
    from chainer_yolo_dist.classification import run_classification
    return run_classification(args, PRESET_OPTIONS)


if __name__ == '__main__':
    sys.exit(main())
