"""SlowFast R50 on AVA (paper 004) in the ring-AllReduce scaling model of ``analysis/scaling.py``.

Per update each of the ``k`` GPUs (4 per node) takes one step on 8 clips (32 labels per node,
paper 004 sec. 3.3), ``t_step``, then all-reduces the detector's FP32 gradients (33,742,616
parameters, 135 MB) over a ring: NVLink in a node, EDR InfiniBand between nodes, a third of it
between racks (``scaling.Topology``). An epoch is ``ceil(N / k) / 8`` updates (N = 195,000
labels, the preset). Paper 004's five-epoch runs add a data-loader stall at every epoch
boundary while the loader's workers are re-created (Table 3: 110 s with 8 workers, the same
at every node count, sec. 4.2); the RepeatSampler fix keeps the workers and removes it:

    T(k) = epochs * (updates(k) * (t_step(workers) + exposed AllReduce(k)) + stall(workers))

The two configurations of Fig. 3 (sec. 4.3): ``before`` = 8 workers, workers re-created (the
stall paid once per epoch: reading, the first epoch creates them too); ``after`` = RepeatSampler
with 6 workers, no stall.

Readings, each selectable:

- ``loader='table3'`` (default): the step time depends on the workers as Table 3's
  10-iteration times do (11 s with 8, 15 s with 6): the step is loader-bound, and sec. 4.2
  says the iteration time "keeps Table 3's value" with 6 workers up to 32 nodes.
  ``loader='compute'``: the step time is the same for any worker count.
- ``overlap=False`` (default): the AllReduce follows the backward pass. PyTorch DDP does
  launch its 25 MB buckets during backward, but paper 004 lists overlapping communication with
  forward/backward as future work (sec. 4.4, 5) and Table 4 splits the time into compute and
  communication that add up to 100%, so the paper's runs are read as not overlapping.
  ``overlap=True``: the buckets hide behind backward (2/3 of the step); exposed is the larger
  of the last bucket's share and what exceeds the backward time.

``t_clip = t_step(8 workers) / 8`` is calibrated so that the ``before`` model gives the paper's
1-node time exactly (9 h 4 min = 544 min for 5 epochs, sec. 4.3; it includes the five stalls).

The iteration time grows (``growth='fitted'``, default; ``'none'`` leaves it out). Sec. 4.2:
with at most 6 workers and at most 32 nodes the iteration keeps Table 3's time, beyond either it
grows; sec. 4.3: 128 nodes scale worse than 64, their communication time is about 1.8x, the
cause congested InfiniBand routes of NCCL. Per update, on ``n`` nodes with ``w`` workers:

    g(n, w) = gamma * max(0, n / 32 - 1)^2 + delta * max(0, w - 6) * (n^2 - 1) / 32^2

zero up to 32 nodes with 6 workers and on 1 node (the calibration), quadratic beyond (a
reading: growth linear in ``n`` cannot make 128 nodes slower than 64, since the updates per
node halve). ``gamma`` is fitted to the ``after`` time at 64 nodes (15.5 min), ``delta`` to the
``before`` time at 64 nodes (27 min). Table 4 splits each update into GPU compute and
communication that add to 100%: read as the GPU kernels of the 8 clips, the same at every node
count, against everything else of the update (the AllReduce, its congestion, and the waits
inside ``ncclAllReduce`` for ranks still loading); that compute is fitted to Table 4's 32-node
share. Every other published number is a prediction (:func:`comparisons`).
"""
import dataclasses
import math

from chainer_yolo_dist.analysis import published
from chainer_yolo_dist.analysis.scaling import ABCI, ring_allreduce_seconds
from chainer_yolo_dist.core import presets

