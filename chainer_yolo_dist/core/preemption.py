"""A scheduler's stop signal costs nothing, a snapshot is never far behind, a hung rank ends
the job.

Batch schedulers (SLURM, PBS, ABCI's) send SIGTERM at the wall-time limit and SIGKILL a
little later. Every rank of a run catches the stop signals (``--stop-signals``, default
SIGTERM, SIGINT and SIGUSR1) and only raises a flag; after each update the training ranks
agree (:class:`Agreement`: one small MPI reduction of host integers), so all of them, at the
same iteration boundary, average their statistics, let rank 0 write a snapshot and stop
(:class:`StopTrigger`, :func:`raise_if_stopped`) with status 75 and one line saying how to
continue: the same command with ``--resume auto``. The same agreement writes a snapshot every
``--snapshot-minutes`` of wall time (30 by default), so a SIGKILL loses at most that. A
second stop signal, more than :data:`REPEAT_SECONDS` after the first, ends the process at once.

:class:`Watchdog`: when no update completes within ``--watchdog-minutes`` (default: ten
times the median update time, and at least 10 minutes), every rank still alive says so in a
file of the run directory, waits a few seconds for the others, names the ranks that did not
arrive (stopped, hung in a collective, or dead) and ends the whole job.
"""
import collections
import json
import os
import signal
import socket
import threading
import time

import chainer

from chainer_yolo_dist.core import mpi
from chainer_yolo_dist.core.mpi import PREEMPTED_STATUS, Preempted  # noqa: F401 (re-exported)

DEFAULT_SIGNALS = ('SIGTERM', 'SIGINT', 'SIGUSR1')
NONE, SNAPSHOT, STOP = 0, 1, 2
#: A repeat within this many seconds of the first stop signal is the same request: one stop
#: reaches each rank by several paths at once (Slurm signals every process of the job at its
#: time limit, mpiexec forwards what it receives, the job script forwards it once more).
REPEAT_SECONDS = 5.0


def parse_signals(text):
    """``'SIGTERM,SIGUSR1'`` (or ``'TERM,USR1'``, or ``''`` for none) -> names; ValueError
    naming an unknown one."""
    names = []
    for part in filter(None, (p.strip().upper() for p in text.split(','))):
        name = part if part.startswith('SIG') else 'SIG' + part
        if not isinstance(getattr(signal, name, None), signal.Signals):
            raise ValueError('--stop-signals: unknown signal %r' % part)
        names.append(name)
    return tuple(names)


class SignalFlag(object):
    """Records the first stop signal received; a second one, more than ``repeat_seconds``
    later, ends the process at once (the signal's default action), for a user who does not
    want to wait for the snapshot. Repeats within ``repeat_seconds`` are the same request."""

    def __init__(self, names, repeat_seconds=REPEAT_SECONDS):
        self.received = None
        self.received_at = None
        self.repeat_seconds = repeat_seconds
        self.names = tuple(names)
        for name in self.names:
            signal.signal(getattr(signal, name), self._handle)

    def _handle(self, signum, frame):
        if self.received is not None:
            if time.monotonic() - self.received_at < self.repeat_seconds:
                return
            signal.signal(signum, signal.SIG_DFL)
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            os.kill(os.getpid(), signum)
            return
        self.received = signal.Signals(signum).name
        self.received_at = time.monotonic()


class Agreement(chainer.training.Extension):
    """After every update: what all training ranks do next, agreed by one reduction.

    ``decision`` is :data:`NONE`, :data:`SNAPSHOT` (rank 0's clock says ``snapshot_seconds``
    have passed since the last snapshot) or :data:`STOP` (some rank received a stop signal).
    Runs first among the extensions, so the snapshot triggers of the same iteration see it.
    """

    trigger = 1, 'iteration'
    priority = chainer.training.PRIORITY_WRITER + 10

    def __init__(self, comm, flag, snapshot_seconds):
        self.comm = comm
        self.flag = flag
        self.snapshot_seconds = snapshot_seconds
        self.last = time.monotonic()
        self.decision = NONE

    def __call__(self, trainer):
        from mpi4py import MPI
        local = NONE
        if self.flag.received is not None:
            local = STOP
        elif (self.comm.rank == 0 and self.snapshot_seconds
              and time.monotonic() - self.last >= self.snapshot_seconds):
            local = SNAPSHOT
        self.decision = self.comm.mpi_comm.allreduce(local, op=MPI.MAX)
        if self.decision != NONE:
            self.last = time.monotonic()


class AgreedTrigger(object):
    """``trigger`` (the snapshot interval), or whenever :class:`Agreement` asks for a
    snapshot; serialised as ``trigger`` is, so snapshots stay compatible."""

    def __init__(self, trigger, agreement):
        self.trigger = chainer.training.get_trigger(trigger)
        self.agreement = agreement

    def __call__(self, trainer):
        scheduled = self.trigger(trainer)  # called every iteration: interval state advances
        return scheduled or self.agreement.decision != NONE

    def serialize(self, serializer):
        if hasattr(self.trigger, 'serialize'):
            self.trigger.serialize(serializer)


