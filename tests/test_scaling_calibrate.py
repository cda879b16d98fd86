"""The calibrated planner (``simulate_scaling.py --calibrate``): two points fix the model's
overheads, the rest is predicted and, on the papers' data, checked."""
import json
import math
import os
import re

import pytest

from chainer_yolo_dist.analysis import scaling, scaling_calibrate, scaling_slowfast
from conftest import REPO, run_python, simulate_scaling

#: Every preset with published timings (papers 000, 001, 002, 004).
TIMED = ('yolov2_voc_2018', 'yolov2_filmrole_2018', 'darknet53_imagenet_2019',
         'yolov3_voc_2019', 'cyclegan_synthia2bdd_2019', 'slowfast_ava_2021')


def test_the_fit_goes_through_its_two_points_exactly():
    for name in TIMED:
        for f in scaling_calibrate.published_calibration(name):
            fitted = [r for r in f['rows'] if r['role'] == 'fit']
            assert len(fitted) == len(f['fitted']) >= 1, name
            for r in fitted:  # the time where one is published, else the speed-up
                error = r['speedup_error'] if r['time_error'] is None else r['time_error']
                assert abs(error) < 1e-9, (name, r)
            for r in f['rows']:
                if r['role'] == 'base':
                    assert r['time_error'] == pytest.approx(0, abs=1e-12), name


def test_the_fitted_points_are_the_two_smallest_beyond_the_base():
    got = {(name, f['curve'].configuration): [p.gpus for p in f['fitted']]
           for name in TIMED for f in scaling_calibrate.published_calibration(name)}
    assert got == {('yolov2_voc_2018', None): [16, 32], ('yolov2_filmrole_2018', None): [16, 32],
                   ('darknet53_imagenet_2019', None): [256, 512],
                   ('yolov3_voc_2019', None): [96],
                   ('cyclegan_synthia2bdd_2019', None): [512],
                   ('slowfast_ava_2021', 'before'): [128, 256],
                   ('slowfast_ava_2021', 'after'): [128, 256]}


def test_every_larger_published_point_is_within_15_percent_or_a_named_miss():
    checked, missed = [], []
    for name in TIMED:
        for f in scaling_calibrate.published_calibration(name):
            for r in f['rows']:
                if r['role'] != 'check':
                    continue
                checked.append((name, r['gpus']))
                if not r['within']:
                    missed.append((name, f['curve'].configuration, r['gpus']))
                    assert r['why'] == scaling_calibrate.MISSES[missed[-1]]
    # Paper 000's 64 (table and text) and 128 GPUs pass; paper 004's 128 nodes after the fix,
    # which the paper only says are slower than 64, is the one miss.
    assert checked == [('yolov2_voc_2018', 64), ('yolov2_voc_2018', 64),
                       ('yolov2_voc_2018', 128), ('slowfast_ava_2021', 512)]
    assert missed == [(scaling_slowfast.PRESET, 'after', 512)]


def test_a_speedup_without_a_time_is_fitted_through_the_base():
    """Paper 001 prints speed-ups only: T(k) = T(1) / S(k) with the model's 1-GPU time."""
    (f,) = scaling_calibrate.published_calibration('darknet53_imagenet_2019')
    curve = f['curve']
    for r in f['rows']:
        if r['role'] == 'fit':
            assert curve.seconds(r['gpus'], f['a'], f['e']) * r['published_speedup'] == (
                pytest.approx(curve.base_seconds))


