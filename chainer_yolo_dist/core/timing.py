"""Opt-in start-up and per-update timing of every rank, for measurements from outside a run.

With ``$CHAINER_YOLO_DIST_TIMING_DIR`` set (``mpiexec`` passes the environment to every rank),
each rank writes ``<dir>/timing_rank<R>.json`` when its trainer stops, atomically:

- ``process_start``: when the operating system started this process (Linux ``/proc``; the
  import of this module elsewhere), seconds since the epoch like every other time here;
- ``phases``: ``{name: [start, end]}`` of the start-up steps :func:`phase` brackets
  (``check_images``: this rank's share of the image checks; ``load_data``: rank 0 building the
  datasets while the other ranks wait for them);
- ``first_update_start``: ``trainer.run()`` entered: network, data pipeline and extensions are
  built; the first update, its first batch's loading included, begins;
- ``updates``: ``[iteration, end time, peak resident memory in bytes]`` after every update;
- ``peak_rss_bytes``: this process's peak resident set size (``getrusage(RUSAGE_SELF)``:
  the rank alone, not its loader worker processes) when the trainer stopped.

Without the variable nothing is recorded or written: the runs are as they always are.
"""
import contextlib
import os
import resource
import sys
import time

import chainer

#: The environment variable naming the directory of the per-rank timing files.
ENV = 'CHAINER_YOLO_DIST_TIMING_DIR'
_IMPORTED = time.time()
#: ``{phase: [start, end]}`` of this process (wall-clock seconds since the epoch).
_PHASES = {}


def enabled():
    return bool(os.environ.get(ENV))


def timing_path(directory, rank):
    return os.path.join(directory, 'timing_rank%d.json' % rank)


@contextlib.contextmanager
def phase(name):
    """Brackets a start-up step; recorded only when timing is :func:`enabled`."""
    start = time.time()
    try:
        yield
    finally:
        if enabled():
            _PHASES[name] = [start, time.time()]


def process_start_time():
    """When this process started (seconds since the epoch, to 10 ms): on Linux, now less the
    process's age (``/proc/uptime`` less field 22 of ``/proc/self/stat``, the start in clock
    ticks after boot; ``/proc/stat``'s boot time is whole seconds, too coarse), elsewhere the
    time this module was first imported.

    Both /proc counters are truncated to a clock tick, which could place the start up to a
    tick before the true one (before the launcher even ran); the start is taken at the end of
    its tick instead, so the value errs late by under 10 ms, never early."""
    try:
        with open('/proc/self/stat') as f:
            ticks = int(f.read().rsplit(')', 1)[1].split()[19])  # field 22; comm may hold spaces
        with open('/proc/uptime') as f:
            uptime = float(f.read().split()[0])
        return time.time() - (uptime - (ticks + 1) / os.sysconf('SC_CLK_TCK'))
    except (OSError, ValueError, IndexError):
        return _IMPORTED


def peak_rss_bytes():
    """This process's peak resident set size in bytes (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == 'darwin' else peak * 1024)


class TimingRecorder(chainer.training.Extension):
    """Keeps the end time and peak memory of every update and writes this rank's timing file
    when the trainer stops (every rank; no collective). Added by ``core.run.build_trainer``
    when timing is :func:`enabled`."""

    trigger = 1, 'iteration'
    priority = chainer.training.PRIORITY_WRITER + 1  # before reports, right after the update

    def __init__(self, rank, directory):
        self.rank, self.directory = rank, directory
        self.first_update_start = None
        self.updates = []

    def initialize(self, trainer):
        if self.first_update_start is None:
            self.first_update_start = time.time()

    def __call__(self, trainer):
        self.updates.append([trainer.updater.iteration, time.time(), peak_rss_bytes()])

    def record(self):
        """What this rank's timing file holds (see the module's docstring)."""
        return {'rank': self.rank, 'pid': os.getpid(), 'process_start': process_start_time(),
                'phases': dict(_PHASES), 'first_update_start': self.first_update_start,
                'updates': list(self.updates), 'peak_rss_bytes': peak_rss_bytes()}

    def finalize(self):
        from chainer_yolo_dist.core.atomic import write_json
        os.makedirs(self.directory, exist_ok=True)
        write_json(timing_path(self.directory, self.rank), self.record())
