"""The conventions every figure of the package follows, so that one from a short run reads.

A figure drawn after 10 iterations holds one or two logged points: without markers a single
point is invisible, a locator in whole epochs leaves the axis without a tick, and limits shared
between panels clip a curve. Each figure therefore gets axis labels with units, tick labels on
every axis, a title naming the run (system, mode, k, rate), markers when a series has few
points, limits that hold every point, and a legend that hides no curve.
"""

#: Series with at most this many points get a marker on each point.
FEW_POINTS = 30


def run_title(what, mode=None, k=None, rate=None):
    """``'WHAT, MODE, k = K, lr = RATE'``, leaving out what is None: names the run in a title.

    Args:
        what (str): the system and model (e.g. ``'YOLO yolov3_small'``) or the run's name.
        mode (str): the parallelism mode (``sync``, ``async``, ...).
        k (int): workers (ranks x virtual ranks), the papers' GPUs.
        rate (float): the peak learning rate.
    """
    parts = [what]
    if mode:
        parts.append(mode)
    if k is not None:
        parts.append('k = %d' % k)
    if rate is not None:
        parts.append('lr = %g' % rate)
    return ', '.join(parts)


def mark_few_points(ax, few=FEW_POINTS):
    """A marker on every point of each line of ``ax`` with at most ``few`` points (a line
    through one point draws nothing)."""
    for line in ax.get_lines():
        if len(line.get_xdata()) <= few and line.get_marker() in (None, 'None', '', ' '):
            line.set_marker('o')
            line.set_markersize(4)


def epoch_ticks(ax, iterations_per_epoch, nbins=8):
    """Ticks of an iteration x axis at round epoch values, labelled in epochs (0.1, 0.2 for a
    run of a fraction of an epoch, 1, 2, 3 for a long one): always some inside the limits."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator
    lo, hi = ax.get_xlim()
    per = float(iterations_per_epoch)
    ticks = [t * per for t in MaxNLocator(nbins).tick_values(lo / per, hi / per)
             if lo <= t * per <= hi]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: '%.3g' % (x / per)))


def pad_single_value(ax):
    """y limits around a series whose points are all equal (matplotlib would give the axis a
    zero-height range around it only when padding is off; keeps the point off the frame)."""
    lo, hi = ax.get_ylim()
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):
        ax.set_ylim(lo - 0.5 * max(abs(lo), 1e-3), hi + 0.5 * max(abs(hi), 1e-3))


def finish(ax, title=None, xlabel=None, ylabel=None):
    """The common end of an axis: title and labels (those given), markers on few points,
    a grid, and limits that show a constant series."""
    if title is not None:
        ax.set_title(title, fontsize=9)
    if xlabel is not None:
        ax.set_xlabel(xlabel)
    if ylabel is not None:
        ax.set_ylabel(ylabel)
    mark_few_points(ax)
    pad_single_value(ax)
    ax.grid(alpha=0.3)
