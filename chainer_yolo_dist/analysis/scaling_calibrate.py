"""The calibrated planner of ``scripts/simulate_scaling.py --calibrate``: a scaling model's
overheads fitted to two measured points, every other GPU count predicted.

Each model of this package gives, at ``k`` GPUs, ``U(k)`` updates per epoch, the modelled
AllReduce ``r(k)`` per update and fixed seconds ``s(k)`` per epoch (SlowFast's epoch-boundary
stall, else 0). Calibrated, ``E`` epochs take

    T(k) = E * (U(k) * (a + r(k)) + s(k) + e)

``a`` is the seconds per update apart from the modelled AllReduce (the compute and every
per-update cost the model leaves out: its excess over the base model's compute is printed as
``u``); ``e`` is the seconds per epoch it leaves out (evaluation, snapshots, iterator work at
the epoch boundary). A point gives one equation linear in ``(a, e)``: a time ``T`` directly, a
speed-up ``S`` over the base time ``T_b`` as ``T(k) = T_b / S``. Two points fix both.

Published calibration (``published_calibration``): the base is the point the base model is
calibrated on (paper 000: the 1-GPU time; paper 002: 4 GPUs; paper 004: 1 node before the fix)
or, for paper 001 (speed-ups only), the model's 1-GPU time with the FLOP-transferred compute.
The two smallest published GPU counts beyond the base are fitted, every larger one is a check;
a check more than :data:`TOLERANCE` off is a miss, and :data:`MISSES` says why.

Run folders (``run_calibration``): two runs of one YOLO / Darknet preset on the user's cluster
(``config.json``, ``metrics.json`` or ``log``: GPUs and seconds per epoch); speed-ups are over
the calibrated model at 1 GPU, ``U(1) a + e``.
"""
import dataclasses
import math

import numpy as np

from chainer_yolo_dist.analysis import (runs, scaling, scaling_cyclegan, scaling_slowfast)
from chainer_yolo_dist.core import presets

#: A check passes when its predicted time and speed-up are within 15% of the published ones.
TOLERANCE = 0.15

#: Why a check misses, by (preset, configuration, GPUs): written from the printed table.
MISSES = {
    (scaling_slowfast.PRESET, 'after', 512):
        'paper 004 sec. 4.3: 128 nodes scale worse than 64. A constant cost per update and per '
        'epoch cannot make 128 nodes slower than 64, since the updates halve; the growth of '
        'the iteration time beyond 32 nodes that sec. 4.2 describes does (the SlowFast model '
        'without --calibrate fits it)',
}


@dataclasses.dataclass(frozen=True)
class Point:
    """A published or measured point: ``seconds`` of the timed unit (an epoch, or the run),
    ``speedup`` over the base, ``slower_than`` seconds the time is known to exceed (a
    statement without a number); None where not given."""
    gpus: int
    seconds: float = None
    speedup: float = None
    source: str = ''
    slower_than: float = None


@dataclasses.dataclass
class Curve:
    """One model of one preset (and configuration) and its points.

    ``updates``, ``allreduce``, ``fixed``: functions of the GPU count (updates per epoch,
    AllReduce seconds per update, fixed seconds per epoch). ``epochs``: epochs in the timed
    unit. ``base_gpus`` / ``base_seconds``: the reference of every speed-up.
    ``compute``: the base model's compute seconds per update (None for run folders).
    ``unit``, ``scale``: how times are printed (seconds divided by ``scale``).
    ``overheads_from``: the smallest GPU count the overheads apply to; below it the base
    model holds (``a`` = ``compute``, ``e`` = 0): the published base is what it is calibrated
    on, and the overheads are those of distributed training.
    """
    preset: str
    configuration: str
    updates: object
    allreduce: object
    fixed: object
    epochs: float
    base_gpus: int
    base_seconds: float
    compute: float
    points: list
    unit: str = 'epoch s'
    scale: float = 1.0
    overheads_from: int = 1

    def seconds(self, gpus, a, e):
        """T(k) for the overheads ``a`` (per update) and ``e`` (per epoch)."""
        if gpus < self.overheads_from:
            a, e = self.compute, 0.0
        return self.epochs * (self.updates(gpus) * (a + self.allreduce(gpus))
                              + self.fixed(gpus) + e)


