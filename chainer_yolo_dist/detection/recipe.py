"""Distributed YOLO training (papers 000 and 001): ``scripts/train_yolo.py``'s recipe.

The structure is ChainerCV's ``examples/ssd/train_multi.py``: one MPI process per GPU, each
with its share of the shuffled training set, a ``MultiprocessIterator`` for augmentation in
worker processes, a ChainerMN multi-node ``MomentumSGD`` that averages gradients across ranks,
Chainer's trainer and extensions, and logs, plots and snapshots written by rank 0 only.
"""
import numpy as np
from chainer.training import extensions
from chainer.training.triggers import MaxValueTrigger

from chainer_yolo_dist.core import iterators, parallelism, reporting, run
from chainer_yolo_dist.core.snapshots import AtomicWriter, record_config, resume
from chainer_yolo_dist.core.updaters import DataParallelUpdater
from chainer_yolo_dist.detection import data, models
from chainer_yolo_dist.detection.evaluation import DetectionEvaluator
from chainer_yolo_dist.detection.multiscale import (MultiScaleConverter, MultiScaleExtension,
                                                    multiscale_sizes)
from chainer_yolo_dist.detection.settings import DetectionData, DetectionSettings
from chainer_yolo_dist.detection.train_chain import YOLOTrainChain
from chainer_yolo_dist.detection.transforms import ResizeTransform, for_reading

#: The network at the evaluation with the best mAP so far (with --eval-interval).
BEST_MODEL = 'model_best.npz'
LOSS_KEYS = ('main/loss', 'main/loss/box', 'main/loss/conf', 'main/loss/prob')


def check(preset, options):
    """Preset, network, data and pretrained file fit together (before any data is read)."""
    if preset.model not in models.MODELS or preset.dataset not in data.DATASETS:
        raise ValueError('preset %s trains %s on %s; train_yolo.py trains %s on %s'
                         % (preset.name, preset.model, preset.dataset,
                            ', '.join(models.MODELS), ', '.join(data.DATASETS)))
    if options.get('parallelism') == 'async':
        raise ValueError('--parallelism async is for train_darknet.py (paper 003); detection '
                         'runs sync, local or stale')
    if preset.dataset == 'vocformat' and not options.get('class_names'):
        raise ValueError('--dataset vocformat needs --class-names (and --data-dir)')
    pretrained = options.get('pretrained')
    if pretrained and options.get('from_scratch'):
        raise ValueError('give --pretrained PATH or --from-scratch, not both')
    if pretrained:
        from chainer_yolo_dist.detection.transfer import check_pretrained
        check_pretrained(pretrained, preset.model)
    elif preset.pretrained and not options.get('from_scratch'):
        raise ValueError(
            'preset %s starts from %s weights (%d layers; %s): give --pretrained PATH (a '
            'classifier model.npz of scripts/train_darknet.py, or Darknet\'s own weights such '
            'as %s), or --from-scratch to train from random weights'
            % (preset.name, preset.pretrained, preset.transfer_layers,
               PRETRAINING_SOURCES.get(preset.pretrained, ''),
               DARKNET_FILES.get(preset.pretrained, 'darknet53.conv.74')))


#: Darknet's own file of each trunk's pretrained layers (what --pretrained may name).
DARKNET_FILES = {'darknet19': 'darknet19_448.conv.23', 'darknet53': 'darknet53.conv.74'}

#: Where the papers say the detectors' pretraining comes from.
PRETRAINING_SOURCES = {'darknet19': 'paper 000 sec. 2.2', 'darknet53': 'paper 001 sec. 2.3'}

SYSTEM = run.System('detection', DetectionSettings, DetectionData, data.load_data, check,
                    check_images=data.check_images)


