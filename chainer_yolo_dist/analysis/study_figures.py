"""The scaling study's figures (study.py runs the study, study_report.py reads it).

- ``study_loss.png``: paper 000 Figs. 2/3, loss against epoch, one panel per run with k > 1,
  the 1-worker run in blue beside the k-worker run in orange, each panel on its own y axis
  (a diverged run's losses beyond the axis are marked at its top edge, not allowed to flatten
  the rest). The papers' axis is linear from 0 to 2; the CPU model's loss starts hundreds of
  times above where it ends, so the axis here is logarithmic (the curves are means over
  quarter epochs).
- ``study_map.png``: paper 000 Table 3 / paper 001 Table 2 as a figure: final mAP against k
  and against the global batch's share of the training set, with the papers' 7% (000) and
  9% (001) lines, and the published VOC points on a second y axis (another dataset).
- ``study_speedup.png``: speed-up and efficiency against real ranks, measured and as
  ``analysis/scaling.py``'s model predicts them, with the ideal line.
"""
import math
import os
import string

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from chainer_yolo_dist.analysis import published
from chainer_yolo_dist.analysis.figures import BLUE, IDEAL, ORANGE, save
from chainer_yolo_dist.analysis.study_data import binned_loss
from chainer_yolo_dist.core import plotting, presets

#: The papers' limits on the global batch as a share of the training set.
LIMITS = ((7.0, 'paper 000: 7%'), (9.0, 'paper 001: 9%'))
#: Colours and markers of the study's variants (the main series is blue).
VARIANT_STYLE = {'without warmup': ('tab:green', '^', 0.93),
                 'square-root rule': ('tab:purple', 's', 1.07)}
PUBLISHED_COLOR = '0.45'
PLOT_BINS_PER_EPOCH = 4


def draw(out, pairs, rows, speedups, dpi=100):
    """Draws the three figures into ``out``; returns their paths."""
    paths = []
    with_runs = [(e, r) for e, r in pairs if r is not None and r.log]
    if with_runs:
        paths.append(save(loss_figure(with_runs), os.path.join(out, 'study_loss.png'), dpi))
    paths.append(save(map_figure(rows), os.path.join(out, 'study_map.png'), dpi))
    paths.append(save(speedup_figure(speedups), os.path.join(out, 'study_speedup.png'), dpi))
    return paths


def _curve(run):
    bins = binned_loss(run, PLOT_BINS_PER_EPOCH)
    return ([(b + 0.5) / PLOT_BINS_PER_EPOCH for b in bins], list(bins.values()))


def loss_figure(pairs):
    """Paper 000 Figs. 2/3 from ``pairs`` of (study.json entry, Run). Each panel has its own
    y scale, set by its curves; a diverged run's losses past ten times the panel's other
    values are left outside the axis, marked at its top edge, so that the divergence does not
    flatten the curves it would share a scale with."""
    base = next((r for e, r in pairs if e['workers'] == 1), None)
    panels = [(e, r) for e, r in pairs if r is not base] or pairs
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(4.6 * ncols, 3.5 * nrows + 0.6), layout='constrained')
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[len(panels):]:
        ax.remove()
    for letter, ax, (entry, run) in zip(string.ascii_lowercase, axes, panels):
        values = []
        if base is not None:
            x, y = _curve(base)
            ax.plot(x, y, color=BLUE, linewidth=1.2, label='1 worker')
            values += y
        diverged = None
        if run is not base:
            x, y = _curve(run)
            ax.plot(x, y, color=ORANGE, linewidth=1.2, label='%d workers' % entry['workers'])
            if entry.get('diverged_at') and x:
                diverged = (x, y)
            else:
                values += y
        _log_scale(ax, values, diverged, entry)
        share = run.recipe.get('batch_fraction')
        title = '(%s) k = %d%s' % (letter, entry['workers'],
                                   '' if entry['variant'] == 'linear rule, warmup'
                                   else ', ' + entry['variant'])
        detail = 'batch %s%s, peak lr %.3g' % (
            run.global_batchsize, '' if share is None else ' (%.1f%%)' % (100 * share),
            run.peak_lr)
        plotting.finish(ax, '%s\n%s' % (title, detail), 'Epoch', 'Loss (log scale)')
        ax.set_xlim(left=0)
        ax.grid(alpha=0.3, which='both')
        ax.legend(loc='best', fontsize=8)
    fig.suptitle('Loss against epoch, as paper 000 Figs. 2 and 3: 1 worker (blue) beside k '
                 'workers (orange)\nmean over quarter epochs; each panel its own y scale',
                 fontsize=10)
    return fig