PRESET = 'slowfast_ava_2021'
#: Facts counted from the real network (``tests/test_scaling_slowfast.py`` recounts them):
#: (model, n_class, clip_frames, side) -> (parameters of the detector, trunk and AVA head;
#: forward FLOPs of all 3D convolutions per clip, ``2 x SlowFast.macs``, which the
#: ``FlopHook`` count over ``ConvolutionND`` equals). The head's linear layer (2 x 2,304 x 80
#: per box) and RoIAlign are left out.
SLOWFAST_FACTS = {
    ('slowfast_r50', 80, 16, 224): (33742616, 73865494528),
}
BASE_GPUS = 4
GPUS_PER_NODE = 4
#: Fig. 3's runs ran 5 epochs (paper 004 sec. 4.3).
EPOCHS = 5
#: DDP's default bucket (PyTorch ``bucket_cap_mb`` 25) and the backward share of a step.
DDP_BUCKET_BYTES = 25 * 1024 ** 2
BACKWARD_SHARE = 2.0 / 3.0
#: Fig. 3's two configurations (paper 004 sec. 4.1-4.3): (loader workers, workers kept).
CONFIGURATIONS = {'before': (8, False), 'after': (6, True)}
LOADERS = ('table3', 'compute')
#: Paper 004 sec. 4.2: the iteration keeps Table 3's time up to 32 nodes with at most 6 workers.
GROWTH_NODES = 32
GROWTH_WORKERS = 6
GROWTHS = ('fitted', 'none')
#: The published points the growth is fitted to: 5-epoch times at 64 nodes (sec. 4.3).
FIT_NODES = 64
#: Table 4's row the GPU compute per update is fitted to.
SHARE_FIT_NODES = 32


def count_facts(model='slowfast_r50', n_class=80, clip_frames=16, side=224):
    """(parameters, forward conv FLOPs per clip) of the detector, built for real (the FLOPs from
    the trunk's analytic ``macs``, checked against the hook in the tests)."""
    from chainer_yolo_dist.slowfast.models import build_detector
    from chainer_yolo_dist.slowfast.networks import count_parameters
    detector = build_detector(model, n_class)
    return (int(count_parameters(detector)),
            2 * int(detector.trunk.macs(clip_frames, side, side)[0]))


def facts(model='slowfast_r50', n_class=80, clip_frames=16, side=224):
    key = (model, n_class, clip_frames, side)
    if key not in SLOWFAST_FACTS:
        SLOWFAST_FACTS[key] = count_facts(*key)
    return SLOWFAST_FACTS[key]


def preset_facts():
    p = presets.load(PRESET, 1)
    return facts(p.model, p.n_class, p.clip_frames, p.insize)


def gradient_bytes(bytes_per_value=4):
    return preset_facts()[0] * bytes_per_value


def table3():
    """{workers: (stall seconds, seconds of 10 iterations)} (paper 004 Table 3, 4 nodes)."""
    return {r['workers']: (r['stall_s'], r['ten_iterations_s'])
            for r in published.table('p004_table3_workers')}


def step_factor(workers, loader='table3'):
    """t_step(workers) / t_step(8 workers) under the ``loader`` reading."""
    if loader == 'compute':
        return 1.0
    if loader == 'table3':
        t = table3()
        return t[workers][1] / t[8][1]
    raise ValueError('loader must be one of %s, got %r' % (LOADERS, loader))


def exposed_allreduce_seconds(gpus, step, overlap=False, topology=ABCI, bytes_per_value=4):
    """AllReduce seconds per update not hidden behind the step."""
    nbytes = gradient_bytes(bytes_per_value)
    ring = ring_allreduce_seconds(nbytes, gpus, topology)
    if not overlap:
        return ring
    return max(ring * min(1.0, DDP_BUCKET_BYTES / nbytes), ring - BACKWARD_SHARE * step)


def growth_seconds(nodes, workers, gamma, delta):
    """Extra seconds per update on ``nodes`` nodes with ``workers`` loader workers (module doc):
    ``gamma * max(0, n / 32 - 1)^2 + delta * max(0, w - 6) * (n^2 - 1) / 32^2``."""
    over_nodes = max(0.0, nodes / GROWTH_NODES - 1.0)
    over_workers = max(0, workers - GROWTH_WORKERS)
    return gamma * over_nodes ** 2 + delta * over_workers * (nodes ** 2 - 1) / GROWTH_NODES ** 2


