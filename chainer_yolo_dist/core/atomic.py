"""Atomic writes: a reader (or a crashed run) never sees a half-written file.

Every file goes to a temporary file with a unique name in the destination's directory, then
replaces the destination with one ``os.replace``. The unique name matters: two processes
writing the same path never share a temporary file, so the loser of the race simply loses,
it never corrupts the winner's file.
"""
import contextlib
import json
import os
import shutil
import tempfile

import numpy as np

#: Prefix of every temporary file, so that leftovers of a killed process can be recognised.
TMP_PREFIX = '.tmp-'


@contextlib.contextmanager
def atomic_path(path, mode=0o644):
    """Yields a temporary path to write; on success it replaces ``path``, else it is removed.

    Example::

        with atomic_path('model.npz') as tmp:
            chainer.serializers.save_npz(tmp, model)
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    base = os.path.basename(path)
    # The real suffix stays last: numpy.savez appends '.npz' to a name without it.
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=TMP_PREFIX + base + '.',
                               suffix=os.path.splitext(base)[1])
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, mode)  # mkstemp creates 0600; results are for everyone to read
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (tuple, set, frozenset)):
        return list(obj)
    raise TypeError('not JSON serialisable: %r' % (obj,))


def write_json(path, obj):
    """Writes ``obj`` as strict JSON (no bare NaN or Infinity) to ``path``, atomically."""
    text = json.dumps(obj, indent=2, sort_keys=True, default=_json_default, allow_nan=False)
    with atomic_path(path) as tmp:
        with open(tmp, 'w') as f:
            f.write(text + '\n')
    return path


def write_text(path, text):
    """Writes ``text`` to ``path``, atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, 'w') as f:
            f.write(text)
    return path


def save_figure(fig, path, dpi=100):
    """Writes the Matplotlib figure ``fig`` as PNG to ``path``, atomically; returns ``path``."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format='png')
    return path


def save_npz(path, obj):
    """``chainer.serializers.save_npz(path, obj)``, atomically."""
    import chainer
    with atomic_path(path) as tmp:
        chainer.serializers.save_npz(tmp, obj)
    return path


@contextlib.contextmanager
def staged_folder(out):
    """Yields the folder to write ``out``'s files into: ``out`` itself if it exists (files
    are replaced one by one, atomically), else a hidden sibling renamed to ``out`` when the
    block ends and removed if it fails, so that a failed call leaves no folder behind."""
    if os.path.isdir(out):
        yield out
        return
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix='%s%s.' % (TMP_PREFIX, os.path.basename(os.path.abspath(out))),
                           dir=parent)
    try:
        yield tmp
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
