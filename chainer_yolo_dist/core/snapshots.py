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
    return {'ranks': settings.ranks, 'virtual_ranks': settings.virtual_ranks,
            'batchsize_per_worker': preset.batchsize_per_gpu, 'n_train': preset.n_train,
            'seed': settings.seed, 'schedule': repr(settings.schedule)}


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
    import chainermn
    trigger = ((settings.snapshot_interval, 'iteration') if settings.snapshot_interval
               else settings.stop_trigger)
    trainer.extend(RunIdentity(settings))
    if comm.size > 1:
        trainer.extend(chainermn.extensions.AllreducePersistent(model, comm),
                       trigger=trigger, name='allreduce_persistent')
    if comm.rank == 0:
        trainer.extend(
            extensions.snapshot(
                filename=SNAPSHOT_NAME, writer=AtomicWriter(),
                n_retains=settings.keep_snapshots,
                condition=lambda: finite.require_finite(
                    chain, 'a snapshot', trainer.updater.iteration)),
            trigger=trigger)


def resume(trainer, settings, comm, log):
    """Loads ``settings.resume`` into ``trainer`` on every rank (nothing without it)."""
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
