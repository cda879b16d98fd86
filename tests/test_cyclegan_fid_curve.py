"""The Frechet distance against epoch (paper 002 Fig. 6's form): every run logs it at each
``--fid-interval`` with the epoch of the measurement and draws fid.png; the figure across
process counts is drawn from run directories, beside the published FIDs in a panel of their own.
"""
import json
import os

import numpy as np
import pytest

from conftest import check, run_mpi, run_python

from chainer_yolo_dist.analysis import fid_figure, runs

# Tiny networks at 32 px on 4 training pairs: scale 4 x 4 / k draws per rank and epoch, i.e.
# 8 updates per epoch on 2 ranks and 16 on 1.
TINY = ['--insize', '32', '--n-train-images', '4', '--n-test-images', '8', '--fid-images', '8',
        '--n-samples', '2', '--ngf', '4', '--ndf', '4', '--n-blocks', '1', '--pool-size', '2',
        '--sample-interval', '0', '--fid-interval', '0.5', '--log-interval', '3', '--seed', '1',
        '--no-progress']


@pytest.fixture(scope='module')
def fid_runs(tmp_path_factory):
    """``{k: run directory}`` of tiny runs on 1 and 2 ranks, a distance every half epoch."""
    root = tmp_path_factory.mktemp('fid_curve')
    extractor = str(root / 'extractor.npz')
    check(run_python(['-c', 'from chainer_yolo_dist.cyclegan import features; '
                      'features.train_default_extractor(%r, n_images=32, epochs=1, n_test=8)'
                      % extractor], timeout=120))
    out = {}
    for k in (2, 1):  # 16 updates: 2 epochs on 2 ranks, 1 on 1 rank
        out[k] = str(root / ('k%d' % k))
        proc = check(run_mpi(k, ['scripts/train_cyclegan.py', '--out', out[k], '--iterations',
                                 '16', '--fid-extractor', extractor] + TINY, timeout=300))
        with open(os.path.join(out[k], 'stdout.txt'), 'w') as f:
            f.write(proc.stdout)
    return out


@pytest.mark.slow  # training runs (fid_runs)
def test_a_distance_every_half_epoch_in_the_log_with_its_epoch(fid_runs):
    # 2 ranks, 2 epochs of 8 updates: iterations 4, 8, 12, 16; the log's entries fall every 3
    # iterations, so the epoch of each distance is fid/epoch, not the entry's.
    log = json.load(open(os.path.join(fid_runs[2], 'log')))
    logged = [(e['fid/epoch'], e['fid'], e['iteration']) for e in log if 'fid' in e]
    assert [epoch for epoch, _, _ in logged] == [0.5, 1.0, 1.5, 2.0]
    assert [it for _, _, it in logged] == [6, 9, 12, 16]  # the entries at or after 4, 8, 12, 16
    assert all(np.isfinite(v) and v >= 0 for _, v, _ in logged)
    metrics = json.load(open(os.path.join(fid_runs[2], 'metrics.json')))
    assert metrics['fid_history'] == [[e, v] for e, v, _ in logged]
    assert metrics['fid'] == logged[-1][1]  # the end's distance is the last point
    with open(os.path.join(fid_runs[2], 'fid.png'), 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    # The printed table has the same rows as the log (its own trigger: Chainer's interval
    # triggers keep state, one shared by the log and the table would print nothing).
    printed = open(os.path.join(fid_runs[2], 'stdout.txt')).read().splitlines()
    header = next(i for i, line in enumerate(printed) if 'gen/loss_cycle' in line)
    rows = [line.split() for line in printed[header + 1:header + 1 + len(log)]]
    assert [int(r[1]) for r in rows] == [e['iteration'] for e in log] == [3, 6, 9, 12, 15, 16]
    # 1 rank: 16 updates an epoch, the same half-epoch points in its own units.
    one = runs.load_run(fid_runs[1])
    assert fid_figure.fid_series(one)[0] == [0.5, 1.0]


@pytest.mark.slow  # the fid_runs fixture
def test_fig6_form_one_curve_per_process_count_and_the_paper_apart(fid_runs):
    found = [runs.load_run(fid_runs[k]) for k in (2, 1)]
    fig = fid_figure.fid_against_epoch(found)
    measured, paper = fig.axes
    curves = {line.get_label(): list(line.get_xdata()) for line in measured.get_lines()
              if not line.get_label().startswith('_')}
    assert curves == {'1 process (k1)': [0.5, 1.0], '2 processes (k2)': [0.5, 1.0, 1.5, 2.0]}
    baselines = [line.get_ydata()[0] for line in measured.get_lines()
                 if line.get_linestyle() == '--']
    assert sorted(baselines) == sorted(json.load(open(os.path.join(fid_runs[k], 'metrics.json')))
                                       ['fid_baseline'] for k in (1, 2))
    points = sorted((float(line.get_xdata()[0]), float(line.get_ydata()[0]))
                    for line in paper.get_lines())
    assert points == [(4, 221.0), (256, 269.2), (512, 270.7)]  # paper 002, after 200 epochs
    assert 'not comparable' in paper.get_title() and 'Inception-v3' in paper.get_title()
    assert 'default extractor' in measured.get_title()


@pytest.mark.slow  # the fid_runs fixture
def test_reproduce_figures_draws_it_from_run_directories(fid_runs, tmp_path):
    out = str(tmp_path / 'figures')
    proc = check(run_python(['scripts/reproduce_figures.py', '--runs', fid_runs[1],
                             fid_runs[2], '--no-published', '--out', out], timeout=120))
    path = os.path.join(out, 'measured_fid_cyclegan_demo.png')
    assert path in proc.stdout.split()
    with open(path, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'


def test_a_run_without_distances_is_named(tmp_path):
    run = runs.Run(path=str(tmp_path), config={'workers': 1}, log=[{'epoch': 0, 'loss': 1}])
    assert not fid_figure.has_fid(run)
    with pytest.raises(ValueError, match='log: no entry has a Frechet distance'):
        fid_figure.fid_series(run)
    with pytest.raises(ValueError, match='at least one run'):
        fid_figure.fid_against_epoch([])


@pytest.mark.slow  # the fid_runs fixture
def test_the_demo_summary_names_a_missing_detector_run(fid_runs, tmp_path):
    # make demo-cyclegan's last step reads cyclegan/, detector_a/ and detector_c/; the full
    # pass of the target is checked by hand (docs/cyclegan.md), this checks its error.
    import shutil
    from chainer_yolo_dist.analysis import cyclegan_demo
    shutil.copytree(fid_runs[2], str(tmp_path / 'cyclegan'))
    with pytest.raises(FileNotFoundError, match='detector_a: not a run directory'):
        cyclegan_demo.demo_summary(str(tmp_path))
    proc = run_python(['scripts/summarize_cyclegan_demo.py', str(tmp_path)], timeout=60)
    assert proc.returncode == 2 and 'detector_a' in proc.stderr
