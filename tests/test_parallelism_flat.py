"""Flat parameter vectors and their shards (what the distributed modes send)."""
import chainer
import chainer.links as L
import numpy as np
import pytest

from chainer_yolo_dist.core.parallelism.flat import (FlatLayout, pack_grads, pack_params,
                                                     shard_bounds, unpack_grads, unpack_params)


class Net(chainer.Chain):
    def __init__(self):
        super().__init__()
        with self.init_scope():
            self.a = L.Linear(10, 20)   # W 200, b 20
            self.b = L.Linear(20, 5)    # W 100, b 5
            self.c = L.Linear(5, 3, nobias=True)  # W 15


def test_layout_is_sorted_by_name_and_covers_every_parameter():
    layout = FlatLayout.of(Net())
    assert layout.names == ['/a/W', '/a/b', '/b/W', '/b/b', '/c/W']
    assert layout.sizes == [200, 20, 100, 5, 15]
    assert layout.offsets == [0, 200, 220, 320, 325]
    assert layout.size == 340
    assert FlatLayout.from_tuple(layout.to_tuple()).offsets == layout.offsets


def test_pack_unpack_round_trip_and_gradient_accumulation():
    net, other = Net(), Net()
    flat = pack_params(net, np.empty(340, np.float32))
    unpack_params(other, flat)
    for (_, p), (_, q) in zip(sorted(net.namedparams()), sorted(other.namedparams())):
        np.testing.assert_array_equal(p.array, q.array)
    net.cleargrads()
    for _, p in net.namedparams():
        p.grad = np.ones_like(p.array)
    net.c.W.grad = None  # an unused parameter counts as a zero gradient
    g = pack_grads(net, np.empty(340, np.float32))
    g = pack_grads(net, g, accumulate=True)
    assert (g[:325] == 2).all() and (g[325:] == 0).all()
    unpack_grads(other, g)
    assert (other.c.W.grad == 0).all() and (other.a.W.grad == 2).all()


def test_uninitialised_parameters_are_refused():
    with pytest.raises(ValueError, match='not initialised'):
        FlatLayout.of(L.Linear(None, 3))


def test_shards_are_contiguous_balanced_and_cut_between_parameters():
    layout = FlatLayout.of(Net())
    assert shard_bounds(layout, 1) == [0, 340]
    # ideal cut at 170: the nearest parameter boundary is 200 (end of /a/W)
    assert shard_bounds(layout, 2) == [0, 200, 340]
    bounds = shard_bounds(layout, 5)
    assert bounds == [0, 200, 220, 320, 325, 340]  # one parameter each
    with pytest.raises(ValueError, match='6 shards'):
        shard_bounds(layout, 6)
