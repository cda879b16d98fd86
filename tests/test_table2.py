"""Paper 002 Table 2's columns: in every detection evaluation, eval_yolo.py's print-out, and
compare_map.py beside the published row; the person-detector and CycleGAN presets."""
import json
import os
import re
import warnings

import numpy as np
import pytest

from chainer_yolo_dist.analysis import compare, runs
from chainer_yolo_dist.core import presets
from chainer_yolo_dist.detection.evaluation import evaluate_detection
from conftest import check, run_python
from test_compare import make_run


class _Oracle(object):
    """Predicts each image's ground truth (score 0.9) plus one box far from everything
    (score ``stray``): every true box found, one false positive per image above 0.25 only."""

    def __init__(self, dataset, stray):
        self.boxes = {id(img): (bbox, label) for img, bbox, label in dataset}
        self.stray = stray

    def predict(self, imgs):
        out = ([], [], [])
        for img in imgs:
            bbox, label = self.boxes[id(img)]
            out[0].append(np.concatenate([bbox, [[0, 0, 1, 1]]]).astype(np.float32))
            out[1].append(np.concatenate([label, [0]]).astype(np.int32))
            out[2].append(np.array([0.9] * len(label) + [self.stray], np.float32))
        return out


def _dataset():
    rng = np.random.RandomState(0)
    data = []
    for n in (1, 2, 3):
        y, x = rng.uniform(10, 50, (2, n))
        bbox = np.stack([y, x, y + 20, x + 20], axis=1).astype(np.float32)
        data.append((np.zeros((3, 80, 80), np.float32), bbox, np.zeros(n, np.int32)))
    return data


@pytest.mark.parametrize('stray, fp', [(0.3, 3), (0.2, 0)])
def test_counts_at_the_score_threshold_beside_the_map(stray, fp):
    data = _dataset()
    result = evaluate_detection(_Oracle(data, stray), data, batchsize=2)
    c = result['counts']
    assert (c['tp'], c['fp'], c['fn']) == (6, fp, 0)
    assert c['precision'] == pytest.approx(6 / (6 + fp)) and c['recall'] == 1.0
    assert c['score_thresh'] == 0.25 and c['iou_thresh'] == 0.5
    assert result['map'] == pytest.approx(1.0)
    json.dumps(result)  # metrics.json can hold it


def test_a_class_without_ground_truth_gives_a_null_ap_and_no_warning():
    """After a short run every class may lack ground truth in the evaluated images: its AP is
    NaN by definition (null in metrics.json, with the reason), and ChainerCV's 0 / 0 is no
    RuntimeWarning in the run's output."""
    data = [(img, bbox, label, np.ones(len(label), bool)) for img, bbox, label in _dataset()]
    with warnings.catch_warnings():
        warnings.simplefilter('error', RuntimeWarning)
        result = evaluate_detection(_Oracle([d[:3] for d in data], 0.3), data, batchsize=2,
                                    class_names=['disc'])
    assert result['ap'] == {'disc': None} and 'no ground-truth box' in result['ap_null']


@pytest.mark.slow  # 40 test images through a detector
def test_eval_yolo_prints_table2_columns_for_a_saved_detector(tmp_path):
    script = ('import chainer, numpy; numpy.random.seed(0); '
              'from chainer_yolo_dist.detection.models import build_model; '
              'm = build_model("yolov3_small", 2); '
              'm(numpy.zeros((1, 3, 64, 64), numpy.float32)); '
              'chainer.serializers.save_npz(%r, m)' % str(tmp_path / 'model.npz'))
    check(run_python(['-c', script], timeout=60))
    # the run's config.json, as train_yolo.py writes it, says what to evaluate on
    json.dump({'preset': {'model': 'yolov3_small', 'insize': 64},
               'data': {'dataset': 'synthetic', 'n_class': 2, 'n_test_images': 40}},
              open(str(tmp_path / 'config.json'), 'w'))
    proc = check(run_python(
        ['scripts/eval_yolo.py', str(tmp_path / 'model.npz'), '--score-thresh', '0.0',
         '--out', str(tmp_path / 'eval.json')], timeout=120))
    assert 'Table 2 columns (score >= 0, IoU 0.5):' in proc.stdout
    assert re.search(r'TP +FP +FN +precision +recall +F1 +mAP@0.5', proc.stdout)
    result = json.load(open(str(tmp_path / 'eval.json')))
    c = result['counts']
    from chainer_yolo_dist.datasets.synthetic import SyntheticShapesDataset
    test = SyntheticShapesDataset('test', 40, n_class=2, size=128, seed=0)
    n_boxes = sum(len(test[i][1]) for i in range(len(test)))
    assert c['tp'] + c['fn'] == n_boxes  # every ground-truth box is found or missed
    row = [line for line in proc.stdout.splitlines() if line.endswith('%')][-1].split()
    assert [int(v) for v in row[:3]] == [c['tp'], c['fp'], c['fn']]


