"""Paper 002 Fig. 6's form: the Frechet distance of generated images against epoch, one curve
per process count, from CycleGAN run directories (``scripts/train_cyclegan.py``).

Paper 002 Fig. 6 plots FID against epoch for 4 GPUs (black), 256 (green) and 512 (red); its
text gives the values after 200 epochs, 221.0, 269.2 and 270.7 (``results/published/
p002_scaling_fid.csv``). Those are Inception-v3 FIDs of SYNTHIA crops translated to DeepDrive's
style; a run here measures with its own extractor on its own data (the default extractor's
distances are not FIDs at all, ``cyclegan/features.py``), so the published values get a panel
of their own, titled as another extractor and data set, never an axis shared with the runs.

A run's points are its log's entries with ``fid``; x is ``fid/epoch`` (the epoch of the
measurement, :class:`~chainer_yolo_dist.cyclegan.evaluation.FrechetExtension`), else the
entry's epoch. The dashed line of each run is the untranslated A's distance to B
(``metrics.json``'s or ``config.json``'s ``fid_baseline``).
"""
from matplotlib.figure import Figure

from chainer_yolo_dist.analysis import published
from chainer_yolo_dist.analysis import runs as runs_lib

PUBLISHED = 'p002_scaling_fid'
#: Paper 002 Fig. 6's colours: 4 GPUs black, 256 green, 512 red.
PAPER_COLOURS = {4: 'black', 256: 'tab:green', 512: 'tab:red'}
_OTHER_COLOURS = ('tab:blue', 'tab:orange', 'tab:purple', 'tab:brown', 'tab:olive', 'tab:cyan')


def has_fid(run):
    """Whether ``run``'s log holds at least one Frechet distance."""
    return any(e.get('fid') is not None for e in run.log)


def fid_series(run):
    """``(epochs, distances)`` of ``run``'s logged Frechet distances, float lists in the order
    measured.

    Raises:
        ValueError: no log entry has ``fid``, naming the run's log.
    """
    entries = [e for e in run.log if e.get('fid') is not None]
    if not entries:
        raise ValueError('%s/log: no entry has a Frechet distance ("fid"); was the run '
                         'trained by train_cyclegan.py?' % run.path)
    x = [float(e['fid/epoch']) if e.get('fid/epoch') is not None
         else runs_lib.epoch_of(run, e) for e in entries]
    return x, [float(e['fid']) for e in entries]


def baseline(run):
    """The untranslated A's distance to B of ``run``, or None if it recorded none."""
    for source in (run.metrics or {}, run.config):
        if source.get('fid_baseline') is not None:
            return float(source['fid_baseline'])
    return None


def extractor(run):
    """What measured ``run``'s distances (``fid_extractor`` of config.json / metrics.json)."""
    return (run.metrics or {}).get('fid_extractor') or run.config.get('fid_extractor') or '?'


def _colours(sizes):
    others = iter(_OTHER_COLOURS)
    return {k: PAPER_COLOURS.get(k) or next(others, '0.5') for k in sizes}


def fid_against_epoch(runs, with_published=True):
    """Frechet distance against epoch, one curve per run (labelled by its process count), and
    beside it paper 002's published final FIDs in a panel of their own.

    Args:
        runs: :class:`~chainer_yolo_dist.analysis.runs.Run` objects with ``fid`` logged
            (CycleGAN runs), usually one preset at several process counts.
        with_published (bool): add the panel of paper 002's values.

    Returns:
        a Matplotlib ``Figure``.

    Raises:
        ValueError: no runs, or a run logged no Frechet distance (naming it).
    """
    if not runs:
        raise ValueError('fid_against_epoch needs at least one run')
    ordered = sorted(runs, key=lambda r: (r.comm_size, r.name))
    series = [(run, fid_series(run)) for run in ordered]
    fig = Figure(figsize=(12 if with_published else 6.5, 4.6), layout='constrained')
    axes = fig.subplots(1, 2 if with_published else 1, squeeze=False).ravel()
    ax = axes[0]
    colours = _colours(sorted({r.comm_size for r in ordered}))
    for run, (x, y) in series:
        colour = colours[run.comm_size]
        ax.plot(x, y, 'o-', color=colour, markersize=3,
                label='%d process%s (%s)' % (run.comm_size, '' if run.comm_size == 1 else 'es',
                                             run.name))
        if baseline(run) is not None:
            ax.axhline(baseline(run), color=colour, linestyle='--', linewidth=0.9, alpha=0.7)
    names = sorted({extractor(r).split(':')[0].split(' (')[0] for r in ordered})
    ax.set_title('Measured: generated B against real B (%s)\ndashed: untranslated A against '
                 'real B' % ', '.join(names), fontsize=9)
    ax.set_xlabel('Epoch')
    ax.set_ylabel('Frechet distance (this extractor)')
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.legend(loc='upper right', fontsize=8)
    ax.grid(alpha=0.3)
    if with_published:
        _published_panel(axes[1])
    fig.suptitle('%s: Frechet distance against epoch per process count, as paper 002 Fig. 6'
                 % ordered[0].group, fontsize=10)
    return fig


def _published_panel(ax):
    rows = [r for r in published.table(PUBLISHED) if r['fid'] is not None]
    for r in rows:
        colour = PAPER_COLOURS.get(r['gpus'], '0.3')
        ax.plot([r['gpus']], [r['fid']], 'o', color=colour, markersize=7,
                label='%d GPUs: %.1f' % (r['gpus'], r['fid']))
        ax.annotate('%.1f' % r['fid'], (r['gpus'], r['fid']), textcoords='offset points',
                    xytext=(0, 7), ha='center', fontsize=8, color=colour)
    gpus = [r['gpus'] for r in published.table(PUBLISHED)]
    ax.set_xscale('log', base=2)
    ax.set_xticks(gpus)
    ax.set_xticklabels([str(g) for g in gpus])
    ax.minorticks_off()
    ax.set_ylim(0, max(r['fid'] for r in rows) * 1.2)
    ax.set_title('Paper 002 Fig. 6, published: FID after 200 epochs\nInception-v3 on '
                 'SYNTHIA -> DeepDrive: another extractor\nand data set, not comparable with '
                 'the measured panel', fontsize=9)
    ax.set_xlabel('Number of GPUs')
    ax.set_ylabel('FID (Inception-v3), paper 002')
    ax.legend(loc='lower right', fontsize=8)
    ax.grid(alpha=0.3)
