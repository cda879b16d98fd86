"""Reproducible epochs: a per-epoch shuffle and per-example augmentation streams.

Chainer's iterators shuffle with a global RNG and ``MultiprocessIterator`` applies transforms
in worker processes, each with its own copy of any RNG, so which random numbers an example
gets depends on the worker that happened to load it. To make ``--resume`` continue exactly
(and runs repeatable for a seed), every random choice here is a pure function of
``(seed, epoch, position)``:

- :class:`EpochSampledDataset` answers *virtual items*: item ``(epoch + 1) * n + i`` is example
  ``i`` of the base dataset transformed with the random stream
  ``RandomState([seed, epoch * n + i])``. Items below ``n`` mean "no epoch yet": they are what
  Chainer's iterators pass the order sampler when they start (``arange(len(dataset))``).
- :class:`EpochOrderSampler` hands the iterator, each epoch, a permutation of that epoch's
  ``n`` items. The iterator serializes its current order, from which the epoch (and so the
  next order) follows: nothing else needs saving.

Memory is O(n): the dataset's length is ``n`` and an order holds ``n`` integers, whatever the
number of epochs (an iterator builds ``arange(len(dataset))`` when it starts).
"""
import chainer
import numpy as np
from chainer.dataset import DatasetMixin


def stream_seed(seed, rank):
    """The seed of one rank's augmentation streams: distinct per rank, a function of the run's
    seed, so that two ranks never draw the same augmentation for their (different) examples."""
    return seed * 1000003 + rank


class EpochSampledDataset(DatasetMixin):
    """Examples of ``base`` passed through ``transform(example, rng)`` with seeded streams.

    Args:
        base: a dataset of ``n >= 1`` examples.
        transform: ``callable(example, rng) -> example``, or ``None``.
        seed (int): the stream seed (see :func:`stream_seed`).
    """

    def __init__(self, base, transform=None, seed=0):
        self.base = base
        self.transform = transform
        self.seed = seed
        self.n = len(base)
        if self.n < 1:
            raise ValueError('EpochSampledDataset: the dataset is empty')

    def __len__(self):
        return self.n

    def get_example(self, item):
        if item < self.n:
            raise IndexError('EpochSampledDataset: item %d belongs to no epoch; iterate with '
                             'EpochOrderSampler' % item)
        example = self.base[item % self.n]
        if self.transform is None:
            return example
        stream = item - self.n  # epoch * n + i
        return self.transform(example, np.random.RandomState([self.seed % 2 ** 32, stream]))


