"""compare_map: each run's measured accuracy beside the published one for its setting."""
import csv
import json
import os

import pytest

from chainer_yolo_dist.analysis import compare, runs
from conftest import check, run_python


def make_run(root, name, comm_size, preset=None, model='yolov2', dataset='voc', epochs=4,
             metrics=None, classification=False, peak_lr=None, seconds_per_epoch=10.0,
             n_train=16551):
    """Writes a run directory with the layout of scripts/train_*.py; returns its path.

    The loss decays as 2 / (1 + epoch) (slower with more processes, as larger batches do);
    accuracy rises towards 0.7.
    """
    path = os.path.join(str(root), name)
    os.makedirs(path)
    batch = 16
    per_epoch = 10
    recipe = {'name': preset, 'model': model, 'dataset': dataset,
              'batchsize_per_gpu': batch, 'global_batchsize': batch * comm_size,
              'peak_lr': peak_lr if peak_lr is not None else 1e-4 * comm_size,
              'epochs': epochs, 'insize': 416, 'n_train': n_train}
    config = {'preset': recipe, 'workers': comm_size, 'iterations_per_epoch': per_epoch,
              'eta': recipe['peak_lr'] / comm_size}
    log = []
    # Logged every 5 iterations, as the training scripts do; 'epoch' counts completed epochs.
    for iteration in range(5, epochs * per_epoch + 1, 5):
        epoch = iteration / per_epoch
        entry = {'epoch': iteration // per_epoch, 'iteration': iteration,
                 'elapsed_time': seconds_per_epoch * epoch,
                 'main/loss': 2.0 / (1 + epoch / comm_size ** 0.25), 'lr': recipe['peak_lr']}
        if classification:
            entry['main/accuracy'] = 0.7 * epoch / epochs
            if iteration % per_epoch == 0:  # validated once per epoch
                entry['validation/main/accuracy'] = 0.65 * epoch / epochs
        log.append(entry)
    with open(os.path.join(path, 'config.json'), 'w') as f:
        json.dump(config, f)
    with open(os.path.join(path, 'log'), 'w') as f:
        json.dump(log, f)
    if metrics is not None:
        metrics = dict({'epochs': epochs, 'iterations': per_epoch * epochs,
                        'elapsed_seconds': seconds_per_epoch * epochs,
                        'images_per_second': 1.0}, **metrics)
        with open(os.path.join(path, 'metrics.json'), 'w') as f:
            json.dump(metrics, f)
    return path


def test_published_value_by_preset_and_gpus():
    assert compare.published_value('yolov2_voc_2018', 64) == (67.3, 'paper 000 Table 3')
    assert compare.published_value('yolov2_voc_2019', 96) == (0.3, 'paper 001 Table 2')
    assert compare.published_value('yolov3_voc_2019', 128) == (65.8, 'paper 001 Table 2')
    assert compare.published_value('darknet53_imagenet_2019', 256) == (77.2,
                                                                       'paper 001 sec. 5.2.1')
    # Printed as '-', a GPU count the paper did not run, or a preset without a table.
    assert compare.published_value('yolov2_voc_2019', 128) == (None, compare.NO_VALUE)
    assert compare.published_value('yolov2_voc_2018', 2) == (None, compare.NO_VALUE)
    assert compare.published_value('darknet53_imagenet_2019', 64) == (None, compare.NO_VALUE)
    assert compare.published_value('yolov2_filmrole_2018', 16) == (None, compare.NO_VALUE)
    assert compare.published_value(None, 1) == (None, compare.NO_VALUE)


def test_rows_convert_fractions_to_percent_and_subtract(tmp_path):
    make_run(tmp_path, 'a', 16, preset='yolov2_voc_2018', metrics={'map': 0.65, 'ap': {}})
    make_run(tmp_path, 'b', 256, preset='darknet53_imagenet_2019', model='darknet53',
             dataset='imagenet', classification=True, metrics={'top1': 0.8, 'top5': 0.95})
    make_run(tmp_path, 'c', 2, preset=None, metrics={'map': 0.1234})
    make_run(tmp_path, 'd', 1, preset='yolov2_voc_2018')  # still running: no metrics
    rows = compare.comparison_rows(runs.find_runs([str(tmp_path)]))
    assert [r['run'] for r in rows] == ['a', 'b', 'c', 'd']
    a, b, c, d = rows
    assert (a['metric'], a['published_percent']) == ('mAP', 70.2)
    assert a['measured_percent'] == pytest.approx(65.0)
    assert a['difference'] == pytest.approx(-5.2)
    assert (b['metric'], b['published_percent'], b['gpus']) == ('top-1', 77.2, 256)
    assert b['difference'] == pytest.approx(2.8)
    assert c['published_percent'] is None and c['difference'] is None
    assert c['measured_percent'] == pytest.approx(12.34)
    assert c['source'] == compare.NO_VALUE
    assert d['measured_percent'] is None and d['published_percent'] == 69.3
    assert d['difference'] is None


