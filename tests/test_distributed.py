"""Data parallelism under mpiexec with real ranks (ChainerMN's naive communicator)."""
import json

import numpy as np
import pytest

from conftest import check, run_mpi

SCRIPTS = 'tests/mpi_scripts/'


@pytest.mark.parametrize('k', [2, 4])
def test_k_ranks_equal_one_process_with_k_times_the_batch(tmp_path, k):
    """Gradients averaged across ranks, each rank's loss its own mean: the same updates."""
    check(run_mpi(1, [SCRIPTS + 'equivalence.py', str(tmp_path / 'one.npz')], timeout=180))
    check(run_mpi(k, [SCRIPTS + 'equivalence.py', str(tmp_path / 'k.npz')], timeout=180))
    one, dist = np.load(tmp_path / 'one.npz'), np.load(tmp_path / 'k.npz')
    assert one.files == dist.files
    changed = 0
    for name in one.files:
        np.testing.assert_allclose(dist[name], one[name], rtol=1e-7, atol=1e-9, err_msg=name)
        changed += 1
    assert changed > 50


@pytest.mark.parametrize('n, k, batch', [(20, 2, 5), (21, 2, 11), (24, 4, 3)])
def test_each_epoch_sees_every_sample_once_across_ranks(tmp_path, n, k, batch):
    out = tmp_path / 'seen.json'
    check(run_mpi(k, [SCRIPTS + 'coverage.py', str(n), str(batch), '3', str(out)],
                  timeout=120))
    ranks = json.loads(out.read_text())
    shard = ranks[0]['shard']
    padding = ranks[0]['padding']
    assert shard * k == n + padding and padding < k
    orders = []
    for epoch in range(3):
        seen = sorted(i for r in ranks for i in r['seen'][epoch])
        # Every sample at least once; only the recorded padding repeats one.
        assert sorted(set(seen)) == list(range(n))
        assert len(seen) == n + padding
        orders.append([r['seen'][epoch] for r in ranks])
    # Each rank keeps its share but visits it in a new order every epoch.
    assert orders[0] != orders[1]
    assert all(sorted(orders[0][r]) == sorted(orders[1][r]) for r in range(k))


def test_gathered_evaluation_equals_single_process(tmp_path):
    out = tmp_path / 'eval.json'
    check(run_mpi(2, [SCRIPTS + 'gathered_eval.py', str(out)], timeout=180))
    results = json.loads(out.read_text())
    for name, r in results.items():
        assert r['distributed']['map'] == r['single']['map'], name
        assert r['distributed']['ap'] == r['single']['ap'], name
    assert 0.2 < results['oracle']['single']['map'] < 0.95


def test_scattered_evaluation_images_travel_interleaved_without_a_copy():
    # The datasets' images are (3, H, W) views of (H, W, 3) memory: they are scattered as that
    # memory (pickled with one copy, not gathered element by element) and predicted on as
    # (3, H, W) again.
    import pickle
    from chainer_yolo_dist.detection.evaluation import _InterleavedImages, _predict_chw
    hwc = np.random.RandomState(0).uniform(0, 255, (6, 5, 3)).astype(np.float32)
    img = hwc.transpose(2, 0, 1)
    bbox, label = np.zeros((1, 4), np.float32), np.zeros(1, np.int32)
    sent, sent_bbox, sent_label = _InterleavedImages([(img, bbox, label)])[0]
    assert sent.flags.c_contiguous and np.shares_memory(sent, hwc)
    assert sent_bbox is bbox and sent_label is label
    received = pickle.loads(pickle.dumps(sent, protocol=pickle.HIGHEST_PROTOCOL))

    class Echo(object):
        def predict(self, imgs):
            return imgs

    np.testing.assert_array_equal(_predict_chw(Echo())([received])[0], img)
    planar = np.ascontiguousarray(img)  # other datasets' planar images are interleaved once
    np.testing.assert_array_equal(_InterleavedImages([(planar,)])[0][0], hwc)


@pytest.mark.parametrize('ranks, virtual', [(2, 2), (1, 4)])
def test_virtual_ranks_equal_real_ranks(tmp_path, ranks, virtual):
    """k = 4 workers: 2 ranks x 2 virtual and 1 process x 4 virtual update as 4 real ranks."""
    real, mixed = tmp_path / 'real.npz', tmp_path / 'mixed.npz'
    check(run_mpi(4, [SCRIPTS + 'virtual_ranks.py', '1', str(real)], timeout=240))
    check(run_mpi(ranks, [SCRIPTS + 'virtual_ranks.py', str(virtual), str(mixed)],
                  timeout=240))
    a, b = np.load(real), np.load(mixed)
    assert a.files == b.files and len(a.files) > 50
    for name in a.files:
        np.testing.assert_allclose(b[name], a[name], rtol=1e-7, atol=1e-9, err_msg=name)
