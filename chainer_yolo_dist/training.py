"""Distributed YOLO training: the pieces ``scripts/train_yolo.py`` puts together.

The structure is ChainerCV's ``examples/ssd/train_multi.py``: one MPI process per GPU, each
with its share of the shuffled training set (:func:`~chainer_yolo_dist.distributed.
scatter_indices`), a ``MultiprocessIterator`` for augmentation in worker processes, a
ChainerMN multi-node ``MomentumSGD`` that averages gradients across ranks, Chainer's trainer
and extensions, and logs, plots and snapshots written by rank 0 only.
"""
import json
import os
import tempfile
import time

import chainer
import numpy as np
from chainer.training import extensions

from chainer_yolo_dist import config, distributed, sampling
from chainer_yolo_dist.datasets.loading import load_detection_datasets
from chainer_yolo_dist.evaluation import DetectionEvaluator
from chainer_yolo_dist.models.yolo import build_loss, build_model
from chainer_yolo_dist.schedules import LRScheduleExtension
from chainer_yolo_dist.train_chain import IterationAwareUpdater, YOLOTrainChain
from chainer_yolo_dist.transforms import (MultiScaleConverter, MultiScaleExtension,
                                          ResizeTransform, YOLOAugmentation,
                                          multiscale_sizes)

LOSS_KEYS = ('main/loss', 'main/loss/box', 'main/loss/conf', 'main/loss/prob')


def write_json(path, obj):
    """Writes ``obj`` as JSON to ``path`` through a temporary file and a rename."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='.' + os.path.basename(path))
    os.chmod(tmp, 0o644)
    with os.fdopen(fd, 'w') as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=_json_default)
        f.write('\n')
    os.replace(tmp, path)


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (tuple, set)):
        return list(obj)
    raise TypeError('not JSON serialisable: %r' % (obj,))


class IndexedSubset(chainer.dataset.DatasetMixin):
    """``base[indices[i]]``: one rank's share of a dataset."""

    def __init__(self, base, indices):
        self.base = base
        self.indices = np.asarray(indices)

    def __len__(self):
        return len(self.indices)

    def get_example(self, i):
        return self.base[int(self.indices[i])]


def _epoch_axis(iterations_per_epoch):
    """PlotReport postprocess: label the iteration axis in (fractional) epochs."""
    def postprocess(figure, axes, summary):
        from matplotlib.ticker import FuncFormatter, MultipleLocator
        epochs = axes.get_xlim()[1] / iterations_per_epoch
        every = max(1, int(round(epochs / 8)))  # whole epochs, about 8 ticks
        axes.xaxis.set_major_locator(MultipleLocator(every * iterations_per_epoch))
        axes.xaxis.set_major_formatter(
            FuncFormatter(lambda x, _: '%g' % round(x / iterations_per_epoch, 2)))
        axes.set_xlabel('epoch')
        axes.set_ylabel('loss (mean over ranks)')
    return postprocess


def assert_finite_params(link):
    """Raises if any parameter of ``link`` is NaN or infinite (guards snapshots)."""
    for name, param in link.namedparams():
        if param.array is not None and not bool(link.xp.isfinite(param.array).all()):
            raise FloatingPointError('parameter %s is not finite: refusing to write a '
                                     'snapshot' % name)
    return True


def build_optimizer(model_chain, comm, lr, momentum, weight_decay, double_buffering=False,
                    init_input=None):
    """MomentumSGD with weight decay, wrapped by ChainerMN to average gradients across ranks.

    The papers' optimiser (YOLO9000: momentum 0.9, weight decay 0.0005). The multi-node
    optimizer all-reduces the mean of the ranks' gradients before each update, so with the
    per-rank loss averaged over its own images, the update equals one process's update on
    the whole global batch.

    ChainerMN's optimizer spends its first ``update`` broadcasting rank 0's parameters
    instead of updating, because lazily initialised parameters only exist after a forward
    pass; a run resumed from a snapshot would lose one more update that way. Given
    ``init_input`` (a batch the model accepts), the parameters are initialised by a
    test-mode forward pass and broadcast here, so every ``update`` updates.
    """
    import chainermn
    optimizer = chainermn.create_multi_node_optimizer(
        chainer.optimizers.MomentumSGD(lr=lr, momentum=momentum), comm,
        double_buffering=double_buffering)
    optimizer.setup(model_chain)
    if weight_decay:
        optimizer.add_hook(chainer.optimizer_hooks.WeightDecay(weight_decay))
    if init_input is not None and not double_buffering:
        with chainer.using_config('train', False), chainer.no_backprop_mode():
            model_chain.model(init_input)
        comm.bcast_data(model_chain)
        optimizer.is_changed(model_chain)  # records the now complete parameter set
    return optimizer


