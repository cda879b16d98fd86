"""GPU check, the training stages: each system's own script on its synthetic demo preset.

- ``detection``: ``train_yolo.py`` (YOLOv3-small at 96-160 px with multi-scale, evaluation at
  the end) for :data:`DETECTION` ``iterations`` with a snapshot half way and ``--profile``; then
  the same run resumed from that snapshot. It works when every logged loss is finite and the
  mean of the last two log entries is below that of the first two (the preset's rate, 0.0025
  with its warm-up, is the one the CPU demo trains with; not a rate that diverges from random
  weights), the evaluation gives a finite mAP, the resumed ``model.npz`` equals the
  uninterrupted one (bitwise, or within :data:`RESUME_RTOL` of each array's largest value), and
  the profile's phases add up to at least :data:`PROFILE_MIN_RATIO` of the update time
  measured from outside (``$CHAINER_YOLO_DIST_TIMING_DIR``).
- ``classification``: ``train_darknet.py`` in every mode at once (sync, sync + LARS, local,
  stale on one process; async as one server and one worker under ``mpiexec -n 2``): exit 0,
  finite losses, a finite top-1 from the final evaluation.
- ``cyclegan``: ``train_cyclegan.py`` with a snapshot half way, resumed from it and compared as
  detection's, and one Frechet distance computed and timed in this process (the run's own
  extractor, generator and test images: the value must match the run's).
- ``slowfast``: ``train_slowfast.py`` with ``--profile`` (finite losses, frame mAP, the
  profile written), then one forward/backward at the paper's size
  (``slowfast.memory.paper_size_step``): time and peak memory.

``--cpu-smoke`` runs the same on the CPU at the smallest sizes (:data:`SMOKE`): it checks the
check, not a GPU.
"""
import os
import sys
import time

from chainer_yolo_dist.benchmarks import gpu_check_judges as judges
from chainer_yolo_dist.benchmarks import gpu_check_worker as worker

#: Sizes of the runs on a GPU, and (:data:`SMOKE`) on the CPU.
DETECTION = {'iterations': 60, 'snapshot': 30, 'log': 5, 'train': 256, 'test': 32}
CLASSIFICATION = {'iterations': 12, 'log': 4, 'train': 256, 'test': 64}
CYCLEGAN = {'iterations': 16, 'snapshot': 8, 'log': 4, 'train': 32, 'test': 16}
SLOWFAST = {'iterations': 20, 'log': 5, 'train': 64, 'test': 16}
SMOKE = {
    'detection': {'iterations': 8, 'snapshot': 4, 'log': 2, 'train': 32, 'test': 8},
    'classification': {'iterations': 4, 'log': 2, 'train': 64, 'test': 32},
    'cyclegan': {'iterations': 4, 'snapshot': 2, 'log': 2, 'train': 8, 'test': 8},
    'slowfast': {'iterations': 4, 'log': 2, 'train': 16, 'test': 8},
}
#: A resumed run's weights may differ from the uninterrupted run's by this fraction of each
#: array's largest magnitude (GPU kernels that accumulate with atomics are not bitwise
#: reproducible; a wrongly restored state differs by far more after 30 updates).
RESUME_RTOL = 1e-3
#: The profile's phases must cover this fraction of the measured update time.
PROFILE_MIN_RATIO = 0.9
#: The Frechet distance computed again may differ from the run's by this fraction.
FID_RTOL = 1e-3
#: Loss log entries averaged at each end of the run for "the loss fell".
LOSS_WINDOW = 2


def _sizes(stage, options, gpu):
    """The run sizes of ``stage``: ``gpu`` on a GPU, :data:`SMOKE`'s on a CPU smoke run."""
    return SMOKE[stage] if options.cpu_smoke else gpu


def _env(extra=None):
    """This process's environment (the runner's) plus ``extra``."""
    env = dict(os.environ)
    env.update(extra or {})
    return env


