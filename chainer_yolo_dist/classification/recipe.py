"""Distributed Darknet-19 / Darknet-53 classification: ``scripts/train_darknet.py``'s recipe.

Paper 001 sec. 4.1: ``lr = k * n / 256 * eta``, 5-epoch gradual warmup, polynomial decay of
power 2, MomentumSGD with weight decay; one MPI process per GPU, each with its shuffled share
of the training set and reproducible augmentation streams; logs, plots and snapshots written
by rank 0 only; validation exact over the whole validation set
(:mod:`chainer_yolo_dist.classification.evaluation`).
"""
from chainer.training import extensions

from chainer_yolo_dist.classification import data
from chainer_yolo_dist.classification.chain import ClassifierChain, converter
from chainer_yolo_dist.classification.evaluation import validator
from chainer_yolo_dist.classification.model_files import (inspect_classifier_file,
                                                          load_classifier)
from chainer_yolo_dist.classification.models import CLASSIFIERS, build_classifier
from chainer_yolo_dist.classification.settings import ClassificationData, ClassificationSettings
from chainer_yolo_dist.classification.transforms import CenterCrop, DarknetAugmentation
from chainer_yolo_dist.core import iterators, parallelism, preemption, reporting, run
from chainer_yolo_dist.core.snapshots import record_config, resume
from chainer_yolo_dist.core.updaters import DataParallelUpdater

TRAIN_KEYS = ('main/loss', 'main/accuracy', 'main/top5')


def check(preset, options):
    """Preset, network, data and pretrained file fit together (before any data is read)."""
    if preset.model not in CLASSIFIERS or preset.dataset not in data.DATASETS:
        raise ValueError('preset %s trains %s on %s; train_darknet.py trains %s on %s'
                         % (preset.name, preset.model, preset.dataset,
                            ' or '.join(CLASSIFIERS), ' or '.join(data.DATASETS)))
    if options.get('pretrained'):
        info = inspect_classifier_file(options['pretrained'])
        if info.kind != preset.model:
            raise ValueError('%s holds a %s; this run trains %s (--model)'
                             % (options['pretrained'], info.description, preset.model))


#: Width of the CPU demo networks: the paper layout with every convolution 8x narrower.
DEMO_CHANNELS_SCALE = 1 / 8


def defaults(preset, options):
    """The paper width on ImageNet, the narrow CPU demo network on generated data (the small
    Darknet is already the CPU detector's width)."""
    full = preset.dataset == 'imagenet' or preset.model == 'darknet_small'
    return {'channels_scale': 1 if full else DEMO_CHANNELS_SCALE}


SYSTEM = run.System('classification', ClassificationSettings, ClassificationData,
                    data.load_data, check, defaults, data.check_images)


def train(settings, comm, dataset, log=print):
    """Trains a Darknet classifier on ``dataset.train`` across the ranks of ``comm``.
    Returns ``metrics.json``'s content (the same on every rank that trains; None on a
    parameter server of ``--parallelism async``)."""
    par = parallelism.for_run(settings, comm)
    if par.is_server:
        # A stop signal is the workers' to act on: they snapshot, then end the whole job.
        preemption.SignalFlag(settings.stop_signals)
        return parallelism.serve_run(par, settings, log)
    comm = par.data_comm  # the ranks that train
    preset = settings.preset
    model = build_classifier(preset.model, preset.n_class, settings.channels_scale,
                             seed=settings.seed)
    if settings.pretrained:
        # The fine-tuning stage (YOLO9000: 10 epochs at 448) starts from a trained classifier.
        _, info = load_classifier(settings.pretrained, model)
        if comm.rank == 0:
            log('initialised from %s (%s)' % (settings.pretrained, info.description))
    chain = run.to_device(ClassifierChain(model), settings)

    # The papers' reading (random crop, rotation, hue/saturation/exposure) has no flip;
    # Darknet's classifier loader flips too (docs/papers.md).
    transform = (DarknetAugmentation(preset.insize, min_crop=settings.min_crop,
                                     max_crop=settings.max_crop, angle=settings.angle,
                                     flip=preset.augmentation == 'darknet')
                 if settings.augment else CenterCrop(preset.insize))
    train_iters, n_padding, iterations_per_epoch = iterators.worker_iterators(
        dataset.train, transform, settings, comm)

    optimizer = parallelism.run_optimizer(par, settings, chain)
    updater = DataParallelUpdater(train_iters, optimizer, converter, settings.device,
                                  profile=settings.profile)
    trainer = run.build_trainer(settings, comm, updater, chain, model, TRAIN_KEYS)
    evaluator = validator(chain, model, dataset.test, settings, comm)
    columns = ['epoch', 'iteration', 'lr', 'main/loss', 'main/accuracy']
    if settings.eval_interval:
        trainer.extend(evaluator, trigger=(settings.eval_interval, 'epoch'), name='validation')
        columns += ['validation/main/loss', 'validation/main/accuracy', 'validation/main/top5']
    title = reporting.run_title(settings)
    reporting.add_rank0_reports(trainer, settings, comm, columns, plots=[
        extensions.PlotReport(['main/loss', 'validation/main/loss'], 'epoch',
                              trigger=(1, 'epoch'), filename='loss.png',
                              postprocess=reporting.titled(title, 'loss')),
        # Paper 001 Fig. 3's form: training (blue) and validation (orange) accuracy.
        extensions.PlotReport(['main/accuracy', 'validation/main/accuracy'], 'epoch',
                              trigger=(1, 'epoch'), filename='accuracy.png',
                              postprocess=reporting.titled(title, 'accuracy', (0, 1)))])
    resume(trainer, settings, comm, log)
    record_config(settings, comm, n_padding=n_padding,
                  iterations_per_epoch=iterations_per_epoch,
                  class_names=list(dataset.class_names), n_val=len(dataset.test))

    trainer.run()

    def final():  # with the trained model; collective, so every rank takes the same branch
        if evaluator.last_iteration == trainer.updater.iteration:
            result = evaluator.last_result
        else:
            # The trainer has finalized its evaluator's iterator (worker processes included).
            again = validator(chain, model, dataset.test, settings, comm)
            try:
                result = again()
            finally:
                again.finalize()
        return dict(top1=float(result['validation/main/accuracy']),
                    top5=float(result['validation/main/top5']),
                    loss=float(result['validation/main/loss']), n_val=len(dataset.test),
                    insize=preset.insize)
    return run.finish_run(trainer, settings, comm, model, final, optimizer, log)


def summary(metrics):
    """What rank 0 prints of a finished run."""
    return 'top-1 %.4f, top-5 %.4f' % (metrics['top1'], metrics['top5'])
