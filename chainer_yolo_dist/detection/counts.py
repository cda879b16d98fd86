"""Detection counts at one score threshold: TP, FP, FN, precision, recall, F1 (paper 002 Table 2).

Paper 002 sec. 4.3 Table 2 reports, beside mAP@0.5, the true positives, false positives and
false negatives of its person detector with the precision, recall and F1 they give. The counts
here use VOC's matching at IoU 0.5, as ChainerCV's ``eval_detection_voc`` does for the mAP:

- only detections with ``score >= score_thresh`` count;
- per image and class, detections are taken in decreasing score; each is matched to the
  ground-truth box of the same class with the highest IoU (over all of them, matched or not);
- if that IoU is >= ``iou_thresh`` (ChainerCV's comparison): a difficult box makes the
  detection neither TP nor FP (ignored), an unmatched box makes it a TP and marks the box, an
  already matched box makes it a FP (a duplicate); below the threshold it is a FP;
- FN = non-difficult ground-truth boxes never matched.

Precision = TP / (TP + FP), recall = TP / (TP + FN), F1 their harmonic mean (0 where a
denominator is 0). Reading: the paper does not state its score threshold. Its columns are the
ones AlexeyAB's darknet ``detector map`` prints (TP, FP, FN, precision, recall, F1 at its
``-thresh``, default 0.25), so 0.25 is the default here (:data:`DEFAULT_SCORE_THRESH`); that
tool's own matching code is not reproduced, so small differences from it are possible. Its mAP
for custom data is the area under the whole precision/recall curve, while the package reports
the VOC2007 11-point AP: beside Table 2 the counts follow the premise, the mAP does not
(docs/cyclegan.md).

Boxes are ChainerCV's ``(y_min, x_min, y_max, x_max)``; IoU is :func:`chainercv.utils.bbox_iou`.
"""
import numpy as np
from chainercv.utils import bbox_iou

#: Score threshold of AlexeyAB darknet's ``detector map`` counts (a reading; module doc).
DEFAULT_SCORE_THRESH = 0.25
#: Paper 002 Table 2: mAP@0.5, and TP/FP/FN at the same overlap.
IOU_THRESH = 0.5


def match_image(pred_bbox, pred_label, pred_score, gt_bbox, gt_label, gt_difficult=None,
                score_thresh=DEFAULT_SCORE_THRESH, iou_thresh=IOU_THRESH):
    """Counts of one image: ``(tp, fp, fn)`` arrays of shape ``(n_class,)``.

    ``n_class`` is one more than the largest label seen in this image (callers sum with
    :func:`detection_counts`, which pads). Arrays as in ChainerCV: ``pred_bbox`` ``(R, 4)``,
    ``pred_label`` ``(R,)`` int, ``pred_score`` ``(R,)``; ``gt_bbox`` ``(G, 4)``, ``gt_label``
    ``(G,)``, ``gt_difficult`` ``(G,)`` bool or None (no difficult boxes).
    """
    pred_bbox = np.asarray(pred_bbox, np.float64).reshape(-1, 4)
    pred_label = np.asarray(pred_label, np.int64).reshape(-1)
    pred_score = np.asarray(pred_score, np.float64).reshape(-1)
    gt_bbox = np.asarray(gt_bbox, np.float64).reshape(-1, 4)
    gt_label = np.asarray(gt_label, np.int64).reshape(-1)
    gt_difficult = (np.zeros(len(gt_label), bool) if gt_difficult is None
                    else np.asarray(gt_difficult, bool).reshape(-1))
    if not (len(pred_bbox) == len(pred_label) == len(pred_score)) or \
            not (len(gt_bbox) == len(gt_label) == len(gt_difficult)):
        raise ValueError('boxes, labels, scores (and difficult flags) must have equal lengths')
    n_class = int(max([-1] + list(pred_label) + list(gt_label))) + 1
    tp, fp, fn = (np.zeros(n_class, np.int64) for _ in range(3))
    keep = pred_score >= score_thresh
    pred_bbox, pred_label, pred_score = pred_bbox[keep], pred_label[keep], pred_score[keep]
    for c in range(n_class):
        p = pred_label == c
        g = gt_label == c
        boxes = pred_bbox[p][np.argsort(-pred_score[p], kind='stable')]
        gts, difficult = gt_bbox[g], gt_difficult[g]
        matched = np.zeros(len(gts), bool)
        if len(gts) and len(boxes):
            iou = bbox_iou(boxes, gts)
            for k in range(len(boxes)):
                j = int(iou[k].argmax())
                if iou[k, j] < iou_thresh:
                    fp[c] += 1
                elif difficult[j]:
                    continue
                elif matched[j]:
                    fp[c] += 1
                else:
                    matched[j] = True
                    tp[c] += 1
        else:
            fp[c] += len(boxes)
        fn[c] += int(np.count_nonzero(~matched & ~difficult))
    return tp, fp, fn


def _ratio(num, den):
    return float(num) / den if den else 0.0


def detection_counts(pred_bboxes, pred_labels, pred_scores, gt_bboxes, gt_labels,
                     gt_difficults=None, score_thresh=DEFAULT_SCORE_THRESH,
                     iou_thresh=IOU_THRESH, n_class=None):
    """Table 2's counts over a dataset; iterables of per-image arrays as ChainerCV's evaluators.

    Returns:
        dict: ``tp``, ``fp``, ``fn`` (ints, all classes), ``precision``, ``recall``, ``f1``
        (floats), ``per_class`` (dict of ``tp``/``fp``/``fn`` int arrays ``(n_class,)``),
        ``score_thresh`` and ``iou_thresh``.
    """
    if gt_difficults is None:
        gt_difficults = iter(lambda: None, 0)  # an endless supply of "no difficult boxes"
    totals = [np.zeros(n_class or 0, np.int64) for _ in range(3)]
    for pb, pl, ps, gb, gl, gd in zip(pred_bboxes, pred_labels, pred_scores, gt_bboxes,
                                      gt_labels, gt_difficults):
        counts = match_image(pb, pl, ps, gb, gl, gd, score_thresh, iou_thresh)
        size = max(len(totals[0]), len(counts[0]))
        totals = [np.pad(t, (0, size - len(t))) + np.pad(c, (0, size - len(c)))
                  for t, c in zip(totals, counts)]
    tp, fp, fn = (int(t.sum()) for t in totals)
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    return {'tp': tp, 'fp': fp, 'fn': fn, 'precision': precision, 'recall': recall,
            'f1': _ratio(2 * precision * recall, precision + recall),
            'per_class': {'tp': totals[0], 'fp': totals[1], 'fn': totals[2]},
            'score_thresh': float(score_thresh), 'iou_thresh': float(iou_thresh)}
