"""ImageNet-style classification data in both layouts, with the bad-input policy."""
import os

import numpy as np
import pytest
from PIL import Image

from chainer_yolo_dist.datasets import validation as V
from chainer_yolo_dist.datasets.imagenet import ImageNetDataset

WNIDS = ('n01440764', 'n01443537', 'n02102040')


def write_image(path, seed, size=(48, 64)):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=size + (3,), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format='JPEG')


@pytest.fixture
def imagenet(tmp_path):
    """train: two images per wnid; val: one image for two of the wnids."""
    root = str(tmp_path / 'ILSVRC')
    for k, wnid in enumerate(WNIDS):
        for j in range(2):
            write_image(os.path.join(root, 'train', wnid, '%s_%d.JPEG' % (wnid, j)), 10 * k + j)
    write_image(os.path.join(root, 'val', WNIDS[2], 'ILSVRC2012_val_00000001.JPEG'), 100)
    write_image(os.path.join(root, 'val', WNIDS[0], 'ILSVRC2012_val_00000002.JPEG'), 101)
    return root


def truncate(path):
    data = open(path, 'rb').read()
    with open(path, 'wb') as f:
        f.write(data[:len(data) * 3 // 4])  # past the header: only decoding finds it


def test_directory_layout_labels_follow_sorted_wnids(imagenet):
    train = ImageNetDataset(imagenet, 'train')
    assert train.class_names == WNIDS and train.n_class == 3
    assert len(train) == 6 and train.keys == ('img', 'label')
    assert [int(train[i][1]) for i in range(6)] == [0, 0, 1, 1, 2, 2]
    img, label = train[0]
    assert img.shape == (3, 48, 64) and img.dtype == np.float32 and 0 <= img.min()
    assert isinstance(label, np.int32)
    # val has only two wnid directories but keeps train's class indices
    val = ImageNetDataset(imagenet, 'val')
    assert val.class_names == WNIDS
    assert sorted(int(val[i][1]) for i in range(len(val))) == [0, 2]


def test_list_file_layout_as_chainermn_imagenet_example(imagenet, tmp_path):
    list_file = str(tmp_path / 'train.txt')
    with open(list_file, 'w') as f:
        f.write('train/%s/%s_1.JPEG 1\n\ntrain/%s/%s_0.JPEG 999\n' % (WNIDS[0], WNIDS[0],
                                                                      WNIDS[2], WNIDS[2]))
    ds = ImageNetDataset(imagenet, list_file=list_file)
    assert len(ds) == 2 and ds.n_class == 1000
    assert [int(ds[i][1]) for i in range(2)] == [1, 999]
    expect = ImageNetDataset(imagenet, 'train')[1][0]
    np.testing.assert_array_equal(ds[0][0], expect)


def _bad_list(imagenet, tmp_path):
    list_file = str(tmp_path / 'bad.txt')
    with open(list_file, 'w') as f:
        f.write('train/%s/%s_0.JPEG 0\n' % (WNIDS[0], WNIDS[0]))
        f.write('train/%s/missing.JPEG 1\n' % WNIDS[1])
        f.write('train/%s/%s_0.JPEG 7\n' % (WNIDS[2], WNIDS[2]))
        f.write('train/%s/%s_1.JPEG\n' % (WNIDS[2], WNIDS[2]))
    return list_file


def test_list_file_bad_entries_error_and_skip(imagenet, tmp_path):
    list_file = _bad_list(imagenet, tmp_path)
    with pytest.raises(V.BadSampleError, match=r'bad\.txt:4: expected "path label", got 1'):
        ImageNetDataset(imagenet, list_file=list_file, n_class=3)
    with open(list_file) as f:  # without the malformed line the next problem is reported
        lines = f.readlines()[:3]
    with open(list_file, 'w') as f:
        f.writelines(lines)
    with pytest.raises(V.BadSampleError, match=r'missing\.JPEG: image file missing'):
        ImageNetDataset(imagenet, list_file=list_file, n_class=3)
    list_file = _bad_list(imagenet, tmp_path)
    ds = ImageNetDataset(imagenet, list_file=list_file, n_class=3, on_bad_sample='skip')
    assert len(ds) == 1 and int(ds[0][1]) == 0
    assert ds.report.counts == {V.MALFORMED_ENTRY: 1, V.MISSING_IMAGE: 1,
                                V.LABEL_OUT_OF_RANGE: 1}
    assert (ds.report.n_checked, ds.report.n_kept) == (4, 1)
    assert any('label 7 is outside [0, 3)' in p for _, p in ds.report.problems)


def test_truncated_image_error_and_skip(imagenet):
    bad = os.path.join(imagenet, 'train', WNIDS[1], '%s_0.JPEG' % WNIDS[1])
    truncate(bad)
    with pytest.raises(V.BadSampleError, match='%s: unreadable image' % bad):
        ImageNetDataset(imagenet, 'train')
    ds = ImageNetDataset(imagenet, 'train', on_bad_sample='skip')
    assert len(ds) == 5 and ds.report.counts == {V.UNREADABLE_IMAGE: 1}
    assert ds.report.problems[0][0] == bad
    # Without the load-time decode the file is still named when it is read.
    lazy = ImageNetDataset(imagenet, 'train', check_images=False)
    assert len(lazy) == 6
    with pytest.raises(V.BadSampleError, match='%s: unreadable image' % bad):
        lazy[2]


def test_unknown_wnid_in_val_is_out_of_range(imagenet):
    write_image(os.path.join(imagenet, 'val', 'n09999999', 'x.JPEG'), 7)
    with pytest.raises(V.BadSampleError, match=r'n09999999/x\.JPEG: label -1 is outside'):
        ImageNetDataset(imagenet, 'val')
    assert len(ImageNetDataset(imagenet, 'val', on_bad_sample='skip')) == 2


def test_missing_split_directory_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match='never downloads'):
        ImageNetDataset(str(tmp_path), 'train')
