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

from chainer_yolo_dist.core import devices, mpi, presets, rundir, snapshots, timing
from chainer_yolo_dist.core.cli import PARALLELISM_DEFAULTS, PRESET_OPTIONS, loader_workers
from chainer_yolo_dist.core.schedules import LRScheduleExtension
from chainer_yolo_dist.core.settings import pick

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
            data or pretrained file do not fit together (run before any data is read).
        defaults: ``(Preset, options) -> dict`` of settings whose default depends on the
            preset (an option left at None takes it), or None.
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


def preset_overrides(options):
    """Preset fields set on the command line: ``{preset_field: value}`` (options left at
    ``None`` keep the preset's value; ``no_multiscale`` / ``multiscale`` set ``multiscale``)."""
    overrides = {field: options[dest] for dest, field in PRESET_OPTIONS.items()
                 if options.get(dest) is not None}
    if options.get('no_multiscale'):
        overrides['multiscale'] = []
    elif options.get('multiscale'):
        overrides['multiscale'] = list(options['multiscale'])
    return overrides


def _communicator(preset, options, gpus):
    """The communicator and AllReduce dtype in force, and why they differ from the preset's.

    A communicator this node cannot run is refused (:func:`.devices.check_communicator`);
    FP16 AllReduce is ChainerMN's ``pure_nccl`` feature, so wherever the gradients are not
    reduced by ``pure_nccl``'s multi-node optimizer it is dropped and said, whether the preset
    or ``--allreduce-grad-dtype`` asked for it.
    """
    name, dtype = preset.communicator, preset.allreduce_grad_dtype
    departures = []
    if options.get('communicator') is None and not gpus and name != 'naive':
        # The papers' pure_nccl needs CUDA; on a CPU machine ChainerMN's naive communicator
        # is the one that works.
        departures.append('communicator %s -> naive: no CUDA GPU on this node' % name)
        name = 'naive'
    devices.check_communicator(name, options.get('communicator') is not None, gpus)
    mode = options.get('parallelism') or 'sync'
    if dtype == 'float16':
        why = ('the naive communicator reduces in float32' if name != 'pure_nccl' else
               '--parallelism %s reduces through float32 host buffers' % mode
               if mode != 'sync' else None)
        if why:
            departures.append('float16 AllReduce dropped: %s' % why)
            dtype = None
    return name, dtype, departures


def _cudnn_departure(preset, device):
    """Why ``cudnn_fast_bn`` does nothing on this run, or None when cuDNN applies it."""
    if not preset.cudnn_fast_bn:
        return None
    if device < 0:
        return 'cudnn_fast_bn has no effect: no GPU, so no cuDNN'
    from chainer.backends import cuda
    if not cuda.cudnn_enabled:
        return ('cudnn_fast_bn has no effect: Chainer finds no cuDNN (CuPy 14 has none; '
                'docs/gpu.md)')
    return None


def _default_out(parent, preset_name, comm):
    """A new folder per run: ``parent/<preset>-<UTC time>`` (rank 0's clock for all ranks)."""
    return rundir.timestamped(parent, preset_name,
                              comm.bcast_obj(time.time() if comm.rank == 0 else None))


