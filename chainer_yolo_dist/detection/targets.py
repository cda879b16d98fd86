"""YOLO target assignment: which slot answers for each truth, its targets, the ignore mask.

The losses of :mod:`chainer_yolo_dist.detection.losses` are formulas over what this module
produces, as ChainerCV's ``multibox_loss`` is over what ``MultiboxCoder`` encodes. The rules are
those of ``docs/loss.md`` (normative):

* the responsible slot of a truth is its best shape match over every anchor of every scale
  (ties: the first), at the cell holding its centre;
* when two truths of an image claim one slot, the later one wins it;
* a slot outside the responsible ones is *ignored* (gets no no-object term) when its predicted
  box overlaps some truth of its image with IoU above a threshold (``>=`` for YOLOv2, ``>``
  for YOLOv3).

Slots follow ChainerCV's ``YOLOv2.forward`` / ``YOLOv3.forward``: slot
``k = offset_s + (i * G_s + j) * A_s + a`` (scale ``s``, row ``i`` (y), column ``j`` (x),
anchor ``a``), ``G_s = insize / stride_s``; raw outputs ``loc`` (N, K, 4) are
``(ty, tx, th, tw)``. Truths are ChainerCV's ``bbox`` (R, 4) float32
``(y_min, x_min, y_max, x_max)`` in input pixels and ``label`` (R,) int in ``[0, C)``.
Internally lengths are in ``unit`` pixels (grid cells for YOLOv2, pixels for YOLOv3).

Everything is vectorised over the whole batch, on NumPy or CuPy. The ignore mask needs, for
each slot, whether some truth overlaps its predicted box enough. Evaluating all N x K x R
pairs costs tens of millions of IoUs for YOLOv3 at 608 px, so the mask is computed from a
candidate set that provably contains every such pair (see :func:`_overlap_bound`), which is
exact and far smaller.
"""
import math

import numpy as np

import chainer
from chainer import backend


__all__ = ['Layout', 'TargetAssigner', 'Targets']

# Slack on the candidate windows. They only have to be a superset of the pairs that can pass
# the threshold, so being generous costs a few extra IoUs and guards against float rounding.
_WINDOW_SLACK = 1e-3


def _overlap_bound(thresh):
    """Bound on the centre distance of two boxes whose IoU reaches ``thresh``.

    If ``IoU(P, T) >= t`` then along y the overlap ``oh`` satisfies
    ``oh >= t * max(hP, hT)`` (because ``inter <= oh * min(wP, wT)`` and
    ``union >= max(areaP, areaT)``) and ``oh <= (hP + hT) / 2 - |cyP - cyT|``. Hence
    ``|cyP - cyT| <= (hP + hT) / 2 - t * max(hP, hT) <= c(t) * min(hP, hT)`` with
    ``c(t) = (1 - t) / min(2 t, 1)`` (the maximum over ``hP / hT`` in ``[t, 1 / t]``, the
    range that ``t * max <= oh <= min`` forces). The same holds along x.

    Returns:
        float: ``c(t)``.
    """
    return (1.0 - thresh) / min(2.0 * thresh, 1.0)


def _sigmoid(xp, x):
    # Same formula as chainer.functions.sigmoid: no overflow warning for large |x|.
    return xp.tanh(x * 0.5) * 0.5 + 0.5


def _iou(xp, p, t):
    """IoU of paired boxes.

    Args:
        p, t: (4, P) arrays of ``(y_min, x_min, y_max, x_max)`` rows.
    Returns:
        (P,) IoU.
    """
    ih = xp.minimum(p[2], t[2]) - xp.maximum(p[0], t[0])
    iw = xp.minimum(p[3], t[3]) - xp.maximum(p[1], t[1])
    inter = xp.maximum(ih, 0) * xp.maximum(iw, 0)
    area_p = (p[2] - p[0]) * (p[3] - p[1])
    area_t = (t[2] - t[0]) * (t[3] - t[1])
    return inter / (area_p + area_t - inter)


def _owners(xp, counts):
    """Run of every element when runs of ``counts`` elements are laid end to end.

    Args:
        counts (R,) int64, zeros allowed.
    Returns:
        (owner (C,) int64 with ``owner[c]`` the run holding element c, start (R,) int64 the
        first element of each run), ``C = counts.sum()``.
    """
    ends = xp.cumsum(counts)
    total = int(ends[-1]) if len(ends) else 0
    # A run boundary at every end; cumulating the boundaries numbers the runs. Faster than
    # repeat() for many short runs, and available in CuPy, whose repeat takes no count array.
    marks = xp.bincount(ends[:-1], minlength=total + 1)[:total]
    return xp.cumsum(marks), ends - counts