def test_markdown_and_csv_render_missing_cells_empty(tmp_path):
    make_run(tmp_path, 'a', 16, preset='yolov2_voc_2018', metrics={'map': 0.65})
    make_run(tmp_path, 'c', 2, metrics={'map': 0.1234})
    rows = compare.comparison_rows(runs.find_runs([str(tmp_path)]))
    md = compare.to_markdown(rows).splitlines()
    assert md[0].startswith('| run | preset | GPUs | metric | published | measured |')
    assert md[2] == ('| a | yolov2_voc_2018 | 16 | mAP % | 70.20 | 65.00 | -5.20 '
                     '| paper 000 Table 3 |  |')
    assert md[3] == '| c |  | 2 | mAP % |  | 12.34 |  | no published value |  |'
    table = list(csv.DictReader(compare.to_csv(rows).splitlines()))
    assert table[0]['published_percent'] == '70.2'
    assert table[1]['published_percent'] == '' and table[1]['difference'] == ''


def test_a_map_that_is_already_percent_is_rejected_naming_the_file(tmp_path):
    make_run(tmp_path, 'a', 16, preset='yolov2_voc_2018', metrics={'map': 65.0})
    with pytest.raises(ValueError, match=r'a/metrics\.json.*not a fraction'):
        compare.comparison_rows(runs.find_runs([str(tmp_path / 'a')]))


def test_log_series_uses_fractional_epochs(tmp_path):
    run = runs.load_run(make_run(tmp_path, 'a', 2, epochs=2, classification=True,
                                 metrics={'top1': 0.5}, seconds_per_epoch=10.0))
    x, y = runs.log_series(run, 'main/loss')
    assert list(x) == [0.5, 1.0, 1.5, 2.0]
    assert y[0] == pytest.approx(2.0 / (1 + 0.5 / 2 ** 0.25))
    x, _ = runs.log_series(run, 'validation/main/accuracy')
    assert list(x) == [1.0, 2.0]
    assert runs.seconds_per_epoch(run) == pytest.approx(10.0)  # metrics.json
    run.metrics = None
    assert runs.seconds_per_epoch(run) == pytest.approx(10.0)  # the log's elapsed_time
    with pytest.raises(ValueError, match="no log entry has 'main/accuracy/x'"):
        runs.log_series(run, 'main/accuracy/x')


def test_broken_run_directories_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match='no config.json'):
        runs.find_runs([str(tmp_path)])
    bad = tmp_path / 'bad'
    bad.mkdir()
    (bad / 'config.json').write_text('{"workers": 2,')
    with pytest.raises(ValueError, match=r'bad/config\.json: invalid JSON'):
        runs.load_run(str(bad))
    (bad / 'config.json').write_text('{"workers": 0}')
    with pytest.raises(ValueError, match='workers'):
        runs.load_run(str(bad))


def test_compare_map_script_prints_and_writes_both_files(tmp_path):
    make_run(tmp_path, 'k1', 1, preset='yolov2_voc_2018', metrics={'map': 0.5})
    make_run(tmp_path, 'k16', 16, preset='yolov2_voc_2018', metrics={'map': 0.6})
    out = tmp_path / 'out' / 'cmp'
    proc = check(run_python(['scripts/compare_map.py', str(tmp_path / 'k1'),
                             str(tmp_path / 'k16'), '--out', str(out)], timeout=60))
    assert '| k16 | yolov2_voc_2018 | 16 | mAP % | 70.20 | 60.00 | -10.20 |' in proc.stdout
    assert (tmp_path / 'out' / 'cmp.md').read_text().count('\n') == 4
    rows = list(csv.DictReader((tmp_path / 'out' / 'cmp.csv').read_text().splitlines()))
    assert [(r['run'], r['published_percent']) for r in rows] == [('k1', '69.3'),
                                                                  ('k16', '70.2')]


def test_a_run_that_departs_from_its_paper_is_marked_not_comparable(tmp_path):
    path = make_run(tmp_path, 'small', 16, preset='yolov2_voc_2018', metrics={'map': 0.01})
    config = json.loads(open(os.path.join(path, 'config.json')).read())
    config['departures'] = ['320 training examples instead of the preset\'s 16551']
    config['iterations'] = 20
    with open(os.path.join(path, 'config.json'), 'w') as f:
        json.dump(config, f)
    row, = compare.comparison_rows(runs.find_runs([str(tmp_path)]))
    assert row['published_percent'] == 70.2 and row['difference'] is None
    assert row['departures'] == ('not comparable: 320 training examples instead of the '
                                 'preset\'s 16551; stopped after 20 iterations')


