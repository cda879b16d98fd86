"""scripts/train_darknet.py: distributed Darknet classification on the synthetic crops.

The runs are real: one process, and two MPI ranks with ChainerMN's naive communicator. Four
classes, so chance is 0.25 top-1; the runs must reach well above it.
"""
import dataclasses
import json
import math

import numpy as np
import pytest

from conftest import check, run_mpi, run_python

from chainer_yolo_dist.classification.chain import (ClassifierChain, top_k_accuracy)
from chainer_yolo_dist.classification.chain import converter as classification_converter
from chainer_yolo_dist.classification.data import load_data
from chainer_yolo_dist.classification.settings import ClassificationData
from chainer_yolo_dist.classification.transforms import (CenterCrop, DarknetAugmentation,
                                                         rotate_scale_crop)
from chainer_yolo_dist.classification.model_files import inspect_classifier_file, load_classifier

# The CPU demo preset on half its data and 6 of its 10 epochs; 125 validation images so that
# two ranks get unequal shares (63 + 62) and the last batch of each is partial.
RUN = ['scripts/train_darknet.py', '--n-train-images', '512', '--n-test-images', '125',
       '--epochs', '6', '--eval-batchsize', '50', '--loaderjob', '0', '--no-progress',
       '--log-interval', '8']
CHANCE = 0.25
FAR_ABOVE_CHANCE = 0.6
OUTPUTS = ('log', 'config.json', 'metrics.json', 'accuracy.png', 'loss.png', 'model.npz')


def _run(tmp_path_factory, name, n_ranks):
    out = tmp_path_factory.mktemp(name)
    args = RUN + ['--out', str(out)]
    proc = check(run_python(args, timeout=180) if n_ranks == 1
                 else run_mpi(n_ranks, args, timeout=180))
    return out, proc


@pytest.fixture(scope='module')
def single(tmp_path_factory):
    return _run(tmp_path_factory, 'single', 1)


@pytest.fixture(scope='module')
def two_ranks(tmp_path_factory):
    return _run(tmp_path_factory, 'two_ranks', 2)


def _json(path):
    return json.loads(path.read_text())


def _evaluate_in_one_process(out):
    """Top-1 of ``out/model.npz`` over the run's whole validation set, in this process."""
    config = _json(out / 'config.json')
    _, test, _, _ = load_data(ClassificationData(**config['data']))
    model, _ = load_classifier(str(out / 'model.npz'))
    crop = CenterCrop(config['preset']['insize'])
    x, t = classification_converter([crop(test[i]) for i in range(len(test))])
    return float((model.predict(x).argmax(axis=1) == t).mean()), len(test)


@pytest.mark.slow  # the module's two training runs (fixtures)
@pytest.mark.parametrize('fixture', ['single', 'two_ranks'])
def test_reaches_top1_far_above_chance_quickly(fixture, request):
    out, proc = request.getfixturevalue(fixture)
    metrics = _json(out / 'metrics.json')
    assert metrics['top1'] >= FAR_ABOVE_CHANCE > CHANCE, metrics
    # Four classes: every class is in the top five.
    assert metrics['top5'] == 1.0
    assert metrics['elapsed_seconds'] < 120 and metrics['images_per_second'] > 0
    assert metrics['epochs'] == 6 and metrics['comm_size'] == (1 if fixture == 'single' else 2)
    # Only rank 0 prints the result.
    assert proc.stdout.count('top-1 ') == 1


@pytest.mark.slow  # the module's training runs
@pytest.mark.parametrize('fixture', ['single', 'two_ranks'])
def test_validation_accuracy_is_exact_over_the_whole_set(fixture, request):
    out, _ = request.getfixturevalue(fixture)
    top1, n_val = _evaluate_in_one_process(out)
    metrics = _json(out / 'metrics.json')
    assert metrics['n_val'] == n_val == 125
    assert metrics['top1'] == pytest.approx(top1, abs=1e-6)