def departures_from_preset(preset, paper_preset, options):
    """In words, every way ``preset`` (as run) departs from ``paper_preset`` (as published)."""
    out = ['%s = %r instead of the preset\'s %r' % (key, getattr(preset, key),
                                                     getattr(paper_preset, key))
           for key in sorted(preset_overrides(options))
           if getattr(preset, key, None) != getattr(paper_preset, key, None)]
    if paper_preset.pretrained and not options.get('pretrained'):
        out.append('trained from scratch: the preset starts from %s weights'
                   % paper_preset.pretrained)
    mode = options.get('parallelism') or 'sync'
    if mode != paper_preset.parallelism:
        out.append('parallelism %s instead of the paper\'s %s (--parallelism %s)'
                   % (mode, paper_preset.parallelism, paper_preset.parallelism))
    if preset.n_train != paper_preset.n_train:
        out.append('%d training examples instead of the preset\'s %d' % (preset.n_train,
                                                                          paper_preset.n_train))
    last = options.get('iterations') or preset.max_iterations
    epochs = preset.epochs if not last else last / preset.iterations_per_epoch
    late = [s for s in preset.steps if s >= epochs] if preset.decay == 'step' else []
    if late:
        out.append('decay steps at epochs %s are at or beyond the last epoch %g: the rate '
                   'never decays there' % (', '.join('%g' % s for s in late), epochs))
    return out


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
    option, file or split at fault: the preset and the options, that preset, network, data
    and pretrained file fit together (before any data is read), the run directory, the data.
    A mistake raises :class:`~chainer_yolo_dist.core.mpi.SetupError` on every rank.

    Args:
        system (System): the system being trained.
        options (dict): the script's options by name (the preset's name, overrides, run and
            data options); read here, never stored.
    Returns:
        ``(settings, comm, data)``: the frozen settings, the ChainerMN communicator, and the
        :class:`Data` every rank holds (examples are read lazily, so it is light).
    """
    from mpi4py import MPI  # the world size is the papers' k, which the preset needs
    options = dict(PARALLELISM_DEFAULTS, **options)
    virtual_ranks = options.get('virtual_ranks') or 1
    # The papers' k counts the ranks that train: parameter servers (async) do not.
    servers = (options.get('n_servers') or 1) if options.get('parallelism') == 'async' else 0
    workers = (MPI.COMM_WORLD.size - servers) * virtual_ranks
    try:
        paper_preset = presets.load(options['preset'], workers)
        preset = presets.load(options['preset'], workers, **preset_overrides(options))
        system.check(preset, options)
        gpus = devices.gpu_count()
        communicator, grad_dtype, departures = _communicator(preset, options, gpus)
    except SETUP_ERRORS as e:
        raise mpi.SetupError(_message(e)) from e
    comm = mpi.create_communicator(communicator, grad_dtype)
    try:
        # naive trains on the CPU even where GPUs are visible; server ranks train nothing.
        on_gpu = gpus > 0 and communicator != 'naive'
        device = devices.select_device(comm.mpi_comm, MPI.COMM_WORLD.rank >= servers,
                                       gpus) if on_gpu else -1
    except SETUP_ERRORS as e:
        raise mpi.SetupError(_message(e)) from e
    if device >= 0:
        chainer.backends.cuda.get_device_from_id(device).use()
    cudnn = _cudnn_departure(preset, device)
    departures += [cudnn] if cudnn else []

    out = options.get('out') or _default_out(options['out_parent'], preset.name, comm)
    request = pick(system.data_cls, options, dataset=preset.dataset, n_class=preset.n_class,
                   seed=options['seed'])

    def prepare():
        removed = rundir.acquire(out, resume=bool(options.get('resume')),
                                 overwrite=options.get('overwrite'))
        data = Data(*system.load_data(request))
        for split, report in data.reports.items():
            if report is not None:
                report.save(os.path.join(out, 'bad_samples_%s.json' % split))
        for split, examples in (('training', data.train), ('test', data.test)):
            if len(examples) == 0:
                raise ValueError('the %s split of dataset %s has no usable examples%s'
                                 % (split, request.dataset, _report_hint(data, out)))
        return removed, data

    if system.check_images is not None:
        try:
            with timing.phase('check_images'):
                system.check_images(request, comm, log)
        except SETUP_ERRORS as e:
            raise mpi.SetupError(_message(e)) from e
    with timing.phase('load_data'):
        removed, data = on_rank0(comm, prepare)
    mpi.ERROR_FILE = os.path.join(out, rundir.ERROR_NAME)
    try:
        preset = preset.with_data(len(data.train), len(data.class_names))
        departures += departures_from_preset(preset, paper_preset, options)
        # A preset with ``lars = true`` turns LARS on as --lars does (settings.lars records it).
        options = dict(options, lars=bool(options.get('lars')) or preset.lars)
        if system.defaults is not None:
            options = dict(options)
            for key, value in system.defaults(preset, options).items():
                if options.get(key) is None:
                    options[key] = value
        settings = pick(
            system.settings_cls, options, preset=preset, data=request, ranks=comm.size,
            nodes=comm.inter_size, virtual_ranks=virtual_ranks,
            device=device, loaderjob=loader_workers(options, device),
            communicator=communicator, allreduce_grad_dtype=grad_dtype, out=out,
            # A progress bar only where someone watches: not in logs or CI output.
            progress=not options.get('no_progress') and sys.stdout.isatty(),
            departures=tuple(departures))
    except SETUP_ERRORS as e:
        raise mpi.SetupError(_message(e)) from e
    if comm.rank == 0:
        for name in removed:
            log('removed %s, left by an interrupted run' % os.path.join(out, name))
        _report_start(settings, data, log)
    return settings, comm, data


def _report_hint(data, out):
    if any(report is not None for report in data.reports.values()):
        return ' (see %s)' % os.path.join(out, 'bad_samples_*.json')
    return ''


def _plural(n, word):
    return '%d %s%s' % (n, word, '' if n == 1 else 'es' if word.endswith('s') else 's')


def _report_start(settings, data, log):
    preset = settings.preset
    fraction, warning = preset.batch_fraction_check()
    workers = _plural(settings.ranks, 'process')
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
            ``settings.schedule`` on the 'main' optimizer (an updater with several optimizers
            passes e.g. :class:`~chainer_yolo_dist.core.schedules.MultiOptimizerSchedule`).
    """
    from chainer_yolo_dist.core import reporting
    chainer.global_config.cudnn_fast_batch_normalization = settings.preset.cudnn_fast_bn
    trainer = chainer.training.Trainer(updater, settings.stop_trigger, out=settings.out)
    if not settings.serving_ranks:  # with parameter servers the servers apply the schedule
        trainer.extend(schedule or LRScheduleExtension(settings.schedule))
    reporting.aggregate(trainer, comm, aggregated_keys)
    if settings.profile:  # the updater's time/<phase> of every update, for profile.json
        trainer.extend(reporting.ProfileRecorder(), name=reporting.PROFILE_EXTENSION)
    snapshots.add_snapshots(trainer, settings, comm, chain, model)
    if timing.enabled():  # per-rank start-up and update times, for the rehearsal
        trainer.extend(timing.TimingRecorder(comm.rank, os.environ[timing.ENV]),
                       name='timing')
    return trainer


def main(system, train, summary, options, log=print):
    """A training script's body: :func:`start_run`, then ``train(settings, comm, data, log)``
    (the system's recipe, returning ``metrics.json``'s content), then rank 0 logs
    ``summary % metrics`` with the throughput. Returns the exit status (0)."""
    settings, comm, data = start_run(system, options, log)
    metrics = train(settings, comm, data, log)  # None on a rank that trained nothing
    trained = comm.mpi_comm.allgather(metrics is not None)
    if comm.rank == trained.index(True):  # the first rank that trained
        log((summary + ' after %(iterations)d iterations, %(elapsed_seconds).1f s, '
             '%(images_per_second).1f images/s') % metrics)
    return 0


def to_device(chain, settings):
    """Moves ``chain`` to this rank's GPU (``settings.device``), if it has one."""
    if settings.device >= 0:
        chainer.cuda.get_device_from_id(settings.device).use()
        chain.to_gpu()
    return chain
