"""Time per epoch and speed-up of data-parallel training on ABCI, from a ring-AllReduce model.

For a preset trained on ``k`` GPUs (one MPI process each, ``n`` images per GPU per update):

- every update costs each GPU the compute of ``n`` images, ``n * t_img`` seconds, the same
  for every ``k`` (same per-GPU batch, same GPU), followed by an AllReduce of the gradients
  that is not overlapped with it (ChainerMN's multi-node optimizer reduces after
  ``backward``; the papers do not enable double buffering);
- the gradients are ``parameters * 4`` bytes, or ``* 2`` with ChainerMN's FP16 AllReduce;
- a ring AllReduce of ``G`` bytes over ``k`` GPUs takes ``2 (k - 1) / k * G / B + 2 (k - 1) a``
  (Patarasuk and Yuan), where ``B`` is the slowest link on the ring and ``a`` the latency of
  one ring step: NVLink inside one node, EDR InfiniBand once the job spans nodes (the ring
  crosses each node's link once in each direction), and a third of that once the job spans
  racks (ABCI's fat tree gives a third of full bisection between racks);
- an epoch is ``ceil(N / k) / n`` updates (ChainerMN's ``scatter_dataset`` pads every rank to
  ``ceil(N / k)`` samples), so iterations fall as ``1 / k``.

``t_img`` is calibrated from the paper's one-GPU time where it printed one (paper 000,
Tables 4 and 5), otherwise transferred from paper 000's VOC calibration in proportion to the
forward FLOPs per image of the two networks at their mean training input area, or given
directly (a measured benchmark). ``docs/scaling_model.md`` states where this misses.
"""
import dataclasses
import math

from chainer_yolo_dist.analysis import published
from chainer_yolo_dist.core import presets

#: Facts of the papers' networks, counted from the real networks (``count_model_facts``;
#: ``tests/test_scaling.py`` recounts them) and cached because building them takes seconds:
#: (model, n_class) -> (parameters, forward FLOPs of all convolutions at a 64 x 64 input,
#: FLOPs of fully connected layers). Convolution FLOPs scale exactly with the input area for
#: sides that are multiples of 32. Other networks (the CPU demo's) are counted when asked.
#: CycleGAN's and SlowFast's networks have their own models (scaling_cyclegan, scaling_slowfast).
MODEL_FACTS = {
    ('yolov2', 20): (50655389, 694919168, 0),
    ('yolov2', 5): (50578514, 694304768, 0),
    ('yolov3', 20): (61626049, 1548591104, 0),
    ('yolov3', 1): (61523734, 1545322496, 0),
    ('darknet19', 1000): (20842376, 455671808, 0),
    ('darknet53', 1000): (41609928, 1160511488, 2048000),
    ('cnn11', 1000): (9920936, 1830191104, 0),  # paper 003's 11-convolution CNN (a reading)
}
FLOPS_REFERENCE_SIDE = 64

#: The preset whose published one-GPU time calibrates presets that have none.
REFERENCE_PRESET = 'yolov2_voc_2018'
#: Presets with a published one-GPU time: preset -> published table with a `time_s` column.
ONE_GPU_TIMES = {
    'yolov2_voc_2018': 'p000_table4_voc_time_cost',
    'yolov2_filmrole_2018': 'p000_table5_filmrole_time_cost',
}


