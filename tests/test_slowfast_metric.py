"""AVA frame-level mAP@0.5 on a hand-made case with hand-computed APs."""
import math

import numpy as np
import pytest

from chainercv.evaluations import calc_detection_voc_ap

from chainer_yolo_dist.slowfast.metric import (
    average_precision, detections_from_scores, frame_map, ground_truth_from_labels, match_frame)

G1, G2, FAR = (0, 0, 10, 10), (20, 20, 30, 30), (50, 50, 60, 60)


def hand_case():
    gt = {
        ('vidA', 902): (np.array([G1, G2, G2]), np.array([1, 1, 2])),
        ('vidB', 903): (np.array([G1, G1, G1, G1]), np.array([1, 2, 3, 5])),
        ('vidX', 904): (np.array([G1]), np.array([1])),  # excluded frame
    }
    det = {
        ('vidA', 902): (np.array([G1, (0, 0, 10, 9), G2, (0, 0, 5, 5)]),
                        np.array([1, 1, 2, 2]), np.array([.9, .8, .9, .8])),
        ('vidB', 903): (np.array([FAR, G1, G1, G1]), np.array([1, 1, 2, 4]),
                        np.array([.7, .6, .7, .9])),
        ('vidC', 905): (np.array([G1]), np.array([1]), np.array([.5])),  # frame without GT
    }
    return gt, det


def test_hand_made_case():
    gt, det = hand_case()
    result = frame_map(gt, det, class_ids=[1, 2, 3, 4], excluded={('vidX', 904)})
    # Class 1: TP .9, FP .8 (G1 already matched), FP .7, TP .6, FP .5 (frame without GT), 3 GT.
    # Precision 1, 1/2, 1/3, 1/2, 2/5 at recall 1/3, 1/3, 1/3, 2/3, 2/3:
    # AP = 1/3 * 1 + 1/3 * 1/2 = 1/2.
    assert result['ap'][1] == pytest.approx(0.5)
    # Class 2: TP .9, FP .8, TP .7 over 2 GT: AP = 1/2 * 1 + 1/2 * 2/3 = 5/6
    # (the 11-point VOC2007 rule would give (6 + 5 * 2/3) / 11 = 0.8485).
    assert result['ap'][2] == pytest.approx(5. / 6)
    assert result['ap'][3] == 0.  # ground truth, no detection
    assert math.isnan(result['ap'][4])  # detections, no ground truth: left out of the mean
    assert result['n_gt'] == {1: 3, 2: 2, 3: 1, 4: 0}  # class 5 is not evaluated
    assert result['map'] == pytest.approx((0.5 + 5. / 6 + 0.) / 3)
    assert result['n_frames'] == 2
    # Without the exclusion, vidX's ground truth adds an unmatched class-1 box.
    assert frame_map(gt, det, [1])['ap'][1] == pytest.approx(1. / 4 + 1. / 4 * 1. / 2)


def test_iou_threshold_is_inclusive_at_one_half():
    # IoU of (0,0,10,10) and (0,0,10,5) is exactly 0.5: a match; (0,0,10,4.9) is not.
    assert match_frame([(0, 0, 10, 5)], [1.], [G1]).tolist() == [True]
    assert match_frame([(0, 0, 10, 4.9)], [1.], [G1]).tolist() == [False]
    # The higher-scored detection takes the box even when listed second.
    assert match_frame([G1, G1], [.2, .9], [G1]).tolist() == [False, True]


def test_average_precision_equals_voc_area_rule_on_random_rankings():
    rng = np.random.RandomState(0)
    for _ in range(20):
        n = rng.randint(1, 30)
        scores = rng.permutation(n).astype(float)
        is_tp = rng.rand(n) < 0.5
        n_gt = int(is_tp.sum()) + rng.randint(0, 3)
        if n_gt == 0:
            continue
        order = np.argsort(-scores)
        tp = np.cumsum(is_tp[order])
        prec, rec = tp / np.arange(1, n + 1), tp / n_gt
        expected = calc_detection_voc_ap([prec], [rec], use_07_metric=False)[0]
        assert average_precision(scores, is_tp, n_gt) == pytest.approx(expected)


def test_scores_and_labels_round_trip_through_the_ava_layout():
    keys = [('v', 902), ('v', 902), ('w', 903)]
    boxes = np.array([G1, G2, G1], float)
    labels = np.array([[1, 0, 1], [0, 1, 0], [0, 0, 1]])  # columns = action ids 1, 2, 3
    gt = ground_truth_from_labels(keys, boxes, labels)
    assert sorted(gt[('v', 902)][1].tolist()) == [1, 2, 3]
    det = detections_from_scores(keys, boxes, labels.astype(float), class_ids=[1, 2, 3])
    assert len(det[('v', 902)][2]) == 6  # every box once per evaluated class
    result = frame_map(gt, det, [1, 2, 3])
    assert result['map'] == pytest.approx(1.0)
    det = detections_from_scores(keys, boxes, 1. - labels, class_ids=[1, 2, 3])
    assert frame_map(gt, det, [1, 2, 3])['map'] < 1.0


def test_rows_of_one_frame_need_not_be_adjacent():
    keys = [('v', 902), ('w', 903), ('v', 902)]
    boxes = np.array([G1, G2, FAR], float)
    labels = np.array([[1, 0], [0, 1], [0, 1]])
    gt = ground_truth_from_labels(keys, boxes, labels)
    assert list(gt) == [('v', 902), ('w', 903)]  # frames in order of first appearance
    np.testing.assert_array_equal(gt[('v', 902)][0], [G1, FAR])
    assert gt[('v', 902)][1].tolist() == [1, 2]
    det = detections_from_scores(keys, boxes, np.array([[.1, .2], [.3, .4], [.5, .6]]),
                                 class_ids=[2, 1])
    np.testing.assert_array_equal(det[('v', 902)][0], [G1, G1, FAR, FAR])
    assert det[('v', 902)][1].tolist() == [1, 2, 1, 2]  # class ids sorted
    assert det[('v', 902)][2].tolist() == [.1, .2, .5, .6]
