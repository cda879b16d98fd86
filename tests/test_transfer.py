"""Weight transfer from the Darknet classifiers into ChainerCV's YOLOv2 / YOLOv3."""
import chainer
import numpy as np
import pytest
from chainer.serializers import DictionarySerializer
from chainercv.links import Conv2DBNActiv
from chainercv.links import YOLOv2
from chainercv.links import YOLOv3

from chainer_yolo_dist.classification.darknet import Darknet19
from chainer_yolo_dist.classification.darknet import Darknet53
from chainer_yolo_dist.classification.darknet import darknet19_trunk
from chainer_yolo_dist.classification.darknet import darknet53_trunk
from chainer_yolo_dist.detection.transfer import copy_conv_bn_layers
from chainer_yolo_dist.detection.transfer import darknet53_trunk_layers
from chainer_yolo_dist.detection.transfer import transfer_darknet19_to_yolov2
from chainer_yolo_dist.detection.transfer import transfer_darknet53_to_yolov3

TRUNK_ATTRS = ('conv/W', 'bn/gamma', 'bn/beta', 'bn/avg_mean', 'bn/avg_var')


def snapshot(link):
    """Copies of every parameter and persistent, keyed like ``namedparams``."""
    serializer = DictionarySerializer()
    serializer.save(link)
    return {'/' + key: np.array(value) for key, value in serializer.target.items()}


def randomize_bn(model, seed):
    """Makes BN scale, shift and statistics differ from their defaults, so copies show."""
    rng = np.random.RandomState(seed)
    for link in model.links():
        if isinstance(link, chainer.links.BatchNormalization):
            for array in (link.gamma.array, link.beta.array, link.avg_mean, link.avg_var):
                array[...] = rng.uniform(0.5, 1.5, size=array.shape)


def materialize(detector):
    """Runs one tiny forward so ChainerCV's lazily created weights exist."""
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        detector(np.zeros((1, 3, 64, 64), np.float32))


def transferred(classifier, detector, transfer):
    before = snapshot(detector)
    names = transfer(classifier, detector)
    return {'classifier': snapshot(classifier), 'before': before,
            'after': snapshot(detector), 'names': names, 'detector': detector}


@pytest.fixture(scope='module')
def v2():
    np.random.seed(19)
    classifier = Darknet19()
    randomize_bn(classifier, 0)
    detector = YOLOv2(n_fg_class=20)
    materialize(detector)
    return transferred(classifier, detector, transfer_darknet19_to_yolov2)


@pytest.fixture(scope='module')
def v3():
    np.random.seed(53)
    classifier = Darknet53()
    randomize_bn(classifier, 1)
    detector = YOLOv3(n_fg_class=20)
    materialize(detector)
    return transferred(classifier, detector, transfer_darknet53_to_yolov3)


def trunk_names(layer_paths):
    return ['/extractor/%s/%s' % (path, attr) for path in layer_paths for attr in TRUNK_ATTRS]


def darknet53_layer_paths():
    paths = ['0']
    child = 1
    for n_block in (1, 2, 8, 8, 4):
        paths.append(str(child))
        child += 1
        for _ in range(n_block):
            paths += ['%d/0' % child, '%d/1' % child]
            child += 1
    return paths


@pytest.mark.parametrize('case, paths', [
    ('v2', [str(i) for i in range(18)]),
    ('v3', darknet53_layer_paths()),
])
def test_lists_exactly_the_trunk_conv_and_bn_arrays(case, paths, request):
    result = request.getfixturevalue(case)
    assert result['names'] == trunk_names(paths)
    assert len(result['names']) == 5 * (18 if case == 'v2' else 52)


@pytest.mark.parametrize('case', ['v2', 'v3'])
def test_every_copied_array_equals_its_source(case, request):
    result = request.getfixturevalue(case)
    for name in result['names']:
        # The classifier's trunk has the extractor's layout: only the prefix differs.
        source = result['classifier'][name.replace('/extractor/', '/trunk/', 1)]
        np.testing.assert_array_equal(result['after'][name], source, err_msg=name)
        assert not np.array_equal(result['before'][name], source), name


@pytest.mark.parametrize('case', ['v2', 'v3'])
def test_every_other_array_of_the_detector_is_unchanged(case, request):
    result = request.getfixturevalue(case)
    assert result['after'].keys() == result['before'].keys()
    untouched = set(result['before']) - set(result['names'])
    # The heads, the detection-only layers and BN counters must all be there.
    assert any(n.startswith('/subnet') for n in untouched)
    assert '/extractor/0/bn/N' in untouched
    for name in untouched:
        np.testing.assert_array_equal(result['after'][name], result['before'][name],
                                      err_msg=name)


