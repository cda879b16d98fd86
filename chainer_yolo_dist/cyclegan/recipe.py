"""Distributed CycleGAN (paper 002): ``scripts/train_cyclegan.py``'s recipe.

Paper 002 sec. 3.2: one MPI process per GPU, each drawing ``scale * D / n`` random examples
per epoch of the D training pairs (scale 4; :class:`~chainer_yolo_dist.core.sampling.
EpochDrawSampler`); four networks (two generators, two discriminators), each with its own
multi-node Adam that averages its gradients over all ranks (Horovod's ``DistributedOptimizer``
in the paper); the rate not scaled with the process count (lr rule 'constant'): Adam alpha 2e-4,
beta1 0.5, constant for 100 epochs then linearly to 0 at 200, the discriminators' rate half the
generators' (appendix A.1.2). The history pools and the draws are per rank: each rank writes
its own beside rank 0's snapshot (:func:`~chainer_yolo_dist.core.snapshots.add_rank_snapshots`,
:class:`RankState`).
"""
import os

import chainer
from chainer.training import extensions

from chainer_yolo_dist.core import iterators, optimizers, reporting, run
from chainer_yolo_dist.core.sampling import stream_seed
from chainer_yolo_dist.core.schedules import MultiOptimizerSchedule
from chainer_yolo_dist.core.snapshots import (add_rank_snapshots, npz_problem, record_config,
                                              resume)
from chainer_yolo_dist.cyclegan import data, evaluation
from chainer_yolo_dist.cyclegan.networks import default_n_blocks
from chainer_yolo_dist.cyclegan.parts import (LossTrace, RankState, initial_networks,
                                              networks_in_sync)
from chainer_yolo_dist.cyclegan.settings import (CycleGANData, CycleGANSettings,
                                                 refuse_double_buffering)
from chainer_yolo_dist.cyclegan.updater import NETWORKS, CycleGANUpdater, discriminator_lr

LOSS_KEYS = ('gen/loss', 'gen/loss_gan', 'gen/loss_cycle', 'gen/loss_id', 'dis_a/loss',
             'dis_b/loss')
MODEL = 'cyclegan_resnet'
#: The CPU demo's networks: the paper layout, 8x narrower, 3 residual blocks.
DEMO_WIDTH, DEMO_BLOCKS = 8, 3


def check(preset, options):
    """Preset, networks and data fit together (before any data is read)."""
    if preset.model != MODEL or preset.dataset not in data.DATASETS:
        raise ValueError('preset %s trains %s on %s; train_cyclegan.py trains %s on %s'
                         % (preset.name, preset.model, preset.dataset, MODEL,
                            ' or '.join(data.DATASETS)))
    if preset.insize % 4:
        raise ValueError('the generators need an input size divisible by 4, got %d'
                         % preset.insize)
    refuse_double_buffering(options.get('double_buffering'))  # before any data is read
    # The extractor's weights are read only at the first Frechet distance, after training
    # has begun: a file that cannot be read is refused now (an absent --fid-extractor is
    # trained there, so only one that exists is read).
    for option, path in (('--fid-weights', options.get('fid_weights')),
                         ('--fid-extractor', options.get('fid_extractor'))):
        if path and (option == '--fid-weights' or os.path.lexists(path)):
            problem = 'no such file' if not os.path.isfile(path) else npz_problem(path)
            if problem:
                raise ValueError('%s %s: %s' % (option, path, problem))


def defaults(preset, options):
    """The paper's networks on image folders (ngf = ndf = 64, Zhu's block count for the size:
    the defaults of Zhu et al.'s implementation, which paper 002 sec. 3.1 follows); the narrow
    demo networks on the synthetic domains."""
    # The data are cropped to the preset's input size.
    if preset.dataset == 'folders':
        return {'ngf': 64, 'ndf': 64, 'n_blocks': default_n_blocks(preset.insize),
                'image_size': preset.insize}
    return {'ngf': DEMO_WIDTH, 'ndf': DEMO_WIDTH, 'n_blocks': DEMO_BLOCKS,
            'image_size': preset.insize}


SYSTEM = run.System('cyclegan', CycleGANSettings, CycleGANData, data.load_data, check, defaults,
                    data.check_images)


