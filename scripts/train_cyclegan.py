#!/usr/bin/env python
"""Train CycleGAN data-parallel with ChainerMN, as in paper 002.

    mpiexec -n 512 python scripts/train_cyclegan.py --preset cyclegan_synthia2bdd_2019 \\
        --dir-a SYNTHIA_CROPS --dir-b DEEPDRIVE_CROPS          # paper 002 sec. 3 and 4
    mpiexec -n 2 python scripts/train_cyclegan.py              # CPU demo, synthetic domains

Every setting comes from a preset (``chainer_yolo_dist/presets/*.toml``, each value citing
paper 002 and its section); an option given on the command line overrides it. Each process
draws ``sampling_scale * D / n`` training pairs per epoch (paper 002 sec. 3.2); the Adam rate
is the same at every process count. Outputs in --out: log, config.json, loss.png, fid.png,
samples/iter_N.png (rows A, A->B, A->B->A), snapshots with rank_states/ (each rank's history
pools), model.npz (the four networks), metrics.json. Run with ``-h`` for every option.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from chainer_yolo_dist.core import cli  # noqa: E402

OUT_PARENT = 'runs'


def parse_args(argv=None):
    p, g = cli.training_parser(__doc__, 'cyclegan_demo', 'docs/cyclegan.md')
    g.add_argument('--dataset', help='synthetic_domains or folders')
    cli.add_preset_overrides(
        g, lr_rules_help='constant (the paper: the same rate at every k), k_eta, ...',
        insize_help='image side (the paper: 256)')
    g.add_argument('--linear-from', type=cli.NON_NEGATIVE, dest='linear_from',
                   help='epochs at the full rate before the linear decay (paper: 100)')
    g.add_argument('--sampling-scale', type=cli.POSITIVE, dest='sampling_scale',
                   help='each process draws scale x D / n pairs per epoch (paper: 4)')

    d = p.add_argument_group('data')
    d.add_argument('--dir-a', help='domain A images (folders): e.g. SYNTHIA person crops')
    d.add_argument('--dir-b', help='domain B images (folders): e.g. DeepDrive person crops')
    d.add_argument('--test-dir-a', help='domain A images for the Frechet distance and samples '
                   '(default: --dir-a)')
    d.add_argument('--test-dir-b', help='domain B images for the Frechet distance')
    d.add_argument('--no-check-images', dest='image_check', action='store_const',
                   const='none', default=argparse.SUPPRESS,
                   help='deprecated: --image-check none')
    d.add_argument('--n-train-images', type=cli.COUNT, default=128, help='synthetic pairs')
    d.add_argument('--n-test-images', type=cli.COUNT, default=128, help='synthetic test pairs')
    d.add_argument('--image-size', type=cli.COUNT,
                   help='image side (default: the preset\'s insize)')
    d.add_argument('--no-flip', dest='flip', action='store_false',
                   help='no random left-right flips (a reading: Zhu et al.\'s '
                   'implementation flips; paper 002 does not say)')
    d.add_argument('--sampling-replace', action='store_true',
                   help='draw with replacement (reading: without)')
    d.add_argument('--sampling-resample', choices=['epoch', 'once'], default='epoch',
                   help='new random draws every epoch (reading, default) or once per run')

    c = p.add_argument_group('CycleGAN')
    c.add_argument('--ngf', type=cli.COUNT, help='generator width (paper 64; demo default 8)')
    c.add_argument('--ndf', type=cli.COUNT, help='discriminator width (paper 64; demo default 8)')
    c.add_argument('--n-blocks', type=cli.NATURAL,
                   help='residual blocks (paper 9 at 256 px; demo 3)')
    c.add_argument('--dis-lr-rule', choices=['half', 'equal'], default='half',
                   help='discriminators\' rate: half the generators\' (paper 002 A.1.2, '
                   'default) or equal (Zhu\'s code)')
    c.add_argument('--lambda-cycle', type=cli.NON_NEGATIVE, default=10.0,
                   help='paper 002 A.1.2: 10')
    c.add_argument('--lambda-id', type=cli.NON_NEGATIVE, default=5.0, help='paper 002 A.1.2: 5')
    c.add_argument('--pool-size', type=cli.NATURAL, default=50, help='history of fakes (Zhu: 50)')
    c.add_argument('--fid-interval', type=cli.NON_NEGATIVE, default=1,
                   help='epochs between Frechet distances (0: at the end only)')
    c.add_argument('--fid-images', type=cli.COUNT, default=128,
                   help='test images per domain for the Frechet distance')
    c.add_argument('--fid-extractor',
                   help='default extractor weights; trained there if absent (default: '
                   'fid_extractor_default.npz in $CHAINER_YOLO_DIST_CACHE, else '
                   '~/.cache/chainer_yolo_dist, trained on first use, about 2 minutes)')
    c.add_argument('--fid-weights', help='Inception-v3 weights (.npz from '
                   'cyclegan.inception.convert_torch_state): the FID of the literature')
    c.add_argument('--sample-interval', type=cli.NON_NEGATIVE, default=1,
                   help='epochs between sample grids (0: at the end only)')
    c.add_argument('--n-samples', type=cli.COUNT, default=8, help='images per sample grid row')

    r = p.add_argument_group('run')
    cli.add_run_options(r, out=OUT_PARENT, eval_interval=0, eval_batchsize=16, loaderjob=0)
    p.set_defaults(pretrained=None)
    return p.parse_args(argv)


def main(argv=None):
    return cli.run(parse_args(argv), 'cyclegan', OUT_PARENT)


if __name__ == '__main__':
    sys.exit(main())
