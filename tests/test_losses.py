"""The YOLO training losses follow docs/loss.md exactly.

Hand-computed cases write the arithmetic out; random cases compare with the naive loop
transcription in ``tests/loss_reference.py``.
"""
import math

import numpy as np
import pytest

import chainer
from chainer import gradient_check
from chainercv.links import YOLOv2, YOLOv3
from chainercv.utils import bbox_iou

import loss_reference as ref
from chainer_yolo_dist.detection.losses import YOLOv2Loss, YOLOv3Loss

LOG2 = math.log(2.0)


def sig(x):
    return 1.0 / (1.0 + math.exp(-x))


def value(out):
    return {k: float(v.array) for k, v in out.items()}


def zeros(n, k, c):
    return (np.zeros((n, k, 4), np.float32), np.zeros((n, k), np.float32),
            np.zeros((n, k, c), np.float32))


def boxes(*rows):
    return np.array(rows, dtype=np.float32).reshape(-1, 4)


def labels(*values):
    return np.array(values, dtype=np.int32)


def assert_terms(out, box, conf, prob, rtol=1e-6):
    got = value(out)
    np.testing.assert_allclose(got['loss/box'], box, rtol=rtol, atol=1e-7)
    np.testing.assert_allclose(got['loss/conf'], conf, rtol=rtol, atol=1e-7)
    np.testing.assert_allclose(got['loss/prob'], prob, rtol=rtol, atol=1e-7)
    np.testing.assert_allclose(got['loss'], box + conf + prob, rtol=rtol, atol=1e-7)


# ---------------------------------------------------------------------------------------------
# YOLOv2 by hand. insize 64, stride 32 -> G = 2; anchors (1, 1), (2, 2) grid cells -> A = 2,
# K = 2 * 2 * 2 = 8; slot k = (i * 2 + j) * 2 + a. With all raw outputs 0: sigma = 0.5,
# softmax over C = 2 classes = (0.5, 0.5), predicted boxes are the anchors at cell centres.
# ---------------------------------------------------------------------------------------------
V2_ANCHORS = ((1.0, 1.0), (2.0, 2.0))


def test_v2_single_truth_by_hand():
    # Truth (8, 8, 40, 40) px: centre 24 -> gy = gx = 0.75, gh = gw = 1, i = j = 0;
    # IoU_shape with (1, 1) is 1, with (2, 2) is 1/4 -> a = 0, slot 0. nh = nw = 0.5.
    locs, objs, confs = zeros(1, 8, 2)
    out = YOLOv2Loss(V2_ANCHORS, n_fg_class=2)(locs, objs, confs, [boxes((8, 8, 40, 40))],
                                               [labels(0)], insize=64)
    box = 1 * (2 - 0.5 * 0.5) * ((0.5 - 0.75) ** 2 * 2 + (0 - math.log(1 / 1)) ** 2 * 2)
    # Slot 0 predicts [0, 0, 1, 1]; the truth is [0.25, 0.25, 1.25, 1.25] in cells:
    # intersection 0.75^2 = 0.5625, union 1 + 1 - 0.5625.
    iou = 0.5625 / 1.4375
    # The 7 other slots: best IoU 0.25 at most (slot 1, [-0.5, -0.5, 1.5, 1.5]) < 0.6.
    conf = 5 * (0.5 - iou) ** 2 + 7 * 1 * 0.5 ** 2
    prob = 1 * ((0.5 - 1) ** 2 + (0.5 - 0) ** 2)
    assert_terms(out, box, conf, prob)


@pytest.mark.parametrize('b_last', [True, False])
def test_v2_later_truth_wins_the_slot(b_last):
    # Truth A (8, 8, 40, 40) label 0 as above; truth B (16, 16, 40, 40) label 1: centre 28 ->
    # gy = gx = 0.875, gh = gw = 0.75 -> IoU_shape 0.5625 with (1, 1), 0.5625/4 with (2, 2):
    # a = 0, i = j = 0, the same slot 0. Whichever is listed later supplies every target.
    locs, objs, confs = zeros(1, 8, 2)
    confs[0, 0] = (1.0, 0.0)          # softmax = (e / (e + 1), 1 / (e + 1))
    a, b = (8, 8, 40, 40), (16, 16, 40, 40)
    bbox = boxes(a, b) if b_last else boxes(b, a)
    label = labels(0, 1) if b_last else labels(1, 0)
    out = YOLOv2Loss(V2_ANCHORS, n_fg_class=2)(locs, objs, confs, [bbox], [label], insize=64)
    p0, p1 = math.e / (math.e + 1), 1 / (math.e + 1)
    if b_last:
        w = 2 - (24 / 64) ** 2
        box = w * ((0.5 - 0.875) ** 2 * 2 + (0 - math.log(0.75)) ** 2 * 2)
        # [0, 0, 1, 1] against [0.5, 0.5, 1.25, 1.25]: 0.25 / (1 + 0.5625 - 0.25).
        iou = 0.25 / 1.3125
        prob = (p0 - 0) ** 2 + (p1 - 1) ** 2
    else:
        w = 2 - 0.5 * 0.5
        box = w * ((0.5 - 0.75) ** 2 * 2)
        iou = 0.5625 / 1.4375
        prob = (p0 - 1) ** 2 + (p1 - 0) ** 2
    # Other slots' best IoU over both truths stays below 0.6 (at most 0.25, slot 1 vs A).
    conf = 5 * (0.5 - iou) ** 2 + 7 * 0.25
    assert_terms(out, box, conf, prob)