@dataclasses.dataclass(frozen=True)
class Topology:
    """The interconnect of ABCI's compute nodes (docs/papers.md, the machine; sec. 5.1 of the
    papers).

    Bandwidths are per direction, in bytes per second. ``nvlink_bandwidth``: one hop of a ring
    between two V100 SXM2 of a node (two NVLink 2.0 links of 25 GB/s). ``ib_bandwidth``: one
    EDR InfiniBand port, 100 Gb/s. ``cross_rack_fraction``: ABCI's fat tree gives a third of
    full bisection between racks. ``nodes_per_rack``: ABCI's 1,088 nodes sit 34 to a rack;
    jobs are assumed packed into as few racks as possible. Latencies: per ring step.
    """
    gpus_per_node: int = 4
    nvlink_bandwidth: float = 50e9
    ib_bandwidth: float = 12.5e9
    cross_rack_fraction: float = 1.0 / 3.0
    nodes_per_rack: int = 34
    nvlink_latency: float = 2e-6
    ib_latency: float = 5e-6

    def nodes(self, gpus):
        return math.ceil(gpus / self.gpus_per_node)

    def racks(self, gpus):
        return math.ceil(self.nodes(gpus) / self.nodes_per_rack)

    def ring_link(self, gpus):
        """(bandwidth, latency) of the slowest link on a ring over ``gpus`` GPUs."""
        if self.nodes(gpus) == 1:
            return self.nvlink_bandwidth, self.nvlink_latency
        if self.racks(gpus) == 1:
            return self.ib_bandwidth, self.ib_latency
        return self.ib_bandwidth * self.cross_rack_fraction, self.ib_latency


ABCI = Topology()


def ring_allreduce_seconds(nbytes, gpus, topology=ABCI):
    """Seconds of a ring AllReduce of ``nbytes`` over ``gpus`` GPUs (0 for one GPU):
    ``2 (k - 1) / k * nbytes / B + 2 (k - 1) * latency``."""
    if gpus < 1:
        raise ValueError('gpus must be >= 1, got %r' % (gpus,))
    if gpus == 1:
        return 0.0
    bandwidth, latency = topology.ring_link(gpus)
    steps = 2 * (gpus - 1)
    return steps / gpus * nbytes / bandwidth + steps * latency


_counted = {}


def model_facts(model, n_class):
    """(parameters, conv FLOPs at 64 x 64, linear FLOPs) of ``model`` with ``n_class``
    classes: from :data:`MODEL_FACTS`, else counted once from :func:`build_network`."""
    key = (model, n_class)
    if key in MODEL_FACTS:
        return MODEL_FACTS[key]
    if key not in _counted:
        _counted[key] = count_model_facts(build_network(model, n_class))
    return _counted[key]


def build_network(model, n_class):
    """The network ``model`` with random weights: a classifier of
    ``chainer_yolo_dist.classification.models.build_classifier`` or a detector of
    ``chainer_yolo_dist.detection.models.build_model`` (``n_class`` foreground classes)."""
    from chainer_yolo_dist.classification.models import CLASSIFIERS, build_classifier
    from chainer_yolo_dist.detection.models import build_model
    if model in CLASSIFIERS:
        return build_classifier(model, n_class)
    return build_model(model, n_class)


def forward_flops(model, n_class, side):
    """Forward FLOPs (2 per multiply-add, convolutions and fully connected layers) of one
    ``side`` x ``side`` image; ``side`` a multiple of 32."""
    if side % 32:
        raise ValueError('side must be a multiple of 32, got %r' % (side,))
    _, conv64, linear = model_facts(model, n_class)
    return conv64 * (side / FLOPS_REFERENCE_SIDE) ** 2 + linear


def mean_training_flops(preset):
    """Forward FLOPs per training image of ``preset``, averaged over its input sizes
    (multi-scale training draws sides ``min, min + 32, ..., max`` uniformly, as Darknet's
    ``(rand() % 10 + 10) * 32``)."""
    if preset.multiscale:
        lo, hi, _ = preset.multiscale
        sides = range(lo, hi + 1, 32)
    else:
        sides = [preset.insize]
    return sum(forward_flops(preset.model, preset.n_class, s) for s in sides) / len(sides)


def gradient_bytes(preset):
    """Bytes all-reduced per update: parameters x 2 with FP16 AllReduce, else x 4."""
    params = model_facts(preset.model, preset.n_class)[0]
    return params * (2 if preset.allreduce_grad_dtype == 'float16' else 4)


def published_one_gpu_seconds(name):
    """The paper's total one-GPU training time of preset ``name`` in seconds, or None."""
    if name not in ONE_GPU_TIMES:
        return None
    times = published.column(ONE_GPU_TIMES[name], 'time_s', gpus=1)
    return times[0] if times else None


