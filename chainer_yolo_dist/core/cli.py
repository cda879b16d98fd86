"""Command-line options shared by the training scripts.

Each script adds its own ``--model`` / ``--dataset`` and data options; the overrides of
preset values and the options of a distributed run are defined once here. Option names are
the names of the settings they set (``--eta`` sets ``preset.eta``, the base rate).
"""
import argparse
import os
import sys

# The argparse types of the numeric options (re-exported: scripts read them as cli.COUNT).
from chainer_yolo_dist.core.numbers import (  # noqa: F401
    COUNT, FRACTION, NATURAL, NON_NEGATIVE, POSITIVE, SEED, Bounded)


def training_parser(doc, default_preset, preset_doc='docs/presets.md'):
    """A training script's :class:`Parser`: its docstring as the description, ``--preset``,
    and the group of the preset overrides (returned too: ``(parser, overrides group)``)."""
    p = Parser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--preset', default=default_preset, help='settings to start from '
                   '(default: %%(default)s; see %s)' % preset_doc)
    return p, p.add_argument_group('overrides of preset values (default: the preset\'s)')


def add_study_options(parser, name, script):
    """A study's ``--out`` (default ``runs/NAME-<UTC time>``), ``--overwrite``,
    ``--report-only`` and the options passed on to every run of ``script`` (after ``--``)."""
    parser.add_argument('--out', help='study directory (default: a new runs/%s-<UTC time>)'
                        % name)
    parser.add_argument('--overwrite', action='store_true', help='clear --out first')
    parser.add_argument('--report-only', metavar='STUDY_DIR',
                        help='only rewrite the table and figures of an existing study')
    parser.add_argument('train_args', nargs='*', help='after --: more %s options' % script)


def _signals(text):
    """argparse type of ``--stop-signals``: names, as a tuple (core/preemption.py)."""
    from chainer_yolo_dist.core.preemption import parse_signals
    try:
        return parse_signals(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).replace('--stop-signals: ', ''))