def test_v2_anchor_tie_goes_to_lowest_index():
    # Anchors (1, 2) and (2, 1); a 32 x 32 px truth is (1, 1) cells: IoU_shape 1/2 with both,
    # so a = 0 and the size targets are log(1 / 1), log(1 / 2).
    locs, objs, confs = zeros(1, 8, 2)
    out = YOLOv2Loss(((1.0, 2.0), (2.0, 1.0)), n_fg_class=2)(
        locs, objs, confs, [boxes((0, 0, 32, 32))], [labels(1)], insize=64)
    # Centre 16 px -> 0.5 cells: the xy error is 0. nh = nw = 0.5.
    box = (2 - 0.25) * ((0 - 0) ** 2 + (0 - math.log(0.5)) ** 2)
    # Slot 0 predicts [0, -0.5, 1, 1.5] against [0, 0, 1, 1]: IoU 1 / 2. Slot 1 (a = 1) predicts
    # [-0.5, 0, 1.5, 1]: also 1/2 < 0.6; the other cells do not overlap by 0.6.
    conf = 5 * (0.5 - 0.5) ** 2 + 7 * 0.25
    prob = 0.5
    assert_terms(out, box, conf, prob)


def test_v2_centre_on_far_edge_is_clamped_into_the_last_cell():
    # y_min just below 64 and y_max = 64: in float32 the centre rounds to 64 = S, gy = 2,
    # floor 2 is clamped to G - 1 = 1 and the y offset target is 2 - 1 = 1.
    y_min = float(np.nextafter(np.float32(64), np.float32(0)))
    locs, objs, confs = zeros(1, 8, 2)
    out = YOLOv2Loss(V2_ANCHORS, n_fg_class=2)(
        locs, objs, confs, [boxes((y_min, 0, 64, 32))], [labels(0)], insize=64)
    gh = (64 - y_min) / 32                # 1.19e-7 cells; best anchor a = 0
    nh, nw = (64 - y_min) / 64, 0.5
    # Slot (i = 1, j = 0, a = 0) = 4. x: centre 16 px -> gx = 0.5, j = 0, offset 0.5.
    box = (2 - nh * nw) * ((0.5 - 1.0) ** 2 + (0.5 - 0.5) ** 2 + math.log(gh) ** 2
                           + math.log(1.0) ** 2)
    # A flat box: IoU 0 with every prediction, so the IoU target is 0 and 7 slots are noobj.
    conf = 5 * 0.5 ** 2 + 7 * 0.25
    assert_terms(out, box, conf, 0.5, rtol=1e-5)


@pytest.mark.parametrize('thresh, counted',
                         [(0.6, False), (0.63, False), (0.65, True), (0.7, True)])
def test_v2_thresh_mask(thresh, counted):
    # Slot 1 (i = j = 0, anchor (2, 2)) is made to predict centre (0.75, 0.75) (ty = tx = log 3)
    # and size (1, 0.64) (th = log 1/2, tw = log 0.32): same centre as the truth
    # [0.25, 0.25, 1.25, 1.25], so IoU = 1 * 0.64 / 1 = 0.64.
    # best_iou >= thresh removes its no-object term (equality: test_v3_v2_thresh_is_inclusive).
    locs, objs, confs = zeros(1, 8, 2)
    locs[0, 1] = (math.log(3), math.log(3), math.log(0.5), math.log(0.32))
    objs[0, 1] = 2.0
    loss = YOLOv2Loss(V2_ANCHORS, n_fg_class=2, thresh=thresh)
    out = loss(locs, objs, confs, [boxes((8, 8, 40, 40))], [labels(0)], insize=64)
    iou0 = 0.5625 / 1.4375
    conf = 5 * (0.5 - iou0) ** 2 + 6 * 0.25 + (sig(2.0) ** 2 if counted else 0.0)
    box = 1.75 * 0.125
    assert_terms(out, box, conf, 0.5, rtol=1e-5)


def test_v2_lambdas_scale_their_terms():
    locs, objs, confs = zeros(1, 8, 2)
    args = (locs, objs, confs, [boxes((8, 8, 40, 40))], [labels(0)])
    out = YOLOv2Loss(V2_ANCHORS, 2, l_coord=3, l_obj=2, l_noobj=0.5, l_prob=4)(*args, insize=64)
    iou = 0.5625 / 1.4375
    assert_terms(out, 3 * 0.21875, 2 * (0.5 - iou) ** 2 + 7 * 0.5 * 0.25, 4 * 0.5)


