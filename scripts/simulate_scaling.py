#!/usr/bin/env python
"""Predicted time per epoch and speed-up of a preset on ABCI, beside the published speed-ups.

    python scripts/simulate_scaling.py --preset yolov2_voc_2018 --gpus 1,16,32,64,128 [--json]

The model (chainer_yolo_dist.analysis.scaling, docs/scaling_model.md): per update, the
compute of n images on one V100 plus a ring AllReduce of the gradients over NVLink inside a
node, EDR InfiniBand between nodes and a third of that between racks; updates per epoch fall
as 1/k. With --json only {"gpus": [...], "speedup": [...], "epoch_seconds": [...]} is printed.
The tables of every model are built by chainer_yolo_dist.analysis.scaling_tables.

CycleGAN (paper 002) and SlowFast (paper 004) have their own models
(chainer_yolo_dist.analysis.scaling_cyclegan / scaling_slowfast): the 4-GPU / 1-node time
calibrates the per-image / per-clip compute, and the comparison tables give Fig. 4's 512-GPU
time and speed-up, and Table 4's shares and Fig. 3's times and speed-ups:

    python scripts/simulate_scaling.py --preset cyclegan_synthia2bdd_2019 [--framework horovod]
    python scripts/simulate_scaling.py --preset slowfast_ava_2021 [--overlap] [--loader compute]

Paper 003's modes (chainer_yolo_dist.analysis.scaling_modes): with --mode, or for the preset
cnn11_imagenet_async_2015, the throughput ratio over one GPU of synchronous, periodic-averaging
(--average-every H) and asynchronous (--servers, --push-every, --pull-every) training on
TSUBAME 2.5, beside paper 003's "over 30x" at 48 GPUs, with a sensitivity table:

    python scripts/simulate_scaling.py --preset cnn11_imagenet_async_2015 --gpus 1,3,12,48

A planner (chainer_yolo_dist.analysis.scaling_calibrate): --calibrate fits the model's seconds per
update a and per epoch e to two points, the paper's two smallest published ones beyond the base
(printing every larger one as a check), or two run folders of one YOLO / Darknet preset measured
on your cluster, and predicts the other GPU counts; with --json one row per GPU count:

    python scripts/simulate_scaling.py --preset yolov2_voc_2018 --calibrate
    python scripts/simulate_scaling.py --calibrate runs/k2 runs/k8 --gpus 1,2,8,32 --json
"""

from chainer_yolo_dist.core import cli, presets
from chainer_yolo_dist.analysis import (scaling_cyclegan, scaling_modes, scaling_slowfast,
                                        scaling_tables)


def _parser():
    parser = cli.Parser(description=__doc__.split('\n')[0])
    parser.add_argument('--preset', choices=presets.names(),
                        help='required, except with --calibrate RUN_DIR RUN_DIR')
    parser.add_argument('--gpus', type=cli.positive_int_list,
                        help="comma-separated GPU counts (default 1,16,32,64,128; CycleGAN's "
                             "and SlowFast's presets: the paper's 4,64,128,256,512)")
    parser.add_argument('--json', action='store_true', help='print only the predictions as JSON')
    parser.add_argument('--calibrate', nargs='*', metavar='RUN_DIR',
                        help="fit the model's overheads per update and per epoch to two points: "
                             "the paper's two smallest published ones (no RUN_DIR), or two run "
                             'folders of one YOLO / Darknet preset; predict the rest')
    parser.add_argument('--image-seconds', type=cli.POSITIVE,
                        help='compute seconds per image on one GPU, e.g. from a measured '
                             'benchmark (default: calibrated from the papers)')
    parser.add_argument('--grad-dtype', choices=('float16', 'float32'),
                        help="AllReduce precision (default: the preset's)")
    parser.add_argument('--ib-gbps', type=cli.POSITIVE, default=100.0,
                        help='InfiniBand bandwidth per node in Gb/s (default 100, one EDR port)')
    parser.add_argument('--framework', choices=scaling_cyclegan.FRAMEWORKS,
                        help='CycleGAN only: chainermn (default, four AllReduces per update) '
                             "or horovod (the paper's: two optimizers, 64 MiB tensor fusion)")
    parser.add_argument('--overlap', action='store_true',
                        help='SlowFast only: the AllReduce overlaps backward (DDP buckets); '
                             'default: it follows backward')
    parser.add_argument('--loader', choices=scaling_slowfast.LOADERS,
                        help="SlowFast only: table3 (default, the step time follows Table 3's "
                             '10-iteration times per worker count) or compute (it does not)')
    parser.add_argument('--growth', choices=scaling_slowfast.GROWTHS,
                        help='SlowFast only: fitted (default, the iteration time grows beyond 32 '
                             'nodes and 6 workers, paper 004 sec. 4.2) or none')
    m = parser.add_argument_group('paper 003: data-parallel modes on TSUBAME 2.5 '
                                  '(chainer_yolo_dist.analysis.scaling_modes)')
    m.add_argument('--mode', choices=scaling_modes.MODES,
                   help='throughput ratio of this mode on TSUBAME 2.5 (default: async for '
                        'cnn11_imagenet_async_2015, else the ABCI epoch model above)')
    m.add_argument('--servers', type=cli.COUNT, default=1, help='async: parameter servers S')
    m.add_argument('--push-every', type=cli.COUNT, default=1, help='async: updates per push')
    m.add_argument('--pull-every', type=cli.COUNT, default=1, help='async: updates per pull')
    m.add_argument('--average-every', type=cli.COUNT, default=4,
                   help='local: updates between two averagings H (Darknet: 4)')
    m.add_argument('--sustained-tflops', type=cli.POSITIVE,
                   default=scaling_modes.K20X_SUSTAINED_FLOPS / 1e12,
                   help='assumed sustained single-precision TFLOP/s of one K20X on the '
                        'network (default %(default)s: about a third of its 3.95 peak)')
    return parser


