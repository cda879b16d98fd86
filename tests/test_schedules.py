"""Learning-rate rules: linear scaling, gradual warmup, step/poly decay, burn-in, the trainer
extension (including resume from a snapshot) and the batch-fraction guard."""
import os

import numpy as np
import pytest

import chainer
import chainer.links as L
from chainer import training
from chainer.training import extensions

from chainer_yolo_dist.core.schedules import (LRSchedule, LRScheduleExtension,
                                              batch_fraction_check, burn_in_factor_at,
                                              poly_factor_at, scaled_lr, step_factor_at,
                                              warmup_value)

approx = pytest.approx


# --- linear scaling -------------------------------------------------------------------------

def test_scaled_lr_is_proportional_to_the_global_batch():
    assert scaled_lr(1e-4, 16 * 16, 16) == approx(0.0016)      # paper 000, k = 16
    assert scaled_lr(0.1, 256 * 32, 256) == approx(3.2)        # paper 001, k = 256
    assert scaled_lr(0.001, 8 * 16, 1) == approx(0.128)        # k*n*eta literally, k = 8


def test_square_root_scaling_grows_the_rate_as_the_root_of_the_batch():
    # Not the papers' rule: the scaling study's ablation. k = 32 workers of n = 8.
    assert scaled_lr(0.0025, 8 * 32, 8, 'sqrt') == approx(0.0025 * 32 ** 0.5)
    assert scaled_lr(0.0025, 8 * 4, 8, 'sqrt') == approx(0.005)
    assert scaled_lr(0.0025, 8, 8, 'sqrt') == approx(0.0025)   # k = 1: eta either way
    assert scaled_lr(0.0025, 8 * 4, 8, 'linear') == approx(0.01)
    with pytest.raises(ValueError, match='scaling'):
        scaled_lr(0.0025, 32, 8, 'cube')


@pytest.mark.parametrize('args', [(0, 16, 16), (1e-3, 0, 16), (1e-3, 16, 0), (-1, 16, 16)])
def test_scaled_lr_rejects_non_positive_arguments(args):
    with pytest.raises(ValueError, match='positive'):
        scaled_lr(*args)


# --- warmup ---------------------------------------------------------------------------------

def test_papers_warmup_holds_eta_for_one_epoch_then_rises_linearly_to_the_peak_at_epoch_5():
    s = LRSchedule(1.6, warmup_start_lr=0.1, warmup_hold_epochs=1, warmup_epochs=5,
                   decay='constant')
    assert s(0) == 0.1
    assert s(0.5) == 0.1
    assert s(0.999) == 0.1
    assert s(1) == approx(0.1)
    assert s(2) == approx(0.1 + 1.5 * 0.25)
    assert s(3) == approx(0.85)
    assert s(4.9) == approx(0.1 + 1.5 * 3.9 / 4)
    assert s(5) == approx(1.6)
    assert s(7) == approx(1.6)


def test_goyal_warmup_rises_from_epoch_0():
    s = LRSchedule(1.6, warmup_start_lr=0.1, warmup_hold_epochs=0, warmup_epochs=5,
                   decay='constant')
    assert s(0) == approx(0.1)
    assert s(0.5) == approx(0.1 + 1.5 * 0.1)
    assert s(2.5) == approx(0.85)
    assert s(5) == approx(1.6)


def test_no_warmup_when_the_peak_is_not_above_the_start():
    # k = 1: peak == eta; Darknet at k*n < 256: peak below eta. The rate is the peak throughout.
    for peak in (0.1, 0.0125):
        s = LRSchedule(peak, warmup_start_lr=0.1, decay='constant')
        assert [s(t) for t in (0, 0.5, 3, 5, 50)] == [peak] * 5
    assert LRSchedule(0.5, warmup_start_lr=None, decay='constant')(0) == 0.5


def test_warmup_value_piece():
    assert warmup_value(0.5, 1.0, 3.0, 1, 5) == 1.0
    assert warmup_value(3.0, 1.0, 3.0, 1, 5) == approx(2.0)
    assert warmup_value(9.0, 1.0, 3.0, 1, 5) == 3.0
    assert warmup_value(0.0, None, 3.0, 1, 5) == 3.0


# --- step decay -----------------------------------------------------------------------------

