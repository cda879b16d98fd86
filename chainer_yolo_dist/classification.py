"""Distributed Darknet-19 / Darknet-53 classification training: ``scripts/train_darknet.py``.

The same ChainerMN wiring as the detection script (:mod:`chainer_yolo_dist.training`): one
MPI process per GPU, each with its shuffled share of the training set, reproducible
augmentation streams, a multi-node ``MomentumSGD`` with weight decay, the papers' learning-rate
schedule (paper 001 sec. 4.1: ``lr = k * n / 256 * eta``, 5-epoch gradual warmup, polynomial
decay of power 2), logs, plots and snapshots written by rank 0 only.

Validation is exact over the whole validation set: it is split across the ranks *without*
padding (``scatter_dataset(..., force_equal_length=False)``), and each rank reports its sum
over its examples divided by ``n_val / comm.size`` (:class:`ShardEvaluator`), so ChainerMN's
multi-node evaluator, which averages the ranks' results with equal weights, returns the mean
over the ``n_val`` examples: the number one process gets for the same model.
"""
import json
import os

import chainer
import chainer.functions as F
import chainer.links as L
import numpy as np
from chainer import reporter as reporter_module
from chainer.dataset import convert
from chainer.training import extensions
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from chainer_yolo_dist import distributed, sampling
from chainer_yolo_dist.analysis.figures import save as save_figure
from chainer_yolo_dist.cls_transforms import CenterCrop, DarknetAugmentation
from chainer_yolo_dist.datasets import ImageNetDataset, SyntheticShapesClassificationDataset
from chainer_yolo_dist.models.darknet import Darknet19, Darknet53
from chainer_yolo_dist.models.transfer import load_classifier
from chainer_yolo_dist.schedules import LRScheduleExtension
from chainer_yolo_dist.train_chain import NonFiniteLossError
from chainer_yolo_dist.training import (IndexedSubset, Timer, add_snapshots,
                                        build_optimizer, make_train_iterator,
                                        resume_and_record, save_results, start_run)

#: The second accuracy the papers' ImageNet tables print next to top-1.
TOP_K = 5
CLASSIFIERS = {'darknet19': Darknet19, 'darknet53': Darknet53}
CLASSIFICATION_DATASETS = ('synthetic_classification', 'imagenet')
TRAIN_KEYS = ('main/loss', 'main/accuracy', 'main/top5')
#: Width of the CPU demo networks: the paper layout with every convolution 8x narrower.
DEMO_CHANNELS_SCALE = 1 / 8


def top_k_accuracy(y, t, k=TOP_K):
    """Fraction of rows whose true class is among the ``k`` highest scores.

    Args:
        y: ``(N, C)`` scores (logits or probabilities), array or Variable.
        t: ``(N,)`` int32 true classes.
        k (int): with ``k >= C`` every row counts as correct.
    Returns:
        float.
    """
    y = getattr(y, 'array', y)
    xp = chainer.backend.get_array_module(y)
    k = min(k, y.shape[1])
    # The true class is in the top k iff fewer than k classes score strictly higher.
    true_score = y[xp.arange(len(t)), t]
    higher = (y > true_score[:, None]).sum(axis=1)
    return float((higher < k).mean())


class ClassifierChain(L.Classifier):
    """``chainer.links.Classifier`` (softmax cross-entropy, accuracy) that also reports top-5.

    ``chain(x, t)``: ``x`` ``(N, 3, S, S)`` float32 RGB in [0, 1], ``t`` ``(N,)`` int32;
    returns the loss and reports ``loss``, ``accuracy`` (top-1) and ``top5``
    (``main/...`` in the trainer's log, ``validation/main/...`` in evaluation).

    The values are reported as host floats rather than the Variables ``L.Classifier``
    reports: ChainerMN 7.8.1's ``ObservationAggregator`` moves Variables with a ChainerX call
    that fails without ChainerX. A non-finite loss raises
    :class:`~chainer_yolo_dist.train_chain.NonFiniteLossError` before any update.
    """

    def __init__(self, predictor):
        super().__init__(predictor, lossfun=F.softmax_cross_entropy, accfun=F.accuracy)

    def forward(self, x, t):
        self.y = self.predictor(x)
        self.loss = self.lossfun(self.y, t)
        loss = float(self.loss.array)
        if not np.isfinite(loss):
            raise NonFiniteLossError('non-finite classification loss %s; training stopped '
                                     'before the update' % loss)
        self.accuracy = self.accfun(self.y, t)
        reporter_module.report({'loss': loss, 'accuracy': float(self.accuracy.array),
                                'top5': top_k_accuracy(self.y, t, TOP_K)}, self)
        return self.loss