# ---- size codes ---------------------------------------------------------------------------
#
# The ignore mask's candidate cells (millions for YOLOv3 at 608 px) are first filtered on size:
# a slot can only reach the threshold against a truth when its predicted height and width
# both lie within [t, 1 / t] times the truth's, i.e. |th - log(bh / A_h)| <= log(1 / t) and the
# same for w. Testing that on floats would gather two float32 per candidate and spread the
# truth's two values over its cells. Instead each (log h, log w) pair is packed into one
# int16 *size code*: a candidate gathers 2 bytes instead of 8, the truth's code is spread
# over its cells by one int16 running sum (as the slot keys are), and one subtraction tests
# both axes. The filter is coarse but never wrong in the direction that matters: it keeps
# every pair that passes the exact test, whose IoU then decides.
#
# Layout of a code (int16, always in [0, 8127]):
#
#     bits 15..13: 0    bits 12..7: qh (0..63)    bit 6: 0    bits 5..0: qw (0..63)
#
# i.e. ``qh * 128 + qw``; qw gets a 7-bit digit although it needs 6, so that a difference
# ``dw`` in (-64, 64) plus a small offset still fits one base-128 digit (see _codes_close).
# Each axis's log size ratio is cut into _CODE_BINS bins of width ``limit / _CODE_SPLIT``
# (bin 32 starts at ratio 1, log 0), the extreme bins holding everything beyond; two values at
# most ``limit`` apart then fall in bins at most _CODE_SPLIT apart (clipping keeps that true).
_CODE_BINS = 64
_CODE_SPLIT = 2


def _size_code(xp, lh, lw, limit):
    """Packs two log sizes (arrays of one shape) into int16 codes ``qh * 128 + qw``.

    ``qh``, ``qw`` in ``[0, 64)`` are the bins of ``lh``, ``lw`` (width ``limit / 2``, bin 32
    starting at 0); clipping first makes the int16 cast a floor.
    """
    scale = np.float32(_CODE_SPLIT / limit)
    half = _CODE_BINS // 2
    qh = xp.clip(lh * scale + half, 0, _CODE_BINS - 1).astype(np.int16)
    qw = xp.clip(lw * scale + half, 0, _CODE_BINS - 1).astype(np.int16)
    return qh * np.int16(128) + qw


def _codes_close(xp, a, b):
    """Whether both bins of codes ``a`` and ``b`` (int16) are at most _CODE_SPLIT apart."""
    # With s = _CODE_SPLIT, d = a - b = 128 dh + dw and |dw| < 64, so
    # d + 129 s = 128 (dh + s) + (dw + s) has both base-128 digits in [0, 2 s] exactly when
    # |dh| <= s and |dw| <= s; a negative dw + s borrows, leaving a low digit above 2 s,
    # and a negative total wraps to a large unsigned value. |d| <= 8127, so int16 holds it.
    s = _CODE_SPLIT
    u = (a - b + np.int16(129 * s)).view(np.uint16)
    return ((u & np.uint16(127)) <= 2 * s) & ((u >> np.uint16(7)) <= 2 * s)


