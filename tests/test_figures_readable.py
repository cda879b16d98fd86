"""Every figure the package draws reads from the first short run (10 iterations): every axis
has tick labels and a label, every axis a title (its own or the figure's), and every plotted
series at least one visible point inside the axes.

Figures are caught where they are written (a hook on ``Figure.savefig``) and checked after
drawing, with matplotlib's own objects: the tick labels it drew, the lines' data against the
limits, the markers."""
import os
import re
import shutil
import types

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from chainer_yolo_dist.analysis import figures, fid_figure, runs
from conftest import REPO
from test_compare import make_run


def _line_visible(ax, line):
    """A point drawn as a marker inside the axes, or a segment whose two ends are inside
    (in display coordinates: reference lines such as ``axhline`` span the axes' width)."""
    x = np.atleast_1d(np.asarray(line.get_xdata(), dtype=float))
    y = np.atleast_1d(np.asarray(line.get_ydata(), dtype=float))
    finite = np.isfinite(x) & np.isfinite(y)
    points = line.get_transform().transform(np.column_stack([np.where(finite, x, 0),
                                                             np.where(finite, y, 0)]))
    x0, y0, x1, y1 = ax.bbox.extents
    tol = 0.5  # a point on the frame is drawn
    inside = [bool(f) and x0 - tol <= px <= x1 + tol and y0 - tol <= py <= y1 + tol
              for f, (px, py) in zip(finite, points)]
    if line.get_marker() not in (None, 'None', '', ' ') and any(inside):
        return True
    return any(a and b for a, b in zip(inside, inside[1:]))


def problems(fig):
    """What makes ``fig`` unreadable, as a list of strings (empty: readable)."""
    FigureCanvasAgg(fig).draw()
    found = []
    suptitle = fig._suptitle.get_text() if fig._suptitle is not None else ''
    for ax in fig.axes:
        if not ax.get_visible() or not ax.axison:
            continue  # a picture (sample grids draw images without axes)
        twin = [o for o in fig.axes if o is not ax and o.bbox.bounds == ax.bbox.bounds]
        title = ax.get_title() or ''.join(o.get_title() for o in twin) or suptitle
        name = title or '<untitled>'
        if not title:
            found.append('an axis without a title')
        checks = [('y', ax.get_yticklabels(), ax.get_ylabel())]
        if not any(fig.axes.index(o) < fig.axes.index(ax) for o in twin):
            checks.append(('x', ax.get_xticklabels(), ax.get_xlabel()))
        for axis, labels, label in checks:
            if not [t for t in labels if t.get_text().strip() and t.get_visible()]:
                found.append('%s: no %s tick labels' % (name, axis))
            if not label:
                found.append('%s: no %s label' % (name, axis))
        for line in ax.get_lines():
            if len(np.atleast_1d(line.get_xdata())) and not _line_visible(ax, line):
                found.append('%s: series %r has no visible point' % (name, line.get_label()))
    return found


@pytest.fixture
def saved(monkeypatch):
    """Every figure written through ``Figure.savefig`` while the test runs, with its path."""
    written = []
    original = Figure.savefig

    def savefig(fig, path, *args, **kwargs):
        # core.atomic writes DIR/.tmp-NAME.XXXX.png, then renames it to DIR/NAME
        folder, name = os.path.split(str(path))
        written.append((os.path.join(folder, re.sub(r'^\.tmp-(.+)\.[^.]+\.png$', r'\1', name)),
                        fig))
        return original(fig, path, *args, **kwargs)

    monkeypatch.setattr(Figure, 'savefig', savefig)
    return written


def _assert_readable(saved, at_least=1):
    assert len(saved) >= at_least, [p for p, _ in saved]
    bad = {os.path.basename(path): problems(fig) for path, fig in saved}
    bad = {k: v for k, v in bad.items() if v}
    assert not bad, '\n'.join('%s: %s' % (k, '; '.join(v)) for k, v in bad.items())


class _Updater(object):
    def __init__(self, per_epoch):
        self.iteration, self.per_epoch = 0, per_epoch

    @property
    def epoch(self):
        return self.iteration // self.per_epoch

    @property
    def epoch_detail(self):
        return self.iteration / float(self.per_epoch)

    @property
    def previous_epoch_detail(self):
        return (self.iteration - 1) / float(self.per_epoch)


def _drive(plot, tmp_path, keys, iterations=10, per_epoch=100):
    """Feeds ``plot`` (a Chainer PlotReport) ``iterations`` updates of observations ``keys``
    as a trainer would; returns the trainer stand-in."""
    trainer = types.SimpleNamespace(updater=_Updater(per_epoch), out=str(tmp_path),
                                    is_before_training=False, observation={})
    for i in range(1, iterations + 1):
        trainer.updater.iteration = i
        trainer.observation = {k: 0.9 / (1 + 0.1 * i) + 0.05 * j for j, k in enumerate(keys)}
        plot(trainer)
    return trainer


