"""The start of a run and the trainer every recipe builds on.

A recipe (``detection/recipe.py``, ``classification/recipe.py``, ...) reads top to bottom:
:func:`start_run` (settings, communicator, data), its model and data pipeline, then
:func:`build_trainer` (schedule, aggregation, snapshots), its evaluator and reports,
:func:`~chainer_yolo_dist.core.snapshots.resume`, ``trainer.run()``, and
:func:`~chainer_yolo_dist.core.snapshots.save_results`.
"""
import collections
import dataclasses
import os
import sys
import time

import chainer

from chainer_yolo_dist.core import (devices, mpi, parallelism, preemption, reporting, resolve,
                                    rundir, snapshots, timing)
from chainer_yolo_dist.core.parallelism import modes
from chainer_yolo_dist.core.schedules import LRScheduleExtension

#: What a system's ``load_data`` returns; ``reports`` maps 'train' / 'test' to the
#: bad-sample report of that split (None for generated data).
Data = collections.namedtuple('Data', ('train', 'test', 'class_names', 'reports'))


@dataclasses.dataclass(frozen=True)
class System:
    """What :func:`start_run` needs to know of a system.

    Attributes:
        name (str): e.g. 'detection'.
        settings_cls: its :class:`~chainer_yolo_dist.core.settings.RunSettings` subclass.
        data_cls: its frozen data request (fields: dataset, data options, seed, ...).
        load_data: ``data request -> Data``, run on rank 0 only.
        check: ``(Preset, options) -> None``, raising ValueError when the preset, network,
            data or pretrained file do not fit together (run before any data is read, with
            the defaults below applied).
        defaults: ``(Preset, options) -> dict`` of settings and data-request fields whose
            default depends on the preset (an option left at None takes it), or None.
        check_images: ``(data request, comm, log) -> None`` run on every rank before rank 0
            loads the data (the image checks split across the ranks), or None.
    """

    name: str
    settings_cls: type
    data_cls: type
    load_data: object
    check: object
    defaults: object = None
    check_images: object = None


def _default_out(parent, preset_name, comm):
    """A new folder per run: ``parent/<preset>-<UTC time>`` (rank 0's clock for all ranks)."""
    return rundir.timestamped(parent, preset_name,
                              comm.bcast_obj(time.time() if comm.rank == 0 else None))


#: Exceptions that mean a user's mistake when raised while a run is set up.
SETUP_ERRORS = (ValueError, TypeError, KeyError, OSError)


def on_rank0(comm, work):
    """Runs ``work()`` on rank 0 and returns its result on every rank; if it fails with a
    setup error, every rank raises the same :class:`~chainer_yolo_dist.core.mpi.SetupError`
    (so the job ends cleanly everywhere, none left waiting)."""
    outcome = None  # only the root may hold an object for bcast_obj
    if comm.rank == 0:
        try:
            outcome = (None, work())
        except SETUP_ERRORS as e:
            outcome = (_message(e), None)
    mpi.wait_idle(comm)  # the other ranks wait without taking rank 0's cores
    error, result = comm.bcast_obj(outcome)
    if error is not None:
        raise mpi.SetupError(error)
    return result


def _message(e):
    return e.args[0] if isinstance(e, KeyError) and e.args else str(e)


def start_run(system, options, log=print):
    """Settings, communicator, run directory and data of a run; rank 0 reports them.

    Everything that can be checked before training is checked here, by the name of the
    option, file or split at fault: the options, preset, network, data and pretrained file
    (:func:`~chainer_yolo_dist.core.resolve.resolve`, before any process communicates), each
    rank's GPU, the run directory, the data. A mistake raises
    :class:`~chainer_yolo_dist.core.mpi.SetupError` on every rank.

    Args:
        system (System): the system being trained.
        options (dict): the script's options by name (the preset's name, overrides, run and
            data options); read here, never stored.
    Returns:
        :data:`Started`: the frozen settings, the ChainerMN communicator, the :class:`Data`
        every rank holds (examples are read lazily, so it is light) and the directory's
        claim.
    """
    from mpi4py import MPI  # the world size is the papers' k, which the preset needs
    node = resolve.describe_node()
    plan = _setup_step(resolve.resolve, system, options, MPI.COMM_WORLD.size, node)
    settings = plan.settings
    comm = mpi.create_communicator(settings.communicator, settings.allreduce_grad_dtype)
    # naive trains on the CPU even where GPUs are visible; server ranks train nothing.
    device = -1
    if node.gpus and settings.communicator != 'naive':
        device = _setup_step(devices.select_device, comm.mpi_comm,
                             MPI.COMM_WORLD.rank >= plan.servers, node.gpus)
        chainer.backends.cuda.get_device_from_id(device).use()
    out = settings.out or _default_out(plan.options['out_parent'], settings.preset.name, comm)

    def prepare():
        claim = rundir.acquire(out, resume=bool(settings.resume),
                               overwrite=plan.options.get('overwrite'))
        try:
            data = Data(*system.load_data(plan.request))
            for split, report in data.reports.items():
                if report is not None:
                    report.save(os.path.join(out, 'bad_samples_%s.json' % split))
            for split, examples in (('training', data.train), ('test', data.test)):
                if len(examples) == 0:
                    raise ValueError('the %s split of dataset %s has no usable examples%s'
                                     % (split, plan.request.dataset, _report_hint(data, out)))
        except BaseException:  # a failed start leaves the file system as it found it
            rundir.release(out, claim.created)
            raise
        return claim, data

    if system.check_images is not None:
        with timing.phase('check_images'):
            _setup_step(system.check_images, plan.request, comm, log)
    with timing.phase('load_data'):
        claim, data = on_rank0(comm, prepare)
    mpi.ERROR_FILE = os.path.join(out, rundir.ERROR_NAME)
    try:
        settings = _setup_step(
            resolve.with_world, plan, data, ranks=comm.size, nodes=comm.inter_size,
            device=device, out=out,  # a progress bar only where someone watches
            progress=not plan.options.get('no_progress') and sys.stdout.isatty())
    except mpi.SetupError:
        if comm.rank == 0:
            rundir.release(out, claim.created)
        raise
    if comm.rank == 0:
        for name in claim:
            log('removed %s, left by an interrupted run' % os.path.join(out, name))
        for old, new in getattr(claim, 'moved', ()):
            log('moved %s aside as %s: the record of the earlier run\'s failure'
                % (os.path.join(out, old), new))
        _report_start(settings, data, log)
    return Started(settings, comm, data, claim)


