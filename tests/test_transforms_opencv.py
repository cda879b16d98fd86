"""The OpenCV augmentations against the former NumPy / Matplotlib / PIL ones, draw for draw.

The reference below is the former implementation, copied verbatim (``_ref_*``), with ChainerCV's
resize forced to its PIL backend as it ran before OpenCV was a dependency. Both are driven by
the same ``numpy.random.RandomState`` seeds; the draws must be identical (same boxes, labels and
the same state of the stream afterwards) and the pixels agree within these tolerances, in grey
levels of [0, 255]:

- HSV shift (Matplotlib float64 against OpenCV float32): at most 0.01 anywhere.
- Detection crop + resize where the crop is enlarged on both axes (always at 608 for a 500x375
  image unless the crop's sides both move outwards): at most 0.01 where the enlargement is
  bilinear on both sides; where an axis shrinks, PIL's widening triangle filter against
  OpenCV's area average: mean |diff| <= 0.6, 99th percentile <= 3, image mean within 0.05 and
  standard deviation within 0.5 %.
- Classification rotate/scale/crop (exact bilinear against ``cv2.warpAffine``, which quantises
  sampling positions to 1/32 pixel): mean |diff| <= 0.15, 99th percentile <= 1, at most 12.
- Validation centre crop (a 1.67x reduction: PIL triangle against area average): mean |diff|
  <= 1, 99th percentile <= 5, image mean within 0.05.

The images here are C-contiguous ``(3, H, W)``; the datasets' reader returns ``(3, H, W)`` views
of interleaved memory, on which every transform gives the same outputs bit for bit (the last
tests), so these tolerances hold for them too.
"""
import math
import threading

import chainer
import numpy as np
import pytest
from chainercv import transforms
from matplotlib.colors import hsv_to_rgb, rgb_to_hsv

from chainer_yolo_dist.classification import transforms as cls_transforms
from chainer_yolo_dist.datasets import imageops
from chainer_yolo_dist.detection import transforms as det_transforms
from chainer_yolo_dist.datasets.synthetic import draw_detection_image

# ---------------------------------------------------------------- the former implementation


def _ref_rand_scale(rng, s):
    scale = rng.uniform(1, s)
    return scale if rng.randint(2) else 1 / scale


def _ref_distort_hsv(img, hue, saturation, exposure, rng):
    dhue = rng.uniform(-hue, hue)
    dsat = _ref_rand_scale(rng, saturation)
    dexp = _ref_rand_scale(rng, exposure)
    hsv = rgb_to_hsv(np.clip(img.transpose(1, 2, 0) / 255, 0, 1))
    hsv[..., 0] = (hsv[..., 0] + dhue) % 1.0
    hsv[..., 1] = np.clip(hsv[..., 1] * dsat, 0, 1)
    hsv[..., 2] = np.clip(hsv[..., 2] * dexp, 0, 1)
    return (hsv_to_rgb(hsv) * 255).astype(np.float32).transpose(2, 0, 1)


def _ref_resize(img, size):
    with chainer.using_config('cv_resize_backend', 'PIL'):
        return transforms.resize(img, size)


def _ref_yolo_augmentation(in_data, rng, size, jitter=0.2, hue=0.1, saturation=1.5,
                           exposure=1.5, flip=True):
    img, bbox, label = in_data
    _, H, W = img.shape
    dh, dw = int(H * jitter), int(W * jitter)
    top, bottom = rng.randint(-dh, dh + 1, size=2)
    left, right = rng.randint(-dw, dw + 1, size=2)
    h, w = H - top - bottom, W - left - right
    img = det_transforms.crop_with_fill(img, top, left, h, w)
    bbox = transforms.translate_bbox(bbox, -top, -left)
    bbox, label = det_transforms.clip_and_filter_bbox(bbox, label, (h, w), min_side=0)
    img = _ref_resize(img, (size, size))
    bbox = transforms.resize_bbox(bbox, (h, w), (size, size))
    if flip and rng.randint(2):
        img = img[:, :, ::-1]
        bbox = transforms.flip_bbox(bbox, (size, size), x_flip=True)
    img = _ref_distort_hsv(img, hue, saturation, exposure, rng)
    bbox, label = det_transforms.clip_and_filter_bbox(bbox, label, (size, size))
    return img, bbox.astype(np.float32), label.astype(np.int32), (h, w)


