"""The papers' figures, redrawn from ``results/published``, and the same plots for our runs.

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot (no global
state, no display needed); :func:`save` writes one to PNG through a temporary file. Each figure
names the paper and figure or table it redraws, and labels its axes as the paper does: "Epoch"
and "Loss" (paper 000 Figs. 2, 3), number of GPUs against the speed-up over one GPU (paper 000
Fig. 4, paper 001 Figs. 5, 7). As in the papers, the one-GPU (one-process) curve is blue and the
k-GPU curve orange; training accuracy blue and validation orange (paper 001 Fig. 3).
"""
import math
import os
import re
import string

from matplotlib.figure import Figure

from chainer_yolo_dist.analysis import fid_figure, published
from chainer_yolo_dist.analysis import runs as runs_lib
from chainer_yolo_dist.analysis.cost import cost
from chainer_yolo_dist.analysis.scaling_system_figures import (p002_speedup_model,
                                                               p004_scaling_model)
from chainer_yolo_dist.core import plotting
from chainer_yolo_dist.core.atomic import save_figure

BLUE = 'tab:blue'
ORANGE = 'tab:orange'
GREEN = 'tab:green'
IDEAL = dict(color='0.5', linestyle=':', linewidth=1.2)
GPUS_LABEL = 'Number of GPUs'
SPEEDUP_LABEL = 'Speed-up over 1 GPU'


def save(fig, path, dpi=100):
    """Writes ``fig`` as PNG to ``path``, atomically; returns ``path``."""
    return save_figure(fig, path, dpi=dpi)


def _gpu_axis(ax, ticks, labels=None):
    """Log-2 x axis with a tick at each GPU count the paper ran."""
    ax.set_xscale('log', base=2)
    ax.set_xticks(ticks)
    ax.set_xticklabels(labels or [str(t) for t in ticks])
    ax.minorticks_off()


def _annotate(ax, xs, ys, fmt, color, dy=6):
    for x, y in zip(xs, ys):
        ax.annotate(fmt % y, (x, y), textcoords='offset points', xytext=(0, dy),
                    ha='center', fontsize=8, color=color)


# ---- published data ------------------------------------------------------------------------

def map_vs_gpus():
    """mAP against GPUs: paper 000 Table 3 (YOLOv2) and paper 001 Table 2 (YOLOv2, YOLOv3)."""
    fig = Figure(figsize=(11, 4.3), layout='constrained')
    left, right = fig.subplots(1, 2)

    t3 = published.table('p000_table3_voc_map')
    gpus = [r['gpus'] for r in t3]
    maps = [r['map_percent'] for r in t3]
    left.plot(gpus, maps, 'o-', color=BLUE, label='YOLOv2, Pascal VOC')
    _annotate(left, gpus, maps, '%.1f', BLUE)
    _gpu_axis(left, gpus)
    left.set_ylim(55, 75)
    left.set_title('Paper 000 Table 3: YOLOv2 on VOC (n = 16 per GPU)')
    left.set_xlabel(GPUS_LABEL)
    left.set_ylabel('mAP [%]')
    left.legend(loc='lower left')
    left.grid(alpha=0.3)

    t2 = published.table('p001_table2_voc_map')
    gpus = [r['gpus'] for r in t2]
    for column, label, color in (('map_yolov3_percent', 'YOLOv3', ORANGE),
                                 ('map_yolov2_percent', 'YOLOv2', BLUE)):
        pts = [(r['gpus'], r[column]) for r in t2 if r[column] is not None]
        xs, ys = zip(*pts)
        right.plot(xs, ys, 'o-', color=color, label=label)
        for x, y in pts:
            # Above for YOLOv3, below for YOLOv2, beside the collapsed YOLOv2 point.
            offset = (0, 6) if label == 'YOLOv3' else ((-16, 2) if y < 10 else (0, -12))
            right.annotate('%.1f' % y, (x, y), textcoords='offset points', xytext=offset,
                           ha='center', fontsize=8, color=color)
    _gpu_axis(right, gpus, ['%d\n(%d)' % (r['gpus'], r['batch']) for r in t2])
    right.set_ylim(0, 90)
    right.set_title('Paper 001 Table 2: YOLOv2 and YOLOv3 on VOC (608 px)')
    right.set_xlabel(GPUS_LABEL + ' (batch size)')
    right.set_ylabel('mAP [%]')
    right.legend(loc='lower left')
    right.grid(alpha=0.3)
    right.annotate('YOLOv2 at 96 GPUs: 0.3 (training collapsed)\n'
                   'YOLOv2 at 128 GPUs: "-" in the paper', (0.03, 0.3),
                   xycoords='axes fraction', ha='left', fontsize=8, color=BLUE)
    return fig


