"""scripts/train_slowfast.py end to end under mpiexec, and the k-workers equivalence.

Tiny synthetic clips (8 frames of 32 x 32) and the narrow network keep each run to seconds.
"""
import json

import numpy as np
import pytest

from conftest import check, run_mpi, run_python

TINY = ['scripts/train_slowfast.py', '--n-train-clips', '16', '--n-test-clips', '6',
        '--batchsize', '2', '--eval-batchsize', '3', '--no-progress', '--log-interval', '2']
PHASES = ('data', 'forward', 'backward', 'allreduce', 'update')


def _load_npz(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


@pytest.mark.slow  # a 2-rank training run
def test_two_ranks_write_every_output_and_the_profile_adds_up(tmp_path):
    """2 ranks x 2 clips: 4 updates per epoch; 6 updates cross an epoch boundary with the
    loader processes re-created there (--no-persistent-workers)."""
    out = tmp_path / 'run'
    proc = check(run_mpi(2, TINY + ['--iterations', '6', '--loader-workers', '1',
                                    '--no-persistent-workers', '--profile', '--out', str(out)],
                         timeout=240))
    for name in ('log', 'loss.png', 'config.json', 'metrics.json', 'snapshot_iter_6',
                 'model.npz', 'profile.json'):
        assert (out / name).stat().st_size > 0, name
    metrics = json.loads((out / 'metrics.json').read_text())
    assert metrics['iterations'] == 6 and metrics['epochs'] == 1.5
    assert 0 <= metrics['map'] <= 1 and metrics['n_test_frames'] > 0
    assert set(metrics['ap']) == {'move_left', 'move_right', 'grow', 'shrink', 'spin', 'blink',
                                  'still'}
    config = json.loads((out / 'config.json').read_text())
    assert config['ranks'] == 2 and config['preset']['global_batchsize'] == 4
    assert config['loaderjob'] == 1 and config['persistent_workers'] is False
    assert config['preset']['clip_frames'] == 8 and config['data']['clip_size'] == 32
    assert config['initialisation'] == 'from scratch (no --pretrained)'
    assert 'initialisation: from scratch' in proc.stdout
    assert proc.stdout.count('frame mAP@0.5 ') == 1  # rank 0 alone reports

    # The profile: every rank, every update, five phases that add up to the step.
    profile = json.loads((out / 'profile.json').read_text())
    assert len(profile['ranks']) == 2
    for rows in profile['ranks']:
        assert [r['iteration'] for r in rows] == list(range(1, 7))
        for r in rows:
            assert all(r[p] >= 0 for p in PHASES)
            assert sum(r[p] for p in PHASES) == pytest.approx(r['step'], rel=1e-9)
            assert r['forward'] > 0 and r['backward'] > 0 and r['allreduce'] > 0
    summary = profile['summary']
    assert summary['table4']['compute'] + summary['table4']['communication'] == \
        pytest.approx(1)
    assert sum(summary['shares'].values()) == pytest.approx(1)
    assert metrics['profile']['table4'] == summary['table4']
    assert 'paper 004 Table 4 form: compute' in proc.stdout
    # ... and rank 0's log has the phases of its updates (means over each log interval).
    log = json.loads((out / 'log').read_text())
    assert [e['iteration'] for e in log] == [2, 4, 6]
    assert all(e['time/step'] > 0 and e['time/allreduce'] > 0 for e in log)


@pytest.mark.slow  # two 2-rank training runs
def test_resume_continues_exactly(tmp_path):
    """3 updates + resume 3 == 6 uninterrupted, across an epoch boundary, 2 ranks."""
    full, resumed = tmp_path / 'full', tmp_path / 'resumed'
    args = TINY + ['--iterations', '6', '--snapshot-interval', '3', '--loaderjob', '1']
    check(run_mpi(2, args + ['--out', str(full)], timeout=240))
    check(run_mpi(2, args + ['--out', str(resumed), '--resume',
                             str(full / 'snapshot_iter_3')], timeout=240))
    a, b = _load_npz(full / 'model.npz'), _load_npz(resumed / 'model.npz')
    assert a.keys() == b.keys() and len(a) > 100
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert json.loads((full / 'metrics.json').read_text())['map'] == \
        json.loads((resumed / 'metrics.json').read_text())['map']


@pytest.mark.slow  # three training runs
def test_pretrained_trunk_is_loaded_and_a_wrong_file_is_refused(tmp_path):
    first = tmp_path / 'first'
    check(run_python(TINY + ['--iterations', '1', '--loaderjob', '0', '--out', str(first)],
                     timeout=120))
    second = tmp_path / 'second'
    proc = check(run_python(TINY + ['--iterations', '1', '--loaderjob', '0', '--pretrained',
                                    str(first / 'model.npz'), '--out', str(second)],
                            timeout=120))
    assert 'initialisation: trunk from' in proc.stdout
    config = json.loads((second / 'config.json').read_text())
    assert config['initialisation'].startswith('trunk from') and config['pretrained']
    # The Slow-only network has no Fast pathway: the file does not fit, said before training.
    proc = run_python(TINY + ['--iterations', '1', '--loaderjob', '0', '--model', 'slow_narrow',
                              '--pretrained', str(first / 'model.npz'), '--out',
                              str(tmp_path / 'third')], timeout=120)
    assert proc.returncode != 0 and 'model.npz' in proc.stderr


@pytest.mark.slow  # two training runs
@pytest.mark.parametrize('ranks, virtual', [(1, 2)])
def test_k_ranks_equal_one_process_acting_as_k_workers(tmp_path, ranks, virtual):
    """k = 2 workers: 2 real ranks and 1 process of 2 virtual ranks give the same weights in
    float64 (and the profiled update, used by the second, computes the same update)."""
    script = 'tests/mpi_scripts/slowfast_equivalence.py'
    real, mixed = tmp_path / 'real.npz', tmp_path / 'mixed.npz'
    check(run_mpi(2, [script, '1', '0', str(real)], timeout=180))
    check(run_mpi(ranks, [script, str(virtual), '1', str(mixed)], timeout=180))
    a, b = _load_npz(real), _load_npz(mixed)
    assert a.keys() == b.keys()
    assert int(a.pop('_changed')) > 100 and int(b.pop('_changed')) > 100  # it trained
    for name in a:
        np.testing.assert_allclose(b[name], a[name], rtol=1e-7, atol=1e-9, err_msg=name)


def test_gathered_frame_map_equals_one_process(tmp_path):
    out = tmp_path / 'eval.json'
    check(run_mpi(2, ['tests/mpi_scripts/slowfast_gathered_eval.py', str(out)], timeout=120))
    result = json.loads(out.read_text())
    assert result['distributed'] == result['single']
    assert result['single']['n_frames'] == 7 and 0 < result['single']['map'] < 1


LABELS = 'item {\n  name: "bend/bow (at the waist)"\n  id: 1\n}\nitem {\n  name: "stand"\n' \
    '  id: 12\n}\nitem {\n  name: "watch (a person)"\n  id: 80\n}\n'


def _fake_ava(root, hw=(96, 128)):
    """AVA v2.2's files for two videos of 12 frames (clips are clamped to the video)."""
    import cv2
    rows = {'train': [], 'val': []}
    for v, split in (('vid_a', 'train'), ('vid_b', 'train'), ('vid_c', 'val')):
        d = root / 'frames' / v
        d.mkdir(parents=True)
        rng = np.random.RandomState(len(v) + ord(v[-1]))
        for i in range(12):
            cv2.imwrite(str(d / ('%s_%06d.jpg' % (v, i + 1))),
                        rng.randint(0, 255, hw + (3,)).astype(np.uint8))
        for second in (902, 903):
            rows[split] += ['%s,%d,0.1,0.2,0.5,0.9,12,0' % (v, second),
                            '%s,%d,0.1,0.2,0.5,0.9,80,0' % (v, second),
                            '%s,%d,0.55,0.1,0.95,0.8,1,1' % (v, second)]
    (root / 'ava_train_v2.2.csv').write_text('\n'.join(rows['train']) + '\n')
    (root / 'ava_val_v2.2.csv').write_text('\n'.join(rows['val']) + '\n')
    (root / 'ava_val_excluded_timestamps_v2.2.csv').write_text('vid_c,0903\n')
    (root / 'ava_action_list_v2.2.pbtxt').write_text(LABELS)
    (root / 'ava_action_list_v2.2_for_activitynet_2019.pbtxt').write_text(LABELS)


@pytest.mark.slow  # a training run
def test_ava_files_train_and_evaluate_on_the_60_class_list(tmp_path):
    """The AVA path end to end on hand-made files (nothing is downloaded): the augmented
    training crops, the evaluated classes read from the label map, the exclusion list."""
    root = tmp_path / 'AVA'
    _fake_ava(root)
    out = tmp_path / 'run'
    check(run_python(['scripts/train_slowfast.py', '--dataset', 'ava', '--data-dir', str(root),
                      '--clip-frames', '16', '--insize', '64', '--batchsize', '2',
                      '--eval-batchsize', '1', '--iterations', '2', '--loaderjob', '0',
                      '--no-progress', '--out', str(out)], timeout=120))
    config = json.loads((out / 'config.json').read_text())
    assert config['evaluated_class_ids'] == [1, 12, 80]
    assert config['preset']['n_train'] == 4 and config['preset']['n_class'] == 80
    assert config['class_names'][11] == 'stand'
    metrics = json.loads((out / 'metrics.json').read_text())
    assert metrics['n_test_frames'] == 1  # vid_c 903 is excluded
    assert metrics['eval_boxes'] == 'ground truth'   # the default: ava_val_v2.2.csv's boxes
    assert set(k for k, v in metrics['ap'].items() if v is not None) == {
        'bend/bow (at the waist)', 'stand', 'watch (a person)'}


@pytest.mark.slow  # a training run
def test_evaluation_on_a_detector_box_file_is_recorded(tmp_path):
    """``--eval-boxes``: the run scores a person detector's boxes (AVA's CSV format) against
    the ground truth and says so in metrics.json and its summary line; the ground-truth boxes
    are the default, and a mistake is one line before MPI starts."""
    from conftest import resolve_script
    root = tmp_path / 'AVA'
    _fake_ava(root)
    boxes = root / 'detected.csv'
    boxes.write_text('vid_c,0902,0.1,0.2,0.5,0.9,,0.97\nvid_c,0902,0.55,0.1,0.95,0.8,,0.6\n')
    out = tmp_path / 'run'
    proc = check(run_python(['scripts/train_slowfast.py', '--dataset', 'ava', '--data-dir',
                             str(root), '--clip-frames', '16', '--insize', '64',
                             '--batchsize', '2', '--eval-batchsize', '1', '--iterations', '1',
                             '--loaderjob', '0', '--no-progress', '--eval-boxes', str(boxes),
                             '--eval-score-thresh', '0.5', '--out', str(out)], timeout=120))
    metrics = json.loads((out / 'metrics.json').read_text())
    assert metrics['eval_boxes'] == '%s (score >= 0.5)' % boxes
    assert '(boxes: %s (score >= 0.5))' % boxes in proc.stdout
    assert metrics['n_test_frames'] == 1
    with pytest.raises(ValueError, match='--eval-boxes names a person-box file of AVA'):
        resolve_script('slowfast', ['--eval-boxes', str(boxes)])
    with pytest.raises(ValueError, match='--eval-boxes .*nope.csv: no such file'):
        resolve_script('slowfast', ['--dataset', 'ava', '--data-dir', str(root),
                                    '--eval-boxes', str(root / 'nope.csv')])
    with pytest.raises(SystemExit):   # refused when parsed: a threshold is in [0, 1]
        resolve_script('slowfast', ['--eval-score-thresh', '1.5'])
