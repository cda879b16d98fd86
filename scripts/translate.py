#!/usr/bin/env python
"""Apply a trained CycleGAN generator to a folder of images (paper 002 sec. 3.3: the SYNTHIA
crops translated into DeepDrive's style become the detector's extra training data).

    python scripts/translate.py RUN/model.npz INPUT_DIR OUTPUT_DIR [--direction ab]

RUN/model.npz (or a snapshot_iter_N) is written by train_cyclegan.py; the generators' width
and depth are read from the config.json beside it. Every image under INPUT_DIR (recursively)
is resized so that its shorter side is --size (default: the run's image size) and centre-
cropped (cyclegan.data.ImageFolder), translated, and written as PNG under OUTPUT_DIR with the
same relative path. Unreadable images stop the run naming the file (--on-bad-sample skip
leaves them out and lists them).
"""
import argparse
import json
import os
import sys
from chainer_yolo_dist.core import cli  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args(argv=None):
    p = cli.Parser(description=__doc__,
                   formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('model', help='model.npz or snapshot of train_cyclegan.py')
    p.add_argument('input_dir')
    p.add_argument('output_dir')
    p.add_argument('--direction', choices=['ab', 'ba'], default='ab',
                   help='ab: domain A to B (default), ba: B to A')
    p.add_argument('--size', type=int, help='image side (default: the run\'s)')
    p.add_argument('--batchsize', type=int, default=8)
    p.add_argument('--ngf', type=int, help='generator width (default: from config.json)')
    p.add_argument('--n-blocks', type=int, help='residual blocks (default: from config.json)')
    p.add_argument('--gpu', type=int, default=-1)
    p.add_argument('--on-bad-sample', choices=['error', 'skip'], default='error')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import numpy as np
    import PIL.Image
    from chainer_yolo_dist.core import atomic
    from chainer_yolo_dist.cyclegan.data import ImageFolder, to_uint8
    from chainer_yolo_dist.cyclegan.evaluation import translate
    from chainer_yolo_dist.cyclegan.model_files import load_generator
    try:
        gen = load_generator(args.model, args.direction, args.ngf, args.n_blocks)
        size = args.size or _run_size(args.model)
        folder = ImageFolder(args.input_dir, size, on_bad_sample=args.on_bad_sample)
    except (ValueError, OSError) as e:
        sys.exit('translate.py: error: %s' % e)
    if args.gpu >= 0:
        import chainer
        chainer.cuda.get_device_from_id(args.gpu).use()
        gen.to_gpu()
    for start in range(0, len(folder), args.batchsize):
        idx = range(start, min(len(folder), start + args.batchsize))
        fake = translate(gen, np.stack([folder[i] for i in idx]), args.batchsize)
        for i, image in zip(idx, fake):
            rel = os.path.relpath(folder.paths[i], args.input_dir)
            out = os.path.join(args.output_dir, os.path.splitext(rel)[0] + '.png')
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with atomic.atomic_path(out) as tmp:
                PIL.Image.fromarray(to_uint8(image)).save(tmp, format='PNG')
    print('translated %d images (%s) into %s at %d px'
          % (len(folder), folder.report.summary(), args.output_dir, size))
    return 0


def _run_size(model_path):
    config = os.path.join(os.path.dirname(os.path.abspath(model_path)), 'config.json')
    if not os.path.isfile(config):
        raise ValueError('%s: no config.json beside it; give --size' % model_path)
    with open(config) as f:
        return int(json.load(f)['preset']['insize'])


if __name__ == '__main__':
    sys.exit(main())
