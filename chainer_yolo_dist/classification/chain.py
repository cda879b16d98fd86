"""The classification training chain: softmax cross-entropy, top-1 and top-5 accuracy."""
import chainer
import chainer.functions as F
import chainer.links as L
import numpy as np
from chainer import reporter as reporter_module
from chainer.dataset import convert

from chainer_yolo_dist.core import finite
from chainer_yolo_dist.core.devices import images_to_device

#: The second accuracy reported next to top-1 (paper 003 reports a top-5 error).
TOP_K = 5


def top_k_accuracy(y, t, k=TOP_K):
    """Fraction of rows whose true class is among the ``k`` highest scores.

    Args:
        y: ``(N, C)`` scores (logits or probabilities), array or Variable.
        t: ``(N,)`` int32 true classes.
        k (int): with ``k >= C`` every row counts as correct.
    Returns:
        float.
    """
    y = getattr(y, 'array', y)
    xp = chainer.backend.get_array_module(y)
    k = min(k, y.shape[1])
    # The true class is in the top k iff fewer than k classes score strictly higher.
    true_score = y[xp.arange(len(t)), t]
    higher = (y > true_score[:, None]).sum(axis=1)
    return float((higher < k).mean())


class ClassifierChain(L.Classifier):
    """``chainer.links.Classifier`` (softmax cross-entropy, accuracy) that also reports top-5.

    ``chain(x, t)``: ``x`` ``(N, 3, S, S)`` float32 RGB in [0, 1], ``t`` ``(N,)`` int32;
    returns the loss and reports ``loss``, ``accuracy`` (top-1) and ``top5``
    (``main/...`` in the trainer's log, ``validation/main/...`` in evaluation).

    The values are reported as host floats rather than the Variables ``L.Classifier``
    reports: ChainerMN 7.8.1's ``ObservationAggregator`` moves Variables with a ChainerX call
    that fails without ChainerX. A non-finite loss raises
    :class:`~chainer_yolo_dist.core.finite.NonFiniteLossError` naming the iteration (set by
    the updater) before any update.
    """

    def __init__(self, predictor):
        super().__init__(predictor, lossfun=F.softmax_cross_entropy, accfun=F.accuracy)
        self.iteration = None

    def forward(self, x, t):
        self.y = self.predictor(x)
        self.loss = self.lossfun(self.y, t)
        loss = float(self.loss.array)
        if chainer.config.train:
            finite.check_loss(loss, self.iteration)
        self.accuracy = self.accfun(self.y, t)
        reporter_module.report({'loss': loss, 'accuracy': float(self.accuracy.array),
                                'top5': top_k_accuracy(self.y, t, TOP_K)}, self)
        return self.loss


def converter(batch, device=None):
    """Batches ``(img, label)`` examples: ``x`` ``(N, 3, S, S)`` float32 in [0, 1] (the Darknet
    networks' input range), ``t`` ``(N,)`` int32, both on ``device``."""
    x = images_to_device([example[0] for example in batch], device)
    t = np.asarray([example[1] for example in batch], dtype=np.int32)
    return x, convert.to_device(device, t)
