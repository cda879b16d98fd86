"""Frame-level mAP at IoU 0.5, as AVA's official evaluation computes it.

AVA v2.x is scored with the TensorFlow Object Detection API's ``PascalDetectionEvaluator``
("PascalBoxes_Precision/mAP@0.5IOU"; ActivityNet ``Evaluation/get_ava_performance.py``, copied
into PySlowFast's ``ava_evaluation``). Its definition, reproduced here:

* A *frame* is one keyframe ``(video_id, second)``; ground truth is every ``(box, action)`` pair of
  the frame, detections are ``(box, action, score)`` triples. Frames in the exclusion list are
  dropped from both sides; ground truth and detections of actions outside the evaluated class
  list (the 60-class label map) are dropped.
* Per frame and class, detections are taken in decreasing score (the TF original runs its
  non-maximum suppression at IoU 1.0, which only sorts; PySlowFast's copy keeps the input order,
  which differs only when two detections compete for one box) and each is a true positive if
  the ground-truth box of that class with which it has the highest IoU has IoU >= 0.5 and is not
  yet matched; otherwise a false positive (a second detection on a matched box is a false
  positive). Detections on frames without ground truth are false positives.
* Per class, all detections of all frames are sorted by decreasing score; precision and recall
  follow from the cumulative true/false positives (recall over the number of ground-truth
  boxes of the class). AP is the area under the precision/recall curve after making precision
  monotonically non-increasing (VOCdevkit since 2010: ``sum (r_i - r_{i-1}) p_i`` over the recall
  steps), *not* the 11-point interpolation of VOC2007.
* A class with no ground truth has AP NaN and is left out of the mean; a class with ground truth
  but no detection has AP 0. mAP is the mean over the remaining classes.

Boxes are ``(y_min, x_min, y_max, x_max)`` in any one coordinate system shared by ground truth and
detections (AVA's CSVs give normalised ``[0, 1]`` coordinates); IoU uses areas ``(y_max - y_min)
(x_max - x_min)`` without the ``+1`` of pixel-inclusive conventions.
"""
import numpy as np

from chainercv.utils import bbox_iou

#: Matching threshold of AVA's frame-level evaluation.
IOU_THRESH = 0.5