def test_step_decay_multiplies_by_the_factor_from_each_step_epoch_on():
    s = LRSchedule(0.0016, warmup_start_lr=1e-4, steps=(60, 90), step_factor=0.1)
    assert s(59.999) == approx(0.0016)
    assert s(60) == approx(0.00016)
    assert s(89.999) == approx(0.00016)
    assert s(90) == approx(0.000016)
    assert s(99.99) == approx(0.000016)
    assert step_factor_at(90, (60, 90), 0.5) == 0.25


# --- polynomial decay -----------------------------------------------------------------------

def test_poly_from_warmup_end_starts_at_the_peak_and_reaches_zero_at_the_end():
    s = LRSchedule(3.2, warmup_start_lr=0.1, decay='poly', poly_power=2, total_epochs=200)
    assert s(5) == approx(3.2)
    assert s(5.0001) == approx(3.2, rel=1e-4)                  # continuous at warmup end
    # t' = 102.5 - 5 = 97.5 of T' = 195: (1 - 0.5) ** 2 = 0.25.
    assert s(102.5) == approx(0.8)
    # t' = 44, T' = 195: (151 / 195) ** 2.
    assert s(49) == approx(3.2 * (151 / 195) ** 2)
    assert s(200) == 0.0
    assert s(250) == 0.0


def test_poly_from_start_measures_decay_from_epoch_0_and_multiplies_the_warmup_onto_it():
    s = LRSchedule(3.2, warmup_start_lr=0.1, decay='poly', poly_power=2, total_epochs=200,
                   poly_from='start')
    assert s(0.5) == approx(0.1 * (1 - 0.5 / 200) ** 2)
    assert s(3) == approx((0.1 + 3.1 * 0.5) * (1 - 3 / 200) ** 2)
    assert s(5) == approx(3.2 * (1 - 5 / 200) ** 2)            # below the paper's peak
    assert s(100) == approx(0.8)
    assert s(200) == 0.0


def test_poly_factor_piece():
    assert poly_factor_at(0, 4, 160) == 1.0
    assert poly_factor_at(80, 4, 160) == approx(0.0625)
    assert poly_factor_at(3, 2, 10, begin=5) == 1.0


# --- burn-in --------------------------------------------------------------------------------

def test_darknet_burn_in_is_a_fourth_power_ramp_over_iterations():
    s = LRSchedule(0.001, decay='constant', burn_in_iterations=1000, iterations_per_epoch=100)
    assert s(0) == 0.0
    assert s(5) == approx(0.001 * 0.5 ** 4)                    # iteration 500
    assert s(10) == approx(0.001)
    assert s(20) == approx(0.001)
    assert burn_in_factor_at(250, 1000) == approx(0.25 ** 4)


def test_burn_in_needs_iterations_per_epoch():
    with pytest.raises(ValueError, match='iterations_per_epoch'):
        LRSchedule(0.001, burn_in_iterations=1000)


# --- argument checks ------------------------------------------------------------------------

@pytest.mark.parametrize('kwargs, match', [
    (dict(peak_lr=0), 'peak_lr'),
    (dict(peak_lr=1, decay='cosine'), 'decay'),
    (dict(peak_lr=1, steps=(90, 60)), 'increasing'),
    (dict(peak_lr=1, warmup_hold_epochs=6, warmup_epochs=5), 'warmup_hold_epochs'),
    (dict(peak_lr=1, decay='poly', total_epochs=5, warmup_epochs=5), 'total_epochs'),
    (dict(peak_lr=1, decay='poly', poly_from='middle'), 'poly_from'),
    (dict(peak_lr=1, warmup_start_lr=-1), 'warmup_start_lr'),
])
def test_inconsistent_schedules_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LRSchedule(**kwargs)


def test_negative_epoch_is_rejected():
    with pytest.raises(ValueError, match='epoch'):
        LRSchedule(1.0)(-0.1)


# --- batch fraction guard -------------------------------------------------------------------

@pytest.mark.parametrize('batch, n_train, printed, warns', [
    (1024, 16551, '6.2', False),    # paper 000 sec. 5.2.1, VOC k = 64
    (2048, 16551, '12.4', True),    # paper 000 sec. 5.2.1, VOC k = 128
    (256, 4797, '5.3', False),      # paper 000 sec. 5.2.1, Filmrole k = 16
    (512, 4797, '10.7', True),      # paper 000 sec. 5.2.1, Filmrole k = 32
    (1536, 16551, '9.3', True),     # paper 001 sec. 5.3.1, k = 96
])
def test_batch_fraction_matches_the_papers_printed_percentages(batch, n_train, printed, warns):
    fraction, message = batch_fraction_check(batch, n_train)
    assert '%.1f' % (100 * fraction) == printed
    assert (message is not None) == warns
    if warns:
        assert printed + '%' in message and '7.0%' in message and 'paper 000' in message


