"""Per-epoch random draws per process (paper 002 sec. 3.2: scale x D / n samples each)."""
import chainer
import numpy as np
import pytest

from chainer_yolo_dist.core.sampling import (EpochDrawSampler, EpochSampledDataset,
                                             draws_per_epoch)


def test_draws_per_epoch_is_scale_d_over_n_rounded_up():
    assert draws_per_epoch(4822, 4, 4) == 4822        # one node: each GPU sees D per epoch
    assert draws_per_epoch(4822, 4, 512) == 38        # 4 * 4822 / 512 = 37.67
    assert draws_per_epoch(100, 4, 2) == 200
    assert draws_per_epoch(10, 1, 3) == 4
    with pytest.raises(ValueError):
        draws_per_epoch(10, 0, 2)


def _epochs(sampler, n_epochs):
    return [sampler.order(e) - (e + 1) * sampler.n for e in range(n_epochs)]


def test_each_rank_draws_its_count_every_epoch_without_replacement():
    for rank in range(3):
        sampler = EpochDrawSampler(50, 17, seed=4, rank=rank)
        for draws in _epochs(sampler, 4):
            assert len(draws) == 17 and len(set(draws.tolist())) == 17
            assert draws.min() >= 0 and draws.max() < 50


def test_more_draws_than_examples_use_every_example_before_repeating_one():
    draws = EpochDrawSampler(10, 25, seed=1, rank=0).draws(0)
    counts = np.bincount(draws, minlength=10)
    assert counts.sum() == 25 and counts.min() >= 2 and counts.max() <= 3


def test_ranks_draw_independently_and_reproducibly():
    a = _epochs(EpochDrawSampler(1000, 100, seed=7, rank=0), 3)
    b = _epochs(EpochDrawSampler(1000, 100, seed=7, rank=1), 3)
    again = _epochs(EpochDrawSampler(1000, 100, seed=7, rank=0), 3)
    other_seed = _epochs(EpochDrawSampler(1000, 100, seed=8, rank=0), 3)
    for e in range(3):
        np.testing.assert_array_equal(a[e], again[e])
        # another rank's draws are its own: about 100 * 100 / 1000 = 10 shared by chance
        assert len(set(a[e].tolist()) & set(b[e].tolist())) < 40
        assert not np.array_equal(a[e], other_seed[e])
    assert not np.array_equal(a[0], a[1])  # redrawn every epoch (the default reading)


def test_resample_once_keeps_the_first_draw_and_reshuffles_it():
    sampler = EpochDrawSampler(100, 20, seed=3, rank=2, resample='once')
    first, second = _epochs(sampler, 2)
    assert sorted(first.tolist()) == sorted(second.tolist())
    assert not np.array_equal(first, second)


def test_with_replacement_may_repeat_within_an_epoch():
    draws = EpochDrawSampler(5, 200, seed=0, rank=0, replace=True).draws(0)
    assert len(draws) == 200 and set(draws.tolist()) == set(range(5))


def _iterator(n, count, rank, seed=5):
    dataset = EpochSampledDataset(list(range(n)), lambda x, rng: (x, rng.randint(1 << 30)),
                                  seed=seed * 1000 + rank)
    return chainer.iterators.SerialIterator(
        dataset, 3, order_sampler=EpochDrawSampler(n, count, seed, rank))


def test_an_iterator_epoch_is_the_rank_s_draws_and_resumes_exactly(tmp_path):
    it = _iterator(40, 9, rank=1)
    batches = [next(it) for _ in range(9)]  # 3 epochs of 9 draws
    assert it.epoch == 3 and it.epoch_detail == 3.0
    sampler = EpochDrawSampler(40, 9, 5, 1)
    for e in range(3):
        seen = [x for batch in batches[3 * e:3 * e + 3] for x, _ in batch]
        assert seen == sampler.draws(e).tolist()
    first = _iterator(40, 9, rank=1)
    head = [next(first) for _ in range(4)]
    chainer.serializers.save_npz(str(tmp_path / 'it.npz'), first)
    resumed = _iterator(40, 9, rank=1)
    chainer.serializers.load_npz(str(tmp_path / 'it.npz'), resumed)
    assert head + [next(resumed) for _ in range(5)] == batches


def test_rejects_bad_arguments():
    with pytest.raises(ValueError):
        EpochDrawSampler(0, 3)
    with pytest.raises(ValueError):
        EpochDrawSampler(3, 3, resample='sometimes')
