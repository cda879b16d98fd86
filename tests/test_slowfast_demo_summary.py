"""The SlowFast demo's summary: both runs' mAP, chance on their held-out clips, the published
pair and the profiles; runs that do not compare are refused."""
import json

import numpy as np
import pytest

from chainer_yolo_dist.analysis import slowfast_demo
from chainer_yolo_dist.slowfast.synthetic import SyntheticActionClips

DATA = {'clip_frames': 8, 'clip_size': 32, 'data_dir': None, 'dataset': 'synthetic_actions',
        'max_actors': 3, 'n_class': 7, 'n_test_clips': 30, 'n_train_clips': 2000,
        'on_bad_sample': 'error', 'seed': 0}
PROFILE = {'mean': {'data': 0.01, 'forward': 0.3, 'backward': 0.4, 'allreduce': 0.1,
                    'update': 0.02, 'step': 0.83},
           'shares': {'data': 0.012}, 'table4': {'compute': 0.878, 'communication': 0.122}}


def write_run(path, model, value, data=DATA):
    path.mkdir(parents=True)
    (path / 'config.json').write_text(json.dumps(
        {'data': data, 'ranks': 2, 'workers': 2, 'iterations': 1000}))
    (path / 'metrics.json').write_text(json.dumps(
        {'map': value, 'model': model, 'ap': {'spin': 0.5}, 'profile': PROFILE}))


def test_summary_of_two_runs(tmp_path):
    write_run(tmp_path / 'slowfast', 'slowfast_narrow', 0.46)
    write_run(tmp_path / 'slow', 'slow_narrow', 0.40)
    summary = slowfast_demo.write_summary(str(tmp_path))
    assert json.loads((tmp_path / 'summary.json').read_text()) == json.loads(
        json.dumps(summary))
    assert summary['map'] == {'slowfast': 0.46, 'slow': 0.40}
    assert summary['published_ava_map_percent'] == {'slowfast': 24.2, 'slow': 19.0}
    # Chance: the mean share of positive boxes per class on the same 30 held-out clips.
    test = SyntheticActionClips(30, 'test', seed=0, n_frames=8, size=32, max_actors=3)
    labels = np.concatenate([test[i][2] for i in range(30)])
    share = labels.mean(axis=0)[labels.sum(axis=0) > 0]
    assert summary['chance'] == pytest.approx(share.mean())
    assert 0.05 < summary['chance'] < 0.5
    lines = slowfast_demo.format_summary(summary)
    assert lines[0] == ('frame mAP@0.5 on 30 held-out synthetic clips: SlowFast 0.460, '
                        'Slow-only 0.400, chance %.3f' % summary['chance'])
    assert 'Table 4 form: compute 87.8%, communication 12.2%' in lines[2]


def test_runs_that_do_not_compare_are_refused(tmp_path):
    write_run(tmp_path / 'slowfast', 'slowfast_narrow', 0.46)
    with pytest.raises(ValueError, match=r'slow/metrics\.json: cannot read'):
        slowfast_demo.summarize(str(tmp_path))
    write_run(tmp_path / 'slow', 'slow_narrow', 0.40, dict(DATA, n_test_clips=20))
    with pytest.raises(ValueError, match='differ in n_test_clips'):
        slowfast_demo.summarize(str(tmp_path))
