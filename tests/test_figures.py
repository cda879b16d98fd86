"""Figures: each names its paper and figure, labels its axes as the paper does, and the
script writes non-empty PNGs, from the published data and from run directories."""
import os
import struct

import pytest

from chainer_yolo_dist.analysis import figures, runs
from conftest import REPO, check, run_python
from test_compare import make_run


def _png_size(path):
    """(width, height) of a PNG, read from its IHDR chunk; fails if it is not a PNG."""
    with open(path, 'rb') as f:
        head = f.read(24)
    assert head[:8] == b'\x89PNG\r\n\x1a\n', path
    return struct.unpack('>II', head[16:24])


def _texts(fig):
    axes = [ax for ax in fig.axes if ax.get_visible()]
    return ([ax.get_title() for ax in axes], [ax.get_xlabel() for ax in axes],
            [ax.get_ylabel() for ax in axes])


@pytest.fixture
def run_dirs(tmp_path):
    root = tmp_path / 'runs'
    make_run(root, 'voc_k1', 1, preset='yolov2_voc_2018', metrics={'map': 0.5},
             seconds_per_epoch=100.0)
    make_run(root, 'voc_k2', 2, preset='yolov2_voc_2018', metrics={'map': 0.48},
             seconds_per_epoch=55.0)
    make_run(root, 'voc_k4', 4, preset='yolov2_voc_2018', seconds_per_epoch=30.0)
    make_run(root, 'dn_k2', 2, preset='darknet53_imagenet_2019', model='darknet53',
             dataset='imagenet', classification=True, metrics={'top1': 0.6})
    return root


def test_published_figures_name_their_paper_and_label_their_axes():
    titles, xlabels, ylabels = _texts(figures.map_vs_gpus())
    assert titles[0].startswith('Paper 000 Table 3') and titles[1].startswith('Paper 001 Table 2')
    assert xlabels[0] == 'Number of GPUs' and ylabels == ['mAP [%]', 'mAP [%]']
    titles, xlabels, ylabels = _texts(figures.speedup_vs_gpus())
    assert titles[0].startswith('Paper 000 Fig. 4') and 'Figs. 5 and 7' in titles[1]
    assert xlabels == ['Number of GPUs'] * 2 and ylabels == ['Speed-up over 1 GPU'] * 2
    titles, _, ylabels = _texts(figures.cost_vs_gpus())
    assert titles[0].startswith('Paper 000 Tables 4, 5') and ylabels[0].startswith('Cost')
    titles, _, _ = _texts(figures.p004_stall_and_communication())
    assert titles[0].startswith('Paper 004 Table 3') and titles[1].startswith('Paper 004 Table 4')


def test_paper_000_speedup_is_dashed_where_accuracy_degraded():
    fig = figures.speedup_vs_gpus()
    lines = {line.get_label().split(':')[0]: line for line in fig.axes[0].get_lines()}
    dashed = lines['Pascal VOC, accuracy degraded']
    assert dashed.get_linestyle() == '--'
    assert list(dashed.get_xdata()) == [64, 128]
    assert lines['Pascal VOC (Table 4)'].get_linestyle() == '-'
    assert list(lines['Pascal VOC (Table 4)'].get_xdata()) == [1, 16, 32, 64]
    assert lines['Pascal VOC (Table 4)'].get_ydata()[-1] == pytest.approx(33124 / 987)


def test_reproduce_figures_writes_the_published_pngs(tmp_path):
    out = tmp_path / 'figs'
    proc = check(run_python(['scripts/reproduce_figures.py', '--out', str(out)], timeout=120))
    assert sorted(os.listdir(out)) == sorted(figures.PUBLISHED_FIGURES)  # no temporary left
    for name in figures.PUBLISHED_FIGURES:
        assert str(out / name) in proc.stdout
        width, height = _png_size(out / name)
        assert width >= 600 and height >= 400
        assert os.path.getsize(out / name) > 10000