def calibrated_image_seconds(name):
    """Compute seconds per image on one V100, ``t_img``, for preset ``name``.

    From the paper's one-GPU time (total time / (epochs x images per epoch)) where printed;
    otherwise the reference preset's ``t_img`` scaled by the ratio of mean training FLOPs.
    Returns (t_img, how it was obtained).
    """
    preset = presets.load(name, 1)
    total = published_one_gpu_seconds(name)
    if total is not None:
        images = preset.epochs * preset.iterations_per_epoch * preset.batchsize_per_gpu
        return total / images, 'paper one-GPU time (%s)' % ONE_GPU_TIMES[name]
    ref_seconds, _ = calibrated_image_seconds(REFERENCE_PRESET)
    ratio = mean_training_flops(preset) / mean_training_flops(presets.load(REFERENCE_PRESET, 1))
    return ref_seconds * ratio, '%s calibration x FLOP ratio %.3f' % (REFERENCE_PRESET, ratio)


@dataclasses.dataclass(frozen=True)
class Prediction:
    """Model output for one GPU count (seconds are wall-clock on ABCI)."""
    gpus: int
    iterations_per_epoch: float
    compute_seconds: float      # per update, n * t_img
    allreduce_seconds: float    # per update
    epoch_seconds: float
    speedup: float              # epoch_seconds(1 GPU) / epoch_seconds


def predict(name, gpus_list, image_seconds=None, grad_bytes=None, topology=ABCI):
    """Predicted time per epoch and speed-up of preset ``name`` at each GPU count.

    Args:
        name: preset name (``chainer_yolo_dist.core.presets.names()``).
        gpus_list: GPU counts (positive ints).
        image_seconds: compute seconds per image on one GPU; default
            :func:`calibrated_image_seconds`.
        grad_bytes: bytes all-reduced per update; default :func:`gradient_bytes`.
        topology: a :class:`Topology`.

    Returns:
        list of :class:`Prediction`, in the order of ``gpus_list``.
    """
    if image_seconds is None:
        image_seconds, _ = calibrated_image_seconds(name)
    if not image_seconds > 0:
        raise ValueError('image_seconds must be positive, got %r' % (image_seconds,))

    def epoch(k):
        preset = presets.load(name, k)
        compute = preset.batchsize_per_gpu * image_seconds
        nbytes = gradient_bytes(preset) if grad_bytes is None else grad_bytes
        allreduce = ring_allreduce_seconds(nbytes, k, topology)
        iters = preset.iterations_per_epoch
        return iters, compute, allreduce, iters * (compute + allreduce)

    base = epoch(1)[3]
    out = []
    for k in gpus_list:
        if int(k) != k or k < 1:
            raise ValueError('GPU counts must be positive integers, got %r' % (k,))
        iters, compute, allreduce, seconds = epoch(int(k))
        out.append(Prediction(int(k), iters, compute, allreduce, seconds, base / seconds))
    return out


def published_scaling(name):
    """The paper's speed-ups (and epoch times where printed) for preset ``name``.

    Returns:
        list of dicts ``{'gpus', 'speedup', 'epoch_seconds' (or None), 'source'}``, sorted by
        GPUs; empty for presets without published timings. Paper 000's speed-ups are the
        ratios of its Table 4 / 5 times, plus the 33.6x its text states for 64 GPUs; paper
        001 prints speed-ups only (Figs. 5 and 7).
    """
    rows = []
    if name in ONE_GPU_TIMES:
        epochs = presets.load(name, 1).epochs
        table = published.table(ONE_GPU_TIMES[name])
        one = published_one_gpu_seconds(name)
        label = 'paper 000 Table %s' % ('4' if '_table4_' in ONE_GPU_TIMES[name] else '5')
        for r in table:
            if r['gpus'] > 1:
                rows.append({'gpus': r['gpus'], 'speedup': one / r['time_s'],
                             'epoch_seconds': r['time_s'] / epochs, 'source': label})
    if name == 'yolov2_voc_2018':
        text = published.column('headline_numbers', 'value', paper='000',
                                quantity='VOC speed-up of 64 GPUs over 1 GPU')
        rows.append({'gpus': 64, 'speedup': text[0], 'epoch_seconds': None,
                     'source': 'paper 000 sec. 5.3 (text)'})
    speedup_models = {'darknet53_imagenet_2019': ('darknet53', 'paper 001 Fig. 5'),
                      'yolov3_voc_2019': ('yolov3', 'paper 001 Fig. 7')}
    if name in speedup_models:
        model, label = speedup_models[name]
        for r in published.select('p001_speedups', model=model):
            rows.append({'gpus': r['gpus'], 'speedup': r['speedup'], 'epoch_seconds': None,
                         'source': label})
    return sorted(rows, key=lambda r: r['gpus'])