def test_compare_map_skips_unfinished_and_broken_runs_and_writes_only_when_asked(tmp_path):
    make_run(tmp_path, 'done', 1, preset='yolov2_voc_2018', metrics={'map': 0.5})
    make_run(tmp_path, 'running', 2, preset='yolov2_voc_2018')
    (tmp_path / 'broken').mkdir()
    (tmp_path / 'broken' / 'config.json').write_text('{"workers": 2,')
    proc = check(run_python(['scripts/compare_map.py', str(tmp_path)], timeout=60))
    assert '| done |' in proc.stdout and '| running |' not in proc.stdout
    assert 'skipped %s: not finished (no metrics.json)' % (tmp_path / 'running') in proc.stdout
    assert 'skipped %s: ' % (tmp_path / 'broken') in proc.stdout
    assert not (tmp_path / 'done' / 'comparison.md').exists()
    assert sorted(os.listdir(tmp_path)) == ['broken', 'done', 'running']


def test_compare_map_script_reports_a_bad_directory(tmp_path):
    proc = run_python(['scripts/compare_map.py', str(tmp_path / 'missing')], timeout=60)
    assert proc.returncode == 2
    assert 'missing: no such directory' in proc.stderr


def _add(path, name, text):
    with open(os.path.join(path, name), 'w') as f:
        f.write(text)


def test_every_system_is_reported_where_it_belongs(tmp_path):
    make_run(tmp_path, 'gan', 4, preset='cyclegan_synthia2bdd_2019', model='cyclegan_resnet',
             metrics={'fid': 250.0, 'fid_extractor': 'inception_v3 (w.npz): FID comparable '
                      'with the literature'})
    make_run(tmp_path, 'gan_default', 512, preset='cyclegan_synthia2bdd_2019',
             model='cyclegan_resnet', metrics={'fid': 4.2, 'fid_extractor': 'default '
                                               'extractor: NOT comparable'})
    make_run(tmp_path, 'sf', 64, preset='slowfast_ava_2021', model='slowfast_r50',
             metrics={'map': 0.25, 'n_test_frames': 200})
    gan, default, sf = compare.comparison_rows(runs.find_runs([str(tmp_path)]))
    # FID: a distance as it is (paper 002 sec. 4.4 at 4 GPUs: 221.0), lower is better.
    assert (gan['metric'], gan['published_percent'], gan['measured_percent']) == (
        'FID', 221.0, 250.0)
    assert gan['difference'] == pytest.approx(29.0)
    # The default extractor's distances are no FIDs: beside the paper, never subtracted.
    assert default['published_percent'] == 270.7 and default['difference'] is None
    assert 'default extractor, not Inception-v3' in default['departures']
    # SlowFast: frame mAP in percent beside paper 004 Table 5 at 64 GPUs = 16 nodes.
    assert (sf['metric'], sf['published_percent']) == ('frame mAP', 24.6)
    assert sf['measured_percent'] == pytest.approx(25.0)
    md = compare.to_markdown([gan, sf])
    assert '| gan | cyclegan_synthia2bdd_2019 | 4 | FID | 221.00 | 250.00 | +29.00 |' in md
    assert '| sf | slowfast_ava_2021 | 64 | frame mAP % | 24.60 | 25.00 | +0.40 |' in md


def test_compare_map_skips_what_is_not_a_finished_run_with_one_note_each(tmp_path):
    """``compare_map.py runs/*`` after ordinary use: the FID extractor's file, a folder left
    holding only .lock, a folder of figures, a run that crashed before its log."""
    make_run(tmp_path, 'done', 1, preset='yolov2_voc_2018', metrics={'map': 0.5})
    make_run(tmp_path, 'gan', 2, preset='cyclegan_demo', model='cyclegan_resnet',
             metrics={'fid': 4.2})
    _add(tmp_path, 'fid_extractor_default.npz', 'weights')
    (tmp_path / 'locked').mkdir()
    _add(tmp_path / 'locked', '.lock', 'host 1 0')
    (tmp_path / 'figures-20260101-000000').mkdir()
    _add(tmp_path / 'figures-20260101-000000', 'measured_speedup.png', 'png')
    (tmp_path / 'crashed').mkdir()
    _add(tmp_path / 'crashed', 'config.json', '{"workers": 2}')
    entries = sorted(str(p) for p in tmp_path.iterdir())
    for argv in ([str(tmp_path)], entries):  # runs/ and runs/*: the same report
        proc = check(run_python(['scripts/compare_map.py'] + argv, timeout=60))
        assert '| done |' in proc.stdout and '| gan | cyclegan_demo | 2 | FID |' in proc.stdout
        notes = [line for line in proc.stdout.splitlines() if line.startswith('skipped ')]
        assert sorted(notes) == sorted([
            'skipped %s: not finished (no metrics.json)' % (tmp_path / 'crashed'),
            'skipped %s: a file (the FID feature extractor\'s weights), not a run'
            % (tmp_path / 'fid_extractor_default.npz'),
            'skipped %s: a folder of figures, not a run' % (tmp_path / 'figures-20260101-000000'),
            'skipped %s: holds only .lock (a start that failed, or one still starting), not a '
            'run' % (tmp_path / 'locked')])
        assert proc.stderr == ''