# ---------------------------------------------------------------------------------------------
# YOLOv3 by hand. Two scales, strides (16, 8), insize 32: G = 2 and 4. Scale 0 has one anchor
# (16, 16) px, scale 1 two, (8, 4) and (8, 8): K = 4 * 1 + 16 * 2 = 36, scale 1 starts at 4.
# With all raw outputs 0, BCE(0; t) = log 2 for any t.
# ---------------------------------------------------------------------------------------------
V3_ANCHORS = (((16.0, 16.0),), ((8.0, 4.0), (8.0, 8.0)))
V3_STRIDES = (16, 8)


def v3_loss(**kw):
    return YOLOv3Loss(V3_ANCHORS, n_fg_class=2, strides=V3_STRIDES, **kw)


def test_v3_single_truth_by_hand():
    # Truth (2, 2, 10, 10): centre 6, size 8 x 8. IoU_shape: (16,16) 64/256, (8,4) 32/64,
    # (8,8) 1 -> m = 2: scale 1, a = 1; i = j = floor(6 / 8) = 0; slot 4 + 0 * 2 + 1 = 5.
    locs, objs, confs = zeros(1, 36, 2)
    locs[0, 5] = (1.0, -1.0, 0.5, 0.0)
    objs[0, 5] = 1.5
    confs[0, 5] = (2.0, -1.0)
    out = v3_loss()(locs, objs, confs, [boxes((2, 2, 10, 10))], [labels(1)], insize=32)
    sp = lambda x: math.log1p(math.exp(x))     # noqa: E731
    w = 2 - (8 / 32) * (8 / 32)
    box = w * ((sp(1.0) - 0.75 * 1.0) + (sp(-1.0) - 0.75 * -1.0)
               + 0.5 * (0.5 - math.log(8 / 8)) ** 2 + 0.5 * (0.0 - math.log(8 / 8)) ** 2)
    # Others, zero outputs: (16,16) at (8, 8) -> [0, 0, 16, 16]: IoU 64/256; (8,4) at (4, 4)
    # -> [0, 2, 8, 6]: 24 / (32 + 64 - 24); none above 0.5, so 35 no-object terms.
    conf = (sp(1.5) - 1.5) + 35 * LOG2
    prob = (sp(2.0) - 0 * 2.0) + (sp(-1.0) - 1 * -1.0)
    assert_terms(out, box, conf, prob, rtol=1e-5)


@pytest.mark.parametrize('ignore_thresh, counted', [(0.5, True), (0.49, False)])
def test_v3_ignore_thresh_is_inclusive(ignore_thresh, counted):
    # Truth (0, 0, 8, 8): centre 4, size 8 -> slot 5 (scale 1, cell 0, anchor (8, 8)).
    # Slot 4 (anchor (8, 4)) predicts [0, 2, 8, 6] exactly: IoU 32 / (64 + 32 - 32) = 0.5.
    # best_iou <= ignore_thresh keeps the no-object term.
    locs, objs, confs = zeros(1, 36, 2)
    objs[0, 4] = -3.0
    out = v3_loss(ignore_thresh=ignore_thresh)(locs, objs, confs, [boxes((0, 0, 8, 8))],
                                               [labels(0)], insize=32)
    box = (2 - 0.25 * 0.25) * (2 * (LOG2 - 0.5 * 0) + 0)
    # Slot 0 ((16,16) at (8, 8)): [0, 0, 16, 16] -> 0.25. Every other slot is below 0.5.
    conf = LOG2 + 34 * LOG2 + (math.log1p(math.exp(-3.0)) if counted else 0.0)
    assert_terms(out, box, conf, 2 * LOG2, rtol=1e-5)


@pytest.mark.parametrize('thresh, counted', [(0.5, False), (0.51, True)])
def test_v2_thresh_is_inclusive(thresh, counted):
    # The same geometry through YOLOv2: stride 8, insize 32 -> G = 4; anchors (1, 0.5) and
    # (1, 1) cells -> A = 2, K = 32. The truth (0, 0, 8, 8) is (1, 1) cells centred
    # (0.5, 0.5): anchor 1, slot 1, offsets and sizes exact, so box = 0; slot 1 predicts the
    # truth itself: IoU 1, conf 5 * (0.5 - 1)^2. Slot 0 (anchor (1, 0.5)) predicts
    # [0, 0.25, 1, 0.75]: IoU exactly 0.5, and best_iou >= thresh removes its no-object term.
    loss = YOLOv2Loss(((1.0, 0.5), (1.0, 1.0)), n_fg_class=2, stride=8, thresh=thresh)
    locs, objs, confs = zeros(1, 32, 2)
    objs[0, 0] = 3.0
    out = loss(locs, objs, confs, [boxes((0, 0, 8, 8))], [labels(0)], insize=32)
    conf = 5 * 0.25 + 30 * 0.25 + (sig(3.0) ** 2 if counted else 0.0)
    assert_terms(out, 0.0, conf, 0.5)


