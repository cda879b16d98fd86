#!/usr/bin/env python
"""Predicted time per epoch and speed-up of a preset on ABCI, beside the published speed-ups.

    python scripts/simulate_scaling.py --preset yolov2_voc_2018 --gpus 1,16,32,64,128 [--json]

The model (chainer_yolo_dist.analysis.scaling, docs/scaling_model.md): per update, the
compute of n images on one V100 plus a ring AllReduce of the gradients over NVLink inside a
node, EDR InfiniBand between nodes and a third of that between racks; updates per epoch fall
as 1/k. With --json only {"gpus": [...], "speedup": [...], "epoch_seconds": [...]} is printed.

CycleGAN (paper 002) and SlowFast (paper 004) have their own models
(chainer_yolo_dist.analysis.scaling_cyclegan / scaling_slowfast): the 4-GPU / 1-node time
calibrates the per-image / per-clip compute, and the comparison tables give Fig. 4's 512-GPU
time and speed-up, and Table 4's shares and Fig. 3's times and speed-ups:

    python scripts/simulate_scaling.py --preset cyclegan_synthia2bdd_2019 [--framework horovod]
    python scripts/simulate_scaling.py --preset slowfast_ava_2021 [--overlap] [--loader compute]
"""
import argparse
import dataclasses
import json

from chainer_yolo_dist.core import presets
from chainer_yolo_dist.analysis import scaling, scaling_cyclegan, scaling_slowfast

#: Presets with a system model of their own: the default GPU counts are the paper's.
SYSTEM_MODELS = {scaling_cyclegan.PRESET: scaling_cyclegan,
                 scaling_slowfast.PRESET: scaling_slowfast}


def _gpu_list(text):
    try:
        gpus = [int(g) for g in text.split(',') if g.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError('expected comma-separated integers, got %r' % text)
    if not gpus or min(gpus) < 1:
        raise argparse.ArgumentTypeError('GPU counts must be positive, got %r' % text)
    return gpus


def _parser():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--preset', required=True, choices=presets.names())
    parser.add_argument('--gpus', type=_gpu_list,
                        help="comma-separated GPU counts (default 1,16,32,64,128; CycleGAN's "
                             "and SlowFast's presets: the paper's 4,64,128,256,512)")
    parser.add_argument('--json', action='store_true', help='print only the predictions as JSON')
    parser.add_argument('--image-seconds', type=float,
                        help='compute seconds per image on one GPU, e.g. from a measured '
                             'benchmark (default: calibrated from the papers)')
    parser.add_argument('--grad-dtype', choices=('float16', 'float32'),
                        help="AllReduce precision (default: the preset's)")
    parser.add_argument('--ib-gbps', type=float, default=100.0,
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
    return parser


def _system_main(parser, args, topology):
    """The CycleGAN / SlowFast models (their --image-seconds is per image pair / per clip)."""
    module = SYSTEM_MODELS[args.preset]
    gpus = args.gpus or list(presets.load(args.preset, 1).published_gpus)
    model = dict(topology=topology,
                 bytes_per_value=2 if args.grad_dtype == 'float16' else 4)
    if module is scaling_cyclegan:
        if args.overlap or args.loader:
            parser.error('--overlap and --loader apply to SlowFast only')
        model.update(image_seconds=args.image_seconds, framework=args.framework or 'chainermn')
    else:
        if args.framework:
            parser.error('--framework applies to CycleGAN only')
        if any(k % scaling_slowfast.GPUS_PER_NODE for k in gpus):
            parser.error('SlowFast runs on whole nodes: GPU counts must be multiples of %d'
                         % scaling_slowfast.GPUS_PER_NODE)
        model.update(clip_seconds=args.image_seconds, overlap=args.overlap,
                     loader=args.loader or 'table3')
    if args.json:
        print(json.dumps(module.as_json(gpus, **model)))
    else:
        print('\n'.join(module.report(gpus, **model)))


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    name = args.preset
    topology = dataclasses.replace(scaling.ABCI, ib_bandwidth=args.ib_gbps * 1e9 / 8)
    if name in SYSTEM_MODELS:
        _system_main(parser, args, topology)
        return
    if args.framework or args.overlap or args.loader:
        parser.error('--framework, --overlap and --loader apply to CycleGAN / SlowFast only')
    args.gpus = args.gpus or [1, 16, 32, 64, 128]
    preset = presets.load(name, 1)
    grad_bytes = None
    if args.grad_dtype:
        grad_bytes = scaling.model_facts(preset.model, preset.n_class)[0] * (
            2 if args.grad_dtype == 'float16' else 4)
    if args.image_seconds is not None:
        image_seconds, how = args.image_seconds, 'given with --image-seconds'
    else:
        image_seconds, how = scaling.calibrated_image_seconds(name)
    predictions = scaling.predict(name, args.gpus, image_seconds, grad_bytes, topology)
    if args.json:
        print(json.dumps({'gpus': [p.gpus for p in predictions],
                          'speedup': [p.speedup for p in predictions],
                          'epoch_seconds': [p.epoch_seconds for p in predictions]}))
        return
    nbytes = grad_bytes or scaling.gradient_bytes(preset)
    print('Preset %s: %s, %d training images, n = %d per GPU, %d epochs, %.1f MB of gradients '
          'per update' % (name, preset.model, preset.n_train, preset.batchsize_per_gpu,
                          preset.epochs, nbytes / 1e6))
    print('Compute per image on one GPU: %.5f s (%s)' % (image_seconds, how))
    print('Interconnect: NVLink %.0f GB/s in a node, InfiniBand %.1f GB/s between nodes, '
          'x%.2f across racks of %d nodes' % (topology.nvlink_bandwidth / 1e9,
                                               topology.ib_bandwidth / 1e9,
                                               topology.cross_rack_fraction,
                                               topology.nodes_per_rack))
    print()
    print('| GPUs | nodes | racks | updates/epoch | compute s/update | AllReduce s/update '
          '| epoch s | speed-up |')
    print('| --- | --- | --- | --- | --- | --- | --- | --- |')
    for p in predictions:
        print('| %d | %d | %d | %.2f | %.4f | %.4f | %.2f | %.1f |'
              % (p.gpus, topology.nodes(p.gpus), topology.racks(p.gpus),
                 p.iterations_per_epoch, p.compute_seconds, p.allreduce_seconds,
                 p.epoch_seconds, p.speedup))
    rows = scaling.published_scaling(name)
    print()
    if not rows:
        print('The papers publish no timing for preset %s.' % name)
        return
    print('Against the published numbers (error = predicted / published - 1):')
    print()
    print('| GPUs | source | published speed-up | predicted | error | published epoch s '
          '| predicted | error |')
    print('| --- | --- | --- | --- | --- | --- | --- | --- |')
    at = {p.gpus: p for p in scaling.predict(name, sorted({r['gpus'] for r in rows}),
                                             image_seconds, grad_bytes, topology)}
    for r in rows:
        p = at[r['gpus']]
        cells = ['%d' % r['gpus'], r['source'], '%.1f' % r['speedup'], '%.1f' % p.speedup,
                 '%+.0f%%' % (100 * (p.speedup / r['speedup'] - 1))]
        if r['epoch_seconds'] is None:
            cells += ['', '', '']
        else:
            cells += ['%.2f' % r['epoch_seconds'], '%.2f' % p.epoch_seconds,
                      '%+.0f%%' % (100 * (p.epoch_seconds / r['epoch_seconds'] - 1))]
        print('| ' + ' | '.join(cells) + ' |')


if __name__ == '__main__':
    main()
