"""Command-line options shared by the training scripts.

Each script adds its own ``--model`` / ``--dataset`` and data options; the overrides of
preset values and the options of a distributed run are defined once here. Option names are
the names of the settings they set (``--eta`` sets ``preset.eta``, the base rate).
"""
import argparse
import os
import sys


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


class Parser(argparse.ArgumentParser):
    """``ArgumentParser`` for scripts run under ``mpiexec``: a bad option is one line, reported
    once by rank 0, not a usage screen per rank (every rank exits with status 2)."""

    def error(self, message):
        if launcher_rank() == 0:
            sys.stderr.write('error: %s (%s -h lists the options)\n' % (message, self.prog))
        sys.exit(2)


# Options that override preset fields: option dest -> Preset field.
PRESET_OPTIONS = {
    'model': 'model', 'dataset': 'dataset', 'batchsize': 'batchsize_per_gpu',
    'epochs': 'epochs', 'eta': 'eta', 'lr_rule': 'lr_rule', 'insize': 'insize',
    'warmup_epochs': 'warmup_epochs', 'warmup_hold_epochs': 'warmup_hold_epochs',
    'decay': 'decay', 'steps': 'steps', 'poly_power': 'poly_power',
    'burn_in': 'burn_in_iterations', 'momentum': 'momentum',
    'weight_decay': 'weight_decay', 'communicator': 'communicator',
    'allreduce_grad_dtype': 'allreduce_grad_dtype', 'cudnn_fast_bn': 'cudnn_fast_bn',
    'n_class': 'n_class', 'linear_from': 'linear_from', 'sampling_scale': 'sampling_scale',
    'clip_frames': 'clip_frames',
}


def add_preset_overrides(group, lr_rules_help, insize_help):
    """The options that replace a preset's value (default ``None``: keep the preset's)."""
    group.add_argument('--batchsize', type=int, help='images per process (the papers\' n)')
    group.add_argument('--epochs', type=int)
    group.add_argument('--eta', '--lr', type=float, dest='eta',
                       help='the papers\' base rate eta: the single-worker learning rate; the '
                       'peak rate follows from --lr-rule (--lr: deprecated alias)')
    group.add_argument('--lr-rule', help=lr_rules_help)
    group.add_argument('--insize', type=int, help=insize_help)
    group.add_argument('--warmup-epochs', type=float)
    group.add_argument('--warmup-hold-epochs', type=float)
    group.add_argument('--decay', help='step, poly or constant')
    group.add_argument('--steps', type=float, nargs='*')
    group.add_argument('--poly-power', type=float)
    group.add_argument('--burn-in', type=int, help='Darknet burn-in iterations (0: off)')
    group.add_argument('--momentum', type=float)
    group.add_argument('--weight-decay', type=float)
    group.add_argument('--communicator', help='ChainerMN communicator (default: pure_nccl '
                       'with CUDA, naive without)')
    group.add_argument('--allreduce-grad-dtype', choices=['float16', 'float32'],
                       help='paper 001: float16 AllReduce with float32 compute (pure_nccl)')
    group.add_argument('--cudnn-fast-bn', action='store_const', const=True,
                       help='chainer.config.cudnn_fast_batch_normalization (paper 001)')


#: The settings of :func:`add_parallelism_options` for a script that offers none: synchronous
#: data parallelism (ChainerMN), the papers' own.
PARALLELISM_DEFAULTS = {'parallelism': 'sync', 'n_servers': 1, 'push_every': 1, 'pull_every': 1,
                        'max_staleness': None, 'average_every': 4,
                        'average_optimizer_state': False, 'lars': False}


def add_parallelism_options(group, modes=('sync', 'async', 'local', 'stale')):
    """How the workers combine their gradients (``core/parallelism.py``)."""
    group.add_argument('--parallelism', choices=modes, default='sync',
                       help='sync: gradients averaged every step (ChainerMN, the papers); '
                       'async: parameter servers (paper 003, Downpour); local: weights '
                       'averaged every --average-every steps (Darknet); stale: the average '
                       'applied one step late (default %(default)s)')
    group.add_argument('--servers', dest='n_servers', type=int, default=1,
                       help='async: parameter-server ranks (the first ones)')
    group.add_argument('--push-every', type=int, default=1,
                       help='async: steps whose gradients are summed into one push')
    group.add_argument('--pull-every', type=int, default=1,
                       help='async: steps between two pulls of the parameters')
    group.add_argument('--max-staleness', type=int, help='async: a worker waits when more '
                       'than S versions behind (0: synchronous; default: no bound)')
    group.add_argument('--average-every', type=int, default=4,
                       help='local: steps between two averagings (Darknet: 4)')
    group.add_argument('--average-optimizer-state', action='store_true',
                       help='local: average the momentum too')
    group.add_argument('--lars', action='store_true', help='layer-wise adaptive rate scaling '
                       '(GradientLARS, which applies the weight decay itself)')


