"""Throughput of synchronous, periodic-averaging and asynchronous data parallelism (paper 003).

The ring-AllReduce model of :mod:`.scaling` covers the papers' synchronous ChainerMN runs. This
module adds the two other modes of ``--parallelism`` (``core/parallelism/__init__.py``) for
paper 003's question: how many times the images per second of one GPU do k GPUs process?

Per update of one worker (``n`` images, ``t_img`` compute seconds per image on one GPU):

    compute          c = n * t_img
    sync             T = c + AllReduce(G, k)                   (no overlap: ChainerMN)
    local, period H  T = c + AllReduce(W, k) / H               (weights averaged every H updates)
    async            T = max(c, worker link, server links)     (non-blocking push and pull)
      worker link    = max(G / P, G / Q) / B_w + S * a / min(P, Q)
      server links   = k * max(G / P, G / Q) / (S * B_s)
    ratio            R(k) = (k * n / T) / (n / c) = k * c / T

``G`` bytes of gradients (``W`` of weights, both parameters x 4 in float32); ``AllReduce`` is
:func:`.scaling.ring_allreduce_seconds` on the cluster's ring; ``P`` / ``Q`` the push / pull
periods in updates (``--push-every`` / ``--pull-every``); ``S`` parameter servers, each holding
``1 / S`` of the parameters (Downpour's sharding; paper 003 ref. [2]); ``B_w`` a worker's share
of its node's link, ``B_s`` a server's link (one server per node), ``a`` the per-message
latency. Links are full duplex with the given bandwidth per direction (as :class:`.Topology`):
pushes travel towards the servers and pulls away from them, so a link's time per update is
that of the larger of the two. In ``async`` a worker's communication overlaps its next
compute (non-blocking MPI), so the slowest of compute, its own link and the servers' links
sets the pace; once the servers' links carry more than ``c`` seconds of traffic per round
(``k * G / (S * B_s) > c`` for ``P = Q = 1``), every worker waits on them. The one-GPU baseline
is plain training, ``T = c``.

Not modelled: the servers' time to apply an update (memory traffic of a MomentumSGD step on
their shard), stragglers, data loading (the papers' one-GPU baseline uses a multi-core CPU for
it), and the staleness that ``async`` trades for its throughput (the accuracy side is measured
by the parallelism study, not here).
"""
import collections
import dataclasses
import math

from chainer_yolo_dist.analysis import scaling

MODES = ('sync', 'local', 'async')


@dataclasses.dataclass(frozen=True)
class Cluster:
    """A GPU cluster as this model sees it (bandwidths in bytes per second, per direction).

    Args:
        name: for printing.
        gpus_per_node: GPUs (one worker each) per node.
        gpu_link_bandwidth: one GPU's link to its host (the hop every message of a worker
            crosses; also the hop between two GPUs of a node, through the host).
        node_bandwidth: a node's interconnect, all rails together, shared by its workers.
        latency: seconds per message (MPI over the interconnect, staged through the host).
    """
    name: str
    gpus_per_node: int
    gpu_link_bandwidth: float
    node_bandwidth: float
    latency: float

    def ring_topology(self):
        """The :class:`.scaling.Topology` of a ring AllReduce on this cluster: inside a node
        the hop goes through the host (the GPU link); between nodes the slowest hop is the
        smaller of the node's link and the GPU link; a full-bisection network (no rack
        penalty)."""
        return scaling.Topology(
            gpus_per_node=self.gpus_per_node, nvlink_bandwidth=self.gpu_link_bandwidth,
            ib_bandwidth=min(self.node_bandwidth, self.gpu_link_bandwidth),
            cross_rack_fraction=1.0, nodes_per_rack=10 ** 9,
            nvlink_latency=self.latency, ib_latency=self.latency)

    def worker_bandwidth(self, gpus):
        """A worker's link when ``gpus`` workers fill nodes of ``gpus_per_node``: its GPU link
        or its share of the node's interconnect, whichever is smaller."""
        sharing = min(self.gpus_per_node, gpus)
        return min(self.gpu_link_bandwidth, self.node_bandwidth / sharing)


