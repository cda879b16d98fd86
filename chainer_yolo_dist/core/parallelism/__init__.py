"""The data-parallel modes a recipe offers (``--parallelism``), one package.

* ``sync``: ChainerMN's multi-node optimizer, gradients averaged every step (papers 000-002).
* ``async``: parameter servers (:mod:`.parameter_server`), the package's reading of paper 003's
  unspecified asynchronous method after Dean et al.'s Downpour SGD (the paper's reference [2]).
* ``local``: each worker steps alone, weights averaged every H steps (Darknet's multi-GPU
  training, H = 4; :mod:`.local_sgd`).
* ``stale``: synchronous averaging applied one step late, overlapping the reduction
  (ChainerMN's double buffering on any device; :mod:`.stale_sync`).

What each mode builds, takes and records is in :mod:`.modes` (the registry); :mod:`.flat`
moves parameters and gradients as one host vector. A recipe calls, in order:

1. :func:`for_run` on every rank: the ranks split for the run's mode;
2. on a server rank of ``async``, :func:`serve_run` (it holds the parameters and runs no
   trainer); on a training rank, :func:`run_optimizer`, sharding its data over
   ``par.data_comm`` (which in ``async`` excludes the servers);
3. after training, :func:`finish`: the mode's last communication (final pull, last
   averaging, last stale update) and its statistics.

Every mode takes weight decay or LARS (``core/optimizers.py``), added once, where the update
happens (on the servers for ``async``). :func:`setup_parallelism`, :func:`serve` and
:func:`build_parallel_optimizer` are the same steps with explicit arguments, for tests and
tools that have no run settings.
"""
import collections

import chainer

from chainer_yolo_dist.core.parallelism import parameter_server as ps
from chainer_yolo_dist.core.parallelism.local_sgd import DARKNET_PERIOD, LocalSGDOptimizer
from chainer_yolo_dist.core.optimizers import LARS_EPS, LARS_THRESHOLD, add_regularization
from chainer_yolo_dist.core.optimizers import build_optimizer, multi_node
from chainer_yolo_dist.core.parallelism.stale_sync import StaleSyncOptimizer

from chainer_yolo_dist.core.parallelism.modes import MODES, mode as get_mode  # noqa: F401

Parallelism = collections.namedtuple(
    'Parallelism', 'mode is_server data_comm world n_servers')
Parallelism.__doc__ = """Where this rank stands: ``mode``; ``is_server`` (``async`` only);
``data_comm``, the ChainerMN communicator over the ranks that train (None on servers);
``world``, the communicator given; ``n_servers`` (0 outside ``async``)."""

#: Settings of the optimizer, shared by every mode: ``lr``, ``momentum``, ``weight_decay``,
#: ``lars`` (bool), ``lars_threshold``, ``lars_eps``.
OptimizerSettings = collections.namedtuple(
    'OptimizerSettings', 'lr momentum weight_decay lars lars_threshold lars_eps')
OptimizerSettings.__new__.__defaults__ = (0.9, 0.0, False, LARS_THRESHOLD, LARS_EPS)


def setup_parallelism(mode, comm, n_servers=1, communicator_name='naive'):
    """Splits the ranks for ``mode`` (a collective for ``async``).

    Args:
        comm: the ChainerMN communicator over every rank.
        n_servers (int): ``async`` only: ranks ``0 .. n_servers - 1`` serve.
        communicator_name (str): ChainerMN communicator for the workers of ``async``.
    """
    if not get_mode(mode).serves:
        return Parallelism(mode, False, comm, comm, 0)
    import chainermn
    roles = ps.split_world(comm, n_servers)
    data_comm = None
    if not roles.is_server:
        data_comm = chainermn.create_communicator(communicator_name, mpi_comm=roles.local_comm)
    return Parallelism(mode, roles.is_server, data_comm, comm, n_servers)


def serve(par, settings, max_staleness=None, on_update=None, state=None):
    """Runs this server rank of ``async`` until every worker is done; returns its stats.
    ``state``: this server's part of a snapshot to resume from
    (:func:`.parameter_server.load_server_state`), or a callable giving it (or None)."""
    if not par.is_server:
        raise ValueError('serve is for the server ranks of the async mode')
    return ps.run_server(
        par.world, lambda link: build_optimizer(link, *settings), n_servers=par.n_servers,
        max_staleness=max_staleness, on_update=on_update, state=state)


