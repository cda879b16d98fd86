"""Snapshots, resume, and the files that end a run.

One trainer snapshot is written by rank 0 after the batch-normalisation statistics have been
averaged across ranks (a collective on every rank, just before), so the one file is every
rank's state and every rank resumes from it; a resumed job continues as if uninterrupted.
No snapshot or model file is ever written holding a non-finite value.

A snapshot is a set of files: the trainer snapshot ``snapshot_iter_N`` and, for a system with
state of its own on each rank (CycleGAN's pools), every rank's
``rank_states/snapshot_iter_N.rank<r>.npz`` (:func:`add_rank_snapshots`). The rank files are
written first, every rank waits for the others, and the trainer snapshot is renamed into
place last: where ``snapshot_iter_N`` exists, its set is whole (a job killed in between leaves
rank files without a trainer snapshot: no snapshot). :func:`snapshot_problem` says whether a
set is complete, every file present and readable; retention keeps the newest
``--keep-snapshots`` complete sets by iteration, whole, and removes every other file of a set.

``--resume`` takes a snapshot file, a run directory (its newest complete snapshot) or
``auto`` (the newest complete snapshot in ``--out``, a fresh start where there is none):
:func:`find_snapshot`.
"""
import json
import os
import re
import zipfile
import zlib

import chainer
from chainer.serializers import npz
from chainer.training.extensions import snapshot_writers

from chainer_yolo_dist.core import atomic, finite
from chainer_yolo_dist.core.persistents import MeanPersistents
from chainer_yolo_dist.core.preemption import AgreedTrigger

SNAPSHOT_NAME = 'snapshot_iter_{.updater.iteration}'
_SNAPSHOT_FILE = re.compile(r'snapshot_iter_(\d+)$')
#: ``--resume auto``: the newest complete snapshot in ``--out``, or a fresh start.
AUTO = 'auto'
#: What reading a damaged ``.npz`` raises beyond OSError and ValueError.
_DAMAGED = (zipfile.BadZipFile, zlib.error, EOFError)


class AtomicWriter(snapshot_writers.Writer):
    """Snapshot writer (for Chainer's ``snapshot_object``, e.g. the best model) through
    :func:`~chainer_yolo_dist.core.atomic.atomic_path`: a unique temporary file beside the
    snapshot, renamed into place, removed if anything fails."""

    def __call__(self, filename, outdir, target):
        with atomic.atomic_path(os.path.join(outdir, filename)) as tmp:
            npz.save_npz(tmp, target)
        self._post_save()


def run_identity(settings):
    """The settings a resumed run must share with the run that wrote the snapshot: the world
    (ranks, virtual ranks), the parallelism mode and the options it reads, the per-worker
    batch, the data size and the schedule."""
    from chainer_yolo_dist.core.parallelism import modes
    preset = settings.preset
    identity = {'ranks': settings.ranks, 'virtual_ranks': settings.virtual_ranks,
                'batchsize_per_worker': preset.batchsize_per_gpu, 'n_train': preset.n_train,
                'seed': settings.seed, 'schedule': repr(settings.preset.schedule()),
                'parallelism': settings.parallelism}
    for dest in modes.mode(settings.parallelism).options:  # e.g. local's --average-every
        identity[dest] = getattr(settings, dest)
    identity.update(settings.identity_extras())  # what the system adds (e.g. its sampling)
    return identity


class RunIdentity(chainer.training.Extension):
    """Stored in every snapshot: :func:`run_identity` of the run that wrote it. :func:`resume`
    refuses a snapshot whose identity differs from the run's, naming what differs (a snapshot
    of 3 ranks resumed on 4 would otherwise continue with another learning rate)."""

    trigger = None
    name = 'run_identity'

    def __init__(self, settings):
        self.identity = run_identity(settings)

    def __call__(self, trainer):
        pass

    def serialize(self, serializer):
        # Written into snapshots; read back by resume() before anything is loaded.
        value = serializer('identity', json.dumps(self.identity, sort_keys=True))
        if not isinstance(serializer, chainer.serializer.Serializer):
            self.identity = json.loads(str(value))


