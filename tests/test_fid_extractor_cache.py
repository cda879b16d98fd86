"""The default FID extractor lives in the package's cache folder, trained there once (about
2 minutes on first use), never in a run's folder or the current directory's runs/."""
import os

import pytest

from chainer_yolo_dist.cyclegan import evaluation, features
from conftest import load_script, resolve_script


@pytest.fixture
def home(monkeypatch, tmp_path):
    for name in ('CHAINER_YOLO_DIST_CACHE', 'XDG_CACHE_HOME'):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    return tmp_path / 'home'


def test_the_cache_folder_follows_the_environment(home, monkeypatch, tmp_path):
    name = 'fid_extractor_default.npz'
    assert evaluation.extractor_path() == str(home / '.cache' / 'chainer_yolo_dist' / name)
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
    assert evaluation.extractor_path() == str(tmp_path / 'xdg' / 'chainer_yolo_dist' / name)
    monkeypatch.setenv('CHAINER_YOLO_DIST_CACHE', str(tmp_path / 'own'))
    assert evaluation.extractor_path() == str(tmp_path / 'own' / name)
    assert evaluation.extractor_path('given.npz') == 'given.npz'


def test_trained_once_into_the_cache_and_reused(home, monkeypatch, tmp_path):
    monkeypatch.setenv('CHAINER_YOLO_DIST_CACHE', str(tmp_path / 'cache'))
    monkeypatch.chdir(tmp_path)
    trained = []

    def train(path):  # stands in for the 2-minute training: records where it writes
        trained.append(path)
        with open(path, 'wb') as f:
            f.write(b'weights')

    monkeypatch.setattr(features, 'train_default_extractor', train)
    monkeypatch.setattr(features, 'build_default_extractor', lambda path: path)
    logged = []
    target = str(tmp_path / 'cache' / 'fid_extractor_default.npz')
    assert evaluation.default_extractor(None, logged.append) == target
    assert evaluation.default_extractor(None, logged.append) == target
    assert len(trained) == 1 and trained[0] != target  # written under a temporary name
    assert len(logged) == 1 and target in logged[0]
    assert sorted(os.listdir(tmp_path)) == ['cache']  # nothing in ./runs
    assert os.listdir(tmp_path / 'cache') == ['fid_extractor_default.npz']


def test_train_cyclegan_defaults_to_the_cache(home):
    assert load_script('train_cyclegan').parse_args([]).fid_extractor is None
    settings = resolve_script('cyclegan', []).settings
    assert settings.fid_extractor is None
