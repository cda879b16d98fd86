"""The data-parallelism study's figures (parallelism_report.py writes them).

- ``parallelism_accuracy.png``: validation top-1 against the trainer's elapsed seconds, one
  panel per k, one curve per variant, the target as a dotted line.
- ``parallelism_throughput.png``: images/s against k, one line per variant; filled markers
  where the run's processes fit the study's ranks (one core each), hollow where they
  oversubscribe them.
- ``parallelism_staleness.png``: share of the applied gradients against their staleness (in
  server versions) for every ``async`` run, with ``stale``'s constant 1 for reference.
"""
import math
import os

from matplotlib.figure import Figure

from chainer_yolo_dist.analysis.figures import IDEAL, save
from chainer_yolo_dist.analysis.study_data import accuracy_curve, staleness_histogram

#: One colour per variant, in the order of study_parallelism.VARIANTS.
COLORS = {'sync': 'tab:blue', 'sync-lars': 'tab:purple', 'async': 'tab:red',
          'local': 'tab:green', 'stale': 'tab:orange'}


def draw(out, pairs, rows, target, max_ranks, dpi=100):
    """Draws the three figures into ``out``; returns their paths."""
    return [save(accuracy_figure(pairs, target), os.path.join(out, 'parallelism_accuracy.png'),
                 dpi),
            save(throughput_figure(rows, max_ranks),
                 os.path.join(out, 'parallelism_throughput.png'), dpi),
            save(staleness_figure(pairs), os.path.join(out, 'parallelism_staleness.png'), dpi)]


def _color(variant):
    return COLORS.get(variant, 'black')


def accuracy_figure(pairs, target):
    ks = sorted({e['workers'] for e, r in pairs if r is not None})
    ncols = max(1, min(3, len(ks)))
    nrows = max(1, math.ceil(len(ks) / ncols))
    fig = Figure(figsize=(4.6 * ncols, 3.6 * nrows + 0.4), layout='constrained')
    # Each panel labels its own y axis (the limits are the same: accuracy from 0 to 1).
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[len(ks):]:
        ax.remove()
    for ax, k in zip(axes, ks):
        for entry, run in pairs:
            if run is None or entry['workers'] != k:
                continue
            seconds, top1 = accuracy_curve(run)
            ax.plot(seconds, top1, 'o-', ms=3, color=_color(entry['variant']),
                    label='%s (%s)' % (entry['variant'], entry['how']))
        ax.axhline(target, label='target %g' % target, **IDEAL)
        ax.set_title('k = %d worker%s' % (k, '' if k == 1 else 's'), fontsize=10)
        ax.set_xlabel('wall time of the training loop [s]')
        ax.set_ylabel('validation top-1')
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc='best')
    if not ks:
        axes[0].text(0.5, 0.5, 'no run left a log', transform=axes[0].transAxes, ha='center')
    fig.suptitle('Validation accuracy against wall time, per mode', fontsize=11)
    return fig


def throughput_figure(rows, max_ranks):
    fig = Figure(figsize=(6.4, 4.4), layout='constrained')
    ax = fig.subplots()
    variants = []
    for r in rows:
        if r['variant'] not in variants:
            variants.append(r['variant'])
    for variant in variants:
        points = sorted((r['workers'], r['images_per_second'], r['processes']) for r in rows
                        if r['variant'] == variant and r['images_per_second'])
        if not points:
            continue
        color = _color(variant)
        ax.plot([p[0] for p in points], [p[1] for p in points], '-', color=color,
                label=variant)
        for k, ips, processes in points:
            ax.plot(k, ips, 'o', color=color,
                    markerfacecolor=color if processes <= max_ranks else 'white')
    ks = sorted({r['workers'] for r in rows})
    if ks:
        ax.set_xscale('log', base=2)
        ax.set_xticks(ks)
        ax.set_xticklabels([str(k) for k in ks])
        ax.minorticks_off()
    ax.set_xlabel('workers k (filled: at most %d processes; hollow: more, sharing the cores)'
                  % max_ranks)
    ax.set_ylabel('images per second (all workers)')
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title('Throughput against k, per mode', fontsize=11)
    if not any(r['images_per_second'] for r in rows):
        ax.text(0.5, 0.5, 'no throughput measured', transform=ax.transAxes, ha='center')
    return fig


def staleness_figure(pairs):
    fig = Figure(figsize=(6.4, 4.4), layout='constrained')
    ax = fig.subplots()
    shown = [(e, staleness_histogram(e, r)) for e, r in pairs
             if r is not None and e['mode'] in ('async', 'stale')]
    shown = [(e, h) for e, h in shown if h]
    width = 0.8 / max(len(shown), 1)
    for i, (entry, hist) in enumerate(shown):
        total = sum(hist.values())
        xs = sorted(hist)
        ax.bar([x - 0.4 + width * (i + 0.5) for x in xs], [hist[x] / total for x in xs],
               width=width, color=_color(entry['variant']),
               alpha=0.35 + 0.65 * (i + 1) / len(shown),
               label='%s, k = %d (%d updates)' % (entry['variant'], entry['workers'], total))
    ax.set_xlabel('staleness of the applied gradient [server versions]')
    ax.set_ylabel('share of the applied gradients')
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3, axis='y')
    if shown:
        ax.legend(fontsize=8)
        top = max(max(h) for _, h in shown)
        ax.set_xticks(range(0, top + 1, max(1, (top + 1) // 12)))
    else:
        ax.text(0.5, 0.5, 'no async or stale run', transform=ax.transAxes, ha='center')
    ax.set_title('Staleness of the applied gradients', fontsize=11)
    return fig