def test_v3_anchor_tie_across_scales_goes_to_the_first():
    # Anchors (16, 8) at scale 0 and (8, 16), (4, 4) at scale 1. A 16 x 16 truth has
    # IoU_shape 1/2 with both of the first two: m = 0, scale 0 (stride 16).
    anchors = (((16.0, 8.0),), ((8.0, 16.0), (4.0, 4.0)))
    loss = YOLOv3Loss(anchors, n_fg_class=2, strides=V3_STRIDES)
    locs, objs, confs = zeros(1, 36, 2)
    out = loss(locs, objs, confs, [boxes((0, 0, 16, 16))], [labels(0)], insize=32)
    # Centre 8 -> i = j = floor(8 / 16) = 0, offsets 0.5; sizes log(16/16), log(16/8).
    box = (2 - 0.25) * (2 * (LOG2 - 0.5 * 0) + 0.5 * 0 + 0.5 * math.log(2.0) ** 2)
    # Slot 0 predicts [0, 4, 16, 12]: the one prediction above 0.5 is slot 0 itself (in R).
    assert_terms(out, box, LOG2 + 35 * LOG2, 2 * LOG2, rtol=1e-5)


def test_v3_later_truth_wins_the_slot():
    # (24, 24, 32, 32): centre 28, size 8 -> anchor (8, 8) (m = 2), row = column = 3 of
    # scale 1: slot 4 + (3 * 4 + 3) * 2 + 1 = 35. (26, 26, 32, 32): centre 29, size 6 ->
    # IoU_shape (8, 8) 36/64 beats (8, 4) 24/44 and (16, 16) 36/256: the same slot 35.
    # The second is listed later, so it supplies the targets (and its label, 1).
    locs, objs, confs = zeros(1, 36, 2)
    confs[0, 35] = (0.5, -0.5)
    bbox = boxes((24, 24, 32, 32), (26, 26, 32, 32))
    out = v3_loss()(locs, objs, confs, [bbox], [labels(0, 1)], insize=32)
    sp = lambda x: math.log1p(math.exp(x))     # noqa: E731
    # BCE(0; 29 / 8 - 3) = log 2 for both offsets; sizes log(6 / 8).
    box = (2 - (6 / 32) ** 2) * (2 * LOG2 + 2 * 0.5 * math.log(6 / 8) ** 2)
    # Slot 34 ((8, 4) at (28, 28)) predicts [24, 26, 32, 30]: IoU 32 / 64 = 0.5 with the
    # first truth (not above 0.5), 24 / (32 + 36 - 24) = 0.545 with the second: ignored.
    # Everything else is below 0.5, so 34 no-object terms plus BCE(0; 1) at slot 35.
    conf = LOG2 + 34 * LOG2
    prob = (sp(0.5) - 0) + (sp(-0.5) - 1 * -0.5)
    assert_terms(out, box, conf, prob, rtol=1e-5)


def test_v3_centre_on_far_edge_is_clamped_into_the_last_cell():
    # A flat box y in [nextafter(32, 0), 32], x in [0, 4]: in float32 its centre y rounds to
    # 32 = S, so floor(32 / 8) = 4 is clamped to row G - 1 = 3, offset target 4 - 3 = 1.
    # Height h = 1.9e-6: IoU_shape (8, 4) h/8 beats (8, 8) h/16 and (16, 16) h/64: m = 1,
    # scale 1, a = 0, column floor(2 / 8) = 0: slot 4 + (3 * 4 + 0) * 2 + 0 = 28.
    # The truth (24, 24, 32, 32) fits slot 35 exactly (offsets 0.5, sizes log 1).
    y_min = float(np.nextafter(np.float32(32), np.float32(0)))
    h = 32 - y_min
    locs, objs, confs = zeros(1, 36, 2)
    bbox = boxes((24, 24, 32, 32), (y_min, 0, 32, 4))
    out = v3_loss()(locs, objs, confs, [bbox], [labels(0, 1)], insize=32)
    box1 = (2 - 0.25 * 0.25) * (2 * LOG2)
    box2 = (2 - (h / 32) * (4 / 32)) * ((LOG2 - 1.0 * 0) + (LOG2 - 0.25 * 0)
                                        + 0.5 * math.log(h / 8) ** 2 + 0.5 * math.log(4 / 4) ** 2)
    # R = {28, 35}; slot 34 meets the first truth at IoU 0.5 exactly (kept); the flat box
    # overlaps nothing by more than 0.5.
    assert_terms(out, box1 + box2, 2 * LOG2 + 34 * LOG2, 4 * LOG2, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# Random cross-checks against the loop transcription.
# ---------------------------------------------------------------------------------------------

def random_truths(rng, n_image, insize, n_class, max_r=6):
    """Boxes inside the image, some touching the edges, some duplicated; R = 0 included."""
    bboxes, labels_ = [], []
    for n in range(n_image):
        r = int(rng.randint(0, max_r + 1)) if n else 0
        y = np.sort(rng.uniform(0, insize, (r, 2)), axis=1)
        x = np.sort(rng.uniform(0, insize, (r, 2)), axis=1)
        b = np.stack([y[:, 0], x[:, 0], y[:, 1], x[:, 1]], axis=1)
        b[rng.rand(r) < 0.25, 2] = insize
        b[rng.rand(r) < 0.25, 3] = insize
        b[rng.rand(r) < 0.2, 0] = 0
        b = b.astype(np.float32)
        b = b[(b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])]
        if len(b) >= 2 and rng.rand() < 0.5:
            b[-1] = b[0]                      # duplicate box, possibly another label
        bboxes.append(b)
        labels_.append(rng.randint(0, n_class, len(b)).astype(np.int32))
    return bboxes, labels_


