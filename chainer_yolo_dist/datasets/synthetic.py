"""Procedural coloured-shapes datasets: the embedded default data for detection and classification.

Every image is drawn from its own random generator seeded by ``(seed, task, split, index)``, so
random access is cheap, any image can be regenerated alone, and the splits never share a stream.
Drawing is pure NumPy: each object is rasterised on its own bounding window from coordinate grids.

Conventions (ChainerCV): ``img`` float32 ``(3, H, W)`` RGB in ``[0, 255]``; ``bbox`` float32
``(R, 4)`` as ``(y_min, x_min, y_max, x_max)`` in pixel-edge coordinates (a box covering pixel rows
``r0..r1`` inclusive has ``y_min = r0, y_max = r1 + 1``, so ``0 <= y_min < y_max <= H``);
``label`` int32 ``(R,)`` in ``[0, n_class)``.
"""
import colorsys
import math

import numpy as np

from chainercv.chainer_experimental.datasets.sliceable import GetterDataset

#: Shape kinds in class order. Each class has its own shape and its own hue family.
CLASS_NAMES = ('disc', 'square', 'triangle', 'cross', 'ring', 'diamond', 'star', 'hexagon')
# Hue (degrees) of each class. The first six are 60 degrees apart; star and hexagon
# fall between them, so with n_class > 6 those pairs are told apart mostly by shape.
_HUES = (0.0, 240.0, 120.0, 60.0, 300.0, 180.0, 30.0, 270.0)
_HUE_JITTER = 8.0

_SPLITS = {'train': 0, 'val': 1, 'test': 2}
_TASK_DETECTION = 0
_TASK_CLASSIFICATION = 1


def make_rng(seed, task, split, index):
    """Returns the generator of one image; distinct for every (seed, task, split, index)."""
    if split not in _SPLITS:
        raise ValueError('split must be one of %s, got %r' % (sorted(_SPLITS), split))
    return np.random.default_rng([int(seed), task, _SPLITS[split], int(index)])


def shape_mask(kind, u, v):
    """Boolean mask of a shape in normalised coordinates.

    Args:
        kind (str): one of :data:`CLASS_NAMES`.
        u, v (ndarray): broadcastable horizontal / vertical coordinates, the object's bounding
            box spanning ``[-1, 1]`` on each axis (``v`` grows downwards).
    """
    if kind == 'disc':
        return u * u + v * v <= 1.0
    if kind == 'square':
        return (np.abs(u) <= 1.0) & (np.abs(v) <= 1.0)
    if kind == 'triangle':  # apex up, base at the bottom edge
        return (v <= 1.0) & (np.abs(u) <= (v + 1.0) * 0.5)
    if kind == 'cross':
        au, av = np.abs(u), np.abs(v)
        return ((au <= 0.3) & (av <= 1.0)) | ((av <= 0.3) & (au <= 1.0))
    if kind == 'ring':
        r2 = u * u + v * v
        return (r2 <= 1.0) & (r2 >= 0.55 ** 2)
    if kind == 'diamond':
        return np.abs(u) + np.abs(v) <= 1.0
    if kind == 'star':
        # five points, one pointing up; radius runs 0.4 .. 1 between valleys and tips
        phase = (np.arctan2(v, u) + 0.5 * np.pi) * (5.0 / (2.0 * np.pi))
        tip = 1.0 - 2.0 * np.abs(np.mod(phase + 0.5, 1.0) - 0.5)
        return np.hypot(u, v) <= 0.4 + 0.6 * tip
    if kind == 'hexagon':
        av = np.abs(v)
        return (av <= 1.0) & (np.abs(u) + 0.5 * av <= 1.0)
    raise ValueError('unknown shape %r' % (kind,))


def object_colour(rng, class_id):
    """RGB float32 ``(3,)`` in [0, 255]: the class hue, jittered, saturated and bright."""
    hue = (_HUES[class_id] + rng.uniform(-_HUE_JITTER, _HUE_JITTER)) / 360.0 % 1.0
    rgb = colorsys.hsv_to_rgb(hue, rng.uniform(0.65, 1.0), rng.uniform(0.6, 1.0))
    return np.asarray(rgb, dtype=np.float32) * 255.0


