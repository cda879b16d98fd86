"""Distributed SlowFast action detection (paper 004): ``scripts/train_slowfast.py``'s recipe.

Paper 004 sec. 3.3: SlowFast R50 (tau 8, alpha 4, beta 8) from Kinetics-600 weights, batch 32
labelled boxes per node (8 per GPU), lr 0.05 per node scaled linearly with the nodes, linear
warmup over 5 epochs, x0.1 at epochs 10 and 15 of 20; data parallel (PyTorch DDP there,
ChainerMN here): one MPI process per GPU, each with its shuffled share of the keyframes and
reproducible augmentation streams, a multi-node MomentumSGD averaging the gradients, Chainer's
trainer, logs, plots and snapshots written by rank 0; the frame mAP@0.5 over the whole test set
gathered across ranks (:mod:`chainer_yolo_dist.slowfast.evaluation`). Sec. 4.2's two findings
are options of every run: ``--no-persistent-workers`` re-creates the loader processes at each
epoch (Table 3's stall) and ``--profile`` times each update's phases (Table 4).
"""
import os

import numpy as np

from chainer_yolo_dist.core import iterators, parallelism, reporting, run
from chainer_yolo_dist.core.sampling import ForwardRandomness
from chainer_yolo_dist.core.snapshots import record_config, resume
from chainer_yolo_dist.core.updaters import DataParallelUpdater
from chainer_yolo_dist.slowfast import data, models
from chainer_yolo_dist.slowfast.batch import concat_normalised_clips
from chainer_yolo_dist.slowfast.evaluation import ActionEvaluator
from chainer_yolo_dist.slowfast.head import DetectorLoss
from chainer_yolo_dist.slowfast.networks import ALPHA
from chainer_yolo_dist.slowfast.settings import SlowFastData, SlowFastSettings
from chainer_yolo_dist.slowfast.transforms import (TRAIN_CROP_SIZE, TRAIN_JITTER_SCALES,
                                                   random_scale_crop_flip)

LOSS_KEYS = ('main/loss',)


def check(preset, options):
    """Preset, network, data and pretrained file fit together (before any data is read)."""
    if preset.model not in models.MODELS or preset.dataset not in data.DATASETS:
        raise ValueError('preset %s trains %s on %s; train_slowfast.py trains %s on %s'
                         % (preset.name, preset.model, preset.dataset,
                            ', '.join(models.MODELS), ', '.join(data.DATASETS)))
    if preset.clip_frames < 1 or preset.clip_frames % ALPHA:
        raise ValueError('preset %s: clip_frames %d is not a positive multiple of alpha = 4 '
                         '(the Slow pathway reads every 4th frame)'
                         % (preset.name, preset.clip_frames))
    if options.get('pretrained'):
        models.trunk_prefix(options['pretrained'])  # a readable .npz holding a trunk
    boxes, thresh = options.get('eval_boxes'), options.get('eval_score_thresh', 0.8)
    if boxes and preset.dataset != 'ava':
        raise ValueError('--eval-boxes names a person-box file of AVA; --dataset %s is '
                         'evaluated on its own boxes' % preset.dataset)
    if boxes and not os.path.isfile(boxes):
        raise ValueError('--eval-boxes %s: no such file' % boxes)
    if not 0 <= thresh <= 1:
        raise ValueError('--eval-score-thresh must be in [0, 1], got %r' % thresh)


def defaults(preset, options):
    """The data request's clip shape follows the preset (its ``clip_frames`` and ``insize``,
    which ``--clip-frames`` / ``--insize`` override)."""
    return {'clip_frames': preset.clip_frames, 'clip_size': preset.insize}


SYSTEM = run.System('slowfast', SlowFastSettings, SlowFastData, data.load_data, check,
                    defaults, data.check_images)


class TrainTransform(object):
    """``(example, rng) -> example``: AVA's scale jitter, crop and flip (PySlowFast) when
    ``augment``; synthetic clips pass unchanged. The clip keeps its dtype (AVA: uint8) and is
    normalised, ``(x / 255 - 0.45) / 0.225``, on the device by the converter
    (:func:`.batch.concat_normalised_clips`), so a quarter of the bytes cross to the GPU.

    The crop is ``crop`` pixels (the preset's ``insize``) and the short side is drawn from
    PySlowFast's ``[256, 320]`` scaled by ``crop / 224``, i.e. exactly PySlowFast's at 224.
    """

    def __init__(self, augment, crop=TRAIN_CROP_SIZE):
        self.augment = augment
        self.crop = crop
        self.scales = tuple(int(round(s * crop / float(TRAIN_CROP_SIZE)))
                            for s in TRAIN_JITTER_SCALES)

    def __call__(self, example, rng):
        clip, bbox, label = example
        if self.augment:
            clip, bbox = random_scale_crop_flip(clip, bbox, rng, self.scales, self.crop)
        return clip, bbox, label


