"""The training chain: a detection network and its loss, reporting the loss and its parts."""
import chainer
from chainer import reporter

from chainer_yolo_dist.core import finite


class YOLOTrainChain(chainer.Chain):
    """Wraps a YOLO network (``forward(x) -> locs, objs, confs``) and its loss.

    ``chain(x, bboxes, labels)`` with ``x`` (N, 3, S, S) in [0, 1], ``bboxes`` a list of N
    float32 (R_n, 4) arrays ``(y_min, x_min, y_max, x_max)`` in input pixels and ``labels`` a
    list of N int32 (R_n,) arrays returns the scalar loss and reports ``loss``, ``loss/box``,
    ``loss/conf`` and ``loss/prob`` (``main/loss`` ... in the trainer's log).
    A non-finite loss raises :class:`~chainer_yolo_dist.core.finite.NonFiniteError` naming the
    iteration (set by the updater), so that no update, and so no file, holds NaN weights.
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
        # Host floats, not Variables: ChainerMN 7.8.1's ObservationAggregator cannot move a
        # Variable without ChainerX, and LogReport averages floats alike.
        values = {k: float(v.array) for k, v in out.items()}
        finite.check_loss(values['loss'], self.iteration,
                          {k: values[k] for k in ('loss/box', 'loss/conf', 'loss/prob')})
        reporter.report(values, self)
        return out['loss']