def _speedups_from_times(name):
    rows = published.table(name)
    one = [r['time_s'] for r in rows if r['gpus'] == 1][0]
    return [r['gpus'] for r in rows], [one / r['time_s'] for r in rows]


def _times(gpus, speedups):
    return ', '.join('%.1fx at %d' % (s, g) for g, s in zip(gpus, speedups))


def speedup_vs_gpus():
    """Speed-up against GPUs with the ideal line: paper 000 Fig. 4 (from the times of Tables
    4 and 5; the VOC run whose accuracy degraded, 128 GPUs, dashed as in the paper) and the
    points paper 001 prints for Darknet53 (Fig. 5) and YOLOv3 (Fig. 7)."""
    fig = Figure(figsize=(11, 4.5), layout='constrained')
    left, right = fig.subplots(1, 2)

    gpus, speedup = _speedups_from_times('p000_table4_voc_time_cost')
    # Paper 000 sec. 5.3: accuracy degraded at 128 GPUs on VOC, so that part is dashed.
    degraded = [i for i, g in enumerate(gpus) if g >= 128]
    cut = degraded[0] if degraded else len(gpus)
    # The values go into the legend: at 16 and 32 GPUs the points are too close to label.
    left.plot(gpus[:cut], speedup[:cut], 'o-', color=BLUE,
              label='Pascal VOC (Table 4): ' + _times(gpus[1:cut], speedup[1:cut]))
    if degraded:
        left.plot(gpus[cut - 1:], speedup[cut - 1:], 'o--', color=BLUE,
                  label='Pascal VOC, accuracy degraded: ' + _times(gpus[cut:], speedup[cut:]))
    f_gpus, f_speedup = _speedups_from_times('p000_table5_filmrole_time_cost')
    left.plot(f_gpus, f_speedup, 's-', color=ORANGE,
              label='Filmrole (Table 5): ' + _times(f_gpus[1:], f_speedup[1:]))
    top = max(gpus)
    left.plot([1, top], [1, top], label='ideal', **IDEAL)
    left.set_title('Paper 000 Fig. 4: YOLOv2, speed-up from the times of Tables 4, 5')
    left.set_xlabel(GPUS_LABEL)
    left.set_ylabel(SPEEDUP_LABEL)
    left.set_xticks(gpus)
    left.legend(loc='upper left', fontsize=8)
    left.grid(alpha=0.3)

    rows = published.table('p001_speedups')
    for model, label, color, marker, fig_no in (('darknet53', 'Darknet53, ImageNet', BLUE, 'o',
                                                 'Fig. 5'),
                                                ('yolov3', 'YOLOv3, VOC', ORANGE, 's',
                                                 'Fig. 7')):
        pts = [(r['gpus'], r['speedup']) for r in rows if r['model'] == model]
        xs, ys = zip(*pts)
        # Speed-ups are over one GPU, so (1, 1) is on every curve by definition.
        right.plot((1,) + xs, (1.0,) + ys, marker, color=color, linestyle='none',
                   label='%s (%s)' % (label, fig_no))
        _annotate(right, xs, ys, '%.1fx', color, dy=-14)
    top = max(r['gpus'] for r in rows)
    right.plot([1, top], [1, top], label='ideal', **IDEAL)
    right.set_title('Paper 001 Figs. 5 and 7: the speed-ups the text prints')
    right.set_xlabel(GPUS_LABEL)
    right.set_ylabel(SPEEDUP_LABEL)
    right.set_xticks([1, 64, 96, 128, 256, 512])
    right.legend(loc='upper left', fontsize=8)
    right.grid(alpha=0.3)
    return fig


