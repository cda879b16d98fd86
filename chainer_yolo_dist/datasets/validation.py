"""Bad-input policy shared by every dataset: check samples at load time, then fail or skip.

``on_bad_sample='error'`` (the default) raises one :class:`BadSampleError` naming the file and the
problem at the first bad sample found. ``on_bad_sample='skip'`` drops what is bad (a box, or a
whole image when the image or its annotation is missing or unreadable), counts each kind of
problem and keeps every ``(file, problem)`` pair in a :class:`BadSampleReport` for the training
script to print and save.

Boxes use ChainerCV's ``(y_min, x_min, y_max, x_max)`` order; a box is valid only if
``0 <= y_min < y_max <= H`` and ``0 <= x_min < x_max <= W`` with all four values finite.
"""
import io
import math
import os

import numpy as np
from PIL import Image

from chainer_yolo_dist.core.atomic import write_json
from chainer_yolo_dist.datasets import jpeg


ON_BAD_SAMPLE = ('error', 'skip')

# Problems that drop the whole sample under 'skip'.
MISSING_ANNOTATION = 'missing_annotation'
UNREADABLE_ANNOTATION = 'unreadable_annotation'
MISSING_IMAGE = 'missing_image'
UNREADABLE_IMAGE = 'unreadable_image'
MALFORMED_ENTRY = 'malformed_entry'  # a list-file line that is not "path label"
# Problems that drop one box (detection) or the sample (classification label) under 'skip'.
UNKNOWN_CLASS = 'unknown_class'
LABEL_OUT_OF_RANGE = 'label_out_of_range'
MALFORMED_BOX = 'malformed_box'
EMPTY_BOX = 'empty_box'
BOX_OUTSIDE_IMAGE = 'box_outside_image'


#: Problems that cost one box of a detection sample under 'skip' (the rest drop the sample).
BOX_PROBLEMS = (UNKNOWN_CLASS, MALFORMED_BOX, EMPTY_BOX, BOX_OUTSIDE_IMAGE)
#: How to go on past a bad sample, said with the error.
SKIP_HINT = '--on-bad-sample skip drops %s, counts it and goes on'


class BadSampleError(ValueError):
    """A dataset sample is unusable; the message starts with the offending file."""


def check_policy(on_bad_sample):
    if on_bad_sample not in ON_BAD_SAMPLE:
        raise ValueError('on_bad_sample must be one of %s, got %r'
                         % (ON_BAD_SAMPLE, on_bad_sample))
    return on_bad_sample


class BadSampleReport(object):
    """What validation found: counts by kind and every ``(file, problem)``.

    Attributes:
        on_bad_sample (str): the policy in force.
        counts (dict): problem kind -> number of occurrences.
        problems (list): ``(file, problem)`` string pairs, in the order found.
        n_checked (int): samples (images) examined.
        n_kept (int): samples kept after dropping bad ones.
        n_boxes_dropped (int): boxes dropped from kept images.
    """

    def __init__(self, on_bad_sample='error'):
        self.on_bad_sample = check_policy(on_bad_sample)
        self.counts = {}
        self.problems = []
        self.n_checked = 0
        self.n_kept = 0
        self.n_boxes_dropped = 0

    def record(self, kind, file, problem, hint=None):
        """Raises :class:`BadSampleError` under 'error', saying how to go on (``hint``, e.g.
        the class to add, else dropping with ``--on-bad-sample skip``); otherwise counts and
        keeps the problem."""
        if self.on_bad_sample == 'error':
            raise BadSampleError('%s: %s (%s)' % (file, problem, hint or SKIP_HINT % (
                'the box' if kind in BOX_PROBLEMS else 'the sample')))
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.problems.append((str(file), problem))

    @property
    def n_dropped(self):
        return self.n_checked - self.n_kept

    def as_dict(self):
        return {'on_bad_sample': self.on_bad_sample, 'n_checked': self.n_checked,
                'n_kept': self.n_kept, 'n_dropped': self.n_dropped,
                'n_boxes_dropped': self.n_boxes_dropped,
                'counts': dict(sorted(self.counts.items())),
                'problems': ['%s: %s' % fp for fp in self.problems]}

    def summary(self):
        """One line: how many samples were checked, kept, dropped, and the counts by kind."""
        kinds = ', '.join('%s %d' % kv for kv in sorted(self.counts.items())) or 'no problems'
        return ('%d samples checked, %d kept, %d dropped, %d boxes dropped (%s)'
                % (self.n_checked, self.n_kept, self.n_dropped, self.n_boxes_dropped, kinds))

    def save(self, path):
        """Writes :meth:`as_dict` as JSON to ``path``, atomically."""
        return write_json(path, self.as_dict())

    @classmethod
    def merge(cls, reports):
        """One report adding up several (e.g. VOC2007 and VOC2012 parts of one training set)."""
        reports = list(reports)
        merged = cls(reports[0].on_bad_sample if reports else 'error')
        for r in reports:
            for kind, n in r.counts.items():
                merged.counts[kind] = merged.counts.get(kind, 0) + n
            merged.problems.extend(r.problems)
            merged.n_checked += r.n_checked
            merged.n_kept += r.n_kept
            merged.n_boxes_dropped += r.n_boxes_dropped
        return merged

    def __repr__(self):
        return '<BadSampleReport %s: %s>' % (self.on_bad_sample, self.summary())


