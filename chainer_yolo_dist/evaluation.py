"""VOC detection mAP, computed across ranks.

Rank 0 reads the test set and ChainerCV's ``apply_to_iterator(..., comm=comm)`` scatters the
images, every rank predicts on its share, and the predictions are gathered on rank 0, where
``eval_detection_voc`` computes the mAP over the whole test set: the same number a single
process gets for the same model. Every rank must hold the same model (parameters and batch
normalisation statistics: see ``chainermn.extensions.AllreducePersistent``).
"""
import chainer
import numpy as np
from chainercv.evaluations import eval_detection_voc
from chainercv.utils import apply_to_iterator


def evaluate_detection(model, dataset, comm=None, batchsize=8, use_07_metric=True,
                       class_names=None):
    """Returns ``{'map': float, 'ap': {class_name: float}}`` on every rank.

    Args:
        model: a ChainerCV detector with ``predict`` (its ``insize`` sets the eval size).
        dataset: ``(img, bbox, label[, difficult])`` examples; only rank 0 reads it.
        comm: a ChainerMN communicator, or ``None`` for one process.
        use_07_metric (bool): VOC2007's 11-point AP, as the papers and ChainerCV report.
    """
    rank0 = comm is None or comm.rank == 0
    if rank0:
        it = chainer.iterators.SerialIterator(dataset, batchsize, repeat=False, shuffle=False)
        _, (pred_bboxes, pred_labels, pred_scores), gt = apply_to_iterator(
            model.predict, it, comm=comm)
        gt_bboxes, gt_labels = gt[0], gt[1]
        gt_difficults = gt[2] if len(gt) > 2 else None
        result = eval_detection_voc(pred_bboxes, pred_labels, pred_scores, gt_bboxes,
                                    gt_labels, gt_difficults, use_07_metric=use_07_metric)
        names = class_names or [str(i) for i in range(len(result['ap']))]
        out = {'map': float(result['map']),
               'ap': {name: float(ap) for name, ap in zip(names, result['ap'])}}
    else:
        apply_to_iterator(model.predict, None, comm=comm)
        out = None
    if comm is not None:
        out = comm.bcast_obj(out)
    return out


class DetectionEvaluator(chainer.training.Extension):
    """Trainer extension: reports ``validation/main/map`` (and per-class AP) on every rank.

    Averages the batch-normalisation statistics across ranks first, so that every rank
    predicts with the same model.
    """

    priority = chainer.training.PRIORITY_WRITER

    def __init__(self, model, dataset, comm=None, batchsize=8, class_names=None,
                 eval_insize=None):
        self.model = model
        self.dataset = dataset
        self.comm = comm
        self.batchsize = batchsize
        self.class_names = class_names
        self.eval_insize = eval_insize

    def __call__(self, trainer=None):
        from chainer_yolo_dist.models.yolo import set_insize
        if self.comm is not None and self.comm.size > 1:
            import chainermn
            chainermn.extensions.AllreducePersistent(self.model, self.comm)()
        if self.eval_insize:
            set_insize(self.model, self.eval_insize)
        self.model.use_preset('evaluate')
        result = evaluate_detection(self.model, self.dataset, self.comm, self.batchsize,
                                    class_names=self.class_names)
        self.model.use_preset('visualize')
        observation = {'validation/main/map': result['map']}
        for name, ap in result['ap'].items():
            observation['validation/main/ap/%s' % name] = np.float32(ap)
        chainer.reporter.report(observation)
        self.last_result = result
        return result