@pytest.mark.parametrize('log_interval', [5, 10])
def test_loss_png_of_a_ten_iteration_run(saved, tmp_path, log_interval):
    """loss.png of YOLO, SlowFast (reporting.loss_plot) and CycleGAN (the same postprocess):
    one or two logged points in a tenth of an epoch."""
    from chainer_yolo_dist.core import reporting
    settings = types.SimpleNamespace(
        log_interval=log_interval, parallelism='sync', workers=2,
        preset=types.SimpleNamespace(model='yolov3_small', peak_lr=0.001))
    keys = ('main/loss', 'main/loss/box')
    _drive(reporting.loss_plot(keys, settings, 100), tmp_path, keys)
    _assert_readable(saved)
    fig = saved[-1][1]
    assert fig.axes[0].get_title() == 'yolov3_small, sync, k = 2, lr = 0.001'
    assert fig.axes[0].get_xlabel() == 'epoch'


def test_classification_plots_after_one_epoch(saved, tmp_path):
    from chainer.training import extensions
    from chainer_yolo_dist.core import reporting
    plot = extensions.PlotReport(['main/accuracy'], 'epoch', trigger=(1, 'epoch'),
                                 filename='accuracy.png',
                                 postprocess=reporting.titled('darknet19, sync, k = 2',
                                                              'accuracy', (0, 1)))
    _drive(plot, tmp_path, ['main/accuracy'], iterations=10, per_epoch=10)
    _assert_readable(saved)


def test_cyclegan_fid_curve_and_labelled_sample_sheet(saved, tmp_path):
    from chainer_yolo_dist.core import atomic
    from chainer_yolo_dist.cyclegan import evaluation
    atomic.save_figure(evaluation.fid_curve_figure([(0.1, 5.0)], 6.0, 'CycleGAN, k = 2'),
                       str(tmp_path / 'fid.png'))
    images = np.random.RandomState(0).uniform(-1, 1, (4, 3, 16, 16)).astype(np.float32)
    fig = evaluation.sample_sheet_figure([images] * 3, evaluation.SAMPLE_ROWS, 'samples')
    atomic.save_figure(fig, str(tmp_path / 'samples.png'))
    _assert_readable(saved, 2)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == list(evaluation.SAMPLE_ROWS)


def _ten_iteration_runs(root):
    """Two detection runs and a classification run of 10 iterations (2 log entries each)."""
    make_run(root, 'voc_k1', 1, preset='yolov2_voc_2018', epochs=1, metrics={'map': 0.1})
    make_run(root, 'voc_k2', 2, preset='yolov2_voc_2018', epochs=1, metrics={'map': 0.1},
             seconds_per_epoch=6.0)
    make_run(root, 'dn_k2', 2, preset='darknet53_imagenet_2019', model='darknet53',
             dataset='imagenet', classification=True, epochs=1, metrics={'top1': 0.1})
    path = make_run(root, 'gan_k2', 2, preset='cyclegan_demo', model='cyclegan_resnet',
                    epochs=1, metrics={'fid': 4.0})
    log = runs.load_run(path).log
    log[-1].update({'fid': 4.0, 'fid/epoch': 1.0})
    import json
    with open(os.path.join(path, 'log'), 'w') as f:
        json.dump(log, f)


def test_reproduce_figures_panels(saved, tmp_path):
    _ten_iteration_runs(tmp_path / 'runs')
    found = runs.find_runs([str(tmp_path / 'runs')])
    paths, notes = figures.draw_measured(found, str(tmp_path / 'out'))
    assert {os.path.basename(p) for p in paths} >= {
        'measured_loss_yolov2_voc_2018.png', 'measured_accuracy_darknet53_imagenet_2019.png',
        'measured_fid_cyclegan_demo.png', 'measured_speedup.png'}
    _assert_readable(saved, 4)
    # The two runs are told apart by name and mode in the panel and in the legend.
    fig = dict(saved)[str(tmp_path / 'out' / 'measured_loss_yolov2_voc_2018.png')]
    ax = fig.axes[0]
    assert 'voc_k2' in ax.get_title() and 'sync' in ax.get_title()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        'voc_k1 (sync, 1 process)', 'voc_k2 (sync, 2 processes)']


def test_published_figures(saved, tmp_path):
    figures.draw_published(str(tmp_path))
    _assert_readable(saved, len(figures.PUBLISHED_FIGURES))


@pytest.mark.parametrize('folder,report', [('study', 'study_report'),
                                           ('parallelism', 'parallelism_report')])
def test_study_figures_from_the_committed_runs(saved, tmp_path, folder, report):
    """The studies' figures from their committed records (runs of many epochs, two of them
    diverged): each panel its own scale, the divergence marked, nothing flattened."""
    import importlib
    src = os.path.join(REPO, 'results', 'runs', folder)
    shutil.copytree(src, str(tmp_path / folder))
    importlib.import_module('chainer_yolo_dist.analysis.' + report).write_report(
        str(tmp_path / folder))
    _assert_readable(saved, 3)
    if folder == 'study':  # the diverged runs set no common scale: each panel its own
        fig = dict(saved)[str(tmp_path / 'study' / 'study_loss.png')]
        assert len({ax.get_ylim()[1] for ax in fig.axes}) > 1
        assert [ax for ax in fig.axes for line in ax.get_lines()
                if line.get_label().startswith('diverged at iteration')]


def test_fid_figure_of_one_short_run(saved, tmp_path):
    _ten_iteration_runs(tmp_path / 'runs')
    run = runs.load_run(str(tmp_path / 'runs' / 'gan_k2'))
    from chainer_yolo_dist.core import atomic
    atomic.save_figure(fid_figure.fid_against_epoch([run]), str(tmp_path / 'fid.png'))
    _assert_readable(saved)
