"""Unpaired image data for CycleGAN: two image folders, or two synthetic domains.

Every dataset here returns images as float32 ``(3, H, W)`` RGB in ``[-1, 1]`` (the range of the
generator's tanh; :func:`to_network_range` maps ChainerCV's [0, 255] there, :func:`to_uint8`
back). A training sample is a pair ``(a, b)`` of one image of domain A and one of domain B.
Training reads the pairs through :func:`stored_form`, where folder images that need no resizing
stay uint8 until they are on the device (:func:`scale_to_network` there gives the same bits).

Pairing. Zhu's ``UnalignedDataset`` has ``max(|A|, |B|)`` samples; sample ``i`` takes
``A[i mod |A|]`` and a B image drawn at random on every access. Here the B image is
``B[perm[i mod |B|]]`` for a permutation fixed by ``seed``, so that a sample is a function of
its index (the per-epoch sampling then decides what a rank sees, and a resumed run sees the same
images). The CycleGAN losses are sums of per-domain terms, so the pairing only decides which A
and which B image share a step.

Folder images of any size are resized (bicubic) so that the shorter side is ``load_size``
(default ``size``), keeping the aspect ratio, then centre-cropped to ``size`` x ``size``; Zhu's
default ``resize_and_crop`` resizes to a 286x286 square and crops at random with flips, which
:func:`random_crop_flip` offers for a caller with its own generator. Paper 002's inputs are
256x256 crops already (:mod:`chainer_yolo_dist.cyclegan.person_crops`).
"""
import math
import os

import chainer
import numpy as np
import PIL.Image
from chainercv import transforms

from chainer_yolo_dist.datasets import image_checks, synthetic
from chainer_yolo_dist.datasets import validation as V

#: File name endings read as images (Zhu's ``IMG_EXTENSIONS``, lower-cased).
IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.tif', '.tiff', '.webp')


def scale_to_network(x):
    """``(..., H, W)`` NumPy or CuPy array in [0, 255] (any dtype) -> float32 in [-1, 1], on
    the array's device: ``float32(x) / 127.5 - 1``, two float32 operations whose results are
    the same bits on the host and on a GPU (IEEE division; two separate kernels, so no fused
    multiply-add)."""
    return x.astype(np.float32) / 127.5 - 1.0


def to_network_range(img):
    """``(3, H, W)`` in [0, 255] -> float32 in [-1, 1] (NumPy)."""
    return scale_to_network(np.asarray(img)).astype(np.float32, copy=False)


def to_network(img):
    """An image in a stored form (:func:`stored_form`): uint8 in [0, 255] -> float32 in
    [-1, 1]; anything else is already in [-1, 1] and is returned as is."""
    return to_network_range(img) if img.dtype == np.uint8 else img