def build_parallel_optimizer(par, model, settings, period=DARKNET_PERIOD, average_state=False,
                             push_every=1, pull_every=1, max_staleness=None,
                             double_buffering=False, snapshot_every=None):
    """The optimizer a training rank hands to its updater, set up on ``model``.

    Every parameter of ``model`` must be initialised (run one forward pass first). Rank 0's
    weights (the first worker's in ``async``) become every rank's, so every ``update`` of
    every mode is an update (``sync`` included: ChainerMN would otherwise spend its first
    call on that broadcast).

    Args:
        par: from :func:`setup_parallelism` (not a server).
        settings (OptimizerSettings): the optimizer; in ``async`` it lives on the servers.
        period, average_state: ``local`` (see :class:`.LocalSGDOptimizer`).
        double_buffering: ``sync`` (ChainerMN's, GPUs only).
        push_every, pull_every, max_staleness: ``async`` (see
            :class:`.ParameterServerOptimizer`; the servers need the same ``max_staleness``).
        snapshot_every: ``local``: the trainer snapshots after every step that is a multiple
            of this (:func:`scheduled_snapshots`); every rank's state is gathered then.
    """
    if par.is_server:
        raise ValueError('server ranks do not train: call serve()')
    options = dict(period=period, average_state=average_state, push_every=push_every,
                   pull_every=pull_every, max_staleness=max_staleness,
                   double_buffering=double_buffering, snapshot_every=snapshot_every)
    return globals()[get_mode(par.mode).builder](par, model, settings, options)


def build_sync(par, model, settings, options):
    """ChainerMN's multi-node MomentumSGD (``double_buffering``: ChainerMN's, GPUs only)."""
    actual = chainer.optimizers.MomentumSGD(lr=settings.lr, momentum=settings.momentum)
    return _regularized(multi_node(actual, [], model, par.data_comm,
                                   options['double_buffering']), settings)


def build_local(par, model, settings, options):
    """:class:`.LocalSGDOptimizer` (``period``, ``average_state``)."""
    actual = chainer.optimizers.MomentumSGD(lr=settings.lr, momentum=settings.momentum)
    return _regularized(LocalSGDOptimizer(actual, par.data_comm, period=options['period'],
                                          average_state=options['average_state'],
                                          snapshot_every=options['snapshot_every']
                                          ).setup(model), settings)


def build_stale(par, model, settings, options):
    """:class:`.StaleSyncOptimizer`."""
    actual = chainer.optimizers.MomentumSGD(lr=settings.lr, momentum=settings.momentum)
    return _regularized(StaleSyncOptimizer(actual, par.data_comm).setup(model), settings)


def build_async(par, model, settings, options):
    """:class:`.ParameterServerOptimizer` (``push_every``, ``pull_every``,
    ``max_staleness``); the optimizer itself, with its regularisation, lives on the servers."""
    return ps.ParameterServerOptimizer(
        par.world, par.n_servers, push_every=options['push_every'],
        pull_every=options['pull_every'], max_staleness=options['max_staleness']).setup(model)


def _regularized(optimizer, settings):
    return add_regularization(optimizer, settings.weight_decay, settings.lars,
                              settings.lars_threshold, settings.lars_eps)


def for_run(settings, comm):
    """:func:`setup_parallelism` for a run's settings (``--parallelism``, ``--servers``)."""
    servers = get_mode(settings.parallelism).serving_ranks(settings.n_servers)
    if servers and comm.size <= servers:
        raise ValueError('--parallelism %s needs a server and a worker: start more than %d '
                         'process(es) (mpiexec -n %d or more), got %d'
                         % (settings.parallelism, servers, servers + 1, comm.size))
    return setup_parallelism(settings.parallelism, comm, settings.n_servers,
                             settings.communicator)


def optimizer_settings(settings, preset=None):
    """The run's :class:`OptimizerSettings`: MomentumSGD at the schedule's first rate, with
    weight decay or ``--lars``."""
    preset = preset or settings.preset
    return OptimizerSettings(lr=preset.schedule()(0), momentum=preset.momentum,
                             weight_decay=preset.weight_decay, lars=settings.lars)


def run_optimizer(par, settings, target, init=None):
    """The optimizer a training rank's updater drives, for the run's mode. ``init`` (a
    callable running one forward pass, or None) creates lazily initialised parameters first."""
    if init is not None:
        with chainer.using_config('train', False), chainer.no_backprop_mode():
            init()
    return build_parallel_optimizer(
        par, target, optimizer_settings(settings), period=settings.average_every,
        average_state=settings.average_optimizer_state, push_every=settings.push_every,
        pull_every=settings.pull_every, max_staleness=settings.max_staleness,
        double_buffering=settings.double_buffering,
        snapshot_every=scheduled_snapshots(settings))


def scheduled_snapshots(settings):
    """Iterations between the run's scheduled snapshots, as ``core/snapshots.add_snapshots``
    schedules them (``--snapshot-interval``, else the stop trigger), when counted in
    iterations; None when counted in epochs (a snapshot at the end of an epoch-long run).

    ``local`` gathers every rank's state to rank 0 after those steps; a snapshot at another
    step (asked by wall time or a stop signal) is exact only where :func:`prepare_snapshot`
    runs at the snapshot trigger."""
    period, unit = ((settings.snapshot_interval, 'iteration') if settings.snapshot_interval
                    else settings.stop_trigger)
    return int(period) if unit == 'iteration' else None


def prepare_snapshot(optimizer):
    """What a training rank does at the snapshot trigger, before rank 0 writes the snapshot
    (a collective over the training ranks for ``local``: every rank's weights and momentum
    gathered to rank 0; nothing for the other modes, whose snapshot holds every rank's state
    already). Called by ``local``'s optimizer itself after the scheduled snapshot steps
    (:func:`scheduled_snapshots`); an extension at the snapshot trigger that calls it makes
    every snapshot exact, those asked by wall time or a stop signal too."""
    prepare = getattr(type(optimizer), 'prepare_snapshot', None)
    if prepare is not None:
        prepare(optimizer)


