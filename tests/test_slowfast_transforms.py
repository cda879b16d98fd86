"""AVA training augmentation: the boxes follow the pixels through scale, crop and flip."""
import numpy as np

from chainer_yolo_dist.slowfast.transforms import normalise, random_scale_crop_flip


def marked_clip(h=120, w=160, box=(30, 100, 90, 150)):
    """A dark clip with a bright rectangle exactly covering ``box`` (pixel edges)."""
    clip = np.full((3, 2, h, w), 20., np.float32)
    y0, x0, y1, x1 = box
    clip[:, :, y0:y1, x0:x1] = 240.
    return clip, np.array([box], np.float32)


def test_boxes_follow_pixels_through_scale_crop_and_flip():
    n_visible = 0
    for seed in range(8):
        rng = np.random.default_rng(seed)
        clip, bbox = marked_clip()
        out, out_box = random_scale_crop_flip(clip, bbox, rng, scales=(128, 160), crop=112)
        assert out.shape == (3, 2, 112, 112) and out.dtype == np.float32
        y0, x0, y1, x1 = out_box[0]
        assert 0 <= y0 <= y1 <= 112 and 0 <= x0 <= x1 <= 112
        bright = out[0, 0] > 130
        if (y1 - y0) > 2 and (x1 - x0) > 2:
            n_visible += 1
            # Inside the box (one pixel in from the edges, for interpolation) all is bright;
            # bright pixels lie within a pixel of the box.
            inner = bright[int(np.ceil(y0)) + 1:int(y1) - 1, int(np.ceil(x0)) + 1:int(x1) - 1]
            assert inner.all()
            ys, xs = np.nonzero(bright)
            assert ys.min() >= y0 - 1 and ys.max() < y1 + 1
            assert xs.min() >= x0 - 1 and xs.max() < x1 + 1
        else:
            assert not bright[int(y0) + 2:int(y1) - 2, int(x0) + 2:int(x1) - 2].any()
    assert n_visible >= 4  # most crops keep (part of) the box


def test_flip_mirrors_the_box_and_the_frames():
    clip, bbox = marked_clip(h=112, w=112, box=(10, 5, 40, 30))
    rng = np.random.RandomState(0)
    out, out_box = random_scale_crop_flip(clip, bbox, rng, scales=(112, 112), crop=112,
                                          flip_p=1.0)
    np.testing.assert_allclose(out_box, [[10, 112 - 30, 40, 112 - 5]])
    np.testing.assert_array_equal(out[:, :, :, ::-1], clip)


def test_normalise_uses_pyslowfast_mean_and_std():
    np.testing.assert_allclose(normalise(np.array([0., 114.75, 255.])),
                               [-2., 0., (1 - 0.45) / 0.225], rtol=1e-6)
