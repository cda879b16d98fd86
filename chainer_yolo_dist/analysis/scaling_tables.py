"""The tables of ``scripts/simulate_scaling.py``: one preset's predicted scaling, as text lines.

Three models answer, by preset and options (:func:`report` picks one):

* paper 003's data-parallel modes on TSUBAME 2.5 (:mod:`.scaling_modes`), with ``mode`` or for
  a preset whose paper ran another mode than synchronous (:data:`PAPER_MODES`): each mode's
  images per second over one GPU, paper 003's 48-GPU claim and a sensitivity table;
* CycleGAN's and SlowFast's own models (:data:`SYSTEM_MODELS`: :mod:`.scaling_cyclegan`,
  :mod:`.scaling_slowfast`, whose ``report`` / ``as_json`` print themselves);
* otherwise the ABCI epoch model of :mod:`.scaling`: time per epoch and speed-up against the
  published speed-ups and epoch times.

With ``--calibrate`` (:func:`calibrate_report`) any of the YOLO / Darknet, CycleGAN and SlowFast
models has its overheads fitted to two points (:mod:`.scaling_calibrate`).

Every function returns the lines to print (no trailing newlines); with ``as_json`` one line
of JSON holding only the predictions. GPU counts are totals k; times are seconds unless a
column says otherwise.
"""
import dataclasses
import json

from chainer_yolo_dist.core import presets
from chainer_yolo_dist.analysis import (scaling, scaling_calibrate, scaling_cyclegan,
                                        scaling_modes, scaling_slowfast)

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
           sustained_tflops=scaling_modes.K20X_SUSTAINED_FLOPS / 1e12, growth=None):
    """The lines ``scripts/simulate_scaling.py`` prints for preset ``name``.

    Args: as the script's options (``grad_dtype`` 'float16' / 'float32' or None for the
    preset's; ``ib_gbps`` InfiniBand Gb/s per node; ``framework``, ``overlap``, ``loader``
    for CycleGAN / SlowFast, ``growth`` for SlowFast; ``mode`` and the rest for paper 003's
    modes). Options of another model are ignored: the script refuses them first.
    """
    if mode or name in PAPER_MODES:
        return modes_report(name, gpus or default_gpus(name, mode), mode or PAPER_MODES[name],
                            as_json, sustained_tflops, average_every, servers, push_every,
                            pull_every)
    topology = dataclasses.replace(scaling.ABCI, ib_bandwidth=ib_gbps * 1e9 / 8)
    if name in SYSTEM_MODELS:
        return system_report(name, gpus or default_gpus(name), as_json, image_seconds,
                             grad_dtype, topology, framework, overlap, loader, growth)
    return abci_report(name, gpus or default_gpus(name), as_json, image_seconds, grad_dtype,
                       topology)


