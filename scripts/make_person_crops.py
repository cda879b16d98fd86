#!/usr/bin/env python
"""Paper 002's CycleGAN inputs: a 256x256 crop centred on the largest person of each image.

    python scripts/make_person_crops.py --voc-root DATA/bdd100k_voc --split train \\
        --class-names person car bus --out crops/bdd
    python scripts/make_person_crops.py --voc-root DATA/synthia_voc --split all --out crops/synthia

VOC-ROOT is a VOC-format folder (``Annotations/``, ``JPEGImages/``,
``ImageSets/Main/<split>.txt``). Every class name that occurs in its annotations must be given
(``--class-names``, default VOC's 20, which include "person"); under ``--on-bad-sample skip``
unknown names, bad boxes and unreadable files are dropped and listed instead of stopping the
run. Only images whose largest person is "sufficiently large" (paper 002 sec. 3.1; no size is
printed) are cropped: by default, the reading that the person is at least a quarter of the crop
side tall (``--min-person-height 0.25 --relative-to crop``); ``--relative-to image`` measures
against the image height, ``px`` in pixels, and ``--min-person-height 0`` keeps every image
with a person. Writes ``OUT/<id>.png`` and ``OUT/crops.json`` and prints the counts, what was
skipped and why (paper 002 sec. 4.1: 4,822 DeepDrive and 3,163 SYNTHIA crops).
"""
import argparse
import os
import sys
from chainer_yolo_dist.core import cli  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args(argv=None):
    from chainercv.datasets import voc_bbox_label_names

    from chainer_yolo_dist.cyclegan.person_crops import MIN_PERSON_HEIGHT, RELATIVE_TO
    p = cli.Parser(description=__doc__,
                   formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--voc-root', required=True)
    p.add_argument('--split', default='trainval', help='image-set name (default: trainval)')
    p.add_argument('--class-names', nargs='+', default=list(voc_bbox_label_names))
    p.add_argument('--person-class', default='person')
    p.add_argument('--size', type=int, default=256, help='crop side (paper 002: 256)')
    p.add_argument('--min-person-height', type=float, default=MIN_PERSON_HEIGHT,
                   help='smallest height of the person the crop is centred on, as a fraction '
                   'of --relative-to (reading of paper 002 sec. 3.1\'s "sufficiently large '
                   'persons": %(default)s of the crop side; 0: every image with a person)')
    p.add_argument('--relative-to', choices=RELATIVE_TO, default='crop',
                   help='what --min-person-height is measured against: the crop side '
                   '(default), the image height, or pixels')
    p.add_argument('--on-bad-sample', choices=('error', 'skip'), default='error')
    p.add_argument('--out', required=True)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from chainer_yolo_dist.cyclegan.person_crops import make_person_crops, min_height_pixels
    try:
        min_height_pixels(args.min_person_height, args.relative_to, 0, args.size)
    except ValueError as e:
        sys.stderr.write('error: --min-person-height: %s\n' % e)
        sys.exit(2)
    from chainer_yolo_dist.datasets.validation import BadSampleError
    from chainer_yolo_dist.datasets.voc import VOCFormatDataset
    names = [n.lower().strip() for n in args.class_names]
    if args.person_class.lower() not in names:
        sys.exit('--person-class %r is not among --class-names %s'
                 % (args.person_class, ' '.join(args.class_names)))
    try:
        dataset = VOCFormatDataset(args.voc_root, args.split, args.class_names,
                                   use_difficult=True, on_bad_sample=args.on_bad_sample)
    except (BadSampleError, FileNotFoundError) as e:
        sys.exit('make_person_crops: %s\n(--on-bad-sample skip drops bad input and lists it)'
                 % e)
    summary = make_person_crops(dataset, args.out, names.index(args.person_class.lower()),
                                args.size, args.min_person_height, args.relative_to)
    print('%d images: %d crops written to %s, %d without a person, %d smaller than %d px, '
          '%d whose person is shorter than %g %s'
          % (summary['n_images'], summary['n_crops'], args.out, summary['n_no_person'],
             summary['n_too_small'], args.size, summary['n_too_short'],
             args.min_person_height, {'crop': 'of the crop side', 'image': 'of the image '
                                      'height', 'px': 'px'}[args.relative_to]))
    print('bad input: %s' % dataset.report.summary())


if __name__ == '__main__':
    main()