def random_outputs(rng, n_image, n_slot, n_class):
    return ((rng.randn(n_image, n_slot, 4) * 0.8).astype(np.float32),
            (rng.randn(n_image, n_slot) * 2).astype(np.float32),
            (rng.randn(n_image, n_slot, n_class) * 2).astype(np.float32))


def plant(locs, bboxes, slot_cells, rng):
    """Makes slots near each truth predict it with jitter, so IoUs straddle the threshold.

    slot_cells: (K, 4) array of (cell_y, cell_x, stride, anchor_h, anchor_w) rows.
    """
    for n, bbox in enumerate(bboxes):
        for y0, x0, y1, x1 in bbox:
            cy, cx, h, w = (y0 + y1) / 2, (x0 + x1) / 2, y1 - y0, x1 - x0
            for k in np.flatnonzero((slot_cells[:, 0] == np.floor(cy / slot_cells[:, 2]))
                                    & (slot_cells[:, 1] == np.floor(cx / slot_cells[:, 2]))):
                i, j, st, ah, aw = slot_cells[k]
                fy = np.clip(cy / st - i, 0.02, 0.98)
                fx = np.clip(cx / st - j, 0.02, 0.98)
                jit = rng.randn(4) * 0.3
                locs[n, k] = (np.log(fy / (1 - fy)) + jit[0], np.log(fx / (1 - fx)) + jit[1],
                              np.log(h / ah) + jit[2], np.log(w / aw) + jit[3])


def slot_table(anchors, strides, insize):
    rows = []
    for st, scale_anchors in zip(strides, anchors):
        g = insize // st
        for i in range(g):
            for j in range(g):
                for ah, aw in scale_anchors:
                    rows.append((i, j, st, ah, aw))
    return np.array(rows, dtype=np.float64)


def compare(out, expected, rtol=1e-5):
    for key, want in expected.items():
        np.testing.assert_allclose(float(out[key].array), want, rtol=rtol, atol=1e-5,
                                   err_msg=key)