def cost_vs_gpus():
    """Cost of 100 epochs against GPUs, paper 000 Tables 4 and 5, with the cost model's value
    from each printed time (time / 3600 x nodes x c)."""
    fig = Figure(figsize=(6.5, 4.5), layout='constrained')
    ax = fig.subplots()
    for name, label, color, marker in (('p000_table4_voc_time_cost', 'Pascal VOC (Table 4)',
                                        BLUE, 'o'),
                                       ('p000_table5_filmrole_time_cost',
                                        'Filmrole (Table 5)', ORANGE, 's')):
        rows = published.table(name)
        gpus = [r['gpus'] for r in rows]
        printed = [r['cost_c'] for r in rows]
        ax.plot(gpus, printed, marker + '-', color=color, label=label + ', printed')
        ax.plot(gpus, [cost(r['time_s'], r['gpus']) for r in rows], 'x', color='black',
                markersize=9)
        _annotate(ax, gpus, printed, '%.2fc', color, dy=8)
    ax.plot([], [], 'x', color='black', label='cost model from the printed time')
    _gpu_axis(ax, [1, 16, 32, 64, 128])
    ax.set_ylim(0, 10.5)
    ax.set_title('Paper 000 Tables 4, 5: cost of 100 epochs (no figure in the paper)',
                 fontsize=10)
    ax.set_xlabel(GPUS_LABEL)
    ax.set_ylabel('Cost [c = price of one node-hour]')
    ax.legend(loc='upper right', fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def p004_stall_and_communication():
    """Paper 004 Table 3 (epoch-boundary stall and 10-iteration time against data-loader
    workers, 4 nodes) and Table 4 (compute and communication shares against nodes)."""
    fig = Figure(figsize=(11, 4.3), layout='constrained')
    left, right = fig.subplots(1, 2)

    rows = published.table('p004_table3_workers')
    x = range(len(rows))
    width = 0.38
    stall = [r['stall_s'] for r in rows]
    ten = [r['ten_iterations_s'] for r in rows]
    left.bar([i - width / 2 for i in x], stall, width, color=ORANGE,
             label='stall at each epoch boundary')
    left.bar([i + width / 2 for i in x], ten, width, color=BLUE, label='10 iterations')
    for i, (s, t) in enumerate(zip(stall, ten)):
        left.annotate('%g' % s, (i - width / 2, s), xytext=(0, 2), textcoords='offset points',
                      ha='center', fontsize=8)
        left.annotate('%g' % t, (i + width / 2, t), xytext=(0, 2), textcoords='offset points',
                      ha='center', fontsize=8)
    left.set_xticks(list(x))
    left.set_xticklabels([str(r['workers']) for r in rows])
    left.set_title('Paper 004 Table 3: SlowFast on 4 nodes, data-loader workers')
    left.set_xlabel('Data-loader workers')
    left.set_ylabel('Time [s]')
    left.legend(loc='upper center', fontsize=8)
    left.grid(alpha=0.3, axis='y')

    rows = published.table('p004_table4_compute_comm')
    labels = [str(r['nodes']) for r in rows]
    compute = [r['compute_percent'] for r in rows]
    comm = [r['comm_percent'] for r in rows]
    right.bar(labels, compute, color=BLUE, label='compute')
    right.bar(labels, comm, bottom=compute, color=ORANGE, label='communication')
    for i, (c, m) in enumerate(zip(compute, comm)):
        right.annotate('%.1f%%' % c, (i, c / 2), ha='center', va='center', fontsize=9,
                       color='white')
        right.annotate('%.1f%%' % m, (i, c + m / 2), ha='center', va='center', fontsize=9,
                       color='white')
    right.set_ylim(0, 112)
    right.set_yticks(range(0, 101, 20))
    right.set_title('Paper 004 Table 4: share of compute and communication')
    right.set_xlabel('Nodes (4 GPUs each)')
    right.set_ylabel('Share of time [%]')
    right.legend(loc='upper center', ncol=2, fontsize=8)
    return fig


#: File name in results/figures -> function drawing it from the published data.
PUBLISHED_FIGURES = {
    'p000_p001_map_vs_gpus.png': map_vs_gpus,
    'p000_p001_speedup_vs_gpus.png': speedup_vs_gpus,
    'p000_cost_vs_gpus.png': cost_vs_gpus,
    'p004_stall_and_communication.png': p004_stall_and_communication,
    # The scaling models of papers 002 and 004 beside the published numbers.
    'p002_speedup_model.png': p002_speedup_model,
    'p004_scaling_model.png': p004_scaling_model,
}


def draw_published(out_dir, dpi=100):
    """Draws every figure of :data:`PUBLISHED_FIGURES` into ``out_dir``; returns the paths."""
    return [save(draw(), os.path.join(out_dir, name), dpi)
            for name, draw in PUBLISHED_FIGURES.items()]


# ---- measured runs -------------------------------------------------------------------------

def _panels(n, width=5.5, height=3.8):
    """``n`` panels of one figure, each with its own y scale (a scale shared between panels
    clips or flattens the curves of runs that differ)."""
    ncols = min(n, 2)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(width * ncols, height * nrows + 0.5), layout='constrained')
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.remove()
    return fig, axes[:n]


def _by_size(runs):
    """(the first 1-process run or None, the other runs sorted by process count)."""
    ordered = sorted(runs, key=lambda r: (r.comm_size, r.name))
    base = next((r for r in ordered if r.comm_size == 1), None)
    return base, [r for r in ordered if r is not base]


