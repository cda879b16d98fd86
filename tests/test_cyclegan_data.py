"""Unpaired data: folders of any size under the bad-input policy, and the synthetic domains."""
import os

import numpy as np
import pytest
from PIL import Image

from chainer_yolo_dist.cyclegan.data import (
    ImageFolder, SyntheticDomains, UnpairedImageFolders, cg_backdrop, random_crop_flip,
    resize_and_centre_crop, to_network_range, to_uint8)
from chainer_yolo_dist.datasets.validation import BadSampleError


def _write(path, h, w, value, mode='RGB'):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    arr = np.full((h, w, 3), value, np.uint8)
    img = Image.fromarray(arr)
    if mode != 'RGB':
        img = img.convert(mode)
    img.save(path)


def test_ranges_round_trip():
    img = np.array([[[0.]], [[127.5]], [[255.]]], np.float32)
    x = to_network_range(img)
    np.testing.assert_allclose(x[:, 0, 0], [-1, 0, 1])
    assert to_uint8(x).shape == (1, 1, 3) and list(to_uint8(x)[0, 0]) == [0, 128, 255]


def test_resize_and_crops():
    img = np.zeros((3, 40, 80), np.float32)
    img[:, :, 30:50] = 255  # a bright band in the middle columns
    out = resize_and_centre_crop(img, 20)  # 40x80 -> 20x40 -> centre 20x20
    assert out.shape == (3, 20, 20)
    assert out[:, :, 10].min() > 200 and out[:, :, 0].max() < 50
    rng = np.random.default_rng(0)
    crops = [random_crop_flip(np.arange(3 * 6 * 6, dtype=np.float32).reshape(3, 6, 6), 4, rng)
             for _ in range(20)]
    assert all(c.shape == (3, 4, 4) for c in crops)
    assert len({c.tobytes() for c in crops}) > 3  # positions and flips vary
    with pytest.raises(ValueError):
        resize_and_centre_crop(img, 32, load_size=16)


def test_folders_any_size_lazy_and_paired_by_a_fixed_permutation(tmp_path):
    a_dir, b_dir = str(tmp_path / 'A'), str(tmp_path / 'B')
    _write(os.path.join(a_dir, 'x0.png'), 30, 50, 10)
    _write(os.path.join(a_dir, 'sub', 'x1.jpg'), 64, 64, 200)
    _write(os.path.join(a_dir, 'x2.png'), 20, 20, 100, mode='L')  # greyscale
    for k in range(5):
        _write(os.path.join(b_dir, 'y%d.png' % k), 40 + k, 33, 50 * k, mode='RGBA')
    open(os.path.join(b_dir, 'notes.txt'), 'w').write('not an image')
    ds = UnpairedImageFolders(a_dir, b_dir, size=16, seed=3)
    assert len(ds) == 5 and len(ds.domain_a) == 3
    a, b = ds[4]
    assert a.shape == b.shape == (3, 16, 16) and a.dtype == np.float32
    assert a.min() >= -1 and b.max() <= 1
    # Paths sorted as strings, subfolders included: A/sub/x1.jpg, A/x0.png, A/x2.png;
    # a = A[4 mod 3] = A/x0.png, the image of value 10.
    assert [os.path.relpath(p, a_dir) for p in ds.domain_a.paths] == [
        os.path.join('sub', 'x1.jpg'), 'x0.png', 'x2.png']
    np.testing.assert_allclose(a, to_network_range(np.full((3, 16, 16), 10.)), atol=1 / 127.5)
    np.testing.assert_allclose(ds[2][0], to_network_range(np.full((3, 16, 16), 100.)),
                               atol=1 / 127.5)  # the greyscale file, read as RGB
    perm = np.random.RandomState(3).permutation(5)
    values = sorted({round(float(ds[i][1].mean()), 3) for i in range(5)})
    assert len(values) == 5  # every B image once per max(|A|, |B|) samples
    np.testing.assert_allclose(ds[0][1].mean(), 50 * perm[0] / 127.5 - 1, atol=1e-2)


def test_bad_files_error_or_skip(tmp_path):
    a_dir, b_dir = str(tmp_path / 'A'), str(tmp_path / 'B')
    _write(os.path.join(a_dir, 'good.png'), 20, 20, 10)
    _write(os.path.join(b_dir, 'good.png'), 20, 20, 10)
    with open(os.path.join(a_dir, 'broken.jpg'), 'wb') as f:
        f.write(b'\xff\xd8\xff\xe0 definitely not a jpeg')
    with pytest.raises(BadSampleError, match='broken.jpg'):
        UnpairedImageFolders(a_dir, b_dir, size=16)
    ds = UnpairedImageFolders(a_dir, b_dir, size=16, on_bad_sample='skip')
    assert len(ds.domain_a) == 1 and ds.report.n_dropped == 1
    assert 'broken.jpg' in ds.report.problems[0][0]
    os.remove(os.path.join(b_dir, 'good.png'))
    with pytest.raises(ValueError, match='no readable images'):
        ImageFolder(b_dir, 16)
    with pytest.raises(FileNotFoundError):
        ImageFolder(str(tmp_path / 'missing'), 16)
    # A file that breaks after the check is reported by name when read.
    folder = ImageFolder(a_dir, 16, on_bad_sample='skip')
    with open(folder.paths[0], 'wb') as f:
        f.write(b'gone')
    with pytest.raises(BadSampleError, match='good.png'):
        folder[0]


