"""The tables of ``scripts/simulate_scaling.py``: one preset's predicted scaling, as text lines.

Three models answer, by preset and options (:func:`report` picks one):

* paper 003's data-parallel modes on TSUBAME 2.5 (:mod:`.scaling_modes`), with ``mode`` or for
  a preset whose paper ran another mode than synchronous (:data:`PAPER_MODES`): each mode's
  images per second over one GPU, paper 003's 48-GPU claim and a sensitivity table;
* CycleGAN's and SlowFast's own models (:data:`SYSTEM_MODELS`: :mod:`.scaling_cyclegan`,
  :mod:`.scaling_slowfast`, whose ``report`` / ``as_json`` print themselves);
* otherwise the ABCI epoch model of :mod:`.scaling`: time per epoch and speed-up against the
  published speed-ups and epoch times.

Every function returns the lines to print (no trailing newlines); with ``as_json`` one line
of JSON holding only the predictions. GPU counts are totals k; times are seconds unless a
column says otherwise.
"""
import dataclasses
import json

from chainer_yolo_dist.core import presets
from chainer_yolo_dist.analysis import (scaling, scaling_cyclegan, scaling_modes,
                                        scaling_slowfast)

#: Presets with a system model of their own: the default GPU counts are the paper's.
SYSTEM_MODELS = {scaling_cyclegan.PRESET: scaling_cyclegan,
                 scaling_slowfast.PRESET: scaling_slowfast}

#: Presets whose paper ran another mode than synchronous: their default mode.
PAPER_MODES = {'cnn11_imagenet_async_2015': 'async'}

#: GPU counts of the ABCI epoch model when none are given.
DEFAULT_GPUS = (1, 16, 32, 64, 128)


def default_gpus(name, mode=None):
    """GPU counts reported when none are given: the paper's for the modes and the system
    models, else :data:`DEFAULT_GPUS`."""
    if mode or name in PAPER_MODES or name in SYSTEM_MODELS:
        return list(presets.load(name, 1).published_gpus)
    return list(DEFAULT_GPUS)


def report(name, gpus=None, as_json=False, image_seconds=None, grad_dtype=None, ib_gbps=100.0,
           framework=None, overlap=False, loader=None, mode=None, servers=1, push_every=1,
           pull_every=1, average_every=4,
           sustained_tflops=scaling_modes.K20X_SUSTAINED_FLOPS / 1e12):
    """The lines ``scripts/simulate_scaling.py`` prints for preset ``name``.

    Args: as the script's options (``grad_dtype`` 'float16' / 'float32' or None for the
    preset's; ``ib_gbps`` InfiniBand Gb/s per node; ``framework``, ``overlap``, ``loader``
    for CycleGAN / SlowFast; ``mode`` and the rest for paper 003's modes). Options of another
    model are ignored: the script refuses them first.
    """
    if mode or name in PAPER_MODES:
        return modes_report(name, gpus or default_gpus(name, mode), mode or PAPER_MODES[name],
                            as_json, sustained_tflops, average_every, servers, push_every,
                            pull_every)
    topology = dataclasses.replace(scaling.ABCI, ib_bandwidth=ib_gbps * 1e9 / 8)
    if name in SYSTEM_MODELS:
        return system_report(name, gpus or default_gpus(name), as_json, image_seconds,
                             grad_dtype, topology, framework, overlap, loader)
    return abci_report(name, gpus or default_gpus(name), as_json, image_seconds, grad_dtype,
                       topology)


def system_report(name, gpus, as_json=False, image_seconds=None, grad_dtype=None,
                  topology=scaling.ABCI, framework=None, overlap=False, loader=None):
    """CycleGAN's or SlowFast's model (``image_seconds`` is per image pair / per clip)."""
    module = SYSTEM_MODELS[name]
    model = dict(topology=topology, bytes_per_value=2 if grad_dtype == 'float16' else 4)
    if module is scaling_cyclegan:
        model.update(image_seconds=image_seconds, framework=framework or 'chainermn')
    else:
        model.update(clip_seconds=image_seconds, overlap=overlap, loader=loader or 'table3')
    if as_json:
        return [json.dumps(module.as_json(gpus, **model))]
    return module.report(gpus, **model)