def train(settings, comm, dataset, log=print):
    """Trains a YOLO on ``dataset.train`` across the ranks of ``comm``; evaluates on
    ``dataset.test``. Returns ``metrics.json``'s content (the same on every rank)."""
    preset = settings.preset
    # Chainer's initialisers draw from NumPy's global generator, also for the parameters
    # initialised lazily by the first forward pass: the seed fixes them.
    np.random.seed(settings.seed % 2 ** 32)
    model = models.build_model(preset.model, preset.n_class)
    if settings.pretrained:
        from chainer_yolo_dist.detection.transfer import load_pretrained
        copied = load_pretrained(settings.pretrained, model)
        if comm.rank == 0:
            log('transferred %s from %s' % (copied, settings.pretrained))
    chain = YOLOTrainChain(model, models.build_loss(model))
    if settings.sync_bn:
        import chainermn
        chain = chainermn.links.create_mnbn_model(chain, comm)
        model = chain.model
    # The lazy parameters are drawn here, on the host, from the seeded NumPy generator (on a
    # GPU they would come from CuPy's, which --seed does not reach). Their shapes come from
    # the channels alone: the smallest input the networks' stride of 32 allows initialises
    # them exactly as the training size would (the same draws in the same order;
    # tests/test_models.py), for 1/361 of a forward at 608.
    models.initialize_lazy_parameters(model)
    run.to_device(chain, settings)

    # The workers' shares of the training data, augmented at the largest multi-scale size.
    sizes = multiscale_sizes(*preset.multiscale[:2]) if preset.multiscale else (preset.insize,)
    transform = (for_reading(preset.augmentation, max(sizes), jitter=settings.jitter)
                 if settings.augment else ResizeTransform(max(sizes)))
    train_iters, n_padding, iterations_per_epoch = iterators.worker_iterators(
        dataset.train, transform, settings, comm)
    converter = MultiScaleConverter(preset.insize)

    par = parallelism.for_run(settings, comm)
    optimizer = parallelism.run_optimizer(par, settings, chain)
    updater = DataParallelUpdater(train_iters, optimizer, converter, settings.device,
                                  profile=settings.profile)
    trainer = run.build_trainer(settings, comm, updater, chain, model, LOSS_KEYS)
    if preset.multiscale:
        trainer.extend(MultiScaleExtension(converter, sizes, every=preset.multiscale[2],
                                           seed=settings.seed))
    evaluator = DetectionEvaluator(model, dataset.test, comm, batchsize=settings.eval_batchsize,
                                   class_names=dataset.class_names,
                                   eval_insize=settings.eval_insize or preset.insize)
    columns = ['epoch', 'iteration', 'lr'] + list(LOSS_KEYS)
    if settings.eval_interval:
        trainer.extend(evaluator, trigger=(settings.eval_interval, 'epoch'), name='validation')
        columns.append('validation/main/map')
        if comm.rank == 0:
            # Paper 002 sec. 4.3 evaluates the checkpoint with the best mAP: keep it.
            trainer.extend(extensions.snapshot_object(model, BEST_MODEL, writer=AtomicWriter()),
                           trigger=MaxValueTrigger('validation/main/map',
                                                   (settings.eval_interval, 'epoch')),
                           name='best_model')
    reporting.add_rank0_reports(trainer, settings, comm, columns, plots=[
        reporting.loss_plot(LOSS_KEYS, settings, iterations_per_epoch)])
    resume(trainer, settings, comm, log)
    record_config(settings, comm, n_padding=n_padding,
                  iterations_per_epoch=iterations_per_epoch,
                  class_names=list(dataset.class_names))

    trainer.run()

    def final():  # with the trained model, on every rank (collective)
        result = evaluator()
        out = dict(map=result['map'], ap=result['ap'], eval_insize=model.insize,
                   counts=_counts(result))
        if 'ap_null' in result:
            out['ap_null'] = result['ap_null']
        return out
    return run.finish_run(trainer, settings, comm, model, final, optimizer, log)


def _counts(result):
    """Paper 002 Table 2's counts of an evaluation, without the per-class breakdown."""
    return {k: v for k, v in result['counts'].items() if k != 'per_class'}


def summary(metrics):
    """What rank 0 prints of a finished run."""
    return 'mAP %.4f' % metrics['map']