#: What :func:`start_run` returns: the frozen settings, the ChainerMN communicator, the
#: :class:`Data` every rank holds, and the run directory's claim (``rundir.acquire``'s:
#: released when the run ends, :func:`main`).
Started = collections.namedtuple('Started', 'settings comm data claim')


def _setup_step(step, *args, **kwargs):
    """``step(*args, **kwargs)``, a user's mistake in it raised as a
    :class:`~chainer_yolo_dist.core.mpi.SetupError` (one line, status 2)."""
    try:
        return step(*args, **kwargs)
    except SETUP_ERRORS as e:
        raise mpi.SetupError(_message(e)) from e


def _report_hint(data, out):
    if any(report is not None for report in data.reports.values()):
        return ' (see %s)' % os.path.join(out, 'bad_samples_*.json')
    return ''


def _plural(n, word):
    return '%d %s%s' % (n, word, '' if n == 1 else 'es' if word.endswith('s') else 's')


def _report_start(settings, data, log):
    preset = settings.preset
    fraction, warning = preset.batch_fraction_check()
    serving = settings.serving_ranks
    workers = _plural(settings.ranks - serving, 'process')
    if serving:  # a parameter server trains nothing: count the workers apart from it
        training = settings.ranks - serving
        workers = '%d worker%s + %s' % (training, '' if training == 1 else 's',
                                        _plural(serving, 'server'))
    if settings.virtual_ranks > 1:
        workers += ' x %d virtual = %d workers' % (settings.virtual_ranks, settings.workers)
    log('%s x batch %d = global batch %d, %.1f%% of %d training examples; eta %g, peak lr %g'
        % (workers, preset.batchsize_per_gpu, preset.global_batchsize, 100 * fraction,
           preset.n_train, preset.eta, preset.peak_lr))
    if warning:
        log('WARNING: ' + warning)
    for line in settings.departures:
        log('departs from preset %s: %s' % (preset.name, line))
    for split, report in data.reports.items():
        if report is not None:
            log('%s data: %s' % (split, report.summary()))