@dataclasses.dataclass(frozen=True)
class Prediction:
    """The model at ``gpus`` GPUs for one configuration (seconds on ABCI)."""
    gpus: int
    configuration: str
    updates_per_epoch: float
    step_seconds: float          # per update, the 8 clips and their loading (Table 3's time)
    allreduce_seconds: float     # per update, the exposed ring AllReduce
    growth_seconds: float        # per update, g(n, w)
    compute_seconds: float       # per update, Table 4's "compute" (the step without growth)
    stall_seconds: float         # per epoch
    run_seconds: float           # EPOCHS epochs
    speedup: float               # over the 'before' time on 1 node (paper 004 Fig. 3)

    @property
    def update_seconds(self):
        return self.step_seconds + self.allreduce_seconds + self.growth_seconds

    @property
    def comm_seconds(self):
        """Table 4's communication per update: the update less its GPU compute."""
        return self.update_seconds - self.compute_seconds

    @property
    def comm_share(self):
        """Table 4's communication share: communication over the whole update."""
        return self.comm_seconds / self.update_seconds

    @property
    def run_comm_seconds(self):
        """Communication of the whole run (EPOCHS epochs), what sec. 4.3's 1.8x compares."""
        return EPOCHS * self.updates_per_epoch * self.comm_seconds


def _base(gpus, configuration, clip_seconds, loader, overlap, topology, bytes_per_value):
    """(updates per epoch, step, exposed AllReduce, stall per epoch) without the growth."""
    workers, kept = CONFIGURATIONS[configuration]
    p = presets.load(PRESET, gpus)
    step = p.batchsize_per_gpu * clip_seconds * step_factor(workers, loader)
    comm = exposed_allreduce_seconds(gpus, step, overlap, topology, bytes_per_value)
    stall = 0.0 if kept else table3()[workers][0]
    return p.iterations_per_epoch, step, comm, stall


def _run(gpus, configuration, params, loader, overlap, topology, bytes_per_value):
    updates, step, comm, stall = _base(gpus, configuration, params['clip_seconds'], loader,
                                       overlap, topology, bytes_per_value)
    grow = growth_seconds(math.ceil(gpus / GPUS_PER_NODE), CONFIGURATIONS[configuration][0],
                          params['gamma'], params['delta'])
    compute = step
    if params['compute_seconds'] is not None:
        compute = min(step + comm + grow, params['compute_seconds'])
    return (updates, step, comm, grow, compute, stall,
            EPOCHS * (updates * (step + comm + grow) + stall))


def published_minutes():
    """{(configuration, nodes): minutes for 5 epochs} (paper 004 sec. 4.3, Fig. 3)."""
    out = {}
    for r in published.table('p004_five_epoch_time'):
        for conf in CONFIGURATIONS:
            if r['minutes_' + conf] is not None:
                out[(conf, r['nodes'])] = r['minutes_' + conf]
    return out


def calibrated_clip_seconds(loader='table3', overlap=False, topology=ABCI, bytes_per_value=4):
    """Seconds per clip on one V100 with 8 workers such that the ``before`` model gives the
    paper's 1-node time (544 min, stalls included) exactly; solved by fixed-point iteration
    (the exposed AllReduce depends on the step only with ``overlap``)."""
    target = published_minutes()[('before', 1)] * 60
    p = presets.load(PRESET, BASE_GPUS)
    stall = table3()[CONFIGURATIONS['before'][0]][0]
    per_update = (target / EPOCHS - stall) / p.iterations_per_epoch
    step = per_update
    for _ in range(50):
        step = per_update - exposed_allreduce_seconds(BASE_GPUS, step, overlap, topology,
                                                      bytes_per_value)
    return step / p.batchsize_per_gpu


def table4_shares():
    """{nodes: Table 4's communication share in per cent} (paper 004 sec. 4.3)."""
    return {r['nodes']: r['comm_percent'] for r in published.table('p004_table4_compute_comm')}