class SnapshotSet(chainer.training.Extension):
    """Writes one snapshot set, then applies the retention; on every training rank.

    Every rank first writes its own state (when :func:`add_rank_snapshots` gave one) and
    learns whether every other rank could (a collective); then rank 0 writes the trainer
    snapshot (refused if any value is not finite) and decides which sets stay: this one and
    the newest ``keep - 1`` complete sets before it, by iteration. Sets of later iterations
    (an abandoned continuation, after a resume from an older snapshot) and incomplete ones
    are removed; each rank removes its own state files that are not kept (a run directory
    on a node's own disk included), rank 0 every file it sees.
    """

    priority = -100  # after the iteration's writers (statistics averaged, log, evaluation)
    name = 'snapshot'

    def __init__(self, comm, chain, keep):
        self.comm, self.chain, self.keep = comm, chain, keep
        self.rank_state = None  # anything with ``serialize``: see add_rank_snapshots

    def __call__(self, trainer):
        iteration = trainer.updater.iteration
        path = os.path.join(trainer.out, SNAPSHOT_NAME.format(trainer))
        if self.rank_state is not None:
            self._write_rank_states(path, iteration)
        if self.comm.rank == 0:
            finite.require_finite(self.chain, 'a snapshot', iteration)
            with atomic.atomic_path(path) as tmp:  # named last: its set is whole
                npz.save_npz(tmp, trainer)
        self._retain(trainer.out, iteration)

    def _write_rank_states(self, path, iteration):
        own = rank_state_path(path, self.comm.rank)
        error = None
        try:
            os.makedirs(os.path.dirname(own), exist_ok=True)
            atomic.save_npz(own, _RankState(self.rank_state, iteration))
        except OSError as e:
            error = 'rank %d cannot write its state %s (%s)' % (self.comm.rank, own, e)
        # Collective: no rank goes on (and rank 0 writes no trainer snapshot) unless all did.
        errors = [e for e in self.comm.mpi_comm.allgather(error) if e]
        if errors:
            raise RuntimeError('snapshot of iteration %d not written: %s'
                               % (iteration, '; '.join(errors)))

    def _retain(self, out, iteration):
        kept = None
        if self.comm.rank == 0:
            kept = retained_iterations(out, self.keep, iteration)
            _remove_sets(out, kept)
        if self.rank_state is not None and self.comm.size > 1:
            kept = self.comm.bcast_obj(kept)
            if self.comm.rank != 0:
                _remove_sets(out, kept, rank=self.comm.rank)

    def serialize(self, serializer):
        # How many rank-state files belong to the snapshot (0: none): snapshot_problem reads
        # it to tell a complete set. Only written: a resumed run has its own.
        serializer('rank_states', self.comm.size if self.rank_state is not None else 0)


def add_snapshots(trainer, settings, comm, chain, model, agreement=None):
    """Trainer snapshots every ``settings.snapshot_interval`` iterations (or at the end), and
    whenever the ranks' ``agreement`` (:class:`~.preemption.Agreement`: a stop signal,
    ``--snapshot-minutes``) asks (:class:`SnapshotSet`): the newest
    ``settings.keep_snapshots`` complete sets kept; refused if any value is not finite."""
    trainer.extend(RunIdentity(settings))
    if comm.size > 1:
        # batch-normalisation statistics averaged over the ranks before rank 0 writes them
        # (through NCCL or a host buffer: never device memory to MPI, see core/persistents)
        trainer.extend(MeanPersistents(model, comm), trigger=snapshot_trigger(settings, agreement),
                       name='allreduce_persistent')
    trainer.extend(SnapshotSet(comm, chain, settings.keep_snapshots),
                   trigger=snapshot_trigger(settings, agreement))


def snapshot_trigger(settings, agreement=None):
    """A new trigger of the snapshots: every ``--snapshot-interval`` updates (or at the end),
    or when the ranks' ``agreement`` asks. One object per extension: an interval trigger
    shared by two extensions advances twice per iteration and fires for the first only."""
    interval = ((settings.snapshot_interval, 'iteration') if settings.snapshot_interval
                else settings.stop_trigger)
    return AgreedTrigger(interval, agreement) if agreement is not None else interval


