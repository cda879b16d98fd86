"""Snapshots, resume, and the files that end a run.

One trainer snapshot is written by rank 0 after the batch-normalisation statistics have been
averaged across ranks (a collective on every rank, just before), so the one file is every
rank's state and every rank resumes from it; a resumed job continues as if uninterrupted.
No snapshot or model file is ever written holding a non-finite value.
"""
import json
import os

import chainer
from chainer.serializers import npz
from chainer.training import extensions
from chainer.training.extensions import snapshot_writers

from chainer_yolo_dist.core import atomic, finite
from chainer_yolo_dist.core.persistents import MeanPersistents

SNAPSHOT_NAME = 'snapshot_iter_{.updater.iteration}'


class AtomicWriter(snapshot_writers.Writer):
    """Snapshot writer through :func:`~chainer_yolo_dist.core.atomic.atomic_path`: a unique
    temporary file beside the snapshot, renamed into place, removed if anything fails."""

    def __call__(self, filename, outdir, target):
        with atomic.atomic_path(os.path.join(outdir, filename)) as tmp:
            npz.save_npz(tmp, target)
        self._post_save()


def run_identity(settings):
    """The settings a resumed run must share with the run that wrote the snapshot: the world
    (ranks, virtual ranks), the per-worker batch, the data size and the schedule."""
    preset = settings.preset
    identity = {'ranks': settings.ranks, 'virtual_ranks': settings.virtual_ranks,
                'batchsize_per_worker': preset.batchsize_per_gpu, 'n_train': preset.n_train,
                'seed': settings.seed, 'schedule': repr(settings.preset.schedule())}
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


def add_snapshots(trainer, settings, comm, chain, model):
    """Rank 0's trainer snapshots every ``settings.snapshot_interval`` iterations (or at the
    end), the newest ``settings.keep_snapshots`` kept; refused if any value is not finite."""
    trigger = ((settings.snapshot_interval, 'iteration') if settings.snapshot_interval
               else settings.stop_trigger)
    trainer.extend(RunIdentity(settings))
    if comm.size > 1:
        # batch-normalisation statistics averaged over the ranks before rank 0 writes them
        # (through NCCL or a host buffer: never device memory to MPI, see core/persistents)
        trainer.extend(MeanPersistents(model, comm), trigger=trigger,
                       name='allreduce_persistent')
    if comm.rank == 0:
        trainer.extend(
            extensions.snapshot(
                filename=SNAPSHOT_NAME, writer=AtomicWriter(),
                n_retains=settings.keep_snapshots,
                condition=lambda: finite.require_finite(
                    chain, 'a snapshot', trainer.updater.iteration)),
            trigger=trigger)


def resume(trainer, settings, comm, log, rank_state=None):
    """Loads ``settings.resume`` into ``trainer`` on every rank (nothing without it), then
    each rank's own file (:func:`add_rank_snapshots`) into ``rank_state`` if given."""
    if not settings.resume:
        return
    from chainer_yolo_dist.core.mpi import SetupError
    different = _identity_differences(settings)
    if different:
        raise SetupError('%s: cannot resume this run from it: the snapshot was written by a '
                         'run with other settings: %s; a snapshot resumes only on the same '
                         'number of ranks, batch, data and schedule'
                         % (settings.resume, '; '.join(different)))
    try:
        chainer.serializers.load_npz(settings.resume, trainer)
    except (ValueError, KeyError, OSError) as e:
        raise SetupError('%s: cannot resume this run from it: %s'
                         % (settings.resume, e.args[0] if e.args else e)) from e
    if rank_state is not None:
        # Collective: every rank learns whether any rank's file failed, so none waits.
        errors = [e for e in comm.mpi_comm.allgather(_load_rank_state(
            settings.resume, comm.rank, rank_state, trainer.updater.iteration)) if e]
        if errors:
            raise SetupError('; '.join(errors))
    if comm.rank == 0:
        log('resumed from %s at iteration %d' % (settings.resume, trainer.updater.iteration))


def _identity_differences(settings):
    """What differs between this run and the one that wrote ``settings.resume`` (read before
    loading anything: the iterators' state would otherwise fail first, less clearly)."""
    import numpy as np
    key = 'extensions/%s/identity' % RunIdentity.name
    try:
        with np.load(settings.resume) as snapshot:
            if key not in snapshot.files:
                return ['no run identity in the snapshot (not written by this package?)']
            stored = json.loads(str(snapshot[key]))
    except (OSError, ValueError) as e:
        return ['unreadable snapshot (%s)' % e]
    return ['%s %s (now %s)' % (k, stored.get(k), v)
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
# of 256 px is about 40 GB) and each writes in parallel. The subfolder keeps them out of the
# names Chainer's snapshot retention scans. A resumed run needs the same number of ranks (the
# run identity already requires it) and every rank's file.

RANK_STATE_DIR = 'rank_states'


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
    """Every rank writes ``target``'s state (anything with ``serialize``) whenever the trainer
    snapshot is written (same trigger), keeping its newest ``settings.keep_snapshots``."""
    trigger = ((settings.snapshot_interval, 'iteration') if settings.snapshot_interval
               else settings.stop_trigger)
    written = _existing_rank_states(settings.out, comm.rank)

    @chainer.training.make_extension(trigger=trigger, priority=-100)
    def rank_snapshot(trainer):
        path = rank_state_path(os.path.join(
            settings.out, SNAPSHOT_NAME.format(trainer)), comm.rank)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic.save_npz(path, _RankState(target, trainer.updater.iteration))
        written.append(path)
        while len(written) > settings.keep_snapshots:
            old = written.pop(0)
            if os.path.exists(old):
                os.remove(old)

    trainer.extend(rank_snapshot, name='rank_snapshot')


def _load_rank_state(snapshot_path, rank, target, iteration):
    """Loads this rank's file into ``target``; returns None, or what went wrong in words."""
    path = rank_state_path(snapshot_path, rank)
    holder = _RankState(target)
    try:
        chainer.serializers.load_npz(path, holder)
    except (ValueError, KeyError, OSError) as e:
        return ('%s: cannot resume rank %d: its own state %s is missing or unreadable (%s)'
                % (snapshot_path, rank, path, e.args[0] if e.args else e))
    if holder.iteration != iteration:
        return ('%s: rank %d\'s state %s is of iteration %d, the snapshot of %d'
                % (snapshot_path, rank, path, holder.iteration, iteration))
    return None


def _existing_rank_states(out, rank):
    """This rank's state files already in ``out`` (a resumed run's), oldest first."""
    import re
    folder = os.path.join(out, RANK_STATE_DIR)
    if not os.path.isdir(folder):
        return []
    prefix = re.escape(SNAPSHOT_NAME.split('{')[0])
    pattern = re.compile(r'%s(\d+)\.rank%d\.npz$' % (prefix, rank))
    found = [(int(m.group(1)), name) for name in os.listdir(folder)
             for m in [pattern.match(name)] if m]
    return [os.path.join(folder, name) for _, name in sorted(found)]