def abci_report(name, gpus, as_json=False, image_seconds=None, grad_dtype=None,
                topology=scaling.ABCI):
    """The ABCI epoch model: a table of predictions, then one against the published numbers.

    ``image_seconds`` None: calibrated from the papers (:func:`.scaling.calibrated_image_seconds`).
    """
    preset = presets.load(name, 1)
    grad_bytes = None
    if grad_dtype:
        grad_bytes = scaling.model_facts(preset.model, preset.n_class)[0] * (
            2 if grad_dtype == 'float16' else 4)
    if image_seconds is not None:
        how = 'given with --image-seconds'
    else:
        image_seconds, how = scaling.calibrated_image_seconds(name)
    predictions = scaling.predict(name, gpus, image_seconds, grad_bytes, topology)
    if as_json:
        return [json.dumps({'gpus': [p.gpus for p in predictions],
                            'speedup': [p.speedup for p in predictions],
                            'epoch_seconds': [p.epoch_seconds for p in predictions]})]
    nbytes = grad_bytes or scaling.gradient_bytes(preset)
    lines = [
        'Preset %s: %s, %d training images, n = %d per GPU, %d epochs, %.1f MB of gradients '
        'per update' % (name, preset.model, preset.n_train, preset.batchsize_per_gpu,
                        preset.epochs, nbytes / 1e6),
        'Compute per image on one GPU: %.5f s (%s)' % (image_seconds, how),
        'Interconnect: NVLink %.0f GB/s in a node, InfiniBand %.1f GB/s between nodes, '
        'x%.2f across racks of %d nodes' % (topology.nvlink_bandwidth / 1e9,
                                            topology.ib_bandwidth / 1e9,
                                            topology.cross_rack_fraction,
                                            topology.nodes_per_rack),
        '',
        '| GPUs | nodes | racks | updates/epoch | compute s/update | AllReduce s/update '
        '| epoch s | speed-up |',
        '| --- | --- | --- | --- | --- | --- | --- | --- |',
    ]
    for p in predictions:
        lines.append('| %d | %d | %d | %.2f | %.4f | %.4f | %.2f | %.1f |'
                     % (p.gpus, topology.nodes(p.gpus), topology.racks(p.gpus),
                        p.iterations_per_epoch, p.compute_seconds, p.allreduce_seconds,
                        p.epoch_seconds, p.speedup))
    rows = scaling.published_scaling(name)
    lines.append('')
    if not rows:
        return lines + ['The papers publish no timing for preset %s.' % name]
    lines += ['Against the published numbers (error = predicted / published - 1):', '',
              '| GPUs | source | published speed-up | predicted | error | published epoch s '
              '| predicted | error |',
              '| --- | --- | --- | --- | --- | --- | --- | --- |']
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
        lines.append('| ' + ' | '.join(cells) + ' |')
    return lines


