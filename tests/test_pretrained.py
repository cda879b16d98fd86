"""``--pretrained``: a saved Darknet classifier file transferred into the paper detectors.

``transfer_pretrained(path, detector)`` rebuilds the classifier from the file alone and copies
its trunk (paper 000 sec. 2.2: Darknet-19 into YOLOv2; paper 001 sec. 2.3: Darknet-53 into
YOLOv3); ``scripts/train_yolo.py --pretrained PATH`` calls it.
"""
import json

import chainer
import numpy as np
import pytest
from chainer.serializers import DictionarySerializer
from chainercv.experimental.links import YOLOv2Tiny
from chainercv.links import YOLOv2, YOLOv3

from conftest import check, run_python

from chainer_yolo_dist.classification.darknet import Darknet19, Darknet53
from chainer_yolo_dist.detection.transfer import (inspect_classifier_file, transfer_pretrained)
from chainer_yolo_dist.detection.models import YOLOv3Small, build_model

N_DARKNET19_ARRAYS = 18 * 5  # conv W, BN gamma, beta, mean, variance per trunk layer
N_DARKNET53_ARRAYS = 52 * 5


def _randomize_bn(model, seed):
    """BN scale, shift and statistics away from their defaults, so that copies show."""
    rng = np.random.RandomState(seed)
    for link in model.links():
        if isinstance(link, chainer.links.BatchNormalization):
            for array in (link.gamma.array, link.beta.array, link.avg_mean, link.avg_var):
                array[...] = rng.uniform(0.5, 1.5, size=array.shape)


def _save(classifier, path, seed=0):
    _randomize_bn(classifier, seed)
    # Uncompressed: tens of MB of random floats would take seconds to deflate.
    chainer.serializers.save_npz(str(path), classifier, compression=False)
    return str(path)


def _arrays(link):
    serializer = DictionarySerializer()
    serializer.save(link)
    return {'/' + key: np.array(value) for key, value in serializer.target.items()}


@pytest.fixture(scope='module')
def darknet19_file(tmp_path_factory):
    """A full-width Darknet-19 as train_darknet.py saves it (n_class is free)."""
    np.random.seed(19)
    return _save(Darknet19(n_class=3), tmp_path_factory.mktemp('d19') / 'model.npz')


def _assert_copied(names, stored, detector, classifier_name):
    after = _arrays(detector)
    with np.load(stored) as f:
        for name in names:
            np.testing.assert_array_equal(after[name], f[classifier_name(name)], err_msg=name)


def test_darknet19_file_initialises_every_yolov2_trunk_array(darknet19_file):
    detector = build_model('yolov2', 4)
    names = transfer_pretrained(darknet19_file, detector)
    assert len(names) == len(set(names)) == N_DARKNET19_ARRAYS
    # Detector layer /extractor/i is classifier layer trunk/i for the 18 trunk layers.
    _assert_copied(names, darknet19_file, detector,
                   lambda name: name.replace('/extractor/', 'trunk/', 1))
    # The class convolution is not part of the trunk: nothing else was written.
    assert not any('/subnet' in n or n.startswith('/extractor/18') for n in names)


def test_darknet53_file_initialises_every_yolov3_trunk_array(tmp_path):
    np.random.seed(53)
    path = _save(Darknet53(n_class=2), tmp_path / 'model.npz', seed=1)
    detector = YOLOv3(n_fg_class=4)
    names = transfer_pretrained(path, detector)
    assert len(names) == len(set(names)) == N_DARKNET53_ARRAYS
    # Darknet53Extractor's first 29 children are the classifier's trunk, one to one.
    _assert_copied(names, path, detector, lambda name: name.replace('/extractor/', 'trunk/', 1))


@pytest.mark.slow  # a training run
def test_yolov2_run_starts_from_the_transferred_classifier(darknet19_file, tmp_path):
    out = tmp_path / 'yolov2'
    proc = check(run_python([
        'scripts/train_yolo.py', '--model', 'yolov2', '--insize', '64', '--multiscale', '64',
        '64', '1', '--iterations', '2', '--batchsize', '2', '--n-train-images', '8',
        '--n-test-images', '4', '--image-size', '64', '--eval-batchsize', '4',
        '--loaderjob', '0', '--log-interval', '1', '--snapshot-interval', '1000',
        '--no-progress', '--pretrained', darknet19_file, '--out', str(out)], timeout=240))
    assert 'transferred %d arrays from %s' % (N_DARKNET19_ARRAYS, darknet19_file) in proc.stdout
    log = json.loads((out / 'log').read_text())
    assert [entry['iteration'] for entry in log] == [1, 2]
    assert all(np.isfinite(entry['main/loss']) for entry in log)
    config = json.loads((out / 'config.json').read_text())
    assert config['pretrained'] == darknet19_file and config['preset']['model'] == 'yolov2'
    metrics = json.loads((out / 'metrics.json').read_text())
    assert metrics['iterations'] == 2 and 0 <= metrics['map'] <= 1


