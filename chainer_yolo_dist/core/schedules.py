"""Learning-rate rules of the papers: linear scaling, gradual warmup, step/poly decay, burn-in.

Every rule is a pure function of the fractional epoch ``t`` (``trainer.updater.epoch_detail``:
epoch 0 starts at ``t = 0.0``, half way through the first epoch is ``t = 0.5``), so a schedule
needs no state of its own and a run resumed from a snapshot continues it exactly.

The composed rate is ``lr(t) = warmup(t) * decay(t) * burn_in(t)``:

- ``warmup`` (paper 000 sec. 4.1, paper 001 sec. 4.1): ``start`` during the first
  ``hold`` epochs, then linear to ``peak`` at ``warmup_epochs``, ``peak`` afterwards.
  ``hold = 1`` is the papers' wording ("the first epoch at eta, reaching k*eta over about 5
  epochs"); ``hold = 0`` is Goyal et al.'s ramp from epoch 0. When ``peak <= start`` (k = 1, or
  Darknet at k*n <= 256) there is nothing to warm up to and the rate is ``peak`` throughout.
- ``decay``: ``'step'`` multiplies by ``step_factor`` once ``t >= s`` for each ``s`` in ``steps``
  (x0.1 at 60 and 90 in papers 000/001); ``'poly'`` is ``(1 - t' / T') ** power`` (power 2 for
  Darknet53 in paper 001, 4 in YOLO9000). Paper 001 does not say where the polynomial starts.
  Default reading ``poly_from='warmup_end'``: ``t' = t - warmup_epochs``,
  ``T' = total_epochs - warmup_epochs``, so the rate is exactly the paper's peak k*n/256*eta
  when warmup ends and the curve is continuous. ``poly_from='start'`` measures the decay from
  epoch 0 (``t' = t``, ``T' = total_epochs``) and multiplies the warmup ramp onto it, as
  Darknet's own poly policy counts from batch 0. ``'constant'`` disables decay.
  ``'linear'`` (paper 002 appendix A.1.2, Zhu et al.'s CycleGAN schedule): the rate is held
  for ``linear_from`` epochs, then falls linearly to 0 at ``total_epochs``, stepped once per
  epoch as Zhu's ``lambda_rule``: ``1 - max(0, floor(t) + 1 - linear_from) /
  (total_epochs - linear_from + 1)`` (epoch 100 of 200 at 100/101, the last at 1/101).
- ``burn_in`` (Darknet's ``burn_in``, off unless ``burn_in_iterations > 0``):
  ``(iteration / burn_in) ** 4`` for ``iteration < burn_in``, where
  ``iteration = t * iterations_per_epoch`` counts completed updates as Darknet does.
"""
import math

import chainer
from chainer.training import extension

DECAYS = ('step', 'poly', 'constant', 'linear')
POLY_FROM = ('warmup_end', 'start')
# Darknet's `power` default (parser.c), used by its burn-in: lr * (batch / burn_in) ** 4.
BURN_IN_POWER = 4


#: How the rate grows with the global batch: 'linear' (Goyal et al.; the papers' rule) or
#: 'sqrt' (square-root scaling, Krizhevsky 2014 / Hoffer et al. 2017: keeps the variance of
#: the update's noise fixed; not used by the papers, the study's ablation).
SCALINGS = ('linear', 'sqrt')


def scaled_lr(eta, global_batch, reference_batch, scaling='linear'):
    """The rate for ``global_batch`` given ``eta`` at ``reference_batch``.

    ``scaling='linear'`` is the linear scaling rule (Goyal et al.): ``eta * global_batch /
    reference_batch``. Paper 000: reference 16 = n, so lr = k*eta; paper 001 sec. 4.1:
    reference 256, so lr = k*n/256*eta. ``scaling='sqrt'`` is the square-root rule ``eta *
    sqrt(global_batch / reference_batch)`` (sqrt(k)*eta with reference n)."""
    if eta <= 0 or global_batch <= 0 or reference_batch <= 0:
        raise ValueError('scaled_lr needs positive eta, global_batch and reference_batch, got '
                         '%r, %r, %r' % (eta, global_batch, reference_batch))
    if scaling not in SCALINGS:
        raise ValueError('scaled_lr: scaling must be one of %s, got %r' % (SCALINGS, scaling))
    ratio = global_batch / reference_batch
    return eta * (math.sqrt(ratio) if scaling == 'sqrt' else ratio)