def _ref_cls_rand_scale(rng, s):
    scale = rng.uniform(min(1.0, s), max(1.0, s))
    return scale if rng.randint(2) else 1.0 / scale


def _ref_bilinear_sample(img, ys, xs, fill=0.0):
    C, H, W = img.shape
    y0 = np.floor(ys).astype(np.int64)
    x0 = np.floor(xs).astype(np.int64)
    wy = (ys - y0).astype(np.float32)
    wx = (xs - x0).astype(np.float32)
    out = np.zeros((C,) + ys.shape, dtype=np.float32)
    for dy, weight_y in ((0, 1 - wy), (1, wy)):
        for dx, weight_x in ((0, 1 - wx), (1, wx)):
            yy, xx = y0 + dy, x0 + dx
            inside = (yy >= 0) & (yy < H) & (xx >= 0) & (xx < W)
            values = np.where(inside, img[:, np.clip(yy, 0, H - 1), np.clip(xx, 0, W - 1)],
                              np.float32(fill))
            out += values * (weight_y * weight_x)
    return out


def _ref_rotate_scale_crop(img, size, rad, scale, dy, dx, aspect, fill=0.0):
    _, H, W = img.shape
    grid_y, grid_x = np.meshgrid(np.arange(size, dtype=np.float64),
                                 np.arange(size, dtype=np.float64), indexing='ij')
    u = (grid_x - size / 2.0 + dx) * aspect / scale
    v = (grid_y - size / 2.0 + dy) / scale
    cos, sin = math.cos(rad), math.sin(rad)
    xs = cos * u - sin * v + W / 2.0
    ys = sin * u + cos * v + H / 2.0
    return _ref_bilinear_sample(img, ys, xs, fill)


def _ref_darknet_augmentation(example, rng, size, angle=7.0, aspect_jitter=0.75, hue=0.1,
                              saturation=0.75, exposure=0.75, fill=0.0):
    img, label = example
    _, H, W = img.shape
    aspect = _ref_cls_rand_scale(rng, aspect_jitter)
    shorter = rng.randint(size, 2 * size + 1)
    scale = shorter / min(H, W * aspect)
    rad = math.radians(rng.uniform(-angle, angle))
    slack_x = abs(W * scale / aspect - size) / 2.0
    slack_y = abs(H * scale - size) / 2.0
    dx = rng.uniform(-slack_x, slack_x)
    dy = rng.uniform(-slack_y, slack_y)
    out = _ref_rotate_scale_crop(img, size, rad, scale, dy, dx, aspect, fill)
    if rng.randint(2):
        out = out[:, :, ::-1]
    out = _ref_distort_hsv(out, hue, saturation, exposure, rng)
    return out, label


def _ref_center_crop(img, size):
    with chainer.using_config('cv_resize_backend', 'PIL'):
        img = transforms.scale(img, size, fit_short=True)
    return transforms.center_crop(img, (size, size))

# --------------------------------------------------------------------------------- helpers


@pytest.fixture(scope='module')
def voc_like():
    """A 500x375 (W x H) synthetic scene, VOC's commonest image size, with its boxes."""
    img, bbox, label = draw_detection_image(np.random.default_rng(0), size=500)
    img = np.ascontiguousarray(img[:, :375])
    bbox, label = det_transforms.clip_and_filter_bbox(bbox, label, (375, 500))
    assert len(label) >= 2
    return img, bbox, label


def _diff(a, b):
    assert a.shape == b.shape and a.dtype == b.dtype == np.float32
    d = np.abs(a.astype(np.float64) - b)
    return d.max(), d.mean(), np.percentile(d, 99)


def _same_stream_after(rng_a, rng_b):
    assert rng_a.randint(2 ** 31) == rng_b.randint(2 ** 31)

# ----------------------------------------------------------------------------------- tests


@pytest.mark.parametrize('hue,saturation,exposure', [(0.1, 1.5, 1.5), (0.5, 3.0, 3.0),
                                                     (0.1, 0.75, 0.75)])