def build_trainer(settings, comm, updater, chain, model, aggregated_keys, schedule=None):
    """Chainer's trainer with what every run has: the learning-rate schedule, observations
    averaged over ranks, snapshots, and with ``settings.profile`` the per-update phase times
    (the updater must be built with ``profile=settings.profile``; see
    :func:`~chainer_yolo_dist.core.reporting.write_profile`); with
    ``$CHAINER_YOLO_DIST_TIMING_DIR`` set, each rank's start-up and update times
    (:mod:`~chainer_yolo_dist.core.timing`).

    Args:
        updater: the run's updater (its 'main' optimizer gets the schedule).
        chain: the link the optimizer updates (checked finite before snapshots).
        model: the network alone (its batch-normalisation statistics are averaged across
            ranks before snapshots).
        aggregated_keys: reported values to average over the ranks (e.g. 'main/loss').
        schedule: the extension that sets the rate; default ``LRScheduleExtension`` of
            ``settings.preset.schedule()`` on the 'main' optimizer (an updater with several
            optimizers passes e.g.
            :class:`~chainer_yolo_dist.core.schedules.MultiOptimizerSchedule`).
    """
    from chainer_yolo_dist.core import reporting
    chainer.global_config.cudnn_fast_batch_normalization = settings.preset.cudnn_fast_bn
    trainer = chainer.training.Trainer(updater, settings.stop_trigger, out=settings.out)
    if modes.mode(settings.parallelism).applies_schedule:  # else the servers apply it
        trainer.extend(schedule or LRScheduleExtension(settings.preset.schedule()))
    else:  # the log's lr: the rate the servers apply
        from chainer_yolo_dist.core.parallelism import ServerRateReport
        trainer.extend(ServerRateReport(settings, settings.ranks - settings.serving_ranks))
    reporting.aggregate(trainer, comm, aggregated_keys)
    if settings.profile:  # the updater's time/<phase> of every update, for profile.json
        trainer.extend(reporting.ProfileRecorder(), name=reporting.PROFILE_EXTENSION)
    # Stop signals, time-based snapshots and the watchdog; the snapshots follow the agreement.
    agreement = preemption.install(trainer, settings, comm)
    # Before the statistics are averaged and the snapshot written: what the mode must gather
    # for the snapshot to hold every rank's state (local SGD's own weights and momentum).
    trainer.extend(_PrepareSnapshot(updater.get_all_optimizers().values()),
                   trigger=snapshots.snapshot_trigger(settings, agreement))
    snapshots.add_snapshots(trainer, settings, comm, chain, model, agreement)
    if timing.enabled():  # per-rank start-up and update times, for the rehearsal
        trainer.extend(timing.TimingRecorder(comm.rank, os.environ[timing.ENV]),
                       name='timing')
    return trainer


class _PrepareSnapshot(chainer.training.Extension):
    """At the snapshot trigger, before the statistics are averaged and the set written:
    :func:`~chainer_yolo_dist.core.parallelism.prepare_snapshot` of every optimizer."""

    priority = chainer.training.PRIORITY_WRITER + 5
    name = 'prepare_snapshot'

    def __init__(self, optimizers):
        self.optimizers = list(optimizers)

    def __call__(self, trainer):
        for optimizer in self.optimizers:
            parallelism.prepare_snapshot(optimizer)


def finish_run(trainer, settings, comm, model, final, optimizer=None, log=print):
    """How every recipe ends, after ``trainer.run()``; returns ``metrics.json``'s content.

    The run's measurements (:func:`~chainer_yolo_dist.core.reporting.run_metrics`), the
    parallelism mode's last communication and statistics (``metrics['parallelism']``; every
    rank's with ``optimizer``, a collective), ``profile.json`` with ``--profile`` (its
    summary also as ``metrics['profile']``), then ``final()``: the system's final evaluation
    with the trained model, a dict of results (a collective: every rank calls it and gets
    the same), and last ``model.npz`` and ``metrics.json`` (rank 0).
    """
    preemption.raise_if_stopped(trainer, comm, settings)  # a stop signal: no final evaluation
    metrics = reporting.run_metrics(trainer, settings)
    stats = parallelism.finish(optimizer, comm) if optimizer is not None else {}
    metrics['parallelism'] = dict(stats, mode=settings.parallelism)
    profile = reporting.write_profile(trainer, settings, comm, log)
    if profile is not None:
        metrics['profile'] = {key: profile[key] for key in ('mean', 'shares', 'table4')}
    metrics.update(final())
    snapshots.save_results(settings, comm, metrics, model, trainer.updater.iteration)
    return metrics


def main(recipe, options, log=print):
    """A training script's body: :func:`start_run`, then the recipe's
    ``train(settings, comm, data, log)`` (returning ``metrics.json``'s content, or None on a
    rank that trained nothing), then the first rank that trained logs the recipe's
    ``summary(metrics)`` with the run's length and throughput. Returns the exit status (0).

    ``recipe`` is a system's recipe module: ``SYSTEM``, ``train`` and ``summary``.
    """
    settings, comm, data, claim = start_run(recipe.SYSTEM, options, log)
    try:
        metrics = recipe.train(settings, comm, data, log)
    finally:  # finished, stopped by a signal or failed: no lock left (rank 0 holds it)
        if comm.rank == 0:
            rundir.release(settings.out, claim.created)
    trained = comm.mpi_comm.allgather(metrics is not None)
    if comm.rank == trained.index(True):
        rate = metrics.get('images_per_second')
        # No update timed (a run resumed at its end): no rate rather than "0.0 images/s".
        log('%s after %d iteration%s, %.1f s, %s'
            % (recipe.summary(metrics), metrics['iterations'],
               '' if metrics['iterations'] == 1 else 's', metrics['elapsed_seconds'],
               '%.3g images/s' % rate if rate else 'images/s n/a'))
    return 0


def to_device(chain, settings):
    """Moves ``chain`` to this rank's GPU (``settings.device``), if it has one."""
    if settings.device >= 0:
        chainer.cuda.get_device_from_id(settings.device).use()
        chain.to_gpu()
    return chain