def jpeg_header_size(path):
    """``(H, W)`` from a JPEG file's frame header (:func:`~.jpeg.frame_size` on its first
    64 KiB; EXIF blocks are smaller), or ``None`` if it is not a JPEG or the header cannot be
    followed (the caller then asks PIL). About 13 us a file where ``PIL.Image.open`` takes
    60-90 us: at ImageNet's 1.33 M files that is the difference between a quarter of a minute
    and two minutes of start-up (``docs/rehearsal.md``).
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        return jpeg.frame_size(os.read(fd, 65536))
    finally:
        os.close(fd)


def image_size(path, decode=True):
    """``(H, W)`` of an image file; with ``decode`` the whole file is decoded to prove it readable.

    JPEGs are decoded in PIL's draft mode (DCT scaling to 1/8), which still consumes the whole
    entropy-coded stream, so truncation is caught at a fraction of a full decode's cost.
    Without ``decode``, a JPEG's size is read from its frame header (:func:`jpeg_header_size`),
    any other file's by ``PIL.Image.open`` (which reads the header only).
    Raises whatever PIL raises (``OSError`` for a truncated or unidentifiable file).
    """
    if not decode:
        size = jpeg_header_size(path)
        if size is not None:
            return size
    with Image.open(path) as im:
        width, height = im.size
        if decode:
            if im.format == 'JPEG':
                im.draft('RGB', (max(1, width // 8), max(1, height // 8)))
            im.load()
    return height, width


def inspect_image(path, decode=True):
    """What is wrong with the image file at ``path``: ``('ok', H, W)``, or ``(kind, message)``
    with ``kind`` :data:`MISSING_IMAGE` or :data:`UNREADABLE_IMAGE`."""
    if not os.path.isfile(path):
        return MISSING_IMAGE, 'image file missing'
    try:
        height, width = image_size(path, decode)
    except Exception as e:  # any decoder failure means the image cannot be trained on
        return UNREADABLE_IMAGE, 'unreadable image (%s: %s)' % (type(e).__name__, e)
    return 'ok', height, width


#: What the start-up checks found (:func:`install_checks`), consulted by :func:`check_image`.
_CHECKS = None


def install_checks(checks):
    """Makes :func:`check_image` answer from ``checks``
    (:class:`~chainer_yolo_dist.datasets.image_checks.ImageChecks`; None: inspect every file)."""
    global _CHECKS
    _CHECKS = checks


def installed_checks():
    """The :class:`~chainer_yolo_dist.datasets.image_checks.ImageChecks` in use, or None."""
    return _CHECKS


def check_image(report, path, decode=True):
    """``(H, W)`` of a readable image, or ``None`` after recording why it is missing/unreadable.

    After the start-up checks
    (:func:`~chainer_yolo_dist.datasets.image_checks.check_images_across_ranks`) a file they
    covered is not opened again."""
    result = _CHECKS.result(path, decode) if _CHECKS is not None else None
    if result is None:
        result = inspect_image(path, decode)
    if result[0] != 'ok':
        report.record(result[0], path, result[1])
        return None
    return result[1], result[2]


def box_problem(box, height, width, indices=False):
    """``(kind, text)`` saying what is wrong with one box, or ``None`` if it is valid.

    ``box`` is ``(y_min, x_min, y_max, x_max)`` in an image of ``height`` x ``width``; valid is
    ``0 <= y_min < y_max <= height`` and ``0 <= x_min < x_max <= width`` for pixel-edge
    coordinates, and ``<= height - 1`` / ``<= width - 1`` for 0-based pixel ``indices`` (VOC's,
    after ChainerCV subtracts 1): one pixel past any edge is outside, on every side alike.
    """
    top = 1 if indices else 0
    y_min, x_min, y_max, x_max = (float(c) for c in box)
    if not all(math.isfinite(c) for c in (y_min, x_min, y_max, x_max)):
        return MALFORMED_BOX, 'has non-finite coordinates %r' % ((y_min, x_min, y_max, x_max),)
    for lo_name, lo, hi_name, hi in (('y_min', y_min, 'y_max', y_max),
                                     ('x_min', x_min, 'x_max', x_max)):
        if lo >= hi:
            return EMPTY_BOX, 'has %s %.1f >= %s %.1f' % (lo_name, lo, hi_name, hi)
    for name, value, limit in (('y_min', y_min, None), ('x_min', x_min, None),
                               ('y_max', y_max, height - top), ('x_max', x_max, width - top)):
        if value < 0 or (limit is not None and value > limit):
            return BOX_OUTSIDE_IMAGE, ('has %s %.1f outside the %dx%d (HxW) image'
                                       % (name, value, height, width))
    return None


def check_label(report, file, label, n_class, what='label'):
    """True if ``0 <= label < n_class``; otherwise records the problem and returns False."""
    if 0 <= label < n_class:
        return True
    report.record(LABEL_OUT_OF_RANGE, file, '%s %d is outside [0, %d)' % (what, label, n_class))
    return False


def read_image(path, dtype=np.float32):
    """The image at ``path`` as float32 ``(3, H, W)`` RGB in [0, 255]; a file that cannot be
    fully decoded raises :class:`BadSampleError` naming it and the problem, on one line.

    ``dtype=numpy.uint8`` gives the decoded pixels themselves, uint8 ``(3, H, W)`` in the same
    layout, without the float conversion (the same decode and the same checks; CycleGAN's
    folder images and AVA's frames stay uint8 until they are on the device).

    The array is a ``(3, H, W)`` view (``transpose(2, 0, 1)``) of C-contiguous ``(H, W, 3)``
    memory, not a C-contiguous ``(3, H, W)`` array: shape, dtype, RGB order and value range are
    ChainerCV's, only the strides differ. The decoders deliver interleaved pixels and the
    augmentations work on interleaved pixels (OpenCV's layout), so
    :func:`chainer_yolo_dist.datasets.imageops.hwc` takes this memory as it is instead of
    copying it twice (``docs/loader.md``). Callers that need contiguous planes copy
    (``numpy.ascontiguousarray``).

    JPEG files (starting with ``FF D8 FF``) are decoded with OpenCV (``cv2.imdecode``,
    libjpeg-turbo), after :func:`chainer_yolo_dist.datasets.jpeg.truncation` has checked that
    the file reaches its end-of-image marker: OpenCV itself returns the decoded part of a
    truncated JPEG with a warning and no error. The pixels are then those of
    ``chainercv.utils.read_image(path, color=True)`` with its default (OpenCV) backend, except
    that the EXIF orientation tag is ignored (``cv2.IMREAD_IGNORE_ORIENTATION``; VOC's boxes
    refer to the stored pixel grid, and ChainerCV's PIL backend ignores the tag too). A
    greyscale JPEG gives its grey level in all three channels, as Pillow's does, bit for bit;
    so does an RGB (YCbCr) JPEG (the same libjpeg-turbo decode and upsampling). A CMYK or YCCK
    JPEG differs by up to 2 grey levels: both apply K multiplicatively, but OpenCV computes
    ``R = K' - ((255 - C') K' >> 8)`` on the stored (Adobe, inverted) values ``C' = 255 - C``,
    ``K' = 255 - K``, a division by 256 rounded down, where Pillow's ``convert('RGB')`` (and
    ChainerCV's PIL backend) computes ``round((255 - C) (255 - K) / 255)``. A JPEG that OpenCV
    does not decode (``imdecode`` returns ``None``, a corrupt header for one) goes to Pillow,
    which decodes it or raises.

    Other formats (PNG, ...) are decoded with Pillow, ``convert('RGB')`` (ChainerCV's PIL
    backend; an alpha channel is ignored, ChainerCV's ``alpha='ignore'``).
    """
    import cv2
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.uint8):
        raise ValueError('read_image: dtype must be float32 or uint8, got %s' % dtype)
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as e:
        raise BadSampleError('%s: unreadable image (%s: %s)'
                             % (path, type(e).__name__, e)) from e
    if jpeg.is_jpeg(data):
        problem = jpeg.truncation(data)
        if problem is not None:
            raise BadSampleError('%s: unreadable image (%s)' % (path, problem))
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8),
                           cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        if bgr is not None:
            # cvtColor then astype: 0.1 ms together; a strided [..., ::-1] cast takes 1.4 ms.
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)  # a new, writable uint8 array
            return rgb.astype(dtype, copy=False).transpose(2, 0, 1)
    try:
        with Image.open(io.BytesIO(data)) as im:
            rgb = np.asarray(im if im.mode == 'RGB' else im.convert('RGB'))
    except Exception as e:  # name the file: PIL's own message does not
        raise BadSampleError('%s: unreadable image (%s: %s)'
                             % (path, type(e).__name__, e)) from e
    return rgb.astype(dtype).transpose(2, 0, 1)  # a copy: Pillow's array may be read-only