def train(settings, comm, dataset, log=print):
    """Trains an action detector on ``dataset.train`` across the ranks of ``comm``; evaluates
    on ``dataset.test``. Returns ``metrics.json``'s content (the same on every rank)."""
    preset = settings.preset
    # Chainer's initialisers (and dropout on the CPU) draw from NumPy's global generator.
    np.random.seed(settings.seed % 2 ** 32)
    detector = models.build_detector(preset.model, preset.n_class, settings.dropout)
    if settings.pretrained:
        models.load_trunk(settings.pretrained, detector)
        initialisation = 'trunk from %s' % settings.pretrained
    else:
        initialisation = 'from scratch (no --pretrained)'
        if preset.pretrained:
            initialisation += '; paper 004 sec. 3.3 starts from %s weights' % preset.pretrained
    if comm.rank == 0:
        log('initialisation: %s' % initialisation)
    # Every parameter exists, drawn on the host from the seeded generator, before the move (a
    # lazily shaped one would otherwise be drawn on the GPU, from CuPy's generator).
    models.materialise_parameters(detector)
    chain = run.to_device(DetectorLoss(detector), settings)

    augment = settings.augment and preset.dataset == 'ava'
    train_iters, n_padding, iterations_per_epoch = iterators.worker_iterators(
        dataset.train, TrainTransform(augment, preset.insize), settings, comm)

    optimizer = parallelism.run_optimizer(parallelism.for_run(settings, comm), settings, chain)
    updater = DataParallelUpdater(train_iters, optimizer, concat_normalised_clips,
                                  settings.device, profile=settings.profile)
    trainer = run.build_trainer(settings, comm, updater, chain, detector, LOSS_KEYS)
    # Reseeds NumPy's generator from (seed, rank, iteration) before every update: the head draws
    # its dropout masks from it on the host on every device (head.dropout_mask), so a resumed
    # run draws the uninterrupted run's masks, GPUs with cuDNN included.
    trainer.extend(ForwardRandomness(settings.seed, comm.rank))
    evaluator = ActionEvaluator(detector, dataset.test, comm, settings.eval_batchsize)
    if comm.rank == 0:
        log('evaluation boxes: %s' % dataset.test.boxes)
    columns = ['epoch', 'iteration', 'lr', 'main/loss']
    if settings.profile:
        columns += ['time/data', 'time/step']
    if settings.eval_interval:
        trainer.extend(evaluator, trigger=(settings.eval_interval, 'epoch'), name='validation')
        columns.append('validation/main/map')
    reporting.add_rank0_reports(trainer, settings, comm, columns, plots=[
        reporting.loss_plot(LOSS_KEYS, settings, iterations_per_epoch)])
    resume(trainer, settings, comm, log)
    record_config(settings, comm, n_padding=n_padding,
                  iterations_per_epoch=iterations_per_epoch, initialisation=initialisation,
                  class_names=list(dataset.class_names),
                  evaluated_class_ids=list(dataset.test.class_ids))

    trainer.run()

    def final():  # with the trained model; collective, so every rank takes the same branch
        if evaluator.last_iteration == trainer.updater.iteration:
            result = evaluator.last_result
        else:
            result = evaluator()
        return dict(map=result['map'], ap=_named_ap(result['ap'], dataset.class_names),
                    n_test_frames=result['n_frames'], eval_boxes=result['boxes'],
                    model=preset.model,
                    initialisation=initialisation)
    return run.finish_run(trainer, settings, comm, detector, final, optimizer, log)


def _named_ap(ap, class_names):
    """``{action name: AP or None}`` (action id ``i`` is ``class_names[i - 1]``)."""
    return {class_names[i - 1]: value for i, value in sorted(ap.items())}


def summary(metrics):
    """What rank 0 prints of a finished run (its images/s are clips/s)."""
    return 'frame mAP@0.5 %.4f (boxes: %s)' % (metrics['map'],
                                               metrics.get('eval_boxes', 'ground truth'))
