"""The run directory: owned by one job at a time, never mixed with another run's files.

- A lock (``fcntl.flock`` on ``.lock``, held for the life of rank 0's process) keeps a second
  job out of a directory a live job writes to; the kernel drops the lock when the process
  ends, however it ends, so a crashed or killed job never leaves it stuck. The lock file
  names the owner (host, process, start time) for the refusal message. (``flock`` works on
  local file systems and on NFS v4; on other shared file systems it may not exclude jobs on
  other hosts.)
- A new run refuses a directory that holds another run's files unless it resumes from it
  (``--resume``) or is told to start over (``--overwrite``, which clears it first).
- Leftovers of an interrupted run (temporary files of atomic writes, Chainer's
  ``tmpsnapshot_iter_*`` directories, ``*.tmp`` files) are removed at the next start.
"""
import fcntl
import os
import shutil
import socket
import time

from chainer_yolo_dist.core.atomic import TMP_PREFIX

LOCK_NAME = '.lock'
#: Files a failing rank leaves (``core.mpi.abort``); removed at the next start.
ERROR_NAME = 'error.txt'
_held = {}


def timestamped(parent, name, when=None):
    """``parent/name-<UTC time>``: the default output folder of a run, a benchmark or a set of
    figures, new each time, so that nothing overwrites another output (or the committed
    ``results/``) unless a folder is given."""
    stamp = time.strftime('%Y%m%d-%H%M%S', time.gmtime(when))
    return os.path.join(parent, '%s-%s' % (name, stamp))


class RunDirectoryError(ValueError):
    """The run directory cannot be used: busy, or holding another run's files."""


def _is_leftover(name):
    return (name.startswith(TMP_PREFIX) or name.startswith('tmpsnapshot_iter_')
            or name.endswith('.tmp') or name.startswith(ERROR_NAME))


def acquire(out, resume=False, overwrite=False):
    """Makes ``out`` this job's run directory (on rank 0 only); returns the leftovers removed.

    Raises:
        RunDirectoryError: another live job holds ``out`` (its host and process named), or
            ``out`` holds files of another run and neither ``resume`` nor ``overwrite`` is set.
    """
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, LOCK_NAME)
    f = open(path, 'a+')
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        owner = f.read().strip() or 'another process'
        f.close()
        raise RunDirectoryError('%s is in use by a running job (%s): give another --out, or '
                                'wait for that job to end' % (out, owner)) from None
    f.seek(0)
    f.truncate()
    f.write('host %s, process %d, since %s UTC' % (socket.gethostname(), os.getpid(),
                                                   time.strftime('%Y-%m-%d %H:%M:%S',
                                                                 time.gmtime())))
    f.flush()
    _held[os.path.abspath(out)] = f  # held until this process ends
    names = sorted(os.listdir(out))
    removed = [n for n in names if _is_leftover(n)]
    for name in removed:
        _remove(os.path.join(out, name))
    others = [n for n in names if n not in removed and n != LOCK_NAME]
    if others and not resume:
        if not overwrite:
            raise RunDirectoryError(
                '%s already holds files (%s%s): give --resume SNAPSHOT to continue that run, '
                '--overwrite to clear it, or another --out'
                % (out, ', '.join(others[:4]), ', ...' if len(others) > 4 else ''))
        for name in others:
            _remove(os.path.join(out, name))
    return removed


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)
