"""The registry of data-parallel modes: what ``--parallelism NAME`` builds, takes and records.

Everything that depends on the mode reads it here: the command line (the choices, and only
the options of the modes a script offers: :func:`add_options`), the defaults of a script that
offers none (:data:`DEFAULTS`), the settings' checks (:func:`check`), the ranks that train
(:meth:`Mode.serving_ranks`), whether the trainer applies the learning-rate schedule, and the
optimizer (:meth:`Mode.build`). Adding a mode is one :class:`Mode` in :data:`MODES` and the
optimizer class it builds.
"""
import dataclasses

from chainer_yolo_dist.core.numbers import COUNT, NATURAL

#: The options some mode takes beyond the common ones: dest -> (flag, argparse keywords).
#: Their defaults are the values every other mode runs with.
OPTIONS = {
    'n_servers': ('--servers', dict(type=COUNT, default=1, help='async: parameter-server ranks '
                                    '(the first ones)')),
    'push_every': ('--push-every', dict(type=COUNT, default=1, help='async: steps whose '
                                        'gradients are summed into one push')),
    'pull_every': ('--pull-every', dict(type=COUNT, default=1, help='async: steps between two '
                                        'pulls of the parameters')),
    'max_staleness': ('--max-staleness', dict(type=NATURAL, default=None, help='async: a worker '
                                              'waits when more than S versions behind (0: '
                                              'synchronous; default: no bound, a reading)')),
    'average_every': ('--average-every', dict(type=COUNT, default=4, help='local: steps between '
                                              'two averagings (Darknet: 4)')),
    'average_optimizer_state': ('--average-optimizer-state', dict(
        action='store_true', default=False, help='local: average the momentum too')),
}

#: Options of a run that only some modes can honour (defined with the run's options in
#: ``core/cli.py``): dest -> the value that means "not asked for".
RUN_OPTIONS = {'virtual_ranks': 1, 'double_buffering': False, 'resume': None}


@dataclasses.dataclass(frozen=True)
class Mode:
    """One data-parallel mode.

    Attributes:
        name (str): the ``--parallelism`` value.
        help (str): one phrase for the option's help.
        options (tuple): dests of :data:`OPTIONS` this mode reads.
        run_options (tuple): dests of :data:`RUN_OPTIONS` this mode honours.
        serves (bool): its first ``n_servers`` ranks hold the parameters and train nothing;
            they, not the trainer, apply the learning-rate schedule.
        nccl_gradients (bool): the gradients are reduced by ChainerMN's multi-node optimizer
            (on ``pure_nccl``, through NCCL, in FP16 if asked); else through float32 host
            buffers, so an FP16 AllReduce does not apply.
        builder (str): name of the function of ``core/parallelism/__init__.py`` that builds
            the optimizer of a training rank: ``(par, model, settings, options) ->
            optimizer``.
    """

    name: str
    help: str
    options: tuple = ()
    run_options: tuple = ()
    serves: bool = False
    nccl_gradients: bool = False
    builder: str = ''

    def serving_ranks(self, n_servers):
        """Ranks that hold parameters and train nothing."""
        return n_servers if self.serves else 0

    @property
    def applies_schedule(self):
        """Whether the trainer sets the learning rate (else the servers do)."""
        return not self.serves


MODES = {m.name: m for m in (
    Mode('sync', 'gradients averaged every step (ChainerMN, the papers)',
         run_options=('virtual_ranks', 'double_buffering', 'resume'), nccl_gradients=True,
         builder='build_sync'),
    Mode('async', 'parameter servers after Dean et al.\'s Downpour (the package\'s reading of '
         'paper 003\'s unspecified asynchronous method)',
         options=('n_servers', 'push_every', 'pull_every', 'max_staleness'),
         run_options=('resume',), serves=True, builder='build_async'),
    Mode('local', 'weights averaged every --average-every steps (Darknet)',
         options=('average_every', 'average_optimizer_state'), run_options=('resume',),
         builder='build_local'),
    Mode('stale', 'the average applied one step late', run_options=('resume',),
         builder='build_stale'),
)}

#: The mode-specific settings of a script that offers only ``sync``, or of a mode that does
#: not read them: every option's default.
DEFAULTS = dict({'parallelism': 'sync', 'lars': False},
                **{dest: kwargs['default'] for dest, (_, kwargs) in OPTIONS.items()})


def mode(name):
    """The :class:`Mode` called ``name``; ValueError listing the modes otherwise."""
    try:
        return MODES[name]
    except KeyError:
        raise ValueError('unknown parallelism %r: choose one of %s'
                         % (name, ', '.join(MODES))) from None


def add_options(group, names=tuple(MODES)):
    """``--parallelism`` with the modes ``names`` and the options they read; ``--lars``."""
    offered = [mode(name) for name in names]
    group.add_argument('--parallelism', choices=list(names), default='sync',
                       help='; '.join('%s: %s' % (m.name, m.help) for m in offered)
                       + ' (default %(default)s)')
    for dest, (flag, kwargs) in OPTIONS.items():
        if any(dest in m.options for m in offered):
            group.add_argument(flag, dest=dest, **kwargs)
    group.add_argument('--lars', action='store_true', help='layer-wise adaptive rate scaling '
                       '(GradientLARS, which applies the weight decay itself)')


def check(name, values, flags):
    """Raises ValueError when ``values`` (settings by dest) set an option mode ``name`` does
    not take. ``flags`` maps a run option's dest to the flag the user typed."""
    m = mode(name)
    for dest, (flag, kwargs) in OPTIONS.items():
        if dest not in m.options and values.get(dest, kwargs['default']) != kwargs['default']:
            raise ValueError('%s is an option of --parallelism %s, not %s'
                             % (flag, _owners(dest), name))
    for dest, unset in RUN_OPTIONS.items():
        if dest not in m.run_options and values.get(dest, unset) not in (unset, None):
            raise ValueError('%s is not available with --parallelism %s%s'
                             % (flags.get(dest, '--' + dest.replace('_', '-')), name,
                                _WHY.get((name, dest), '')))


def _owners(dest):
    return ' or '.join(m.name for m in MODES.values() if dest in m.options)


#: Why a mode refuses a run option, said after the refusal: (mode, dest) -> text.
_WHY = {}