def check_run(report, name, status, tail):
    """Check ``NAME run``: the sub-run exited 0 (else its last line, or that it timed out)."""
    return report.check(name + ' run', status == 0, worker.outcome(status, tail) if status
                        != 0 else 'exit status 0')


def check_losses(report, name, out, key='main/loss', falling=False):
    """Check the run's logged ``key``: finite, and with ``falling`` lower at the end
    (:func:`.gpu_check_judges.loss_trend` over :data:`LOSS_WINDOW` entries)."""
    log = judges.read_or_none(os.path.join(out, 'log')) or []
    trend = judges.loss_trend(judges.log_series(log, key), LOSS_WINDOW)
    report.fact(name + '_loss', trend)
    if not falling:
        return report.check(name + ' losses finite', trend['finite'],
                            '%d log entries of %s' % (trend['entries'], key))
    return report.check(
        name + ' loss finite and falling', trend['finite'] and trend['fell'],
        '%s: mean of log entries at iterations %s %.4g -> at %s %.4g (%d entries)'
        % (key, trend.get('first_iterations'), judges.number(trend['first']),
           trend.get('last_iterations'), judges.number(trend['last']), trend['entries']))


def _check_resumed(report, name, full, resumed):
    cmp = judges.compare_npz(os.path.join(full, 'model.npz'),
                             os.path.join(resumed, 'model.npz'), RESUME_RTOL)
    report.fact(name + '_resume', cmp)
    report.check(name + ' resumed equals uninterrupted', cmp['within'],
                 '%s: max |diff| %.3g, largest relative %.3g (%s; tolerance %.0e)'
                 % ('bitwise' if cmp['bitwise'] else 'not bitwise', cmp['max_abs'],
                    cmp['max_relative'], cmp['worst'], RESUME_RTOL))
    return cmp


def _profile_ratio(out, timing_dir, sizes):
    """:func:`judges.profile_against_timing` of a run logged every ``sizes['log']`` updates
    with snapshots every ``sizes.get('snapshot')``."""
    profile = judges.read_or_none(os.path.join(out, 'profile.json'))
    timing = judges.read_or_none(os.path.join(timing_dir, 'timing_rank0.json'))
    if profile is None or timing is None:
        return None, profile

    def quiet(iteration):
        snap = sizes.get('snapshot')
        return iteration % sizes['log'] != 0 and not (snap and iteration % snap == 0)
    return judges.profile_against_timing(profile, timing, quiet), profile


def detection(report, options):
    sizes = _sizes('detection', options, DETECTION)
    work = options.work
    full, resumed, timing_dir = (os.path.join(work, n) for n in ('full', 'resumed', 'timing'))
    common = [sys.executable, worker.script('train_yolo.py'), '--preset', 'synthetic_demo',
              '--iterations', str(sizes['iterations']),
              '--snapshot-interval', str(sizes['snapshot']),
              '--log-interval', str(sizes['log']), '--n-train-images', str(sizes['train']),
              '--n-test-images', str(sizes['test']), '--eval-batchsize', '8',
              '--loaderjob', '2', '--no-progress', '--profile', '--seed', '0']
    status, _, tail = worker.run_logged(report, 'full', common + ['--out', full], work,
                                        env=_env({'CHAINER_YOLO_DIST_TIMING_DIR': timing_dir}))
    if not check_run(report, 'detection', status, tail):
        return
    check_losses(report, 'detection', full, falling=True)
    config = judges.read_or_none(os.path.join(full, 'config.json')) or {}
    report.fact('detection_config_multiscale', judges.find_key(config, 'multiscale'))
    metrics = judges.read_or_none(os.path.join(full, 'metrics.json')) or {}
    report.fact('detection_metrics', {k: metrics.get(k) for k in
                                      ('map', 'images_per_second', 'elapsed_seconds')})
    report.check('detection evaluation', judges.finite(metrics.get('map')),
                 'mAP %s at the end' % metrics.get('map'))
    ratio, profile = _profile_ratio(full, timing_dir, sizes)
    if ratio is None:
        report.check('detection profile', False, 'profile.json or the timing file is missing')
    else:
        report.fact('detection_profile', dict(ratio, mean=profile['summary']['mean']))
        report.check('detection profile adds up', ratio['ratio'] is not None and
                     ratio['ratio'] >= PROFILE_MIN_RATIO,
                     'phases %.3f s of %.3f s measured over %d updates (%.1f%%; at least '
                     '%.0f%%)' % (ratio['profile_seconds'], ratio['measured_seconds'],
                                  ratio['iterations'], 100 * (ratio['ratio'] or 0),
                                  100 * PROFILE_MIN_RATIO))
    snapshot = os.path.join(full, 'snapshot_iter_%d' % sizes['snapshot'])
    status, _, tail = worker.run_logged(report, 'resumed', common + [
        '--out', resumed, '--resume', snapshot], work)
    if check_run(report, 'detection resumed', status, tail):
        cmp = _check_resumed(report, 'detection', full, resumed)
        report.summary = ('loss %.3g -> %.3g, mAP %.3g, %.1f images/s; resume %s; profile '
                          '%.0f%% of the update time'
                          % (judges.number(report.facts['detection_loss']['first']),
                             judges.number(report.facts['detection_loss']['last']),
                             judges.number(metrics.get('map')),
                             judges.number(metrics.get('images_per_second')),
                             'bitwise' if cmp['bitwise'] else 'max rel. diff %.2g'
                             % cmp['max_relative'], 100 * ((ratio or {}).get('ratio') or 0)))