@pytest.mark.parametrize('seed', range(12))
def test_v2_matches_reference(seed):
    rng = np.random.RandomState(seed)
    insize = 32 * int(rng.randint(2, 6))
    n_class = int(rng.randint(1, 5))
    kw = dict(l_coord=rng.uniform(0.5, 2), l_obj=5.0, l_noobj=rng.uniform(0.5, 2),
              l_prob=1.0, thresh=float(rng.choice([0.6, 0.5, 0.3])))
    anchors = YOLOv2._anchors
    n_slot = (insize // 32) ** 2 * len(anchors)
    bboxes, labels_ = random_truths(rng, 3, insize, n_class)
    locs, objs, confs = random_outputs(rng, 3, n_slot, n_class)
    px = [[(h * 32, w * 32) for h, w in anchors]]
    plant(locs, bboxes, slot_table(px, (32,), insize), rng)
    out = YOLOv2Loss(anchors, n_class, **kw)(locs, objs, confs, bboxes, labels_, insize=insize)
    compare(out, ref.yolov2(locs, objs, confs, bboxes, labels_, insize, anchors, n_class, **kw))


@pytest.mark.parametrize('seed', range(12))
def test_v3_matches_reference(seed):
    rng = np.random.RandomState(100 + seed)
    if seed % 3 == 2:
        # A small network's layout: 2 scales, unequal anchor counts.
        anchors = (((24.0, 30.0), (40.0, 36.0)), ((6.0, 8.0), (12.0, 10.0), (14.0, 20.0)))
        strides = (16, 8)
        insize = 16 * int(rng.randint(2, 6))
    else:
        strides = (32, 16, 8)
        insize = 32 * int(rng.randint(2, 5))
        # ChainerCV's anchors shrunk to the small input, so that every scale gets truths.
        anchors = tuple(tuple((h * insize / 416, w * insize / 416) for h, w in sa)
                        for sa in YOLOv3._anchors)
    n_class = int(rng.randint(1, 5))
    kw = dict(l_coord=rng.uniform(0.5, 2), ignore_thresh=float(rng.choice([0.5, 0.7, 0.3])))
    n_slot = sum((insize // s) ** 2 * len(a) for s, a in zip(strides, anchors))
    bboxes, labels_ = random_truths(rng, 3, insize, n_class)
    locs, objs, confs = random_outputs(rng, 3, n_slot, n_class)
    plant(locs, bboxes, slot_table(anchors, strides, insize), rng)
    out = YOLOv3Loss(anchors, n_class, strides=strides, **kw)(locs, objs, confs, bboxes,
                                                              labels_, insize=insize)
    compare(out, ref.yolov3(locs, objs, confs, bboxes, labels_, insize, anchors, n_class,
                            strides=strides, **kw))


def test_random_cases_exercise_the_ignore_mask():
    # The cross-checks above are only meaningful if some slots outside R are ignored:
    # count them with the reference's own rule on one planted case.
    rng = np.random.RandomState(7)
    insize, anchors = 96, YOLOv2._anchors
    bboxes, labels_ = random_truths(rng, 3, insize, 2)
    locs, objs, confs = random_outputs(rng, 3, 9 * 5, 2)
    plant(locs, bboxes, slot_table([[(h * 32, w * 32) for h, w in anchors]], (32,), insize), rng)
    full = ref.yolov2(locs, objs, confs, bboxes, labels_, insize, anchors, 2, thresh=1.0)
    part = ref.yolov2(locs, objs, confs, bboxes, labels_, insize, anchors, 2, thresh=0.6)
    assert part['loss/conf'] < full['loss/conf']


def dense_best_iou(locs, bboxes, table):
    """best_iou of every slot by brute force: decode all (float64), IoU with all truths.

    table: (K, 5) rows (i, j, stride, anchor_h, anchor_w) in pixels. Returns (N, K).
    """
    i, j, st, ah, aw = table.T
    loc = locs.astype(np.float64)
    cy = (i + 1 / (1 + np.exp(-loc[..., 0]))) * st
    cx = (j + 1 / (1 + np.exp(-loc[..., 1]))) * st
    h, w = ah * np.exp(loc[..., 2]), aw * np.exp(loc[..., 3])
    pred = np.stack((cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2), axis=-1)
    best = np.zeros(locs.shape[:2])
    for n, bbox in enumerate(bboxes):
        if len(bbox):
            best[n] = bbox_iou(pred[n], bbox.astype(np.float64)).max(axis=1)
    return best


def plant_far(locs, bboxes, table, thresh, rng):
    """Slots whose box holds a truth at the edge of what IoU > thresh allows.

    For each truth and anchor, a box as wide as the truth and ``1 / thresh`` times as tall
    (times 0.97-0.995), moved along y until one end meets the truth's: IoU = area ratio,
    just above thresh, with the centre as far from the truth's as that IoU permits.
    """
    for n, bbox in enumerate(bboxes):
        for y0, x0, y1, x1 in bbox:
            cy, cx, h, w = (y0 + y1) / 2, (x0 + x1) / 2, y1 - y0, x1 - x0
            for ah, aw in {(r[3], r[4]) for r in table}:
                hp = h / thresh * rng.uniform(0.97, 0.995)
                py = cy + rng.choice([-1, 1]) * (hp - h) / 2
                rows = np.flatnonzero((table[:, 3] == ah) & (table[:, 4] == aw)
                                      & (table[:, 0] == np.floor(py / table[:, 2]))
                                      & (table[:, 1] == np.floor(cx / table[:, 2])))
                for k in rows:
                    i, j, st = table[k, :3]
                    fy, fx = py / st - i, cx / st - j
                    if 1e-3 < fy < 1 - 1e-3 and 1e-3 < fx < 1 - 1e-3:
                        locs[n, k] = (np.log(fy / (1 - fy)), np.log(fx / (1 - fx)),
                                      np.log(hp / ah), np.log(w / aw))


def wide_outputs(rng, n_image, n_slot, bboxes, table, thresh):
    """Outputs with sizes from tiny to huge (some beyond every size bin), planted near truths
    and at the edge of the centre-distance bound.

    Every objectness logit is 3, so each slot's no-object term is large and a single slot
    wrongly in or out of the mask changes the loss far beyond rounding.
    """
    locs = (rng.randn(n_image, n_slot, 4) * np.array([0.8, 0.8, 2, 2])).astype(np.float32)
    wild = rng.rand(n_image, n_slot) < 0.05
    locs[..., 2][wild] = rng.choice([-25.0, 25.0], wild.sum())
    plant(locs, bboxes, table, rng)
    plant_far(locs, bboxes, table, thresh, rng)
    return (locs, np.full((n_image, n_slot), 3.0, np.float32),
            np.zeros((n_image, n_slot, 2), np.float32))


@pytest.mark.parametrize('thresh', [0.6, 0.35, 0.9])
def test_v2_no_object_mask_matches_dense_search(thresh):
    rng = np.random.RandomState(int(thresh * 100))
    insize, anchors = 320, YOLOv2._anchors
    table = slot_table([[(h * 32, w * 32) for h, w in anchors]], (32,), insize)
    bboxes, labels_ = log_uniform_truths(rng, 2, 25, insize)
    locs, objs, confs = wide_outputs(rng, 2, len(table), bboxes, table, thresh)
    out = YOLOv2Loss(anchors, 2, thresh=thresh)(locs, objs, confs, bboxes, labels_,
                                                insize=insize)
    best = dense_best_iou(locs, bboxes, table)
    o = sig(3.0)
    want = 0.0
    for n in range(2):
        truths, owner = ref.yolov2_truths(bboxes[n], labels_[n], insize, anchors)
        for k in range(len(table)):
            if k in owner:
                cell = table[k]
                pcy, pcx = cell[0] + sig(locs[n, k, 0]), cell[1] + sig(locs[n, k, 1])
                ph = cell[3] / 32 * math.exp(locs[n, k, 2])
                pw = cell[4] / 32 * math.exp(locs[n, k, 3])
                pred = (pcy - ph / 2, pcx - pw / 2, pcy + ph / 2, pcx + pw / 2)
                want += 5 * (o - ref.iou(pred, owner[k]['box'])) ** 2
            elif best[n, k] < thresh:
                want += o ** 2
    assert 0 < (best >= thresh).sum()
    np.testing.assert_allclose(float(out['loss/conf'].array), want / 2, rtol=1e-5)


@pytest.mark.parametrize('thresh', [0.5, 0.8, 0.3])
def test_v3_no_object_mask_matches_dense_search(thresh):
    rng = np.random.RandomState(int(thresh * 100))
    insize, anchors = 320, YOLOv3._anchors
    table = slot_table(anchors, (32, 16, 8), insize)
    bboxes, labels_ = log_uniform_truths(rng, 2, 25, insize)
    locs, objs, confs = wide_outputs(rng, 2, len(table), bboxes, table, thresh)
    out = YOLOv3Loss(anchors, 2, ignore_thresh=thresh)(locs, objs, confs, bboxes, labels_,
                                                       insize=insize)
    best = dense_best_iou(locs, bboxes, table)
    want = 0.0
    for n in range(2):
        _, owner = ref.yolov3_truths(bboxes[n], labels_[n], insize, anchors)
        in_r = np.zeros(len(table), bool)
        in_r[list(owner)] = True
        want += in_r.sum() * ref.bce(3.0, 1.0)
        want += (~in_r & (best[n] <= thresh)).sum() * ref.bce(3.0, 0.0)
    assert 0 < (best > thresh).sum()
    np.testing.assert_allclose(float(out['loss/conf'].array), want / 2, rtol=1e-5)


def log_uniform_truths(rng, n_image, n_truth, insize):
    bboxes, labels_ = [], []
    for _ in range(n_image):
        size = np.exp(rng.uniform(np.log(4), np.log(insize * 0.7), (n_truth, 2)))
        start = rng.uniform(0, 1, (n_truth, 2)) * (insize - size)
        bboxes.append(np.concatenate([start, start + size], axis=1).astype(np.float32))
        labels_.append(rng.randint(0, 2, n_truth).astype(np.int32))
    return bboxes, labels_


# ---------------------------------------------------------------------------------------------
# Invariances.
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize('version', ['v2', 'v3'])
def test_batch_permutation_and_empty_images(version):
    rng = np.random.RandomState(3)
    if version == 'v2':
        loss, insize, n_slot = YOLOv2Loss(YOLOv2._anchors, 3), 96, 9 * 5
    else:
        loss, insize, n_slot = YOLOv3Loss(YOLOv3._anchors, 3), 64, (4 + 16 + 64) * 3
    bboxes, labels_ = random_truths(rng, 4, insize, 3)
    locs, objs, confs = random_outputs(rng, 4, n_slot, 3)
    out = value(loss(locs, objs, confs, bboxes, labels_, insize=insize))
    perm = [2, 0, 3, 1]
    out_p = value(loss(locs[perm], objs[perm], confs[perm], [bboxes[p] for p in perm],
                       [labels_[p] for p in perm], insize=insize))
    for key in out:
        np.testing.assert_allclose(out_p[key], out[key], rtol=1e-6)

    # Image 0 has no truths: alone, it contributes only the no-object term over every slot.
    empty = value(loss(locs[:1], objs[:1], confs[:1], bboxes[:1], labels_[:1], insize=insize))
    o = objs[0].astype(np.float64)
    if version == 'v2':
        want = np.sum((1 / (1 + np.exp(-o))) ** 2)
    else:
        want = np.sum(np.logaddexp(0, o))            # BCE(to; 0) = softplus(to)
    assert empty['loss/box'] == 0 and empty['loss/prob'] == 0
    np.testing.assert_allclose(empty['loss/conf'], want, rtol=1e-5)
    np.testing.assert_allclose(empty['loss'], want, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# Gradients.
# ---------------------------------------------------------------------------------------------

def _tiny_case(version, seed=0):
    rng = np.random.RandomState(seed)
    if version == 'v2':
        loss, insize, n_slot = YOLOv2Loss(V2_ANCHORS, 2), 64, 8
    else:
        loss, insize, n_slot = v3_loss(), 32, 36
    bboxes = [boxes((4, 6, 30, 22), (20, 20, 60 if version == 'v2' else 32, 31)), boxes()]
    labels_ = [labels(0, 1), labels()]
    locs, objs, confs = random_outputs(rng, 2, n_slot, 2)
    return loss, insize, bboxes, labels_, locs, objs, confs


@pytest.mark.parametrize('version', ['v2', 'v3'])
def test_backward_gives_finite_gradients_only_to_the_outputs(version):
    loss, insize, bboxes, labels_, locs, objs, confs = _tiny_case(version)
    vs = [chainer.Variable(a) for a in (locs, objs, confs)]
    out = loss(*vs, bboxes, labels_, insize=insize)
    assert all(out[k].shape == () for k in out)
    out['loss'].backward()
    for v in vs:
        assert v.grad is not None and v.grad.shape == v.shape
        assert np.isfinite(v.grad).all()
    # Image 1 has no truths: only its objectness gets a gradient.
    assert np.abs(vs[0].grad[1]).max() == 0 and np.abs(vs[2].grad[1]).max() == 0
    assert np.abs(vs[1].grad[1]).max() > 0


def _check_numerically(loss, insize, bboxes, labels_, locs, objs, confs, locs_free=True):
    def f(*xs):
        ls = xs[0] if locs_free else locs
        os_, cs = xs[-2:]
        return loss(ls, os_, cs, bboxes, labels_, insize=insize)['loss']

    inputs = (locs, objs, confs) if locs_free else (objs, confs)
    # float32 outputs: a wide step keeps rounding (~1e-6 of the loss) far below the
    # tolerance; a fixed direction keeps the check away from the masks' discontinuities.
    np.random.seed(0)
    gradient_check.check_backward(f, inputs, np.ones((), np.float32), eps=1e-2, atol=1e-3,
                                  rtol=1e-2)


def test_numerical_gradient_v3():
    _check_numerically(*_tiny_case('v3', seed=1))


def test_numerical_gradient_v2():
    # The IoU target of the objectness term is a constant, so finite differences in locs
    # agree with backward only where that term is off (l_obj = 0) ...
    loss, insize, bboxes, labels_, locs, objs, confs = _tiny_case('v2', seed=1)
    _check_numerically(YOLOv2Loss(V2_ANCHORS, 2, l_obj=0.0), insize, bboxes, labels_, locs,
                       objs, confs)
    # ... and with it on, in objs and confs.
    _check_numerically(loss, insize, bboxes, labels_, locs, objs, confs, locs_free=False)


@pytest.mark.parametrize('version', ['v2', 'v3'])
def test_conf_term_sends_no_gradient_into_locs(version):
    # Neither the IoU target (v2) nor the ignore mask is differentiated.
    loss, insize, bboxes, labels_, locs, objs, confs = _tiny_case(version, seed=1)
    vlocs = chainer.Variable(locs)
    out = loss(vlocs, objs, confs, bboxes, labels_, insize=insize)
    out['loss/conf'].backward()
    assert vlocs.grad is None or not vlocs.grad.any()


@pytest.mark.parametrize('version', ['v2', 'v3'])
def test_momentum_sgd_on_free_outputs_decreases_the_loss(version):
    loss, insize, bboxes, labels_, locs, objs, confs = _tiny_case(version, seed=2)

    class Free(chainer.Link):
        def __init__(self):
            super(Free, self).__init__()
            with self.init_scope():
                self.locs = chainer.Parameter(locs)
                self.objs = chainer.Parameter(objs)
                self.confs = chainer.Parameter(confs)

    free = Free()
    opt = chainer.optimizers.MomentumSGD(lr=0.05, momentum=0.9)
    opt.setup(free)
    history = []
    for _ in range(40):
        out = loss(free.locs, free.objs, free.confs, bboxes, labels_, insize=insize)
        history.append({k: float(v.array) for k, v in out.items()})
        free.cleargrads()
        out['loss'].backward()
        opt.update()
    assert history[-1]['loss'] < 0.3 * history[0]['loss']
    assert history[-1]['loss/box'] < history[0]['loss/box']
    assert history[-1]['loss/prob'] < history[0]['loss/prob']


# ---------------------------------------------------------------------------------------------
# Bad input.
# ---------------------------------------------------------------------------------------------

def test_bad_input_raises_clear_errors():
    loss = YOLOv2Loss(V2_ANCHORS, 2)
    locs, objs, confs = zeros(2, 8, 2)
    good = [boxes((0, 0, 8, 8)), boxes()]
    lab = [labels(0), labels()]
    with pytest.raises(ValueError, match='image 1'):
        loss(locs, objs, confs, [good[0], boxes((5, 5, 5, 9))], [lab[0], labels(1)], insize=64)
    with pytest.raises(ValueError, match='outside'):
        loss(locs, objs, confs, [boxes((0, 0, 65, 8)), boxes()], lab, insize=64)
    with pytest.raises(ValueError, match=r'\[0, 2\)'):
        loss(locs, objs, confs, good, [labels(2), labels()], insize=64)
    with pytest.raises(ValueError, match='K = 8'):
        loss(locs, objs, confs, good, lab, insize=96)
    with pytest.raises(ValueError, match='multiple'):
        loss(locs, objs, confs, good, lab, insize=48)
    with pytest.raises(ValueError, match='2 bbox arrays'):
        loss(locs[:1], objs[:1], confs[:1], good, lab, insize=64)
    with pytest.raises(ValueError, match='float32'):
        loss(locs.astype(np.float64), objs, confs, good, lab, insize=64)
    with pytest.raises(ValueError, match='scales'):
        YOLOv3Loss(V3_ANCHORS, 2)                       # 2 scales, 3 default strides
    with pytest.raises(ValueError, match='threshold'):
        YOLOv2Loss(V2_ANCHORS, 2, thresh=0)