# --- which snapshot, and whether it is complete ---------------------------------------------

def npz_problem(path):
    """What keeps ``path`` from being read as an ``.npz`` (a zip archive whose directory
    reads), in words, or None. Reads the archive's directory only, not the arrays: a file cut
    short (a killed copy, a full disk) has none."""
    if not os.path.lexists(path):
        return 'no such file'
    try:
        size = os.path.getsize(path)
        if size == 0:
            return 'empty file (0 bytes)'
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile as e:
        return ('truncated or corrupt, or not an .npz: its zip directory does not read (%d '
                'bytes; %s)' % (size, e))
    except OSError as e:
        return 'cannot be read (%s)' % (e.strerror or e)
    if not names:
        return 'an .npz archive without arrays'
    return None


def snapshot_problem(path):
    """Why the snapshot set of the trainer snapshot ``path`` is not complete, in words, or
    None: the trainer snapshot unreadable (:func:`npz_problem`), or a rank's state file that
    it counts missing or unreadable."""
    problem = npz_problem(path)
    if problem:
        return problem
    import numpy as np
    key = 'extensions/%s/rank_states' % SnapshotSet.name
    try:
        with np.load(path) as snapshot:
            ranks = int(snapshot[key]) if key in snapshot.files else 0
    except (OSError, ValueError) + _DAMAGED as e:
        return 'corrupt (%s: %s)' % (type(e).__name__, e)
    for rank in range(ranks):
        state = rank_state_path(path, rank)
        if not os.path.isfile(state):
            return 'rank %d\'s state %s is missing' % (rank, state)
        problem = npz_problem(state)
        if problem:
            return 'rank %d\'s state %s: %s' % (rank, state, problem)
    return None


def snapshot_files(folder):
    """``[(iteration, path)]`` of the trainer snapshots in ``folder``, oldest first."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return sorted((int(m.group(1)), os.path.join(folder, name)) for name in names
                  for m in [_SNAPSHOT_FILE.match(name)] if m)


def newest_complete(folder):
    """``(path, skipped)``: the newest complete snapshot in ``folder`` by iteration (None if
    none), and ``(path, problem)`` of each newer incomplete one passed over."""
    skipped = []
    for _, path in reversed(snapshot_files(folder)):
        problem = snapshot_problem(path)
        if problem is None:
            return path, skipped
        skipped.append((path, problem))
    return None, skipped


def find_snapshot(spec, out):
    """The trainer snapshot ``--resume spec`` means for a run whose ``--out`` is ``out``.

    ``spec`` is a snapshot file (returned if its set is complete), a folder (its newest
    complete snapshot, by iteration) or ``'auto'`` (the newest complete snapshot in ``out``;
    None when there is none: a fresh start). None for no ``spec``.

    Raises:
        ValueError (one line naming ``spec``): no such file or folder; a folder without a
            complete snapshot; a file that is unreadable or whose set is incomplete;
            ``'auto'`` without ``out``.
    """
    if not spec:
        return None
    if spec == AUTO:
        if not out:
            raise ValueError('--resume auto needs --out: it continues the run in that '
                             'directory (without --out every run gets a new one)')
        return newest_complete(out)[0]
    if os.path.isdir(spec):
        path, skipped = newest_complete(spec)
        if path is None:
            raise ValueError('--resume %s: no complete snapshot in %s%s'
                             % (spec, spec, '; newest: %s: %s' % skipped[0] if skipped
                                else ' (no snapshot_iter_N file)'))
        return path
    if os.path.isfile(spec):
        problem = snapshot_problem(spec)
        if problem:
            raise ValueError('--resume %s: cannot resume from it: %s' % (spec, problem))
        return spec
    raise ValueError('--resume %s: no such file or folder' % spec)


def check_resume(spec, out):
    """``--resume`` checked before anything else runs (for ``core.resolve.resolve``, with the
    options ``resume`` and ``out``): the trainer snapshot to resume from (a complete set), or
    None (no ``--resume``, or ``auto`` with nothing to resume); ValueError in one line naming
    the file or folder otherwise (:func:`find_snapshot`)."""
    return find_snapshot(spec, out)


def resume(trainer, settings, comm, log, rank_state=None):
    """Loads the snapshot ``settings.resume`` means (:func:`find_snapshot`) into ``trainer``
    on every rank (nothing without it, or for ``auto`` with nothing to resume), then each
    rank's own file (:func:`add_rank_snapshots`) into ``rank_state`` if given."""
    if not settings.resume:
        return
    from chainer_yolo_dist.core.mpi import SetupError
    path = _found_by_rank0(comm, settings)
    if path is None:
        if comm.rank == 0:
            log('--resume %s: no complete snapshot in %s: starting from the beginning'
                % (settings.resume, settings.out))
        return
    different = _identity_differences(path, settings)
    if different:
        raise SetupError('%s: cannot resume this run from it: the snapshot was written by a '
                         'run with other settings: %s; a snapshot resumes only on the same '
                         'number of ranks, parallelism, batch, data and schedule'
                         % (path, '; '.join(different)))
    try:
        chainer.serializers.load_npz(path, trainer)
    except (ValueError, KeyError, OSError) + _DAMAGED as e:
        raise SetupError('%s: cannot resume this run from it: %s' % (path, _reason(e))) from e
    if rank_state is not None:
        # Collective: every rank learns whether any rank's file failed, so none waits.
        errors = [e for e in comm.mpi_comm.allgather(_load_rank_state(
            path, comm.rank, rank_state, trainer.updater.iteration)) if e]
        if errors:
            raise SetupError('; '.join(errors))
    if comm.rank == 0:
        log('resumed from %s at iteration %d' % (path, trainer.updater.iteration))