def modes_report(name, gpus, mode, as_json=False,
                 sustained_tflops=scaling_modes.K20X_SUSTAINED_FLOPS / 1e12, average_every=4,
                 servers=1, push_every=1, pull_every=1):
    """Paper 003's question on TSUBAME 2.5: each mode's images per second over one GPU.

    A table of every mode at every count in ``gpus``, paper 003's published ratio against
    ``mode``'s prediction, and the ratio at its GPU count against the assumed sustained rate
    (``sustained_tflops`` TFLOP/s of one K20X) for a few mode settings.
    """
    cluster = scaling_modes.TSUBAME25
    preset = presets.load(name, 1)
    params = scaling.model_facts(preset.model, preset.n_class)[0]
    param_bytes = 4 * params
    rate = sustained_tflops * 1e12
    t_img = scaling_modes.preset_image_seconds(preset, rate)
    flops = scaling.forward_flops(preset.model, preset.n_class, preset.insize)
    options = {'sync': {}, 'local': {'average_every': average_every},
               'async': {'servers': servers, 'push_every': push_every,
                         'pull_every': pull_every}}
    predictions = [scaling_modes.predict_mode(m, k, preset.batchsize_per_gpu, t_img,
                                              param_bytes, cluster, **options[m])
                   for k in gpus for m in scaling_modes.MODES]
    if as_json:
        return [json.dumps({'gpus': gpus, 'mode': mode, 'ratio': [
            p.ratio for p in predictions if p.mode == mode]})]
    lines = [
        'Preset %s: %s, n = %d per GPU, %.2f M parameters = %.1f MB of float32 gradients '
        'per push, pull or AllReduce' % (name, preset.model, preset.batchsize_per_gpu,
                                         params / 1e6, param_bytes / 1e6),
        'Cluster: %s (a reading of its public facts): %d GPUs per node, GPU link %.1f GB/s, '
        'node interconnect %.1f GB/s (dual-rail QDR InfiniBand), %g us per message, full '
        'bisection' % (cluster.name, cluster.gpus_per_node, cluster.gpu_link_bandwidth / 1e9,
                       cluster.node_bandwidth / 1e9, cluster.latency * 1e6),
        'Compute per image (assumed: paper 003 publishes none): %d x %.2f GFLOP forward at '
        '%dx%d / %.2f TFLOP/s sustained = %.4f s'
        % (scaling_modes.TRAINING_FLOPS_PER_FORWARD, flops / 1e9, preset.insize,
           preset.insize, rate / 1e12, t_img),
        'Modes: sync (ring AllReduce after each update), local (weights averaged every %d '
        'updates), async (%d server(s), push every %d, pull every %d, non-blocking)'
        % (average_every, servers, push_every, pull_every),
        '',
        '| GPUs | mode | compute s/update | s/update | images/s | ratio over 1 GPU | bound |',
        '| --- | --- | --- | --- | --- | --- | --- |',
    ]
    for p in predictions:
        lines.append('| %d | %s | %.4f | %.4f | %.1f | %.1f | %s |' % (
            p.gpus, p.mode, p.compute, p.update_seconds, p.images_per_second, p.ratio,
            p.bound))
    paper_gpus, bound = scaling_modes.paper003_published()
    (at,) = [scaling_modes.predict_mode(mode, paper_gpus, preset.batchsize_per_gpu, t_img,
                                        param_bytes, cluster, **options[mode])]
    lines += ['', 'Paper 003 (Results and discussion): over %gx one GPU\'s images per second '
              'at %d GPUs; predicted (%s): %.1fx, bound by %s'
              % (bound, paper_gpus, mode, at.ratio, at.bound)]
    columns = [('sync', {'mode': 'sync'}),
               ('local H=%d' % average_every, dict(mode='local', **options['local']))]
    columns += [('async S=%d, n=%d' % (s, n), dict(mode='async', servers=s, batchsize=n,
                                                   push_every=push_every,
                                                   pull_every=pull_every))
                for s, n in ((1, preset.batchsize_per_gpu), (1, 4), (4, 4), (1, 1))]
    rows = scaling_modes.sensitivity(preset, paper_gpus,
                                     [0.5e12, 1.0e12, 1.3e12, 2.0e12, 3.0e12], columns,
                                     cluster=cluster)
    lines += ['', 'Ratio at %d GPUs against the assumed sustained rate (n = %d unless given):'
              % (paper_gpus, preset.batchsize_per_gpu), '',
              '| TFLOP/s | t_img s | ' + ' | '.join(label for label, _ in columns) + ' |',
              '| --- | --- | ' + ' | '.join('---' for _ in columns) + ' |']
    for rate_, t, ratios in rows:
        lines.append('| %.1f | %.4f | ' % (rate_ / 1e12, t)
                     + ' | '.join('%.1f' % r for r in ratios) + ' |')
    return lines