#: ``train_darknet.py`` options of each parallelism mode, and its number of ranks.
CLASSIFICATION_MODES = {
    'sync': ([], 1),
    'lars': (['--lars'], 1),
    'local': (['--parallelism', 'local', '--average-every', '2'], 1),
    'stale': (['--parallelism', 'stale'], 1),
    'async': (['--parallelism', 'async'], 2),  # rank 0 serves, rank 1 trains on the GPU
}


def classification(report, options):
    sizes = _sizes('classification', options, CLASSIFICATION)
    runs = {}
    for mode, (extra, ranks) in CLASSIFICATION_MODES.items():
        args = [worker.script('train_darknet.py'), '--preset', 'synthetic_classification_demo',
                '--iterations', str(sizes['iterations']), '--log-interval', str(sizes['log']),
                '--n-train-images', str(sizes['train']), '--n-test-images', str(sizes['test']),
                '--eval-interval', '0', '--loaderjob', '1', '--no-progress',
                '--out', os.path.join(options.work, mode)] + extra
        runs[mode] = (worker.mpi_command(ranks, args) if ranks > 1
                      else [sys.executable] + args)
    done = worker.run_parallel(report, runs, options.work)
    top1 = {}
    for mode, (status, seconds, tail) in done.items():
        if not check_run(report, mode, status, tail):
            continue
        out = os.path.join(options.work, mode)
        check_losses(report, mode, out)
        metrics = judges.read_or_none(os.path.join(out, 'metrics.json')) or {}
        top1[mode] = metrics.get('top1')
        report.check(mode + ' evaluation', judges.finite(metrics.get('top1')),
                     'top-1 %s, %s images/s' % (metrics.get('top1'),
                                                metrics.get('images_per_second')))
    report.fact('top1', top1)
    report.summary = 'top-1 after %d updates: %s' % (sizes['iterations'], ', '.join(
        '%s %s' % (mode, '%.3f' % top1[mode] if judges.finite(top1.get(mode)) else 'failed')
        for mode in CLASSIFICATION_MODES))


def _random_extractor(path):
    """Writes a Darknet-19/8 feature extractor with seeded random weights to ``path``.

    Training the default extractor takes minutes; the check times a Frechet distance, whose
    cost does not depend on the weights (the value with random weights means nothing)."""
    import chainer
    import numpy as np
    from chainer_yolo_dist.core import atomic
    from chainer_yolo_dist.cyclegan import features
    np.random.seed(0)
    model = features.build_default_extractor().model
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        model.features(np.zeros((1, 3, features.DEFAULT_INPUT_SIZE,
                                 features.DEFAULT_INPUT_SIZE), np.float32))
    atomic.save_npz(path, model)