def to_uint8(x):
    """``(3, H, W)`` in [-1, 1] (NumPy) -> ``(H, W, 3)`` uint8, for saving or showing."""
    x = np.asarray(x, np.float32)
    return np.clip(np.round((x.transpose(1, 2, 0) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def list_images(directory):
    """Sorted paths of the image files under ``directory`` (recursively)."""
    if not os.path.isdir(directory):
        raise FileNotFoundError('%s: image folder not found' % (directory,))
    paths = []
    for root, _, files in os.walk(directory):
        paths.extend(os.path.join(root, f) for f in files
                     if f.lower().endswith(IMG_EXTENSIONS))
    return sorted(paths)


def _resized_shape(shape, size, load_size=None):
    """``(H, W)`` after scaling the shorter side of ``shape`` to ``load_size`` (default
    ``size``), keeping the aspect ratio."""
    load_size = int(load_size or size)
    if load_size < size:
        raise ValueError('load_size %d is smaller than size %d' % (load_size, size))
    h, w = shape
    scale = load_size / float(min(h, w))
    return max(load_size, int(round(h * scale))), max(load_size, int(round(w * scale)))


def resize_and_centre_crop(img, size, load_size=None):
    """``(3, H, W)`` -> ``(3, size, size)``: shorter side to ``load_size`` (bicubic), then crop."""
    new = _resized_shape(img.shape[1:], size, load_size)
    if new != tuple(img.shape[1:]):
        img = transforms.resize(img, new, interpolation=PIL.Image.BICUBIC)
    return transforms.center_crop(img, (size, size))


def random_crop_flip(img, size, rng):
    """Zhu's training augmentation after resizing: a random ``size`` crop, then a flip w.p. 0.5.

    ``rng`` is a ``numpy.random.Generator`` the caller owns (seed it per sample and epoch for
    reproducible runs).
    """
    h, w = img.shape[1:]
    y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    img = img[:, y:y + size, x:x + size]
    return img[:, :, ::-1].copy() if rng.uniform() < 0.5 else img.copy()


class ImageFolder(chainer.dataset.DatasetMixin):
    """The images of one folder, read lazily: ``ds[i] -> (3, size, size)`` float32 in [-1, 1].

    Every file is checked at construction as ``image_check`` says ('decode': decoded;
    'header': its header read; 'none': not opened) under the package's bad-input policy
    (:mod:`chainer_yolo_dist.datasets.validation`): 'error' raises one :class:`BadSampleError`
    naming the first unreadable file, 'skip' leaves such files out and lists them in
    ``report``. Files the start-up checks covered (:func:`check_images`, split across the
    ranks and cached) are not opened again. Images are read by the package's one reader
    (:func:`~chainer_yolo_dist.datasets.validation.read_image`, as uint8), so a file found
    unreadable only when it is read (after a header check or none, or changed since: a JPEG
    cut short included) raises BadSampleError naming it, under either policy, and the run
    ends (``docs/reliability.md``). An empty
    folder (after skipping) is an error. ``check_images`` is the former switch: True is
    'decode', False 'header'.
    """

    def __init__(self, directory, size=256, load_size=None, on_bad_sample='error',
                 image_check='decode', check_images=None):
        self.directory, self.size, self.load_size = directory, int(size), load_size
        self.report = V.BadSampleReport(on_bad_sample)
        image_check = image_checks.image_check_mode(image_check, check_images)
        self.paths = []
        for path in list_images(directory):
            self.report.n_checked += 1
            if image_check == 'none' or V.check_image(
                    self.report, path, decode=image_check == 'decode') is not None:
                self.paths.append(path)
        self.report.n_kept = len(self.paths)
        if not self.paths:
            raise ValueError('%s: no readable images (%s)' % (directory, self.report.summary()))

    def __len__(self):
        return len(self.paths)

    def get_example(self, i):
        return to_network(self.stored_example(i))

    def stored_example(self, i):
        """Image ``i`` in its stored form (:func:`stored_form`): the file's own uint8 pixels
        ``(3, size, size)`` in [0, 255] when it needs no resizing (paper 002's 256 px crops),
        else float32 in [-1, 1] (bicubic resizing makes values no uint8 holds).
        :meth:`get_example` is :func:`to_network` of it, bit for bit what reading the file as
        float32 and converting it gives."""
        path = self.paths[i]
        try:
            # The package's one reader: a JPEG cut short (copied while being written, a disk
            # that filled) is refused naming the file, where OpenCV alone decodes the part
            # it has and greys the rest.
            img = V.read_image(path, dtype=np.uint8)
        except V.BadSampleError:
            raise
        except Exception as e:  # the file changed since it was checked
            raise V.BadSampleError('%s: unreadable image (%s: %s)'
                                   % (path, type(e).__name__, e)) from e
        if _resized_shape(img.shape[1:], self.size, self.load_size) == img.shape[1:]:
            return np.ascontiguousarray(transforms.center_crop(img, (self.size, self.size)))
        # ChainerCV resizes float32 [0, 255] images (as read before): same numbers as ever.
        return to_network_range(resize_and_centre_crop(img.astype(np.float32), self.size,
                                                       self.load_size))


class UnpairedImageFolders(chainer.dataset.DatasetMixin):
    """Two folders as CycleGAN's unpaired domains: ``ds[i] -> (a, b)``, each ``(3, size, size)``.

    ``len = max(|A|, |B|)``; ``a = A[i mod |A|]``, ``b = B[perm[i mod |B|]]`` with ``perm`` fixed
    by ``seed`` (module doc). ``domain_a`` / ``domain_b`` are the two :class:`ImageFolder` s
    (for translation and Frechet distances); ``report`` merges their bad-input reports.
    """

    def __init__(self, dir_a, dir_b, size=256, load_size=None, seed=0, on_bad_sample='error',
                 image_check='decode', check_images=None):
        self.domain_a = ImageFolder(dir_a, size, load_size, on_bad_sample, image_check,
                                    check_images)
        self.domain_b = ImageFolder(dir_b, size, load_size, on_bad_sample, image_check,
                                    check_images)
        self.report = V.BadSampleReport.merge([self.domain_a.report, self.domain_b.report])
        self.perm_b = np.random.RandomState(seed).permutation(len(self.domain_b))

    def __len__(self):
        return max(len(self.domain_a), len(self.domain_b))

    def get_example(self, i):
        return tuple(to_network(x) for x in self.stored_pair(i))

    def stored_pair(self, i):
        """Pair ``i`` in its stored form (:meth:`ImageFolder.stored_example`, for training)."""
        return (self.domain_a.stored_example(i % len(self.domain_a)),
                self.domain_b.stored_example(int(self.perm_b[i % len(self.domain_b)])))


# --- the embedded synthetic default -------------------------------------------------------------

_SPLITS = {'train': 0, 'val': 1, 'test': 2}
_TASK = 7  # keeps these streams apart from the detection (0) and classification (1) datasets
_DOMAIN_A, _DOMAIN_B, _PAIRED_B = 0, 1, 2
_SCENE, _STYLE = 0, 1
#: Domain B's colour shift: per-channel gain and offset on [0, 255] (a warm, darker "camera").
B_GAIN = np.array([1.05, 0.92, 0.72], np.float32)
B_OFFSET = np.array([18.0, 6.0, -4.0], np.float32)
B_NOISE_SIGMA = 9.0
#: Domain B's background base colour (before the shift) and its per-image jitter.
B_BACKGROUND = np.array([120.0, 115.0, 100.0], np.float32)
B_BACKGROUND_JITTER = 20.0
#: Domain A's backdrop: top and bottom colours of its vertical gradient.
CG_BACKDROP = (np.array([215.0, 218.0, 222.0], np.float32),
               np.array([150.0, 150.0, 146.0], np.float32))


def _rng(seed, split, domain, index, part):
    if split not in _SPLITS:
        raise ValueError('split must be one of %s, got %r' % (sorted(_SPLITS), split))
    return np.random.default_rng([int(seed), _TASK, _SPLITS[split], domain, int(index), part])


def draw_scene(rng, size, n_class=4, max_objects=3):
    """The content both domains share: which shapes, where, in which colours.

    Returns ``(canvas, colours)``: a :class:`synthetic.Canvas` whose ``owner`` map
    ``(size, size)`` gives each pixel's object (-1: background) and the object colours
    ``(R, 3)`` in [0, 255]. 1..``max_objects`` shapes of sides 20-50 % of the image, none hiding
    more than half of another.
    """
    canvas = synthetic.Canvas(rng, size)
    for _ in range(int(rng.integers(1, max_objects + 1))):
        class_id = int(rng.integers(n_class))
        for _ in range(20):
            side = size * rng.uniform(0.2, 0.5)
            aspect = math.exp(rng.uniform(math.log(2 / 3.), math.log(1.5)))
            h, w = side / math.sqrt(aspect), side * math.sqrt(aspect)
            cy, cx = rng.uniform(h / 2, size - h / 2), rng.uniform(w / 2, size - w / 2)
            if canvas.try_add(class_id, cy, cx, h, w):
                break
    colours = np.array([synthetic.object_colour(rng, c) for c, *_ in canvas.objects],
                       np.float32).reshape(-1, 3)
    return canvas, colours


def cg_backdrop(size):
    """Domain A's backdrop, the same in every image: light grey at the top to darker at the bottom.

    Why one fixed backdrop: the generators' first instance normalisation removes each input
    channel's mean and scale, so a generator cannot know the absolute colours of a flat image.
    A known backdrop of fixed contrast is the reference against which the objects' colours stay
    recoverable, so the cycle A -> B -> A can be learnt.
    """
    t = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None]
    top, bottom = CG_BACKDROP
    img = top[:, None, None] * (1 - t)[None] + bottom[:, None, None] * t[None]
    return np.broadcast_to(img, (3, size, size)).astype(np.float32)


def render_cg(scene):
    """Domain A ("CG"): flat colours on :func:`cg_backdrop`, no noise. ``(3, S, S)`` [0, 255]."""
    canvas, colours = scene
    img = cg_backdrop(canvas.size).copy()
    for k in range(len(colours)):
        img[:, canvas.owner == k] = colours[k][:, None]
    return img


def render_real(scene, rng):
    """Domain B ("real"): textured background, shaded and striped objects, colour shift, noise.

    The same objects as :func:`render_cg` in the same places; ``rng`` draws the style. The
    background has the texture of :func:`synthetic.draw_background` (colour ramp, low-frequency
    noise) around a base colour near :data:`B_BACKGROUND`. Returns ``(3, S, S)`` float32 in
    [0, 255].
    """
    canvas, colours = scene
    size = canvas.size
    texture = synthetic.draw_background(rng, size)
    base = B_BACKGROUND + rng.uniform(-B_BACKGROUND_JITTER, B_BACKGROUND_JITTER, 3)
    img = texture - texture.mean(axis=(1, 2), keepdims=True) + base[:, None, None]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    for k, (_, y0, x0, wh, ww) in enumerate(canvas.objects):
        mine = canvas.owner[y0:y0 + wh, x0:x0 + ww] == k
        gy, gx = rng.uniform(-0.25, 0.25, 2)
        shade = (1.0 + gy * np.linspace(-1, 1, wh, dtype=np.float32)[:, None]
                 + gx * np.linspace(-1, 1, ww, dtype=np.float32)[None, :])
        angle, period = rng.uniform(0, np.pi), rng.uniform(3.0, 6.0)
        stripes = 1.0 + 0.18 * np.sin(
            2 * np.pi * (xx[y0:y0 + wh, x0:x0 + ww] * np.cos(angle)
                         + yy[y0:y0 + wh, x0:x0 + ww] * np.sin(angle)) / period)
        patch = img[:, y0:y0 + wh, x0:x0 + ww]
        patch[:, mine] = colours[k][:, None] * (shade * stripes)[mine][None]
    img = img * B_GAIN[:, None, None] + B_OFFSET[:, None, None]
    img += rng.standard_normal(img.shape, dtype=np.float32) * B_NOISE_SIGMA
    return np.clip(img, 0.0, 255.0).astype(np.float32)


class SyntheticDomains(chainer.dataset.DatasetMixin):
    """Two procedurally drawn domains with the same kind of content and different styles.

    Domain A ("CG") renders a scene of coloured shapes (:mod:`chainer_yolo_dist.datasets.
    synthetic`) flat and clean on one fixed backdrop; domain B ("real") renders other scenes of
    the same kind with a textured background, shading, stripes, a warm colour shift and pixel
    noise. A small
    CycleGAN learns A -> B on a CPU in minutes.

    ``ds[i] -> (a, b)``: float32 ``(3, size, size)`` in [-1, 1]; ``a`` shows scene ``i`` of
    domain A and ``b`` an independent scene ``i`` of domain B (unpaired). Everything depends
    only on ``(seed, split, i)``. ``paired_b(i)`` renders A's scene ``i`` in B's style: a ground
    truth for the translation that training never sees. ``domain_a`` / ``domain_b`` are
    single-domain views (``view[i] -> image``).
    """

    def __init__(self, split='train', n_images=1000, size=64, seed=0, n_class=4,
                 max_objects=3):
        if n_images < 0:
            raise ValueError('n_images must be >= 0, got %d' % n_images)
        _rng(seed, split, 0, 0, 0)  # validates split
        self.split, self.n_images, self.size, self.seed = split, int(n_images), int(size), seed
        self.n_class, self.max_objects = int(n_class), int(max_objects)
        self.domain_a = _DomainView(self, 'a')
        self.domain_b = _DomainView(self, 'b')

    def __len__(self):
        return self.n_images

    def _scene(self, domain, i):
        return draw_scene(_rng(self.seed, self.split, domain, i, _SCENE), self.size,
                          self.n_class, self.max_objects)

    def _check(self, i):
        if not 0 <= i < self.n_images:
            raise IndexError('index %d out of range for %d images' % (i, self.n_images))
        return int(i)

    def image_a(self, i):
        return to_network_range(render_cg(self._scene(_DOMAIN_A, self._check(i))))

    def image_b(self, i):
        i = self._check(i)
        return to_network_range(render_real(self._scene(_DOMAIN_B, i),
                                            _rng(self.seed, self.split, _DOMAIN_B, i, _STYLE)))

    def paired_b(self, i):
        i = self._check(i)
        return to_network_range(render_real(self._scene(_DOMAIN_A, i),
                                            _rng(self.seed, self.split, _PAIRED_B, i, _STYLE)))

    def get_example(self, i):
        return self.image_a(i), self.image_b(i)


class _DomainView(chainer.dataset.DatasetMixin):
    def __init__(self, parent, which):
        self.parent, self.which = parent, which

    def __len__(self):
        return len(self.parent)

    def get_example(self, i):
        return getattr(self.parent, 'image_' + self.which)(i)


# --- the registry of CycleGAN data sets ---------------------------------------------------------

#: The unpaired data sets a preset or ``--dataset`` may name.
DATASETS = ('synthetic_domains', 'folders')
#: ``class_names`` of a CycleGAN run: its two domains (the core counts them as "classes").
DOMAIN_NAMES = ('domain_a', 'domain_b')


def _folders(request):
    """The image folders of a 'folders' request: training A and B, then test A and B if
    given."""
    return [d for d in (request.dir_a, request.dir_b, request.test_dir_a, request.test_dir_b)
            if d]


def check_images(request, comm, log):
    """Checks every image of the domain folders (training and test) once as
    ``request.image_check`` says ('header', 'decode', or nothing for 'none'), split across the
    ranks and remembered between starts
    (:func:`~chainer_yolo_dist.datasets.image_checks.check_files`; the cache is that of the
    folders' common parent directory). Rank 0's :class:`ImageFolder` s then take each file's
    result from the checks instead of opening it. Synthetic domains: nothing on disk."""
    if request.dataset != 'folders' or request.image_check == 'none':
        image_checks.check_files([], comm, 'none', None)
        if request.dataset == 'folders' and comm.rank == 0:
            log(image_checks.summary('none', None, comm.size))
        return
    folders = list(dict.fromkeys(os.path.abspath(d) for d in _folders(request)))
    if not all(os.path.isdir(d) for d in folders):
        return  # load_data names the missing folder
    paths = [p for d in folders for p in list_images(d)]
    root = os.path.commonpath(folders)
    counts = image_checks.check_files(paths, comm, request.image_check,
                                      image_checks.default_cache_path(root))
    if comm.rank == 0 and paths:
        log(image_checks.summary(request.image_check, counts, comm.size))


def load_data(request):
    """``(train, test, class_names, reports)`` for ``request`` (a CycleGANData).

    ``train`` and ``test`` yield ``(a, b)`` pairs and have ``domain_a`` / ``domain_b`` views.
    'synthetic_domains': :class:`SyntheticDomains` train / test splits; 'folders':
    :class:`UnpairedImageFolders` of ``dir_a`` / ``dir_b``, tested on ``test_dir_a`` /
    ``test_dir_b`` (both or neither; neither: the training folders, as paper 002 sec. 4.4
    computes FID on the training domains, a reading).
    """
    if request.dataset == 'synthetic_domains':
        train = SyntheticDomains('train', request.n_train_images, request.image_size,
                                 request.seed)
        test = SyntheticDomains('test', request.n_test_images, request.image_size,
                                request.seed)
        return train, test, DOMAIN_NAMES, {'train': None, 'test': None}
    if request.dataset != 'folders':
        raise ValueError('unknown CycleGAN dataset %r: choose one of %s'
                         % (request.dataset, ', '.join(DATASETS)))
    if not request.dir_a or not request.dir_b:
        raise ValueError('--dataset folders needs --dir-a and --dir-b')
    if bool(request.test_dir_a) != bool(request.test_dir_b):
        raise ValueError('give both --test-dir-a and --test-dir-b, or neither')
    options = dict(size=request.image_size, seed=request.seed,
                   on_bad_sample=request.on_bad_sample, image_check=request.image_check)
    train = UnpairedImageFolders(request.dir_a, request.dir_b, **options)
    test = (UnpairedImageFolders(request.test_dir_a, request.test_dir_b, **options)
            if request.test_dir_a else train)
    return train, test, DOMAIN_NAMES, {'train': train.report,
                                       'test': test.report if test is not train else None}


def stored_form(dataset):
    """``dataset`` of ``(a, b)`` pairs as training reads it: each image uint8 in [0, 255] where
    it has such a form (:meth:`UnpairedImageFolders.stored_pair`), else float32 in [-1, 1]
    (:class:`SyntheticDomains` renders non-integer values: nothing to gain). The batch
    converter (:func:`~chainer_yolo_dist.cyclegan.updater.pair_converter`) copies uint8 images
    to the device as they are and scales them there, a quarter of the bytes of float32."""
    if hasattr(dataset, 'stored_pair'):
        return _StoredPairs(dataset)
    return dataset


class _StoredPairs(chainer.dataset.DatasetMixin):
    def __init__(self, base):
        self.base = base

    def __len__(self):
        return len(self.base)

    def get_example(self, i):
        return self.base.stored_pair(i)


def flip_pair(pair, rng):
    """Training transform: each image of an ``(a, b)`` pair flipped left-right with
    probability 0.5 (Zhu's default ``no_flip=False``), from ``rng`` (a ``RandomState``)."""
    return tuple(x[:, :, ::-1].copy() if rng.uniform() < 0.5 else x for x in pair)
