"""The SlowFast CPU demo's summary: SlowFast against Slow-only, chance and the published pair.

``make demo-slowfast`` trains ``slowfast_narrow`` and ``slow_narrow`` on the synthetic action
clips (``<demo>/slowfast``, ``<demo>/slow``, each a run directory of ``train_slowfast.py``);
:func:`summarize` reads their ``metrics.json`` and ``config.json`` and gives:

- ``map``: frame mAP@0.5 on the held-out clips of each run (as fractions);
- ``chance``: the mAP that scores unrelated to the clips would get on average, computed from the
  held-out labels: for one class, ranking the evaluated boxes at random gives an AP whose
  expectation is close to the class's share of positive boxes (the precision at every recall),
  so chance is the mean of those shares over the classes with a positive box (the classes the
  metric averages);
- ``published``: paper 004 Table 5 and appendix A.1.2's baselines, SlowFast 24.2 % and
  Slow-only 19.0 % frame mAP on AVA (the SlowFast authors' figures). Another dataset and
  another scale: only the ordering is comparable;
- ``profile``: each run's Table 4-form summary (``--profile``): phase means, compute and
  communication shares;
- each run's updates, ranks and training time.
"""
import json
import os

import numpy as np

from chainer_yolo_dist.slowfast.synthetic import ACTION_NAMES, SyntheticActionClips

RUNS = ('slowfast', 'slow')
#: Paper 004 Table 5 and appendix A.1.2: AVA frame mAP (%) of the SlowFast authors' SlowFast R50
#: and of its Slow-only baseline.
PUBLISHED_AVA_MAP = {'slowfast': 24.2, 'slow': 19.0}


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError('%s: cannot read the run\'s result (%s); did the run finish?'
                         % (path, e)) from e


def chance_map(config):
    """Mean over classes (with a positive) of the share of positive boxes, on the held-out
    synthetic clips described by ``config`` (``config.json``'s ``data``)."""
    test = SyntheticActionClips(config['n_test_clips'], 'test', seed=config['seed'],
                                n_frames=config['clip_frames'], size=config['clip_size'],
                                max_actors=config['max_actors'])
    labels = np.array([a.labels() for i in range(len(test)) for a in test.actors(i)],
                      dtype=np.float64).reshape(-1, len(ACTION_NAMES))
    share = labels.mean(axis=0)
    return float(share[labels.sum(axis=0) > 0].mean())


def summarize(demo_dir):
    """The summary dict of ``demo_dir`` (see the module docstring)."""
    runs = {}
    for name in RUNS:
        run_dir = os.path.join(demo_dir, name)
        metrics = _read_json(os.path.join(run_dir, 'metrics.json'))
        config = _read_json(os.path.join(run_dir, 'config.json'))
        runs[name] = {'metrics': metrics, 'config': config}
    configs = [runs[n]['config']['data'] for n in RUNS]
    keys = ('dataset', 'seed', 'n_test_clips', 'clip_frames', 'clip_size', 'max_actors')
    for key in keys:
        if configs[0].get(key) != configs[1].get(key):
            raise ValueError('%s: the two runs differ in %s (%r, %r): not one comparison'
                             % (demo_dir, key, configs[0].get(key), configs[1].get(key)))
    if configs[0]['dataset'] != 'synthetic_actions':
        raise ValueError('%s: the demo summary is for synthetic_actions runs, not %s'
                         % (demo_dir, configs[0]['dataset']))
    summary = {
        'map': {n: runs[n]['metrics']['map'] for n in RUNS},
        'chance': chance_map(configs[0]),
        'published_ava_map_percent': dict(PUBLISHED_AVA_MAP),
        'published_source': 'paper 004 Table 5 and appendix A.1.2 (AVA, SlowFast R50 and its '
                            'Slow-only baseline): another dataset, only the ordering compares',
        'n_test_clips': configs[0]['n_test_clips'],
        'runs': {},
    }
    for n in RUNS:
        m, c = runs[n]['metrics'], runs[n]['config']
        summary['runs'][n] = {
            'model': m.get('model'), 'ranks': c['ranks'], 'workers': c['workers'],
            'iterations': c['iterations'],
            'ap': m.get('ap'), 'profile': m.get('profile'),
        }
    return summary


def format_summary(summary):
    """Lines for the terminal."""
    m = summary['map']
    lines = ['frame mAP@0.5 on %d held-out synthetic clips: SlowFast %.3f, Slow-only %.3f, '
             'chance %.3f' % (summary['n_test_clips'], m['slowfast'], m['slow'],
                              summary['chance']),
             'published (AVA, paper 004 Table 5 / A.1.2; another dataset): SlowFast %.1f, '
             'Slow-only %.1f' % (summary['published_ava_map_percent']['slowfast'],
                                 summary['published_ava_map_percent']['slow'])]
    for n in RUNS:
        p = summary['runs'][n]['profile']
        if p:
            mean = p['mean']
            lines.append('%s profile (s per iteration): %s; Table 4 form: compute %.1f%%, '
                         'communication %.1f%%' % (
                             n, ', '.join('%s %.3f' % (k, v) for k, v in mean.items()),
                             100 * p['table4']['compute'], 100 * p['table4']['communication']))
    return lines


def write_summary(demo_dir):
    """Writes ``demo_dir/summary.json``; returns the summary."""
    summary = summarize(demo_dir)
    with open(os.path.join(demo_dir, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=1, sort_keys=True)
    return summary