def draw_background(rng, size):
    """Textured background ``(3, size, size)`` float32, lower in contrast than any object.

    A desaturated base colour, a linear colour gradient in a random direction and bilinearly
    upsampled low-frequency colour noise; pixel noise is added later over the whole image.
    """
    base = np.asarray(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.0, 0.3),
                                          rng.uniform(0.35, 0.7)), np.float32) * 255.0
    t = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    angle = rng.uniform(0.0, 2.0 * np.pi)
    ramp = math.cos(angle) * t[None, :] + math.sin(angle) * t[:, None]  # (size, size), |.|<=0.71
    ramp_colour = rng.uniform(-40.0, 40.0, size=3).astype(np.float32)
    # Low-frequency noise: a coarse grid interpolated with a separable linear-interpolation
    # matrix, i.e. grid -> image as A @ G @ A.T per channel.
    n_grid = int(rng.integers(3, 7))
    grid = rng.normal(0.0, 14.0, size=(3, n_grid, n_grid)).astype(np.float32)
    pos = np.clip(t + 0.5, 0.0, 1.0) * (n_grid - 1)
    lo = np.minimum(pos.astype(np.int64), n_grid - 2)
    frac = (pos - lo).astype(np.float32)
    interp = np.zeros((size, n_grid), np.float32)
    interp[np.arange(size), lo] = 1.0 - frac
    interp[np.arange(size), lo + 1] = frac
    noise = np.matmul(np.matmul(interp, grid), interp.T)
    return base[:, None, None] + ramp_colour[:, None, None] * ramp[None] + noise


def rasterise(kind, cy, cx, h, w, size):
    """Pixels of one shape of box centre ``(cy, cx)`` and extent ``(h, w)`` on a size x size image.

    Returns:
        ``(y0, x0, mask)``: the window's top-left pixel and a boolean mask ``(wh, ww)`` of the
        pixels whose centres lie inside the shape, clipped to the image.
    """
    y0, y1 = max(int(math.floor(cy - h / 2.0)), 0), min(int(math.ceil(cy + h / 2.0)), size)
    x0, x1 = max(int(math.floor(cx - w / 2.0)), 0), min(int(math.ceil(cx + w / 2.0)), size)
    v = (np.arange(y0, y1, dtype=np.float32) + 0.5 - cy) * (2.0 / h)
    u = (np.arange(x0, x1, dtype=np.float32) + 0.5 - cx) * (2.0 / w)
    return y0, x0, shape_mask(kind, u[None, :], v[:, None])


def _sample_extent(rng, size, min_scale, max_scale, min_aspect, max_aspect,
                   scale_distribution='log'):
    if scale_distribution == 'log':
        side = size * math.exp(rng.uniform(math.log(min_scale), math.log(max_scale)))
    else:
        side = size * rng.uniform(min_scale, max_scale)
    aspect = math.exp(rng.uniform(math.log(min_aspect), math.log(max_aspect)))  # width / height
    root = math.sqrt(aspect)
    return min(side / root, float(size)), min(side * root, float(size))