def test_compare_puts_a_person_detector_beside_its_table2_row(tmp_path):
    counts = {'tp': 10, 'fp': 5, 'fn': 20, 'precision': 2 / 3., 'recall': 1 / 3.,
              'f1': 0.44, 'score_thresh': 0.25, 'iou_thresh': 0.5}
    path = make_run(tmp_path, 'person', 1, preset='yolov3_person_bdd_2019',
                    metrics={'map': 0.30, 'counts': counts})
    config = json.load(open(os.path.join(path, 'config.json')))
    config['data'] = {'train_split': 'c'}
    json.dump(config, open(os.path.join(path, 'config.json'), 'w'))
    rows = compare.table2_rows([runs.load_run(path)])
    assert rows[0]['source'] == 'paper 002 Table 2 (c)'
    assert (rows[0]['tp'], rows[0]['fp'], rows[0]['fn'], rows[0]['map_percent']) == \
        (4813, 4560, 5960, 41.39)
    assert rows[1]['tp'] == 10 and rows[1]['map_percent'] == pytest.approx(30.0)
    assert rows[1]['description'] == 'score >= 0.25, IoU 0.5'
    proc = check(run_python(['scripts/compare_map.py', path, '--table2-row', 'a'], timeout=60))
    assert 'paper 002 Table 2 (a)' in proc.stdout and '| 3930 | 2920 | 6843 |' in proc.stdout
    with pytest.raises(ValueError, match='Table 2 has rows'):
        compare.table2_row_id(runs.load_run(path), 'z')


CITE_002 = r'paper 00[012] (sec\.|appendix|title|Table)|unused by|^the two domains|nothing ' \
    r'transferred|no batch normalisation'


@pytest.mark.parametrize('name', ['cyclegan_synthia2bdd_2019', 'yolov3_person_bdd_2019',
                                  'cyclegan_demo', 'yolov3_person_demo'])
def test_every_paper_002_preset_key_cites_its_source_or_says_why_not(name):
    with open(presets.preset_path(name), encoding='utf-8') as f:
        lines = [line for line in f if re.match(r'[a-z_]+\s*=', line)]
    assert len(lines) == len(presets.read_file(presets.preset_path(name)))
    for line in lines:
        comment = line.split('#', 1)[1].strip() if '#' in line else ''
        assert re.search(CITE_002, comment) or comment.startswith('demo: '), line


def test_the_person_preset_stops_after_5000_iterations():
    from chainer_yolo_dist.detection.settings import DetectionSettings
    p = presets.load('yolov3_person_bdd_2019', 1)
    assert (p.max_iterations, p.batchsize_per_gpu, p.insize, p.n_class) == (5000, 64, 608, 1)
    assert p.schedule()(0.0) == 0.0 and p.schedule()(100.0) == pytest.approx(1e-3)  # burn-in
    import dataclasses
    from chainer_yolo_dist.core.parallelism import modes
    fields = {f.name: None for f in dataclasses.fields(DetectionSettings) if f.init}
    fields.update(modes.DEFAULTS)
    fields.update(preset=p, ranks=1, nodes=1, virtual_ranks=1, device=-1, seed=0, out='x',
                  loaderjob=0, eval_interval=0, eval_batchsize=1, log_interval=1,
                  snapshot_interval=0, keep_snapshots=1, progress=False,
                  double_buffering=False, departures=(), communicator='naive')
    settings = DetectionSettings(**fields)
    assert settings.stop_trigger == (5000, 'iteration')
    assert dataclasses.replace(settings, iterations=7).stop_trigger == (7, 'iteration')


@pytest.mark.slow  # two ranks train a small detector for 6 iterations: about 30 s
def test_a_detector_run_keeps_its_best_checkpoint_and_records_table2_counts(tmp_path):
    from chainer_yolo_dist.cyclegan.synthetic_detection import write_detection_sets
    from conftest import run_mpi
    root = str(tmp_path / 'sets')
    assert write_detection_sets(root, 8, 4, 64) == {'a': 8, 'b': 16, 'test': 4}
    out = str(tmp_path / 'run')
    check(run_mpi(2, ['scripts/train_yolo.py', '--preset', 'yolov3_person_demo', '--data-dir',
                      root, '--class-names', 'object', '--train-split', 'b', '--out', out,
                      '--iterations', '6', '--eval-interval', '1', '--loaderjob', '0',
                      '--log-interval', '2'], timeout=180))
    assert os.path.isfile(os.path.join(out, 'model_best.npz'))
    metrics = json.load(open(os.path.join(out, 'metrics.json')))
    c = metrics['counts']
    assert c['score_thresh'] == 0.25 and c['tp'] + c['fn'] > 0
    with np.load(os.path.join(out, 'model_best.npz')) as best, \
            np.load(os.path.join(out, 'model.npz')) as last:
        assert sorted(best.files) == sorted(last.files)  # the detector alone, as model.npz
    proc = check(run_python(['scripts/compare_map.py', out], timeout=60))
    assert 'paper 002 Table 2 (b)' in proc.stdout  # the split named after its row
