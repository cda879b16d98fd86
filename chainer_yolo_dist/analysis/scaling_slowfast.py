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
"""
import dataclasses

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


@dataclasses.dataclass(frozen=True)
class Prediction:
    """The model at ``gpus`` GPUs for one configuration (seconds on ABCI)."""
    gpus: int
    configuration: str
    updates_per_epoch: float
    step_seconds: float          # per update, the 8 clips (and their loading)
    allreduce_seconds: float     # per update, exposed
    stall_seconds: float         # per epoch
    run_seconds: float           # EPOCHS epochs
    speedup: float               # over the 'before' time on 1 node (paper 004 Fig. 3)

    @property
    def comm_share(self):
        """AllReduce over (step + AllReduce): Table 4's communication share."""
        return self.allreduce_seconds / (self.step_seconds + self.allreduce_seconds)


def _run(gpus, configuration, clip_seconds, loader, overlap, topology, bytes_per_value):
    workers, kept = CONFIGURATIONS[configuration]
    p = presets.load(PRESET, gpus)
    step = p.batchsize_per_gpu * clip_seconds * step_factor(workers, loader)
    comm = exposed_allreduce_seconds(gpus, step, overlap, topology, bytes_per_value)
    stall = 0.0 if kept else table3()[workers][0]
    updates = p.iterations_per_epoch
    return updates, step, comm, stall, EPOCHS * (updates * (step + comm) + stall)


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


def predict(gpus_list, configuration='after', clip_seconds=None, loader='table3',
            overlap=False, topology=ABCI, bytes_per_value=4):
    """Predicted 5-epoch time, Table 4's shares and the speed-up over the 1-node ``before``
    time at each GPU count (multiples of 4: whole nodes). Returns :class:`Prediction` s."""
    if configuration not in CONFIGURATIONS:
        raise ValueError('configuration must be one of %s, got %r'
                         % (tuple(CONFIGURATIONS), configuration))
    if clip_seconds is None:
        clip_seconds = calibrated_clip_seconds(loader, overlap, topology, bytes_per_value)
    if not clip_seconds > 0:
        raise ValueError('clip_seconds must be positive, got %r' % (clip_seconds,))
    args = (clip_seconds, loader, overlap, topology, bytes_per_value)
    base = _run(BASE_GPUS, 'before', *args)[4]
    out = []
    for k in gpus_list:
        if int(k) != k or k < 1:
            raise ValueError('GPU counts must be positive integers, got %r' % (k,))
        updates, step, comm, stall, seconds = _run(int(k), configuration, *args)
        out.append(Prediction(int(k), configuration, updates, step, comm, stall, seconds,
                              base / seconds))
    return out


def share_comparison(**model):
    """Table 4 against the model (``after`` configuration, the profile of sec. 4.3): list of
    ``{'nodes', 'published', 'predicted', 'error_points', 'implied_gbps'}``, shares of
    communication in per cent; ``implied_gbps`` is the ring bandwidth (GB/s) at which the
    model's AllReduce would take the published share of the model's step."""
    rows = []
    table = published.table('p004_table4_compute_comm')
    preds = predict([r['nodes'] * GPUS_PER_NODE for r in table], 'after', **model)
    nbytes = gradient_bytes(model.get('bytes_per_value', 4))
    topology = model.get('topology', ABCI)
    for r, q in zip(table, preds):
        share = r['comm_percent'] / 100
        comm = q.step_seconds * share / (1 - share)
        k = q.gpus
        latency = 2 * (k - 1) * topology.ring_link(k)[1]
        rows.append({'nodes': r['nodes'], 'published': r['comm_percent'],
                     'predicted': 100 * q.comm_share,
                     'error_points': 100 * q.comm_share - r['comm_percent'],
                     'comm_seconds': q.allreduce_seconds, 'published_comm_seconds': comm,
                     'implied_gbps': 2 * (k - 1) / k * nbytes / (comm - latency) / 1e9})
    return rows


def fig3_comparison(**model):
    """Fig. 3 against the model: list of ``{'configuration', 'nodes', 'published_minutes',
    'predicted_minutes', 'published_speedup', 'predicted_speedup'}`` for every published time,
    speed-ups over the 1-node ``before`` time (544 min; reading: the only 1-node time printed,
    and 544 / 15.5 = 35.1 agrees with the printed 34.5x within the text's rounding), plus the
    printed speed-ups at 64 nodes (19.7x, 34.5x)."""
    minutes = published_minutes()
    one = minutes[('before', 1)]
    text = {'before': published.column('headline_numbers', 'value', paper='004',
                                       quantity='5-epoch speed-up of 64 nodes over 1 node '
                                                'before RepeatSampler')[0],
            'after': published.column('headline_numbers', 'value', paper='004',
                                      quantity='5-epoch speed-up of 64 nodes over 1 node '
                                               'after RepeatSampler')[0]}
    rows = []
    for (conf, nodes), m in sorted(minutes.items(), key=lambda kv: (kv[0][0] != 'before',
                                                                    kv[0][1])):
        q = predict([nodes * GPUS_PER_NODE], conf, **model)[0]
        rows.append({'configuration': conf, 'nodes': nodes, 'published_minutes': m,
                     'predicted_minutes': q.run_seconds / 60, 'published_speedup': one / m,
                     'printed_speedup': text[conf] if nodes == 64 else None,
                     'predicted_speedup': q.speedup})
    return rows