def _log_scale(ax, values, diverged, entry):
    """A log y axis spanning ``values`` (and the diverged curve up to ten times their top),
    with ticks labelled plainly (10, 20, 50, ...; every integer multiple within a decade);
    a diverged curve's last point marked at the top edge when it lies beyond."""
    finite = [v for v in values if v > 0 and math.isfinite(v)]
    if diverged is not None:
        x, y = diverged
        cap = 10 * max(finite) if finite else float('inf')
        finite += [v for v in y if 0 < v <= cap and math.isfinite(v)]
    ax.set_yscale('log')
    if finite:
        lo, hi = min(finite), max(finite)
        ax.set_ylim(lo / 1.3, hi * 1.3)
    lo, hi = ax.get_ylim()
    subs = (1, 2, 5) if hi / lo > 10 else tuple(range(1, 10))
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=subs))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: '%g' % v))
    ax.yaxis.set_minor_formatter(NullFormatter())
    if diverged is not None:
        x, y = diverged
        beyond = not (math.isfinite(y[-1]) and y[-1] <= hi)
        ax.plot(x[-1], min(y[-1], hi) if math.isfinite(y[-1]) else hi, 'x', color='tab:red',
                markersize=9, clip_on=False,
                label='diverged at iteration %d%s' % (entry['diverged_at'],
                                                      ' (loss beyond the axis)' if beyond
                                                      else ''))


def _published_points():
    """[(label, marker, [(gpus, share %, mAP %)])] of paper 000 Table 3 and 001 Table 2."""
    voc = presets.load('yolov2_voc_2018', 1)
    n = voc.batchsize_per_gpu
    t3 = [(r['gpus'], 100.0 * r['gpus'] * n / voc.n_train, r['map_percent'])
          for r in published.table('p000_table3_voc_map')]
    t2 = published.table('p001_table2_voc_map')
    v3 = [(r['gpus'], 100.0 * r['batch'] / voc.n_train, r['map_yolov3_percent'])
          for r in t2 if r['map_yolov3_percent'] is not None]
    v2 = [(r['gpus'], 100.0 * r['batch'] / voc.n_train, r['map_yolov2_percent'])
          for r in t2 if r['map_yolov2_percent'] is not None]
    return [('paper 000 Table 3: YOLOv2', 'D', '--', t3),
            ('paper 001 Table 2: YOLOv3', 'v', ':', v3),
            ('paper 001 Table 2: YOLOv2', '<', '-.', v2)]


def map_figure(rows):
    """Final mAP against k (left) and against the batch share (right), from the study table
    ``rows``; the papers' VOC points on each panel's second y axis."""
    fig = Figure(figsize=(13, 5.2), layout='constrained')
    left, right = fig.subplots(1, 2)
    main = [r for r in rows if r['variant'] == 'linear rule, warmup']
    others = [r for r in rows if r['variant'] != 'linear rule, warmup']
    handles = []
    for ax, key in ((left, 'workers'), (right, 'batch_share_percent')):
        pts = [(r[key], r['map_percent']) for r in main
               if r[key] is not None and r['map_percent'] is not None]
        if pts:
            xs, ys = zip(*pts)
            line, = ax.plot(xs, ys, 'o-', color=BLUE, label='measured: linear rule, warmup')
            for x, y in pts:
                ax.annotate('%.1f' % y, (x, y), textcoords='offset points', xytext=(0, 7),
                            ha='center', fontsize=8, color=BLUE)
            if ax is left:
                handles.append(line)
        for r in others:
            if r[key] is None or r['map_percent'] is None:
                continue
            # Each ablation sits a little to one side of its k, so that none hides another.
            color, marker, shift = VARIANT_STYLE.get(r['variant'], ('tab:brown', 'P', 1.0))
            h = ax.plot(r[key] * shift, r['map_percent'], marker, color=color, markersize=8,
                        linestyle='none', label='measured: k = %d %s' % (r['workers'],
                                                                         r['variant']))[0]
            if ax is left:
                handles.append(h)
        diverged = [r for r in rows if r['status'] == 'diverged' and r[key] is not None]
        for r in diverged:
            shift = VARIANT_STYLE.get(r['variant'], (None, None, 1.0))[2]
            h = ax.plot(r[key] * shift, 0, 'x', color='tab:red', markersize=10, mew=2,
                        linestyle='none', label='diverged (plotted at 0), with its iteration')[0]
            # Stacked above the point when several runs diverged at the same k.
            level = sum(1 for o in diverged[:diverged.index(r)] if o[key] == r[key])
            ax.annotate('it. %d' % r['diverged_at_iteration'], (r[key] * shift, 0),
                        textcoords='offset points', xytext=(0, 9 + 10 * level), ha='center',
                        fontsize=7, color='tab:red')
            if ax is left and not any(x.get_label() == h.get_label() for x in handles):
                handles.append(h)
        ax.set_ylim(-3, 105)
        ax.set_ylabel('measured mAP [%] (synthetic shapes)')
        ax.grid(alpha=0.3)
        twin = ax.twinx()
        for label, marker, style, points in _published_points():
            x = [p[0] if key == 'workers' else p[1] for p in points]
            h = twin.plot(x, [p[2] for p in points], marker + style, color=PUBLISHED_COLOR,
                          markerfacecolor='none', linewidth=1,
                          label='published, Pascal VOC: ' + label)[0]
            if ax is left:
                handles.append(h)
        twin.set_ylim(-3, 105)
        twin.set_ylabel('published mAP [%], Pascal VOC: ANOTHER DATASET', color=PUBLISHED_COLOR)
        twin.tick_params(axis='y', colors=PUBLISHED_COLOR)
        ax.set_xscale('log', base=2)
        ax.minorticks_off()
    ticks = sorted({r['workers'] for r in rows} | {1, 8, 16, 32, 64, 96, 128})
    left.set_xticks(ticks)
    left.set_xticklabels([str(t) for t in ticks])
    left.set_xlabel('k: workers here, GPUs in the papers')
    left.set_title('mAP against k (paper 000 Table 3, paper 001 Table 2)', fontsize=10)
    shares = [0.5, 1, 2, 4, 8, 16, 32]  # the 7% and 9% lines are named in the legend
    right.set_xticks(shares)
    right.set_xticklabels(['%g%%' % s for s in shares])
    for share, label in LIMITS:
        h = right.axvline(share, color='tab:red' if share == 7 else 'tab:orange',
                          linestyle='--', linewidth=1, label='limit of ' + label)
        handles.append(h)
    right.set_xlabel('global batch as a share of the training set (n * k / N)')
    right.set_title('mAP against the batch share, with the papers\' limits', fontsize=10)
    fig.legend(handles=handles, loc='outside lower center', ncol=3, fontsize=8)
    return fig


