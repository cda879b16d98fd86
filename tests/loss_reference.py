"""A deliberately naive transcription of docs/loss.md, for tests only.

Plain Python loops over images, truths and output slots, in float64, sharing no code with
``chainer_yolo_dist.detection.losses``. Slow on purpose: use tiny inputs (insize 64-160).
Each function returns a dict of floats with the same keys as the real losses.
"""
import math


def sigmoid(x):
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def softplus(x):
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def bce(x, t):
    return softplus(x) - t * x


def iou(a, b):
    """IoU of boxes (y_min, x_min, y_max, x_max)."""
    ih = min(a[2], b[2]) - max(a[0], b[0])
    iw = min(a[3], b[3]) - max(a[1], b[1])
    if ih <= 0 or iw <= 0:
        return 0.0
    inter = ih * iw
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def iou_shape(a, b):
    """IoU of two boxes of sizes a = (h, w), b = (h, w) sharing a centre."""
    m = min(a[0], b[0]) * min(a[1], b[1])
    return m / (a[0] * a[1] + b[0] * b[1] - m)


def argmax_first(values):
    best = 0
    for idx in range(len(values)):
        if values[idx] > values[best]:
            best = idx
    return best


def _truth(box, insize):
    y_min, x_min, y_max, x_max = [float(v) for v in box]
    return dict(cy=(y_min + y_max) / 2, cx=(x_min + x_max) / 2, bh=y_max - y_min,
                bw=x_max - x_min, nh=(y_max - y_min) / insize, nw=(x_max - x_min) / insize)


def yolov2_truths(bbox, label, insize, anchors, stride=32):
    """One image's truths with their responsible slots, and {slot: the truth that owns it}."""
    G = insize // stride
    A = len(anchors)
    truths = []
    for r in range(len(bbox)):
        t = _truth(bbox[r], insize)
        gy, gx = t['cy'] / stride, t['cx'] / stride
        gh, gw = t['bh'] / stride, t['bw'] / stride
        i = min(int(math.floor(gy)), G - 1)
        j = min(int(math.floor(gx)), G - 1)
        a = argmax_first([iou_shape((gh, gw), anc) for anc in anchors])
        truths.append(dict(t, gy=gy, gx=gx, gh=gh, gw=gw, i=i, j=j, a=a,
                           k=(i * G + j) * A + a, label=int(label[r]),
                           box=(gy - gh / 2, gx - gw / 2, gy + gh / 2, gx + gw / 2)))
    owner = {}
    for t in truths:                   # in order: a later truth overwrites an earlier one
        owner[t['k']] = t
    return truths, owner


