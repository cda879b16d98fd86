"""Exact validation accuracy over the whole validation set, computed across ranks.

The validation set is split across the ranks *without* padding
(:func:`~chainer_yolo_dist.core.sharding.scatter_validation`), and each rank reports its sum
over its examples divided by ``n_val / comm.size`` (:class:`ShardEvaluator`), so ChainerMN's
multi-node evaluator, which averages the ranks' results with equal weights, returns the mean
over the ``n_val`` examples: the number one process gets for the same model.
(ChainerMN's evaluator alone would weight a short last share like a full one.)
"""
import chainer
from chainer import reporter as reporter_module
from chainer.training import extensions

from chainer_yolo_dist.core import iterators, sharding
from chainer_yolo_dist.core.persistents import mean_persistents
from chainer_yolo_dist.classification.chain import converter
from chainer_yolo_dist.classification.transforms import CenterCrop


class ShardEvaluator(extensions.Evaluator):
    """Evaluator over one rank's share of a validation set of ``n_total`` examples.

    Every value the target reports must be a mean over the batch (loss, accuracy, top-5).
    :meth:`evaluate` returns, per key, ``sum over this rank's examples / (n_total /
    n_ranks)``: averaged with equal weights over the ranks by
    ``chainermn.create_multi_node_evaluator`` this is exactly the mean over all ``n_total``
    examples, whatever the shares' sizes and the last batch's size.

    :attr:`last_result` and :attr:`last_iteration` keep the latest result, so the final
    metrics reuse an evaluation that happened at the last iteration.
    """

    def __init__(self, iterator, target, n_total, n_ranks, **kwargs):
        super().__init__(iterator, target, **kwargs)
        self.n_total = n_total
        self.n_ranks = n_ranks
        self.last_result = None
        self.last_iteration = None

    def evaluate(self):
        iterator = self._iterators['main']
        target = self.eval_func or self._targets['main']
        if self.eval_hook:
            self.eval_hook(self)
        iterator.reset()
        sums = {}
        for batch in iterator:
            observation = {}
            with reporter_module.report_scope(observation):
                x, t = self.converter(batch, self.device)
                with chainer.no_backprop_mode():
                    target(x, t)
            for key, value in observation.items():
                sums[key] = sums.get(key, 0.0) + float(value) * len(batch)
        share = self.n_total / self.n_ranks
        return {key: value / share for key, value in sums.items()}

    def __call__(self, trainer=None):
        result = super().__call__(trainer)
        self.last_result = {k: float(v) for k, v in result.items()}
        self.last_iteration = trainer.updater.iteration if trainer is not None else None
        return result


def validator(chain, model, test, settings, comm):
    """A multi-node evaluator of ``chain`` on ``test``, centre-cropped at the preset's input
    size; batch-normalisation statistics are averaged across ranks first, so every rank
    predicts with the same model. Reports ``validation/main/{loss,accuracy,top5}``."""
    import chainermn
    val = chainer.datasets.TransformDataset(
        sharding.subset(test, sharding.scatter_validation(len(test), comm)),
        CenterCrop(settings.preset.insize))
    evaluator = ShardEvaluator(
        iterators.eval_iterator(val, settings.eval_batchsize, settings.loaderjob), chain,
        len(test), comm.size, converter=converter, device=settings.device,
        eval_hook=lambda _: mean_persistents(comm, model))
    evaluator.name = 'validation'  # the keys' prefix, also outside the trainer
    return chainermn.create_multi_node_evaluator(evaluator, comm)