def system_report(name, gpus, as_json=False, image_seconds=None, grad_dtype=None,
                  topology=scaling.ABCI, framework=None, overlap=False, loader=None,
                  growth=None):
    """CycleGAN's or SlowFast's model (``image_seconds`` is per image pair / per clip)."""
    module = SYSTEM_MODELS[name]
    model = dict(topology=topology, bytes_per_value=2 if grad_dtype == 'float16' else 4)
    if module is scaling_cyclegan:
        model.update(image_seconds=image_seconds, framework=framework or 'chainermn')
    else:
        model.update(clip_seconds=image_seconds, overlap=overlap, loader=loader or 'table3',
                     growth=growth or 'fitted')
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
    lines += ['', 'Paper 003 (Overview): over %gx one GPU\'s images per second '
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


def calibrate_report(name=None, gpus=None, as_json=False, run_dirs=None, ib_gbps=100.0,
                     grad_dtype=None, framework=None, overlap=False, loader=None):
    """``--calibrate``: the model's overheads fitted to two points, the rest predicted.

    ``run_dirs`` empty: preset ``name`` fitted to its two smallest published points beyond the
    base (:func:`.scaling_calibrate.published_calibration`); else two run folders
    (:func:`.scaling_calibrate.run_calibration`; ``name``, if given, must be their preset).
    ``gpus``: GPU counts predicted besides the points (default: :func:`default_gpus`). Other
    arguments as :func:`report`. With ``as_json`` one line: ``{'preset', 'parameters':
    [{'configuration', 'a', 'e', 'u', 'fitted_gpus'}], 'rows': [{'gpus', 'configuration',
    'role', 'published_speedup', 'predicted_speedup', 'published_seconds',
    'predicted_seconds'}]}``, one row per GPU count and configuration (with run folders
    "published" is the measured value). Raises ValueError for run folders that do not fit.
    """
    topology = dataclasses.replace(scaling.ABCI, ib_bandwidth=ib_gbps * 1e9 / 8)
    if run_dirs:
        fits = [scaling_calibrate.run_calibration(run_dirs, gpus or DEFAULT_GPUS, topology)]
        ran = fits[0]['curve'].preset
        if name and name != ran:
            raise ValueError('--preset %s, but the run folders trained %s' % (name, ran))
        name = ran
    else:
        bytes_per_value = 2 if grad_dtype == 'float16' else 4
        model = {'framework': framework, 'overlap': overlap, 'loader': loader,
                 'bytes_per_value': bytes_per_value}
        if grad_dtype and name not in SYSTEM_MODELS:
            preset = presets.load(name, 1)
            model['grad_bytes'] = scaling.model_facts(preset.model,
                                                      preset.n_class)[0] * bytes_per_value
        fits = scaling_calibrate.published_calibration(name, gpus or default_gpus(name),
                                                       topology, **model)
    if as_json:
        return [json.dumps({
            'preset': name,
            'parameters': [{'configuration': f['curve'].configuration, 'a': f['a'],
                            'e': f['e'], 'u': _u(f), 'fitted_gpus': [p.gpus for p in
                                                                     f['fitted']]}
                           for f in fits],
            'rows': [{'gpus': r['gpus'], 'configuration': f['curve'].configuration,
                      'role': r['role'], 'published_speedup': r['published_speedup'],
                      'predicted_speedup': r['predicted_speedup'],
                      'published_seconds': r['published_seconds'],
                      'predicted_seconds': r['predicted_seconds']}
                     for f in fits for r in f['rows']]})]
    if not fits:
        return ['The papers publish no timing for preset %s: give two run folders '
                '(--calibrate RUN_DIR RUN_DIR).' % name]
    lines = ['Calibrated planner, preset %s: T(k) = E (U(k) (a + AllReduce(k)) + s(k) + e), '
             'a (seconds per update) and e (seconds per epoch) fitted to two points; checks '
             'within %d%% pass (error = predicted / published - 1)'
             % (name, round(100 * scaling_calibrate.TOLERANCE))]
    for f in fits:
        curve = f['curve']
        label = ' (%s)' % curve.configuration if curve.configuration else ''
        fitted = ' and '.join('%d GPUs (%s)' % (p.gpus, p.source) for p in f['fitted'])
        u = _u(f)
        per_update = 'a = %.4f s per update' % f['a']
        if u is not None:
            per_update += " (the model's compute %.4f s + u = %.4f s)" % (curve.compute, u)
        lines += ['', 'Fitted%s to %s: %s, e = %.2f s per epoch%s' % (
            label, fitted, per_update, f['e'],
            ' (one point: e = 0)' if len(f['fitted']) == 1 else ''), '',
            '| GPUs | role | source | {0} speed-up | predicted | error | {0} {1} '
            '| predicted | error | within {2}% |'.format(
                'measured' if run_dirs else 'published', curve.unit,
                round(100 * scaling_calibrate.TOLERANCE)),
            '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |']
        for r in f['rows']:
            lines.append('| ' + ' | '.join(_calibrated_cells(curve, r)) + ' |')
        checks = [r for r in f['rows'] if r['role'] == 'check']
        if not checks:
            lines.append('Two run folders: every other GPU count is a prediction.' if run_dirs
                         else 'No published point beyond the fitted ones%s: nothing to check.'
                         % label)
        for r in checks:
            if not r['within']:
                lines.append('Miss at %d GPUs%s: %s.' % (r['gpus'], label, r['why']))
    return lines


def _u(fit):
    compute = fit['curve'].compute
    return None if compute is None else fit['a'] - compute


def _calibrated_cells(curve, r):
    def num(value, fmt):
        return '' if value is None else fmt % value

    def err(value):
        return '' if value is None else '%+.1f%%' % (100 * value)

    published_time = num(r['published_seconds'] and r['published_seconds'] / curve.scale,
                         '%.2f')
    if r['slower_than'] is not None:
        published_time = '> %.2f' % (r['slower_than'] / curve.scale)
    within = {None: '', True: 'yes', False: 'MISS'}[r['within']]
    return ['%d' % r['gpus'], r['role'], r['source'], num(r['published_speedup'], '%.1f'),
            '%.1f' % r['predicted_speedup'], err(r['speedup_error']), published_time,
            '%.2f' % (r['predicted_seconds'] / curve.scale), err(r['time_error']), within]
