"""The run directory: owned by one job at a time, never mixed with another run's files.

- A lock (``fcntl.flock`` on ``.lock``, held for the life of rank 0's process) keeps a second
  job out of a directory a live job writes to; the kernel drops the lock when the process
  ends, however it ends, so a crashed or killed job never leaves it stuck. The lock file
  names the owner (host, process, start time) for the refusal message. (``flock`` works on
  local file systems and on NFS v4; on other shared file systems it may not exclude jobs on
  other hosts.) :func:`release` removes it when the run ends.
- A new run refuses a directory that holds another run's files unless it resumes from it
  (``--resume``) or is told to start over (``--overwrite``, which clears it first). A refused
  start changes nothing in the directory, and removes what it made (the ``.lock``, the
  directory); a folder holding only ``.lock`` (left by a failed start) holds no run.
- Leftovers of an interrupted run are removed, only once the directory is known to be this
  run's (empty but for them, ``--resume`` or ``--overwrite``), and only files whose names
  this package alone writes: the atomic writer's temporary files (``core.atomic.TMP_PREFIX``)
  and Chainer's ``tmpsnapshot_iter_*`` directories. A user's ``*.tmp`` file is not ours.
- A crashed run's ``error.txt.rank<N>`` (``core.mpi.abort``) is the record of the crash: a
  plain start refuses the directory and keeps it; a resumed run moves it aside as
  ``error.txt.previous-<UTC time of the crash>.rank<N>``, so that a later
  ``error.txt.rank<N>`` is this run's (``analysis.study`` reads ``error.txt.rank*`` as the
  run's own failure) and the old record is not overwritten.
"""
import fcntl
import os
import re
import shutil
import socket
import time

from chainer_yolo_dist.core.atomic import TMP_PREFIX

LOCK_NAME = '.lock'
#: Files a failing rank writes (``core.mpi.abort`` adds ``.rank<N>``): kept as the record of a
#: crash (a resumed run moves them aside, see :func:`acquire`).
ERROR_NAME = 'error.txt'
_ERROR_FILE = re.compile(r'%s\.rank\d+$' % re.escape(ERROR_NAME))
_held = {}


def timestamped(parent, name, when=None):
    """``parent/name-<UTC time>``: the default output folder of a run, a benchmark or a set of
    figures, new each time, so that nothing overwrites another output (or the committed
    ``results/``) unless a folder is given."""
    return os.path.join(parent, '%s-%s' % (name, _stamp(when)))


def _stamp(when=None):
    return time.strftime('%Y%m%d-%H%M%S', time.gmtime(when))


class RunDirectoryError(ValueError):
    """The run directory cannot be used: busy, or holding another run's files."""


class Claim(list):
    """What :func:`acquire` did. The list holds the names of the leftovers it removed (as
    before); ``created`` the directories it made, outermost first (give them to
    :func:`release`); ``moved`` ``(old name, new name)`` of each crash record moved aside."""

    def __init__(self, removed=(), created=(), moved=()):
        super().__init__(removed)
        self.created = tuple(created)
        self.moved = list(moved)


def _is_leftover(name):
    """Whether ``name`` is a temporary file or directory only this package makes."""
    return name.startswith(TMP_PREFIX) or name.startswith('tmpsnapshot_iter_')