def train(settings, comm, dataset, log=print):
    """Trains CycleGAN on ``dataset.train`` across the ranks of ``comm``; measures the Frechet
    distance on ``dataset.test``. Returns ``metrics.json``'s content (the same on every rank)."""
    preset = settings.preset
    # Every weight drawn on the host from --seed, then moved (never drawn by CuPy's generator).
    nets = run.to_device(initial_networks(settings.ngf, settings.ndf, settings.n_blocks,
                                          settings.seed), settings)

    transform = data.flip_pair if settings.flip else None
    # Folder images that need no resizing stay uint8 until the converter has them on the
    # device (updater.pair_converter): same numbers, a quarter of the bytes.
    train_iter, draws = iterators.drawn_iterator(
        data.stored_form(dataset.train), transform, settings, comm, preset.sampling_scale,
        settings.sampling_replace, settings.sampling_resample)

    dis_factor = discriminator_lr(1.0, settings.dis_lr_rule)
    factors = {'gen_ab': 1.0, 'gen_ba': 1.0, 'dis_a': dis_factor, 'dis_b': dis_factor}
    opts = {}
    for name in NETWORKS:
        optimizer, hooks = optimizers.adam(settings, factors[name])
        opts[name] = optimizers.multi_node(optimizer, hooks, getattr(nets, name), comm)
    pool_seed = (2 * stream_seed(settings.seed, comm.rank)) % (2 ** 32 - 1)
    updater = CycleGANUpdater(train_iter, opts, settings.lambda_cycle, settings.lambda_id,
                              settings.pool_size, pool_seed, device=settings.device)
    trainer = run.build_trainer(settings, comm, updater, nets, nets, LOSS_KEYS,
                                schedule=MultiOptimizerSchedule(settings.preset.schedule(),
                                                                factors, attr='alpha'))
    add_rank_snapshots(trainer, settings, comm, RankState(updater))
    trace = LossTrace(settings.log_interval)  # in the snapshots: the whole run's, resumed
    trainer.extend(trace)

    frechet = _frechet_extension(trainer, settings, comm, dataset, nets, log)  # collective
    if comm.rank == 0:
        _add_sample_grid(trainer, settings, dataset, nets)
    columns = ['epoch', 'iteration', 'lr'] + list(LOSS_KEYS) + ['fid']
    per_epoch = settings.iterations_per_epoch
    # The log also at the last update: the end's Frechet distance is the curve's last point.
    reporting.add_rank0_reports(trainer, settings, comm, columns, make_trigger=lambda: (
        _every_and_at_end(settings.log_interval, settings, 'iteration')), plots=[
        extensions.PlotReport(list(LOSS_KEYS), 'iteration', filename='loss.png', marker=None,
                              trigger=(settings.log_interval, 'iteration'),
                              postprocess=reporting.epoch_axis(
                                  per_epoch, 'loss (mean over ranks)',
                                  reporting.run_title(settings, 'CycleGAN')))])
    resume(trainer, settings, comm, log, rank_state=RankState(updater))
    record_config(settings, comm, draws_per_epoch=draws, iterations_per_epoch=per_epoch,
                  fid_extractor=_extractor_name(settings),
                  fid_baseline=frechet.baseline)

    trainer.run()

    def final():  # collective: every rank measures, rank 0's values are every rank's
        in_sync = networks_in_sync(nets, comm)
        # Measured at the last update by its trigger; ``last`` is the same on every rank, so
        # all take the same branch of this collective.
        last = frechet.last if frechet.last is not None else frechet.measure()
        out = None
        if comm.rank == 0:
            out = {
                'fid': last, 'fid_baseline': frechet.baseline,
                'fid_history': [list(p) for p in frechet.history],
                'fid_extractor': _extractor_name(settings),
                'cycle_loss_first': trace.first(), 'cycle_loss_last': trace.last(),
                'draws_per_epoch': draws, 'insize': preset.insize, 'networks_in_sync': in_sync}
        return comm.bcast_obj(out)
    return run.finish_run(trainer, settings, comm, nets, final, log=log)


def _extractor_name(settings):
    if settings.fid_weights:
        return 'inception_v3 (%s): FID comparable with the literature' % settings.fid_weights
    return ('default extractor, Darknet-19/8 on synthetic shapes (%s): NOT comparable with '
            'published FIDs' % evaluation.extractor_path(settings.fid_extractor))


def _every_and_at_end(period, settings, unit='epoch'):
    """A trigger firing every ``period`` epochs (or ``unit``s; never if 0) and at the last
    update."""
    from chainer.training.triggers import IntervalTrigger
    every = IntervalTrigger(period, unit) if period else None
    end = IntervalTrigger(*settings.stop_trigger)
    return lambda trainer: bool((every is not None and every(trainer)) | end(trainer))


def _frechet_extension(trainer, settings, comm, dataset, nets, log):
    """The Frechet distance on every rank (collective: each rank extracts the features of its
    share of the held-out images on its own device; :class:`evaluation.FrechetExtension`)."""
    test = dataset.test
    extract = None
    if comm.rank == 0:  # trains the default extractor first if its file is absent
        extract = (evaluation.inception_extractor(settings.fid_weights) if settings.fid_weights
                   else evaluation.default_extractor(settings.fid_extractor, log))
    if comm.size > 1:
        # Rank 0's extractor, pickled from the host: the weights file need not be on every
        # node, and the default one is trained once.
        extract = comm.bcast_obj(extract)
    if settings.device >= 0:
        extract.to_device(chainer.get_device('@cupy:%d' % settings.device))
    title = ('CycleGAN, k = %d, alpha = %g: Frechet distance (%s extractor)'
             % (settings.workers, settings.preset.peak_lr,
                'Inception-v3' if settings.fid_weights else 'default'))
    frechet = evaluation.FrechetExtension(
        nets.gen_ab, test.domain_a, test.domain_b, extract,
        os.path.join(settings.out, 'fid.png') if comm.rank == 0 else None, title, comm=comm,
        n_images=settings.fid_images)
    trainer.extend(frechet, trigger=_every_and_at_end(settings.fid_interval, settings))
    if comm.rank == 0:
        log('Frechet distance of untranslated A to B (%d test images): %.4g'
            % (min(settings.fid_images, len(test.domain_a)), frechet.baseline))
    return frechet


def _add_sample_grid(trainer, settings, dataset, nets):
    """Rank 0's sample grids (no collective inside)."""
    images_a = evaluation.stack(dataset.test.domain_a, min(settings.n_samples,
                                                           settings.fid_images))
    grid = evaluation.SampleGrid(nets.gen_ab, nets.gen_ba, images_a, settings.out)
    trainer.extend(grid, trigger=_every_and_at_end(settings.sample_interval, settings))


def summary(metrics):
    """What rank 0 prints of a finished run."""
    first, last = metrics['cycle_loss_first'], metrics['cycle_loss_last']
    return ('Frechet distance %s (untranslated A: %s); cycle loss %s -> %s'
            % (_fmt(metrics['fid']), _fmt(metrics['fid_baseline']), _fmt(first, '%.3f'),
               _fmt(last, '%.3f')))


def _fmt(value, form='%.4g'):
    return 'n/a' if value is None else form % value