class Layout(object):
    """Slot geometry of one input size, in the assigner's length unit.

    Attributes (all NumPy, moved to the device by :meth:`to`):
        n_slot (int): K, slots per image.
        cell_y, cell_x (K,) float32: row ``i`` and column ``j`` of each slot.
        stride (K,) float32: the slot's stride in units.
        anchor (K, 2) float32: the slot's anchor ``(h, w)`` in units.
        g_* (M,): per anchor group ``g`` (the anchors flattened over scales in order): stride,
            grid size, number of anchors of its scale, first slot of its scale, anchor index,
            size ``(h, w)`` and its log.
        uniform_nanchor (bool): every scale has the same number of anchors.
    """

    def __init__(self, anchors, strides, grids):
        cy, cx, st, an = [], [], [], []
        g_stride, g_grid, g_nanchor, g_offset, g_anchor = [], [], [], [], []
        offset = 0
        for stride, grid, scale_anchors in zip(strides, grids, anchors):
            n_a = len(scale_anchors)
            ii, jj, aa = np.meshgrid(np.arange(grid), np.arange(grid), np.arange(n_a),
                                     indexing='ij')
            cy.append(ii.ravel())
            cx.append(jj.ravel())
            st.append(np.full(ii.size, stride))
            an.append(np.asarray(scale_anchors, dtype=np.float64)[aa.ravel()])
            for a in range(n_a):
                g_stride.append(stride)
                g_grid.append(grid)
                g_nanchor.append(n_a)
                g_offset.append(offset)
                g_anchor.append(a)
            offset += grid * grid * n_a
        self.n_slot = offset
        self.cell_y = np.concatenate(cy).astype(np.float32)
        self.cell_x = np.concatenate(cx).astype(np.float32)
        self.stride = np.concatenate(st).astype(np.float32)
        self.anchor = np.concatenate(an).astype(np.float32)
        self.g_stride = np.asarray(g_stride, dtype=np.float32)
        self.g_grid = np.asarray(g_grid, dtype=np.int64)
        self.g_nanchor = np.asarray(g_nanchor, dtype=np.int64)
        self.g_offset = np.asarray(g_offset, dtype=np.int64)
        self.g_anchor = np.asarray(g_anchor, dtype=np.int64)
        self.g_size = np.concatenate(
            [np.asarray(s, dtype=np.float32).reshape(-1, 2) for s in anchors])
        self.g_log_size = np.log(self.g_size)
        self.uniform_nanchor = len(set(g_nanchor)) == 1

    def to(self, xp):
        """A copy whose array attributes live in ``xp``'s memory."""
        if xp is np:
            return self
        moved = Layout.__new__(Layout)
        for name, value in vars(self).items():
            setattr(moved, name, xp.asarray(value) if isinstance(value, np.ndarray) else value)
        return moved


class Targets(object):
    """What target assignment produces for one batch (arrays in the outputs' memory).

    Attributes:
        key (W,) int64: flat index ``n * K + k`` of every slot that some truth is responsible
            for; one entry per slot (the later truth won it).
        t_yx (W, 2) float32: centre offsets in the cell, ``(cy / stride - i, cx / stride - j)``.
        t_hw (W, 2) float32: ``(log(bh / anchor_h), log(bw / anchor_w))``.
        scale (W,) float32: ``2 - nh * nw``.
        label (W,) int32.
        iou (W,) float32: IoU of the slot's predicted box with its truth.
        noobj (N, K) bool: slots outside R whose ``best_iou`` passes the no-object test.
    """

    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)


