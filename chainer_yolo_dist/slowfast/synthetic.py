"""Embedded synthetic action clips: moving shapes whose actions need time to be told apart.

Each clip holds 1..``max_actors`` actors (flat-coloured shapes from
:func:`chainer_yolo_dist.datasets.synthetic.shape_mask`) on a static, low-contrast textured
background with a little per-frame noise. Every actor draws four independent changes:

* horizontal: ``move_left`` / ``move_right`` at 1.0-2.0 px per frame, or none (0.25/0.25/0.5);
* size: ``grow`` / ``shrink`` by 3-5 % per frame (exponential), or none (0.2/0.2/0.6);
* rotation: ``spin`` at ``spin_speed`` radians per frame (either direction), or none (0.4/0.6);
* brightness: ``blink``, the colour dimmed to 45% on every other frame, or none (0.3/0.7);

and ``still`` when it has none of them (probability 0.5 x 0.6 x 0.6 x 0.7 = 0.126). Labels are
multi-hot over :data:`ACTION_NAMES` (an actor moving right while growing has both). No single
frame tells any of them apart (position, size, angle and colour at the keyframe are drawn
independently of the changes), so the network must compare
frames. The shapes (square, cross, diamond) have 4-fold rotational symmetry, and the default spin
speed is pi/8 per frame: a pathway that samples every 4th frame (the Slow pathway at alpha = 4)
sees a spinning actor turn by exactly 90 degrees between its frames, i.e. not at all, the
aliasing of fast motion by a low frame rate that motivates the Fast pathway (SlowFast paper
sec. 1). Blinking (period 2 frames) is aliased the same way: every 4th frame has the same
brightness. A different ``spin_speed`` or ``blink_period`` removes that property; the other
actions are visible at either frame rate.

Examples (ChainerCV conventions): ``clip`` float32 ``(3, T, H, W)`` RGB in ``[0, 255]``; ``bbox``
float32 ``(R, 4)`` ``(y_min, x_min, y_max, x_max)`` in pixel-edge coordinates of the actor's
drawn pixels at the keyframe ``T // 2`` (the AVA convention of labelling the middle frame);
``label`` int32 ``(R, n_class)`` 0/1. Every example comes from its own generator seeded by
``(seed, task, split, index)``: random access, regenerated identically anywhere.
"""
import colorsys
import math

import numpy as np

from chainercv.chainer_experimental.datasets.sliceable import GetterDataset

from chainer_yolo_dist.datasets.synthetic import shape_mask

ACTION_NAMES = ('move_left', 'move_right', 'grow', 'shrink', 'spin', 'blink', 'still')
#: Shapes with 4-fold rotational symmetry (see the module docstring).
SHAPES = ('square', 'cross', 'diamond')
_SPLITS = {'train': 0, 'val': 1, 'test': 2}
_TASK = 2  # distinct from the detection (0) and classification (1) streams of datasets.synthetic

SPEED_RANGE = (1.0, 2.0)      # px per frame
GROWTH_RANGE = (0.03, 0.05)   # log-scale change per frame
HALF_SIZE_RANGE = (0.11, 0.16)  # half side at the keyframe, as a fraction of the clip side
SPIN_SPEED = math.pi / 8      # radians per frame
#: Probabilities of (left, none, right), (shrink, none, grow), of spinning and of blinking.
MOVE_P = (0.25, 0.5, 0.25)
SCALE_P = (0.2, 0.6, 0.2)
SPIN_P = 0.4
BLINK_P = 0.3
BLINK_PERIOD = 2              # frames; bright on even frames, dimmed on odd ones
BLINK_DIM = 0.45
MAX_KEYFRAME_IOU = 0.2        # actors at the keyframe overlap at most this much


def make_rng(seed, split, index):
    if split not in _SPLITS:
        raise ValueError('split must be one of %s, got %r' % (sorted(_SPLITS), split))
    return np.random.default_rng([int(seed), _TASK, _SPLITS[split], int(index)])


def _iou(a, b):
    ih = min(a[2], b[2]) - max(a[0], b[0])
    iw = min(a[3], b[3]) - max(a[1], b[1])
    if ih <= 0 or iw <= 0:
        return 0.
    inter = ih * iw
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


class Actor(object):
    """One actor's trajectory: ``centre(t) (y, x)``, ``half_size(t)``, ``angle(t)`` in radians."""

    def __init__(self, kind, colour, y, x, half, angle, speed, growth, spin, keyframe,
                 blink=0):
        self.kind, self.colour, self.blink = kind, colour, blink
        self.y, self.x, self.half, self.angle0 = y, x, half, angle
        self.speed, self.growth, self.spin, self.keyframe = speed, growth, spin, keyframe

    def centre(self, t):
        return self.y, self.x + self.speed * (t - self.keyframe)

    def half_size(self, t):
        return self.half * math.exp(self.growth * (t - self.keyframe))

    def angle(self, t):
        return self.angle0 + self.spin * (t - self.keyframe)

    def colour_at(self, t):
        """RGB ``(3,)`` at frame ``t``: dimmed on the second half of each blink period."""
        if self.blink and (t % self.blink) >= self.blink // 2:
            return self.colour * BLINK_DIM
        return self.colour

    def labels(self):
        on = [self.speed < 0, self.speed > 0, self.growth > 0, self.growth < 0, self.spin != 0,
              self.blink > 0]
        return np.array(on + [not any(on)], np.int32)

    def mask(self, t, size):
        """Boolean ``(size, size)`` mask of the actor at frame ``t`` (pixel centres tested)."""
        cy, cx = self.centre(t)
        h = self.half_size(t)
        r = math.sqrt(2) * h + 1  # the rotated shape lies within this distance of its centre
        y0, y1 = max(0, int(cy - r)), min(size, int(math.ceil(cy + r)))
        x0, x1 = max(0, int(cx - r)), min(size, int(math.ceil(cx + r)))
        dy = np.arange(y0, y1)[:, None] + 0.5 - cy
        dx = np.arange(x0, x1)[None, :] + 0.5 - cx
        c, s = math.cos(self.angle(t)), math.sin(self.angle(t))
        mask = np.zeros((size, size), bool)
        mask[y0:y1, x0:x1] = shape_mask(self.kind, (c * dx + s * dy) / h, (-s * dx + c * dy) / h)
        return mask


