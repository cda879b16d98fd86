"""The scaling models of CycleGAN (paper 002) and SlowFast (paper 004) beside the papers' numbers.

- :func:`p002_speedup_model`: paper 002 Fig. 4's form, speed-up over 4 GPUs against GPUs: the
  model's line, the published points (4 GPUs, 512 GPUs: 93.8x), the ideal ``k / 4``, and
  optionally measured speed-ups (a CPU run beside the model).
- :func:`p004_scaling_model`: Table 4's communication shares (published beside the model) and
  Fig. 3's speed-ups over 1 node before and after the RepeatSampler fix.

Both return a :class:`matplotlib.figure.Figure` built without pyplot; ``analysis/figures.py``
registers them with the published figures. Colours follow ``figures.py`` (published blue,
model orange); this module does not import it, which imports this one.
"""
from matplotlib.figure import Figure

from chainer_yolo_dist.analysis import scaling_cyclegan, scaling_slowfast
from chainer_yolo_dist.core.sampling import draws_per_epoch

BLUE = 'tab:blue'
ORANGE = 'tab:orange'
GREEN = 'tab:green'
IDEAL = dict(color='0.5', linestyle=':', linewidth=1.2)


def measured_speedups(runs):
    """Measured speed-ups of CycleGAN runs over the run with the fewest processes.

    Args:
        runs: run directories (paths) or :class:`~chainer_yolo_dist.analysis.runs.Run` s.
            Each run's images per second are ``processes x draws per process per epoch /
            seconds per epoch``, the draws being ``ceil(scale x D / processes)`` from its
            ``config.json`` (``n_train``, ``sampling_scale``), so runs with different epochs
            compare by throughput.

    Returns:
        dict processes -> speed-up (images/s over those of the smallest run).

    Raises:
        ValueError: fewer than two process counts, or a run without ``sampling_scale``.
    """
    from chainer_yolo_dist.analysis import runs as runs_lib
    rate = {}
    for run in runs:
        if isinstance(run, str):
            run = runs_lib.load_run(run)
        recipe = run.recipe
        if not recipe.get('sampling_scale'):
            raise ValueError('%s: no sampling_scale in config.json; not a CycleGAN run'
                             % run.path)
        k = run.comm_size
        draws = draws_per_epoch(int(recipe['n_train']), float(recipe['sampling_scale']), k)
        rate[k] = k * draws / runs_lib.seconds_per_epoch(run)
    if len(rate) < 2:
        raise ValueError('measured speed-ups need runs at two process counts or more, got %s'
                         % sorted(rate))
    base = rate[min(rate)]
    return {k: r / base for k, r in sorted(rate.items())}


