"""Reproducible epochs: a per-epoch shuffle and per-example augmentation seeds.

Chainer's iterators shuffle with a global RNG and ``MultiprocessIterator`` applies transforms
in worker processes, each with its own copy of any RNG, so which random numbers an example
gets depends on the worker that happened to load it. To make ``--resume`` continue exactly
(and runs repeatable for a seed), every random choice here is a pure function of
``(seed, epoch, position)``:

- :class:`EpochSampledDataset` is a virtual dataset of ``n * max_epochs`` items; item
  ``epoch * n + i`` is example ``i`` of the base dataset transformed with the random stream
  ``RandomState([seed, epoch * n + i])``.
- :class:`EpochOrderSampler` hands the iterator, each epoch, a permutation of the ``n``
  items of that epoch. The iterator serializes its current order, from which the epoch (and
  so the next order) follows: nothing else needs saving.
"""
import numpy as np
from chainer.dataset import DatasetMixin


class EpochSampledDataset(DatasetMixin):
    """Examples of ``base`` passed through ``transform(example, rng)`` with seeded streams.

    Args:
        base: a dataset of ``n`` examples.
        transform: ``callable(example, rng) -> example``, or ``None``.
        seed (int): the run's seed.
        max_epochs (int): epochs addressable before the seeds repeat.
    """

    def __init__(self, base, transform=None, seed=0, max_epochs=100000):
        self.base = base
        self.transform = transform
        self.seed = seed
        self.n = len(base)
        self.max_epochs = max_epochs

    def __len__(self):
        return self.n * self.max_epochs

    def base_index(self, item):
        """The index into ``base`` of virtual item ``item``."""
        return item % self.n

    def get_example(self, item):
        example = self.base[item % self.n]
        if self.transform is None:
            return example
        return self.transform(example, np.random.RandomState([self.seed % 2 ** 32, item]))


class EpochOrderSampler(object):
    """Order sampler for :class:`EpochSampledDataset`: epoch ``e`` visits items
    ``e * n + permutation_e(n)``, with ``permutation_e`` drawn from ``(seed, e)``.

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
        return epoch * self.n + perm

    def __call__(self, current_order, current_position):
        if len(current_order) != self.n:
            # The iterator's first call passes arange(len(dataset)): start at epoch 0.
            return self.order(0)
        return self.order(int(current_order[0]) // self.n + 1)