def positive_int_list(text):
    """argparse type of options such as ``--workers 1,2,4``: comma-separated positive ints."""
    try:
        values = [int(v) for v in text.split(',') if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError('expected comma-separated integers, got %r' % text)
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError('expected positive integers, got %r' % text)
    return values


def launcher_rank():
    """This process's MPI rank as the launcher set it (MPICH, Open MPI, Slurm), without
    initialising MPI: 0 for a process started alone."""
    for name in ('PMI_RANK', 'OMPI_COMM_WORLD_RANK', 'PMIX_RANK', 'SLURM_PROCID'):
        if os.environ.get(name, '').isdigit():
            return int(os.environ[name])
    return 0


def run(args, recipe, out_parent):
    """A training script's body once its options are parsed; returns the exit status.

    Starts the loader's forkserver before MPI (ChainerMN issue #278), makes a failure on any
    rank end the job, then runs ``chainer_yolo_dist.<recipe>.recipe`` (imported only now: it
    imports ChainerMN, which starts MPI) through ``core.run.main``; a setup mistake is one
    ``error:`` line from rank 0 and status 2.

    Args:
        args: the parsed options (``--debug``: show a setup error's traceback).
        recipe (str): the system's package, e.g. ``'detection'``.
        out_parent (str): where runs without ``--out`` get their folder.
    """
    import importlib
    from chainer_yolo_dist.core import mpi
    mpi.start_forkserver(getattr(args, 'stop_signals', ()))
    mpi.abort_on_exception()
    module = importlib.import_module('chainer_yolo_dist.%s.recipe' % recipe)
    from chainer_yolo_dist.core import run as runner
    return mpi.main(lambda: runner.main(module, dict(vars(args), out_parent=out_parent)),
                    debug=args.debug)


class Parser(argparse.ArgumentParser):
    """``ArgumentParser`` for scripts run under ``mpiexec``: a bad option is one line, reported
    once by rank 0, not a usage screen per rank (every rank exits with status 2). An option
    is taken only by its whole name: an abbreviation (``--iter`` for ``--iterations``) would
    change meaning when an option is added."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault('allow_abbrev', False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        if launcher_rank() == 0:
            sys.stderr.write('error: %s (%s -h lists the options)\n' % (message, self.prog))
        sys.exit(2)


def add_preset_overrides(group, lr_rules_help, insize_help):
    """The options that replace a preset's value (default ``None``: keep the preset's)."""
    group.add_argument('--batchsize', type=COUNT, help='images per process (the papers\' n)')
    group.add_argument('--epochs', type=COUNT)
    group.add_argument('--eta', '--lr', type=POSITIVE, dest='eta',
                       help='the papers\' base rate eta: the single-worker learning rate; the '
                       'peak rate follows from --lr-rule (--lr: deprecated alias)')
    group.add_argument('--lr-rule', help=lr_rules_help)
    group.add_argument('--insize', type=COUNT, help=insize_help)
    group.add_argument('--warmup-epochs', type=NON_NEGATIVE)
    group.add_argument('--warmup-hold-epochs', type=NON_NEGATIVE)
    group.add_argument('--decay', help='step, poly or constant')
    group.add_argument('--steps', type=POSITIVE, nargs='*', help='epochs at which a step decay '
                       'divides the rate')
    group.add_argument('--poly-power', type=POSITIVE)
    group.add_argument('--burn-in', type=NATURAL, help='Darknet burn-in iterations (0: off)')
    group.add_argument('--momentum', type=FRACTION)
    group.add_argument('--weight-decay', type=NON_NEGATIVE)
    group.add_argument('--communicator', help='ChainerMN communicator (default: pure_nccl '
                       'with CUDA, naive without)')
    group.add_argument('--allreduce-grad-dtype', choices=['float16', 'float32'],
                       help='paper 001: float16 AllReduce with float32 compute (pure_nccl)')
    group.add_argument('--cudnn-fast-bn', action='store_const', const=True,
                       help='chainer.config.cudnn_fast_batch_normalization (paper 001)')


def add_parallelism_options(group, modes=None):
    """``--parallelism`` with ``modes`` (default: every mode of the registry,
    ``core/parallelism/modes.py``) and only the options those modes read."""
    from chainer_yolo_dist.core.parallelism import modes as registry
    registry.add_options(group, tuple(modes or registry.MODES))


#: How the image files are checked before training (``--image-check``): every system's files
#: go through the checks split across the ranks and remembered between starts
#: (``datasets.image_checks``).
IMAGE_CHECKS = ('header', 'decode', 'none')


def add_image_check_option(group):
    """``--image-check {header,decode,none}``, the same default meaning on every script."""
    group.add_argument('--image-check', choices=IMAGE_CHECKS, default='header',
                       help='before training, check every image file across the ranks, '
                       'remembered between starts: header (format and size from the file\'s '
                       'header; the default), decode (every file decoded once: finds '
                       'truncated and corrupt pixels too), none')


def add_run_options(group, out, eval_interval, eval_batchsize, loaderjob=2):
    """Options of a distributed training run (not preset values)."""
    from chainer_yolo_dist.core.resolve import GPU_LOADER_WORKERS
    group.add_argument('--on-bad-sample', choices=['error', 'skip'], default='error',
                       help='a bad image or box stops before training (error) or is '
                       'dropped and counted (skip)')
    group.add_argument('--iterations', type=COUNT, help='stop after this many updates instead '
                       'of at the preset\'s epochs (the schedule stays in epochs)')
    group.add_argument('--seed', type=SEED, default=0, help='seeds the synthetic data, the '
                       'shuffle, the augmentation (and the multi-scale sizes)')
    group.add_argument('--out', help='run directory (default: a new %s/<preset>-<time> '
                       'folder)' % out)
    group.add_argument('--resume', help='continue a run (same number of ranks, batch, '
                       'schedule and parallelism): a snapshot file, a run folder (its newest '
                       'complete snapshot), or auto (the newest in --out, else a fresh start: '
                       'the same job script for every resubmission)')
    group.add_argument('--overwrite', action='store_true',
                       help='clear --out first if it holds another run\'s files')
    group.add_argument('--debug', action='store_true',
                       help='show the traceback of a setup error')
    group.add_argument('--virtual-ranks', type=COUNT, default=1,
                       help='data-parallel workers per process: k = processes x this enters '
                       'the learning-rate rule (the papers\' scaling experiment on few cores)')
    group.add_argument('--double-buffering', action='store_true',
                       help='overlap AllReduce with the next step (pure_nccl only)')
    group.add_argument('--loaderjob', '--loader-workers', type=NATURAL, default=None,
                       dest='loaderjob', help='worker processes per rank for data loading '
                       '(0: in-process; default: the preset\'s loader_workers where the paper '
                       'gives them, cut to the CPU cores per rank, else %d on CPUs, %d per '
                       'GPU; --loader-workers: the same option, paper 004\'s name)'
                       % (loaderjob, GPU_LOADER_WORKERS))
    group.set_defaults(cpu_loaderjob=loaderjob)
    add_image_check_option(group)
    group.add_argument('--persistent-workers', action=argparse.BooleanOptionalAction,
                       default=True, help='keep the loader worker processes alive across '
                       'epochs (Chainer\'s MultiprocessIterator; default), or re-create them '
                       'at every epoch boundary as PyTorch\'s DataLoader does without '
                       'persistent_workers, the stall of paper 004 sec. 4.2 / Table 3')
    group.add_argument('--profile', action='store_true',
                       help='time every iteration\'s data wait, forward, backward, AllReduce '
                       'and update on every rank (profile.json; paper 004 Table 4)')
    group.add_argument('--eval-interval', type=NON_NEGATIVE, default=eval_interval,
                       help='evaluate every N epochs during training (0: only at the end)')
    group.add_argument('--eval-batchsize', type=COUNT, default=eval_batchsize)
    group.add_argument('--log-interval', type=COUNT, default=10,
                       help='iterations per log entry')
    group.add_argument('--snapshot-interval', type=NATURAL, default=0,
                       help='iterations between snapshots (0: at the end only)')
    group.add_argument('--snapshot-minutes', type=NON_NEGATIVE, default=30,
                       help='also a snapshot every this many minutes of wall time, so that a '
                       'killed job loses at most that (0: off; default %(default)s)')
    group.add_argument('--stop-signals', type=_signals, default='SIGTERM,SIGINT,SIGUSR1',
                       help='signals on which every rank stops at the next update, after a '
                       'snapshot, with status 75 (resubmit with --resume auto; a second '
                       'signal over 5 s later ends at once; \'\': none; default %(default)s)')
    group.add_argument('--watchdog-minutes', type=POSITIVE,
                       help='end the job, naming the ranks that did not arrive, when no update '
                       'completes for this long (default: 10 x the median update time, at '
                       'least 10)')
    group.add_argument('--keep-snapshots', type=COUNT, default=2,
                       help='snapshots kept on disk, the newest ones (default %(default)s)')
    group.add_argument('--no-progress', action='store_true')
