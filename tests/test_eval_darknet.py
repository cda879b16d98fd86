"""scripts/eval_darknet.py: trained classifiers scored alone and as an ensemble (the mean of
their softmax; paper 003's 13.89% is an ensemble's top-5 error).

Two tiny classifiers are trained for real on the synthetic crops with 6 classes (so top-5 is
not trivially 1) and scored on their run's validation set.
"""
import json

import numpy as np
import pytest

from conftest import check, run_python

from chainer_yolo_dist.classification.chain import converter
from chainer_yolo_dist.classification.models import build_classifier
from chainer_yolo_dist.classification.model_files import load_classifier
from chainer_yolo_dist.classification.transforms import CenterCrop
from chainer_yolo_dist.datasets import SyntheticShapesClassificationDataset

TRAIN = ['scripts/train_darknet.py', '--n-class', '6', '--n-train-images', '192',
         '--n-test-images', '60', '--eval-interval', '0', '--loaderjob', '0', '--no-progress']


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """Two runs on the same data, different in rate and length (different members)."""
    root = tmp_path_factory.mktemp('members')
    outs = []
    for name, extra in (('a', ['--iterations', '12']),
                        ('b', ['--iterations', '18', '--eta', '0.1'])):
        out = root / name
        check(run_python(TRAIN + extra + ['--out', str(out)], timeout=120))
        outs.append(out)
    return outs


def _evaluate(args, tmp_path):
    out = tmp_path / 'result.json'
    proc = run_python(['scripts/eval_darknet.py'] + [str(a) for a in args]
                      + ['--out', str(out)], timeout=120)
    return proc, (json.loads(out.read_text()) if proc.returncode == 0 else None)


@pytest.mark.slow  # two training runs (the runs fixture)
def test_members_score_as_their_runs_validated_them(runs, tmp_path):
    proc, result = _evaluate([r / 'model.npz' for r in runs], tmp_path)
    check(proc)
    for member, run in zip(result['members'], runs):
        metrics = json.loads((run / 'metrics.json').read_text())
        assert member['top1'] == pytest.approx(metrics['top1'], abs=1e-6)
        assert member['top5'] == pytest.approx(metrics['top5'], abs=1e-6)
    assert result['n'] == 60 and result['insize'] == 32
    assert 'model 2: %s' % (runs[1] / 'model.npz') in proc.stdout
    assert 'ensemble of 2 (mean of the softmax)' in proc.stdout
    # Paper 003's 13.89% is a test-set figure; these scores are not: the output says so.
    assert 'on the ILSVRC2012 test set' in proc.stdout and 'not that test set' in proc.stdout


@pytest.mark.slow  # the runs fixture
def test_ensemble_ranks_classes_by_the_mean_softmax(runs, tmp_path):
    _, result = _evaluate([r / 'model.npz' for r in runs], tmp_path)
    test = SyntheticShapesClassificationDataset('test', 60, size=32, n_class=6, seed=0)
    x, t = converter([CenterCrop(32)(test[i]) for i in range(len(test))])
    probs = np.mean([load_classifier(str(r / 'model.npz'))[0].predict(x) for r in runs],
                    axis=0)
    order = np.argsort(-probs, axis=1)
    assert result['top1'] == pytest.approx(float((order[:, 0] == t).mean()), abs=1e-6)
    assert result['top5'] == pytest.approx(float((order[:, :5] == t[:, None]).any(1).mean()),
                                           abs=1e-6)


@pytest.mark.slow  # the runs fixture
def test_one_model_twice_is_that_model(runs, tmp_path):
    _, result = _evaluate([runs[0] / 'model.npz'] * 2, tmp_path)
    assert result['top1'] == result['members'][0]['top1']
    assert result['top5'] == result['members'][0]['top5']


def _error(proc):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), proc.stderr
    return lines[0]


@pytest.mark.slow  # the runs fixture
def test_bad_input_is_one_line_naming_the_problem(runs, tmp_path):
    import chainer
    three = tmp_path / 'three_classes.npz'
    chainer.serializers.save_npz(str(three), build_classifier('darknet19', 3, 1 / 8, seed=0))
    model = runs[0] / 'model.npz'
    line = _error(_evaluate([model, tmp_path / 'missing.npz'], tmp_path)[0])
    assert 'missing.npz: no such file' in line
    line = _error(_evaluate([model, three], tmp_path)[0])
    assert 'three_classes.npz has 3 classes but %s has 6' % model in line
    # The run's data has 6 classes; a 3-class model cannot be scored on it.
    line = _error(_evaluate([three, '--config', runs[0] / 'config.json'], tmp_path)[0])
    assert 'the models have 3 classes but the synthetic classification test split' in line
    # Without a config.json nothing says which data.
    line = _error(_evaluate([three], tmp_path)[0])
    assert 'give --synthetic or --data-dir' in line
    line = _error(_evaluate([model, '--insize', '40'], tmp_path)[0])
    assert 'multiple of 32' in line


def test_synthetic_option_scores_a_bare_model_file(tmp_path):
    """A file without its run: --synthetic with the model's own classes."""
    import chainer
    path = tmp_path / 'bare.npz'
    chainer.serializers.save_npz(str(path), build_classifier('darknet19', 3, 1 / 8, seed=0))
    proc, result = _evaluate([path, '--synthetic', '--n-test-images', '10'], tmp_path)
    check(proc)
    assert result['n'] == 10 and len(result['members']) == 1
    assert 0 <= result['top1'] <= result['top5'] == 1.0  # 3 classes: always in the top 5
