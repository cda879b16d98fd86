"""The lr rule 'constant', the 'linear' decay and the multi-optimizer schedule (paper 002)."""
import chainer
import pytest

from chainer_yolo_dist.core import presets
from chainer_yolo_dist.core.schedules import LRSchedule, MultiOptimizerSchedule
from chainer_yolo_dist.cyclegan.updater import linear_decay


def test_constant_rule_keeps_eta_at_every_process_count():
    for k in (1, 4, 64, 512):
        p = presets.load('cyclegan_synthia2bdd_2019', k)
        assert p.peak_lr == pytest.approx(2e-4) and p.warmup_start_lr == pytest.approx(2e-4)
    assert presets.LR_RULE_FORMULAS['constant'] == 'η'
    # 512 x 1 is 10.6 % of 4,822 pairs, but no linear scaling rule is in force to warn about
    assert presets.load('cyclegan_synthia2bdd_2019', 512).batch_fraction_check()[1] is None
    assert presets.load('yolov2_voc_2018', 512).batch_fraction_check()[1] is not None


def test_paper_preset_draws_scale_d_over_n_per_rank():
    for k, per_epoch in ((4, 4822), (64, 302), (128, 151), (256, 76), (512, 38)):
        p = presets.load('cyclegan_synthia2bdd_2019', k)
        assert p.published_gpus == (4, 64, 128, 256, 512)
        assert p.iterations_per_epoch == per_epoch  # batch 1: draws = updates


def test_linear_decay_is_zhu_s_lambda_rule():
    schedule = LRSchedule(2e-4, decay='linear', linear_from=100, total_epochs=200,
                          warmup_epochs=0, warmup_hold_epochs=0)
    for epoch in range(0, 201):
        for t in (epoch, epoch + 0.5):
            assert schedule(t) == pytest.approx(2e-4 * linear_decay(t)), t
    assert schedule(99.9) == pytest.approx(2e-4)
    assert schedule(100) == pytest.approx(2e-4 * 100 / 101)
    assert schedule(199.5) == pytest.approx(2e-4 / 101)
    assert schedule(200) == 0.0
    assert 'linear_from=100' in repr(schedule)


def test_linear_decay_needs_its_start_inside_the_run():
    with pytest.raises(ValueError):
        LRSchedule(1.0, decay='linear', linear_from=5, total_epochs=5)


def test_presets_without_the_new_keys_are_unchanged():
    p = presets.load('yolov2_voc_2018', 8)
    assert p.linear_from == 0 and p.sampling_scale is None
    assert 'linear_from' not in repr(p.schedule())


class _Updater(object):
    epoch_detail = 0.0

    def __init__(self, optimizers):
        self.optimizers = optimizers

    def get_optimizer(self, name):
        return self.optimizers[name]


def test_multi_optimizer_schedule_sets_alpha_with_each_factor_and_reports_the_base_rate():
    link = chainer.links.Linear(2, 2)
    opts = {}
    for name in ('gen', 'dis'):
        opts[name] = chainer.optimizers.Adam()
        opts[name].setup(link)
    trainer = type('T', (), {})()
    trainer.updater = _Updater(opts)
    ext = MultiOptimizerSchedule(lambda t: 1e-3 * (1 - t / 10.), {'gen': 1.0, 'dis': 0.5},
                                 attr='alpha')
    ext.initialize(trainer)
    assert opts['gen'].alpha == pytest.approx(1e-3) and opts['dis'].alpha == pytest.approx(5e-4)
    trainer.updater.epoch_detail = 5.0
    observation = {}
    with chainer.reporter.Reporter().scope(observation):
        ext(trainer)
    assert observation['lr'] == pytest.approx(1e-3)  # the rate the last update used
    assert opts['gen'].alpha == pytest.approx(5e-4) and opts['dis'].alpha == pytest.approx(2.5e-4)