def make_train_iterator(dataset, batchsize, seed, n_processes, shuffle=True):
    """An iterator with reproducible epochs (see :mod:`chainer_yolo_dist.sampling`)."""
    order_sampler = sampling.EpochOrderSampler(dataset.n, seed=seed, shuffle=shuffle)
    if n_processes:
        return chainer.iterators.MultiprocessIterator(
            dataset, batchsize, n_processes=n_processes, order_sampler=order_sampler,
            shared_mem=100 * 1000 * 1000)
    return chainer.iterators.SerialIterator(dataset, batchsize, order_sampler=order_sampler)


class Timer(chainer.training.Extension):
    """Records wall time and images processed, for ``metrics.json``'s throughput."""

    trigger = 1, 'iteration'
    priority = chainer.training.PRIORITY_READER

    def __init__(self, global_batchsize):
        self.global_batchsize = global_batchsize
        self.start = None
        self.start_iteration = 0
        self.iterations = 0

    def initialize(self, trainer):
        self.start = time.time()
        self.start_iteration = trainer.updater.iteration

    def __call__(self, trainer):
        self.iterations = trainer.updater.iteration - self.start_iteration

    @property
    def elapsed(self):
        return time.time() - self.start

    @property
    def images_per_second(self):
        return self.iterations * self.global_batchsize / max(self.elapsed, 1e-9)


def add_snapshots(trainer, comm, chain, model, trigger):
    """Rank 0's trainer snapshots, which every rank resumes from.

    Batch-normalisation statistics are averaged across ranks first (collective, on every
    rank, just before the snapshot), so that the one file is every rank's state and a
    resumed job continues as if uninterrupted. A snapshot is refused if any parameter is
    not finite.
    """
    import chainermn
    if comm.size > 1:
        trainer.extend(chainermn.extensions.AllreducePersistent(model, comm),
                       trigger=trigger, name='allreduce_persistent')
    if comm.rank == 0:
        trainer.extend(
            extensions.snapshot(filename='snapshot_iter_{.updater.iteration}',
                                condition=lambda: assert_finite_params(chain)),
            trigger=trigger)


def resume_and_record(trainer, cfg, comm, log, **facts):
    """Loads ``cfg['resume']`` on every rank; rank 0 writes ``config.json``.

    ``config.json`` holds every setting used plus the run's derived facts (ranks, nodes as
    ``inter_size``, global batch, peak rate, schedule) and ``facts``.
    """
    if cfg.get('resume'):
        try:
            chainer.serializers.load_npz(cfg['resume'], trainer)
        except (ValueError, KeyError) as e:
            # Typically the iterator's order array: each rank's share of the data differs.
            raise ValueError('%s: cannot resume this run from it (%s); a snapshot resumes on '
                             'the same number of ranks, data and settings that wrote it'
                             % (cfg['resume'], e)) from e
        if comm.rank == 0:
            log('resumed from %s at iteration %d' % (cfg['resume'],
                                                     trainer.updater.iteration))
    if comm.rank == 0:
        record = {k: v for k, v in cfg.items() if k != 'schedule'}
        record.update(comm_size=comm.size, inter_size=comm.inter_size,
                      global_batchsize=cfg['batchsize'] * comm.size,
                      peak_lr=cfg['schedule'].peak_lr, schedule=repr(cfg['schedule']),
                      **facts)
        write_json(os.path.join(cfg['out'], 'config.json'), record)