def test_darknet19_into_yolov3_is_refused(darknet19_file):
    with pytest.raises(ValueError, match='Darknet-19 classifier .* into YOLOv2'):
        transfer_pretrained(darknet19_file, YOLOv3(n_fg_class=4))


def test_darknet53_into_yolov2_is_refused(tmp_path):
    path = _save(Darknet53(n_class=2, channels_scale=1 / 8), tmp_path / 'model.npz')
    with pytest.raises(ValueError, match='holds a Darknet-53 classifier .* YOLOv3'):
        transfer_pretrained(path, YOLOv2(n_fg_class=4))


@pytest.mark.parametrize('detector, message', [
    (lambda: YOLOv3Small(n_fg_class=4), 'does not match the detector YOLOv3Small'),
    (lambda: YOLOv2Tiny(n_fg_class=4), 'transfer needs the paper models')],
    ids=['yolov3_small', 'yolov2_tiny'])
def test_detectors_without_a_darknet19_trunk_are_refused(darknet19_file, detector, message):
    # The small YOLOv3 takes the small Darknet's trunk only; YOLOv2-tiny takes none.
    with pytest.raises(ValueError, match=message):
        transfer_pretrained(darknet19_file, detector())


def test_narrow_classifier_into_the_paper_yolov2_names_the_width(tmp_path):
    path = _save(Darknet19(n_class=4, channels_scale=1 / 8), tmp_path / 'model.npz')
    detector = build_model('yolov2', 4)
    with pytest.raises(ValueError, match=r'channels_scale 0\.125.*--channels-scale 1'):
        transfer_pretrained(path, detector)
    # All-or-nothing: the detector's lazily created first convolution is still unset.
    assert detector.extractor[0].conv.W.array is None


def test_files_that_hold_no_classifier_are_named(tmp_path):
    not_npz = tmp_path / 'notes.txt'
    not_npz.write_text('not an npz')
    with pytest.raises(ValueError, match='notes.txt: cannot read'):
        inspect_classifier_file(str(not_npz))
    # What train_yolo.py saves: a detector, not a classifier.
    detector = YOLOv3Small(n_fg_class=2)
    with chainer.using_config('train', False):
        detector(np.zeros((1, 3, 64, 64), np.float32))  # creates the lazy weights
    detector_file = tmp_path / 'yolo.npz'
    chainer.serializers.save_npz(str(detector_file), detector)
    with pytest.raises(ValueError, match='yolo.npz: not a Darknet-19/Darknet-53/CNN11 classifier'):
        transfer_pretrained(str(detector_file), build_model('yolov2', 4))


@pytest.mark.slow  # two training runs
def test_the_cpu_classifier_to_detector_path(tmp_path):
    """The papers' path (classifier, then the detector from its trunk) on a CPU: the small
    Darknet demo classifier starts the small YOLOv3, as Darknet-19/53 start YOLOv2/v3."""
    classifier_run, detector_run = tmp_path / 'classifier', tmp_path / 'detector'
    check(run_python(['scripts/train_darknet.py', '--preset', 'synthetic_darknet_small_demo',
                      '--iterations', '4', '--n-train-images', '64', '--n-test-images', '16',
                      '--loaderjob', '0', '--out', str(classifier_run)], timeout=240))
    proc = check(run_python(['scripts/train_yolo.py', '--pretrained',
                             str(classifier_run / 'model.npz'), '--iterations', '1',
                             '--n-train-images', '16', '--n-test-images', '4', '--insize', '64',
                             '--no-multiscale', '--batchsize', '2', '--loaderjob', '0',
                             '--out', str(detector_run)], timeout=240))
    assert 'transferred 90 arrays from %s' % (classifier_run / 'model.npz') in proc.stdout


def test_the_small_trunk_is_copied_array_by_array():
    import chainer
    from chainer_yolo_dist.classification.darknet import SmallDarknet
    from chainer_yolo_dist.detection.models import YOLOv3Small
    from chainer_yolo_dist.detection.transfer import transfer_small_darknet
    np.random.seed(0)
    classifier = SmallDarknet(4)
    with chainer.using_config('train', False):
        classifier(np.zeros((1, 3, 32, 32), np.float32))
    bn = '/2/1/0/bn'  # the first batch normalisation of stage 2's residual block
    dict(classifier.trunk.namedlinks())[bn].avg_mean[...] = 0.25  # statistics go along too
    detector = YOLOv3Small(4)
    names = transfer_small_darknet(classifier, detector)
    assert len(names) == 90 and '/extractor/trunk%s/avg_mean' % bn in names
    for (name, a), (_, b) in zip(sorted(classifier.trunk.namedparams()),
                                 sorted(detector.extractor.trunk.namedparams())):
        np.testing.assert_array_equal(a.array, b.array, err_msg=name)
    assert (dict(detector.extractor.trunk.namedlinks())[bn].avg_mean == 0.25).all()