def cyclegan(report, options):
    sizes = _sizes('cyclegan', options, CYCLEGAN)
    work = options.work
    full, resumed = os.path.join(work, 'full'), os.path.join(work, 'resumed')
    extractor = os.path.join(work, 'extractor_random.npz')
    _random_extractor(extractor)
    common = [sys.executable, worker.script('train_cyclegan.py'), '--preset', 'cyclegan_demo',
              '--iterations', str(sizes['iterations']),
              '--snapshot-interval', str(sizes['snapshot']),
              '--log-interval', str(sizes['log']), '--n-train-images', str(sizes['train']),
              '--n-test-images', str(sizes['test']), '--fid-images', str(sizes['test']),
              '--fid-interval', '0', '--sample-interval', '0', '--n-samples', '4',
              '--fid-extractor', extractor, '--no-progress', '--seed', '0']
    status, _, tail = worker.run_logged(report, 'full', common + ['--out', full], work)
    if not check_run(report, 'cyclegan', status, tail):
        return
    check_losses(report, 'cyclegan', full, key='gen/loss')
    metrics = judges.read_or_none(os.path.join(full, 'metrics.json')) or {}
    report.check('cyclegan Frechet distance in the run', judges.finite(metrics.get('fid')),
                 'fid %s (untranslated baseline %s)' % (metrics.get('fid'),
                                                        metrics.get('fid_baseline')))
    snapshot = os.path.join(full, 'snapshot_iter_%d' % sizes['snapshot'])
    status, _, tail = worker.run_logged(report, 'resumed', common + [
        '--out', resumed, '--resume', snapshot], work)
    if check_run(report, 'cyclegan resumed', status, tail):
        _check_resumed(report, 'cyclegan', full, resumed)
    timed = _timed_fid(report, full, extractor, sizes, options.cpu_smoke)
    report.summary = ('Frechet distance %.4g in the run, %.2f s to compute again (%s); '
                      'resume %s' % (judges.number(metrics.get('fid')), timed['seconds'],
                                     timed['where'],
                                     'bitwise'
                                     if report.facts.get('cyclegan_resume', {}).get('bitwise')
                                     else 'within tolerance'))


def _timed_fid(report, full, extractor, sizes, cpu_smoke):
    """One Frechet distance as the run's FrechetExtension computes it on one process
    (generator and, where it can move, the extractor on the run's device), timed: the B
    features and the baseline, then translating A, its features and the distance."""
    import chainer
    from chainer_yolo_dist.cyclegan import data, evaluation, recipe
    from chainer_yolo_dist.cyclegan.parts import Networks
    nets = Networks(recipe.DEMO_WIDTH, recipe.DEMO_WIDTH, recipe.DEMO_BLOCKS)
    chainer.serializers.load_npz(os.path.join(full, 'model.npz'), nets)
    device = chainer.get_device('@numpy' if cpu_smoke else '@cupy:0')
    device.use()
    nets.to_device(device)
    config = judges.read_or_none(os.path.join(full, 'config.json')) or {}
    size = judges.find_key(config, 'insize') or 64
    test = data.SyntheticDomains('test', sizes['test'], size, 0)
    images_a = evaluation.stack(test.domain_a, sizes['test'])
    images_b = evaluation.stack(test.domain_b, sizes['test'])
    extract = evaluation.default_extractor(extractor)
    if hasattr(extract, 'to_device'):  # as the recipe does: the features on the run's device
        extract.to_device(device)
    start = time.time()
    frechet = evaluation.FrechetExtension(nets.gen_ab, images_a, images_b, extract)
    setup = time.time() - start
    start = time.time()
    value = frechet.measure()
    seconds = time.time() - start
    expected = (judges.read_or_none(os.path.join(full, 'metrics.json')) or {}).get('fid')
    timed = {'value': value, 'run_value': expected, 'seconds': seconds,
             'setup_seconds': setup, 'images': len(images_a), 'where': str(device)}
    report.fact('cyclegan_fid_timed', timed)
    # The same computation on the same device as the run's last measurement: equal up to
    # the order of float sums (the value itself, with a random extractor, means nothing).
    close = judges.finite(expected) and abs(value - expected) <= FID_RTOL * abs(expected) + 1e-12
    report.check('cyclegan Frechet distance timed', close,
                 '%.4g in %.2f s (B features and baseline %.2f s) for %d images; the run '
                 'gave %s' % (value, seconds, setup, len(images_a), expected))
    return timed