def warmup_value(t, start, peak, hold_epochs, warmup_epochs):
    """Gradual warmup at fractional epoch ``t``: ``start`` for ``t < hold_epochs``, linear to
    ``peak`` at ``warmup_epochs``, ``peak`` after. No warmup when ``start`` is None or
    ``peak <= start`` (returns ``peak``)."""
    if start is None or peak <= start or t >= warmup_epochs:
        return peak
    if t < hold_epochs:
        return start
    frac = (t - hold_epochs) / (warmup_epochs - hold_epochs)
    return start + (peak - start) * frac


def step_factor_at(t, steps, factor):
    """``factor ** m`` where m is the number of ``steps`` with ``t >= step``."""
    return factor ** sum(1 for s in steps if t >= s)


def poly_factor_at(t, power, total_epochs, begin=0.0):
    """``(1 - (t - begin) / (total_epochs - begin)) ** power``; 1 before ``begin``, 0 at and
    after ``total_epochs``."""
    if t <= begin:
        return 1.0
    remaining = 1.0 - (t - begin) / (total_epochs - begin)
    return max(remaining, 0.0) ** power


def linear_factor_at(t, begin, total_epochs):
    """Zhu et al.'s linear decay, stepped per epoch: 1 for the epochs before ``begin``, then
    ``1 - (floor(t) + 1 - begin) / (total_epochs - begin + 1)``, never below 0."""
    e = math.floor(t)
    return max(0.0, 1.0 - max(0, e + 1 - begin) / float(total_epochs - begin + 1))


def burn_in_factor_at(iteration, burn_in_iterations, power=BURN_IN_POWER):
    """Darknet's burn-in ``(iteration / burn_in) ** power`` below ``burn_in``, else 1."""
    if burn_in_iterations <= 0 or iteration >= burn_in_iterations:
        return 1.0
    return (iteration / burn_in_iterations) ** power