def fit(curve, points):
    """``(a, e)`` such that ``curve`` goes through ``points`` (two, each with a time or a
    speed-up; one point fixes ``a`` with e = 0). Raises ValueError when they cannot fix
    both (same updates per epoch)."""
    rows, rhs = [], []
    for p in points:
        seconds = p.seconds if p.seconds is not None else curve.base_seconds / p.speedup
        k = p.gpus
        rows.append([curve.epochs * curve.updates(k), curve.epochs])
        rhs.append(seconds - curve.epochs * (curve.updates(k) * curve.allreduce(k)
                                             + curve.fixed(k)))
    if len(points) == 1:
        return rhs[0] / rows[0][0], 0.0
    a = np.array(rows, dtype=np.float64)
    if abs(np.linalg.det(a)) < 1e-9 * np.abs(a).max() ** 2:
        raise ValueError('%s: the points at %s GPUs have the same updates per epoch; they '
                         'cannot fix both overheads' % (curve.preset, [p.gpus for p in points]))
    a_, e_ = np.linalg.solve(a, np.array(rhs))
    return float(a_), float(e_)


def split(curve):
    """(fit points, check points) of a published curve: the first point of each of the two
    smallest GPU counts beyond the base are fitted (a time preferred to a speed-up at the same
    count), every other point is checked."""
    beyond = [p for p in curve.points if p.gpus > curve.base_gpus]
    counts = sorted({p.gpus for p in beyond if p.seconds is not None or p.speedup})[:2]
    chosen = []
    for k in counts:
        at = [p for p in beyond if p.gpus == k and (p.seconds is not None or p.speedup)]
        chosen.append(min(at, key=lambda p: p.seconds is None))
    return chosen, [p for p in curve.points if p not in chosen]


def evaluate(curve, fitted, a, e, gpus):
    """One row per (point or GPU count): dicts with ``gpus``, ``role`` ('base', 'fit',
    'check', 'prediction'), ``source``, published and predicted ``seconds`` / ``speedup``,
    their ``errors`` (predicted / published - 1), ``within`` (checks: every error within
    :data:`TOLERANCE`, and above ``slower_than``) and ``why`` (a miss's reason)."""
    out = []
    listed = set()
    for p in curve.points + [Point(k) for k in gpus]:
        if p.seconds is None and p.speedup is None and p.slower_than is None:
            if p.gpus in listed:
                continue
        listed.add(p.gpus)
        t = curve.seconds(p.gpus, a, e)
        row = {'gpus': p.gpus, 'source': p.source, 'published_seconds': p.seconds,
               'predicted_seconds': t, 'published_speedup': p.speedup,
               'predicted_speedup': curve.base_seconds / t, 'slower_than': p.slower_than,
               'time_error': None, 'speedup_error': None, 'within': None, 'why': None}
        if p.seconds is not None:
            row['time_error'] = t / p.seconds - 1
        if p.speedup:
            row['speedup_error'] = row['predicted_speedup'] / p.speedup - 1
        if p in fitted:
            row['role'] = 'fit'
        elif p.gpus == curve.base_gpus and p.seconds is not None:
            row['role'] = 'base'
        elif p.seconds is None and p.speedup is None and p.slower_than is None:
            row['role'] = 'prediction'
        else:
            row['role'] = 'check'
            errors = [x for x in (row['time_error'], row['speedup_error']) if x is not None]
            row['within'] = (all(abs(x) <= TOLERANCE for x in errors)
                             and (p.slower_than is None or t > p.slower_than))
            if not row['within']:
                row['why'] = MISSES.get((curve.preset, curve.configuration, p.gpus),
                                        'no reason recorded')
        out.append(row)
    return sorted(out, key=lambda r: (r['gpus'], r['role'] == 'prediction'))


# ---- the curves ------------------------------------------------------------------------------