def serve_run(par, settings, log=print):
    """A server rank of ``async``: serves until every worker is done, with the learning-rate
    schedule applied per update, and writes its statistics (updates, staleness of each applied
    gradient, bytes, idle time) to ``parallelism_server<rank>.json`` in the run directory.

    Reading of the rate (docs/parallelism.md): an update applies the gradient of
    ``push_every`` batches of one worker as it arrives, so the linear scaling rule gives the
    rate of one worker (the preset at k = 1); with ``--max-staleness 0`` an update is the mean
    of every worker's gradient, the synchronous case, at the k-worker rate. The schedule runs
    in epochs of examples consumed.
    """
    import os
    from chainer_yolo_dist.core.atomic import write_json
    preset, rate = server_schedule(settings, par.world.size - par.n_servers)

    def on_update(optimizer, version):
        optimizer.lr = rate(version)

    stats = serve(par, optimizer_settings(settings, preset), settings.max_staleness,
                  on_update, lambda: _server_resume_state(par, settings, log)).as_dict()
    write_json(os.path.join(settings.out, 'parallelism_server%d.json' % par.world.rank), stats)
    return None


def server_schedule(settings, workers):
    """The servers' rate of ``async`` (:func:`serve_run`'s reading): ``(preset, rate)``, the
    preset the rate follows (at k = 1, or at k = ``workers`` with ``--max-staleness 0``) and
    ``rate(version)``, the learning rate of the server's update ``version``."""
    import dataclasses
    together = settings.max_staleness == 0
    preset = settings.preset if together else dataclasses.replace(settings.preset, n_gpus=1)
    schedule = preset.schedule()
    examples = settings.batchsize * settings.push_every * (workers if together else 1)
    return preset, lambda version: schedule(version * examples / preset.n_train)


class ServerRateReport(chainer.training.Extension):
    """A worker of ``async``: reports ``lr``, the rate the servers applied to the parameters
    it last pulled (their newest version it knows of, :func:`server_schedule`), so that the
    log's ``lr`` column is filled as in the other modes, where the trainer sets the rate."""

    trigger = 1, 'iteration'
    priority = chainer.training.PRIORITY_WRITER  # before LogReport reads the observation
    name = 'server_rate'

    def __init__(self, settings, workers):
        self.rate = server_schedule(settings, workers)[1]

    def __call__(self, trainer):
        versions = getattr(trainer.updater.get_optimizer('main'), '_versions', None)
        if versions:
            chainer.reporter.report({'lr': self.rate(max(versions))})


def _server_resume_state(par, settings, log):
    """This server's part of the snapshot ``--resume`` means, or None (no ``--resume``, or
    ``auto`` with nothing to resume). The snapshot is found and its run identity checked as
    the workers' ``core.snapshots.resume`` does, after the set-up collective (where the
    workers check theirs), so that a snapshot the workers refuse is refused here too, with
    the same kind of error, and no rank waits for ranks that have stopped."""
    if not settings.resume:
        return None
    import json
    import numpy as np
    from chainer_yolo_dist.core import snapshots
    from chainer_yolo_dist.core.mpi import SetupError
    try:
        path = snapshots.find_snapshot(settings.resume, settings.out)
        if path is None:
            return None
        with np.load(path) as npz:
            key = 'extensions/%s/identity' % snapshots.RunIdentity.name
            stored = json.loads(str(npz[key])) if key in npz.files else {}
        different = ['%s %s (now %s)' % (k, stored.get(k, 'not recorded'), v)
                     for k, v in sorted(snapshots.run_identity(settings).items())
                     if stored.get(k) != v]
        if different:
            raise ValueError('the snapshot was written by a run with other settings: %s'
                             % '; '.join(different))
        state = ps.load_server_state(path, par.world.rank)
    except (ValueError, OSError) as e:
        raise SetupError('%s: parameter server %d cannot resume from it: %s'
                         % (settings.resume, par.world.rank, e)) from e
    if par.world.rank == 0:
        log('parameter servers resume from %s at version %d' % (path, int(state['version'])))
    return state


def finish(optimizer, comm=None):
    """Completes the mode's last communication; returns its stats dict (``{}`` for sync).

    With ``comm`` (the communicator over the ranks that train; a collective then), rank 0's
    dict also holds ``per_rank``: every training rank's stats, in rank order, so the time each
    worker waited for communication is known, not only rank 0's.
    """
    finalize = getattr(type(optimizer), 'finalize', None)
    if finalize is None:  # ChainerMN's synchronous optimizer has nothing left to do
        return {}
    stats = dict(optimizer.finalize())
    if comm is not None:  # every training rank of a mode with stats gets here
        per_rank = comm.gather_obj(stats)
        if comm.rank == 0:
            stats['per_rank'] = per_rank
    return stats
