#!/usr/bin/env python
"""Write paper 002 Table 2's training sets on the synthetic domains, in VOC layout.

    python scripts/make_synthetic_detection_sets.py OUT_DIR [--generator RUN/model.npz]

Image sets a (real), b (real + raw CG), c (real + CG translated by the generator, with
--generator) and test (real only), one class 'object'
(chainer_yolo_dist.cyclegan.synthetic_detection). Train a detector on one with
``train_yolo.py --dataset vocformat --data-dir OUT_DIR --class-names object --train-split c``.
"""
import argparse
import json
import os
import sys
from chainer_yolo_dist.core import cli  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    p = cli.Parser(description=__doc__,
                   formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('out_dir')
    p.add_argument('--generator', help='model.npz of train_cyclegan.py (for set c); its run\'s '
                   'image size and seed are used unless given')
    p.add_argument('--n-train-images', type=int, help='scenes per domain (default: the run\'s)')
    p.add_argument('--n-test-images', type=int, default=128)
    p.add_argument('--size', type=int, help='image side (default: the run\'s, else 64)')
    p.add_argument('--seed', type=int, help='synthetic data seed (default: the run\'s, else 0)')
    args = p.parse_args(argv)
    from chainer_yolo_dist.cyclegan.synthetic_detection import write_detection_sets
    gen, data = None, {}
    if args.generator:
        from chainer_yolo_dist.cyclegan.model_files import load_generator
        try:
            gen = load_generator(args.generator)
            with open(os.path.join(os.path.dirname(os.path.abspath(args.generator)),
                                   'config.json')) as f:
                data = json.load(f)['data']
        except (ValueError, OSError, KeyError) as e:
            sys.exit('make_synthetic_detection_sets.py: error: %s' % e)
    counts = write_detection_sets(
        args.out_dir, args.n_train_images or data.get('n_train_images', 128),
        args.n_test_images, args.size or data.get('image_size', 64),
        args.seed if args.seed is not None else data.get('seed', 0), gen)
    print('wrote %s to %s' % (', '.join('%s: %d images' % kv for kv in sorted(counts.items())),
                              args.out_dir))
    return 0


if __name__ == '__main__':
    sys.exit(main())