def build_classifier(name, n_class, channels_scale=1, seed=None):
    """Darknet19 or Darknet53 (``name``) with random weights, drawn from ``seed`` if given.

    Chainer's initialisers draw from NumPy's global generator; it is seeded for the build
    and restored afterwards, so a run's initial weights are a function of its seed. (Under
    ChainerMN, rank 0's weights are broadcast at the first update in any case.)
    """
    try:
        cls = CLASSIFIERS[name]
    except KeyError:
        raise ValueError('unknown classifier %r: choose one of %s'
                         % (name, ', '.join(CLASSIFIERS))) from None
    state = np.random.get_state()
    try:
        if seed is not None:
            np.random.seed(seed % 2 ** 32)
        return cls(n_class=n_class, channels_scale=channels_scale)
    finally:
        np.random.set_state(state)


def load_classification_datasets(cfg):
    """Returns ``(train, test, class_names, reports)`` for ``cfg['dataset']``.

    - ``synthetic_classification``: :class:`SyntheticShapesClassificationDataset` train / test
      splits (``n_train_images``, ``n_test_images``, ``image_size``, ``n_class``, ``seed``).
    - ``imagenet``: :class:`ImageNetDataset` at ``data_dir``, ``train`` and ``val`` splits of
      the by-directory layout, or the ``train_list`` / ``val_list`` files of ``path label``
      lines; bad files follow ``on_bad_sample``.
    ``reports`` maps 'train' / 'test' to the bad-sample report (None for synthetic data).
    """
    name = cfg['dataset']
    if name == 'synthetic_classification':
        options = dict(size=cfg['image_size'], n_class=cfg['n_class'], seed=cfg['seed'])
        train = SyntheticShapesClassificationDataset('train', cfg['n_train_images'], **options)
        test = SyntheticShapesClassificationDataset('test', cfg['n_test_images'], **options)
        return train, test, tuple(train.class_names), {'train': None, 'test': None}
    if name != 'imagenet':
        raise ValueError('unknown classification dataset %r: choose one of %s'
                         % (name, ', '.join(CLASSIFICATION_DATASETS)))
    if not cfg.get('data_dir'):
        raise ValueError('--dataset imagenet needs --data-dir (the directory holding train/ '
                         'and val/, or the root the --train-list/--val-list paths start from)')
    if bool(cfg.get('train_list')) != bool(cfg.get('val_list')):
        raise ValueError('give both --train-list and --val-list, or neither (directory layout)')
    options = dict(on_bad_sample=cfg.get('on_bad_sample', 'error'),
                   check_images=cfg.get('check_images', True))
    train = ImageNetDataset(cfg['data_dir'], 'train', list_file=cfg.get('train_list'),
                            **options)
    test = ImageNetDataset(cfg['data_dir'], 'val', list_file=cfg.get('val_list'),
                           n_class=train.n_class, **options)
    if len(train) == 0 or len(test) == 0:
        raise ValueError('%s: no usable %s images' % (cfg['data_dir'],
                                                      'training' if not len(train) else 'val'))
    return train, test, tuple(train.class_names), {'train': train.report, 'test': test.report}


def classification_converter(batch, device=None):
    """Batches ``(img, label)`` examples: ``x`` ``(N, 3, S, S)`` float32 in [0, 1] (the Darknet
    networks' input range), ``t`` ``(N,)`` int32, both on ``device``."""
    x = np.stack([example[0] for example in batch]).astype(np.float32)
    x /= 255
    t = np.asarray([example[1] for example in batch], dtype=np.int32)
    return convert.to_device(device, x), convert.to_device(device, t)


