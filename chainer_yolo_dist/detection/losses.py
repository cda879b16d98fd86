"""YOLOv2 (region layer) and YOLOv3 (yolo layer) training losses.

The definitions are those of ``docs/loss.md`` (normative): paper 000's eq. 1-4
with Darknet's ``yolov2-voc.cfg`` / ``yolov3-voc.cfg`` filling in what the paper leaves open.

Both losses consume exactly what ChainerCV's ``YOLOv2.forward`` / ``YOLOv3.forward`` return:

* ``locs`` (N, K, 4) raw ``(ty, tx, th, tw)``,
* ``objs`` (N, K) raw objectness logits,
* ``confs`` (N, K, C) raw class scores,

where slot ``k = offset_s + (i * G_s + j) * A_s + a`` (scale ``s``, row ``i`` (y), column
``j`` (x), anchor ``a``) and ``G_s = insize / stride_s``. Ground truth is given per image as
ChainerCV does: ``bbox`` (R, 4) float32 ``(y_min, x_min, y_max, x_max)`` in input pixels and
``label`` (R,) int32 in ``[0, C)``; R may be 0.

Which slot answers for which truth, the targets and the ``best_iou`` ignore mask are
:class:`~chainer_yolo_dist.detection.targets.TargetAssigner`'s; this module holds the formulas
over its :class:`~chainer_yolo_dist.detection.targets.Targets`.
"""
import numpy as np

import chainer
import chainer.functions as F
from chainer import backend

from chainer_yolo_dist.detection.targets import TargetAssigner


__all__ = ['YOLOv2Loss', 'YOLOv3Loss']


class _YOLOLossBase(object):
    """Input checks and the shared driver; the terms are the subclasses'.

    Attributes:
        assigner (TargetAssigner): the target assignment (anchors, strides, threshold).
        n_fg_class (int): number of classes C.
    """

    def __init__(self, anchors, strides, unit, n_fg_class, thresh, ignore_inclusive):
        """
        Args:
            anchors: per scale, a sequence of ``(h, w)`` anchor sizes in units.
            strides: per scale, pixels per cell.
            unit (int): pixels per length unit (the loss measures lengths in units).
            ignore_inclusive (bool): the ignore mask takes ``best_iou >= thresh`` (YOLOv2)
                rather than ``> thresh`` (YOLOv3).
        """
        self.assigner = TargetAssigner(anchors, strides, unit, n_fg_class, thresh,
                                       ignore_inclusive)
        self.n_fg_class = self.assigner.n_fg_class

    # ---- input handling -------------------------------------------------------------------

    def _check_outputs(self, locs, objs, confs, n_slot):
        if objs.ndim != 2:
            raise ValueError('objs must be (N, K), got shape %s' % (objs.shape,))
        n, k = objs.shape
        if locs.shape != (n, k, 4):
            raise ValueError('locs must be (N, K, 4) = %s, got %s' % ((n, k, 4), locs.shape))
        if confs.shape != (n, k, self.n_fg_class):
            raise ValueError('confs must be (N, K, C) = %s, got %s'
                             % ((n, k, self.n_fg_class), confs.shape))
        if k != n_slot:
            raise ValueError('outputs have K = %d slots but the anchors and strides give %d at '
                             'this insize' % (k, n_slot))
        for name, v in (('locs', locs), ('objs', objs), ('confs', confs)):
            if v.dtype != np.float32:
                raise ValueError('%s must be float32, got %s' % (name, v.dtype))

    # ---- the loss -------------------------------------------------------------------------

    def __call__(self, locs, objs, confs, bboxes, labels, insize):
        """Loss of a batch.

        Args:
            locs: (N, K, 4) raw ``(ty, tx, th, tw)`` (Variable or array, float32).
            objs: (N, K) raw objectness.
            confs: (N, K, C) raw class scores.
            bboxes: N arrays (R_n, 4) ``(y_min, x_min, y_max, x_max)`` in input pixels,
                ``0 <= y_min < y_max <= insize`` (same for x). NumPy or CuPy.
            labels: N int arrays (R_n,) in ``[0, C)``.
            insize (int): side S of the square input, a multiple of every stride.

        Returns:
            dict of 0-dim Variables: ``loss`` (= box + conf + prob), ``loss/box``,
            ``loss/conf``, ``loss/prob``, each the per-image sum averaged over the N images.
        """
        locs = chainer.as_variable(locs)
        objs = chainer.as_variable(objs)
        confs = chainer.as_variable(confs)
        xp = backend.get_array_module(locs.array)
        device = backend.get_device_from_array(locs.array)
        insize = int(insize)
        # Targets are built on the outputs' device, whichever device is current.
        with chainer.using_device(device):
            layout = self.assigner.layout(insize, xp, device)
            self._check_outputs(locs, objs, confs, layout.n_slot)
            n_image = objs.shape[0]
            tg = self.assigner.assign(locs.array, bboxes, labels, insize)
            box, conf, prob = self._terms(xp, locs, objs, confs, tg)
        box, conf, prob = box / n_image, conf / n_image, prob / n_image
        return {'loss': box + conf + prob, 'loss/box': box, 'loss/conf': conf,
                'loss/prob': prob}

    def _terms(self, xp, locs, objs, confs, tg):
        raise NotImplementedError


def _onehot(xp, label, n_class):
    """(W,) int -> (W, C) float32 with ones at ``label``."""
    return (label[:, None] == xp.arange(n_class)[None, :]).astype(np.float32)