def fit_growth(clip_seconds=None, loader='table3', overlap=False, topology=ABCI,
               bytes_per_value=4):
    """The growth's parameters, each fitted to one published point (module doc).

    Returns:
        dict: ``clip_seconds`` (given, or calibrated to the 1-node time); ``gamma`` and
        ``delta``, seconds per update fitted to the ``after`` and the ``before`` 5-epoch times
        at 64 nodes; ``compute_seconds``, Table 4's GPU compute per update, fitted to its
        32-node share.
    """
    if clip_seconds is None:
        clip_seconds = calibrated_clip_seconds(loader, overlap, topology, bytes_per_value)
    args = (clip_seconds, loader, overlap, topology, bytes_per_value)
    minutes = published_minutes()

    def missing(configuration):
        # Seconds per update the model without growth lacks at 64 nodes.
        updates, step, comm, stall = _base(FIT_NODES * GPUS_PER_NODE, configuration, *args)
        per_update = (minutes[(configuration, FIT_NODES)] * 60 / EPOCHS - stall) / updates
        return per_update - step - comm

    after, before = CONFIGURATIONS['after'][0], CONFIGURATIONS['before'][0]
    gamma = missing('after') / growth_seconds(FIT_NODES, after, 1.0, 0.0)
    delta = ((missing('before') - growth_seconds(FIT_NODES, before, gamma, 0.0))
             / growth_seconds(FIT_NODES, before, 0.0, 1.0))
    _, step, comm, _ = _base(SHARE_FIT_NODES * GPUS_PER_NODE, 'after', *args)
    update = step + comm + growth_seconds(SHARE_FIT_NODES, after, gamma, delta)
    share = table4_shares()[SHARE_FIT_NODES] / 100
    return {'clip_seconds': clip_seconds, 'gamma': gamma, 'delta': delta,
            'compute_seconds': (1 - share) * update}


def parameters(clip_seconds=None, loader='table3', overlap=False, topology=ABCI,
               bytes_per_value=4, growth='fitted'):
    """The model's parameters (:func:`fit_growth`'s dict; without growth ``gamma`` = ``delta``
    = 0 and ``compute_seconds`` None: Table 4's compute is then the whole step)."""
    if growth not in GROWTHS:
        raise ValueError('growth must be one of %s, got %r' % (GROWTHS, growth))
    if growth == 'fitted':
        return fit_growth(clip_seconds, loader, overlap, topology, bytes_per_value)
    if clip_seconds is None:
        clip_seconds = calibrated_clip_seconds(loader, overlap, topology, bytes_per_value)
    return {'clip_seconds': clip_seconds, 'gamma': 0.0, 'delta': 0.0, 'compute_seconds': None}


def predict(gpus_list, configuration='after', clip_seconds=None, loader='table3',
            overlap=False, topology=ABCI, bytes_per_value=4, growth='fitted'):
    """Predicted 5-epoch time, Table 4's shares and the speed-up over the 1-node ``before``
    time at each GPU count (multiples of 4: whole nodes). Returns :class:`Prediction` s."""
    if configuration not in CONFIGURATIONS:
        raise ValueError('configuration must be one of %s, got %r'
                         % (tuple(CONFIGURATIONS), configuration))
    if clip_seconds is not None and not clip_seconds > 0:
        raise ValueError('clip_seconds must be positive, got %r' % (clip_seconds,))
    params = parameters(clip_seconds, loader, overlap, topology, bytes_per_value, growth)
    args = (params, loader, overlap, topology, bytes_per_value)
    base = _run(BASE_GPUS, 'before', *args)[-1]
    out = []
    for k in gpus_list:
        if int(k) != k or k < 1:
            raise ValueError('GPU counts must be positive integers, got %r' % (k,))
        row = _run(int(k), configuration, *args)
        out.append(Prediction(int(k), configuration, *row, base / row[-1]))
    return out


def share_comparison(**model):
    """Table 4 against the model (``after`` configuration, the profile of sec. 4.3): list of
    ``{'nodes', 'published', 'predicted', 'fitted'}``, communication shares in per cent;
    ``fitted`` whether the row is the one the GPU compute is fitted to."""
    shares = table4_shares()
    preds = predict([n * GPUS_PER_NODE for n in sorted(shares)], 'after', **model)
    fitted = model.get('growth', 'fitted') == 'fitted'
    return [{'nodes': n, 'published': shares[n], 'predicted': 100 * q.comm_share,
             'fitted': fitted and n == SHARE_FIT_NODES} for n, q in zip(sorted(shares), preds)]