class Canvas(object):
    """An image being composed: background plus objects, each pixel owned by its top object.

    Objects are accepted only if no earlier object would be left with less than
    ``1 - max_hidden`` of its own area visible, so every labelled object stays visible.
    """

    def __init__(self, rng, size, max_hidden=0.5):
        self.rng = rng
        self.size = size
        self.max_hidden = max_hidden
        self.owner = np.full((size, size), -1, np.int16)
        self.objects = []  # (class_id, y0, x0, window height, window width)
        self._area = []
        self._visible = []

    def try_add(self, class_id, cy, cx, h, w):
        """Places the shape of ``class_id`` if it hides no earlier object too much; returns
        bool."""
        y0, x0, mask = rasterise(CLASS_NAMES[class_id], cy, cx, h, w, self.size)
        area = int(np.count_nonzero(mask))
        if area == 0:
            return False
        window = self.owner[y0:y0 + mask.shape[0], x0:x0 + mask.shape[1]]
        below = window[mask]
        below = below[below >= 0]
        if below.size:
            hidden = np.bincount(below, minlength=len(self.objects))
            visible = np.asarray(self._visible) - hidden
            if np.any(visible < (1.0 - self.max_hidden) * np.asarray(self._area)):
                return False
            self._visible = list(visible)
        window[mask] = len(self.objects)
        self.objects.append((class_id, y0, x0, mask.shape[0], mask.shape[1]))
        self._area.append(area)
        self._visible.append(area)
        return True

    def render(self, noise_sigma=6.0):
        """Paints the objects and pixel noise; returns ``(img, bbox, label)`` (see module doc).

        Boxes are the tight boxes of each object's visible pixels, as VOC annotates them.
        """
        rng, size = self.rng, self.size
        img = draw_background(rng, size)
        bbox = np.zeros((len(self.objects), 4), np.float32)
        label = np.zeros((len(self.objects),), np.int32)
        for k, (class_id, y0, x0, wh, ww) in enumerate(self.objects):
            mine = self.owner[y0:y0 + wh, x0:x0 + ww] == k
            rows = np.flatnonzero(mine.any(axis=1))
            cols = np.flatnonzero(mine.any(axis=0))
            bbox[k] = (y0 + rows[0], x0 + cols[0], y0 + rows[-1] + 1, x0 + cols[-1] + 1)
            label[k] = class_id
            # A gentle linear shading across the object makes the flat colour less trivial.
            gy, gx = rng.uniform(-0.12, 0.12, size=2)
            shade = (1.0 + gy * np.linspace(-1.0, 1.0, wh, dtype=np.float32)[:, None]
                     + gx * np.linspace(-1.0, 1.0, ww, dtype=np.float32)[None, :])
            patch = img[:, y0:y0 + wh, x0:x0 + ww]
            patch[:, mine] = object_colour(rng, class_id)[:, None] * shade[mine][None, :]
        img += rng.standard_normal(img.shape, dtype=np.float32) * noise_sigma
        np.clip(img, 0.0, 255.0, out=img)
        return img, bbox, label


def draw_detection_image(rng, size=128, n_class=4, max_objects=6, min_scale=1 / 16.,
                         max_scale=2 / 3., min_aspect=0.5, max_aspect=2.0, max_tries=20,
                         scale_distribution='log'):
    """One detection image: 0..max_objects objects (uniform count) of random classes.

    An object whose placement keeps hiding earlier ones is given up after ``max_tries`` draws,
    so an image may hold fewer objects than first drawn (never more).
    Returns ``(img, bbox, label)`` (see module doc).
    """
    canvas = Canvas(rng, size)
    for _ in range(int(rng.integers(0, max_objects + 1))):
        class_id = int(rng.integers(n_class))
        for _ in range(max_tries):
            h, w = _sample_extent(rng, size, min_scale, max_scale, min_aspect, max_aspect,
                                  scale_distribution)
            cy = rng.uniform(h / 2.0, size - h / 2.0)
            cx = rng.uniform(w / 2.0, size - w / 2.0)
            if canvas.try_add(class_id, cy, cx, h, w):
                break
    return canvas.render()


def draw_classification_image(rng, size=64, n_class=4, min_scale=1 / 3., max_scale=3 / 4.,
                              min_aspect=2 / 3., max_aspect=1.5, centre_jitter=0.1):
    """One classification image: a single large object near the centre. Returns ``(img, label)``.

    ``img`` is float32 ``(3, size, size)`` RGB in [0, 255]; ``label`` an int32 scalar.
    """
    canvas = Canvas(rng, size)
    class_id = int(rng.integers(n_class))
    h, w = _sample_extent(rng, size, min_scale, max_scale, min_aspect, max_aspect)
    cy = np.clip(size / 2.0 + rng.uniform(-centre_jitter, centre_jitter) * size, h / 2.0,
                 size - h / 2.0)
    cx = np.clip(size / 2.0 + rng.uniform(-centre_jitter, centre_jitter) * size, w / 2.0,
                 size - w / 2.0)
    canvas.try_add(class_id, cy, cx, h, w)  # nothing to hide on an empty canvas
    img, _, _ = canvas.render()
    return img, np.int32(class_id)