class ShardEvaluator(extensions.Evaluator):
    """Evaluator over one rank's share of a validation set of ``n_total`` examples.

    Every value the target reports must be a mean over the batch (loss, accuracy, top-5).
    :meth:`evaluate` returns, per key, ``sum over this rank's examples / (n_total /
    n_ranks)``: averaged with equal weights over the ranks by
    ``chainermn.create_multi_node_evaluator`` this is exactly the mean over all ``n_total``
    examples, whatever the shares' sizes and the last batch's size.

    :attr:`last_result` and :attr:`last_iteration` keep the latest result, so the final
    metrics reuse an evaluation that happened at the last iteration.
    """

    def __init__(self, iterator, target, n_total, n_ranks, **kwargs):
        super().__init__(iterator, target, **kwargs)
        self.n_total = n_total
        self.n_ranks = n_ranks
        self.last_result = None
        self.last_iteration = None

    def evaluate(self):
        iterator = self._iterators['main']
        target = self.eval_func or self._targets['main']
        if self.eval_hook:
            self.eval_hook(self)
        iterator.reset()
        sums = {}
        for batch in iterator:
            observation = {}
            with reporter_module.report_scope(observation):
                x, t = self.converter(batch, self.device)
                with chainer.no_backprop_mode():
                    target(x, t)
            for key, value in observation.items():
                sums[key] = sums.get(key, 0.0) + float(value) * len(batch)
        share = self.n_total / self.n_ranks
        return {key: value / share for key, value in sums.items()}

    def __call__(self, trainer=None):
        result = super().__call__(trainer)
        self.last_result = {k: float(v) for k, v in result.items()}
        self.last_iteration = trainer.updater.iteration if trainer is not None else None
        return result


class AccuracyPlot(chainer.training.Extension):
    """``accuracy.png`` in the style of paper 001 Fig. 3: training accuracy (blue) and
    validation accuracy (orange) against the epoch, titled with k and the peak rate.

    Each epoch's training point is the mean of ``main/accuracy`` over that epoch's updates
    (already averaged over the ranks); a validation point is drawn at the fractional epoch of
    each evaluation. Redrawn at every epoch end and when training ends; the points are saved
    in snapshots, so a resumed run continues the curves.
    """

    trigger = 1, 'iteration'
    priority = chainer.training.PRIORITY_READER
    name = 'accuracy_plot'

    def __init__(self, title, file_name='accuracy.png', train_key='main/accuracy',
                 val_key='validation/main/accuracy'):
        self.title = title
        self.file_name = file_name
        self.train_key, self.val_key = train_key, val_key
        self.train_points, self.val_points = [], []
        self._sum, self._n = 0.0, 0
        # finalize() gets no trainer: where and when the last update was.
        self._path, self._epoch = None, 0.0

    def __call__(self, trainer):
        observation = trainer.observation
        self._epoch = trainer.updater.epoch_detail
        self._path = os.path.join(trainer.out, self.file_name)
        if self.train_key in observation:
            self._sum += float(observation[self.train_key])
            self._n += 1
        if self.val_key in observation:
            self.val_points.append((self._epoch, float(observation[self.val_key])))
        if trainer.updater.is_new_epoch:
            self._close_epoch()
            self.draw(self._path)

    def _close_epoch(self):
        if self._n:
            self.train_points.append((self._epoch, self._sum / self._n))
        self._sum, self._n = 0.0, 0

    def finalize(self):
        """Adds the last, partial epoch (a run stopped by ``--iterations``) and redraws."""
        if self._path is None:
            return
        if self._n:
            self._close_epoch()
        self.draw(self._path)

    def draw(self, path):
        """Writes the figure to ``path`` (temporary file, then rename)."""
        self._path = path
        fig = Figure(figsize=(5, 3.6))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        for points, label, colour in ((self.train_points, 'train', 'tab:blue'),
                                      (self.val_points, 'validation', 'tab:orange')):
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, color=colour, label=label, marker='.' if len(xs) < 30 else None)
        ax.set_xlabel('Epoch')
        ax.set_ylabel('Accuracy')
        ax.set_ylim(0, 1)
        ax.set_title(self.title)
        ax.grid(alpha=0.3)
        ax.legend(loc='lower right')
        fig.tight_layout()
        save_figure(fig, path, dpi=80)

    def serialize(self, serializer):
        if isinstance(serializer, chainer.serializer.Serializer):
            serializer('points', json.dumps([self.train_points, self.val_points]))
        else:
            train, val = json.loads(serializer('points', ''))
            self.train_points = [tuple(p) for p in train]
            self.val_points = [tuple(p) for p in val]