def report(gpus_list, clip_seconds=None, loader='table3', overlap=False, topology=ABCI,
           bytes_per_value=4):
    """The lines ``scripts/simulate_scaling.py --preset slowfast_ava_2021`` prints."""
    model = dict(clip_seconds=clip_seconds, loader=loader, overlap=overlap,
                 topology=topology, bytes_per_value=bytes_per_value)
    how = 'given'
    if clip_seconds is None:
        model['clip_seconds'] = calibrated_clip_seconds(loader, overlap, topology,
                                                        bytes_per_value)
        how = "calibrated to the paper's 1-node time, 544 min for 5 epochs, stalls included"
    p = presets.load(PRESET, 1)
    params, flops = preset_facts()
    t = model['clip_seconds']
    lines = [
        'Preset %s: %s, %s parameters (%.1f MB of FP%d gradients per update), %d clips of %d '
        'frames at %d px per GPU, %s labels per epoch, %d epochs timed'
        % (PRESET, p.model, format(params, ','), gradient_bytes(bytes_per_value) / 1e6,
           8 * bytes_per_value, p.batchsize_per_gpu, p.clip_frames, p.insize,
           format(p.n_train, ','), EPOCHS),
        'Readings: loader=%s, AllReduce %s' % (
            loader, 'overlapped with backward (DDP buckets)' if overlap else
            'after backward, not overlapped'),
        'Compute per clip with 8 workers: %.4f s (%s); forward %.1f GFLOP per clip, %.1f '
        'TFLOP/s sustained at 3 x forward' % (t, how, flops / 1e9, 3 * flops / t / 1e12),
        '',
        '| configuration | GPUs | nodes | updates/epoch | step s | AllReduce s | stall s/epoch '
        '| 5 epochs min | speed-up | comm share |',
        '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ]
    for conf in CONFIGURATIONS:
        for q in predict(gpus_list, conf, **model):
            lines.append('| %s | %d | %d | %.1f | %.3f | %.4f | %.0f | %.1f | %.1f | %.1f%% |'
                         % (conf, q.gpus, topology.nodes(q.gpus), q.updates_per_epoch,
                            q.step_seconds, q.allreduce_seconds, q.stall_seconds,
                            q.run_seconds / 60, q.speedup, 100 * q.comm_share))
    lines += ['', 'Table 4, communication share (after RepeatSampler), model against paper '
              '004 (error in percentage points):', '',
              '| nodes | published | predicted | error | AllReduce s predicted | published '
              '(from the share) | ring GB/s that gives the published share |',
              '| --- | --- | --- | --- | --- | --- | --- |']
    shares = share_comparison(**model)
    for r in shares:
        lines.append('| %d | %.1f%% | %.1f%% | %+.1f | %.3f | %.3f | %.2f |'
                     % (r['nodes'], r['published'], r['predicted'], r['error_points'],
                        r['comm_seconds'], r['published_comm_seconds'], r['implied_gbps']))
    by = {r['nodes']: r for r in shares}
    if 64 in by and 128 in by:
        lines.append('')
        lines.append('Communication time of 128 nodes over 64 nodes: published 1.8x, '
                     'predicted %.2fx' % (by[128]['comm_seconds'] / by[64]['comm_seconds']))
    lines += ['', 'Fig. 3, 5-epoch times and speed-ups over 1 node before the fix (544 min), '
              'model against paper 004 sec. 4.3 (error = predicted / published - 1):', '',
              '| configuration | nodes | published min | predicted min | error | published '
              'speed-up | predicted | error |', '| --- | --- | --- | --- | --- | --- | --- '
              '| --- |']
    for r in fig3_comparison(**model):
        pub = r['published_speedup']
        label = '%.1f' % pub
        if r['printed_speedup'] is not None:
            label += ' (printed %.1f)' % r['printed_speedup']
            pub = r['printed_speedup']
        lines.append('| %s | %d | %.1f | %.1f | %+.1f%% | %s | %.1f | %+.1f%% |'
                     % (r['configuration'], r['nodes'], r['published_minutes'],
                        r['predicted_minutes'],
                        100 * (r['predicted_minutes'] / r['published_minutes'] - 1), label,
                        r['predicted_speedup'], 100 * (r['predicted_speedup'] / pub - 1)))
    return lines


def as_json(gpus_list, **model):
    """``{'gpus', 'speedup_before', 'speedup_after', 'comm_share_after'}`` for ``--json``."""
    before = predict(gpus_list, 'before', **model)
    after = predict(gpus_list, 'after', **model)
    return {'gpus': [q.gpus for q in after],
            'speedup_before': [q.speedup for q in before],
            'speedup_after': [q.speedup for q in after],
            'comm_share_after': [q.comm_share for q in after]}
