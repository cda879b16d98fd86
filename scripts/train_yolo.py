#!/usr/bin/env python
"""Train YOLOv2 / YOLOv3 data-parallel with ChainerMN, as in the AIST papers.

    mpiexec -n 128 python scripts/train_yolo.py --preset yolov2_voc_2018 --data-dir VOCdevkit
    mpiexec -n 2 python scripts/train_yolo.py                 # CPU demo on synthetic shapes

Every setting comes from a preset (``chainer_yolo_dist/presets/*.toml``, each value citing
its paper and section); an option given on the command line overrides the preset's value.
The learning rate follows the preset's rule: ``--lr`` is the single-process rate eta, and
the peak rate is ``eta * global_batch / reference_batch`` (``--lr-rule``), reached by gradual
warmup. Run with ``-h`` for every option.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from chainer_yolo_dist.core import cli  # noqa: E402

OUT_PARENT = 'runs'
#: A synthetic object's side as a fraction of the image side.
OBJECT_SCALE = cli.Bounded(float, 0, 1, low_open=True)


def parse_args(argv=None):
    p, g = cli.training_parser(__doc__, 'synthetic_demo')
    g.add_argument('--model', help='yolov2, yolov3, yolov2_tiny or yolov3_small')
    g.add_argument('--dataset', help='synthetic, voc0712 or vocformat')
    cli.add_preset_overrides(
        g, lr_rules_help='k_eta (lr = k*eta), literal_knEta (k*n*eta), kn_256_eta '
        '(k*n/256*eta), sqrt_k_eta (sqrt(k)*eta: square-root scaling, not in the papers)',
        insize_help='input size (multiple of 32) without multi-scale; '
        'also the first batches\' size and the evaluation size')
    g.add_argument('--multiscale', type=cli.COUNT, nargs=3, metavar=('MIN', 'MAX', 'EVERY'),
                   help='draw the input size from MIN..MAX (multiples of 32) every EVERY '
                   'iterations')
    g.add_argument('--no-multiscale', action='store_true', help='train at --insize only')
    g.add_argument('--n-class', type=cli.COUNT, help='synthetic classes (default: the preset\'s)')

    d = p.add_argument_group('data')
    d.add_argument('--data-dir', help='VOCdevkit directory (voc0712) or dataset root '
                   '(vocformat)')
    d.add_argument('--class-names', nargs='+', help='class names (vocformat)')
    d.add_argument('--train-split', default='trainval', help='vocformat training split')
    d.add_argument('--test-split', default='test', help='vocformat test split')
    d.add_argument('--n-train-images', type=cli.COUNT, default=1000, help='synthetic train size')
    d.add_argument('--n-test-images', type=cli.COUNT, default=300, help='synthetic test size')
    d.add_argument('--image-size', type=cli.COUNT, default=128, help='synthetic image size')
    d.add_argument('--object-scales', type=OBJECT_SCALE, nargs=2, default=(1 / 16., 2 / 3.),
                   metavar=('MIN', 'MAX'), help='synthetic object sides as fractions of the '
                   'image side (default: 1/16 2/3)')
    d.add_argument('--scale-distribution', choices=['log', 'uniform'], default='log',
                   help='how synthetic object sides are drawn between MIN and MAX')
    d.add_argument('--no-augment', dest='augment', action='store_false',
                   help='resize only, no augmentation')
    d.add_argument('--jitter', type=cli.FRACTION, default=0.2, help='crop jitter (Darknet)')

    r = p.add_argument_group('run')
    cli.add_parallelism_options(p.add_argument_group('data parallelism'),
                                modes=('sync', 'local', 'stale'))
    cli.add_run_options(r, out=OUT_PARENT, eval_interval=0, eval_batchsize=8)
    r.add_argument('--pretrained', help='Darknet19/Darknet53 classifier (model.npz or '
                   'snapshot) whose convolutions are copied into the detector (paper 000 '
                   'sec. 2.2, 001 sec. 2.3)')
    r.add_argument('--from-scratch', action='store_true', help='train from random weights '
                   'although the preset names pretraining')
    r.add_argument('--sync-bn', action='store_true', help='batch statistics over all ranks '
                   '(chainermn.links.create_mnbn_model); not used by the papers')
    r.add_argument('--eval-insize', type=cli.COUNT,
                   help='evaluation input size (default --insize)')
    args = p.parse_args(argv)
    if args.object_scales[0] > args.object_scales[1]:
        p.error('--object-scales: MIN %g is larger than MAX %g' % tuple(args.object_scales))
    if args.multiscale and args.no_multiscale:
        p.error('--multiscale and --no-multiscale contradict each other: give one')
    return args


def main(argv=None):
    return cli.run(parse_args(argv), 'detection', OUT_PARENT)


if __name__ == '__main__':
    sys.exit(main())
