"""What the CycleGAN recipe composes that only CycleGAN has: the four networks as one chain,
each rank's own state for its snapshot file, the trace of the cycle loss, and the check that
the four networks are the same on every rank after training."""
import chainer
import numpy as np

from chainer_yolo_dist.cyclegan.networks import PatchDiscriminator, ResnetGenerator
from chainer_yolo_dist.cyclegan.updater import NETWORKS


class Networks(chainer.Chain):
    """The four networks of a run, as ``model.npz`` holds them (``gen_ab/...`` etc.)."""

    def __init__(self, ngf, ndf, n_blocks):
        super().__init__()
        with self.init_scope():
            self.gen_ab = ResnetGenerator(n_blocks, ngf)
            self.gen_ba = ResnetGenerator(n_blocks, ngf)
            self.dis_a = PatchDiscriminator(ndf)
            self.dis_b = PatchDiscriminator(ndf)


def initial_networks(ngf, ndf, n_blocks, seed, size=32):
    """The four networks with every parameter drawn on the host, before any move to a GPU.

    Chainer's initialisers draw from NumPy's global generator, seeded here from ``seed``; a
    parameter created lazily (shape known only at the first forward) after ``to_gpu`` would
    instead be drawn by CuPy's unseeded generator, differently on every run. None of these
    networks has one today; should one appear, one forward of each network on a zero image
    ``(1, 3, size, size)`` on the host creates it here (``size``: a multiple of 4, at least
    32 for the discriminator's five 4x4 convolutions). Raises RuntimeError naming any
    parameter still without an array.

    Returns:
        :class:`Networks` on the CPU, equal for equal arguments.
    """
    np.random.seed(seed % 2 ** 32)
    nets = Networks(ngf, ndf, n_blocks)
    if uninitialised_parameters(nets):
        x = np.zeros((1, 3, size, size), np.float32)
        with chainer.using_config('train', False), chainer.no_backprop_mode():
            for name in NETWORKS:
                getattr(nets, name)(x)
    missing = uninitialised_parameters(nets)
    if missing:
        raise RuntimeError('CycleGAN parameters still uninitialised after a forward pass on the '
                           'host: %s' % ', '.join(missing))
    return nets


def uninitialised_parameters(link):
    """Names of ``link``'s parameters that have no array yet (lazily shaped ones)."""
    return sorted(name for name, param in link.namedparams() if param.array is None)


class RankState(object):
    """What differs between ranks, for each rank's own file beside rank 0's snapshot: its two
    history pools, and its iterator (whose current order holds this rank's own draws; rank 0's
    snapshot has rank 0's)."""

    def __init__(self, updater):
        self.updater = updater

    def serialize(self, serializer):
        self.updater.pool_a.serialize(serializer['pool_a'])
        self.updater.pool_b.serialize(serializer['pool_b'])
        self.updater.get_iterator('main').serialize(serializer['iterator'])


class LossTrace(chainer.training.Extension):
    """The rank-averaged cycle loss of the updates, for ``metrics.json``: the mean of the run's
    first and of its last ``window`` updates (``window``: ``keep``, or half the updates of a
    shorter run). Only the first and the last ``keep`` values and the count are kept, and
    they are in the snapshots: a resumed run reports the values of the whole run, as if
    uninterrupted."""

    trigger = 1, 'iteration'
    priority = chainer.training.PRIORITY_READER
    name = 'loss_trace'

    def __init__(self, keep=10):
        self.keep = int(keep)
        self.head, self.tail, self.count = [], [], 0

    def __call__(self, trainer):
        value = trainer.observation.get('gen/loss_cycle')
        if value is not None:
            value = float(chainer.backend.CpuDevice().send(getattr(value, 'array', value)))
            if len(self.head) < self.keep:
                self.head.append(value)
            self.tail = (self.tail + [value])[-self.keep:]
            self.count += 1

    def window(self):
        return max(1, min(self.keep, self.count // 2))

    def first(self):
        """Mean of the run's first ``window()`` values; None before any update."""
        return float(np.mean(self.head[:self.window()])) if self.count else None

    def last(self):
        """Mean of the run's last ``window()`` values; None before any update."""
        return float(np.mean(self.tail[-self.window():])) if self.count else None

    def serialize(self, serializer):
        saving = isinstance(serializer, chainer.serializer.Serializer)
        head = serializer('head', np.asarray(self.head, np.float64) if saving else None)
        tail = serializer('tail', np.asarray(self.tail, np.float64) if saving else None)
        count = serializer('count', self.count)
        if not saving:
            self.head, self.tail = [float(v) for v in head], [float(v) for v in tail]
            self.count = int(count)


def networks_in_sync(nets, comm):
    """``{network: True if every rank holds exactly rank 0's parameters}`` (collective): the
    multi-node optimizers keep them equal, which this checks at the end of every run."""
    import hashlib
    digests = {}
    for name in NETWORKS:
        h = hashlib.sha1()
        for path, param in sorted(getattr(nets, name).namedparams()):
            h.update(path.encode())
            h.update(np.ascontiguousarray(chainer.backend.CpuDevice().send(param.array)))
        digests[name] = h.hexdigest()
    gathered = comm.mpi_comm.allgather(digests)
    return {name: all(d[name] == gathered[0][name] for d in gathered) for name in NETWORKS}
