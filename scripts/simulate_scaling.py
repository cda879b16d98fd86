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

Paper 003's modes (chainer_yolo_dist.analysis.scaling_modes): with --mode, or for the preset
cnn11_imagenet_async_2015, the throughput ratio over one GPU of synchronous, periodic-averaging
(--average-every H) and asynchronous (--servers, --push-every, --pull-every) training on
TSUBAME 2.5, beside paper 003's "over 30x" at 48 GPUs, with a sensitivity table:

    python scripts/simulate_scaling.py --preset cnn11_imagenet_async_2015 --gpus 1,3,12,48
"""
import argparse
import dataclasses
import json

from chainer_yolo_dist.core import cli, presets
from chainer_yolo_dist.analysis import (scaling, scaling_cyclegan, scaling_modes,
                                        scaling_slowfast)

#: Presets with a system model of their own: the default GPU counts are the paper's.
SYSTEM_MODELS = {scaling_cyclegan.PRESET: scaling_cyclegan,
                 scaling_slowfast.PRESET: scaling_slowfast}

#: Presets whose paper ran another mode than synchronous: their default --mode.
PAPER_MODES = {'cnn11_imagenet_async_2015': 'async'}


def _parser():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--preset', required=True, choices=presets.names())
    parser.add_argument('--gpus', type=cli.positive_int_list,
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
    m = parser.add_argument_group('paper 003: data-parallel modes on TSUBAME 2.5 '
                                  '(chainer_yolo_dist.analysis.scaling_modes)')
    m.add_argument('--mode', choices=scaling_modes.MODES,
                   help='throughput ratio of this mode on TSUBAME 2.5 (default: async for '
                        'cnn11_imagenet_async_2015, else the ABCI epoch model above)')
    m.add_argument('--servers', type=int, default=1, help='async: parameter servers S')
    m.add_argument('--push-every', type=int, default=1, help='async: updates per push')
    m.add_argument('--pull-every', type=int, default=1, help='async: updates per pull')
    m.add_argument('--average-every', type=int, default=4,
                   help='local: updates between two averagings H (Darknet: 4)')
    m.add_argument('--sustained-tflops', type=float,
                   default=scaling_modes.K20X_SUSTAINED_FLOPS / 1e12,
                   help='assumed sustained single-precision TFLOP/s of one K20X on the '
                        'network (default %(default)s: about a third of its 3.95 peak)')
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
    if args.mode or name in PAPER_MODES:
        args.gpus = args.gpus or list(presets.load(name, 1).published_gpus)
        return _modes(args, args.mode or PAPER_MODES[name])
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


def _modes(args, mode):
    """Paper 003's question on TSUBAME 2.5: each mode's images per second over one GPU."""
    cluster = scaling_modes.TSUBAME25
    preset = presets.load(args.preset, 1)
    params = scaling.model_facts(preset.model, preset.n_class)[0]
    param_bytes = 4 * params
    rate = args.sustained_tflops * 1e12
    t_img = scaling_modes.preset_image_seconds(preset, rate)
    flops = scaling.forward_flops(preset.model, preset.n_class, preset.insize)
    options = {'sync': {}, 'local': {'average_every': args.average_every},
               'async': {'servers': args.servers, 'push_every': args.push_every,
                         'pull_every': args.pull_every}}
    predictions = [scaling_modes.predict_mode(m, k, preset.batchsize_per_gpu, t_img,
                                              param_bytes, cluster, **options[m])
                   for k in args.gpus for m in scaling_modes.MODES]
    if args.json:
        print(json.dumps({'gpus': args.gpus, 'mode': mode, 'ratio': [
            p.ratio for p in predictions if p.mode == mode]}))
        return
    print('Preset %s: %s, n = %d per GPU, %.2f M parameters = %.1f MB of float32 gradients '
          'per push, pull or AllReduce' % (args.preset, preset.model, preset.batchsize_per_gpu,
                                           params / 1e6, param_bytes / 1e6))
    print('Cluster: %s (a reading of its public facts): %d GPUs per node, GPU link %.1f GB/s, '
          'node interconnect %.1f GB/s (dual-rail QDR InfiniBand), %g us per message, full '
          'bisection' % (cluster.name, cluster.gpus_per_node, cluster.gpu_link_bandwidth / 1e9,
                         cluster.node_bandwidth / 1e9, cluster.latency * 1e6))
    print('Compute per image (assumed: paper 003 publishes none): %d x %.2f GFLOP forward at '
          '%dx%d / %.2f TFLOP/s sustained = %.4f s'
          % (scaling_modes.TRAINING_FLOPS_PER_FORWARD, flops / 1e9, preset.insize,
             preset.insize, rate / 1e12, t_img))
    print('Modes: sync (ring AllReduce after each update), local (weights averaged every %d '
          'updates), async (%d server(s), push every %d, pull every %d, non-blocking)'
          % (args.average_every, args.servers, args.push_every, args.pull_every))
    print()
    print('| GPUs | mode | compute s/update | s/update | images/s | ratio over 1 GPU | bound |')
    print('| --- | --- | --- | --- | --- | --- | --- |')
    for p in predictions:
        print('| %d | %s | %.4f | %.4f | %.1f | %.1f | %s |' % (
            p.gpus, p.mode, p.compute, p.update_seconds, p.images_per_second, p.ratio,
            p.bound))
    gpus, bound = scaling_modes.paper003_published()
    (at,) = [scaling_modes.predict_mode(mode, gpus, preset.batchsize_per_gpu, t_img,
                                        param_bytes, cluster, **options[mode])]
    print()
    print('Paper 003 (Results and discussion): over %gx one GPU\'s images per second at %d '
          'GPUs; predicted (%s): %.1fx, bound by %s' % (bound, gpus, mode, at.ratio, at.bound))
    columns = [('sync', {'mode': 'sync'}),
               ('local H=%d' % args.average_every, dict(mode='local', **options['local']))]
    columns += [('async S=%d, n=%d' % (s, n), dict(mode='async', servers=s, batchsize=n,
                                                   push_every=args.push_every,
                                                   pull_every=args.pull_every))
                for s, n in ((1, preset.batchsize_per_gpu), (1, 4), (4, 4), (1, 1))]
    rows = scaling_modes.sensitivity(preset, gpus, [0.5e12, 1.0e12, 1.3e12, 2.0e12, 3.0e12],
                                     columns, cluster=cluster)
    print()
    print('Ratio at %d GPUs against the assumed sustained rate (n = %d unless given):'
          % (gpus, preset.batchsize_per_gpu))
    print()
    print('| TFLOP/s | t_img s | ' + ' | '.join(label for label, _ in columns) + ' |')
    print('| --- | --- | ' + ' | '.join('---' for _ in columns) + ' |')
    for rate_, t, ratios in rows:
        print('| %.1f | %.4f | ' % (rate_ / 1e12, t) + ' | '.join('%.1f' % r for r in ratios)
              + ' |')


if __name__ == '__main__':
    main()