def yolov3_truths(bbox, label, insize, anchors, strides=(32, 16, 8)):
    """One image's truths with their responsible slots, and {slot: the truth that owns it}."""
    flat = []          # (scale, anchor index in scale, (h, w)) for m = 0, 1, ...
    for s, scale_anchors in enumerate(anchors):
        for a, hw in enumerate(scale_anchors):
            flat.append((s, a, hw))
    offsets = []
    off = 0
    for s, scale_anchors in enumerate(anchors):
        offsets.append(off)
        off += (insize // strides[s]) ** 2 * len(scale_anchors)
    truths = []
    for r in range(len(bbox)):
        t = _truth(bbox[r], insize)
        m = argmax_first([iou_shape((t['bh'], t['bw']), hw) for _, _, hw in flat])
        s, a, _ = flat[m]
        G = insize // strides[s]
        i = min(int(math.floor(t['cy'] / strides[s])), G - 1)
        j = min(int(math.floor(t['cx'] / strides[s])), G - 1)
        k = offsets[s] + (i * G + j) * len(anchors[s]) + a
        truths.append(dict(t, s=s, i=i, j=j, k=k, label=int(label[r]),
                           box=[float(v) for v in bbox[r]]))
    owner = {}
    for t in truths:
        owner[t['k']] = t
    return truths, owner


def yolov2(locs, objs, confs, bboxes, labels, insize, anchors, n_fg_class, stride=32,
           l_coord=1.0, l_obj=5.0, l_noobj=1.0, l_prob=1.0, thresh=0.6):
    N = len(bboxes)
    G = insize // stride
    A = len(anchors)
    tot_box = tot_conf = tot_prob = 0.0
    for n in range(N):
        # Predicted boxes, in grid cells, as corners.
        pred = {}
        for i in range(G):
            for j in range(G):
                for a in range(A):
                    k = (i * G + j) * A + a
                    ty, tx, th, tw = [float(v) for v in locs[n][k]]
                    pcy = i + sigmoid(ty)
                    pcx = j + sigmoid(tx)
                    ph = anchors[a][0] * math.exp(th)
                    pw = anchors[a][1] * math.exp(tw)
                    pred[k] = (pcy - ph / 2, pcx - pw / 2, pcy + ph / 2, pcx + pw / 2)
        truths, owner = yolov2_truths(bboxes[n], labels[n], insize, anchors, stride)
        box = conf = prob = 0.0
        for k in range(G * G * A):
            o = sigmoid(float(objs[n][k]))
            if k in owner:
                t = owner[k]
                ty, tx, th, tw = [float(v) for v in locs[n][k]]
                a = t['a']
                box += l_coord * (2 - t['nh'] * t['nw']) * (
                    (sigmoid(ty) - (t['gy'] - t['i'])) ** 2
                    + (sigmoid(tx) - (t['gx'] - t['j'])) ** 2
                    + (th - math.log(t['gh'] / anchors[a][0])) ** 2
                    + (tw - math.log(t['gw'] / anchors[a][1])) ** 2)
                conf += l_obj * (o - iou(pred[k], t['box'])) ** 2
                scores = [float(v) for v in confs[n][k]]
                top = max(scores)
                ex = [math.exp(v - top) for v in scores]
                for c in range(n_fg_class):
                    p = ex[c] / sum(ex)
                    prob += l_prob * (p - (1.0 if c == t['label'] else 0.0)) ** 2
            else:
                best = 0.0
                for t in truths:
                    best = max(best, iou(pred[k], t['box']))
                if best < thresh:
                    conf += l_noobj * o ** 2
        tot_box += box
        tot_conf += conf
        tot_prob += prob
    return _result(tot_box, tot_conf, tot_prob, N)


def yolov3(locs, objs, confs, bboxes, labels, insize, anchors, n_fg_class,
           strides=(32, 16, 8), l_coord=1.0, ignore_thresh=0.5):
    N = len(bboxes)
    offsets = []
    off = 0
    for s, scale_anchors in enumerate(anchors):
        offsets.append(off)
        off += (insize // strides[s]) ** 2 * len(scale_anchors)
    K = off
    tot_box = tot_conf = tot_prob = 0.0
    for n in range(N):
        pred = {}
        slot_anchor = {}
        for s, scale_anchors in enumerate(anchors):
            G = insize // strides[s]
            A = len(scale_anchors)
            for i in range(G):
                for j in range(G):
                    for a in range(A):
                        k = offsets[s] + (i * G + j) * A + a
                        ty, tx, th, tw = [float(v) for v in locs[n][k]]
                        pcy = (i + sigmoid(ty)) * strides[s]
                        pcx = (j + sigmoid(tx)) * strides[s]
                        ph = scale_anchors[a][0] * math.exp(th)
                        pw = scale_anchors[a][1] * math.exp(tw)
                        pred[k] = (pcy - ph / 2, pcx - pw / 2, pcy + ph / 2, pcx + pw / 2)
                        slot_anchor[k] = scale_anchors[a]
        truths, owner = yolov3_truths(bboxes[n], labels[n], insize, anchors, strides)
        box = conf = prob = 0.0
        for k in range(K):
            to = float(objs[n][k])
            if k in owner:
                t = owner[k]
                st = strides[t['s']]
                ty, tx, th, tw = [float(v) for v in locs[n][k]]
                ah, aw = slot_anchor[k]
                box += l_coord * (2 - t['nh'] * t['nw']) * (
                    bce(ty, t['cy'] / st - t['i']) + bce(tx, t['cx'] / st - t['j'])
                    + 0.5 * (th - math.log(t['bh'] / ah)) ** 2
                    + 0.5 * (tw - math.log(t['bw'] / aw)) ** 2)
                conf += bce(to, 1.0)
                for c in range(n_fg_class):
                    prob += bce(float(confs[n][k][c]), 1.0 if c == t['label'] else 0.0)
            else:
                best = 0.0
                for t in truths:
                    best = max(best, iou(pred[k], t['box']))
                if best <= ignore_thresh:
                    conf += bce(to, 0.0)
        tot_box += box
        tot_conf += conf
        tot_prob += prob
    return _result(tot_box, tot_conf, tot_prob, N)


def _result(box, conf, prob, N):
    return {'loss': (box + conf + prob) / N, 'loss/box': box / N, 'loss/conf': conf / N,
            'loss/prob': prob / N}