def fit_overheads(name, image_seconds=None, topology=ABCI):
    """What the model leaves out, measured against the paper's multi-GPU epoch times.

    Fits, by least squares over the published rows with an epoch time, the published time as
    ``updates(k) * (predicted seconds per update + u) + e``: ``u`` extra seconds per update
    and ``e`` extra seconds per epoch, both the same for every ``k``.

    Returns:
        dict with ``u``, ``e``, and ``rows``: list of ``{'gpus', 'published', 'fitted'}`` epoch
        seconds. Raises ValueError when fewer than two published epoch times exist.
    """
    import numpy as np

    timed = [r for r in published_scaling(name) if r['epoch_seconds'] is not None]
    if len(timed) < 2:
        raise ValueError('preset %s: the paper prints fewer than two multi-GPU times' % name)
    preds = predict(name, [r['gpus'] for r in timed], image_seconds, topology=topology)
    a = np.array([[p.iterations_per_epoch, 1.0] for p in preds])
    b = np.array([r['epoch_seconds'] - p.epoch_seconds for r, p in zip(timed, preds)])
    (u, e), *_ = np.linalg.lstsq(a, b, rcond=None)
    fitted = a @ np.array([u, e]) + np.array([p.epoch_seconds for p in preds])
    return {'u': float(u), 'e': float(e),
            'rows': [{'gpus': r['gpus'], 'published': r['epoch_seconds'], 'fitted': float(f)}
                     for r, f in zip(timed, fitted)]}


def count_model_facts(model):
    """Counts (parameters, conv FLOPs at 64 x 64, linear FLOPs) of a Chainer network by
    running one 64 x 64 forward pass (which also initialises lazily sized layers).

    FLOPs are 2 per multiply-add of ``Convolution2DFunction`` and ``LinearFunction``;
    batch normalisation, activations and pooling are left out (under 1% of the total).
    """
    import chainer
    import numpy as np
    from chainer.utils import conv

    class FlopHook(chainer.FunctionHook):
        name = 'FlopHook'

        def __init__(self):
            self.conv = 0
            self.linear = 0

        def forward_postprocess(self, function, in_data):
            if function.label == 'Convolution2DFunction':
                x, w = in_data[0], in_data[1]
                out_c, in_c_per_group, kh, kw = w.shape
                oh = conv.get_conv_outsize(x.shape[2], kh, function.sy, function.ph,
                                           function.cover_all, function.dy)
                ow = conv.get_conv_outsize(x.shape[3], kw, function.sx, function.pw,
                                           function.cover_all, function.dx)
                self.conv += 2 * x.shape[0] * out_c * oh * ow * in_c_per_group * kh * kw
            elif function.label == 'LinearFunction':
                x, w = in_data[0], in_data[1]
                self.linear += 2 * x.shape[0] * w.shape[0] * w.shape[1]

    hook = FlopHook()
    x = np.zeros((1, 3, FLOPS_REFERENCE_SIDE, FLOPS_REFERENCE_SIDE), dtype=np.float32)
    with hook, chainer.using_config('train', False), chainer.no_backprop_mode():
        model(x)
    params = sum(p.size for p in model.params())
    return params, hook.conv, hook.linear