def implied_128():
    """What Table 4 and sec. 4.3's 1.8x imply for the ``after`` run on 128 nodes, which Fig. 3
    does not print (reading: the profiled runs are Fig. 3's, their shares hold for the whole
    run): ``{'minutes', 'over_64'}``; 128-node time = 1.8 x share(64) x T(64) / share(128)."""
    shares = table4_shares()
    t64 = published_minutes()[('after', 64)]
    minutes = _comm_ratio() * shares[64] * t64 / shares[128]
    return {'minutes': minutes, 'over_64': minutes / t64}


def _comm_ratio():
    return published.column('headline_numbers', 'value', paper='004',
                            quantity='communication time of 128 nodes over 64 nodes')[0]


def _printed_speedup(configuration):
    return published.column('headline_numbers', 'value', paper='004',
                            quantity='5-epoch speed-up of 64 nodes over 1 node %s RepeatSampler'
                            % configuration)[0]


def comparisons(**model):
    """Every published number of paper 004 sec. 4.2-4.3 against the model.

    Returns:
        list of dicts ``{'quantity', 'published', 'predicted', 'error', 'fitted'}``: error =
        predicted / published - 1; ``fitted`` names the parameter fitted to that point (or the
        fitted points it follows from), None for a prediction. Times in minutes of 5 epochs,
        shares in per cent, speed-ups over the 1-node ``before`` time (544 min).
    """
    growth = model.get('growth', 'fitted') == 'fitted'
    minutes = published_minutes()
    rows = []

    def add(quantity, published_value, predicted, fitted=None):
        rows.append({'quantity': quantity, 'published': published_value,
                     'predicted': predicted, 'error': predicted / published_value - 1,
                     'fitted': fitted})

    fits = {('before', 1): 't_clip', ('before', FIT_NODES): 'delta' if growth else None,
            ('after', FIT_NODES): 'gamma' if growth else None}
    runs = {}
    for (conf, nodes), m in sorted(minutes.items(), key=lambda kv: (kv[0][0] != 'before',
                                                                    kv[0][1])):
        q = predict([nodes * GPUS_PER_NODE], conf, **model)[0]
        runs[(conf, nodes)] = q
        add('%s, %d node%s: 5 epochs, min' % (conf, nodes, 's' if nodes > 1 else ''), m,
            q.run_seconds / 60, fits.get((conf, nodes)))
    for conf in CONFIGURATIONS:
        q = runs[(conf, FIT_NODES)]
        both = fits[(conf, FIT_NODES)]
        add('%s, %d nodes: speed-up over 1 node (printed)' % (conf, FIT_NODES),
            _printed_speedup(conf), q.speedup, 't_clip, ' + both if both else None)
    for r in share_comparison(**model):
        add('Table 4, %d nodes: communication share, %%' % r['nodes'], r['published'],
            r['predicted'], 'compute' if r['fitted'] else None)
    at64, at128 = predict([FIT_NODES * GPUS_PER_NODE, 128 * GPUS_PER_NODE], 'after', **model)
    implied = implied_128()
    add('after, 128 nodes: 5 epochs, min (implied by Table 4 and the 1.8x)', implied['minutes'],
        at128.run_seconds / 60)
    add('after: 5-epoch time of 128 nodes over 64 (paper: above 1; implied)',
        implied['over_64'], at128.run_seconds / at64.run_seconds)
    add('128 over 64 nodes: communication time of the whole run (sec. 4.3)', _comm_ratio(),
        at128.run_comm_seconds / at64.run_comm_seconds)
    per_update = _comm_ratio() * at64.updates_per_epoch / at128.updates_per_epoch
    add('128 over 64 nodes: communication time per update (1.8 x %.2f / %.3f updates)'
        % (at64.updates_per_epoch, at128.updates_per_epoch), per_update,
        at128.comm_seconds / at64.comm_seconds)
    return rows