def test_committed_figures_are_the_published_set():
    committed = os.path.join(REPO, 'results', 'figures')
    for name in figures.PUBLISHED_FIGURES:
        assert _png_size(os.path.join(committed, name))[0] > 0, name


def test_loss_figure_pairs_one_process_with_each_k(run_dirs):
    voc = [r for r in runs.find_runs([str(run_dirs)]) if r.preset == 'yolov2_voc_2018']
    fig = figures.loss_figure(voc)
    titles, xlabels, ylabels = _texts(fig)
    # η is the base rate (1e-4 for every k), the peak is k times it (paper 000 sec. 4.1);
    # each panel names its run and mode, each curve its run: two runs never read alike.
    assert titles == ['(a) voc_k2\nsync, 1 node, k = 2, η = 0.0001, peak lr = 0.0002',
                      '(b) voc_k4\nsync, 1 node, k = 4, η = 0.0001, peak lr = 0.0004']
    assert set(xlabels) == {'Epoch'} and set(ylabels) == {'Loss (main/loss)'}
    for ax, k in zip(fig.axes, (2, 4)):
        one, many = ax.get_lines()
        assert one.get_color() == figures.BLUE and one.get_label() == 'voc_k1 (sync, 1 process)'
        assert many.get_color() == figures.ORANGE
        assert many.get_label() == 'voc_k%d (sync, %d processes)' % (k, k)
    # Each panel its own y scale: the k = 4 curve (slower to fall) is not clipped.
    for ax in fig.axes:
        top = max(max(line.get_ydata()) for line in ax.get_lines())
        assert ax.get_ylim()[1] >= top


def test_accuracy_figure_draws_train_and_validation(run_dirs):
    dn = [r for r in runs.find_runs([str(run_dirs)]) if r.preset == 'darknet53_imagenet_2019']
    fig = figures.accuracy_figure(dn)
    (ax,) = [a for a in fig.axes if a.get_visible()]
    assert [line.get_label() for line in ax.get_lines()] == ['train', 'validation']
    assert ax.get_ylabel() == 'Accuracy (fraction)'
    assert 'paper 001 Fig. 3' in fig._suptitle.get_text()


def test_measured_speedup_is_the_ratio_of_epoch_times(run_dirs):
    fig = figures.measured_speedup_figure(runs.find_runs([str(run_dirs)]))
    (voc,) = [line for line in fig.axes[0].get_lines()
              if line.get_label().startswith('yolov2_voc_2018 ')]
    assert voc.get_label() == 'yolov2_voc_2018 (16551 images, yolov2, 416 px, n = 16)'
    assert list(voc.get_xdata()) == [1, 2, 4]
    assert list(voc.get_ydata()) == pytest.approx([1.0, 100 / 55, 100 / 30])


def test_speedup_compares_only_runs_of_the_same_data_size(tmp_path):
    # 2 processes on 320 images against 1 on 128 would draw a meaningless speed-up.
    make_run(tmp_path, 'k1', 1, preset='synthetic_demo', n_train=128, seconds_per_epoch=10.0)
    make_run(tmp_path, 'k2', 2, preset='synthetic_demo', n_train=320, seconds_per_epoch=4.0)
    with pytest.raises(ValueError, match='no group of runs has both'):
        figures.measured_speedup_figure(runs.find_runs([str(tmp_path)]))


def test_reproduce_figures_with_runs_writes_measured_pngs(run_dirs, tmp_path):
    out = tmp_path / 'figs'
    proc = check(run_python(['scripts/reproduce_figures.py', '--no-published', '--runs',
                             str(run_dirs), '--out', str(out)], timeout=120))
    expected = ['measured_accuracy_darknet53_imagenet_2019.png',
                'measured_loss_darknet53_imagenet_2019.png',
                'measured_loss_yolov2_voc_2018.png', 'measured_speedup.png']
    assert sorted(os.listdir(out)) == expected
    for name in expected:
        assert _png_size(out / name)[0] >= 400 and str(out / name) in proc.stdout