def test_synthetic_domains_are_deterministic_and_split_apart():
    ds = SyntheticDomains('train', n_images=6, size=32, seed=1)
    a, b = ds[2]
    assert a.shape == b.shape == (3, 32, 32) and a.dtype == b.dtype == np.float32
    assert -1 <= a.min() and a.max() <= 1 and -1 <= b.min() and b.max() <= 1
    again = SyntheticDomains('train', n_images=100, size=32, seed=1)  # n does not matter
    np.testing.assert_array_equal(again[2][0], a)
    np.testing.assert_array_equal(again[2][1], b)
    assert not np.array_equal(SyntheticDomains('test', 6, 32, seed=1)[2][0], a)
    assert not np.array_equal(SyntheticDomains('train', 6, 32, seed=2)[2][0], a)
    np.testing.assert_array_equal(ds.domain_a[2], a)
    np.testing.assert_array_equal(ds.domain_b[2], b)
    with pytest.raises(IndexError):
        ds[6]
    with pytest.raises(ValueError):
        SyntheticDomains('dev', 3)


def test_synthetic_styles_differ_and_content_is_shared():
    ds = SyntheticDomains('train', n_images=8, size=64, seed=0)
    backdrop = to_network_range(cg_backdrop(64))
    for i in range(8):
        a, b = ds[i]
        # A is clean: outside the objects exactly the fixed backdrop, each object one colour.
        background = np.all(np.abs(a - backdrop) < 1e-6, axis=0)
        assert 0.2 < background.mean() < 1.0
        objects = a[:, ~background].T
        assert len(np.unique(objects, axis=0)) <= ds.max_objects
        # B is noisy: thousands of colours.
        assert len(np.unique(b.reshape(3, -1), axis=1).T) > 1000
        # paired_b renders A's scene in B's style: the objects sit on the same pixels, so they
        # keep colours close to A's there while the background changes completely.
        ref = ds.paired_b(i)
        inside = np.abs(ref[:, ~background] - a[:, ~background]).mean()
        outside = np.abs(ref[:, background] - a[:, background]).mean()
        assert inside < outside
    # The colour shift: B is warmer than A on average (more red than blue, relatively).
    a_all = np.stack([ds[i][0] for i in range(8)])
    b_all = np.stack([ds[i][1] for i in range(8)])
    assert (b_all[:, 0] - b_all[:, 2]).mean() > (a_all[:, 0] - a_all[:, 2]).mean()


def test_stored_forms_are_uint8_where_lossless_and_give_the_same_bits(tmp_path):
    # Issue 21 (14): folder images that need no resizing reach the converter as uint8 (copied
    # to the device as such and scaled there); resized ones stay float32 [-1, 1]. Either way
    # the network sees exactly what reading the file as float32 gave before.
    from chainercv.utils import read_image
    from chainer_yolo_dist.cyclegan.data import stored_form, to_network
    rng = np.random.RandomState(0)
    a_dir, b_dir = tmp_path / 'A', tmp_path / 'B'
    a_dir.mkdir()
    b_dir.mkdir()
    for k, (h, w) in enumerate(((16, 16), (16, 24), (30, 20))):  # crop only; crop; resize
        Image.fromarray(rng.randint(0, 256, (h, w, 3)).astype(np.uint8)).save(
            str(a_dir / ('a%d.png' % k)))
        Image.fromarray(rng.randint(0, 256, (h, w, 3)).astype(np.uint8)).save(
            str(b_dir / ('b%d.png' % k)))
    ds = UnpairedImageFolders(str(a_dir), str(b_dir), size=16, seed=1)
    kinds = [ds.domain_a.stored_example(i).dtype for i in range(3)]
    assert kinds == [np.uint8, np.uint8, np.float32]
    for i in range(3):
        # the old reading: float32 pixels, resized if needed, cropped, scaled
        old = to_network_range(resize_and_centre_crop(read_image(ds.domain_a.paths[i]), 16))
        assert ds.domain_a[i].dtype == np.float32
        assert ds.domain_a[i].tobytes() == old.tobytes()
        assert to_network(ds.domain_a.stored_example(i)).tobytes() == old.tobytes()
    train = stored_form(ds)
    assert len(train) == len(ds)
    for i in range(len(ds)):
        assert all(to_network(s).tobytes() == x.tobytes() for s, x in zip(train[i], ds[i]))
    synthetic = SyntheticDomains('train', 2, 16)
    assert stored_form(synthetic) is synthetic  # rendered floats: no uint8 form