class TargetAssigner(object):
    """Target assignment of one detector head; lengths are handled in ``unit`` pixels.

    Args:
        anchors: per scale, a sequence of ``(h, w)`` anchor sizes in units.
        strides: per scale, pixels per cell.
        unit (int): pixels per length unit.
        n_fg_class (int): number of classes C (labels are checked against it).
        thresh (float): IoU threshold of the ignore mask, in ``(0, 1]``.
        ignore_inclusive (bool): ignore ``best_iou >= thresh`` (YOLOv2) rather than
            ``> thresh`` (YOLOv3).
    """

    def __init__(self, anchors, strides, unit, n_fg_class, thresh, ignore_inclusive):
        if len(anchors) != len(strides) or not len(anchors):
            raise ValueError('anchors has %d scales but strides has %d'
                             % (len(anchors), len(strides)))
        for s, scale_anchors in enumerate(anchors):
            arr = np.asarray(scale_anchors, dtype=np.float64)
            if arr.ndim != 2 or arr.shape[1] != 2 or not len(arr) or not (arr > 0).all():
                raise ValueError('anchors of scale %d must be a non-empty list of positive '
                                 '(h, w) pairs, got %r' % (s, scale_anchors))
        if not 0 < thresh <= 1:
            raise ValueError('the IoU threshold must lie in (0, 1], got %r' % (thresh,))
        if int(n_fg_class) < 1:
            raise ValueError('n_fg_class must be positive, got %r' % (n_fg_class,))
        self.anchors = tuple(tuple(tuple(float(v) for v in hw) for hw in sa) for sa in anchors)
        self.strides = tuple(int(s) for s in strides)
        self.unit = int(unit)
        self.n_fg_class = int(n_fg_class)
        self.thresh = float(thresh)
        self.ignore_inclusive = bool(ignore_inclusive)
        self._layouts = {}

    def layout(self, insize, xp=np, device=None):
        """The cached :class:`Layout` of ``insize``, on ``device`` (default: CPU)."""
        key = (insize, str(device) if device is not None else xp.__name__)
        if key not in self._layouts:
            for stride in self.strides:
                if insize <= 0 or insize % stride:
                    raise ValueError('insize %d is not a positive multiple of stride %d'
                                     % (insize, stride))
            strides_u = [s / self.unit for s in self.strides]
            grids = [insize // s for s in self.strides]
            self._layouts[key] = Layout(self.anchors, strides_u, grids).to(xp)
        return self._layouts[key]

    def assign(self, loc, bboxes, labels, insize):
        """Targets of a batch, built on ``loc``'s device.

        Args:
            loc: (N, K, 4) float32 array (NumPy or CuPy), raw ``(ty, tx, th, tw)``.
            bboxes: N arrays (R_n, 4) ``(y_min, x_min, y_max, x_max)`` in input pixels,
                ``0 <= y_min < y_max <= insize`` (same for x). NumPy or CuPy.
            labels: N int arrays (R_n,) in ``[0, C)``.
            insize (int): side S of the square input, a multiple of every stride.

        Returns:
            Targets
        """
        xp = backend.get_array_module(loc)
        device = backend.get_device_from_array(loc)
        insize = int(insize)
        with chainer.using_device(device):
            layout = self.layout(insize, xp, device)
            if loc.ndim != 3 or loc.shape[1:] != (layout.n_slot, 4):
                raise ValueError('loc must be (N, K, 4) with K = %d at this insize, got %s'
                                 % (layout.n_slot, loc.shape))
            bbox, label, image = self._gather_truths(bboxes, labels, len(loc), insize, xp)
            return self._assign(xp, loc, bbox, label, image, insize, layout)

    def _gather_truths(self, bboxes, labels, n_image, insize, xp):
        """Concatenates the per-image truths; validates them on the host.

        Returns:
            (bbox (T, 4) float32 in pixels, label (T,) int32, image (T,) int64), in ``xp``.
        """
        if len(bboxes) != n_image or len(labels) != n_image:
            raise ValueError('got %d bbox arrays and %d label arrays for a batch of %d images'
                             % (len(bboxes), len(labels), n_image))
        cpu = backend.CpuDevice()
        bbs, lbs, imgs = [], [], []
        for n, (bbox, label) in enumerate(zip(bboxes, labels)):
            bbox = np.asarray(cpu.send(bbox), dtype=np.float32)
            label = np.asarray(cpu.send(label))
            if bbox.size == 0 and label.size == 0:
                continue
            if bbox.ndim != 2 or bbox.shape[1] != 4:
                raise ValueError('bbox of image %d must be (R, 4), got shape %s'
                                 % (n, bbox.shape))
            if label.shape != (len(bbox),):
                raise ValueError('label of image %d must be (R,) = (%d,), got shape %s'
                                 % (n, len(bbox), label.shape))
            if label.dtype.kind not in 'iu':
                raise ValueError('label of image %d must be integer, got %s' % (n, label.dtype))
            bad = (label < 0) | (label >= self.n_fg_class)
            if bad.any():
                raise ValueError('label of image %d has values outside [0, %d): %s'
                                 % (n, self.n_fg_class, label[bad][:5]))
            bad = ~((bbox[:, 0] >= 0) & (bbox[:, 0] < bbox[:, 2]) & (bbox[:, 2] <= insize)
                    & (bbox[:, 1] >= 0) & (bbox[:, 1] < bbox[:, 3]) & (bbox[:, 3] <= insize))
            if bad.any():
                raise ValueError(
                    'bbox of image %d has boxes that are empty or outside the %dx%d input '
                    '(need 0 <= y_min < y_max <= %d, same for x): %s'
                    % (n, insize, insize, insize, bbox[bad][:3].tolist()))
            bbs.append(bbox)
            lbs.append(label.astype(np.int32))
            imgs.append(np.full(len(bbox), n, dtype=np.int64))
        if not bbs:
            return (xp.zeros((0, 4), np.float32), xp.zeros((0,), np.int32),
                    xp.zeros((0,), np.int64))
        return (xp.asarray(np.concatenate(bbs)), xp.asarray(np.concatenate(lbs)),
                xp.asarray(np.concatenate(imgs)))

    def _decode(self, xp, loc_flat, key, layout):
        """Predicted boxes of some slots.

        Args:
            loc_flat (N * K, 4): raw ``(ty, tx, th, tw)`` of the batch.
            key (P,) int: flat slot indices ``n * K + k``.
        Returns:
            (4, P) float32 ``(y_min, x_min, y_max, x_max)`` in units.
        """
        k = key % layout.n_slot
        loc = loc_flat[key]
        st = layout.stride[k]
        cy = (layout.cell_y[k] + _sigmoid(xp, loc[:, 0])) * st
        cx = (layout.cell_x[k] + _sigmoid(xp, loc[:, 1])) * st
        h = layout.anchor[k, 0] * xp.exp(loc[:, 2])
        w = layout.anchor[k, 1] * xp.exp(loc[:, 3])
        return xp.stack((cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2))

    def _assign(self, xp, loc, bbox_px, label, image, insize, layout):
        """Responsible slots, their targets and the no-object mask of a batch.

        Args:
            loc (N, K, 4) float32 array: raw ``(ty, tx, th, tw)``.
            bbox_px (T, 4), label (T,), image (T,): all truths of the batch, in image order
                and, inside an image, in the order given.
        Returns:
            Targets
        """
        n_image, n_slot = loc.shape[:2]
        n_truth = len(bbox_px)
        unit = np.float32(self.unit)
        loc_flat = loc.reshape(-1, 4)

        box = (bbox_px / unit).T                                      # (4, T) units
        cy = (bbox_px[:, 0] + bbox_px[:, 2]) / 2 / unit
        cx = (bbox_px[:, 1] + bbox_px[:, 3]) / 2 / unit
        bh = (bbox_px[:, 2] - bbox_px[:, 0]) / unit
        bw = (bbox_px[:, 3] - bbox_px[:, 1]) / unit

        # Responsible anchor: best shape IoU over every anchor of every scale (ties -> first).
        ah, aw = layout.g_size[:, 0], layout.g_size[:, 1]
        mh = xp.minimum(bh[:, None], ah)
        mw = xp.minimum(bw[:, None], aw)
        inter = mh * mw
        shape_iou = inter / ((bh * bw)[:, None] + ah * aw - inter)    # (T, M)
        g = xp.argmax(shape_iou, axis=1)
        stride = layout.g_stride[g]
        grid = layout.g_grid[g]
        i = xp.minimum(xp.floor(cy / stride).astype(np.int64), grid - 1)
        j = xp.minimum(xp.floor(cx / stride).astype(np.int64), grid - 1)
        slot = layout.g_offset[g] + (i * grid + j) * layout.g_nanchor[g] + layout.g_anchor[g]
        key = image * n_slot + slot

        # Later truth wins: sort on (slot, truth order); the last of each run of equal slots.
        order = xp.argsort(key * max(n_truth, 1) + xp.arange(n_truth))
        key_sorted = key[order]
        last = xp.ones(n_truth, dtype=bool)
        last[:-1] = key_sorted[1:] != key_sorted[:-1]
        win = order[last]
        key_w = key[win]

        t_yx = xp.stack((cy[win] / stride[win] - i[win].astype(np.float32),
                         cx[win] / stride[win] - j[win].astype(np.float32)), axis=1)
        t_hw = xp.stack((xp.log(bh[win] / ah[g[win]]), xp.log(bw[win] / aw[g[win]])), axis=1)
        nh = (bbox_px[win, 2] - bbox_px[win, 0]) / np.float32(insize)
        nw = (bbox_px[win, 3] - bbox_px[win, 1]) / np.float32(insize)
        scale = 2 - nh * nw
        iou = _iou(xp, self._decode(xp, loc_flat, key_w, layout), box[:, win])

        ignore = self._ignore_mask(xp, loc, box, cy, cx, bh, bw, image, layout)
        noobj = ~ignore
        noobj[key_w] = False
        return Targets(key=key_w, t_yx=t_yx.astype(np.float32),
                       t_hw=t_hw.astype(np.float32), scale=scale.astype(np.float32),
                       label=label[win], iou=iou.astype(np.float32),
                       noobj=noobj.reshape(n_image, n_slot))

    def _ignore_mask(self, xp, loc, box, cy, cx, bh, bw, image, layout):
        """Slots whose ``best_iou`` passes the ignore threshold, (N * K,) bool.

        IoUs are computed only for the (truth, slot) pairs that :func:`_overlap_bound` and the
        size ratio cannot rule out: for each truth and anchor group, the cells whose closed
        extent comes within ``c * bh`` (rows) and ``c * bw`` (columns) of the truth centre (a
        sigmoid can round to 0 or 1), and among them the slots whose predicted height and
        width lie within ``[t, 1 / t]`` times the truth's (``t * max <= overlap <= min``).

        Args:
            loc (N, K, 4): raw outputs.
            box (4, T), cy, cx, bh, bw (T,): truths in units; image (T,) their image.
        """
        n_image, n_slot = loc.shape[:2]
        if n_image * n_slot >= 2 ** 31:
            raise ValueError('a batch of %d x %d slots is too large for int32 slot indices'
                             % (n_image, n_slot))
        ignore = xp.zeros(n_image * n_slot, dtype=bool)
        n_truth = len(cy)
        if n_truth == 0:
            return ignore
        t = self.thresh
        c = _overlap_bound(t)
        hi = 1 + _WINDOW_SLACK

        # (truth, group) units: a window of rows i_lo.. and columns j_lo.. of the group's grid.
        n_group = len(layout.g_stride)
        st = layout.g_stride                                           # (M,)
        last = layout.g_grid - 1
        half_y = c * bh[:, None] * hi + _WINDOW_SLACK * st            # (T, M)
        half_x = c * bw[:, None] * hi + _WINDOW_SLACK * st
        i_lo = xp.maximum(xp.ceil((cy[:, None] - half_y) / st - 1), 0).astype(np.int64)
        i_hi = xp.minimum(xp.floor((cy[:, None] + half_y) / st).astype(np.int64), last)
        j_lo = xp.maximum(xp.ceil((cx[:, None] - half_x) / st - 1), 0).astype(np.int64)
        j_hi = xp.minimum(xp.floor((cx[:, None] + half_x) / st).astype(np.int64), last)
        n_j = xp.maximum(j_hi - j_lo + 1, 0)
        n_i = xp.where(n_j > 0, xp.maximum(i_hi - i_lo + 1, 0), 0).ravel()
        # Moving one column moves A_s slots, one row G_s * A_s slots.
        step_i = layout.g_grid * layout.g_nanchor
        first = (image[:, None] * n_slot + layout.g_offset + layout.g_anchor
                 + i_lo * step_i + j_lo * layout.g_nanchor).ravel()

        # Rows of the windows.
        unit, start = _owners(xp, n_i)
        if len(unit) == 0:
            return ignore
        group = unit % n_group
        row_first = first[unit] + (xp.arange(len(unit)) - start[unit]) * step_i[group]
        row_len = n_j.ravel()[unit]
        row_step = layout.g_nanchor[group]
        row_truth = unit // n_group

        # Cells of the rows, laid end to end: the slot index of each follows from running
        # sums of what changes at each row start, in int32 (N * K < 2**31), which is cheaper
        # than gathering per cell.
        row_start = xp.cumsum(row_len) - row_len
        n_cell = int(row_start[-1] + row_len[-1])
        row_end_key = row_first + (row_len - 1) * row_step
        if layout.uniform_nanchor:
            d_key = xp.full(n_cell, int(layout.g_nanchor[0]), dtype=np.int32)
        else:
            d_key = xp.zeros(n_cell, dtype=np.int32)
            d_key[row_start] = xp.diff(row_step, prepend=0)
            d_key = xp.cumsum(d_key, dtype=np.int32)                  # each cell's row_step
        d_key[row_start] = xp.concatenate((row_first[:1], row_first[1:] - row_end_key[:-1]))
        key = xp.cumsum(d_key, dtype=np.int32)

        # Size ratio in [t, 1 / t] along both axes: |th - log(bh / A_h)| <= log(1 / t), and
        # the same for w; tested coarsely on the int16 size codes, with room for rounding.
        width = (math.log(1 / t) + _WINDOW_SLACK) * (1 + _WINDOW_SLACK)
        slot_code = _size_code(xp, loc[:, :, 2], loc[:, :, 3], width).ravel()
        row_code = _size_code(xp, xp.log(bh[row_truth]) - layout.g_log_size[group, 0],
                              xp.log(bw[row_truth]) - layout.g_log_size[group, 1], width)
        # The running sum of code differences telescopes to each cell's row code, so it
        # never leaves [0, 8127] and int16 cannot overflow.
        d_code = xp.zeros(n_cell, dtype=np.int16)
        d_code[row_start] = xp.diff(row_code, prepend=0)
        code = xp.cumsum(d_code, dtype=np.int16)                      # each cell's row_code
        keep = xp.flatnonzero(_codes_close(xp, slot_code[key], code))
        key = key[keep]
        truth = row_truth[xp.searchsorted(row_start, keep, side='right') - 1]

        iou = _iou(xp, self._decode(xp, loc.reshape(-1, 4), key, layout), box[:, truth])
        hit = iou >= t if self.ignore_inclusive else iou > t
        ignore[key[hit]] = True
        return ignore