def average_precision(scores, is_tp, n_gt):
    """Area under the interpolated precision/recall curve of one class.

    Args:
        scores (array): ``(D,)`` detection scores.
        is_tp (array): ``(D,)`` bool, whether each detection is a true positive.
        n_gt (int): ground-truth boxes of the class.

    Returns:
        float: AP in ``[0, 1]``; NaN when ``n_gt == 0``.
    """
    scores = np.asarray(scores, np.float64)
    is_tp = np.asarray(is_tp, bool)
    if n_gt == 0:
        return float('nan')
    if is_tp.sum() > n_gt:
        raise ValueError('%d true positives for %d ground-truth boxes' % (is_tp.sum(), n_gt))
    if scores.size == 0:
        return 0.
    # Decreasing score; ties keep the later-listed detection first, as NumPy's reversed argsort
    # in the official code does.
    order = np.argsort(scores, kind='stable')[::-1]
    tp = np.cumsum(is_tp[order])
    fp = np.cumsum(~is_tp[order])
    precision = tp / (tp + fp)
    recall = tp / float(n_gt)
    recall = np.concatenate([[0.], recall, [1.]])
    precision = np.concatenate([[0.], precision, [0.]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.where(recall[1:] != recall[:-1])[0] + 1
    return float(np.sum((recall[steps] - recall[steps - 1]) * precision[steps]))


def match_frame(det_boxes, det_scores, gt_boxes, iou_thresh=IOU_THRESH):
    """True-positive flags of one frame's detections of one class, in the given order.

    Detections are visited in decreasing score (stable); each is matched to its highest-IoU
    ground-truth box if that IoU >= ``iou_thresh`` and the box is still free.
    """
    det_boxes = np.asarray(det_boxes, np.float64).reshape(-1, 4)
    gt_boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    is_tp = np.zeros(len(det_boxes), bool)
    if len(det_boxes) == 0 or len(gt_boxes) == 0:
        return is_tp
    iou = bbox_iou(det_boxes, gt_boxes)
    best = iou.argmax(axis=1)
    taken = np.zeros(len(gt_boxes), bool)
    for i in np.argsort(-np.asarray(det_scores, np.float64), kind='stable'):
        g = best[i]
        if iou[i, g] >= iou_thresh and not taken[g]:
            is_tp[i] = True
            taken[g] = True
    return is_tp


def frame_map(ground_truth, detections, class_ids, excluded=(), iou_thresh=IOU_THRESH):
    """AVA frame-level mAP.

    Args:
        ground_truth (dict): frame key -> ``(boxes (G, 4), actions (G,))``, one row per
            (box, action) pair (a box with three actions appears three times).
        detections (dict): frame key -> ``(boxes (D, 4), actions (D,), scores (D,))``.
        class_ids (iterable of int): the evaluated action ids (AVA: the 60 of the label map).
        excluded (set): frame keys to ignore on both sides (AVA's excluded timestamps).
        iou_thresh (float): 0.5.

    Returns:
        dict: ``map`` (float), ``ap`` {class id: AP or NaN}, ``n_gt`` {class id: int},
        ``n_frames`` (ground-truth frames evaluated).
    """
    class_ids = [int(c) for c in class_ids]
    excluded = set(excluded)
    per_class = {c: ([], []) for c in class_ids}
    n_gt = dict.fromkeys(class_ids, 0)
    gt_frames = [k for k in ground_truth if k not in excluded]
    empty = (np.zeros((0, 4)), np.zeros(0, int))
    # Ground-truth frames, then detection-only frames, in their given order (deterministic).
    frames = [k for k in dict.fromkeys(list(ground_truth) + list(detections)) if k not in excluded]
    for key in frames:
        g_boxes, g_actions = ground_truth.get(key, empty)
        g_boxes = np.asarray(g_boxes, np.float64).reshape(-1, 4)
        g_actions = np.asarray(g_actions, int).reshape(-1)
        if key in detections:
            d_boxes, d_actions, d_scores = (np.asarray(a) for a in detections[key])
            d_boxes = d_boxes.reshape(-1, 4)
        else:
            d_boxes, d_actions, d_scores = np.zeros((0, 4)), np.zeros(0, int), np.zeros(0)
        for c in class_ids:
            gsel = g_actions == c
            n_gt[c] += int(gsel.sum())
            dsel = d_actions == c
            if not dsel.any():
                continue
            per_class[c][0].append(d_scores[dsel])
            per_class[c][1].append(match_frame(d_boxes[dsel], d_scores[dsel], g_boxes[gsel],
                                               iou_thresh))
    ap = {}
    for c in class_ids:
        scores = np.concatenate(per_class[c][0]) if per_class[c][0] else np.zeros(0)
        is_tp = np.concatenate(per_class[c][1]) if per_class[c][1] else np.zeros(0, bool)
        ap[c] = average_precision(scores, is_tp, n_gt[c])
    values = np.array([v for v in ap.values()], np.float64)
    mean = float(np.nanmean(values)) if np.isfinite(values).any() else float('nan')
    return {'map': mean, 'ap': ap, 'n_gt': n_gt, 'n_frames': len(gt_frames)}


def _rows_by_frame(keys):
    """Frame key -> indices of its rows, frames in order of first appearance.

    One pass over ``keys`` rather than one mask per frame, which would be quadratic in the
    test set (the evaluation passes every box of it at once)."""
    rows = {}
    for r, key in enumerate(keys):
        rows.setdefault(key, []).append(r)
    return {key: np.array(r, int) for key, r in rows.items()}


def detections_from_scores(keys, boxes, scores, class_ids, label_offset=1):
    """Turns per-box class scores into the ``detections`` dict of :func:`frame_map`.

    Every box is reported once per evaluated class with that class's score, as PySlowFast's
    ``get_ava_eval_data`` does. ``keys`` ``(R,)`` frame keys, ``boxes`` ``(R, 4)``, ``scores``
    ``(R, n_class)`` whose column ``j`` is action id ``j + label_offset`` (AVA ids start at 1).
    """
    class_ids = sorted(int(c) for c in class_ids)
    cols = np.array([c - label_offset for c in class_ids], int)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    scores = np.asarray(scores, np.float64)
    out = {}
    for key, sel in _rows_by_frame(keys).items():
        b, s = boxes[sel], scores[sel][:, cols]
        out[key] = (np.repeat(b, len(cols), axis=0), np.tile(class_ids, len(b)), s.reshape(-1))
    return out


def ground_truth_from_labels(keys, boxes, labels, label_offset=1):
    """Ground-truth dict of :func:`frame_map` from multi-hot ``labels`` ``(R, n_class)``.

    Column ``j`` of ``labels`` is action id ``j + label_offset``; actions outside the evaluated
    classes stay in (:func:`frame_map` leaves them out)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    labels = np.asarray(labels)
    out = {}
    for key, sel in _rows_by_frame(keys).items():
        r, j = np.nonzero(labels[sel])
        out[key] = (boxes[sel][r], j + label_offset)
    return out
