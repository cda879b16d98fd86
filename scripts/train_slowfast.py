#!/usr/bin/env python
"""Train SlowFast action detection data-parallel with ChainerMN, as in paper 004.

    mpiexec -n 512 python scripts/train_slowfast.py --preset slowfast_ava_2021 \
        --data-dir AVA --pretrained kinetics600_slowfast_r50.npz
    mpiexec -n 2 python scripts/train_slowfast.py        # CPU demo on synthetic action clips

Every setting comes from a preset (``chainer_yolo_dist/presets/*.toml``, each value citing its
paper and section); an option given on the command line overrides the preset's value. The
batch is in labelled clips per process (paper 004: 8 per GPU); the learning rate is
``eta * global_batch / reference_batch`` (paper 004: 0.05 per 32, i.e. 0.05 per node), reached
by linear warmup. Run with ``-h`` for every option; see docs/slowfast.md.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from chainer_yolo_dist.core import cli, mpi  # noqa: E402

OUT_PARENT = 'runs'


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--preset', default='slowfast_demo',
                   help='settings to start from (default: %(default)s; see docs/slowfast.md)')
    g = p.add_argument_group('overrides of preset values (default: the preset\'s)')
    g.add_argument('--model', help='slowfast_r50, slowfast_r50_k7 (7x1x1 laterals, '
                   'as PySlowFast\'s published weights), slow_r50, slowfast_narrow or '
                   'slow_narrow')
    g.add_argument('--dataset', help='synthetic_actions or ava')
    cli.add_preset_overrides(
        g, lr_rules_help='custom (reference_batch from the preset: paper 004 0.05 per 32 '
        'boxes), k_eta, kn_256_eta, literal_knEta', insize_help='clip side in pixels '
        '(multiple of 32; AVA: the short side)')
    g.add_argument('--clip-frames', type=int, help='Fast-pathway frames per clip (paper 004 '
                   'sec. 3.2: 16; PySlowFast SLOWFAST_32x2: 32)')

    d = p.add_argument_group('data')
    d.add_argument('--data-dir', help='AVA v2.2 directory (CSV files, label maps, frames/)')
    d.add_argument('--n-train-clips', type=int, default=2000, help='synthetic train clips')
    d.add_argument('--n-test-clips', type=int, default=200, help='synthetic test clips')
    d.add_argument('--max-actors', type=int, default=3, help='synthetic actors per clip, '
                   'at most')
    d.add_argument('--no-augment', dest='augment', action='store_false',
                   help='AVA: no scale jitter, crop or flip')
    d.add_argument('--dropout', type=float, help='dropout before the head\'s linear layer '
                   '(default: 0.5, PySlowFast MODEL.DROPOUT_RATE)')

    r = p.add_argument_group('run')
    cli.add_run_options(r, out=OUT_PARENT, eval_interval=0, eval_batchsize=4)
    r.add_argument('--pretrained', help='.npz holding a SlowFast trunk of this layout (e.g. '
                   'Kinetics-600 weights, paper 004 sec. 3.3, converted by '
                   'scripts/convert_slowfast_weights.py; or a model.npz of this script); '
                   'without it the network is trained from scratch')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    mpi.start_forkserver()  # before MPI starts: ChainerMN issue #278
    mpi.abort_on_exception()
    from chainer_yolo_dist.slowfast.recipe import run_slowfast
    return mpi.main(lambda: run_slowfast(dict(vars(args), out_parent=OUT_PARENT)),
                    debug=args.debug)


if __name__ == '__main__':
    sys.exit(main())