def speedup_figure(rows):
    """Speed-up and efficiency against real ranks: measured (filled, labelled with k) and
    the model's (hollow), with the ideal line."""
    fig = Figure(figsize=(11, 4.6), layout='constrained')
    left, right = fig.subplots(1, 2)
    top = max([r['ranks'] for r in rows] + [2])
    for ax, key, model_key, ylabel in (
            (left, 'speedup', 'predicted_speedup', 'speed-up over the 1-worker run'),
            (right, 'efficiency', None, 'efficiency: speed-up / real ranks [%]')):
        scale = 100.0 if key == 'efficiency' else 1.0
        for i, r in enumerate(rows):
            # Runs at the same rank count are spread sideways, in the order of k, and
            # labelled below, so that equal speed-ups stay readable.
            same = [o for o in rows if o['ranks'] == r['ranks']]
            j = same.index(r)
            x = r['ranks'] + (0.0 if len(same) == 1 else 0.6 * (j / (len(same) - 1) - 0.5))
            ax.plot(x, scale * r[key], 'o', color=BLUE,
                    label='measured' if i == 0 else None)
            ax.annotate('k=%d' % r['workers'], (x, scale * r[key]), textcoords='offset points',
                        xytext=(0, -13), ha='center', fontsize=7, color=BLUE)
            predicted = r['predicted_speedup']
            if predicted is not None:
                value = predicted if model_key else predicted / r['ranks']
                ax.plot(x, scale * value, 'o', color=ORANGE, markerfacecolor='none',
                        label='model (analysis/scaling.py)' if i == 0 else None)
        ideal = [1, top]
        ax.plot(ideal, ideal if key == 'speedup' else [100, 100], label='ideal', **IDEAL)
        for ranks in {r['ranks'] for r in rows if r['ranks'] > 1}:
            # The ideal across the spread-out runs of that rank count.
            level = ranks if key == 'speedup' else 100
            ax.plot([ranks - 0.3, ranks + 0.3], [level, level], **IDEAL)
        ax.set_xticks(range(1, top + 1))
        ax.set_xlim(0.5, top + 0.5)
        ax.set_xlabel('real MPI ranks (one core each)')
        ax.set_ylabel(ylabel)
        # Up to the highest point drawn (a model above the ideal is not cut off).
        drawn = [v for line in ax.get_lines() for v in line.get_ydata()
                 if math.isfinite(v)]
        ax.set_ylim(0, max([(top + 0.3) if key == 'speedup' else 115]
                           + [1.08 * v for v in drawn]))
        ax.grid(alpha=0.3)
        ax.legend(loc='lower right' if key == 'speedup' else 'lower left', fontsize=8)
    left.set_title('Speed-up (images/s over the 1-worker run)', fontsize=10)
    right.set_title('Efficiency', fontsize=10)
    if not rows:
        left.text(0.5, 0.5, 'no throughput measured', transform=left.transAxes, ha='center')
    return fig