def _check(parser, args):
    """Refuses the options of another model than the one the preset and --mode pick."""
    name = args.preset
    if args.calibrate is not None:
        if len(args.calibrate) not in (0, 2):
            parser.error('--calibrate takes no run folder or two, got %d'
                         % len(args.calibrate))
        if args.mode or name in scaling_tables.PAPER_MODES:
            parser.error('--calibrate applies to the YOLO / Darknet, CycleGAN and SlowFast '
                         'models, not to paper 003\'s modes')
        if args.image_seconds:
            parser.error('--image-seconds does not go with --calibrate: the fit replaces it')
        if args.calibrate and (args.framework or args.overlap or args.loader or args.growth
                               or args.grad_dtype):
            parser.error('--calibrate RUN_DIR RUN_DIR takes --preset, --gpus, --json and '
                         '--ib-gbps only')
        if not args.calibrate and name is None:
            parser.error('--preset is required (or give --calibrate RUN_DIR RUN_DIR)')
        if args.growth:
            parser.error('--growth applies to the SlowFast model without --calibrate')
        if args.calibrate:
            return
    elif name is None:
        parser.error('--preset is required (or give --calibrate RUN_DIR RUN_DIR)')
    if args.mode or name in scaling_tables.PAPER_MODES:
        return
    if name == scaling_cyclegan.PRESET:
        if args.overlap or args.loader or args.growth:
            parser.error('--overlap, --loader and --growth apply to SlowFast only')
    elif name == scaling_slowfast.PRESET:
        if args.framework:
            parser.error('--framework applies to CycleGAN only')
        gpus = args.gpus or scaling_tables.default_gpus(name)
        if any(k % scaling_slowfast.GPUS_PER_NODE for k in gpus):
            parser.error('SlowFast runs on whole nodes: GPU counts must be multiples of %d'
                         % scaling_slowfast.GPUS_PER_NODE)
    elif args.framework or args.overlap or args.loader or args.growth:
        parser.error('--framework, --overlap, --loader and --growth apply to CycleGAN / SlowFast '
                     'only')


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    _check(parser, args)
    if args.calibrate is not None:
        try:
            lines = scaling_tables.calibrate_report(
                args.preset, args.gpus, as_json=args.json, run_dirs=args.calibrate,
                ib_gbps=args.ib_gbps, grad_dtype=args.grad_dtype, framework=args.framework,
                overlap=args.overlap, loader=args.loader)
        except ValueError as e:
            parser.error(str(e))
        print('\n'.join(lines))
        return
    print('\n'.join(scaling_tables.report(
        args.preset, args.gpus, as_json=args.json, image_seconds=args.image_seconds,
        grad_dtype=args.grad_dtype, ib_gbps=args.ib_gbps, framework=args.framework,
        overlap=args.overlap, loader=args.loader, mode=args.mode, servers=args.servers,
        push_every=args.push_every, pull_every=args.pull_every,
        average_every=args.average_every, sustained_tflops=args.sustained_tflops,
        growth=args.growth)))


if __name__ == '__main__':
    main()