@pytest.mark.slow  # the module's training runs
def test_outputs_and_recorded_settings(single, two_ranks):
    for out, _ in (single, two_ranks):
        for name in OUTPUTS:
            assert (out / name).stat().st_size > 0, (out, name)
        metrics = _json(out / 'metrics.json')
        assert set(metrics) >= {'top1', 'top5', 'epochs', 'iterations', 'elapsed_seconds',
                                'images_per_second'}
    config1, config2 = _json(single[0] / 'config.json'), _json(two_ranks[0] / 'config.json')
    assert config1['preset']['name'] == 'synthetic_classification_demo'
    assert config1['preset']['model'] == 'darknet19' and config1['channels_scale'] == 0.125
    # Paper 001 sec. 4.1: lr = k * n / 256 * eta.
    for config, k in ((config1, 1), (config2, 2)):
        recipe = config['preset']
        assert config['workers'] == k and config['communicator'] == 'naive'
        assert recipe['peak_lr'] == pytest.approx(k * recipe['batchsize_per_gpu'] / 256
                                                  * config['eta'])
        assert recipe['global_batchsize'] == k * recipe['batchsize_per_gpu']
    # 512 images: 16 updates of 32 per epoch on one rank, 8 of 32 per rank on two.
    assert _json(single[0] / 'metrics.json')['iterations'] == 6 * 16
    assert _json(two_ranks[0] / 'metrics.json')['iterations'] == 6 * 8
    assert (single[0] / 'snapshot_iter_96').is_file()
    assert (two_ranks[0] / 'snapshot_iter_48').is_file()


@pytest.mark.slow  # the module's training runs
def test_log_holds_training_and_validation_accuracy_every_epoch(two_ranks):
    log = _json(two_ranks[0] / 'log')
    for entry in log:
        for key in ('main/loss', 'main/accuracy', 'main/top5', 'lr'):
            assert np.isfinite(entry[key]), (key, entry)
    validated = [e for e in log if 'validation/main/accuracy' in e]
    # 8 updates per epoch, a log entry every 8: each epoch's entry carries its validation.
    assert [e['epoch'] for e in validated] == [1, 2, 3, 4, 5, 6]
    for entry in validated:
        assert 0 <= entry['validation/main/accuracy'] <= 1
        assert entry['validation/main/top5'] == 1.0


@pytest.mark.slow  # the module's training runs
def test_model_npz_and_snapshot_hold_the_same_classifier(single):
    out, _ = single
    info = inspect_classifier_file(str(out / 'snapshot_iter_96'))
    assert info.prefix == 'updater/model:main/predictor/'
    assert (info.kind, info.n_class, info.channels_scale) == ('darknet19', 4, 0.125)
    assert inspect_classifier_file(str(out / 'model.npz')).prefix == ''
    from_npz, _ = load_classifier(str(out / 'model.npz'))
    from_snapshot, _ = load_classifier(str(out / 'snapshot_iter_96'))
    a, b = dict(from_npz.namedparams()), dict(from_snapshot.namedparams())
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name].array, b[name].array, err_msg=name)


@pytest.mark.slow  # a training run, then two more
def test_fine_tuning_stage_starts_from_the_trained_classifier(single, tmp_path):
    """YOLO9000's second stage as a second run: --pretrained model.npz at a new size."""
    def finetune(insize):
        out = tmp_path / ('finetune%d' % insize)
        proc = check(run_python(RUN + [
            '--pretrained', str(single[0] / 'model.npz'), '--insize', str(insize),
            '--lr', '1e-3', '--epochs', '1', '--warmup-epochs', '0',
            '--warmup-hold-epochs', '0', '--iterations', '1', '--out', str(out)],
            timeout=120))
        assert 'initialised from %s' % (single[0] / 'model.npz') in proc.stdout
        return _json(out / 'config.json'), _json(out / 'metrics.json')['top1']

    # One update at a tiny rate: the accuracy is the trained classifier's, not chance.
    _, top1 = finetune(32)
    assert top1 >= FAR_ABOVE_CHANCE
    # At a new size the run starts from the same weights: one tiny update keeps the trained
    # classifier's own accuracy at that size, up to what the update's batch-normalisation
    # statistics (taken at the new size) move (how well a 32-pixel classifier reads 64-pixel
    # crops is another matter: about 0.46 for this demo network; chance is 0.25).
    config, top1 = finetune(64)
    assert config['preset']['insize'] == 64
    assert config['preset']['peak_lr'] == pytest.approx(1e-3 * 32 / 256)
    model, _ = load_classifier(str(single[0] / 'model.npz'))
    _, test, _, _ = load_data(ClassificationData(**config['data']))
    x, t = classification_converter([CenterCrop(64)(test[i]) for i in range(len(test))])
    assert top1 == pytest.approx(float((model.predict(x).argmax(axis=1) == t).mean()),
                                 abs=0.1)