#: TSUBAME 2.5 (Tokyo Tech, 2013-2017), the machine of paper 003 (a TSUBAME trial-use report
#: of fiscal 2015; the report names no node, GPU or network). Public facts, read here: thin
#: nodes (HP SL390s G7) with 2 Xeon X5670 and 3 Tesla K20X (6 GB, 3.95 TFLOPS single
#: precision peak) each on its own PCIe 2.0 x16 link (8 GB/s per direction; 6 GB/s
#: reachable, the value used); dual-rail QDR InfiniBand per node (2 x 32 Gb/s of data = 8 GB/s
#: per direction, read as MPI striping large messages over both rails) in a full-bisection fat
#: tree. Latency 10 us per message (QDR's ~2 us plus the staging copy through the host): a
#: reading. 48 GPUs are 16 nodes.
TSUBAME25 = Cluster(name='TSUBAME 2.5', gpus_per_node=3, gpu_link_bandwidth=6e9,
                    node_bandwidth=2 * 4e9, latency=10e-6)

#: K20X single-precision peak, FLOP/s (NVIDIA's data sheet).
K20X_PEAK_FLOPS = 3.95e12
#: Reading: sustained fraction of the peak in 2015's cuDNN (v2/v3) convolutions on Kepler,
#: about a third; the sensitivity table of ``scripts/simulate_scaling.py`` varies it.
K20X_SUSTAINED_FLOPS = 1.3e12
#: A training step costs about three forward passes (the backward pass computes the
#: gradients of the inputs and of the weights, each about one forward).
TRAINING_FLOPS_PER_FORWARD = 3


def image_seconds_from_flops(forward_flops, sustained_flops=K20X_SUSTAINED_FLOPS,
                             training_factor=TRAINING_FLOPS_PER_FORWARD):
    """Compute seconds per training image: ``training_factor * forward_flops /
    sustained_flops``."""
    if not forward_flops > 0 or not sustained_flops > 0:
        raise ValueError('FLOPs and FLOP rate must be positive, got %r and %r'
                         % (forward_flops, sustained_flops))
    return training_factor * forward_flops / sustained_flops


def sync_update_seconds(compute, grad_bytes, gpus, cluster=TSUBAME25):
    """Seconds per update of synchronous SGD: compute, then a ring AllReduce of the
    gradients (``grad_bytes``) over ``gpus`` GPUs, not overlapped."""
    _check(compute, gpus)
    return compute + scaling.ring_allreduce_seconds(grad_bytes, gpus, cluster.ring_topology())


def local_update_seconds(compute, weight_bytes, gpus, period, cluster=TSUBAME25):
    """Seconds per update of periodic averaging (local SGD): compute, and a ring AllReduce of
    the weights (``weight_bytes``) every ``period`` updates, amortised. ``period = 1`` is
    :func:`sync_update_seconds` with the weights' bytes."""
    _check(compute, gpus)
    if int(period) != period or period < 1:
        raise ValueError('the averaging period must be a positive integer, got %r' % (period,))
    return compute + scaling.ring_allreduce_seconds(weight_bytes, gpus,
                                                    cluster.ring_topology()) / period


AsyncTimes = collections.namedtuple('AsyncTimes', 'compute worker_link server_links')
AsyncTimes.__doc__ = """Seconds per update of one worker in ``async``, by resource: its
``compute``, its own ``worker_link`` (pushes up, pulls down) and the ``server_links``' share
of one round (every worker's traffic through the S servers). The update takes the largest."""


def async_times(compute, grad_bytes, gpus, cluster=TSUBAME25, servers=1, push_every=1,
                pull_every=1):
    """:class:`AsyncTimes` of the parameter-server mode (module docstring).

    Args:
        compute: seconds of compute per update (``n * t_img``).
        grad_bytes: bytes of one push (the gradients) and of one pull (the weights).
        gpus: workers (one GPU each); servers come in addition, one per node.
        servers: parameter servers ``S``, each holding ``1 / S`` of the parameters.
        push_every, pull_every: ``P`` and ``Q``, updates per push and per pull.
    """
    _check(compute, gpus)
    for name, value in (('servers', servers), ('push_every', push_every),
                        ('pull_every', pull_every)):
        if int(value) != value or value < 1:
            raise ValueError('%s must be a positive integer, got %r' % (name, value))
    per_update = grad_bytes * max(1.0 / push_every, 1.0 / pull_every)  # larger direction
    messages = servers / min(push_every, pull_every)  # one message per shard per exchange
    worker = per_update / cluster.worker_bandwidth(gpus) + messages * cluster.latency
    server = gpus * per_update / (servers * cluster.node_bandwidth)
    return AsyncTimes(compute, worker, server)


def async_update_seconds(compute, grad_bytes, gpus, cluster=TSUBAME25, servers=1,
                         push_every=1, pull_every=1):
    """Seconds per update of one worker in ``async``: the largest of :func:`async_times`
    (compute and communication overlap)."""
    return max(async_times(compute, grad_bytes, gpus, cluster, servers, push_every,
                           pull_every))


