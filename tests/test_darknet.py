"""Darknet-19 and Darknet-53 classifiers: layout, shapes, sizes, and that they learn."""
import os
import re

import chainer
import chainer.functions as F
import chainer.links as L
import numpy as np
import pytest

from chainer_yolo_dist.classification.darknet import Darknet19
from chainer_yolo_dist.classification.darknet import Darknet53

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                   'docs', 'darknet.md')

# YOLO9000 Table 6, transcribed: (filters, size) per convolution, 'M' = 2x2/2 maxpool.
DARKNET19_TABLE = [
    (32, 3), 'M', (64, 3), 'M',
    (128, 3), (64, 1), (128, 3), 'M',
    (256, 3), (128, 1), (256, 3), 'M',
    (512, 3), (256, 1), (512, 3), (256, 1), (512, 3), 'M',
    (1024, 3), (512, 1), (1024, 3), (512, 1), (1024, 3),
    (1000, 1),
]


def darknet53_table():
    """Paper 001 Fig. 1, transcribed: (filters, size, stride) per convolution."""
    rows = [(32, 3, 1)]
    for filters, repeat in ((64, 1), (128, 2), (256, 8), (512, 8), (1024, 4)):
        rows.append((filters, 3, 2))
        rows += [(filters // 2, 1, 1), (filters, 3, 1)] * repeat
    return rows


def trunk_convs(model):
    """Trunk convolutions in the order they are applied."""
    return [link for link in model.trunk.links() if isinstance(link, L.Convolution2D)]


def conv_links(model):
    """All convolutions in the order they are applied (trunk, then a conv head)."""
    head = [model.head] if isinstance(model.head, L.Convolution2D) else []
    return trunk_convs(model) + head


def table_param_count(convs, bn_convs, fc=None):
    """Weights plus BN gamma/beta of each conv, plus bias of the non-BN ones."""
    n = 0
    for i, (cin, cout, k) in enumerate(convs):
        n += k * k * cin * cout + (2 * cout if i < bn_convs else cout)
    if fc is not None:
        n += fc[0] * fc[1] + fc[1]
    return n


def doc_count(name):
    with open(DOC) as f:
        text = f.read()
    match = re.search(r'\|\s*%s\s*\|\s*([\d,]+)\s*\|' % name, text)
    assert match, 'docs/darknet.md has no parameter-count row for %s' % name
    return int(match.group(1).replace(',', ''))


@pytest.fixture(scope='module')
def darknet19():
    return Darknet19()


@pytest.fixture(scope='module')
def darknet53():
    return Darknet53()


def infer(model, x):
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        return model(x)


def images(size, n=1, seed=0):
    return np.random.RandomState(seed).rand(n, 3, size, size).astype(np.float32)


def test_darknet19_follows_yolo9000_table6(darknet19):
    convs = conv_links(darknet19)
    expected = [row for row in DARKNET19_TABLE if row != 'M']
    assert [(c.out_channels, c.ksize) for c in convs] == expected
    assert len(convs) == 19
    # All but the class convolution are conv+BN without bias; the last has a bias.
    assert all(c.b is None for c in convs[:18]) and convs[18].b is not None
    pools_after = [sum(1 for r in DARKNET19_TABLE[:i] if r != 'M') - 1
                   for i, r in enumerate(DARKNET19_TABLE) if r == 'M']
    assert pools_after == [0, 1, 4, 7, 12]
    # Strides of the feature maps show where the 5 poolings are.
    maps = darknet19.features(images(64))
    assert [m.shape[2] for m in maps] == [64, 32, 16, 8, 4, 2]


def test_darknet53_follows_paper_fig1(darknet53):
    convs = conv_links(darknet53)
    assert [(c.out_channels, c.ksize, c.stride[0]) for c in convs] == darknet53_table()
    assert len(convs) == 52
    assert isinstance(darknet53.head, L.Linear) and darknet53.head.W.shape == (1000, 1024)


@pytest.mark.parametrize('size', [224, 256, 448])
@pytest.mark.parametrize('name', ['darknet19', 'darknet53'])
def test_logits_shape_at_paper_sizes(name, size, request):
    model = request.getfixturevalue(name)
    y = infer(model, images(size))
    assert y.shape == (1, 1000) and y.dtype == np.float32
    assert np.isfinite(y.array).all()


def test_darknet53_feature_sizes_at_256(darknet53):
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        maps = darknet53.features(images(256))
    assert [m.shape[2:] for m in maps] == [(s, s) for s in (256, 128, 64, 32, 16, 8)]
    assert [m.shape[1] for m in maps] == [32, 64, 128, 256, 512, 1024]


def test_parameter_counts_match_the_tables_and_the_doc(darknet19, darknet53):
    rows19 = [r for r in DARKNET19_TABLE if r != 'M']
    convs19 = [(cin, cout, k) for cin, (cout, k) in
               zip([3] + [c for c, _ in rows19[:-1]], rows19)]
    assert darknet19.count_params() == table_param_count(convs19, bn_convs=18)
    rows53 = darknet53_table()
    convs53 = []
    cin = 3
    for cout, k, _ in rows53:
        convs53.append((cin, cout, k))
        cin = cout
    assert darknet53.count_params() == table_param_count(convs53, bn_convs=52,
                                                         fc=(1024, 1000))
    assert doc_count('Darknet19') == darknet19.count_params()
    assert doc_count('Darknet53') == darknet53.count_params()


@pytest.mark.parametrize('cls', [Darknet19, Darknet53])
def test_channels_scale_divides_every_width(cls):
    full = [(c.out_channels, c.ksize) for c in trunk_convs(cls(n_class=7))]
    small = cls(n_class=7, channels_scale=1 / 8)
    assert [(c.out_channels, c.ksize) for c in trunk_convs(small)] == \
        [(out // 8, k) for out, k in full]
    assert infer(small, images(64, n=2)).shape == (2, 7)


@pytest.mark.parametrize('scale', [0, -1, 3 / 64, 1 / 64])
def test_channels_scale_must_give_whole_widths(scale):
    with pytest.raises(ValueError, match='channels_scale'):
        Darknet53(channels_scale=scale)


@pytest.mark.parametrize('shape, message', [
    ((1, 3, 100, 96), 'multiples of 32'),
    ((1, 1, 64, 64), r'\(N, 3, H, W\)'),
    ((3, 64, 64), r'\(N, 3, H, W\)'),
])
def test_bad_input_is_rejected_clearly(shape, message):
    model = Darknet19(n_class=3, channels_scale=1 / 32)
    with pytest.raises(ValueError, match=message):
        model(np.zeros(shape, np.float32))


def test_predict_gives_probabilities_without_touching_bn_statistics():
    model = Darknet53(n_class=5, channels_scale=1 / 16)
    before = model.trunk[0].bn.avg_mean.copy()
    prob = model.predict(images(64, n=3))
    assert prob.shape == (3, 5)
    np.testing.assert_allclose(prob.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(model.trunk[0].bn.avg_mean, before)


@pytest.mark.parametrize('cls', [Darknet19, Darknet53])
def test_small_classifier_fits_a_random_batch(cls):
    np.random.seed(0)  # Chainer's initializers draw from NumPy's global generator.
    model = cls(n_class=4, channels_scale=1 / 8)
    optimizer = chainer.optimizers.MomentumSGD(lr=0.05)
    optimizer.setup(model)
    x = images(64, n=8, seed=1)
    t = np.random.RandomState(2).randint(0, 4, size=8).astype(np.int32)
    losses = []
    # 30 steps: the stacks' summation orders differ in the last bits (NumPy 2), which moves
    # the trajectory; every stack fits the batch well within 30.
    for _ in range(30):
        loss = F.softmax_cross_entropy(model(x), t)
        model.cleargrads()
        loss.backward()
        optimizer.update()
        losses.append(float(loss.array))
    assert np.mean(losses[-3:]) < 0.25 * losses[0], losses