@pytest.mark.slow  # the module's training runs
def test_pretrained_of_another_network_is_refused(single, tmp_path):
    proc = run_python(RUN + ['--pretrained', str(single[0] / 'model.npz'), '--model',
                             'darknet53', '--iterations', '1', '--out', str(tmp_path)],
                      timeout=120)
    assert proc.returncode != 0
    assert 'model.npz holds a Darknet-19 classifier' in proc.stderr


def _write_jpeg(path, seed, size):
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.RandomState(seed).randint(0, 256, size=size + (3,)).astype(np.uint8)
    Image.fromarray(pixels).save(str(path), format='JPEG')


@pytest.mark.slow  # a training run
def test_imagenet_directory_layout_trains_and_skips_bad_files(tmp_path):
    """Non-square JPEGs in train/<wnid>/ and val/<wnid>/, one of them truncated; worker
    processes load the data, and the run stops mid-epoch, so the final evaluation is a new
    one after the trainer has shut its iterators down."""
    root = tmp_path / 'ILSVRC'
    wnids = ('n01440764', 'n01443537', 'n02102040')
    for k, wnid in enumerate(wnids):
        for j in range(3):
            _write_jpeg(root / 'train' / wnid / ('%d.JPEG' % j), 10 * k + j, (40 + 8 * j, 56))
        _write_jpeg(root / 'val' / wnid / 'val.JPEG', 100 + k, (60, 44))
    bad = root / 'train' / wnids[1] / '1.JPEG'
    bad.write_bytes(bad.read_bytes()[:200])
    out = tmp_path / 'run'
    proc = check(run_python([
        'scripts/train_darknet.py', '--dataset', 'imagenet', '--data-dir', str(root),
        '--on-bad-sample', 'skip', '--channels-scale', '1/8', '--batchsize', '4',
        '--iterations', '3', '--loaderjob', '1', '--log-interval', '1', '--no-progress',
        '--decode-images', '--out', str(out)], timeout=120))
    assert '9 samples checked, 8 kept, 1 dropped' in proc.stdout
    report = _json(out / 'bad_samples_train.json')
    assert report['counts'] == {'unreadable_image': 1} and str(bad) in report['problems'][0]
    config = _json(out / 'config.json')
    assert config['data']['dataset'] == 'imagenet' and config['class_names'] == list(wnids)
    assert config['channels_scale'] == 0.125 and config['preset']['n_train'] == 8
    metrics = _json(out / 'metrics.json')
    assert metrics['n_val'] == 3 and metrics['iterations'] == 3 and metrics['epochs'] == 1.5
    assert [e['epoch'] for e in _json(out / 'log') if 'validation/main/accuracy' in e] == [1]
    assert inspect_classifier_file(str(out / 'model.npz')).n_class == 3


@pytest.mark.slow  # two 2-rank training runs
def test_two_ranks_resume_continues_exactly(tmp_path):
    """4 updates + resume from rank 0's snapshot for 4 more == 8 uninterrupted updates."""
    full, resumed = tmp_path / 'full', tmp_path / 'resumed'
    args = ['scripts/train_darknet.py', '--n-train-images', '128', '--n-test-images', '16',
            '--iterations', '8', '--snapshot-interval', '4', '--loaderjob', '0',
            '--log-interval', '2', '--no-progress']
    check(run_mpi(2, args + ['--out', str(full)], timeout=120))
    check(run_mpi(2, args + ['--out', str(resumed), '--resume',
                             str(full / 'snapshot_iter_4')], timeout=120))
    with np.load(str(full / 'model.npz')) as a, np.load(str(resumed / 'model.npz')) as b:
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    log_full, log_resumed = _json(full / 'log'), _json(resumed / 'log')
    assert log_resumed[-1]['iteration'] == 8
    for key in ('main/loss', 'main/accuracy', 'lr', 'validation/main/accuracy'):
        assert log_resumed[-1][key] == log_full[-1][key], key
    assert _json(resumed / 'metrics.json')['top1'] == _json(full / 'metrics.json')['top1']


def test_missing_imagenet_directory_is_named():
    request = ClassificationData(
        dataset='imagenet', seed=0, n_class=0, on_bad_sample='error',
        data_dir='/nonexistent/ILSVRC', train_list=None, val_list=None, n_train_images=0,
        n_test_images=0, image_size=0, image_check='decode')
    with pytest.raises(FileNotFoundError, match='/nonexistent/ILSVRC/train'):
        load_data(request)
    with pytest.raises(ValueError, match='needs --data-dir'):
        load_data(dataclasses.replace(request, data_dir=None))


