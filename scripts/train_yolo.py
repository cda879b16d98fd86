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
import argparse
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


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--preset', default='synthetic_demo',
                   help='settings to start from (default: %(default)s; see docs/presets.md)')
    g = p.add_argument_group('overrides of preset values (default: the preset\'s)')
    g.add_argument('--model', help='yolov2, yolov3, yolov2_tiny or yolov3_small')
    g.add_argument('--dataset', help='synthetic, voc0712 or vocformat')
    g.add_argument('--batchsize', type=int, help='images per process (the papers\' n)')
    g.add_argument('--epochs', type=int)
    g.add_argument('--lr', type=float, help='single-process learning rate eta')
    g.add_argument('--lr-rule', help='k_eta (lr = k*eta), literal_knEta (k*n*eta), '
                   'kn_256_eta (k*n/256*eta)')
    g.add_argument('--insize', type=int, help='input size (multiple of 32) without '
                   'multi-scale; also the first batches\' size')
    g.add_argument('--multiscale', type=int, nargs=3, metavar=('MIN', 'MAX', 'EVERY'),
                   help='draw the input size from MIN..MAX (multiples of 32) every EVERY '
                   'iterations')
    g.add_argument('--no-multiscale', action='store_true', help='train at --insize only')
    g.add_argument('--warmup-epochs', type=float)
    g.add_argument('--warmup-hold-epochs', type=float)
    g.add_argument('--decay', help='step, poly or constant')
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

    r = p.add_argument_group('run')
    r.add_argument('--data-dir', help='VOCdevkit directory (voc0712) or dataset root '
                   '(vocformat)')
    r.add_argument('--class-names', nargs='+', help='class names (vocformat)')
    r.add_argument('--train-split', default='trainval', help='vocformat training split')
    r.add_argument('--test-split', default='test', help='vocformat test split')
    r.add_argument('--on-bad-sample', choices=['error', 'skip'], default='error')
    r.add_argument('--n-train-images', type=int, default=1000, help='synthetic train size')
    r.add_argument('--n-test-images', type=int, default=300, help='synthetic test size')
    r.add_argument('--image-size', type=int, default=128, help='synthetic image size')
    r.add_argument('--object-scales', type=float, nargs=2, default=(1 / 16., 2 / 3.),
                   metavar=('MIN', 'MAX'), help='synthetic object sides as fractions of the '
                   'image side (default: 1/16 2/3)')
    r.add_argument('--scale-distribution', choices=['log', 'uniform'], default='log',
                   help='how synthetic object sides are drawn between MIN and MAX')
    r.add_argument('--n-class', type=int, help='synthetic classes (default: the preset\'s)')
    r.add_argument('--iterations', type=int, help='stop after this many updates instead of '
                   'at the preset\'s epochs (the schedule stays in epochs)')
    r.add_argument('--seed', type=int, default=0,
                   help='seeds the synthetic data, the shuffle, augmentation and multi-scale')
    r.add_argument('--out', default='results/runs/train')
    r.add_argument('--resume', help='trainer snapshot to continue from (same number of ranks)')
    r.add_argument('--pretrained', help='Darknet19/Darknet53 classifier snapshot (npz) whose '
                   'convolutions are copied into the detector (paper 000 sec. 2.2, 001 sec. 2.3)')
    r.add_argument('--no-augment', action='store_true', help='resize only, no YOLO9000 '
                   'augmentation')
    r.add_argument('--jitter', type=float, default=0.2, help='crop jitter (Darknet)')
    r.add_argument('--sync-bn', action='store_true', help='batch statistics over all ranks '
                   '(chainermn.links.create_mnbn_model); not used by the papers')
    r.add_argument('--double-buffering', action='store_true',
                   help='overlap AllReduce with the next step (pure_nccl only)')
    r.add_argument('--loaderjob', type=int, default=2,
                   help='worker processes per rank for data loading (0: in-process)')
    r.add_argument('--eval-interval', type=float, default=0,
                   help='evaluate every N epochs during training (0: only at the end)')
    r.add_argument('--eval-insize', type=int, help='evaluation input size (default --insize)')
    r.add_argument('--eval-batchsize', type=int, default=8)
    r.add_argument('--log-interval', type=int, default=10, help='iterations per log entry')
    r.add_argument('--snapshot-interval', type=int, default=0,
                   help='iterations between snapshots (0: at the end only)')
    r.add_argument('--no-progress', action='store_true')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    distributed.start_forkserver()  # before MPI starts: ChainerMN issue #278
    distributed.abort_on_exception()
    from chainer_yolo_dist.training import run_detection
    return run_detection(args, PRESET_OPTIONS)


if __name__ == '__main__':
    sys.exit(main())
