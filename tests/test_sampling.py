"""Reproducible epochs: per-epoch shuffles and per-example random streams."""
import chainer

from chainer_yolo_dist.core.sampling import EpochOrderSampler, EpochSampledDataset


def _draw(example, rng):
    return example, rng.randint(1 << 30)


def test_each_epoch_is_a_permutation_of_the_dataset():
    ds = EpochSampledDataset(list(range(7)), _draw, seed=1)
    it = chainer.iterators.SerialIterator(ds, 7, order_sampler=EpochOrderSampler(7, seed=1))
    epochs = [[ex for ex, _ in next(it)] for _ in range(4)]
    for e in epochs:
        assert sorted(e) == list(range(7))
    assert len({tuple(e) for e in epochs}) > 1


def test_streams_differ_across_epochs_and_repeat_across_runs():
    def run():
        ds = EpochSampledDataset(list(range(5)), _draw, seed=2)
        it = chainer.iterators.SerialIterator(ds, 5,
                                              order_sampler=EpochOrderSampler(5, seed=2))
        return [dict(next(it)) for _ in range(3)]
    a, b = run(), run()
    assert a == b
    assert a[0][0] != a[1][0]  # example 0 gets new randomness in the next epoch


def test_resumed_iterator_continues_the_same_sequence(tmp_path):
    def make():
        ds = EpochSampledDataset(list(range(6)), _draw, seed=3)
        return chainer.iterators.MultiprocessIterator(
            ds, 4, n_processes=1, order_sampler=EpochOrderSampler(6, seed=3))
    full = make()
    reference = [next(full) for _ in range(6)]
    full.finalize()
    first = make()
    head = [next(first) for _ in range(2)]
    chainer.serializers.save_npz(str(tmp_path / 'it.npz'), first)
    first.finalize()
    resumed = make()
    chainer.serializers.load_npz(str(tmp_path / 'it.npz'), resumed)
    tail = [next(resumed) for _ in range(4)]
    resumed.finalize()
    assert head + tail == reference


class _Range(object):
    """A dataset of ``n`` integers that holds no array (like a list of file names)."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return i


def test_memory_for_the_order_is_o_of_n_whatever_the_epochs():
    # ImageNet's 1.28M images on one process: the iterator's order is n integers, not
    # n x epochs (the earlier virtual dataset of n x 100,000 items made Chainer build
    # arange(len(dataset)): 1 TB here).
    import tracemalloc
    n = 10 ** 6
    ds = EpochSampledDataset(_Range(n), None, seed=3)
    assert len(ds) == n
    tracemalloc.start()
    it = chainer.iterators.SerialIterator(ds, 4, order_sampler=EpochOrderSampler(n, seed=3))
    batch = next(it)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 4 * 8 * n, peak  # a few int64 arrays of n, nothing of n x epochs
    assert len(it._state.order) == n and all(0 <= b < n for b in batch)
    # The epoch follows from the order's values; the next epoch is another permutation.
    it._state = it._state._replace(current_position=n - 4)
    next(it)
    assert it.epoch == 1 and sorted(it._state.order % n) == list(range(n))