def _scatter_validation(n_val, comm):
    """This rank's validation indices: contiguous blocks, no padding (see module docstring)."""
    import chainermn
    if n_val < comm.size:
        raise ValueError('the validation set has %d images, fewer than the %d processes: '
                         'every rank needs at least one' % (n_val, comm.size))
    shard = chainermn.scatter_dataset(np.arange(n_val), comm, force_equal_length=False)
    return np.asarray([shard[i] for i in range(len(shard))], dtype=np.int64)


def _train_transform(cfg):
    if not cfg['augment']:
        return CenterCrop(cfg['insize'])
    return DarknetAugmentation(cfg['insize'], min_crop=cfg.get('min_crop'),
                               max_crop=cfg.get('max_crop'), angle=cfg['angle'])


def train_classifier(cfg, comm, train, test, class_names, log=print):
    """Trains a Darknet classifier on ``train`` across the ranks of ``comm``.

    Args:
        cfg (dict): resolved settings (``scripts/train_darknet.py`` documents each key).
        comm: ChainerMN communicator.
        train, test: ``(img, label)`` datasets, img float32 (3, H, W) RGB in [0, 255]
            (every rank holds them; each reads only its share).
    Returns:
        dict: ``metrics.json``'s content (the same on every rank).
    """
    import chainermn
    rank0 = comm.rank == 0
    out = cfg['out']
    device = cfg['device']
    chainer.global_config.cudnn_fast_batch_normalization = cfg['cudnn_fast_bn']

    model = build_classifier(cfg['model'], len(class_names), cfg['channels_scale'],
                             seed=cfg['seed'])
    if cfg.get('pretrained_path'):
        # The fine-tuning stage (YOLO9000: 10 epochs at 448) starts from a trained classifier.
        _, info = load_classifier(cfg['pretrained_path'], model)
        if rank0:
            log('initialised from %s (%s)' % (cfg['pretrained_path'], info.description))
    chain = ClassifierChain(model)
    if device >= 0:
        chainer.cuda.get_device_from_id(device).use()
        chain.to_gpu()

    indices, n_padding = distributed.scatter_indices(len(train), comm, cfg['seed'])
    shard = sampling.EpochSampledDataset(IndexedSubset(train, indices), _train_transform(cfg),
                                         seed=cfg['seed'] * 1000003 + comm.rank)
    train_iter = make_train_iterator(shard, cfg['batchsize'], cfg['seed'], cfg['loaderjob'])

    optimizer = build_optimizer(chain, comm, cfg['schedule'](0), cfg['momentum'],
                                cfg['weight_decay'], cfg['double_buffering'])
    if not cfg['double_buffering']:
        # ChainerMN's optimizer spends its first update() broadcasting rank 0's parameters
        # instead of updating (lazy parameters only exist after a forward pass), and so
        # would a resumed run's first update. The classifiers have no lazy parameters:
        # broadcast now and let the optimizer record the parameter set, so every update
        # updates and --resume continues exactly.
        comm.bcast_data(chain)
        optimizer.is_changed(chain)
    updater = chainer.training.updaters.StandardUpdater(
        train_iter, optimizer, converter=classification_converter, device=device)
    stop = ((cfg['iterations'], 'iteration') if cfg['iterations']
            else (cfg['epochs'], 'epoch'))
    trainer = chainer.training.Trainer(updater, stop, out=out)
    trainer.extend(LRScheduleExtension(cfg['schedule']))
    for key in TRAIN_KEYS:
        trainer.extend(chainermn.extensions.ObservationAggregator(comm, key),
                       name='aggregate_' + key.replace('/', '_'))

    val = chainer.datasets.TransformDataset(
        IndexedSubset(test, _scatter_validation(len(test), comm)), CenterCrop(cfg['insize']))
    # Every rank must predict with the same batch-normalisation statistics.
    sync_bn = chainermn.extensions.AllreducePersistent(model, comm)

    def make_evaluator():
        if cfg['loaderjob']:
            val_iter = chainer.iterators.MultiprocessIterator(
                val, cfg['eval_batchsize'], repeat=False, shuffle=False,
                n_processes=cfg['loaderjob'])
        else:
            val_iter = chainer.iterators.SerialIterator(val, cfg['eval_batchsize'],
                                                        repeat=False, shuffle=False)
        evaluator = ShardEvaluator(val_iter, chain, len(test), comm.size,
                                   converter=classification_converter, device=device,
                                   eval_hook=lambda _: sync_bn())
        # The prefix of the reported keys (validation/main/...), also outside the trainer.
        evaluator.name = 'validation'
        return chainermn.create_multi_node_evaluator(evaluator, comm)

    evaluator = make_evaluator()
    eval_trigger = (cfg['eval_interval'], 'epoch') if cfg['eval_interval'] else None
    if eval_trigger:
        trainer.extend(evaluator, trigger=eval_trigger, name='validation')
    add_snapshots(trainer, comm, chain, model, (cfg['snapshot_interval'], 'iteration')
                  if cfg['snapshot_interval'] else stop)
    timer = Timer(cfg['batchsize'] * comm.size)
    trainer.extend(timer)

    peak_lr = cfg['schedule'].peak_lr
    if rank0:
        log_trigger = (cfg['log_interval'], 'iteration')
        trainer.extend(extensions.LogReport(trigger=log_trigger))
        trainer.extend(extensions.PlotReport(['main/loss', 'validation/main/loss'], 'epoch',
                                             trigger=log_trigger, file_name='loss.png'))
        plot = AccuracyPlot('%s, k = %d, lr = %g' % (cfg['model'], comm.size, peak_lr))
        trainer.extend(plot)
        columns = ['epoch', 'iteration', 'lr', 'main/loss', 'main/accuracy']
        if eval_trigger:
            columns += ['validation/main/loss', 'validation/main/accuracy',
                        'validation/main/top5']
        trainer.extend(extensions.PrintReport(columns + ['elapsed_time']), trigger=log_trigger)
        if cfg['progress']:
            trainer.extend(extensions.ProgressBar(update_interval=1))
    resume_and_record(trainer, cfg, comm, log, n_padding=n_padding, n_train=len(train),
                      n_val=len(test), iterations_per_epoch=len(indices) / cfg['batchsize'],
                      class_names=list(class_names))

    trainer.run()

    # Final accuracy with the trained model; collective, so every rank takes the same branch.
    if evaluator.last_iteration == trainer.updater.iteration:
        result = evaluator.last_result
    else:
        # The trainer has finalized its evaluator's iterator (worker processes included).
        final = make_evaluator()
        try:
            result = final()
        finally:
            final.finalize()
    metrics = {
        'top1': float(result['validation/main/accuracy']),
        'top5': float(result['validation/main/top5']),
        'loss': float(result['validation/main/loss']),
        'epochs': trainer.updater.epoch_detail,
        'iterations': trainer.updater.iteration,
        'elapsed_seconds': timer.elapsed,
        'images_per_second': timer.images_per_second,
        'comm_size': comm.size,
        'n_val': len(test),
        'insize': cfg['insize'],
    }
    save_results(out, comm, metrics, model)
    return metrics


def _check_classifier_preset(cfg):
    if cfg['model'] not in CLASSIFIERS or cfg['dataset'] not in CLASSIFICATION_DATASETS:
        raise ValueError('preset %s trains %s on %s; train_darknet.py trains %s on %s'
                         % (cfg['preset'], cfg['model'], cfg['dataset'],
                            ' or '.join(CLASSIFIERS), ' or '.join(CLASSIFICATION_DATASETS)))


def run_classification(args, option_map, log=print):
    """``scripts/train_darknet.py``'s body: settings, communicator, data, training."""
    cfg, _, comm, train, test, class_names = start_run(
        args, option_map, load_classification_datasets, check=_check_classifier_preset,
        log=log)
    rank0 = comm.rank == 0
    if cfg['channels_scale'] is None:
        cfg['channels_scale'] = 1 if cfg['dataset'] == 'imagenet' else DEMO_CHANNELS_SCALE
    metrics = train_classifier(cfg, comm, train, test, class_names, log=log)
    if rank0:
        log('top-1 %.4f, top-5 %.4f after %d iterations, %.1f s, %.1f images/s'
            % (metrics['top1'], metrics['top5'], metrics['iterations'],
               metrics['elapsed_seconds'], metrics['images_per_second']))
    return 0
