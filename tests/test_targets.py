"""Target assignment on its own (chainer_yolo_dist.detection.targets).

The losses' tests (tests/test_losses.py) check the assignment through the loss values; these
check the assigner's public entry point and the int16 size codes of the ignore mask's filter.
"""
import numpy as np
import pytest

from chainer_yolo_dist.detection import targets
from chainer_yolo_dist.detection.losses import YOLOv2Loss

# insize 64, stride 32 -> G = 2; anchors (1, 1), (2, 2) grid cells -> K = 8 (as test_losses).
V2_ANCHORS = ((1.0, 1.0), (2.0, 2.0))


def v2_assigner(thresh=0.6):
    return targets.TargetAssigner([V2_ANCHORS], (32,), 32, n_fg_class=2, thresh=thresh,
                                  ignore_inclusive=True)


def test_assign_gives_the_responsible_slot_and_its_targets():
    # Truth (8, 8, 40, 40) px: centre 24 px = 0.75 cells, size 1 cell -> anchor 0, cell (0, 0),
    # slot 0; nh = nw = 0.5.
    loc = np.zeros((1, 8, 4), np.float32)
    tg = v2_assigner().assign(loc, [np.array([[8, 8, 40, 40]], np.float32)],
                              [np.array([1], np.int32)], insize=64)
    assert tg.key.tolist() == [0]
    np.testing.assert_allclose(tg.t_yx, [[0.75, 0.75]])
    np.testing.assert_allclose(tg.t_hw, [[0, 0]])
    np.testing.assert_allclose(tg.scale, [2 - 0.25])
    assert tg.label.tolist() == [1]
    np.testing.assert_allclose(tg.iou, [0.5625 / 1.4375], rtol=1e-6)
    assert tg.noobj.shape == (1, 8)
    assert tg.noobj.tolist() == [[False] + [True] * 7]


def test_the_losses_assign_with_their_assigner():
    loss = YOLOv2Loss(V2_ANCHORS, n_fg_class=2, thresh=0.3)
    assert loss.assigner.thresh == 0.3 and loss.assigner.ignore_inclusive
    assert loss.assigner.layout(64).n_slot == 8


def test_assign_rejects_outputs_of_another_insize():
    with pytest.raises(ValueError, match='K = 8'):
        v2_assigner().assign(np.zeros((1, 18, 4), np.float32), [np.zeros((0, 4))],
                             [np.zeros(0, np.int32)], insize=64)


def test_size_codes_hold_both_bins_in_base_128_digits():
    lh = np.array([-100., 0., 0.49, 0.5, 100.], np.float32)
    lw = np.array([0., -0.5, 0., 0., 0.], np.float32)
    # limit 1: bins of width 1/2, bin 32 starting at 0, clipped to [0, 63].
    code = targets._size_code(np, lh, lw, 1.0)
    assert code.dtype == np.int16
    assert code.tolist() == [0 * 128 + 32, 32 * 128 + 31, 32 * 128 + 32, 33 * 128 + 32,
                             63 * 128 + 32]


def test_codes_close_is_both_bins_within_two_for_every_pair_of_codes():
    q = np.arange(64, dtype=np.int16)
    qh, qw = np.meshgrid(q, q, indexing='ij')
    code = (qh * 128 + qw).ravel()
    close = targets._codes_close(np, code[:, None], code[None, :])
    expected = ((np.abs(qh.ravel()[:, None] - qh.ravel()[None, :]) <= 2)
                & (np.abs(qw.ravel()[:, None] - qw.ravel()[None, :]) <= 2))
    assert (close == expected).all()


def test_log_sizes_within_the_limit_get_close_codes():
    rng = np.random.RandomState(0)
    limit = 0.7
    a = rng.uniform(-30, 30, (2, 10000)).astype(np.float32)
    b = a + rng.uniform(-limit, limit, a.shape).astype(np.float32) * np.float32(0.999)
    assert targets._codes_close(np, targets._size_code(np, a[0], a[1], limit),
                                targets._size_code(np, b[0], b[1], limit)).all()
