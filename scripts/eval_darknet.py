#!/usr/bin/env python
"""Evaluate trained classifiers, alone and as an ensemble: top-1 and top-5.

    python scripts/eval_darknet.py runs/a/model.npz                       # one model
    python scripts/eval_darknet.py runs/a/model.npz runs/b/model.npz      # and their ensemble
    python scripts/eval_darknet.py RUN*/model.npz --data-dir ILSVRC2012   # ImageNet val
    python scripts/eval_darknet.py m1.npz m2.npz --synthetic --n-test-images 512

Each MODEL is a ``model.npz`` or trainer snapshot of ``train_darknet.py``. The ensemble is the
mean of the members' softmax (paper 003's 13.89% is an ensemble's top-5 error on the ILSVRC2012
*test* set; the way its members were combined is a reading: ``classification/ensemble.py``).
This script evaluates on a validation set (ImageNet ``val/``), never on that test set, and says
so beside its numbers. Unless ``--data-dir`` or
``--synthetic`` is given, the data, its sizes and the input size are those of the run whose
``config.json`` lies beside the first MODEL (its validation set). ``--out`` also writes the
result as JSON.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from chainer_yolo_dist.core import cli  # noqa: E402


def parse_args(argv=None):
    p = cli.Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('models', nargs='+', metavar='MODEL', help='classifier files')
    p.add_argument('--config', help='config.json of the run whose data to use (default: '
                   'beside the first MODEL)')
    p.add_argument('--data-dir', help='ImageNet root holding val/<wnid>/*.JPEG, or the root '
                   'of the --val-list paths')
    p.add_argument('--val-list', help='"path label" lines of the validation images')
    p.add_argument('--synthetic', action='store_true',
                   help='the synthetic classification crops\' test split')
    p.add_argument('--n-test-images', type=cli.COUNT, help='synthetic test images (default: the '
                   'run\'s, else 256)')
    p.add_argument('--image-size', type=cli.COUNT,
                   help='synthetic image size (default: the run\'s, '
                   'else 32)')
    p.add_argument('--seed', type=cli.SEED,
                   help='synthetic data seed (default: the run\'s, else 0)')
    p.add_argument('--insize', type=cli.COUNT, help='centre-crop size, a multiple of 32 (default: '
                   'the run\'s, else 224 on ImageNet and the image size on synthetic data)')
    p.add_argument('--on-bad-sample', choices=['error', 'skip'], default='error')
    p.add_argument('--batchsize', type=cli.COUNT, default=32)
    p.add_argument('--device', type=cli.Bounded(int, -1),
                   help='GPU id, or -1 for the CPU (default: GPU 0 '
                   'where CUDA sees one, else the CPU)')
    p.add_argument('--out', help='write the result as JSON here')
    p.add_argument('--debug', action='store_true', help='show the traceback of an error')
    return p.parse_args(argv)


def evaluate(args):
    from chainer_yolo_dist.classification import ensemble
    models, infos = ensemble.load_members(args.models)
    dataset, description, insize = ensemble.evaluation_data(
        infos[0].n_class, ensemble.run_config(args.models[0], args.config),
        synthetic=args.synthetic, data_dir=args.data_dir, val_list=args.val_list,
        n_test_images=args.n_test_images, image_size=args.image_size, seed=args.seed,
        insize=args.insize, on_bad_sample=args.on_bad_sample)
    from chainer_yolo_dist.core import devices
    gpus = devices.gpu_count()
    device = args.device if args.device is not None else 0 if gpus else -1
    if device >= gpus:
        raise ValueError('--device %d: this machine has %d CUDA GPU(s) visible'
                         % (device, gpus))
    if device >= 0:
        import chainer
        chainer.backends.cuda.get_device_from_id(device).use()
        for model in models:
            model.to_gpu(device)
    result = ensemble.evaluate_ensemble(models, dataset, args.batchsize, device=device)
    print('%s, %d images at %d px' % (description, result['n'], insize))
    for i, (path, info, member) in enumerate(zip(args.models, infos, result['members']), 1):
        print('model %d: %s (%s)' % (i, path, info.description))
        print('  ' + score_line(member))
    print('ensemble of %d (mean of the softmax):' % len(models))
    print('  ' + score_line(result))
    print(PAPER_003_NOTE)
    if args.out:
        from chainer_yolo_dist.core.atomic import write_json
        write_json(args.out, dict(result, models=list(args.models), data=description,
                                  insize=insize))
    return 0


#: Printed under the scores: what paper 003's figure was measured on, and what these were.
PAPER_003_NOTE = ('paper 003: top-5 error 13.89% for its ensemble on the ILSVRC2012 test set; '
                  'the errors above are on the validation data named above, not that test set')


def score_line(scores):
    """``top-1 0.7031 (error 29.69%), top-5 ...`` for a dict with ``top1`` and ``top5``."""
    return ', '.join('%s %.4f (error %.2f%%)' % (name, scores[key], 100 * (1 - scores[key]))
                     for name, key in (('top-1', 'top1'), ('top-5', 'top5')))


def main(argv=None):
    args = parse_args(argv)
    try:
        return evaluate(args)
    except (ValueError, OSError) as e:
        if args.debug:
            raise
        sys.stderr.write('error: %s\n' % e)
        return 2


if __name__ == '__main__':
    sys.exit(main())
