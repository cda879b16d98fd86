"""train_cyclegan.py on two real MPI ranks: every output, the networks kept equal, exact resume
with each rank's own history pools."""
import json
import os
import shutil

import numpy as np
import pytest

from conftest import check, run_mpi, run_python

# Tiny networks at 32 px, 4 training pairs (2 ranks x 4 draws x scale 4 / 2: 8 updates per
# epoch), a pool of 2 so that the pools are full after two updates and their random swaps
# decide what the discriminators see.
TINY = ['--insize', '32', '--n-train-images', '4', '--n-test-images', '8', '--fid-images', '8',
        '--n-samples', '2', '--ngf', '4', '--ndf', '4', '--n-blocks', '1', '--pool-size', '2',
        '--log-interval', '4', '--snapshot-interval', '6', '--seed', '3']


@pytest.fixture(scope='module')
def full_run(tmp_path_factory, extractor):
    out = str(tmp_path_factory.mktemp('cyclegan') / 'full')
    proc = check(run_mpi(2, ['scripts/train_cyclegan.py', '--out', out, '--iterations', '12',
                             '--fid-extractor', extractor] + TINY, timeout=180))
    return out, proc


def _arrays(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


@pytest.mark.slow  # a 2-rank training run (full_run)
def test_two_ranks_write_every_output_and_keep_the_networks_equal(full_run):
    out, proc = full_run
    for name in ('log', 'config.json', 'loss.png', 'fid.png', 'model.npz', 'metrics.json',
                 'snapshot_iter_6', 'snapshot_iter_12', 'samples/iter_0000008.png',
                 'samples/iter_0000012.png', 'rank_states/snapshot_iter_12.rank0.npz',
                 'rank_states/snapshot_iter_12.rank1.npz'):
        assert os.path.isfile(os.path.join(out, name)), name
    metrics = json.load(open(os.path.join(out, 'metrics.json')))
    assert metrics['networks_in_sync'] == {'gen_ab': True, 'gen_ba': True, 'dis_a': True,
                                           'dis_b': True}
    assert metrics['iterations'] == 12 and metrics['draws_per_epoch'] == 8
    assert np.isfinite(metrics['fid']) and metrics['fid_baseline'] > 0
    assert 'NOT comparable' in metrics['fid_extractor']
    log = json.load(open(os.path.join(out, 'log')))
    assert any('fid' in entry for entry in log)  # epoch 1's distance, in the log
    for entry in log:
        for key in ('gen/loss_cycle', 'dis_a/loss', 'dis_b/loss'):
            assert np.isfinite(entry[key])
    config = json.load(open(os.path.join(out, 'config.json')))
    assert config['preset']['peak_lr'] == pytest.approx(2e-4)  # not scaled with k = 2
    model = _arrays(os.path.join(out, 'model.npz'))
    assert {k.split('/')[0] for k in model} == {'gen_ab', 'gen_ba', 'dis_a', 'dis_b'}
    assert 'Frechet distance' in proc.stdout


@pytest.mark.slow  # full_run, then its resume
def test_resume_from_the_middle_ends_exactly_as_the_uninterrupted_run(full_run, tmp_path,
                                                                      extractor):
    out, _ = full_run
    resumed = str(tmp_path / 'resumed')
    check(run_mpi(2, ['scripts/train_cyclegan.py', '--out', resumed, '--iterations', '12',
                      '--resume', os.path.join(out, 'snapshot_iter_6'),
                      '--fid-extractor', extractor] + TINY, timeout=180))
    a, b = _arrays(os.path.join(out, 'model.npz')), _arrays(os.path.join(resumed, 'model.npz'))
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    pools_a = _arrays(os.path.join(out, 'rank_states/snapshot_iter_12.rank1.npz'))
    pools_b = _arrays(os.path.join(resumed, 'rank_states/snapshot_iter_12.rank1.npz'))
    for key in pools_a:
        np.testing.assert_array_equal(pools_a[key], pools_b[key], err_msg=key)


@pytest.mark.slow  # full_run, then two resumes
def test_each_rank_s_own_state_matters_and_a_missing_one_is_named(full_run, tmp_path,
                                                                  extractor):
    out, _ = full_run
    copy = str(tmp_path / 'copy')
    os.makedirs(os.path.join(copy, 'rank_states'))
    shutil.copy(os.path.join(out, 'snapshot_iter_6'), copy)
    # rank 1 given rank 0's pools and draws: no longer the uninterrupted run
    for rank in (0, 1):
        shutil.copy(os.path.join(out, 'rank_states/snapshot_iter_6.rank0.npz'),
                    os.path.join(copy, 'rank_states/snapshot_iter_6.rank%d.npz' % rank))
    wrong = str(tmp_path / 'wrong')
    check(run_mpi(2, ['scripts/train_cyclegan.py', '--out', wrong, '--iterations', '12',
                      '--resume', os.path.join(copy, 'snapshot_iter_6'),
                      '--fid-extractor', extractor] + TINY, timeout=180))
    a, b = _arrays(os.path.join(out, 'model.npz')), _arrays(os.path.join(wrong, 'model.npz'))
    assert any(not np.array_equal(a[k], b[k]) for k in a if k.startswith('dis_'))
    os.remove(os.path.join(copy, 'rank_states/snapshot_iter_6.rank1.npz'))
    proc = run_mpi(2, ['scripts/train_cyclegan.py', '--out', str(tmp_path / 'missing'),
                       '--iterations', '12', '--resume', os.path.join(copy, 'snapshot_iter_6'),
                       '--fid-extractor', extractor] + TINY, timeout=180)
    assert proc.returncode != 0
    assert 'rank 1' in proc.stdout + proc.stderr
    assert 'snapshot_iter_6.rank1.npz' in proc.stdout + proc.stderr


@pytest.mark.slow  # the full_run fixture
def test_translate_applies_the_trained_generator_to_a_folder(full_run, tmp_path):
    import PIL.Image
    out, _ = full_run
    src = tmp_path / 'in' / 'sub'
    src.mkdir(parents=True)
    rng = np.random.RandomState(0)
    for k, (h, w) in enumerate(((40, 50), (32, 32), (64, 48))):
        PIL.Image.fromarray(rng.randint(0, 255, (h, w, 3)).astype(np.uint8)).save(
            str(src / ('img%d.jpg' % k)))
    (tmp_path / 'in' / 'notes.txt').write_text('not an image')
    proc = check(run_python(['scripts/translate.py', os.path.join(out, 'model.npz'),
                             str(tmp_path / 'in'), str(tmp_path / 'out')], timeout=60))
    assert 'translated 3 images' in proc.stdout
    written = sorted(os.listdir(str(tmp_path / 'out' / 'sub')))
    assert written == ['img0.png', 'img1.png', 'img2.png']
    assert PIL.Image.open(str(tmp_path / 'out' / 'sub' / 'img0.png')).size == (32, 32)
    # the same generator in the snapshot gives the same image
    check(run_python(['scripts/translate.py', os.path.join(out, 'snapshot_iter_12'),
                      str(tmp_path / 'in'), str(tmp_path / 'snap')], timeout=60))
    assert np.array_equal(np.asarray(PIL.Image.open(str(tmp_path / 'out/sub/img2.png'))),
                          np.asarray(PIL.Image.open(str(tmp_path / 'snap/sub/img2.png'))))
    proc = run_python(['scripts/translate.py', os.path.join(out, 'config.json'),
                       str(tmp_path / 'in'), str(tmp_path / 'bad')], timeout=60)
    assert proc.returncode != 0 and 'config.json' in proc.stderr


@pytest.mark.slow  # the full_run fixture
def test_table2_sets_on_the_synthetic_domains(full_run, tmp_path):
    from chainer_yolo_dist.cyclegan.data import SyntheticDomains
    from chainer_yolo_dist.cyclegan.synthetic_detection import scene_boxes
    from chainer_yolo_dist.datasets.voc import VOCFormatDataset
    out, _ = full_run
    root = str(tmp_path / 'sets')
    proc = check(run_python(['scripts/make_synthetic_detection_sets.py', root, '--generator',
                             os.path.join(out, 'model.npz'), '--n-test-images', '3'],
                            timeout=60))
    assert 'a: 4 images, b: 8 images, c: 8 images, test: 3 images' in proc.stdout
    c = VOCFormatDataset(root, 'c', ('object',))
    assert c.ids[:4] == ['real_%05d' % i for i in range(4)]
    assert c.ids[4:] == ['gen_%05d' % i for i in range(4)]
    # the run's data: seed 3, 32 px; generated images keep their CG scene's boxes
    train = SyntheticDomains('train', 4, 32, seed=3)
    img, bbox, label = c[5]
    assert img.shape == (3, 32, 32) and (label == 0).all()
    expected = scene_boxes(train, 'a', 1)
    np.testing.assert_array_equal(bbox, expected - np.array([0, 0, 1, 1], np.float32))