def test_the_class_convolution_of_darknet19_is_not_copied(v2):
    # YOLO9000 drops Darknet-19's 19th layer; YOLOv2's 19th layer keeps its own init.
    assert '/extractor/18/conv/W' not in v2['names']
    assert v2['classifier']['/head/W'].shape != v2['after']['/extractor/18/conv/W'].shape


def test_detector_still_runs_after_transfer(v3):
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        locs, objs, confs = v3['detector'](np.zeros((1, 3, 64, 64), np.float32))
    assert confs.shape == (1, objs.shape[1], 20)


@pytest.mark.parametrize('classifier_cls, detector_cls, transfer, n_layers', [
    (Darknet19, YOLOv2, transfer_darknet19_to_yolov2, 18),
    (Darknet53, YOLOv3, transfer_darknet53_to_yolov3, 52),
])
def test_lazily_initialized_detector_gets_the_weights(classifier_cls, detector_cls, transfer,
                                                      n_layers):
    # ChainerCV creates its convolutions with in_channels=None; transfer must infer
    # their shapes and initialize them from the classifier.
    classifier = classifier_cls(n_class=10)
    detector = detector_cls(n_fg_class=3)
    assert detector.extractor[0].conv.W.array is None
    names = transfer(classifier, detector)
    source = snapshot(classifier)
    params = dict(detector.namedparams())
    weights = [n for n in names if n.endswith('conv/W')]
    assert len(weights) == n_layers
    for name in weights:
        np.testing.assert_array_equal(params[name].array,
                                      source[name.replace('/extractor/', '/trunk/', 1)])


def test_width_mismatch_raises_and_changes_nothing(v2):
    detector = v2['detector']
    before = snapshot(detector)
    with pytest.raises(ValueError) as error:
        transfer_darknet19_to_yolov2(Darknet19(channels_scale=1 / 2), detector)
    message = str(error.value)
    assert 'trunk layer 0' in message and '/extractor/0/conv/W' in message
    assert '(16, 3, 3, 3)' in message and '(32, 3, 3, 3)' in message
    assert 'channels_scale' in message
    after = snapshot(detector)
    for name in before:
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)


class SmallDetector(chainer.Chain):
    """A YOLO-style detector whose extractor starts with a scaled Darknet trunk."""

    def __init__(self, trunk, n_out):
        super().__init__()
        with self.init_scope():
            self.extractor = chainer.ChainList(*trunk)
            self.subnet = chainer.links.Convolution2D(None, n_out, 1)


def test_mismatch_in_the_last_layer_copies_none_of_the_earlier_ones():
    classifier = Darknet53(n_class=4, channels_scale=1 / 8)
    randomize_bn(classifier, 2)
    trunk = darknet53_trunk(1 / 8)
    detector = SmallDetector(trunk, 6)
    layers = darknet53_trunk_layers(detector.extractor)
    last = layers[-1]
    wrong = Conv2DBNActiv(last.conv.in_channels, last.conv.out_channels * 2, 3, pad=1)
    with detector.init_scope():
        detector.wrong = wrong
    before = snapshot(detector)
    with pytest.raises(ValueError, match=r'trunk layer 51 conv/W.*\(128, 64, 3, 3\).*'
                                         r'\(256, 64, 3, 3\)'):
        copy_conv_bn_layers(classifier, darknet53_trunk_layers(classifier),
                            detector, layers[:-1] + [wrong])
    after = snapshot(detector)
    for name in before:
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)


@pytest.mark.parametrize('classifier_cls, trunk_fn, transfer', [
    (Darknet19, darknet19_trunk, transfer_darknet19_to_yolov2),
    (Darknet53, darknet53_trunk, transfer_darknet53_to_yolov3),
])
def test_small_detector_built_from_the_scaled_trunk(classifier_cls, trunk_fn, transfer):
    classifier = classifier_cls(n_class=4, channels_scale=1 / 8)
    randomize_bn(classifier, 3)
    detector = SmallDetector(trunk_fn(1 / 8), 6)
    names = transfer(classifier, detector)
    source, after = snapshot(classifier), snapshot(detector)
    for name in names:
        np.testing.assert_array_equal(after[name],
                                      source[name.replace('/extractor/', '/trunk/', 1)])
    with pytest.raises(ValueError, match='channels_scale'):
        transfer(classifier_cls(n_class=4, channels_scale=1 / 4), detector)


def test_wrong_detector_family_is_rejected_by_layout():
    classifier = Darknet53(n_class=4, channels_scale=1 / 8)
    with pytest.raises(ValueError, match='Darknet-53 trunk.*22 children'):
        transfer_darknet53_to_yolov3(classifier, YOLOv2(n_fg_class=3))
    detector = SmallDetector(darknet19_trunk(1 / 8) + darknet19_trunk(1 / 8), 6)
    with pytest.raises(ValueError, match='child 2 .*ResidualBlock'):
        transfer_darknet53_to_yolov3(classifier, detector)