def report(gpus_list, clip_seconds=None, loader='table3', overlap=False, topology=ABCI,
           bytes_per_value=4, growth='fitted'):
    """The lines ``scripts/simulate_scaling.py --preset slowfast_ava_2021`` prints."""
    model = dict(clip_seconds=clip_seconds, loader=loader, overlap=overlap,
                 topology=topology, bytes_per_value=bytes_per_value, growth=growth)
    params = parameters(**model)
    how = 'given'
    if clip_seconds is None:
        how = "calibrated to the paper's 1-node time, 544 min for 5 epochs, stalls included"
    p = presets.load(PRESET, 1)
    n_params, flops = preset_facts()
    t = params['clip_seconds']
    lines = [
        'Preset %s: %s, %s parameters (%.1f MB of FP%d gradients per update), %d clips of %d '
        'frames at %d px per GPU, %s labels per epoch, %d epochs timed'
        % (PRESET, p.model, format(n_params, ','), gradient_bytes(bytes_per_value) / 1e6,
           8 * bytes_per_value, p.batchsize_per_gpu, p.clip_frames, p.insize,
           format(p.n_train, ','), EPOCHS),
        'Readings: loader=%s, AllReduce %s, growth=%s' % (
            loader, 'overlapped with backward (DDP buckets)' if overlap else
            'after backward, not overlapped', growth),
        'Compute per clip with 8 workers: %.4f s (%s); forward %.1f GFLOP per clip, %.1f '
        'TFLOP/s sustained at 3 x forward' % (t, how, flops / 1e9, 3 * flops / t / 1e12),
    ]
    if growth == 'fitted':
        lines += [
            'Growth per update on n nodes with w workers: g = gamma max(0, n/%d - 1)^2 + delta '
            'max(0, w - %d) (n^2 - 1)/%d^2' % (GROWTH_NODES, GROWTH_WORKERS, GROWTH_NODES),
            'Fitted: gamma = %.3f s (to after, %d nodes, %.1f min), delta = %.4f s (to before, '
            '%d nodes, %.0f min), Table 4 compute = %.3f s per update (to its %d-node share, '
            '%.1f%%)' % (params['gamma'], FIT_NODES, published_minutes()[('after', FIT_NODES)],
                         params['delta'], FIT_NODES,
                         published_minutes()[('before', FIT_NODES)],
                         params['compute_seconds'], SHARE_FIT_NODES,
                         table4_shares()[SHARE_FIT_NODES])]
    lines += [
        '',
        '| configuration | GPUs | nodes | updates/epoch | step s | AllReduce s | growth s '
        '| stall s/epoch | 5 epochs min | speed-up | comm share |',
        '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ]
    for conf in CONFIGURATIONS:
        for q in predict(gpus_list, conf, **model):
            lines.append('| %s | %d | %d | %.1f | %.3f | %.4f | %.3f | %.0f | %.1f | %.1f | '
                         '%.1f%% |' % (conf, q.gpus, topology.nodes(q.gpus),
                                       q.updates_per_epoch, q.step_seconds,
                                       q.allreduce_seconds, q.growth_seconds, q.stall_seconds,
                                       q.run_seconds / 60, q.speedup, 100 * q.comm_share))
    rows = comparisons(**model)
    for title, chosen in (('Fitted points (each reproduced by the parameter named; 544 min '
                           'calibrates t_clip):', [r for r in rows if r['fitted']]),
                          ('Predictions, points used in no fit (error = predicted / published '
                           '- 1):', [r for r in rows if not r['fitted']])):
        lines += ['', title, '', '| quantity | published | predicted | error | fitted by |',
                  '| --- | --- | --- | --- | --- |']
        for r in chosen:
            lines.append('| %s | %.2f | %.2f | %+.1f%% | %s |' % (
                r['quantity'], r['published'], r['predicted'], 100 * r['error'],
                r['fitted'] or '-'))
    return lines


def as_json(gpus_list, **model):
    """``{'gpus', 'speedup_before', 'speedup_after', 'comm_share_after'}`` for ``--json``."""
    before = predict(gpus_list, 'before', **model)
    after = predict(gpus_list, 'after', **model)
    return {'gpus': [q.gpus for q in after],
            'speedup_before': [q.speedup for q in before],
            'speedup_after': [q.speedup for q in after],
            'comm_share_after': [q.comm_share for q in after]}
