"""Table 2's counts on a hand-made case whose TP, FP and FN are known."""
import numpy as np
import pytest

from chainer_yolo_dist.detection.counts import (
    DEFAULT_SCORE_THRESH, IOU_THRESH, detection_counts, match_image)


def _box(y, x, s=10):
    return [y, x, y + s, x + s]


def test_hand_made_two_images():
    # Image 1, one class (person = 0), three ground-truth persons, one of them difficult.
    gt1 = np.array([_box(0, 0), _box(50, 50), _box(100, 100)], np.float32)
    diff1 = np.array([False, False, True])
    pred1 = np.array([
        _box(0, 0),        # 0.9: exact hit on gt 0                     -> TP
        _box(1, 1),        # 0.8: IoU 81/119 = 0.68 with gt 0, taken    -> FP (duplicate)
        _box(100, 100),    # 0.7: on the difficult box                  -> ignored
        _box(200, 200),    # 0.6: nothing there                         -> FP
        _box(50, 55),      # 0.2: would hit gt 1 but is under 0.25      -> dropped
    ], np.float32)
    score1 = np.array([0.9, 0.8, 0.7, 0.6, 0.2])
    # gt 1 stays unmatched -> FN; the difficult one is never a FN.
    # Image 2: a person and a car (class 1). A person detection on the car is a FP (wrong
    # class) and leaves the person a FN; the car is found at IoU exactly 0.5 (a 10x10 box
    # inside a 10x20 one), which counts as a hit (>= 0.5, ChainerCV's rule): a TP.
    gt2 = np.array([_box(0, 0), [30, 30, 40, 40]], np.float32)
    lab2 = np.array([0, 1])
    pred2 = np.array([[30, 30, 40, 40], [30, 30, 40, 50]], np.float32)
    plab2 = np.array([0, 1])
    score2 = np.array([0.95, 0.5])
    out = detection_counts([pred1, pred2], [np.zeros(5, int), plab2], [score1, score2],
                           [gt1, gt2], [np.zeros(3, int), lab2], [diff1, np.zeros(2, bool)])
    # person: TP 1, FP 2 (image 1) + 1 (image 2, no person there); FN 1 + 1; car: TP 1
    assert out['per_class']['tp'].tolist() == [1, 1]
    assert out['per_class']['fp'].tolist() == [3, 0]
    assert out['per_class']['fn'].tolist() == [2, 0]
    assert (out['tp'], out['fp'], out['fn']) == (2, 3, 2)
    assert out['precision'] == pytest.approx(2 / 5.)
    assert out['recall'] == pytest.approx(2 / 4.)
    assert out['f1'] == pytest.approx(2 * 0.4 * 0.5 / 0.9)
    assert (out['score_thresh'], out['iou_thresh']) == (DEFAULT_SCORE_THRESH, IOU_THRESH)


def test_duplicates_and_the_score_threshold():
    # Each detection goes to its best-overlap box whatever was matched before (VOC), so the
    # counts at one threshold do not depend on the order; the score order only decides which
    # detection is the TP. Two detections of one person: one TP and one duplicate FP.
    gt = np.array([_box(0, 0)], np.float32)
    pred = np.array([_box(2, 2), _box(0, 0)], np.float32)
    tp, fp, fn = match_image(pred, [0, 0], [0.3, 0.9], gt, [0])
    assert (tp[0], fp[0], fn[0]) == (1, 1, 0)
    # Above the weaker detection's score only the good one is left: no FP.
    tp, fp, fn = match_image(pred, [0, 0], [0.3, 0.9], gt, [0], score_thresh=0.5)
    assert (tp[0], fp[0], fn[0]) == (1, 0, 0)


def test_empty_cases_and_zero_denominators():
    out = detection_counts([np.zeros((0, 4))], [np.zeros(0, int)], [np.zeros(0)],
                           [np.zeros((0, 4))], [np.zeros(0, int)])
    assert (out['tp'], out['fp'], out['fn'], out['precision'], out['recall'], out['f1']) == \
        (0, 0, 0, 0.0, 0.0, 0.0)
    out = detection_counts([np.zeros((0, 4))], [np.zeros(0, int)], [np.zeros(0)],
                           [np.array([_box(0, 0)])], [np.array([0])])
    assert (out['tp'], out['fn'], out['recall']) == (0, 1, 0.0)
    with pytest.raises(ValueError):
        match_image(np.zeros((2, 4)), [0], [0.5, 0.5], np.zeros((0, 4)), [])