def test_json_holds_one_row_per_gpu_count(capsys):
    data = json.loads(simulate_scaling(capsys, '--preset', 'yolov2_voc_2018', '--calibrate',
                                       '--gpus', '1,8,16,256', '--json'))
    assert data['preset'] == 'yolov2_voc_2018'
    (params,) = data['parameters']
    assert params['fitted_gpus'] == [16, 32] and params['u'] > 0 and params['e'] > 0
    gpus = [r['gpus'] for r in data['rows']]
    assert sorted(set(gpus)) == [1, 8, 16, 32, 64, 128, 256]
    for r in data['rows']:
        assert {'gpus', 'published_speedup', 'predicted_speedup'} <= set(r)
    by = {r['gpus']: r for r in data['rows']}
    assert by[8]['published_speedup'] is None and by[8]['role'] == 'prediction'
    assert by[128]['predicted_speedup'] == pytest.approx(by[128]['published_speedup'],
                                                         rel=0.15)


def _write_run(path, gpus, epoch_seconds, name='yolov2_voc_2018', n_train=1000):
    path.mkdir()
    (path / 'config.json').write_text(json.dumps({'workers': gpus, 'preset': {
        'name': name, 'model': 'yolov2', 'n_class': 20, 'n_train': n_train,
        'batchsize_per_gpu': 16}}))
    (path / 'metrics.json').write_text(json.dumps({'elapsed_seconds': 3 * epoch_seconds,
                                                   'epochs': 3}))
    return str(path)


def test_two_run_folders_calibrate_the_planner(tmp_path, capsys):
    """Runs of 2 and 8 processes made by a = 0.5 s per update and e = 3 s per epoch around
    the model's AllReduce of YOLOv2's gradients: the fit finds a and e again and predicts
    32 processes from them."""
    nbytes = scaling.MODEL_FACTS[('yolov2', 20)][0] * 4

    def epoch(k):
        return math.ceil(1000 / k) / 16 * (0.5 + scaling.ring_allreduce_seconds(nbytes, k)) + 3.0
    dirs = [_write_run(tmp_path / ('k%d' % k), k, epoch(k)) for k in (2, 8)]
    data = json.loads(simulate_scaling(capsys, '--calibrate', *dirs, '--gpus', '1,32',
                                       '--json'))
    (params,) = data['parameters']
    assert params['a'] == pytest.approx(0.5) and params['e'] == pytest.approx(3.0)
    assert params['u'] is None and params['fitted_gpus'] == [2, 8]
    by = {r['gpus']: r for r in data['rows']}
    assert by[32]['predicted_seconds'] == pytest.approx(epoch(32))
    assert by[1]['predicted_seconds'] == pytest.approx(1000 / 16 * 0.5 + 3.0)
    assert by[2]['published_seconds'] == pytest.approx(epoch(2))
    assert by[8]['published_speedup'] == pytest.approx(by[1]['predicted_seconds'] / epoch(8))
    out = simulate_scaling(capsys, '--calibrate', *dirs)
    assert 'a = 0.5000 s per update, e = 3.00 s per epoch' in out
    assert '| measured speed-up |' in out


def test_run_folders_that_cannot_calibrate_are_one_line_errors(tmp_path):
    same = [_write_run(tmp_path / n, 4, 10.0) for n in ('a', 'b')]
    other = _write_run(tmp_path / 'c', 8, 6.0, name='yolov2_voc_2019')
    cases = [(same, 'same GPU count'), ([same[0], other], 'different presets'),
             ([same[0], str(tmp_path / 'missing')], 'not a run directory'),
             ([same[0]], 'no run folder or two')]
    for dirs, message in cases:
        proc = run_python(['scripts/simulate_scaling.py', '--calibrate'] + dirs, timeout=60)
        assert proc.returncode == 2, dirs
        assert proc.stderr.startswith('error: ') and message in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and 'Traceback' not in proc.stderr


def test_docs_quote_the_calibrated_tables(capsys):
    with open(os.path.join(REPO, 'docs', 'scaling_model.md'), encoding='utf-8') as f:
        doc = f.read()
    for name in TIMED:
        out = simulate_scaling(capsys, '--preset', name, '--calibrate')
        for line in out.splitlines():
            if re.match(r'\| \d', line) or line.startswith(('Fitted', 'Miss')):
                assert line in doc, (name, line)