class LRSchedule:
    """The papers' learning rate as a function of the fractional epoch (see module docstring).

    Args:
        peak_lr (float): rate after warmup, e.g. ``scaled_lr(eta, k * n, reference)``.
        warmup_start_lr (float or None): rate at the start of warmup (the papers' eta);
            None means no warmup.
        warmup_hold_epochs (float): epochs held at ``warmup_start_lr`` before the ramp (1 in the
            papers, 0 for Goyal et al.).
        warmup_epochs (float): epoch at which the ramp reaches ``peak_lr`` (5 in the papers).
        decay (str): 'step', 'poly' or 'constant'.
        steps (tuple of float): epochs of the step decay.
        step_factor (float): multiplier at each step.
        poly_power (float): exponent of the polynomial decay.
        total_epochs (float): end of training; the polynomial reaches 0 there.
        poly_from (str): 'warmup_end' (default) or 'start'; where the polynomial begins.
        burn_in_iterations (int): Darknet burn-in length in iterations (0 = off).
        iterations_per_epoch (float or None): updates per epoch; needed for burn-in.
        linear_from (float): epochs at the full rate before the 'linear' decay begins.
    """

    def __init__(self, peak_lr, warmup_start_lr=None, warmup_hold_epochs=1, warmup_epochs=5,
                 decay='step', steps=(60, 90), step_factor=0.1, poly_power=2,
                 total_epochs=100, poly_from='warmup_end', burn_in_iterations=0,
                 iterations_per_epoch=None, linear_from=0):
        if not peak_lr > 0:
            raise ValueError('LRSchedule: peak_lr must be positive, got %r' % (peak_lr,))
        if warmup_start_lr is not None and not warmup_start_lr > 0:
            raise ValueError('LRSchedule: warmup_start_lr must be positive or None, got %r'
                             % (warmup_start_lr,))
        if not 0 <= warmup_hold_epochs <= warmup_epochs:
            raise ValueError('LRSchedule: need 0 <= warmup_hold_epochs <= warmup_epochs, got '
                             '%r and %r' % (warmup_hold_epochs, warmup_epochs))
        if warmup_start_lr is not None and warmup_hold_epochs == warmup_epochs \
                and warmup_epochs > 0:
            raise ValueError('LRSchedule: warmup_hold_epochs == warmup_epochs leaves no ramp')
        if decay not in DECAYS:
            raise ValueError('LRSchedule: decay must be one of %s, got %r' % (DECAYS, decay))
        if poly_from not in POLY_FROM:
            raise ValueError('LRSchedule: poly_from must be one of %s, got %r'
                             % (POLY_FROM, poly_from))
        steps = tuple(float(s) for s in steps)
        if list(steps) != sorted(steps):
            raise ValueError('LRSchedule: steps must be increasing, got %r' % (steps,))
        if decay == 'step' and not 0 < step_factor:
            raise ValueError('LRSchedule: step_factor must be positive, got %r' % (step_factor,))
        if decay == 'poly':
            begin = warmup_epochs if poly_from == 'warmup_end' else 0
            if not total_epochs > begin:
                raise ValueError('LRSchedule: total_epochs (%r) must exceed the start of the '
                                 'polynomial decay (%r)' % (total_epochs, begin))
            if not poly_power > 0:
                raise ValueError('LRSchedule: poly_power must be positive, got %r'
                                 % (poly_power,))
        if decay == 'linear' and not 0 <= linear_from < total_epochs:
            raise ValueError('LRSchedule: the linear decay must start (linear_from %r) in '
                             '[0, total_epochs %r)' % (linear_from, total_epochs))
        if burn_in_iterations < 0:
            raise ValueError('LRSchedule: burn_in_iterations must be >= 0')
        if burn_in_iterations > 0 and not (iterations_per_epoch and iterations_per_epoch > 0):
            raise ValueError('LRSchedule: burn_in_iterations needs a positive '
                             'iterations_per_epoch to convert epochs to iterations')
        self.peak_lr = float(peak_lr)
        self.warmup_start_lr = None if warmup_start_lr is None else float(warmup_start_lr)
        self.warmup_hold_epochs = float(warmup_hold_epochs)
        self.warmup_epochs = float(warmup_epochs)
        self.decay = decay
        self.steps = steps
        self.step_factor = float(step_factor)
        self.poly_power = float(poly_power)
        self.total_epochs = float(total_epochs)
        self.poly_from = poly_from
        self.burn_in_iterations = int(burn_in_iterations)
        self.iterations_per_epoch = iterations_per_epoch
        self.linear_from = float(linear_from)

    def decay_factor(self, t):
        """Multiplier of the decay rule at fractional epoch ``t``."""
        if self.decay == 'step':
            return step_factor_at(t, self.steps, self.step_factor)
        if self.decay == 'poly':
            begin = self.warmup_epochs if self.poly_from == 'warmup_end' else 0.0
            return poly_factor_at(t, self.poly_power, self.total_epochs, begin)
        if self.decay == 'linear':
            return linear_factor_at(t, self.linear_from, self.total_epochs)
        return 1.0

    def __call__(self, t):
        """Learning rate (float) at fractional epoch ``t >= 0``."""
        t = float(t)
        if not t >= 0 or math.isinf(t):
            raise ValueError('LRSchedule: epoch must be finite and >= 0, got %r' % (t,))
        lr = warmup_value(t, self.warmup_start_lr, self.peak_lr, self.warmup_hold_epochs,
                          self.warmup_epochs)
        lr *= self.decay_factor(t)
        if self.burn_in_iterations:
            lr *= burn_in_factor_at(t * self.iterations_per_epoch, self.burn_in_iterations)
        return lr

    def __repr__(self):
        return ('LRSchedule(peak_lr=%g, warmup_start_lr=%r, warmup_hold_epochs=%g, '
                'warmup_epochs=%g, decay=%r, steps=%r, step_factor=%g, poly_power=%g, '
                'total_epochs=%g, poly_from=%r, burn_in_iterations=%d, '
                'iterations_per_epoch=%r%s)' % (
                    self.peak_lr, self.warmup_start_lr, self.warmup_hold_epochs,
                    self.warmup_epochs, self.decay, self.steps, self.step_factor,
                    self.poly_power, self.total_epochs, self.poly_from,
                    self.burn_in_iterations, self.iterations_per_epoch,
                    # only where it matters, so the other schedules' repr is unchanged
                    ', linear_from=%g' % self.linear_from if self.decay == 'linear' else ''))