def test_hsv_shift_matches_matplotlib(hue, saturation, exposure):
    state = np.random.RandomState(5)
    img = state.uniform(-10, 265, (3, 40, 50)).astype(np.float32)  # out of range is clipped
    img[:, :5] = state.uniform(0, 255, (1, 5, 50))  # grey pixels: S = 0, hue undefined
    img[:, 5:8] = 0  # black: V = 0
    for seed in range(40):  # both signs of the hue shift, factors above and below 1
        a, b = np.random.RandomState(seed), np.random.RandomState(seed)
        new = imageops.distort_hsv(img, hue, saturation, exposure, a)
        ref = _ref_distort_hsv(img, hue, saturation, exposure, b)
        assert _diff(new, ref)[0] <= 0.01
        _same_stream_after(a, b)


def test_yolo_augmentation_matches_the_former_one(voc_like):
    enlarged = shrunk = 0
    for seed in range(12):
        for size in (608, 416):
            a, b = np.random.RandomState(seed), np.random.RandomState(seed)
            img, bbox, label = det_transforms.YOLOAugmentation(size)(voc_like, a)
            ref_img, ref_bbox, ref_label, (h, w) = _ref_yolo_augmentation(voc_like, b, size)
            _same_stream_after(a, b)
            np.testing.assert_array_equal(label, ref_label)
            np.testing.assert_allclose(bbox, ref_bbox, atol=1e-4)
            worst, mean, p99 = _diff(img, ref_img)
            if h <= size and w <= size:
                enlarged += 1
                assert worst <= 0.01, (seed, size, worst)
            else:
                shrunk += 1
                assert mean <= 0.6 and p99 <= 3, (seed, size, mean, p99)
                assert abs(img.mean() - ref_img.mean()) <= 0.05
                assert abs(img.std() / ref_img.std() - 1) <= 0.005
    assert enlarged >= 5 and shrunk >= 5  # both paths were compared


def test_darknet_augmentation_matches_the_former_one(voc_like):
    img = voc_like[0]
    for seed in range(8):
        a, b = np.random.RandomState(seed), np.random.RandomState(seed)
        new, label = cls_transforms.DarknetAugmentation(224)((img, np.int32(3)), a)
        ref, _ = _ref_darknet_augmentation((img, np.int32(3)), b, 224)
        _same_stream_after(a, b)
        assert label == 3
        worst, mean, p99 = _diff(new, ref)
        assert mean <= 0.15 and p99 <= 1 and worst <= 12, (seed, worst, mean, p99)


def test_rotate_scale_crop_outside_pixels_take_the_fill(voc_like):
    img = voc_like[0]
    # A small scale leaves a border of fill around the image; compared with the exact sampler.
    new = cls_transforms.rotate_scale_crop(img, 224, 0.3, 0.3, 0.0, 0.0, 1.2, fill=17.0)
    ref = _ref_rotate_scale_crop(img, 224, 0.3, 0.3, 0.0, 0.0, 1.2, fill=17.0)
    assert new[:, 0, 0].tolist() == [17.0] * 3
    worst, mean, _ = _diff(new, ref)
    assert worst <= 12 and mean <= 0.15


def test_center_crop_matches_the_former_one(voc_like):
    img = voc_like[0]
    # Landscape, portrait, and one whose shorter side is already 224 (crop only).
    for src in (img, img.transpose(0, 2, 1), img[:, :224, :301]):
        src = np.ascontiguousarray(src)
        new, label = cls_transforms.CenterCrop(224)((src, np.int32(1)))
        ref = _ref_center_crop(src, 224)
        assert new.shape == (3, 224, 224) and label == 1
        worst, mean, p99 = _diff(new, ref)
        assert mean <= 1 and p99 <= 5 and abs(new.mean() - ref.mean()) <= 0.05, (src.shape, mean)


def test_outputs_do_not_depend_on_chainercv_resize_backend(voc_like):
    img = voc_like[0]
    runs = {
        'resize': lambda: det_transforms.ResizeTransform(608)(voc_like)[0],
        'yolo': lambda: det_transforms.YOLOAugmentation(416)(voc_like,
                                                             np.random.RandomState(1))[0],
        'darknet': lambda: cls_transforms.DarknetAugmentation(224)(
            (img, 0), np.random.RandomState(1))[0],
        'center': lambda: cls_transforms.CenterCrop(224)((img, 0))[0],
    }
    for name, run in runs.items():
        outs = []
        for backend in ('PIL', 'cv2', None):
            with chainer.using_config('cv_resize_backend', backend):
                outs.append(run())
        np.testing.assert_array_equal(outs[0], outs[1], err_msg=name)
        np.testing.assert_array_equal(outs[0], outs[2], err_msg=name)
    resized = runs['resize']()
    assert _diff(resized, _ref_resize(img, (608, 608)))[0] <= 0.01


