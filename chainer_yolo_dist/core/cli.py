"""Command-line options shared by the training scripts.

Each script adds its own ``--model`` / ``--dataset`` and data options; the overrides of
preset values and the options of a distributed run are defined once here. Option names are
the names of the settings they set (``--eta`` sets ``preset.eta``, the base rate).
"""
import argparse

# Options that override preset fields: option dest -> Preset field.
PRESET_OPTIONS = {
    'model': 'model', 'dataset': 'dataset', 'batchsize': 'batchsize_per_gpu',
    'epochs': 'epochs', 'eta': 'eta', 'lr_rule': 'lr_rule', 'insize': 'insize',
    'warmup_epochs': 'warmup_epochs', 'warmup_hold_epochs': 'warmup_hold_epochs',
    'decay': 'decay', 'steps': 'steps', 'poly_power': 'poly_power',
    'burn_in': 'burn_in_iterations', 'momentum': 'momentum',
    'weight_decay': 'weight_decay', 'communicator': 'communicator',
    'allreduce_grad_dtype': 'allreduce_grad_dtype', 'cudnn_fast_bn': 'cudnn_fast_bn',
    'n_class': 'n_class', 'clip_frames': 'clip_frames',
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
    group.add_argument('--loaderjob', '--loader-workers', type=int, default=loaderjob,
                       dest='loaderjob', help='worker processes per rank for data loading '
                       '(0: in-process; --loader-workers: the same option, paper 004\'s name)')
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
