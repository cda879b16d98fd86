"""The epoch-boundary stall of paper 004 (sec. 4.2, Table 3), measured with this package's loader.

Paper 004 found, at 4 nodes, a stall at every epoch boundary that grew with PyTorch's loader
workers (0 / 50 / 75 / 110 s for 0 / 4 / 6 / 8 workers) while 10 iterations got faster (90 / 19
/ 15 / 11 s): PyTorch's ``DataLoader`` ends its worker processes with each epoch and starts
new ones, which first receive the dataset and the sampler's indices; keeping them
("RepeatSampler") removed the stall. :func:`run` measures the same two numbers for this
package's training iterator (:func:`~chainer_yolo_dist.core.iterators.train_iterator` over an
:class:`~chainer_yolo_dist.core.sampling.EpochSampledDataset` of synthetic action clips), with
the workers kept (``persistent``: Chainer's ``MultiprocessIterator``, the package's default) or
re-created each epoch (:class:`~chainer_yolo_dist.core.iterators.EpochRestartingIterator`):

- ``stall`` at each epoch boundary: the wait for the first batch of the new epoch minus the
  median wait for a batch inside an epoch (what the boundary adds);
- ``epoch_excess``: what each epoch after the first waits beyond ``median x batches``, the
  whole cost of a boundary (with new workers the batches after the first may still wait for
  workers that are starting);
- ``ten_iterations``: wall time of 10 consecutive iterations inside an epoch, each a wait for
  the batch followed by ``step_seconds`` of simulated accelerator work (a sleep: the GPU's
  share of a step uses no host core, so the loader's workers prefetch meanwhile).

The dataset carries ``annotations`` AVA-like annotation records (video id, second, a box
array), as :class:`~chainer_yolo_dist.slowfast.ava.AVAClips` carries AVA's annotations, so a
worker started anew receives an index of realistic size (paper 004 sec. 3.2: about 195k
training labels). Worker processes start from the forkserver, as in the training scripts.
Absolute times depend on this machine and its load (recorded: load average before and after).
"""
import json
import os
import platform
import statistics
import time

import numpy as np

from chainer_yolo_dist.core.iterators import train_iterator
from chainer_yolo_dist.core.sampling import EpochSampledDataset
from chainer_yolo_dist.slowfast.synthetic import SyntheticActionClips

#: Paper 004 Table 3 (4 nodes): loader workers, stall (s), 10 iterations (s).
PUBLISHED = {'workers': [0, 4, 6, 8], 'stall_s': [0, 50, 75, 110],
             'ten_iterations_s': [90, 19, 15, 11]}
WORKERS = (0, 2, 4, 6, 8)
#: Paper 004 sec. 3.2 footnote 1: about 195k training labels.
AVA_TRAIN_LABELS = 195000


class AnnotatedClips(object):
    """Synthetic clips plus an AVA-sized annotation index the workers receive with the dataset
    (never read: it stands for what an AVA dataset object holds)."""

    def __init__(self, clips, annotations, seed=0):
        self.clips = clips
        rng = np.random.RandomState(seed)
        self.index = [('video%03d' % (i % 235), 902 + i % 897,
                       rng.uniform(0, 1, (1 + i % 3, 4)).astype(np.float32))
                      for i in range(annotations)]

    def __len__(self):
        return len(self.clips)

    def __getitem__(self, i):
        return self.clips[i]


def _normalise(example, rng):
    clip, bbox, label = example
    return (clip / 255. - 0.45) / 0.225, bbox, label


def measure(workers, persistent, n_clips=96, batchsize=8, epochs=3, step_seconds=0.,
            annotations=AVA_TRAIN_LABELS, clip_frames=16, clip_size=64, seed=0):
    """One configuration: the wait of every ``next()`` over ``epochs`` epochs.

    Returns a dict with ``waits`` (per epoch, seconds per batch), ``stall_s`` (per boundary),
    ``ten_iterations_s`` and ``median_wait_s``.
    """
    clips = SyntheticActionClips(n_clips, 'train', seed=seed, n_frames=clip_frames,
                                 size=clip_size)
    shard = EpochSampledDataset(AnnotatedClips(clips, annotations, seed), _normalise,
                                seed=seed)
    it = train_iterator(shard, batchsize, seed, workers, persistent=persistent)
    per_epoch = n_clips // batchsize
    waits = [[] for _ in range(epochs)]
    try:
        for e in range(epochs):
            for _ in range(per_epoch):
                start = time.perf_counter()
                next(it)
                waits[e].append(time.perf_counter() - start)
                if step_seconds:
                    time.sleep(step_seconds)
    finally:
        if hasattr(it, 'finalize'):
            it.finalize()
    inside = [w for epoch in waits for w in epoch[1:]]
    median = statistics.median(inside)
    stalls = [waits[e][0] - median for e in range(1, epochs)]
    excess = [epoch_excess(waits[e], median) for e in range(1, epochs)]
    # Ten iterations inside the second epoch (the first may include the start-up); with
    # shorter epochs, the first ten (or all) of every epoch's batches after its first.
    run_waits = waits[1][1:11] if len(waits[1]) > 10 else inside[:10]
    return {'workers': workers, 'persistent': persistent, 'waits': waits,
            'startup_s': waits[0][0], 'median_wait_s': median, 'stall_s': stalls,
            'mean_stall_s': sum(stalls) / len(stalls), 'epoch_excess_s': excess,
            'ten_iterations_s': sum(run_waits) + len(run_waits) * step_seconds,
            'ten_iterations_measured': len(run_waits)}