def _check_common(split, n_images, n_class):
    if split not in _SPLITS:
        raise ValueError('split must be one of %s, got %r' % (sorted(_SPLITS), split))
    if n_images < 0:
        raise ValueError('n_images must be >= 0, got %d' % n_images)
    if not 1 <= n_class <= len(CLASS_NAMES):
        raise ValueError('n_class must be in [1, %d], got %d' % (len(CLASS_NAMES), n_class))


def _check_index(i, n):
    if i < 0:
        i += n
    if not 0 <= i < n:
        raise IndexError('index %d out of range for %d images' % (i, n))
    return i


class SyntheticShapesDataset(GetterDataset):
    """Detection dataset of coloured shapes on textured backgrounds (sliceable, ChainerCV-style).

    ``ds[i] -> (img, bbox, label)``: img float32 ``(3, size, size)`` RGB [0, 255]; bbox float32
    ``(R, 4)`` ``(y_min, x_min, y_max, x_max)``, pixel edges; label int32 ``(R,)``; ``R`` in
    ``[0, max_objects]``. Object sides are log-uniform in ``[min_scale, max_scale] * size`` with
    width/height ratios log-uniform in [0.5, 2]; later objects may overlap earlier ones but never
    hide more than half of one. Image ``i`` depends only on ``(seed, split, i)``.
    """

    def __init__(self, split='train', n_images=1000, size=128, n_class=4, seed=0,
                 min_scale=1 / 16., max_scale=2 / 3., max_objects=6, scale_distribution='log'):
        super(SyntheticShapesDataset, self).__init__()
        if scale_distribution not in ('log', 'uniform'):
            raise ValueError("scale_distribution must be 'log' or 'uniform', got %r"
                             % (scale_distribution,))
        self.scale_distribution = scale_distribution
        _check_common(split, n_images, n_class)
        if not 0 < min_scale <= max_scale <= 1:
            raise ValueError('need 0 < min_scale <= max_scale <= 1, got %r, %r'
                             % (min_scale, max_scale))
        self.split, self.n_images, self.size = split, int(n_images), int(size)
        self.n_class, self.seed, self.max_objects = int(n_class), int(seed), int(max_objects)
        self.min_scale, self.max_scale = float(min_scale), float(max_scale)
        self.class_names = CLASS_NAMES[:n_class]
        self.add_getter(('img', 'bbox', 'label'), self._get)

    def __len__(self):
        return self.n_images

    def _get(self, i):
        i = _check_index(i, self.n_images)
        rng = make_rng(self.seed, _TASK_DETECTION, self.split, i)
        return draw_detection_image(rng, self.size, self.n_class, self.max_objects,
                                    self.min_scale, self.max_scale,
                                    scale_distribution=self.scale_distribution)


class SyntheticShapesClassificationDataset(GetterDataset):
    """Classification dataset: one large, roughly centred shape per image (sliceable).

    ``ds[i] -> (img, label)``: img float32 ``(3, size, size)`` RGB [0, 255], label int32 scalar.
    Object sides are log-uniform in [1/3, 3/4] of the image side; same backgrounds and colours as
    :class:`SyntheticShapesDataset`, from a separate random stream.
    """

    def __init__(self, split='train', n_images=1000, size=64, n_class=4, seed=0):
        super(SyntheticShapesClassificationDataset, self).__init__()
        _check_common(split, n_images, n_class)
        self.split, self.n_images, self.size = split, int(n_images), int(size)
        self.n_class, self.seed = int(n_class), int(seed)
        self.class_names = CLASS_NAMES[:n_class]
        self.add_getter(('img', 'label'), self._get)

    def __len__(self):
        return self.n_images

    def _get(self, i):
        i = _check_index(i, self.n_images)
        rng = make_rng(self.seed, _TASK_CLASSIFICATION, self.split, i)
        return draw_classification_image(rng, self.size, self.n_class)