def abci_curve(name, topology=scaling.ABCI, grad_bytes=None):
    """The ABCI epoch model of :mod:`.scaling` for a YOLO / Darknet preset and the paper's
    points (epoch seconds; speed-ups over the 1-GPU epoch)."""
    t_img, _ = scaling.calibrated_image_seconds(name)
    one = presets.load(name, 1)
    compute = one.batchsize_per_gpu * t_img

    def allreduce(k):
        nbytes = grad_bytes or scaling.gradient_bytes(presets.load(name, k))
        return scaling.ring_allreduce_seconds(nbytes, k, topology)

    points = [Point(r['gpus'], r['epoch_seconds'], r['speedup'], r['source'])
              for r in scaling.published_scaling(name)]
    if scaling.published_one_gpu_seconds(name) is not None:
        table = '4' if '_table4_' in scaling.ONE_GPU_TIMES[name] else '5'
        points.insert(0, Point(1, one.iterations_per_epoch * compute, 1.0,
                               'paper 000 Table %s' % table))
    return Curve(name, None, lambda k: presets.load(name, k).iterations_per_epoch, allreduce,
                 lambda k: 0.0, 1, 1, one.iterations_per_epoch * compute, compute, points,
                 overheads_from=2)


def cyclegan_curve(topology=scaling.ABCI, framework='chainermn', bytes_per_value=4):
    """Paper 002's model (:mod:`.scaling_cyclegan`): run hours, speed-ups over 4 GPUs."""
    t_img = scaling_cyclegan.calibrated_image_seconds(framework, topology, bytes_per_value)
    preset = presets.load(scaling_cyclegan.PRESET, scaling_cyclegan.BASE_GPUS)
    times = scaling_cyclegan.published_seconds()
    big, speedup = scaling_cyclegan.published_speedup()
    speedups = {big: speedup, scaling_cyclegan.BASE_GPUS: 1.0}
    points = [Point(k, s, speedups.get(k), 'paper 002 sec. 4.2')
              for k, s in sorted(times.items())]
    return Curve(scaling_cyclegan.PRESET, None, scaling_cyclegan.draws_per_process,
                 lambda k: scaling_cyclegan.allreduce_seconds(k, framework, topology,
                                                              bytes_per_value),
                 lambda k: 0.0, preset.epochs, scaling_cyclegan.BASE_GPUS,
                 times[scaling_cyclegan.BASE_GPUS], t_img * preset.batchsize_per_gpu, points,
                 unit='run h', scale=3600.0, overheads_from=scaling_cyclegan.BASE_GPUS + 1)


def slowfast_curves(topology=scaling.ABCI, loader='table3', overlap=False, bytes_per_value=4):
    """Paper 004's model (:mod:`.scaling_slowfast`, without its growth) for each configuration:
    5-epoch minutes, speed-ups over 1 node before the fix. The ``after`` curve carries sec.
    4.3's statement that 128 nodes are slower than 64 as a point."""
    sf = scaling_slowfast
    clip = sf.calibrated_clip_seconds(loader, overlap, topology, bytes_per_value)
    minutes = sf.published_minutes()
    base = minutes[('before', 1)] * 60
    curves = []
    for conf in sf.CONFIGURATIONS:
        def part(k, i, conf=conf):
            return sf._base(k, conf, clip, loader, overlap, topology, bytes_per_value)[i]
        # Speed-ups only where the paper prints one (64 nodes: 19.7x, 34.5x); the ratios of
        # its rounded times (544 / 27 = 20.1, ...) are ours, not published.
        printed = {1: 1.0, 64: sf._printed_speedup(conf)}
        points = [Point(n * sf.GPUS_PER_NODE, m * 60, printed.get(n), 'paper 004 sec. 4.3')
                  for (c, n), m in sorted(minutes.items()) if c == conf]
        if conf == 'after':
            points.append(Point(128 * sf.GPUS_PER_NODE, source='paper 004 sec. 4.3 (slower '
                                'than 64 nodes)', slower_than=minutes[('after', 64)] * 60))
        curves.append(Curve(sf.PRESET, conf, lambda k, part=part: part(k, 0),
                            lambda k, part=part: part(k, 2), lambda k, part=part: part(k, 3),
                            sf.EPOCHS, sf.BASE_GPUS, base, part(sf.BASE_GPUS, 1), points,
                            unit='5 epochs min', scale=60.0,
                            overheads_from=sf.BASE_GPUS + 1))
    return curves


