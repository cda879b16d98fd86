"""The updater: one process acting as ``V`` data-parallel workers (virtual ranks).

The papers' experiment grows the number of GPUs k with the per-GPU batch n fixed. On a machine
with fewer cores than k, each MPI process can act as ``V`` workers: per iteration it draws one
batch of n from each of its ``V`` workers' shares, runs forward and backward on each batch
separately (so batch normalisation sees n examples, exactly as on one GPU), and averages their
gradients; ChainerMN then averages over the real ranks. With every worker's loss a mean over
its n examples, the update equals that of ``k = ranks * V`` real ranks on the same shares.

What differs from real ranks: batch-normalisation running statistics (used only for
evaluation) are updated V times per iteration in one process, where real ranks keep their own
(the package averages them across ranks before evaluation and snapshots).
"""
import time

import chainer
from chainer import reporter
from chainer.dataset import convert

#: The phases of one update, in order, as the profile reports them (``time/<phase>``, seconds).
PHASES = ('data', 'forward', 'backward', 'allreduce', 'update')


class PhaseClock(object):
    """Wall time of consecutive phases: ``mark(phase)`` adds the time since the previous mark
    to ``phase``. On a GPU it first waits for the device, so that a phase's time is that of
    its kernels, not of their launch (without the wait, backward's kernels finish inside the
    AllReduce's time and the AllReduce's inside the next batch's).

    Args:
        device: the updater's device: a Chainer device object (what ``StandardUpdater``
            stores), a GPU id (>= 0), or -1 / None for the CPU.
    """

    def __init__(self, device=-1):
        self.sync = device_synchronizer(device)
        self.times = dict.fromkeys(PHASES, 0.)
        self.last = time.perf_counter()

    def mark(self, phase):
        if self.sync is not None:
            self.sync()
        now = time.perf_counter()
        self.times[phase] += now - self.last
        self.last = now


def device_synchronizer(device):
    """A callable that waits for every kernel queued on ``device``, or None on the CPU.

    ``device`` is a Chainer device (a ``GpuDevice`` holds its ``cupy.cuda.Device`` as
    ``.device``; a ``CpuDevice`` has none), a GPU id, or -1 / None.
    """
    if device is None:
        return None
    if isinstance(device, int):
        if device < 0:
            return None
        from chainer.backends import cuda
        return cuda.cupy.cuda.Device(device).synchronize
    return getattr(getattr(device, 'device', None), 'synchronize', None)


def _call(target, in_arrays):
    if isinstance(in_arrays, tuple):
        return target(*in_arrays)
    if isinstance(in_arrays, dict):
        return target(**in_arrays)
    return target(in_arrays)


def timed_optimizer_update(optimizer, target, clock):
    """``optimizer.update()`` with its AllReduce and its parameter update timed apart.

    For ChainerMN's multi-node optimizer this does what its ``update()`` does (chainermn 7.8.1
    ``_MultiNodeOptimizer.update``): broadcast if the parameter set changed, else the mean of
    the gradients over the ranks, then the wrapped optimizer's update. Any other optimizer
    (one process, double buffering) is timed as one ``update``.
    """
    if type(optimizer).__name__ != '_MultiNodeOptimizer':
        optimizer.update()
        clock.mark('update')
        return
    if optimizer.is_changed(target):
        optimizer.communicator.bcast_data(target)
        clock.mark('allreduce')
        return
    optimizer.communicator.multi_node_mean_grad(target, optimizer.zero_fill)
    clock.mark('allreduce')
    optimizer.actual_optimizer.update()
    clock.mark('update')


class DataParallelUpdater(chainer.training.updaters.StandardUpdater):
    """``StandardUpdater`` over ``V = len(iterators)`` workers' iterators (``V = 1``: exactly
    Chainer's update); sets ``target.iteration`` to the number of the update being computed
    (1 for the first), so a loss that refuses a non-finite value names it.

    Args:
        iterators (list): one iterator per worker of this process; the first is 'main' (its
            epoch is the run's epoch; all have equal lengths).
        optimizer: the (multi-node) optimizer.
        profile (bool): time each update's phases (:data:`PHASES`: waiting for the batch and
            sending it to the device, forward, backward, the gradients' AllReduce, the
            parameter update) and report them as ``time/<phase>`` (seconds, this rank's), with
            ``time/step`` their sum. The update computed is the same.
    """

    def __init__(self, iterators, optimizer, converter, device, profile=False):
        named = {'main': iterators[0]}
        named.update(('worker%d' % v, it) for v, it in enumerate(iterators[1:], 1))
        super().__init__(named, optimizer, converter=converter, device=device)
        self.virtual_ranks = len(iterators)
        self.profile = profile

    def update_core(self):
        optimizer = self.get_optimizer('main')
        target = optimizer.target
        target.iteration = self.iteration + 1
        if self.virtual_ranks == 1 and not self.profile:
            super().update_core()  # exactly Chainer's update
            return
        clock = PhaseClock(self.device)
        names = ['main'] + ['worker%d' % v for v in range(1, self.virtual_ranks)]
        target.cleargrads()
        observations = []
        for name in names:
            batch = self._iterators[name].next()
            in_arrays = convert._call_converter(self.converter, batch, self.device)
            clock.mark('data')
            observation = {}
            if self.virtual_ranks == 1:
                loss = _call(target, in_arrays)  # reported straight to the trainer's scope
            else:
                with reporter.report_scope(observation):
                    loss = _call(target, in_arrays)
            clock.mark('forward')
            # Accumulates over the workers; the parameter-server optimizer has no loss scale.
            loss.backward(loss_scale=getattr(optimizer, '_loss_scale', None))
            del loss
            observations.append(observation)
            clock.mark('backward')
        if self.virtual_ranks > 1:
            for param in target.params():
                if param.grad is not None:
                    param.grad /= self.virtual_ranks
            # What the workers reported, averaged as real ranks' values are.
            reporter.report({key: sum(o[key] for o in observations) / len(observations)
                             for key in observations[0]})
            clock.mark('backward')
        if not self.profile:
            optimizer.update()  # ChainerMN: the mean over the ranks, then the update
            return
        timed_optimizer_update(optimizer, target, clock)
        times = {'time/' + phase: value for phase, value in clock.times.items()}
        times['time/step'] = sum(clock.times.values())
        reporter.report(times)
