"""Loader workers at an epoch boundary (paper 004 Table 3), and the profile's summary."""
import json

import numpy as np
import pytest

from conftest import check, run_python

from chainer_yolo_dist.core import mpi
from chainer_yolo_dist.core.iterators import (EpochRestartingIterator, WatchedMultiprocessIterator,
                                              train_iterator)
from chainer_yolo_dist.core.reporting import profile_summary
from chainer_yolo_dist.core.sampling import EpochSampledDataset


def _noisy(example, rng):
    return example + rng.uniform()  # a random draw per example, as augmentation makes


def _pids(it):
    return sorted(p.pid for p in it._prefetch_loop._pool._pool)


def test_workers_recreated_each_epoch_give_the_same_batches_with_new_processes():
    mpi.start_forkserver()
    data = EpochSampledDataset(np.arange(8, dtype=np.float64), _noisy, seed=3)
    serial = train_iterator(data, 4, seed=1, loaderjob=0)
    kept = train_iterator(data, 4, seed=1, loaderjob=1)
    fresh = train_iterator(data, 4, seed=1, loaderjob=1, persistent=False)
    assert type(kept) is WatchedMultiprocessIterator
    assert isinstance(fresh, EpochRestartingIterator)
    try:
        kept_pids, fresh_pools = [], []
        for _ in range(3):  # epochs of 2 batches
            for _ in range(2):
                x = np.array(next(serial))
                np.testing.assert_array_equal(np.array(next(kept)), x)
                np.testing.assert_array_equal(np.array(next(fresh)), x)
            kept_pids.append(_pids(kept))
            fresh_pools.append(fresh._prefetch_loop._pool)
        assert fresh.epoch == kept.epoch == 3
        # Chainer's iterator keeps its worker; the re-creating one has ended its pool at each
        # boundary (the next batch starts a new one).
        assert kept_pids[0] == kept_pids[1] == kept_pids[2] and len(kept_pids[0]) == 1
        assert fresh_pools == [None, None, None]
        next(fresh)
        assert fresh._prefetch_loop._pool is not None  # started anew for the next epoch
    finally:
        kept.finalize()
        fresh.finalize()


def test_profile_summary_gives_table4_shares():
    rows = [{'iteration': 1, 'data': 9., 'forward': 9., 'backward': 9., 'allreduce': 9.,
             'update': 9., 'step': 45.},  # the first is left out (start-up)
            {'iteration': 2, 'data': 1., 'forward': 2., 'backward': 4., 'allreduce': 3.,
             'update': 1., 'step': 11.}]
    other = [dict(rows[0]), dict(rows[1], allreduce=5., step=13.)]
    s = profile_summary([rows, other])
    assert s['mean']['allreduce'] == 4. and s['mean']['step'] == 12.
    assert s['table4']['communication'] == pytest.approx(4 / 11.)
    assert s['table4']['compute'] == pytest.approx(7 / 11.)
    assert s['shares']['data'] == pytest.approx(1 / 12.)
    assert [r['iterations'] for r in s['per_rank']] == [1, 1]


@pytest.mark.slow  # starts loader processes three times (about 30 s on a busy machine)
def test_stall_benchmark_writes_its_record_and_figure(tmp_path):
    out = tmp_path / 'bench'
    check(run_python(['scripts/bench_stall.py', '--workers', '0', '1', '--n-clips', '8',
                      '--batchsize', '2', '--epochs', '2', '--annotations', '1000',
                      '--clip-frames', '4', '--clip-size', '32', '--out', str(out)],
                     timeout=120))
    record = json.loads((out / 'stall.json').read_text())
    assert (out / 'stall.png').stat().st_size > 0
    configs = [(r['workers'], r['persistent']) for r in record['results']]
    assert configs == [(0, True), (1, True), (1, False)]
    for r in record['results']:
        assert len(r['stall_s']) == 1 and len(r['waits']) == 2 and len(r['waits'][0]) == 4
        assert r['ten_iterations_measured'] == 6 and r['ten_iterations_s'] > 0
    assert len(record['load_average_before']) == 3
    assert record['published_table3']['stall_s'] == [0, 50, 75, 110]
