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
import chainer
from chainer import reporter
from chainer.dataset import convert


class DataParallelUpdater(chainer.training.updaters.StandardUpdater):
    """``StandardUpdater`` over ``V = len(iterators)`` workers' iterators (``V = 1``: exactly
    Chainer's update); sets ``target.iteration`` to the number of the update being computed
    (1 for the first), so a loss that refuses a non-finite value names it.

    Args:
        iterators (list): one iterator per worker of this process; the first is 'main' (its
            epoch is the run's epoch; all have equal lengths).
        optimizer: the (multi-node) optimizer.
    """

    def __init__(self, iterators, optimizer, converter, device):
        named = {'main': iterators[0]}
        named.update(('worker%d' % v, it) for v, it in enumerate(iterators[1:], 1))
        super().__init__(named, optimizer, converter=converter, device=device)
        self.virtual_ranks = len(iterators)

    def update_core(self):
        optimizer = self.get_optimizer('main')
        target = optimizer.target
        target.iteration = self.iteration + 1
        if self.virtual_ranks == 1:
            super().update_core()
            return
        names = ['main'] + ['worker%d' % v for v in range(1, self.virtual_ranks)]
        target.cleargrads()
        observations = []
        for name in names:
            batch = self._iterators[name].next()
            in_arrays = convert._call_converter(self.converter, batch, self.device)
            observation = {}
            with reporter.report_scope(observation):
                loss = target(*in_arrays)
            loss.backward()  # gradients accumulate over the workers' batches
            del loss
            observations.append(observation)
        for param in target.params():
            if param.grad is not None:
                param.grad /= self.virtual_ranks
        optimizer.update()  # ChainerMN: the mean over the ranks, then the update
        # What the workers reported, averaged as real ranks' values are.
        reporter.report({key: sum(o[key] for o in observations) / len(observations)
                         for key in observations[0]})