def epoch_excess(waits, median):
    """Seconds one epoch's batches waited beyond ``median`` each."""
    return sum(waits) - len(waits) * median


def mean_epoch_excess(result):
    """Mean :func:`epoch_excess` over the epochs after the first (from the recorded waits)."""
    values = [epoch_excess(w, result['median_wait_s']) for w in result['waits'][1:]]
    return sum(values) / len(values)


def run(workers=WORKERS, n_clips=96, batchsize=8, epochs=3, step_seconds=0.,
        annotations=AVA_TRAIN_LABELS, clip_frames=16, clip_size=64, seed=0, log=None):
    """Every worker count, with and without persistent workers; the record for JSON
    (``log(result)`` is called after each configuration)."""
    load_before = os.getloadavg()
    results = []
    for n in workers:
        for persistent in ((True,) if n == 0 else (True, False)):
            results.append(measure(n, persistent, n_clips, batchsize, epochs, step_seconds,
                                   annotations, clip_frames, clip_size, seed))
            if log is not None:
                log(results[-1])
    return {'results': results, 'published_table3': PUBLISHED,
            'settings': {'n_clips': n_clips, 'batchsize': batchsize, 'epochs': epochs,
                         'step_seconds': step_seconds, 'annotations': annotations,
                         'clip_frames': clip_frames, 'clip_size': clip_size, 'seed': seed},
            'load_average_before': [round(x, 2) for x in load_before],
            'load_average_after': [round(x, 2) for x in os.getloadavg()],
            'environment': {'cpu_count': os.cpu_count(), 'python': platform.python_version(),
                            'machine': platform.machine(), 'niceness': os.nice(0)},
            'time_utc': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}


def merge(path, record):
    """``record``'s results added to those of the record in ``path`` (measured with the same
    settings; ValueError naming the file otherwise); the load averages of both are kept."""
    with open(path) as f:
        old = json.load(f)
    if old['settings'] != record['settings']:
        raise ValueError('%s: measured with other settings (%s), not %s'
                         % (path, old['settings'], record['settings']))
    done = {(r['workers'], r['persistent']) for r in record['results']}
    merged = dict(record)
    merged['results'] = sorted([r for r in old['results']
                                if (r['workers'], r['persistent']) not in done]
                               + record['results'],
                               key=lambda r: (r['workers'], not r['persistent']))
    merged['parts'] = old.get('parts', [{k: old[k] for k in (
        'load_average_before', 'load_average_after', 'time_utc')}]) + [
        {k: record[k] for k in ('load_average_before', 'load_average_after', 'time_utc')}]
    merged['load_average_before'] = max((part['load_average_before'] for part in
                                         merged['parts']), key=lambda x: x[0])
    return merged


def plot(record, path):
    """Table 3's two columns against the worker count, workers kept vs re-created."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8, 3.4))
    for persistent, style, label in ((True, 'o-', 'workers kept (Chainer default)'),
                                     (False, 's--', 're-created each epoch')):
        rows = [r for r in record['results'] if r['persistent'] == persistent
                or (r['workers'] == 0 and persistent is False)]
        rows.sort(key=lambda r: r['workers'])
        xs = [r['workers'] for r in rows]
        ax1.plot(xs, [r['mean_stall_s'] for r in rows], style, label=label + ': first batch')
        ax1.plot(xs, [mean_epoch_excess(r) for r in rows], style[0] + ':',
                 color=ax1.lines[-1].get_color(), label=label + ': whole epoch')
        ax2.plot(xs, [r['ten_iterations_s'] for r in rows], style, label=label)
    ax1.set_title('extra wait after an epoch boundary', fontsize=9)
    ax1.set_ylabel('seconds')
    ax2.set_title('10 iterations (%.2f s simulated step each)'
                  % record['settings']['step_seconds'], fontsize=9)
    for ax in (ax1, ax2):
        ax.set_xlabel('loader workers')
        ax.grid(alpha=0.3)
    ax1.legend(fontsize=6)
    fig.suptitle('paper 004 Table 3 measured here; load average %s%.1f on %d cores (1 min, '
                 'before)' % ('up to ' if record.get('parts') else '',
                              record['load_average_before'][0],
                              record['environment']['cpu_count']), fontsize=8)
    fig.tight_layout()
    tmp = path + '.tmp.png'
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def default_out_dir(root='runs/bench'):
    """A new ``runs/bench/<UTC timestamp>`` directory name."""
    return os.path.join(root, time.strftime('%Y%m%d-%H%M%S', time.gmtime()))


def write_outputs(record, out_dir):
    """Writes ``stall.json`` and ``stall.png`` into ``out_dir``; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    json_path = os.path.join(out_dir, 'stall.json')
    png_path = os.path.join(out_dir, 'stall.png')
    tmp = json_path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(record, f, indent=1, sort_keys=True)
        f.write('\n')
    os.replace(tmp, json_path)
    plot(record, png_path)
    return json_path, png_path