class StopTrigger(object):
    """The trainer's stop trigger, or the agreed stop: the training loop then ends normally
    after the iteration's extensions (the snapshot among them). Everything else, the
    progress bar's training length and the snapshot's serialisation, is the wrapped one's."""

    def __init__(self, trigger, agreement):
        self.trigger = trigger
        self.agreement = agreement

    def __call__(self, trainer):
        return self.trigger(trainer) or self.agreement.decision == STOP

    def __getattr__(self, name):
        return getattr(self.trigger, name)


def raise_if_stopped(trainer, comm, settings):
    """After ``trainer.run()`` on every training rank: :class:`Preempted` with how to continue
    when the run ended on a stop signal (once every rank has passed the snapshot), else
    nothing."""
    agreement = getattr(trainer.stop_trigger, 'agreement', None)
    if agreement is None or agreement.decision != STOP:
        return
    comm.mpi_comm.Barrier()  # rank 0 has written the snapshot
    iteration = trainer.updater.iteration
    raise Preempted(
        'stopped by %s after iteration %d: snapshot %s written; continue with the same '
        'command and --resume auto (or --resume %s)'
        % (agreement.flag.received or 'a stop signal', iteration,
           os.path.join(settings.out, 'snapshot_iter_%d' % iteration), settings.out),
        report=comm.rank == 0, end_world=settings.serving_ranks > 0)


class Watchdog(chainer.training.Extension):
    """Ends the job when no update completes for too long, naming the ranks that did not
    arrive (see the module docstring). ``limit_seconds`` None: ``max(min_seconds, factor x
    the median of the recent update times)``."""

    trigger = 1, 'iteration'
    priority = -2
    name = 'watchdog'

    def __init__(self, out, rank, size, limit_seconds=None, min_seconds=600, factor=10,
                 poll_seconds=1.0):
        self.folder = os.path.join(out, 'watchdog')
        self.rank, self.size = rank, size
        self.limit_seconds, self.min_seconds, self.factor = limit_seconds, min_seconds, factor
        self.poll_seconds = poll_seconds
        self.steps = collections.deque(maxlen=50)
        self.last = time.monotonic()
        self.iteration = 0
        self._done = threading.Event()
        self._thread = None

    def limit(self):
        if self.limit_seconds:
            return self.limit_seconds
        median = sorted(self.steps)[len(self.steps) // 2] if self.steps else 0
        return max(self.min_seconds, self.factor * median)

    def initialize(self, trainer):
        if self.rank == 0 and os.path.isdir(self.folder):  # a former run's reports
            for name in os.listdir(self.folder):
                os.remove(os.path.join(self.folder, name))
        self.last = time.monotonic()
        self.iteration = trainer.updater.iteration
        self._thread = threading.Thread(target=self._watch, name='watchdog', daemon=True)
        self._thread.start()

    def __call__(self, trainer):
        now = time.monotonic()
        self.steps.append(now - self.last)
        self.last, self.iteration = now, trainer.updater.iteration

    def finalize(self):
        self._done.set()

    def _watch(self):
        while not self._done.wait(self.poll_seconds):
            waited = time.monotonic() - self.last
            if waited > self.limit():
                self._fire(waited)
                return

    def _fire(self, waited):
        from chainer_yolo_dist.core.atomic import write_json
        os.makedirs(self.folder, exist_ok=True)
        write_json(os.path.join(self.folder, 'rank%d.json' % self.rank),
                   {'rank': self.rank, 'host': socket.gethostname(),
                    'iteration': self.iteration, 'waited_seconds': waited})
        time.sleep(min(10.0, max(2.0, self.limit() / 4)))  # the others' reports
        arrived = set()
        for name in os.listdir(self.folder):
            if name.startswith('rank') and name.endswith('.json'):
                with open(os.path.join(self.folder, name)) as f:
                    arrived.add(json.load(f)['rank'])
        missing = sorted(set(range(self.size)) - arrived)
        mpi.abort('error: rank %d on %s: no update completed for %.0f s after iteration %d '
                  '(watchdog limit %.0f s, --watchdog-minutes); ranks that did not arrive: '
                  '%s (stopped, hung or dead); ending the job'
                  % (self.rank, socket.gethostname(), waited, self.iteration, self.limit(),
                     ', '.join(map(str, missing)) or 'none'))


def install(trainer, settings, comm):
    """Adds the stop-signal handling and the watchdog to ``trainer`` (every training rank);
    returns the :class:`Agreement`, which the snapshot triggers follow
    (:class:`AgreedTrigger`)."""
    flag = SignalFlag(settings.stop_signals)
    agreement = Agreement(comm, flag, 60 * (settings.snapshot_minutes or 0))
    trainer.extend(agreement, name='stop_agreement')
    trainer.stop_trigger = StopTrigger(trainer.stop_trigger, agreement)
    trainer.extend(Watchdog(settings.out, comm.rank, comm.size,
                            limit_seconds=60 * settings.watchdog_minutes
                            if settings.watchdog_minutes else None))
    return agreement