def save_results(out, comm, metrics, model):
    """Rank 0 writes ``metrics.json`` and the trained network alone as ``model.npz``."""
    if comm.rank == 0:
        write_json(os.path.join(out, 'metrics.json'), metrics)
        tmp = os.path.join(out, 'model.npz.tmp')
        chainer.serializers.save_npz(tmp, model)
        os.replace(tmp, os.path.join(out, 'model.npz'))


def train_detector(cfg, comm, train, test, class_names, log=print):
    """Trains a YOLO on ``train`` across the ranks of ``comm``; evaluates on ``test``.

    Args:
        cfg (dict): resolved settings (``scripts/train_yolo.py`` documents each key).
        comm: ChainerMN communicator.
        train, test: ChainerCV-style detection datasets (every rank holds them; only the
            rank's share of ``train`` is read, and only rank 0 reads ``test``).
    Returns:
        dict: ``metrics.json``'s content (the same on every rank).
    """
    rank0 = comm.rank == 0
    out = cfg['out']
    device = cfg['device']
    chainer.global_config.cudnn_fast_batch_normalization = cfg['cudnn_fast_bn']

    # Chainer's initialisers draw from NumPy's global generator, also for the parameters
    # initialised lazily by build_optimizer's first forward pass: the seed fixes them.
    np.random.seed(cfg['seed'] % 2 ** 32)
    model = build_model(cfg['model'], len(class_names))
    if cfg.get('pretrained_path'):
        from chainer_yolo_dist.models.transfer import transfer_pretrained
        copied = transfer_pretrained(cfg['pretrained_path'], model)
        if rank0:
            log('transferred %d arrays from %s' % (len(copied), cfg['pretrained_path']))
    chain = YOLOTrainChain(model, build_loss(model))
    if cfg['sync_bn']:
        import chainermn
        chain = chainermn.links.create_mnbn_model(chain, comm)
        model = chain.model
    if device >= 0:
        chainer.cuda.get_device_from_id(device).use()
        chain.to_gpu()

    # Training data: this rank's share, augmented at the largest multi-scale size.
    indices, n_padding = distributed.scatter_indices(len(train), comm, cfg['seed'])
    sizes = (multiscale_sizes(*cfg['multiscale'][:2]) if cfg['multiscale']
             else (cfg['insize'],))
    base_size = max(sizes)
    transform = (YOLOAugmentation(base_size, jitter=cfg['jitter']) if cfg['augment']
                 else ResizeTransform(base_size))
    shard = sampling.EpochSampledDataset(
        IndexedSubset(train, indices), transform, seed=cfg['seed'] * 1000003 + comm.rank)
    train_iter = make_train_iterator(shard, cfg['batchsize'], cfg['seed'], cfg['loaderjob'],
                                     shuffle=True)
    converter = MultiScaleConverter(cfg['insize'])

    init_input = chain.xp.zeros((1, 3, cfg['insize'], cfg['insize']), np.float32)
    optimizer = build_optimizer(chain, comm, cfg['schedule'](0), cfg['momentum'],
                                cfg['weight_decay'], cfg['double_buffering'], init_input)
    updater = IterationAwareUpdater(train_iter, optimizer, converter=converter, device=device)
    stop = ((cfg['iterations'], 'iteration') if cfg['iterations']
            else (cfg['epochs'], 'epoch'))
    trainer = chainer.training.Trainer(updater, stop, out=out)

    trainer.extend(LRScheduleExtension(cfg['schedule']))
    if cfg['multiscale']:
        trainer.extend(MultiScaleExtension(converter, sizes, every=cfg['multiscale'][2],
                                           seed=cfg['seed']))
    import chainermn
    for key in LOSS_KEYS:
        trainer.extend(chainermn.extensions.ObservationAggregator(comm, key),
                       name='aggregate_' + key.replace('/', '_'))
    log_trigger = (cfg['log_interval'], 'iteration')
    eval_trigger = ((cfg['eval_interval'], 'epoch') if cfg['eval_interval'] else None)
    evaluator = DetectionEvaluator(model, test, comm, batchsize=cfg['eval_batchsize'],
                                   class_names=class_names,
                                   eval_insize=cfg['eval_insize'] or cfg['insize'])
    if eval_trigger:
        trainer.extend(evaluator, trigger=eval_trigger, name='validation')
    add_snapshots(trainer, comm, chain, model, (cfg['snapshot_interval'], 'iteration')
                  if cfg['snapshot_interval'] else stop)
    timer = Timer(cfg['batchsize'] * comm.size)
    trainer.extend(timer)
    if rank0:
        trainer.extend(extensions.LogReport(trigger=log_trigger))
        trainer.extend(extensions.PlotReport(
            list(LOSS_KEYS), 'iteration', trigger=log_trigger, filename='loss.png',
            marker=None, postprocess=_epoch_axis(len(indices) / cfg['batchsize'])))
        columns = ['epoch', 'iteration', 'lr'] + list(LOSS_KEYS) + ['elapsed_time']
        if eval_trigger:
            columns.insert(-1, 'validation/main/map')
        trainer.extend(extensions.PrintReport(columns), trigger=log_trigger)
        if cfg['progress']:
            trainer.extend(extensions.ProgressBar(update_interval=1))
    resume_and_record(trainer, cfg, comm, log, n_padding=n_padding,
                      iterations_per_epoch=len(indices) / cfg['batchsize'],
                      class_names=list(class_names))

    trainer.run()

    # Final evaluation with the trained model on every rank (collective).
    result = evaluator()
    metrics = {
        'map': result['map'], 'ap': result['ap'],
        'epochs': trainer.updater.epoch_detail,
        'iterations': trainer.updater.iteration,
        'elapsed_seconds': timer.elapsed,
        'images_per_second': timer.images_per_second,
        'comm_size': comm.size,
        'eval_insize': model.insize,
    }
    save_results(out, comm, metrics, model)
    return metrics