class LRScheduleExtension(extension.Extension):
    """Trainer extension: sets ``optimizer.<attr>`` to ``schedule(updater.epoch_detail)``.

    Like ChainerCV's ``make_shift``, ``initialize`` sets the rate too, so the first update
    (and the first update after ``--resume``, once the snapshot has restored the updater and
    its iterator) uses the scheduled rate. The extension holds no state: the epoch position
    is serialized with the updater, so resuming continues the schedule exactly.

    Chainer calls extensions after each update, so ``__call__`` first reports the rate that
    update used as ``lr`` in ``trainer.observation`` (LogReport averages it), then sets the rate
    for the next update from the new ``epoch_detail``. ``PRIORITY_WRITER`` runs it before
    readers such as LogReport.

    Args:
        schedule (callable): fractional epoch -> learning rate, e.g. ``LRSchedule``.
        optimizer (chainer.Optimizer or None): target; the updater's 'main' one if None.
        attr (str): optimizer attribute to set ('lr' for MomentumSGD).
    """

    trigger = 1, 'iteration'
    priority = extension.PRIORITY_WRITER
    name = 'lr_schedule'

    def __init__(self, schedule, optimizer=None, attr='lr'):
        self._schedule = schedule
        self._optimizer = optimizer
        self._attr = attr

    def _target(self, trainer):
        return self._optimizer or trainer.updater.get_optimizer('main')

    def _apply(self, trainer):
        value = self._schedule(trainer.updater.epoch_detail)
        setattr(self._target(trainer), self._attr, value)
        return value

    def initialize(self, trainer):
        self._apply(trainer)

    def __call__(self, trainer):
        used = getattr(self._target(trainer), self._attr)
        chainer.reporter.report({'lr': used})
        self._apply(trainer)


class MultiOptimizerSchedule(extension.Extension):
    """Trainer extension: sets ``attr`` of several optimizers to ``factor * schedule(t)``.

    For updaters with one optimizer per network (e.g. generators and discriminators, each
    with its own rate: ``factors = {'gen': 1.0, 'dis': 0.5}``). Behaves as
    :class:`LRScheduleExtension`: sets the rates in ``initialize`` (the first update, and the
    first after a resume), and after each update reports the base rate that update used as
    ``lr`` (``schedule(t)``, before the factors) and sets the next. Holds no state.

    Args:
        schedule (callable): fractional epoch -> base rate.
        factors (dict): optimizer name (as the updater knows it) -> multiplier.
        attr (str): the attribute to set ('alpha' for Adam, 'lr' for SGD).
    """

    trigger = 1, 'iteration'
    priority = extension.PRIORITY_WRITER
    name = 'lr_schedule'

    def __init__(self, schedule, factors, attr='lr'):
        if not factors:
            raise ValueError('MultiOptimizerSchedule needs at least one optimizer')
        self._schedule, self._factors, self._attr = schedule, dict(factors), attr
        self._used = None

    def _apply(self, trainer):
        base = self._schedule(trainer.updater.epoch_detail)
        for name, factor in self._factors.items():
            setattr(trainer.updater.get_optimizer(name), self._attr, factor * base)
        self._used = base

    def initialize(self, trainer):
        self._apply(trainer)

    def __call__(self, trainer):
        chainer.reporter.report({'lr': self._used})
        self._apply(trainer)


def batch_fraction_check(global_batch, n_train, warn_above=0.07):
    """Share of the training set in one global batch, and a warning past the papers' limit.

    Paper 000 (secs. 5.2.1 and 6) found the linear scaling rule held while n*k stayed under
    about 7% of the training set; paper 001 (secs. 5.3.1 and 6) saw the limit near 9%.

    Returns:
        (fraction, message): ``global_batch / n_train`` and a warning string when the fraction
        is above ``warn_above``, else None.
    """
    if global_batch <= 0 or n_train <= 0:
        raise ValueError('batch_fraction_check needs positive global_batch and n_train, got '
                         '%r and %r' % (global_batch, n_train))
    fraction = global_batch / n_train
    if fraction <= warn_above:
        return fraction, None
    message = ('global batch {:,} is {:.1f}% of the {:,} training samples, above the {:.1f}% '
               'threshold: paper 000 (secs. 5.2.1, 6) found the linear scaling rule held only '
               'below about 7% of the training set, paper 001 (secs. 5.3.1, 6) near 9%; expect '
               'lower accuracy'.format(global_batch, 100 * fraction, n_train, 100 * warn_above))
    return fraction, message