def p002_speedup_model(measured=None, gpus=None, **model):
    """Paper 002 Fig. 4's form: speed-up over 4 GPUs against GPUs, model and published.

    Args:
        measured: optional dict ``{processes: speed-up}`` (over the smallest process count
            given), or a list of CycleGAN run directories / ``Run`` s (:func:`measured_speedups`),
            drawn in green at their process counts.
        gpus: GPU counts of the model's line (default 4, 8, ..., 512).
        model: keyword arguments of :func:`scaling_cyclegan.predict` (``framework`` ...).
    """
    gpus = gpus or [4 * 2 ** i for i in range(8)]
    fig = Figure(figsize=(6.5, 4.6), layout='constrained')
    ax = fig.subplots()
    for framework, style in (('chainermn', '-'), ('horovod', '--')):
        preds = scaling_cyclegan.predict(gpus, framework=framework, **model)
        ax.plot([q.gpus for q in preds], [q.speedup for q in preds], style, color=ORANGE,
                label='model, %s (%.1fx at %d)' % (framework, preds[-1].speedup,
                                                   preds[-1].gpus))
    big, speedup = scaling_cyclegan.published_speedup()
    ax.plot([scaling_cyclegan.BASE_GPUS, big], [1.0, speedup], 'o', color=BLUE,
            markersize=8, label='paper 002 Fig. 4 (%.1fx at %d GPUs)' % (speedup, big))
    top = max(gpus)
    ax.plot([scaling_cyclegan.BASE_GPUS, top], [1, top / scaling_cyclegan.BASE_GPUS],
            label='ideal (k / 4)', **IDEAL)
    ticks = set(gpus)
    if measured is not None:
        points = measured if isinstance(measured, dict) else measured_speedups(measured)
        ks = sorted(points)
        ticks |= set(ks)
        ax.plot(ks, [points[k] for k in ks], 's-', color=GREEN,
                label='measured (over %d process%s)' % (ks[0], '' if ks[0] == 1 else 'es'))
    ax.set_xscale('log', base=2)
    ax.set_yscale('log', base=2)
    ticks = sorted(ticks)
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_title('Paper 002 Fig. 4: CycleGAN speed-up over 1 node (4 GPUs), model and paper',
                 fontsize=10)
    ax.set_xlabel('Number of GPUs (processes)')
    ax.set_ylabel('Speed-up over 4 GPUs')
    ax.legend(loc='upper left', fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def p004_scaling_model(**model):
    """Paper 004 Table 4 (communication share, published and model) and Fig. 3 (speed-up of 5
    epochs over 1 node before the fix, published and model, before and after RepeatSampler),
    with the model's growth beyond 32 nodes and, dash-dotted, the model without it.

    ``model``: keyword arguments of :func:`scaling_slowfast.predict` (``loader``, ``overlap``,
    ``growth``).
    """
    fig = Figure(figsize=(11, 4.3), layout='constrained')
    left, right = fig.subplots(1, 2)

    shares = scaling_slowfast.share_comparison(**model)
    x = range(len(shares))
    width = 0.38
    pub = [r['published'] for r in shares]
    pred = [r['predicted'] for r in shares]
    left.bar([i - width / 2 for i in x], pub, width, color=BLUE, label='paper 004 Table 4')
    left.bar([i + width / 2 for i in x], pred, width, color=ORANGE,
             label='model (32 nodes: fitted)')
    for i, (p, q) in enumerate(zip(pub, pred)):
        left.annotate('%.1f%%' % p, (i - width / 2, p), xytext=(0, 2),
                      textcoords='offset points', ha='center', fontsize=8)
        left.annotate('%.1f%%' % q, (i + width / 2, q), xytext=(0, 2),
                      textcoords='offset points', ha='center', fontsize=8)
    left.set_xticks(list(x))
    left.set_xticklabels([str(r['nodes']) for r in shares])
    left.set_ylim(0, 100)
    left.set_title('Paper 004 Table 4: communication share, after RepeatSampler', fontsize=10)
    left.set_xlabel('Nodes (4 GPUs each)')
    left.set_ylabel('Communication share of time [%]')
    left.legend(loc='upper left', fontsize=8)
    left.grid(alpha=0.3, axis='y')

    nodes = [1, 2, 4, 8, 16, 32, 64, 128]
    gpus = [n * scaling_slowfast.GPUS_PER_NODE for n in nodes]
    minutes = scaling_slowfast.published_minutes()
    one = minutes[('before', 1)]
    flat = dict(model, growth='none')
    for conf, color, label in (('before', BLUE, 'before (8 workers, stall)'),
                               ('after', 'tab:red', 'after RepeatSampler (6 workers)')):
        preds = scaling_slowfast.predict(gpus, conf, **model)
        right.plot(nodes, [q.speedup for q in preds], '--', color=color,
                   label='model, ' + label)
        pts = sorted((n, one / m) for (c, n), m in minutes.items() if c == conf)
        xs, ys = zip(*pts)
        right.plot(xs, ys, 'o', color=color, markersize=7, label='paper 004 Fig. 3, ' + label)
    right.plot(nodes, [q.speedup for q in scaling_slowfast.predict(gpus, 'after', **flat)],
               '-.', color='tab:purple', label='model without growth, after')
    right.plot([128], [one / scaling_slowfast.implied_128()['minutes']], 's',
               markerfacecolor='none', color='tab:red', markersize=8,
               label='after, 128 nodes: implied by Table 4 and the 1.8x')
    right.plot([1, 128], [1, 128], label='ideal', **IDEAL)
    right.set_xscale('log', base=2)
    right.set_xticks(nodes)
    right.set_xticklabels([str(n) for n in nodes])
    right.minorticks_off()
    right.set_title('Paper 004 Fig. 3: speed-up of 5 epochs over 1 node (544 min)', fontsize=10)
    right.set_xlabel('Nodes (4 GPUs each)')
    right.set_ylabel('Speed-up over 1 node')
    right.legend(loc='upper left', fontsize=7)
    right.grid(alpha=0.3)
    return fig