class EpochOrderSampler(object):
    """Order sampler for :class:`EpochSampledDataset`: epoch ``e`` visits items
    ``(e + 1) * n + permutation_e(n)``, with ``permutation_e`` drawn from ``(seed, e)``.

    Pass it as ``order_sampler`` to ``SerialIterator`` / ``MultiprocessIterator``.
    """

    def __init__(self, n, seed=0, shuffle=True):
        self.n = n
        self.seed = seed
        self.shuffle = shuffle

    def order(self, epoch):
        if self.shuffle:
            perm = np.random.RandomState([self.seed % 2 ** 32, epoch]).permutation(self.n)
        else:
            perm = np.arange(self.n)
        return (epoch + 1) * self.n + perm

    def __call__(self, current_order, current_position):
        # The epoch of an order follows from its values; items below n are the iterator's
        # initial arange(len(dataset)): start at epoch 0.
        return self.order(int(current_order[0]) // self.n)


#: Keeps :class:`EpochDrawSampler`'s streams apart from :class:`EpochOrderSampler`'s.
_DRAW_STREAM = 5
#: When :class:`EpochDrawSampler` draws: a new draw every epoch (the default reading of paper
#: 002 sec. 3.2), or one draw at the start that each epoch only reshuffles.
RESAMPLE = ('epoch', 'once')


def draws_per_epoch(n_data, scale, processes):
    """``ceil(scale * n_data / processes)``: the examples each process sees per epoch (paper 002
    sec. 3.2: scale x D / n; D training examples, n processes). Rounded up, so that at
    ``scale = 1`` the processes together see at least the whole data set."""
    if n_data < 1 or processes < 1 or not scale > 0:
        raise ValueError('draws_per_epoch needs n_data >= 1, processes >= 1 and scale > 0, got '
                         '%r, %r, %r' % (n_data, processes, scale))
    return max(1, int(np.ceil(scale * n_data / float(processes) - 1e-9)))


class EpochDrawSampler(object):
    """Order sampler for :class:`EpochSampledDataset` over the WHOLE data set: each epoch,
    this process draws ``count`` of its ``n`` examples at random (paper 002 sec. 3.2: every
    process draws scale x D / n samples, :func:`draws_per_epoch`).

    Epoch ``e``'s order is ``(e + 1) * n + draws_e`` where ``draws_e`` (``count`` indices in
    ``[0, n)``) is a pure function of ``(seed, rank, e)``: reproducible per seed, resumable
    exactly (the iterator's saved order gives the epoch), and each rank's stream is its own, so
    no rank sees another's draws (ranks may well draw the same example, independently).

    Readings (paper 002 sec. 3.2 says only "randomly assigned"): ``replace=False`` (default)
    draws without replacement within an epoch (``count > n``: whole permutations, then part of
    one more; so an example appears at most ``ceil(count / n)`` times), ``True`` with
    replacement; ``resample='epoch'`` (default) draws anew every epoch, ``'once'`` keeps the
    epoch-0 draw for the whole run and only reshuffles its order each epoch.

    Memory is O(n + count). Pass as ``order_sampler`` to ``SerialIterator`` /
    ``MultiprocessIterator``; the epoch has ``count`` items, so ``epoch_detail`` counts
    this process's draws.
    """

    def __init__(self, n, count, seed=0, rank=0, replace=False, resample='epoch'):
        if n < 1 or count < 1:
            raise ValueError('EpochDrawSampler needs n >= 1 and count >= 1, got %r and %r'
                             % (n, count))
        if resample not in RESAMPLE:
            raise ValueError('resample must be one of %s, got %r' % (RESAMPLE, resample))
        self.n, self.count, self.seed, self.rank = int(n), int(count), seed, int(rank)
        self.replace, self.resample = bool(replace), resample

    def _rng(self, epoch, part):
        return np.random.RandomState([self.seed % 2 ** 32, _DRAW_STREAM, self.rank, epoch,
                                      part])

    def draws(self, epoch):
        """The ``count`` example indices of epoch ``epoch`` in visiting order, ``(count,)``."""
        rng = self._rng(epoch if self.resample == 'epoch' else 0, 0)
        if self.replace:
            drawn = rng.randint(0, self.n, self.count)
        else:
            drawn = np.concatenate([rng.permutation(self.n)
                                    for _ in range(-(-self.count // self.n))])[:self.count]
        if self.resample == 'once':
            drawn = drawn[self._rng(epoch, 1).permutation(self.count)]
        return drawn

    def order(self, epoch):
        return (epoch + 1) * self.n + self.draws(epoch)

    def __call__(self, current_order, current_position):
        return self.order(int(current_order[0]) // self.n)


class ForwardRandomness(chainer.training.Extension):
    """Seeds the generator that draws inside the forward pass (dropout masks: NumPy's global
    generator on the CPU, CuPy's on a GPU) before every update from ``(seed, rank, update)``,
    so that a run resumed from a snapshot draws the same masks as the uninterrupted run and
    two ranks never draw the same ones."""

    trigger = 1, 'iteration'
    priority = chainer.training.PRIORITY_READER  # after every other extension of the update

    def __init__(self, seed, rank):
        self.seed, self.rank = seed % 2 ** 32, rank

    def initialize(self, trainer):
        self(trainer)  # the first update, and the first after a resume

    def __call__(self, trainer):
        key = [self.seed, self.rank, trainer.updater.iteration]
        np.random.seed(key)
        if chainer.backends.cuda.available:
            chainer.backends.cuda.cupy.random.seed(
                int(np.random.RandomState(key).randint(2 ** 31)))
