"""The run-settings object: one frozen value, built once, that every library function reads.

A run's settings come from four places, merged here and nowhere else:

1. the preset (``chainer_yolo_dist/presets/NAME.toml``, each value citing its paper), read by
   :func:`chainer_yolo_dist.core.presets.load` for ``k`` workers;
2. the command-line options that override preset values (``--eta``, ``--batchsize``, ...);
3. the world: MPI ranks, nodes, virtual ranks per process, the device, the communicator;
4. the facts of the data actually loaded (training-set size, classes), which enter the
   batch-share report and the iterations per epoch.

The learning rate is traceable in four modules: ``--eta`` (``core/cli.py``) ->
``core/resolve.py`` (the preset's ``eta`` replaced) -> ``settings.preset``
(``core/presets.py``: the rule and warmup at k workers; ``preset.schedule()``, an
:class:`~chainer_yolo_dist.core.schedules.LRSchedule`) ->
:class:`~chainer_yolo_dist.core.schedules.LRScheduleExtension`, which sets ``optimizer.lr``
before every update.

Each system extends :class:`RunSettings` with its own fields (a frozen dataclass subclass) and
keeps what it loads in a frozen data-request dataclass (``settings.data``).
"""
import dataclasses

from chainer_yolo_dist.core.parallelism import modes
from chainer_yolo_dist.core.presets import Preset


def pick(cls, options, **fixed):
    """An instance of dataclass ``cls`` from the keys of ``options`` that are its fields
    (``fixed`` wins; lists become tuples, so the instance holds no mutable value); a field
    missing from both raises TypeError naming it."""
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    values = {name: options[name] for name in names if name in options}
    values.update(fixed)
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return cls(**values)


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """Everything a training run uses, for ``ranks`` MPI processes of ``virtual_ranks`` workers.

    ``loaderjob`` loader processes per rank are kept across epochs (``persistent_workers``)
    or re-created at each epoch boundary; ``profile`` times every update's phases.
    ``preset`` is the papers' recipe at ``k = ranks * virtual_ranks`` workers with the loaded
    data's ``n_train`` and ``n_class``; its derived values (global batch, peak rate, batch
    share) are those of this run. ``data`` is the system's frozen description of the data it
    loaded. ``departures`` lists, in words, every way this run departs from its preset.
    """

    preset: Preset
    data: object
    ranks: int
    nodes: int
    virtual_ranks: int
    device: int
    communicator: str
    allreduce_grad_dtype: str | None
    seed: int
    out: str
    resume: str | None
    iterations: int | None
    loaderjob: int
    persistent_workers: bool
    profile: bool
    eval_interval: float
    eval_batchsize: int
    log_interval: int
    snapshot_interval: int
    keep_snapshots: int
    progress: bool
    double_buffering: bool
    pretrained: str | None
    parallelism: str
    n_servers: int
    push_every: int
    pull_every: int
    max_staleness: int | None
    average_every: int
    average_optimizer_state: bool
    lars: bool
    departures: tuple
    # What a scheduler's stop signal and a hung rank do (core/preemption.py); keyword-only
    # with defaults, so the systems' own fields may follow without defaults.
    stop_signals: tuple = dataclasses.field(default=('SIGTERM', 'SIGINT', 'SIGUSR1'),
                                            kw_only=True)
    snapshot_minutes: float = dataclasses.field(default=30.0, kw_only=True)
    watchdog_minutes: float | None = dataclasses.field(default=None, kw_only=True)

    def __post_init__(self):
        # Every option is checked before the first update, by the name the user typed.
        at_least = (('iterations', 1, '--iterations'), ('snapshot_interval', 0,
                    '--snapshot-interval'), ('keep_snapshots', 1, '--keep-snapshots'),
                    ('loaderjob', 0, '--loaderjob'), ('eval_interval', 0, '--eval-interval'),
                    ('eval_batchsize', 1, '--eval-batchsize'),
                    ('log_interval', 1, '--log-interval'), ('virtual_ranks', 1,
                                                            '--virtual-ranks'),
                    ('n_servers', 1, '--servers'), ('push_every', 1, '--push-every'),
                    ('pull_every', 1, '--pull-every'), ('max_staleness', 0, '--max-staleness'),
                    ('average_every', 1, '--average-every'),
                    ('snapshot_minutes', 0, '--snapshot-minutes'),
                    ('watchdog_minutes', 0, '--watchdog-minutes'))
        for field, low, option in at_least:
            value = getattr(self, field)
            if value is not None and not value >= low:
                raise ValueError('%s must be >= %s, got %r' % (option, low, value))
        if self.double_buffering and self.virtual_ranks > 1:
            raise ValueError('--double-buffering works with --virtual-ranks 1 only')
        modes.check(self.parallelism, vars(self), {})

    def identity_extras(self):
        """Settings beyond the core's that a resumed run must share with the run that wrote
        the snapshot (``{name: JSON value}``; see ``snapshots.run_identity``); none here."""
        return {}

    @property
    def eta(self):
        """The papers' base rate: the single-worker learning rate."""
        return self.preset.eta

    @property
    def workers(self):
        """The papers' k: data-parallel workers (ranks x virtual ranks)."""
        return self.preset.n_gpus

    @property
    def batchsize(self):
        """Examples per worker per update (the papers' n)."""
        return self.preset.batchsize_per_gpu

    @property
    def stop_trigger(self):
        """``(iterations, 'iteration')`` when ``--iterations`` is set, else the preset's
        ``max_iterations`` if it has them (an iteration-based preset), else its epochs."""
        if self.iterations:
            return self.iterations, 'iteration'
        if self.preset.max_iterations:
            return self.preset.max_iterations, 'iteration'
        return self.preset.epochs, 'epoch'

    @property
    def iterations_per_epoch(self):
        return self.preset.iterations_per_epoch

    @property
    def serving_ranks(self):
        """Ranks that hold parameters and train nothing (``--parallelism async``)."""
        return modes.mode(self.parallelism).serving_ranks(self.n_servers)

    def to_json(self):
        """The settings as ``config.json`` records them: every field, the preset's derived
        values included, plus the schedule's values in force."""
        record = dataclasses.asdict(self)
        record['eta'] = self.eta
        record['workers'] = self.workers
        record['stop'] = list(self.stop_trigger)
        return record