class YOLOv2Loss(_YOLOLossBase):
    """YOLOv2 region-layer loss (docs/loss.md, "YOLOv2").

    Per image, over the responsible slots R and the others::

        box  = sum_R l_coord (2 - nh nw) [(sig(ty) - (gy - i))^2 + (sig(tx) - (gx - j))^2
                                         + (th - log(gh / A_h))^2 + (tw - log(gw / A_w))^2]
        conf = sum_R l_obj (sig(to) - IoU(pred, truth))^2
               + sum_{not R, best_iou < thresh} l_noobj sig(to)^2
        prob = sum_R l_prob sum_c (softmax(conf)_c - [c == label])^2

    Lengths are in grid cells (``stride`` pixels). The IoU target is a constant.

    Args:
        anchors: sequence of A ``(h, w)`` pairs in grid cells (ChainerCV's
            ``YOLOv2._anchors``); slot ``k = (i * G + j) * A + a`` with ``G = insize / stride``.
        n_fg_class (int): number of classes C.
        stride (int): pixels per grid cell.
        l_coord, l_obj, l_noobj, l_prob (float): term weights.
        thresh (float): slots outside R with ``best_iou >= thresh`` get no no-object term.
    """

    def __init__(self, anchors, n_fg_class, stride=32, l_coord=1.0, l_obj=5.0, l_noobj=1.0,
                 l_prob=1.0, thresh=0.6):
        super(YOLOv2Loss, self).__init__([anchors], (stride,), stride, n_fg_class, thresh,
                                         ignore_inclusive=True)
        self.l_coord = float(l_coord)
        self.l_obj = float(l_obj)
        self.l_noobj = float(l_noobj)
        self.l_prob = float(l_prob)

    def _terms(self, xp, locs, objs, confs, tg):
        n_image, n_slot = objs.shape
        loc_w = F.get_item(F.reshape(locs, (n_image * n_slot, 4)), tg.key)   # (W, 4)
        scale = (self.l_coord * tg.scale)[:, None].astype(np.float32)
        err_yx = F.sigmoid(loc_w[:, :2]) - tg.t_yx
        err_hw = loc_w[:, 2:] - tg.t_hw
        box = F.sum(scale * (err_yx * err_yx)) + F.sum(scale * (err_hw * err_hw))

        target = xp.zeros(n_image * n_slot, dtype=np.float32)
        weight = tg.noobj.reshape(-1).astype(np.float32) * np.float32(self.l_noobj)
        target[tg.key] = tg.iou
        weight[tg.key] = np.float32(self.l_obj)
        err_o = F.sigmoid(F.reshape(objs, (n_image * n_slot,))) - target
        conf = F.sum(weight * err_o * err_o)

        conf_w = F.get_item(F.reshape(confs, (n_image * n_slot, self.n_fg_class)), tg.key)
        err_p = F.softmax(conf_w, axis=1) - _onehot(xp, tg.label, self.n_fg_class)
        prob = np.float32(self.l_prob) * F.sum(err_p * err_p)
        return box, conf, prob


class YOLOv3Loss(_YOLOLossBase):
    """YOLOv3 yolo-layer loss (docs/loss.md, "YOLOv3").

    Per image, with ``BCE(x; t) = softplus(x) - t x``::

        box  = sum_R l_coord (2 - nh nw) [BCE(ty; cy / stride - i) + BCE(tx; cx / stride - j)
                                         + 0.5 (th - log(bh / anchor_h))^2
                                         + 0.5 (tw - log(bw / anchor_w))^2]
        conf = sum_R BCE(to; 1) + sum_{not R, best_iou <= ignore_thresh} BCE(to; 0)
        prob = sum_R sum_c BCE(conf_c; [c == label])

    Lengths are in pixels. The responsible anchor is the best shape match over the anchors
    of all scales, flattened in order.

    Args:
        anchors: one sequence of ``(h, w)`` pixel pairs per scale (ChainerCV's
            ``YOLOv3._anchors``: 3 scales x 3); the scales may hold different numbers of
            anchors. Slots are concatenated over scales; inside scale ``s``,
            ``k = offset_s + (i * G_s + j) * A_s + a`` with ``G_s = insize / strides[s]``.
        n_fg_class (int): number of classes C.
        strides: pixels per cell of each scale, same length as ``anchors``.
        l_coord (float): weight of the box term.
        ignore_thresh (float): slots outside R with ``best_iou > ignore_thresh`` get no
            no-object term.
    """

    def __init__(self, anchors, n_fg_class, strides=(32, 16, 8), l_coord=1.0,
                 ignore_thresh=0.5):
        super(YOLOv3Loss, self).__init__(anchors, strides, 1, n_fg_class, ignore_thresh,
                                         ignore_inclusive=False)
        self.l_coord = float(l_coord)

    def _terms(self, xp, locs, objs, confs, tg):
        n_image, n_slot = objs.shape
        loc_w = F.get_item(F.reshape(locs, (n_image * n_slot, 4)), tg.key)   # (W, 4)
        scale = (self.l_coord * tg.scale)[:, None].astype(np.float32)
        t_yx = loc_w[:, :2]
        bce_yx = F.softplus(t_yx) - tg.t_yx * t_yx
        err_hw = loc_w[:, 2:] - tg.t_hw
        box = F.sum(scale * bce_yx) + F.sum((scale * np.float32(0.5)) * (err_hw * err_hw))

        target = xp.zeros(n_image * n_slot, dtype=np.float32)
        weight = tg.noobj.reshape(-1).astype(np.float32)
        target[tg.key] = 1
        weight[tg.key] = 1
        o = F.reshape(objs, (n_image * n_slot,))
        conf = F.sum(weight * F.softplus(o) - target * o)

        conf_w = F.get_item(F.reshape(confs, (n_image * n_slot, self.n_fg_class)), tg.key)
        onehot = _onehot(xp, tg.label, self.n_fg_class)
        prob = F.sum(F.softplus(conf_w) - onehot * conf_w)
        return box, conf, prob