def test_top_k_accuracy_counts_the_true_class_among_the_k_best():
    y = np.array([[0.1, 0.5, 0.2, 0.9, 0.0, 0.3],    # true 2: rank 4
                  [0.9, 0.1, 0.2, 0.3, 0.4, 0.5],    # true 0: rank 1
                  [0.6, 0.5, 0.4, 0.3, 0.2, 0.1]],   # true 5: rank 6
                 dtype=np.float32)
    t = np.array([2, 0, 5], dtype=np.int32)
    assert top_k_accuracy(y, t, 1) == pytest.approx(1 / 3)
    assert top_k_accuracy(y, t, 3) == pytest.approx(1 / 3)
    assert top_k_accuracy(y, t, 4) == pytest.approx(2 / 3)
    assert top_k_accuracy(y, t, 5) == pytest.approx(2 / 3)
    assert top_k_accuracy(y, t, 6) == 1.0
    assert top_k_accuracy(y[:, :4], np.array([2, 0, 1], np.int32), 5) == 1.0


def test_classifier_chain_reports_loss_accuracy_and_top5():
    import chainer
    import chainer.links as L

    chain = ClassifierChain(L.Linear(3, 7))
    x = np.random.RandomState(0).rand(10, 3).astype(np.float32)
    t = np.arange(10, dtype=np.int32) % 7
    reporter = chainer.Reporter()
    reporter.add_observer('main', chain)
    observation = {}
    with reporter.scope(observation):
        loss = chain(x, t)
    assert set(observation) == {'main/loss', 'main/accuracy', 'main/top5'}
    assert all(isinstance(v, float) for v in observation.values())
    assert observation['main/loss'] == pytest.approx(float(loss.array))
    y = chain.y.array
    assert observation['main/accuracy'] == pytest.approx(float((y.argmax(1) == t).mean()))
    assert observation['main/top5'] == pytest.approx(top_k_accuracy(y, t, 5))


def _image(seed=0, size=32):
    return np.random.RandomState(seed).uniform(0, 255, (3, size, size)).astype(np.float32)


def test_augmentation_with_every_range_closed_is_the_identity():
    aug = DarknetAugmentation(32, min_crop=32, max_crop=32, angle=0, aspect=1, hue=0,
                              saturation=1, exposure=1, flip=False)
    img = _image()
    out, label = aug((img, np.int32(3)), np.random.RandomState(0))
    assert label == 3 and out.dtype == np.float32 and out.shape == (3, 32, 32)
    np.testing.assert_allclose(out, img, atol=1e-3)


def test_rotation_turns_about_the_image_centre():
    img = _image()
    out = rotate_scale_crop(img, 32, math.pi / 2, 1.0, 0, 0, 1.0)
    # Darknet's centre is (16, 16), so a quarter turn is numpy's rot90 moved down one row;
    # the first row comes from outside the image.
    expected = np.rot90(img, 1, axes=(1, 2))
    np.testing.assert_allclose(out[:, 1:], expected[:, :-1], atol=1e-3)
    assert np.abs(out[:, 0]).max() < 1e-3


def test_scaling_magnifies_the_centre():
    img = _image()
    out = rotate_scale_crop(img, 32, 0.0, 2.0, 0, 0, 1.0)
    # Output pixel 2j samples the input at 8 + j: the centre 16x16 blown up twice.
    np.testing.assert_allclose(out[:, ::2, ::2], img[:, 8:24, 8:24], atol=1e-3)


def test_augmentation_is_random_but_reproducible_and_in_range():
    aug = DarknetAugmentation(32)
    img = np.random.RandomState(1).uniform(0, 255, (3, 40, 56)).astype(np.float32)
    a, _ = aug((img, 0), np.random.RandomState([5, 7]))
    b, _ = aug((img, 0), np.random.RandomState([5, 7]))
    c, _ = aug((img, 0), np.random.RandomState([5, 8]))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (3, 32, 32) and not np.allclose(a, c)
    assert a.min() >= 0 and a.max() <= 255


def test_center_crop_takes_the_middle_of_the_shorter_side():
    img = np.zeros((3, 32, 64), np.float32)
    img[:, :, 16:48] = 200  # the middle square
    out, label = CenterCrop(32)((img, np.int32(1)))
    assert out.shape == (3, 32, 32) and label == 1
    np.testing.assert_allclose(out, 200)
