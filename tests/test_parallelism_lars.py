"""LARS (``GradientLARS``) or weight decay, never both, on a hand-computed case.

One parameter w = (3, 4) (norm 5) with gradient g = (0.6, 0.8) (norm 1), weight decay 0.1,
lr 0.5, no momentum. GradientLARS: rate = ||w|| / (eps + ||g|| + wd ||w||) = 5 / 1.5 = 10/3,
g' = rate (g + wd w) = 10/3 (0.9, 1.2) = (3, 4), so w' = w - 0.5 g' = (1.5, 2).
Plain weight decay: w' = w - 0.5 (g + 0.1 w) = (2.55, 3.4).
Below the threshold (||w|| = 0.005 < 0.01) LARS leaves the rate at 1: plain weight decay.
"""
import chainer
import numpy as np
import pytest

from chainer_yolo_dist.core.optimizers import add_regularization, build_optimizer, hook_names


class OneParam(chainer.Link):
    def __init__(self, w):
        super().__init__()
        with self.init_scope():
            self.w = chainer.Parameter(np.array(w, np.float64))


def step(w, g, lars, weight_decay=0.1):
    link = OneParam(w)
    optimizer = build_optimizer(link, lr=0.5, momentum=0.0, weight_decay=weight_decay,
                                lars=lars)
    link.w.grad = np.array(g, np.float64)
    optimizer.update()
    return link.w.array, optimizer


def test_lars_scales_the_decayed_gradient_by_the_norm_ratio():
    w, optimizer = step([3.0, 4.0], [0.6, 0.8], lars=True)
    np.testing.assert_allclose(w, [1.5, 2.0], rtol=1e-8)
    assert set(hook_names(optimizer)) == {'GradientLARS'}  # the decay is LARS's own


def test_weight_decay_without_lars():
    w, optimizer = step([3.0, 4.0], [0.6, 0.8], lars=False)
    np.testing.assert_allclose(w, [2.55, 3.4], rtol=1e-12)
    assert set(hook_names(optimizer)) == {'WeightDecay'}


def test_lars_leaves_small_weights_at_rate_1():
    w, _ = step([0.003, 0.004], [0.6, 0.8], lars=True)
    np.testing.assert_allclose(w, [0.003 - 0.5 * (0.6 + 0.0003), 0.004 - 0.5 * (0.8 + 0.0004)],
                               rtol=1e-12)


def test_weight_decay_is_never_added_twice():
    link = OneParam([3.0, 4.0])
    optimizer = build_optimizer(link, lr=0.5, weight_decay=0.1)
    with pytest.raises(ValueError, match='twice'):
        add_regularization(optimizer, 0.1, lars=True)


def test_no_decay_and_no_lars_adds_nothing():
    _, optimizer = step([3.0, 4.0], [0.6, 0.8], lars=False, weight_decay=0.0)
    assert hook_names(optimizer) == []
