"""The training chain: a detection network and its loss, reporting the loss and its parts."""
import chainer
from chainer import reporter


class NonFiniteLossError(RuntimeError):
    """Raised when a loss is NaN or infinite, before the update that would spread it."""


class YOLOTrainChain(chainer.Chain):
    """Wraps a YOLO network (``forward(x) -> locs, objs, confs``) and its loss.

    ``chain(x, bboxes, labels)`` with ``x`` (N, 3, S, S) in [0, 1], ``bboxes`` a list of N
    float32 (R_n, 4) arrays ``(y_min, x_min, y_max, x_max)`` in input pixels and ``labels`` a
    list of N int32 (R_n,) arrays returns the scalar loss and reports ``loss``, ``loss/box``,
    ``loss/conf`` and ``loss/prob`` (``main/loss`` ... in the trainer's log).
    A non-finite loss raises :class:`NonFiniteLossError` naming the iteration, so that
    no update, and so no snapshot, ever holds NaN weights.
    """

    def __init__(self, model, loss_fn):
        super().__init__()
        with self.init_scope():
            self.model = model
        self.loss_fn = loss_fn
        self.iteration = None  # set by the updater for error messages

    def forward(self, x, bboxes, labels):
        locs, objs, confs = self.model(x)
        out = self.loss_fn(locs, objs, confs, bboxes, labels, insize=x.shape[2])
        loss = out['loss']
        if not bool(self.xp.isfinite(loss.array)):
            raise NonFiniteLossError(
                'non-finite loss %s at iteration %s (box %s, conf %s, prob %s); training '
                'stopped before the update, no snapshot holds these weights'
                % (float(loss.array), self.iteration, float(out['loss/box'].array),
                   float(out['loss/conf'].array), float(out['loss/prob'].array)))
        # Host floats, not Variables: ChainerMN 7.8.1's ObservationAggregator cannot move a
        # Variable without ChainerX, and LogReport averages floats alike.
        reporter.report({k: float(v.array) for k, v in out.items()}, self)
        return loss


class IterationAwareUpdater(chainer.training.updaters.StandardUpdater):
    """StandardUpdater that tells the loss chain which iteration it computes."""

    def update_core(self):
        self.get_optimizer('main').target.iteration = self.iteration + 1
        super().update_core()