def _processes(k):
    return '%d process%s' % (k, '' if k == 1 else 'es')


def _mode(run):
    """The run's parallelism mode (config.json; runs from before the modes were sync)."""
    return run.config.get('parallelism') or 'sync'


def _label(run):
    """A curve's legend entry: the run's name, mode and k."""
    return '%s (%s, %s)' % (run.name, _mode(run), _processes(run.comm_size))


def loss_key(run):
    """The loss a run logs: ``main/loss``, or CycleGAN's generator loss ``gen/loss``; None if
    its log holds neither."""
    for key in LOSS_KEYS:
        if any(e.get(key) is not None for e in run.log):
            return key
    return None


#: The logged losses drawn, in order of preference (detection, classification, SlowFast;
#: CycleGAN's generators).
LOSS_KEYS = ('main/loss', 'gen/loss')


def loss_figure(runs, key=None):
    """Loss against epoch, the 1-process run beside each k-process run, one panel per k,
    as paper 000 Figs. 2 and 3. Each panel's title names its run, mode and k, each curve's
    legend its run; each panel has its own y scale.

    Args:
        runs: :class:`~chainer_yolo_dist.analysis.runs.Run` of one preset (or model and
            dataset); the 1-process run is the baseline of every panel.
        key: the logged value to plot (default: :func:`loss_key` of each run).

    Raises:
        ValueError: no runs, or a run's log lacks the key (naming it).
    """
    if not runs:
        raise ValueError('loss_figure needs at least one run')
    base, others = _by_size(runs)
    panels = others or [base]
    fig, axes = _panels(len(panels))
    for letter, ax, run in zip(string.ascii_lowercase, axes, panels):
        drawn = [(base, BLUE)] if base is not None else []
        if run is not base:
            drawn.append((run, ORANGE))
        for member, color in drawn:
            x, y = runs_lib.log_series(member, key or loss_key(member) or LOSS_KEYS[0])
            ax.plot(x, y, color=color, label=_label(member))
        # η is the base rate (the single-worker rate), never the peak.
        title = '(%s) %s\n%s, %d node%s, k = %d, η = %g, peak lr = %g' % (
            letter, run.name, _mode(run), run.nodes, '' if run.nodes == 1 else 's',
            run.comm_size, run.config.get('eta', float('nan')), run.peak_lr)
        plotting.finish(ax, title, 'Epoch', 'Loss (%s)' % (key or loss_key(run)))
        ax.set_xlim(left=0)
        ax.legend(loc='best', fontsize=8)
    if base is not None and others:
        what = '1 process (blue) beside k processes (orange)'
    else:  # no 1-process run to compare with: say so rather than promise its curve
        what = 'no 1-process run among these runs: each panel shows one run'
    fig.suptitle('%s: loss against epoch, as paper 000 Figs. 2 and 3\n%s'
                 % (runs[0].group, what), fontsize=10)
    return fig


def accuracy_figure(runs):
    """Training (blue) and validation (orange) accuracy against epoch, one panel per run
    sorted by process count, as paper 001 Fig. 3. Validation points sit at the epoch of their
    log entry: the training scripts log a validation at the update it was computed after.

    Raises:
        ValueError: no runs, or a run has no ``main/accuracy`` in its log.
    """
    if not runs:
        raise ValueError('accuracy_figure needs at least one run')
    ordered = sorted(runs, key=lambda r: (r.comm_size, r.name))
    fig, axes = _panels(len(ordered))
    for letter, ax, run in zip(string.ascii_lowercase, axes, ordered):
        x, y = runs_lib.log_series(run, 'main/accuracy')
        ax.plot(x, y, color=BLUE, label='train')
        if any(e.get('validation/main/accuracy') is not None for e in run.log):
            x, y = runs_lib.log_series(run, 'validation/main/accuracy')
            ax.plot(x, y, color=ORANGE, label='validation')
        plotting.finish(ax, '(%s) %s\n%s, k = %d, batch size %s'
                        % (letter, run.name, _mode(run), run.comm_size, run.global_batchsize),
                        'Epoch', 'Accuracy (fraction)')
        ax.set_ylim(0, 1)
        ax.set_xlim(left=0)
        ax.legend(loc='best', fontsize=8)
    fig.suptitle('%s: accuracy against epoch, as paper 001 Fig. 3\n'
                 'training (blue) and validation (orange)' % ordered[0].group, fontsize=10)
    return fig


