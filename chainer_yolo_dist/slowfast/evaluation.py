"""Frame-level mAP@0.5 (AVA's metric) of an action detector, computed across ranks.

As :mod:`chainer_yolo_dist.detection.evaluation`: rank 0 reads the test clips and ChainerCV's
``apply_to_iterator(..., comm=comm)`` scatters the batches, every rank scores the boxes of its
clips, and the scores are gathered on rank 0 in the test set's order, where
:func:`~chainer_yolo_dist.slowfast.metric.frame_map` computes one mAP over the whole test set:
the number a single process gets for the same model. Every rank must hold the same model
(parameters and batch-normalisation statistics: ``core.persistents.mean_persistents``).

Each test example is one keyframe with its boxes; every box is scored for every evaluated
class (as PySlowFast's ``get_ava_eval_data``). The boxes are the ground truth's, whose
multi-hot labels are then the ground truth (one ``(box, action)`` pair per positive label),
or a person detector's (``ActionData.boxes`` says which), scored against the split's
``ground_truth``; a ground-truth frame without a detected box counts its boxes as missed.
Boxes enter the metric normalised by their clip's height and width, the CSVs' coordinates
(IoU does not change under that scaling).
"""
import chainer
import numpy as np
from chainercv.utils import apply_to_iterator

from chainer_yolo_dist.core.persistents import mean_persistents
from chainer_yolo_dist.slowfast.batch import concat_normalised_clips
from chainer_yolo_dist.slowfast.metric import (detections_from_scores, frame_map,
                                               ground_truth_from_labels)


def _scorer(detector):
    """``(clips, bboxes) -> ([scores (R_i, n_class)], bboxes)`` for ``apply_to_iterator``.

    The raw clips (AVA: uint8) go to the detector's device as they are and are normalised there
    (:func:`.batch.concat_normalised_clips`), as in training."""
    def score(clips, bboxes):
        batch = [(c, b, np.zeros((len(b), 1), np.int32)) for c, b in zip(clips, bboxes)]
        device = chainer.backend.get_device_from_array(detector.head.fc.W.array)
        x, rois, roi_indices, _ = concat_normalised_clips(batch, device)
        probs = chainer.backend.CpuDevice().send(detector.predict(x, rois, roi_indices))
        counts = np.cumsum([len(b) for b in bboxes])[:-1]
        normalised = [np.asarray(b, np.float64).reshape(-1, 4)
                      / np.tile(np.asarray(c.shape[2:], np.float64), 2)
                      for c, b in zip(clips, bboxes)]
        return np.split(probs, counts), normalised
    return score


def evaluate_actions(detector, test, comm=None, batchsize=4):
    """Frame mAP@0.5 of ``detector`` on ``test`` (:class:`~.data.ActionData`).

    Returns ``{'map': float, 'ap': {action id: float or None}, 'n_frames': int, 'boxes':
    str}`` on every rank (None: no ground truth of that action in the evaluated frames;
    ``boxes``: which boxes were scored, ``test.boxes``).
    """
    out = None
    if comm is None or comm.rank == 0:
        it = chainer.iterators.SerialIterator(test.dataset, batchsize, repeat=False,
                                              shuffle=False)
        clips, (scores, bboxes), (labels,) = apply_to_iterator(
            _scorer(detector), it, n_input=2, comm=comm)
        del clips  # ChainerCV would otherwise keep every clip to hand them out later
        out = _frame_map(test, scores, bboxes, labels)
    else:
        apply_to_iterator(_scorer(detector), None, n_input=2, comm=comm)
    if comm is not None:
        out = comm.bcast_obj(out)
    return out


def _frame_map(test, scores, bboxes, labels):
    """Ground truth and detections per frame key, then the metric (rank 0).

    ``scores[i]`` ``(R_i, n_class)``, ``bboxes[i]`` ``(R_i, 4)`` normalised and ``labels[i]``
    ``(R_i, n_class)`` multi-hot are test example ``i``'s; the labels are the ground truth
    unless ``test.ground_truth`` holds it (the examples' boxes then being a detector's)."""
    boxes = [np.asarray(b, np.float64).reshape(-1, 4) for b in bboxes]
    keys = [key for key, b in zip(test.keys, boxes) for _ in range(len(b))]
    scores = [np.asarray(s, np.float64).reshape(len(b), -1) for s, b in zip(scores, boxes)]
    if getattr(test, 'ground_truth', None) is None:
        labels = [np.asarray(lb).reshape(len(b), -1) for lb, b in zip(labels, boxes)]
        ground_truth = ground_truth_from_labels(keys, _rows(boxes), _rows(labels))
    else:
        frames = list(test.ground_truth)
        gt_boxes = [np.asarray(test.ground_truth[k][0], np.float64).reshape(-1, 4)
                    for k in frames]
        gt_labels = [np.asarray(test.ground_truth[k][1]) for k in frames]
        ground_truth = ground_truth_from_labels(
            [k for k, b in zip(frames, gt_boxes) for _ in range(len(b))], _rows(gt_boxes),
            _rows(gt_labels))
    detections = detections_from_scores(keys, _rows(boxes), _rows(scores), test.class_ids)
    result = frame_map(ground_truth, detections, test.class_ids, test.excluded)
    ap = {int(c): None if np.isnan(v) else float(v) for c, v in result['ap'].items()}
    return {'map': result['map'], 'ap': ap, 'n_frames': result['n_frames'],
            'boxes': getattr(test, 'boxes', 'ground truth')}


def _rows(arrays):
    """The examples' arrays stacked along their first axis (an empty test set: none)."""
    return np.concatenate(arrays) if arrays else np.zeros((0, 0))


class ActionEvaluator(chainer.training.Extension):
    """Trainer extension: reports ``validation/main/map`` on every rank (collective).

    Averages the batch-normalisation statistics across ranks first, so that every rank
    predicts with the same model.
    """

    priority = chainer.training.PRIORITY_WRITER

    def __init__(self, detector, test, comm=None, batchsize=4):
        self.detector, self.test, self.comm, self.batchsize = detector, test, comm, batchsize
        self.last_result = None
        self.last_iteration = None

    def __call__(self, trainer=None):
        if self.comm is not None and self.comm.size > 1:
            mean_persistents(self.comm, self.detector)
        result = evaluate_actions(self.detector, self.test, self.comm, self.batchsize)
        chainer.reporter.report({'validation/main/map': result['map']})
        self.last_result = result
        self.last_iteration = trainer.updater.iteration if trainer is not None else None
        return result