def _found_by_rank0(comm, settings):
    """:func:`find_snapshot` on rank 0, its answer every rank's (a SetupError on all)."""
    from chainer_yolo_dist.core.mpi import SetupError
    outcome = None
    if comm.rank == 0:
        try:
            outcome = (None, find_snapshot(settings.resume, settings.out))
        except ValueError as e:
            outcome = (str(e), None)
    error, path = comm.bcast_obj(outcome) if comm.size > 1 else outcome
    if error is not None:
        raise SetupError(error)
    return path


def _reason(e):
    if isinstance(e, _DAMAGED):
        return 'damaged (%s: %s)' % (type(e).__name__, e)
    if isinstance(e, OSError) and e.errno is not None:  # the reason in words, not "(2)"
        return e.strerror or os.strerror(e.errno)
    return e.args[0] if e.args else e


def _identity_differences(path, settings):
    """What differs between this run and the one that wrote the snapshot ``path`` (read
    before loading anything: the iterators' state would otherwise fail first, less
    clearly)."""
    import numpy as np
    from chainer_yolo_dist.core.mpi import SetupError
    key = 'extensions/%s/identity' % RunIdentity.name
    try:
        with np.load(path) as snapshot:
            if key not in snapshot.files:
                return ['no run identity in the snapshot (not written by this package?)']
            stored = json.loads(str(snapshot[key]))
    except (OSError, ValueError) + _DAMAGED as e:
        raise SetupError('%s: cannot resume this run from it: %s' % (path, _reason(e))) from e
    return ['%s %s (now %s)' % (k, stored[k] if k in stored else 'not recorded', v)
            for k, v in sorted(run_identity(settings).items()) if stored.get(k) != v]


def record_config(settings, comm, **facts):
    """Rank 0 writes ``config.json``: the settings object as it is, plus the run's facts
    (padding of the shares, iterations per epoch, class names, ...)."""
    if comm.rank == 0:
        record = settings.to_json()
        record.update(facts)
        atomic.write_json(os.path.join(settings.out, 'config.json'), record)