def _missing_dirs(out):
    """The directories ``os.makedirs(out)`` would create, outermost first."""
    missing = []
    path = os.path.abspath(out)
    while not os.path.lexists(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return missing[::-1]


def check_out(out, option='--out'):
    """Raises :class:`RunDirectoryError` when ``out`` cannot become a folder: it, or a folder
    above it, is a file (``option`` names the option that gave it)."""
    path = os.path.abspath(out)
    while not os.path.lexists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    if not os.path.isdir(path):
        which = 'it' if path == os.path.abspath(out) else path
        raise RunDirectoryError('%s %s: %s is a file, not a folder: give a new folder or a '
                                'run\'s folder' % (option, out, which))


def acquire(out, resume=False, overwrite=False):
    """Makes ``out`` this job's run directory (on rank 0 only).

    Returns:
        Claim: the leftovers removed (the list), the directories made (``created``, for
        :func:`release`) and the crash records moved aside (``moved``).
    Raises:
        RunDirectoryError: another live job holds ``out`` (its host and process named), or
            ``out`` holds files of another run and neither ``resume`` nor ``overwrite`` is set.
            Nothing in ``out`` is changed, and what this call made is removed again.
    """
    check_out(out)
    created = _missing_dirs(out)
    made_lock = False
    f = None
    try:
        os.makedirs(out, exist_ok=True)
        f, made_lock = _lock(out)
        names = sorted(n for n in os.listdir(out) if n != LOCK_NAME)
        leftovers = [n for n in names if _is_leftover(n)]
        others = [n for n in names if n not in leftovers]
        if others and not resume and not overwrite:
            raise RunDirectoryError(
                '%s already holds files (%s%s): give --resume auto to continue that run, '
                '--overwrite to clear it, or another --out'
                % (out, ', '.join(others[:4]), ', ...' if len(others) > 4 else ''))
    except BaseException:
        if f is not None:
            if made_lock:
                _unlink_if_ours(f, os.path.join(out, LOCK_NAME))
            f.close()
        _remove_empty(created)
        raise
    # From here on the directory is this run's.
    f.seek(0)
    f.truncate()
    f.write('host %s, process %d, since %s UTC' % (socket.gethostname(), os.getpid(),
                                                   time.strftime('%Y-%m-%d %H:%M:%S',
                                                                 time.gmtime())))
    f.flush()
    _held[os.path.abspath(out)] = f  # held until release() or the end of this process
    for name in leftovers:
        _remove(os.path.join(out, name))
    moved = []
    if others and resume:  # --resume wins over --overwrite: never clear what it resumes from
        for name in others:
            if _ERROR_FILE.match(name):
                moved.append((name, _move_aside(out, name)))
    elif others:  # --overwrite
        for name in others:
            _remove(os.path.join(out, name))
    return Claim(leftovers, created, moved)


def release(out, created=()):
    """Ends this process's claim on ``out``: removes the ``.lock`` it holds (and lets go of
    it), then each directory of ``created`` (``acquire(...).created``) that is empty, innermost
    first. Call it when the run ends, or when its start fails after :func:`acquire`; a no-op
    where nothing is held (the other ranks) or made."""
    f = _held.pop(os.path.abspath(out), None)
    if f is not None:
        _unlink_if_ours(f, os.path.join(out, LOCK_NAME))
        f.close()
    _remove_empty(created or ())


def _lock(out):
    """Opens and locks ``out/.lock``; returns ``(file, whether this call created it)``."""
    path = os.path.join(out, LOCK_NAME)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            made = True
        except FileExistsError:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            made = False
        f = os.fdopen(fd, 'r+')
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            owner = f.read().strip() or 'another process'
            f.close()
            raise RunDirectoryError('%s is in use by a running job (%s): give another --out, '
                                    'or wait for that job to end' % (out, owner)) from None
        if _same_file(f, path):
            return f, made
        f.close()  # the owner released (unlinked) it between our open and our lock: again


def _same_file(f, path):
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(f.fileno())
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def _unlink_if_ours(f, path):
    """Removes ``path`` if it is still the file ``f`` holds locked (call before closing)."""
    if _same_file(f, path):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _move_aside(out, name):
    """Renames the crash record ``out/name`` (``error.txt.rank<N>``) to
    ``error.txt.previous-<UTC time it was written>.rank<N>``; returns the new name."""
    path = os.path.join(out, name)
    stem = '%s.previous-%s' % (ERROR_NAME, _stamp(os.path.getmtime(path)))
    suffix = name[len(ERROR_NAME):]  # '.rank<N>'
    new, n = stem + suffix, 1
    while os.path.lexists(os.path.join(out, new)):
        n += 1
        new = '%s-%d%s' % (stem, n, suffix)
    os.rename(path, os.path.join(out, new))
    return new


def _remove_empty(directories):
    for directory in reversed(directories):
        try:
            os.rmdir(directory)
        except OSError:  # not empty (someone else's files now), or gone: leave it
            break


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)