def start_run(args, option_map, load_datasets, check=None, log=print):
    """The start of a training script: settings, communicator, data, the report on them.

    Args:
        args, option_map: the script's parsed arguments and its preset options.
        load_datasets: ``cfg -> (train, test, class_names, reports)``; run on rank 0 only,
            which reads and validates the data once; the other ranks receive the (light)
            dataset objects, which hold file names and annotations, not images.
        check: ``cfg -> None``, raising if the preset does not suit the script.
    Returns:
        ``(cfg, preset, comm, train, test, class_names)``.
    """
    from mpi4py import MPI  # the world size is the papers' k, which the preset needs
    n_processes = MPI.COMM_WORLD.size
    cuda = distributed.cuda_available()
    cfg, _ = config.resolve(args, option_map, n_processes, cuda)
    if check is not None:
        check(cfg)
    comm = distributed.create_communicator(cfg['communicator'], cfg['allreduce_grad_dtype'])
    rank0 = comm.rank == 0
    train, test, class_names, reports = comm.bcast_obj(load_datasets(cfg) if rank0 else None)
    cfg, preset = config.resolve(args, option_map, n_processes, cuda, data_facts={
        'n_train': len(train), 'n_class': len(class_names)})
    cfg['device'] = comm.intra_rank if cuda and cfg['communicator'] != 'naive' else -1
    if rank0:
        os.makedirs(cfg['out'], exist_ok=True)
        fraction, warning = preset.batch_fraction_check()
        log('%d processes x batch %d = global batch %d, %.1f%% of %d training images; '
            'peak lr %g' % (comm.size, cfg['batchsize'], preset.global_batchsize,
                            100 * fraction, len(train), preset.peak_lr))
        if warning:
            log('WARNING: ' + warning)
        for split, report in reports.items():
            if report is not None:
                log('%s data: %s' % (split, report.summary()))
                report.save(os.path.join(cfg['out'], 'bad_samples_%s.json' % split))
    return cfg, preset, comm, train, test, class_names


def run_detection(args, option_map, log=print):
    """``scripts/train_yolo.py``'s body: settings, communicator, data, training."""
    cfg, _, comm, train, test, class_names = start_run(
        args, option_map, load_detection_datasets, log=log)
    metrics = train_detector(cfg, comm, train, test, class_names, log=log)
    if comm.rank == 0:
        log('mAP %.4f after %d iterations, %.1f s, %.1f images/s'
            % (metrics['map'], metrics['iterations'], metrics['elapsed_seconds'],
               metrics['images_per_second']))
    return 0
