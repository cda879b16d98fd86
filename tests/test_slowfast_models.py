"""Every parameter is drawn on the host, from the seeded generator, before the move to a GPU."""
import types

import numpy as np
import pytest

import chainer
import chainer.links as L

from chainer_yolo_dist.slowfast import models, recipe

BUILD = models.build_detector  # before any test replaces it


@pytest.mark.parametrize('name', sorted(models.MODELS))
def test_every_detector_has_all_its_parameters_at_construction(name):
    detector = models.build_detector(name, 80)
    assert models.uninitialised_parameters(detector) == []
    assert models.materialise_parameters(detector) == []  # nothing to do, no forward


def _lazy_detector(seed):
    """The narrow detector with its classifier shaped at the first forward (``in_size=None``)."""
    np.random.seed(seed)
    detector = BUILD('slowfast_narrow', 5)
    del detector.head.fc
    with detector.head.init_scope():
        detector.head.fc = L.Linear(None, 5, initialW=chainer.initializers.Normal(0.01))
    return detector


def test_a_lazy_parameter_is_created_on_the_host_from_the_seeded_generator():
    a, b = _lazy_detector(4), _lazy_detector(4)
    assert models.uninitialised_parameters(a) == ['/head/fc/W']
    norms = [link for link in a.links() if isinstance(link, L.BatchNormalization)]
    state = [(n.avg_mean.copy(), n.avg_var.copy()) for n in norms]
    np.random.seed(9)
    assert models.materialise_parameters(a) == ['/head/fc/W']
    np.random.seed(9)
    models.materialise_parameters(b)
    assert isinstance(a.head.fc.W.array, np.ndarray) and a.head.fc.W.shape == (5, 8 * 32 + 32)
    assert np.array_equal(a.head.fc.W.array, b.head.fc.W.array)  # the seeded host draw
    for n, (mean, var) in zip(norms, state):  # test mode: batch statistics untouched
        assert np.array_equal(n.avg_mean, mean) and np.array_equal(n.avg_var, var)


def test_the_recipe_moves_a_detector_without_missing_parameters(monkeypatch):
    """``train_slowfast`` up to ``run.to_device``: nothing there is still without an array, even
    for a detector with a lazily shaped layer."""
    seen = {}

    class Moved(Exception):
        pass

    def to_device(chain, settings):
        seen['missing'] = models.uninitialised_parameters(chain)
        seen['weight'] = chain.detector.head.fc.W.array.copy()
        raise Moved

    monkeypatch.setattr(recipe.run, 'to_device', to_device)
    monkeypatch.setattr(recipe.models, 'build_detector', lambda *args: _lazy_detector(0))
    preset = types.SimpleNamespace(model='slowfast_narrow', n_class=5, pretrained=None)
    settings = types.SimpleNamespace(preset=preset, seed=3, dropout=None, pretrained=None)
    with pytest.raises(Moved):
        recipe.train(settings, types.SimpleNamespace(rank=0), None, log=lambda m: None)
    assert seen['missing'] == []
    assert isinstance(seen['weight'], np.ndarray) and seen['weight'].shape == (5, 288)
