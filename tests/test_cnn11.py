"""Paper 003's 11-convolution CNN (a reading: VGG-B's ten 3x3 convolutions with batch
normalisation + a 1x1 convolution to the classes) and ensemble evaluation."""
import chainer
import chainer.links as L
import numpy as np
import pytest

from chainer_yolo_dist.classification.ensemble import ensemble_probabilities, evaluate_ensemble
from chainer_yolo_dist.classification.cnn11 import CNN11


def convolutions(model):
    return [link for link in model.links() if isinstance(link, L.Convolution2D)]


@pytest.mark.parametrize('head', ['conv', 'linear'])
def test_eleven_convolutions_and_cpu_sized_widths(head):
    model = CNN11(10, channels_scale=1 / 8, head=head)
    convs = convolutions(model)
    assert len(convs) == model.n_conv == 11
    widths = [c.out_channels for c in model.trunk.links() if isinstance(c, L.Convolution2D)]
    expected = [8, 8, 16, 16, 32, 32, 64, 64, 64, 64]
    assert widths == (expected if head == 'conv' else expected + [64])
    assert all(c.W.shape[2:] == (3, 3) for c in convs if c is not getattr(model, 'head'))
    x = np.random.RandomState(0).uniform(0, 1, (2, 3, 64, 64)).astype(np.float32)
    y = model(x)
    assert y.shape == (2, 10)
    p = model.predict(x)
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-5)


def test_full_width_parameter_count():
    # ten 3x3 convolutions without bias (3-64-64-128-128-256-256-512-512-512-512): 9,402,048;
    # their batch normalisations' gamma and beta: 5,888; the 1x1 to 1000 classes with bias:
    # 513,000
    model = CNN11(1000)
    assert sum(p.size for p in model.params()) == 9402048 + 5888 + 513000


def test_bad_inputs_are_refused_clearly():
    model = CNN11(4, channels_scale=1 / 8)
    with pytest.raises(ValueError, match='multiples of 32'):
        model(np.zeros((1, 3, 40, 40), np.float32))
    with pytest.raises(ValueError, match=r'\(N, 3, S, S\)'):
        model(np.zeros((1, 1, 32, 32), np.float32))
    with pytest.raises(ValueError, match='channels_scale'):
        CNN11(4, channels_scale=1 / 3)
    with pytest.raises(ValueError, match='head'):
        CNN11(4, head='fc')


class Table(object):
    """A stand-in classifier: fixed probabilities per example index (x is the index)."""

    def __init__(self, probs):
        self.probs = np.asarray(probs, np.float64)

    def predict(self, x):
        return self.probs[x]


def index_converter(batch):
    return (np.array([e[0] for e in batch]), np.array([e[1] for e in batch], np.int32))


def test_ensemble_averages_softmax_and_scores_top1_top5():
    # 6 classes, 2 examples of classes 0 and 5. Member A ranks class 1 first on example 0,
    # member B class 2; both give class 0 their second-highest probability, so the mean
    # ranks class 0 first. On example 1 both members rank class 5 last (outside the top 5),
    # and so does the mean.
    a = [[0.40, 0.45, 0.05, 0.04, 0.03, 0.03], [0.2, 0.2, 0.2, 0.2, 0.15, 0.05]]
    b = [[0.40, 0.05, 0.45, 0.04, 0.03, 0.03], [0.2, 0.2, 0.2, 0.2, 0.15, 0.05]]
    dataset = [(0, 0), (1, 5)]
    result = evaluate_ensemble([Table(a), Table(b)], dataset, batchsize=1,
                               converter=index_converter)
    assert result['n'] == 2
    assert result['members'] == [{'top1': 0.0, 'top5': 0.5}, {'top1': 0.0, 'top5': 0.5}]
    assert result['top1'] == 0.5 and result['top5'] == 0.5
    np.testing.assert_allclose(ensemble_probabilities([Table(a), Table(b)], np.array([0])),
                               [[0.40, 0.25, 0.25, 0.04, 0.03, 0.03]])


def test_ensemble_of_real_networks_is_the_mean_of_their_predictions():
    chainer.global_config.dtype = np.float32
    np.random.seed(0)
    m1, m2 = CNN11(5, channels_scale=1 / 16), CNN11(5, channels_scale=1 / 16)
    x = np.random.RandomState(1).uniform(0, 1, (3, 3, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(ensemble_probabilities([m1, m2], x),
                               (m1.predict(x) + m2.predict(x)) / 2, rtol=1e-6)
    np.testing.assert_allclose(ensemble_probabilities([m1], x), m1.predict(x))
    assert not np.allclose(m1.predict(x), m2.predict(x))  # two different members
    dataset = [(x[i] * 255, i % 5) for i in range(3)]
    result = evaluate_ensemble([m1, m2], dataset, batchsize=2)
    assert result['n'] == 3 and 0 <= result['top1'] <= result['top5'] <= 1
    with pytest.raises(ValueError, match='at least one'):
        ensemble_probabilities([], x)


@pytest.mark.parametrize('head', ['conv', 'linear'])
def test_saved_cnn11_is_recognised_and_reloads_equal(tmp_path, head):
    # eval_darknet.py's ensembles of paper 003's network read their members through this.
    import chainer
    from chainer_yolo_dist.classification.model_files import (inspect_classifier_file,
                                                              load_classifier)
    net = CNN11(n_class=5, channels_scale=0.125, head=head)
    x = np.random.RandomState(0).rand(2, 3, 32, 32).astype(np.float32)
    with chainer.using_config('train', False):
        expected = net(x).array
    path = str(tmp_path / 'model.npz')
    chainer.serializers.save_npz(path, net)
    info = inspect_classifier_file(path)
    assert (info.kind, info.n_class, info.channels_scale, info.head) == ('cnn11', 5, 0.125, head)
    loaded, _ = load_classifier(path)
    assert isinstance(loaded, CNN11) and loaded.head_kind == head
    with chainer.using_config('train', False):
        np.testing.assert_array_equal(loaded(x).array, expected)
    other = CNN11(n_class=5, channels_scale=0.125, head='linear' if head == 'conv' else 'conv')
    with pytest.raises(ValueError, match='cannot be loaded into a CNN11'):
        load_classifier(path, other)