def test_runs_without_a_one_process_baseline_get_no_speedup_figure(tmp_path):
    make_run(tmp_path, 'k2', 2, preset='yolov3_voc_2019')
    paths, notes = figures.draw_measured(runs.find_runs([str(tmp_path)]), str(tmp_path / 'f'))
    assert [os.path.basename(p) for p in paths] == ['measured_loss_yolov3_voc_2019.png']
    assert notes == ['no speed-up figure: no group of runs has both a 1-process and a '
                     'multi-process run']


def test_reproduce_figures_names_a_bad_run_directory(tmp_path):
    proc = run_python(['scripts/reproduce_figures.py', '--no-published', '--runs',
                       str(tmp_path), '--out', str(tmp_path / 'f')], timeout=120)
    assert proc.returncode == 2 and 'no config.json' in proc.stderr


def test_reproduce_figures_skips_what_is_not_a_run_and_writes_into_the_current_directory(
        tmp_path):
    """``reproduce_figures.py --runs runs/*`` after ordinary use: the FID extractor's file, a
    folder holding only .lock, an earlier figures folder and a run that crashed before its
    first log entry are noted and skipped; the figures go to ./runs/figures-<time>, as the
    training scripts' runs go to ./runs."""
    root = tmp_path / 'runs'
    make_run(root, 'k1', 1, preset='yolov2_voc_2018', metrics={'map': 0.5})
    make_run(root, 'k2', 2, preset='yolov2_voc_2018', metrics={'map': 0.5})
    (root / 'fid_extractor_default.npz').write_bytes(b'weights')
    (root / 'locked').mkdir()
    (root / 'locked' / '.lock').write_text('host 1 0')
    (root / 'figures-20260101-000000').mkdir()
    (root / 'figures-20260101-000000' / 'measured_speedup.png').write_bytes(b'png')
    (root / 'crashed').mkdir()
    (root / 'crashed' / 'config.json').write_text('{"workers": 2}')
    before = set(os.listdir(root))
    proc = check(run_python([os.path.join(REPO, 'scripts', 'reproduce_figures.py'),
                             '--no-published', '--runs'] + sorted(str(p) for p in root.iterdir()),
                            timeout=120, cwd=str(tmp_path)))
    notes = sorted(line for line in proc.stderr.splitlines() if line.startswith('note: '))
    assert notes == sorted([
        'note: skipped %s: a file (the FID feature extractor\'s weights), not a run'
        % (root / 'fid_extractor_default.npz'),
        'note: skipped %s: holds only .lock (a start that failed, or one still starting), '
        'not a run' % (root / 'locked'),
        'note: skipped %s: a folder of figures, not a run' % (root / 'figures-20260101-000000'),
        'note: %s: no log (the run stopped before its first log entry), left out'
        % (root / 'crashed')])
    (made,) = set(os.listdir(root)) - before
    assert made.startswith('figures-')
    assert sorted(os.listdir(root / made)) == ['measured_loss_yolov2_voc_2018.png',
                                               'measured_speedup.png']
    assert proc.stdout.split() == [os.path.join('runs', made, name) for name in
                                   ('measured_loss_yolov2_voc_2018.png',
                                    'measured_speedup.png')]


def test_a_failed_reproduce_figures_leaves_no_folder(tmp_path):
    path = make_run(tmp_path / 'runs', 'k1', 1, preset='yolov2_voc_2018')
    with open(os.path.join(path, 'log'), 'w') as f:  # a log value that is not a number
        f.write('[{"epoch": 0, "iteration": 5, "main/loss": "nan?"}]')
    out = tmp_path / 'figs'
    proc = run_python(['scripts/reproduce_figures.py', '--runs', path, '--out', str(out)],
                      timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith('reproduce_figures.py: error: ')
    assert len(proc.stderr.splitlines()) == 1
    assert sorted(os.listdir(tmp_path)) == ['runs']  # neither figs nor a temporary folder
