"""How the GPU check judges a training run from its files (pure functions, tested on the CPU).

- :func:`loss_trend`: "works" is every logged loss finite and the mean of the last log
  entries below the mean of the first ones (a window of entries, not a single comparison:
  one noisy entry neither passes nor fails a run).
- :func:`compare_npz`: a resumed run's ``model.npz`` against the uninterrupted run's, bitwise
  or within a tolerance relative to each array's largest magnitude, with the largest
  difference reported either way.
- :func:`profile_against_timing`: ``--profile``'s phase times (``profile.json``) against the
  update times measured from outside (``$CHAINER_YOLO_DIST_TIMING_DIR``'s end time of every
  update), over the updates no logging or snapshot extension ran before.
"""
import json
import math

import numpy as np


def read_json(path):
    with open(path) as f:
        return json.load(f)


def read_or_none(path):
    """A JSON file's content, or None when it is missing or unreadable (a run that failed)."""
    try:
        return read_json(path)
    except (OSError, ValueError):
        return None


def finite(value):
    """Whether ``value`` is a finite number (None, strings and NaN are not)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value)


def number(value):
    """``value`` as a float for a summary line, NaN when it is not a finite number."""
    return float(value) if finite(value) else float('nan')


def find_key(config, key):
    """``key``'s value anywhere in a nested dict such as ``config.json`` (None if absent)."""
    if isinstance(config, dict):
        if key in config:
            return config[key]
        for value in config.values():
            found = find_key(value, key)
            if found is not None:
                return found
    return None


def log_series(log, key):
    """``[(iteration, value)]`` of ``key`` in a Chainer ``log`` (list of dicts)."""
    return [(entry['iteration'], float(entry[key])) for entry in log if key in entry]


def loss_trend(series, window=2):
    """Finite losses and a falling mean: ``{'finite', 'first', 'last', 'fell', 'window'}``.

    ``first`` / ``last`` are the means of the first / last ``window`` entries (they must not
    overlap: fewer than ``2 * window`` entries never count as falling).
    """
    values = [v for _, v in series]
    finite = bool(values) and all(math.isfinite(v) for v in values)
    out = {'finite': finite, 'entries': len(values), 'window': window,
           'first': None, 'last': None, 'fell': False}
    if finite and len(values) >= 2 * window:
        out['first'] = float(np.mean(values[:window]))
        out['last'] = float(np.mean(values[-window:]))
        out['fell'] = out['last'] < out['first']
        out['first_iterations'] = [series[0][0], series[window - 1][0]]
        out['last_iterations'] = [series[-window][0], series[-1][0]]
    return out


def compare_npz(path_a, path_b, rtol):
    """``model.npz`` files compared array by array.

    Returns ``{'bitwise', 'within', 'max_abs', 'max_relative', 'worst', 'mismatched_keys'}``:
    ``max_relative`` is the largest ``max |a - b| / max |a|`` over the arrays, ``within`` means
    every array satisfies ``max |a - b| <= rtol * max |a|`` and the keys and shapes agree.
    """
    a, b = np.load(path_a), np.load(path_b)
    keys_a, keys_b = set(a.files), set(b.files)
    out = {'bitwise': keys_a == keys_b, 'max_abs': 0.0, 'max_relative': 0.0, 'worst': None,
           'mismatched_keys': sorted(keys_a ^ keys_b), 'arrays': len(keys_a & keys_b)}
    within = keys_a == keys_b
    for key in sorted(keys_a & keys_b):
        x, y = a[key], b[key]
        if x.shape != y.shape:
            out['mismatched_keys'].append(key)
            within = out['bitwise'] = False
            continue
        if x.dtype.kind not in 'fc':
            same = np.array_equal(x, y)
            within &= same
            out['bitwise'] &= same
            continue
        out['bitwise'] &= np.array_equal(x, y, equal_nan=True)
        if not (np.isfinite(x).all() and np.isfinite(y).all()):
            within = False
            continue
        if x.size == 0:
            continue
        diff = float(np.abs(x.astype(np.float64) - y).max())
        scale = float(np.abs(x).max())
        relative = diff / scale if scale else (0.0 if diff == 0 else math.inf)
        if relative > out['max_relative']:
            out['max_relative'], out['worst'] = relative, key
        out['max_abs'] = max(out['max_abs'], diff)
        within &= diff <= rtol * scale
    out['within'] = bool(within)
    out['bitwise'] = bool(out['bitwise'])
    return out


def profile_against_timing(profile, timing, quiet, skip_first=2):
    """The profile's summed phase time against the measured time between update ends.

    Args:
        profile: ``profile.json`` (its ``ranks[0]`` rows: ``iteration``, ``step``, phases).
        timing: rank 0's timing file (``updates``: ``[iteration, end time, rss]``).
        quiet: ``iteration -> bool``, whether nothing but the per-update extensions ran after
            that iteration (no log entry, plot or snapshot): the interval from its end to the
            next update's end is that next update's time.
        skip_first: updates left out at the start (start-up, first allocations).
    Returns:
        ``{'iterations', 'profile_seconds', 'measured_seconds', 'ratio'}`` (``ratio`` is
        profile / measured, None without a usable update).
    """
    steps = {row['iteration']: row['step'] for row in profile['ranks'][0]}
    ends = {int(it): t for it, t, _ in timing['updates']}
    first = min(ends) if ends else 0
    used = [i for i in sorted(steps) if i - 1 in ends and i in ends
            and i >= first + skip_first and quiet(i - 1)]
    prof = float(sum(steps[i] for i in used))
    measured = float(sum(ends[i] - ends[i - 1] for i in used))
    return {'iterations': len(used), 'profile_seconds': prof, 'measured_seconds': measured,
            'ratio': prof / measured if measured > 0 else None}