def measured_speedup_figure(runs):
    """Measured speed-up (seconds per epoch of the 1-process run over that of the k-process
    run) against processes, one line per group that has a 1-process run, with the ideal line.

    Raises:
        ValueError: no group has both a 1-process and a multi-process run.
    """
    groups = _speed_groups(runs)
    fig = Figure(figsize=(6.5, 4.5), layout='constrained')
    ax = fig.subplots()
    top = 1
    drawn = 0
    for color, (group, members) in zip((BLUE, ORANGE, GREEN, 'tab:red', 'tab:purple'),
                                       sorted(groups.items())):
        base, others = _by_size(members)
        if base is None or not others:
            continue
        one = runs_lib.seconds_per_epoch(base)
        ks = [1] + [r.comm_size for r in others]
        sp = [1.0] + [one / runs_lib.seconds_per_epoch(r) for r in others]
        ax.plot(ks, sp, 'o-', color=color, label=group)
        # Alternate label sides so that groups measured at the same k stay readable.
        _annotate(ax, ks[1:], sp[1:], '%.2fx', color, dy=-14 if drawn % 2 == 0 else 8)
        top = max(top, max(ks))
        drawn += 1
    if not drawn:
        raise ValueError('no group of runs has both a 1-process and a multi-process run')
    ax.plot([1, top], [1, top], label='ideal', **IDEAL)
    ax.set_ylim(bottom=0)
    ax.set_xticks(sorted({r.comm_size for r in runs}))
    ax.set_title('Measured speed-up, as paper 000 Fig. 4 / paper 001 Figs. 5, 7', fontsize=10)
    ax.set_xlabel('Number of processes (GPUs in the papers)')
    ax.set_ylabel('Speed-up over 1 process (time per epoch)')
    ax.legend(loc='upper left', fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def _by_group(runs):
    groups = {}
    for run in runs:
        groups.setdefault(run.group, []).append(run)
    return groups


def _speed_groups(runs):
    """Runs that may be compared for speed: same preset, data size, model, input and
    per-worker batch (a different training set would make 'time per epoch' mean another
    thing). Keyed by a readable label."""
    groups = {}
    for run in runs:
        r = run.recipe
        key = '%s (%s images, %s, %s px, n = %s)' % (run.group, r.get('n_train', '?'),
                                                     r.get('model', '?'), r.get('insize', '?'),
                                                     r.get('batchsize_per_gpu', '?'))
        groups.setdefault(key, []).append(run)
    return groups


def _safe(name):
    return re.sub(r'[^A-Za-z0-9_.-]+', '_', name)


def draw_measured(runs, out_dir, dpi=100):
    """Draws the measured-run figures into ``out_dir``.

    Per group of runs (same preset, else same model and dataset): ``measured_loss_GROUP.png``
    (``main/loss``, or CycleGAN's ``gen/loss``), ``measured_accuracy_GROUP.png`` for
    classification runs (``main/accuracy`` logged) and ``measured_fid_GROUP.png`` for CycleGAN
    runs (``fid`` logged: paper 002 Fig. 6's form,
    :func:`~chainer_yolo_dist.analysis.fid_figure.fid_against_epoch`); for all groups with a
    1-process run: ``measured_speedup.png``. A run with no log yet (stopped before its first
    log entry) is left out with a note.

    Returns:
        (paths written, notes on runs and figures skipped and why).
    """
    paths, notes = [], []
    logged = []
    for run in runs:
        if run.log:
            logged.append(run)
        else:
            notes.append('%s: no log (the run stopped before its first log entry), left out'
                         % run.path)
    for group, members in sorted(_by_group(logged).items()):
        with_loss = [r for r in members if loss_key(r)]
        if with_loss:
            paths.append(save(loss_figure(with_loss),
                              os.path.join(out_dir, 'measured_loss_%s.png' % _safe(group)), dpi))
        else:
            notes.append('%s: no loss logged, no loss figure' % group)
        with_accuracy = [r for r in members
                         if any(e.get('main/accuracy') is not None for e in r.log)]
        if with_accuracy:
            paths.append(save(accuracy_figure(with_accuracy),
                              os.path.join(out_dir, 'measured_accuracy_%s.png'
                                           % _safe(group)), dpi))
        with_fid = [r for r in members if fid_figure.has_fid(r)]
        if with_fid:
            paths.append(save(fid_figure.fid_against_epoch(with_fid),
                              os.path.join(out_dir, 'measured_fid_%s.png' % _safe(group)), dpi))
    try:
        fig = measured_speedup_figure(logged)
    except ValueError as e:
        notes.append('no speed-up figure: %s' % e)
    else:
        paths.append(save(fig, os.path.join(out_dir, 'measured_speedup.png'), dpi))
    return paths, notes