def throughput_ratio(compute, update_seconds, gpus):
    """Images per second of ``gpus`` workers over one GPU's plain training:
    ``(gpus * n / update_seconds) / (n / compute)``."""
    return gpus * compute / update_seconds


ModePrediction = collections.namedtuple(
    'ModePrediction', 'mode gpus compute update_seconds images_per_second ratio bound')
ModePrediction.__doc__ = """One mode at one GPU count: seconds of ``compute`` and of an
``update`` per worker, ``images_per_second`` of all workers, the throughput ``ratio`` over one
GPU, and what bounds the update (``'compute'``, ``'AllReduce'``, ``'averaging'``,
``'worker link'`` or ``'server links'``)."""


def predict_mode(mode, gpus, batchsize, image_seconds, param_bytes, cluster=TSUBAME25,
                 servers=1, push_every=1, pull_every=1, average_every=4):
    """:class:`ModePrediction` of ``mode`` ('sync', 'local' or 'async') on ``gpus`` workers.

    ``param_bytes``: the gradients' (and weights') bytes. ``average_every``: ``local``'s H
    (Darknet's multi-GPU training: 4).
    """
    compute = batchsize * image_seconds
    if mode == 'sync':
        seconds = sync_update_seconds(compute, param_bytes, gpus, cluster)
        bound = 'AllReduce' if seconds > compute else 'compute'
    elif mode == 'local':
        seconds = local_update_seconds(compute, param_bytes, gpus, average_every, cluster)
        bound = 'averaging' if seconds > compute else 'compute'
    elif mode == 'async':
        times = async_times(compute, param_bytes, gpus, cluster, servers, push_every,
                            pull_every)
        seconds = max(times)
        bound = {0: 'compute', 1: 'worker link', 2: 'server links'}[times.index(seconds)]
    else:
        raise ValueError('unknown mode %r: choose one of %s' % (mode, ', '.join(MODES)))
    return ModePrediction(mode, gpus, compute, seconds, gpus * batchsize / seconds,
                          throughput_ratio(compute, seconds, gpus), bound)


def preset_image_seconds(preset, sustained_flops=K20X_SUSTAINED_FLOPS):
    """``t_img`` of a preset's network at its input size from its counted forward FLOPs
    (:func:`.scaling.forward_flops`) at ``sustained_flops``: the compute of paper 003's CNN on
    a K20X, which the paper does not publish."""
    return image_seconds_from_flops(
        scaling.forward_flops(preset.model, preset.n_class, preset.insize), sustained_flops)


def _check(compute, gpus):
    if not compute > 0 or math.isinf(compute):
        raise ValueError('compute seconds per update must be positive, got %r' % (compute,))
    if int(gpus) != gpus or gpus < 1:
        raise ValueError('GPU counts must be positive integers, got %r' % (gpus,))


#: Paper 003's published ratio (``results/published/headline_numbers.csv``): images per second
#: of 48 GPUs over one GPU, "over 30x" (paper 003 Overview).
PAPER003_QUANTITY = 'images per second of 48 GPUs over 1 GPU (lower bound)'


def paper003_published():
    """``(gpus, lower bound of the ratio)`` that paper 003 prints: (48, 30)."""
    from chainer_yolo_dist.analysis import published
    (value,) = published.column('headline_numbers', 'value', paper='003',
                                quantity=PAPER003_QUANTITY)
    return 48, value


def sensitivity(preset, gpus, rates, modes, batchsizes=None, cluster=TSUBAME25):
    """Ratios at ``gpus`` for each assumed sustained FLOP rate (rows) and mode (columns).

    Args:
        preset: a loaded preset (network, input size, per-GPU batch, classes).
        rates: sustained FLOP/s, one row each.
        modes: list of ``(label, dict of predict_mode keywords)`` (``mode`` included; a
            ``batchsize`` keyword replaces the preset's).
    Returns:
        list of rows ``(rate, t_img, [ratio per mode])``.
    """
    param_bytes = 4 * scaling.model_facts(preset.model, preset.n_class)[0]
    rows = []
    for rate in rates:
        t_img = preset_image_seconds(preset, rate)
        ratios = []
        for _, kwargs in modes:
            kwargs = dict(kwargs)
            n = kwargs.pop('batchsize', preset.batchsize_per_gpu)
            ratios.append(predict_mode(gpus=gpus, batchsize=n, image_seconds=t_img,
                                       param_bytes=param_bytes, cluster=cluster,
                                       **kwargs).ratio)
        rows.append((rate, t_img, ratios))
    return rows