def published_curves(name, topology=scaling.ABCI, **model):
    """The curves of preset ``name`` (one, or SlowFast's two); empty without published
    timings. ``model``: ``framework`` (CycleGAN), ``loader`` and ``overlap`` (SlowFast),
    ``bytes_per_value``, ``grad_bytes`` (ABCI)."""
    if name == scaling_cyclegan.PRESET:
        return [cyclegan_curve(topology, model.get('framework') or 'chainermn',
                               model.get('bytes_per_value', 4))]
    if name == scaling_slowfast.PRESET:
        return slowfast_curves(topology, model.get('loader') or 'table3',
                               model.get('overlap', False), model.get('bytes_per_value', 4))
    if not scaling.published_scaling(name):
        return []
    return [abci_curve(name, topology, model.get('grad_bytes'))]


def published_calibration(name, gpus=(), topology=scaling.ABCI, **model):
    """Each curve of ``name`` fitted to its two smallest published points beyond the base:
    list of dicts ``{'curve', 'fitted' (points), 'a', 'e', 'rows'}`` (:func:`evaluate`'s rows,
    with ``gpus`` added as predictions)."""
    out = []
    for curve in published_curves(name, topology, **model):
        fitted, _ = split(curve)
        a, e = fit(curve, fitted)
        out.append({'curve': curve, 'fitted': fitted, 'a': a, 'e': e,
                    'rows': evaluate(curve, fitted, a, e, gpus)})
    return out


# ---- run folders -----------------------------------------------------------------------------

def run_curve(paths, topology=scaling.ABCI):
    """The ABCI epoch model of the preset two run folders trained, with their measured epoch
    times as points. Raises ValueError (a one-line reason) for anything that does not fit."""
    if len(paths) != 2:
        raise ValueError('--calibrate takes two run folders, got %d' % len(paths))
    loaded = []
    for path in paths:
        try:
            loaded.append(runs.load_run(path))
        except (OSError, ValueError) as e:
            raise ValueError(str(e)) from None
    recipes = [r.recipe for r in loaded]
    names = {r.get('name') for r in recipes}
    if len(names) != 1:
        raise ValueError('the two runs trained different presets: %s'
                         % ' and '.join(sorted(map(str, names))))
    recipe = recipes[0]
    for key in ('n_train', 'batchsize_per_gpu', 'model', 'n_class'):
        if recipe.get(key) is None:
            raise ValueError('%s: config.json has no preset "%s"'
                             % (loaded[0].path, key))
    if loaded[0].comm_size == loaded[1].comm_size:
        raise ValueError('the two runs used the same GPU count, %d: give two different ones'
                         % loaded[0].comm_size)
    try:
        params = scaling.model_facts(recipe['model'], recipe['n_class'])[0]
    except Exception:  # any model this package cannot build: not a YOLO / Darknet run
        raise ValueError('%s: model %r is not a YOLO / Darknet network of this package'
                         % (loaded[0].path, recipe['model'])) from None
    nbytes = params * (2 if recipe.get('allreduce_grad_dtype') == 'float16' else 4)
    n_train, batch = recipe['n_train'], recipe['batchsize_per_gpu']

    def updates(k):
        return math.ceil(n_train / k) / batch

    points = []
    for run in loaded:
        points.append(Point(run.comm_size, runs.seconds_per_epoch(run), None,
                            'measured, %s' % run.path))
    return Curve(recipe.get('name') or recipe['model'], None, updates,
                 lambda k: scaling.ring_allreduce_seconds(nbytes, k, topology),
                 lambda k: 0.0, 1, 1, None, None, sorted(points, key=lambda p: p.gpus))


def run_calibration(paths, gpus=(), topology=scaling.ABCI):
    """:func:`run_curve` fitted to its two runs: one dict as :func:`published_calibration`'s.
    The base (1 GPU) is the calibrated model's own epoch, ``U(1) a + e``; the measured points
    carry their speed-up over it."""
    curve = run_curve(paths, topology)
    a, e = fit(dataclasses.replace(curve, base_seconds=1.0), curve.points)
    curve.base_seconds = curve.seconds(1, a, e)
    curve.points = [dataclasses.replace(p, speedup=curve.base_seconds / p.seconds)
                    for p in curve.points]
    return {'curve': curve, 'fitted': curve.points, 'a': a, 'e': e,
            'rows': evaluate(curve, curve.points, a, e, gpus)}