def test_outputs_are_not_overwritten_by_the_next_call(voc_like):
    aug = det_transforms.YOLOAugmentation(416)
    first = aug(voc_like, np.random.RandomState(0))[0]
    kept = first.copy()
    for seed in range(1, 4):
        aug(voc_like, np.random.RandomState(seed))
        cls_transforms.DarknetAugmentation(224)((voc_like[0], 0), np.random.RandomState(seed))
    np.testing.assert_array_equal(first, kept)


def test_scratch_arrays_are_per_thread():
    mine = imageops.scratch('test', (4, 5, 3))
    theirs = []

    def other_thread():
        theirs.append(imageops.scratch('test', (4, 5, 3)))

    worker = threading.Thread(target=other_thread)
    worker.start()
    worker.join()
    assert not np.shares_memory(mine, theirs[0])
    assert np.shares_memory(mine, imageops.scratch('test', (2, 3, 3)))


# ------------------------------------------------- the datasets' interleaved (3, H, W) images


def _interleaved(img):
    """``img``'s pixels as :func:`~chainer_yolo_dist.datasets.validation.read_image` returns
    them: a ``(3, H, W)`` view of C-contiguous ``(H, W, 3)`` memory."""
    view = np.ascontiguousarray(img.transpose(1, 2, 0)).transpose(2, 0, 1)
    assert not view.flags.c_contiguous
    return view


def test_hwc_takes_an_interleaved_view_as_it_is_and_copies_planes(voc_like):
    planar = voc_like[0]
    view = _interleaved(planar)
    out = imageops.scratch('test_hwc', (375, 500, 3))
    out[...] = -1
    got = imageops.hwc(view, out=out)
    assert got.shape == (375, 500, 3) and got.flags.c_contiguous
    assert np.shares_memory(got, view) and not np.shares_memory(got, out)
    assert (out == -1).all()  # out is not used when no copy is needed
    assert not got.flags.writeable and view.flags.writeable  # the caller's image stays writable
    with pytest.raises(ValueError):
        got[0, 0, 0] = 1  # the dataset's image cannot be altered through it
    # A C-contiguous (3, H, W) array is interleaved into out; other dtypes are converted.
    copied = imageops.hwc(planar, out=out)
    assert np.shares_memory(copied, out) and not np.shares_memory(copied, planar)
    assert copied.flags.writeable
    np.testing.assert_array_equal(copied, got)
    as_uint8 = imageops.hwc(np.ascontiguousarray(view.astype(np.uint8).transpose(1, 2, 0))
                            .transpose(2, 0, 1))
    assert as_uint8.dtype == np.float32 and as_uint8.flags.writeable


def test_transforms_give_the_same_outputs_on_interleaved_images(voc_like):
    # So the tolerances above, measured on C-contiguous images, hold for the datasets' images.
    img, bbox, label = voc_like
    view = _interleaved(img)
    kept = view.copy()
    cases = [
        ('yolo', lambda im, seed: det_transforms.YOLOAugmentation(608)(
            (im, bbox, label), np.random.RandomState(seed))),
        ('yolo paper', lambda im, seed: det_transforms.for_reading('paper', 416)(
            (im, bbox, label), np.random.RandomState(seed))),
        ('darknet', lambda im, seed: cls_transforms.DarknetAugmentation(224)(
            (im, np.int32(0)), np.random.RandomState(seed))),
        ('center', lambda im, seed: cls_transforms.CenterCrop(224)((im, np.int32(0)))),
        ('resize', lambda im, seed: det_transforms.ResizeTransform(416)((im, bbox, label))),
        ('hsv', lambda im, seed: (imageops.distort_hsv(im, 0.1, 1.5, 1.5,
                                                       np.random.RandomState(seed)),)),
        ('warp', lambda im, seed: (cls_transforms.rotate_scale_crop(
            im, 224, 0.1, 1.3, 4.0, -3.0, 1.1),)),
    ]
    for name, run in cases:
        for seed in range(4):
            new, ref = run(view, seed), run(img, seed)
            assert new[0].flags.c_contiguous, name
            for a, b in zip(new, ref):
                np.testing.assert_array_equal(a, b, err_msg=name)
    np.testing.assert_array_equal(view, kept)  # only read