def test_batch_fraction_threshold_is_adjustable():
    fraction, message = batch_fraction_check(1536, 16551, warn_above=0.095)
    assert message is None and fraction == approx(0.0928, abs=1e-4)
    with pytest.raises(ValueError, match='positive'):
        batch_fraction_check(16, 0)


# --- trainer extension ----------------------------------------------------------------------

N_DATA, BATCH = 10, 4      # 2.5 iterations per epoch: epoch_detail after i updates = 0.4 * i
SCHEDULE = LRSchedule(0.16, warmup_start_lr=0.01, warmup_hold_epochs=1, warmup_epochs=5,
                      decay='step', steps=(5.5,), step_factor=0.1)
STOP = (6, 'epoch')        # 15 updates: hold, ramp, peak and one step


class _Recorder:
    """Optimizer pre-update hook: the rate each update actually uses."""
    name = 'recorder'
    call_for_each_param = False
    timing = 'pre'

    def __init__(self):
        self.lrs = []

    def __call__(self, optimizer):
        self.lrs.append(optimizer.lr)


def _trainer(out, stop=STOP, snapshot_at=None):
    rng = np.random.RandomState(0)
    x = rng.rand(N_DATA, 3).astype(np.float32)
    y = rng.rand(N_DATA, 1).astype(np.float32)
    dataset = chainer.datasets.TupleDataset(x, y)
    model = L.Classifier(L.Linear(3, 1), lossfun=chainer.functions.mean_squared_error)
    model.compute_accuracy = False
    # A wrong initial rate: initialize() must overwrite it before the first update.
    optimizer = chainer.optimizers.MomentumSGD(lr=123.0)
    optimizer.setup(model)
    recorder = _Recorder()
    optimizer.add_hook(recorder)
    it = chainer.iterators.SerialIterator(dataset, BATCH, shuffle=False)
    updater = training.updaters.StandardUpdater(it, optimizer)
    trainer = training.Trainer(updater, stop, out=out)
    trainer.extend(LRScheduleExtension(SCHEDULE))
    trainer.extend(extensions.LogReport(trigger=(1, 'iteration'), log_name='log'))
    if snapshot_at is not None:
        trainer.extend(extensions.snapshot(filename='snap'), trigger=(snapshot_at, 'iteration'))
    return trainer, recorder


def _expected(first, last):
    return [SCHEDULE(i * BATCH / N_DATA) for i in range(first, last)]


def test_extension_sets_the_rate_before_every_update_and_logs_it(tmp_path):
    trainer, recorder = _trainer(str(tmp_path))
    trainer.run()
    n_updates = trainer.updater.iteration
    assert n_updates == 15
    assert recorder.lrs == approx(_expected(0, n_updates))
    # The schedule passes through hold, ramp, peak and step within these 15 updates.
    assert recorder.lrs[0] == 0.01 and max(recorder.lrs) == approx(0.16)
    assert recorder.lrs[-1] == approx(0.016)
    logged = [entry['lr'] for entry in trainer.get_extension('LogReport').log]
    assert logged == approx(recorder.lrs)


def test_resume_mid_warmup_continues_the_same_rate_sequence(tmp_path):
    full, full_rec = _trainer(str(tmp_path / 'full'))
    full.run()

    # Snapshot after 4 updates: epoch 1.6, inside the linear ramp.
    first, _ = _trainer(str(tmp_path / 'first'), stop=(4, 'iteration'), snapshot_at=4)
    first.run()
    snap = os.path.join(str(tmp_path / 'first'), 'snap')
    assert first.updater.iteration == 4 and os.path.exists(snap)

    resumed, resumed_rec = _trainer(str(tmp_path / 'resumed'))
    chainer.serializers.load_npz(snap, resumed)
    assert resumed.updater.epoch_detail == approx(1.6)
    resumed.run()
    assert resumed_rec.lrs[0] == approx(SCHEDULE(1.6))
    assert 0.01 < resumed_rec.lrs[0] < 0.16
    assert resumed_rec.lrs == approx(full_rec.lrs[4:])