#: Loader worker processes per rank on a GPU when --loaderjob is not given: a GPU trains at
#: several hundred images per second, and one worker decodes and augments 140-350 per second
#: (docs/loader.md's table: 2 workers for 200 images/s, 7-8 for 1,000 at 416-608).
GPU_LOADER_WORKERS = 4


def loader_workers(options, device):
    """``--loaderjob`` in force: the user's, else :data:`GPU_LOADER_WORKERS` on a GPU, else
    the script's CPU default (``options['cpu_loaderjob']``, 2 if absent)."""
    if options.get('loaderjob') is not None:
        return options['loaderjob']
    return GPU_LOADER_WORKERS if device >= 0 else options.get('cpu_loaderjob', 2)


def add_run_options(group, out, eval_interval, eval_batchsize, loaderjob=2):
    """Options of a distributed training run (not preset values)."""
    group.add_argument('--on-bad-sample', choices=['error', 'skip'], default='error',
                       help='a bad image or box stops before training (error) or is '
                       'dropped and counted (skip)')
    group.add_argument('--iterations', type=int, help='stop after this many updates instead '
                       'of at the preset\'s epochs (the schedule stays in epochs)')
    group.add_argument('--seed', type=int, default=0, help='seeds the synthetic data, the '
                       'shuffle, the augmentation (and the multi-scale sizes)')
    group.add_argument('--out', help='run directory (default: a new %s/<preset>-<time> '
                       'folder)' % out)
    group.add_argument('--resume', help='trainer snapshot to continue from (same number of '
                       'ranks, batch and schedule)')
    group.add_argument('--overwrite', action='store_true',
                       help='clear --out first if it holds another run\'s files')
    group.add_argument('--debug', action='store_true',
                       help='show the traceback of a setup error')
    group.add_argument('--virtual-ranks', type=int, default=1,
                       help='data-parallel workers per process: k = processes x this enters '
                       'the learning-rate rule (the papers\' scaling experiment on few cores)')
    group.add_argument('--double-buffering', action='store_true',
                       help='overlap AllReduce with the next step (pure_nccl only)')
    group.add_argument('--loaderjob', '--loader-workers', type=int, default=None,
                       dest='loaderjob', help='worker processes per rank for data loading '
                       '(0: in-process; default: %d on CPUs, %d per GPU; --loader-workers: '
                       'the same option, paper 004\'s name)' % (loaderjob, GPU_LOADER_WORKERS))
    group.set_defaults(cpu_loaderjob=loaderjob)
    group.add_argument('--persistent-workers', action=argparse.BooleanOptionalAction,
                       default=True, help='keep the loader worker processes alive across '
                       'epochs (Chainer\'s MultiprocessIterator; default), or re-create them '
                       'at every epoch boundary as PyTorch\'s DataLoader does without '
                       'persistent_workers, the stall of paper 004 sec. 4.2 / Table 3')
    group.add_argument('--profile', action='store_true',
                       help='time every iteration\'s data wait, forward, backward, AllReduce '
                       'and update on every rank (profile.json; paper 004 Table 4)')
    group.add_argument('--eval-interval', type=float, default=eval_interval,
                       help='evaluate every N epochs during training (0: only at the end)')
    group.add_argument('--eval-batchsize', type=int, default=eval_batchsize)
    group.add_argument('--log-interval', type=int, default=10,
                       help='iterations per log entry')
    group.add_argument('--snapshot-interval', type=int, default=0,
                       help='iterations between snapshots (0: at the end only)')
    group.add_argument('--keep-snapshots', type=int, default=2,
                       help='snapshots kept on disk, the newest ones (default %(default)s)')
    group.add_argument('--no-progress', action='store_true')