def save_results(settings, comm, metrics, model, iteration):
    """Rank 0 writes the trained network alone as ``model.npz``, then ``metrics.json``.

    ``metrics.json`` is written last: a run directory that has it holds a finished run. A
    network holding a non-finite value is refused (NonFiniteError naming ``iteration``).
    """
    if comm.rank == 0:
        finite.require_finite(model, 'model.npz', iteration)
        atomic.save_npz(os.path.join(settings.out, 'model.npz'), model)
        atomic.write_json(os.path.join(settings.out, 'metrics.json'), metrics)


# --- per-rank state -----------------------------------------------------------------------------
#
# Some state differs between ranks and is not the model's: a history of generated images
# (CycleGAN's pools), a rank's own random generator. The trainer snapshot is rank 0's alone, so
# each rank writes its own state to a file of its own beside it, at the same iterations:
# ``rank_states/<snapshot name>.rank<r>.npz``. Per-rank files, not gathered into rank 0's
# snapshot, so that no rank holds every rank's state at once (512 ranks x 2 pools x 50 images
# of 256 px is about 40 GB) and each writes in parallel. A resumed run needs the same number of
# ranks (the run identity already requires it) and every rank's file.

RANK_STATE_DIR = 'rank_states'
_RANK_STATE_FILE = re.compile(r'snapshot_iter_(\d+)\.rank(\d+)\.npz$')


def rank_state_path(snapshot_path, rank):
    """Where rank ``rank``'s state of the snapshot ``snapshot_path`` lives."""
    folder, name = os.path.split(snapshot_path)
    return os.path.join(folder, RANK_STATE_DIR, '%s.rank%d.npz' % (name, rank))


class _RankState(object):
    """What one rank's file holds: the iteration it belongs to and the target's state."""

    def __init__(self, target, iteration=0):
        self.target, self.iteration = target, iteration

    def serialize(self, serializer):
        self.iteration = int(serializer('iteration', self.iteration))
        self.target.serialize(serializer['state'])


def add_rank_snapshots(trainer, settings, comm, target):
    """Every rank writes ``target``'s state (anything with ``serialize``) with each snapshot,
    before rank 0 writes the trainer snapshot (:class:`SnapshotSet`; after
    ``run.build_trainer``)."""
    trainer.get_extension(SnapshotSet.name).rank_state = target


def retained_iterations(out, keep, iteration):
    """The iterations whose sets stay in ``out`` once the set of ``iteration`` is written:
    it, and the newest ``keep - 1`` complete sets before it."""
    kept = [iteration]
    for found, path in reversed(snapshot_files(out)):
        if len(kept) >= keep:
            break
        if found < iteration and snapshot_problem(path) is None:
            kept.append(found)
    return sorted(kept)


def _remove_sets(out, kept, rank=None):
    """Removes from ``out`` every trainer snapshot and rank-state file of an iteration not in
    ``kept`` (``rank`` given: only that rank's state files), and, on rank 0 while every rank
    waits, the temporary files a killed write left in ``rank_states``."""
    if rank is None:
        for found, path in snapshot_files(out):
            if found not in kept:
                _unlink(path)
    folder = os.path.join(out, RANK_STATE_DIR)
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        m = _RANK_STATE_FILE.match(name)
        if m and int(m.group(1)) not in kept and rank in (None, int(m.group(2))):
            _unlink(os.path.join(folder, name))
        elif rank is None and name.startswith(atomic.TMP_PREFIX):
            _unlink(os.path.join(folder, name))


def _unlink(path):
    try:
        os.remove(path)
    except FileNotFoundError:  # removed by another rank on a shared file system
        pass


def _load_rank_state(snapshot_path, rank, target, iteration):
    """Loads this rank's file into ``target``; returns None, or what went wrong in words."""
    path = rank_state_path(snapshot_path, rank)
    holder = _RankState(target)
    try:
        chainer.serializers.load_npz(path, holder)
    except (ValueError, KeyError, OSError) + _DAMAGED as e:
        return ('%s: cannot resume rank %d: its own state %s is missing or unreadable (%s)'
                % (snapshot_path, rank, path, _reason(e)))
    if holder.iteration != iteration:
        return ('%s: rank %d\'s state %s is of iteration %d, the snapshot of %d'
                % (snapshot_path, rank, path, holder.iteration, iteration))
    return None