def slowfast(report, options):
    sizes = _sizes('slowfast', options, SLOWFAST)
    work = options.work
    out, timing_dir = os.path.join(work, 'run'), os.path.join(work, 'timing')
    argv = [sys.executable, worker.script('train_slowfast.py'), '--preset', 'slowfast_demo',
            '--iterations', str(sizes['iterations']), '--log-interval', str(sizes['log']),
            '--n-train-clips', str(sizes['train']), '--n-test-clips', str(sizes['test']),
            '--loaderjob', '2', '--no-progress', '--profile', '--seed', '0', '--out', out]
    status, _, tail = worker.run_logged(report, 'run', argv, work,
                                        env=_env({'CHAINER_YOLO_DIST_TIMING_DIR': timing_dir}))
    if check_run(report, 'slowfast', status, tail):
        check_losses(report, 'slowfast', out)
        metrics = judges.read_or_none(os.path.join(out, 'metrics.json')) or {}
        report.check('slowfast evaluation', judges.finite(metrics.get('map')),
                     'frame mAP %s, %s images/s' % (metrics.get('map'),
                                                    metrics.get('images_per_second')))
        ratio, profile = _profile_ratio(out, timing_dir, sizes)
        report.check('slowfast profile written', profile is not None,
                     'profile.json %s' % ('present' if profile else 'missing'))
        if ratio is not None:  # reported, not judged: the runs are tiny
            report.fact('slowfast_profile', dict(ratio, mean=profile['summary']['mean']))
        report.summary = 'demo run: frame mAP %.3g, %.1f clips/s' % (
            judges.number(metrics.get('map')), judges.number(metrics.get('images_per_second')))
    _paper_size(report, options.cpu_smoke)


#: ``paper_size_step``'s arguments on the CPU smoke run: the narrow network, a small clip
#: (the paper's size takes minutes on a CPU).
SMOKE_PAPER_STEP = {'batch': 1, 'n_frames': 8, 'size': 64, 'model': 'slowfast_narrow'}


def _paper_size(report, cpu_smoke):
    try:
        from chainer_yolo_dist.slowfast.memory import paper_size_step
    except ImportError as e:
        report.check('slowfast paper-size step', False, 'slowfast.memory.paper_size_step is '
                     'not importable: %s' % e)
        return
    step = report.fact('paper_size_step', paper_size_step(-1, **SMOKE_PAPER_STEP)
                       if cpu_smoke else paper_size_step(0))
    ok = not step.get('error') and judges.finite(step.get('seconds'))
    gib = (step.get('peak_bytes') or 0) / 2. ** 30
    report.check('slowfast paper-size step', ok, step.get('error') or
                 '%s, %d x %d frames at %d px: %.2f s, peak %.1f GiB, largest column buffer '
                 '%.1f GiB' % (step.get('model'), step.get('batch'), step.get('n_frames'),
                               step.get('size'), step['seconds'], gib,
                               (step.get('column_bytes_max') or 0) / 2. ** 30))
    report.summary = ('%s; paper size: %.2f s per step, peak %.1f GiB'
                      % (report.summary or 'demo run failed',
                         judges.number(step.get('seconds')), gib))


if __name__ == '__main__':
    sys.exit(worker.main({'detection': detection, 'classification': classification,
                          'cyclegan': cyclegan, 'slowfast': slowfast}, description=__doc__))