def _draw_actor(rng, size, n_frames, keyframe, others, spin_speed, blink_period):
    """Draws one actor whose whole track stays inside the clip; None after 50 failed tries."""
    for _ in range(50):
        speed = rng.choice([-1, 0, 1], p=MOVE_P) * rng.uniform(*SPEED_RANGE)
        growth = rng.choice([-1, 0, 1], p=SCALE_P) * rng.uniform(*GROWTH_RANGE)
        spin = (rng.uniform() < SPIN_P) * rng.choice([-1, 1]) * spin_speed
        half = rng.uniform(*HALF_SIZE_RANGE) * size
        # The rotated shape reaches sqrt(2) half sides from its centre.
        reach = math.sqrt(2) * half * math.exp(abs(growth) * max(keyframe,
                                                                 n_frames - 1 - keyframe))
        x_lo = reach + max(0., speed * keyframe, -speed * (n_frames - 1 - keyframe))
        x_hi = size - reach - max(0., -speed * keyframe, speed * (n_frames - 1 - keyframe))
        if x_lo >= x_hi or 2 * reach >= size:
            continue
        y, x = rng.uniform(reach, size - reach), rng.uniform(x_lo, x_hi)
        actor = Actor(SHAPES[rng.integers(len(SHAPES))], None, y, x, half,
                      rng.uniform(0, 2 * math.pi), speed, growth, spin, keyframe,
                      blink_period if rng.uniform() < BLINK_P else 0)
        box = (y - half, x - half, y + half, x + half)
        if all(_iou(box, o) <= MAX_KEYFRAME_IOU for o in others):
            hue = rng.uniform()
            actor.colour = np.asarray(colorsys.hsv_to_rgb(hue, rng.uniform(0.6, 1.),
                                                          rng.uniform(0.7, 1.)),
                                      np.float32) * 255.
            return actor, box
    return None


def mask_box(mask):
    """Tight pixel-edge box ``(y_min, x_min, y_max, x_max)`` of a non-empty boolean mask."""
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    return (rows[0], cols[0], rows[-1] + 1, cols[-1] + 1)


class SyntheticActionClips(GetterDataset):
    """``n`` procedural action clips (see the module docstring).

    Args:
        n (int): number of clips.
        split (str): 'train', 'val' or 'test' (independent streams).
        seed (int): base seed.
        n_frames (int): clip length T (16; the Fast pathway's frames).
        size (int): frame side in pixels (64).
        max_actors (int): actors per clip are drawn from ``1..max_actors``.
        spin_speed (float): rotation per frame of spinning actors (pi / 8).
        blink_period (int): frames per blink cycle (2).
    """

    def __init__(self, n, split='train', seed=0, n_frames=16, size=64, max_actors=3,
                 spin_speed=SPIN_SPEED, blink_period=BLINK_PERIOD):
        super(SyntheticActionClips, self).__init__()
        make_rng(seed, split, 0)  # validates split
        self.n, self.split, self.seed = int(n), split, int(seed)
        self.n_frames, self.size, self.max_actors = n_frames, size, max_actors
        self.spin_speed, self.blink_period = spin_speed, blink_period
        self.keyframe = n_frames // 2
        self.class_names = ACTION_NAMES
        self.add_getter(('clip', 'bbox', 'label'), self._get)

    def __len__(self):
        return self.n

    def actors(self, i):
        """The :class:`Actor` list of clip ``i`` (its trajectories, for inspection and tests)."""
        return self._scene(i)[0]

    def _scene(self, i):
        rng = make_rng(self.seed, self.split, i)
        actors, boxes = [], []
        for _ in range(rng.integers(1, self.max_actors + 1)):
            drawn = _draw_actor(rng, self.size, self.n_frames, self.keyframe, boxes,
                                self.spin_speed, self.blink_period)
            if drawn is not None:
                actors.append(drawn[0])
                boxes.append(drawn[1])
        return actors, rng

    def _get(self, i):
        actors, rng = self._scene(i)
        s, t_len = self.size, self.n_frames
        # Background: a random base colour and a blocky low-contrast texture (5 x 5 noise).
        base = rng.uniform(60, 160, 3).astype(np.float32)
        coarse = rng.normal(0, 12, (3, 5, 5)).astype(np.float32)
        idx = np.linspace(0, 4, s).round().astype(int)
        background = base[:, None, None] + coarse[:, idx][:, :, idx]
        clip = np.repeat(background[:, None], t_len, axis=1)
        bbox, label = [], []
        for a in actors:
            for t in range(t_len):
                m = a.mask(t, s)
                clip[:, t][:, m] = a.colour_at(t)[:, None]
            bbox.append(mask_box(a.mask(self.keyframe, s)))
            label.append(a.labels())
        clip += rng.normal(0, 3, clip.shape).astype(np.float32)
        np.clip(clip, 0, 255, out=clip)
        return (clip.astype(np.float32), np.array(bbox, np.float32).reshape(-1, 4),
                np.array(label, np.int32).reshape(-1, len(ACTION_NAMES)))
