"""Pascal VOC / VOC-format datasets on a VOCdevkit built on the fly, and the bad-input policy."""
import json
import os
import pickle

import numpy as np
import pytest
from PIL import Image

from chainer.dataset import download
from chainercv.datasets import VOCBboxDataset, voc_bbox_label_names

from chainer_yolo_dist.datasets import validation as V
from chainer_yolo_dist.datasets.voc import (VOCFormatDataset, default_devkit_dir, voc07_test,
                                            voc0712_train)

FILMROLE = ('player', 'referee', 'goalkeeper', 'ball', 'other')
H, W = 40, 60


def write_jpeg(path, seed, size=(H, W)):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=size + (3,), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=95)


def write_xml(path, objects, size=(H, W)):
    """objects: (name, (xmin, ymin, xmax, ymax) in VOC's 1-based pixels, difficult or None)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    parts = ['<annotation><filename>%s</filename><size><width>%d</width><height>%d</height>'
             '<depth>3</depth></size>' % (os.path.basename(path), size[1], size[0])]
    for name, (x0, y0, x1, y1), difficult in objects:
        diff = '' if difficult is None else '<difficult>%d</difficult>' % difficult
        parts.append('<object><name>%s</name><pose>Left</pose><truncated>0</truncated>%s'
                     '<bndbox><xmin>%s</xmin><ymin>%s</ymin><xmax>%s</xmax><ymax>%s</ymax>'
                     '</bndbox></object>' % (name, diff, x0, y0, x1, y1))
    parts.append('</annotation>')
    with open(path, 'w') as f:
        f.write(''.join(parts))


def write_split(root, split, ids):
    os.makedirs(os.path.join(root, 'ImageSets', 'Main'), exist_ok=True)
    with open(os.path.join(root, 'ImageSets', 'Main', split + '.txt'), 'w') as f:
        f.write(''.join(i + '\n' for i in ids))


def add_image(root, id_, objects, seed=0):
    write_jpeg(os.path.join(root, 'JPEGImages', id_ + '.jpg'), seed)
    if objects is not None:
        write_xml(os.path.join(root, 'Annotations', id_ + '.xml'), objects)


# id -> objects, per (year, split): two VOC2007 trainval images (one with a difficult person),
# one VOC2012 trainval image, two VOC2007 test images (one difficult bottle).
DEVKIT = {
    ('2007', 'trainval'): {
        '000005': [('chair', (11, 21, 40, 30), 0), ('person', (2, 3, 20, 39), 1)],
        '000007': [('car', (1, 1, 60, 40), 0)],
    },
    ('2012', 'trainval'): {
        '2008_000008': [('Horse ', (5, 6, 50, 35), 0), ('person', (30, 2, 45, 20), 0)],
    },
    ('2007', 'test'): {
        '000001': [('dog', (10, 12, 30, 33), 0), ('bottle', (40, 5, 45, 15), 1)],
        '000002': [('cat', (3, 4, 58, 39), 0)],
    },
}


@pytest.fixture
def devkit(tmp_path):
    for seed, ((year, split), images) in enumerate(sorted(DEVKIT.items())):
        root = str(tmp_path / ('VOC' + year))
        for k, (id_, objects) in enumerate(sorted(images.items())):
            add_image(root, id_, objects, seed=10 * seed + k)
        write_split(root, split, sorted(images))
    return str(tmp_path)


def expected(objects, use_difficult):
    bbox = [(y0 - 1, x0 - 1, y1 - 1, x1 - 1) for _, (x0, y0, x1, y1), d in objects
            if use_difficult or not d]
    label = [voc_bbox_label_names.index(n.lower().strip()) for n, _, d in objects
             if use_difficult or not d]
    return np.array(bbox, np.float32).reshape(-1, 4), np.array(label, np.int32)


def test_voc0712_train_concatenates_2007_and_2012_trainval_without_difficult(devkit):
    ds = voc0712_train(devkit)
    assert len(ds) == 3
    assert ds.class_names == voc_bbox_label_names
    assert ds.keys == ('img', 'bbox', 'label')
    objects = [o for year in ('2007', '2012')
               for _, o in sorted(DEVKIT[(year, 'trainval')].items())]
    for i, objs in enumerate(objects):
        img, bbox, label = ds[i]
        assert img.shape == (3, H, W) and img.dtype == np.float32
        assert bbox.dtype == np.float32 and label.dtype == np.int32
        want_bbox, want_label = expected(objs, use_difficult=False)
        np.testing.assert_array_equal(bbox, want_bbox)
        np.testing.assert_array_equal(label, want_label)
    # 000005's difficult person is gone; VOC coordinates are 1-based, ours 0-based.
    np.testing.assert_array_equal(ds[0][1], [[20, 10, 29, 39]])
    assert ds.report.n_checked == 3 and ds.report.n_kept == 3 and not ds.report.problems


def test_datasets_survive_pickling_for_bcast_obj(devkit):
    # The training script validates on rank 0 and sends the dataset to the others by pickle.
    ds = voc0712_train(devkit, on_bad_sample='skip')
    copy = pickle.loads(pickle.dumps(ds))
    assert len(copy) == len(ds) and copy.class_names == ds.class_names
    assert copy.report.summary() == ds.report.summary()
    for a, b in zip(copy[2], ds[2]):
        np.testing.assert_array_equal(a, b)


def test_voc07_test_keeps_difficult_objects_and_flags(devkit):
    ds = voc07_test(devkit)
    assert len(ds) == 2
    assert ds.keys == ('img', 'bbox', 'label', 'difficult')
    img, bbox, label, difficult = ds[0]
    np.testing.assert_array_equal(bbox, [[11, 9, 32, 29], [4, 39, 14, 44]])
    np.testing.assert_array_equal(label, [voc_bbox_label_names.index('dog'),
                                          voc_bbox_label_names.index('bottle')])
    np.testing.assert_array_equal(difficult, [False, True])
    assert difficult.dtype == bool


@pytest.mark.parametrize('year,split,use_difficult,return_difficult', [
    ('2007', 'trainval', False, False), ('2012', 'trainval', False, False),
    ('2007', 'test', True, True), ('2007', 'test', False, True)])
def test_samples_identical_to_chainercv_voc_bbox_dataset(devkit, year, split, use_difficult,
                                                         return_difficult):
    root = os.path.join(devkit, 'VOC' + year)
    ours = VOCFormatDataset(root, split, voc_bbox_label_names, use_difficult, return_difficult)
    theirs = VOCBboxDataset(root, split, year, use_difficult, return_difficult)
    assert ours.keys == theirs.keys and len(ours) == len(theirs)
    for i in range(len(ours)):
        for a, b in zip(ours[i], theirs[i]):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)


def test_missing_voc_data_is_one_line_naming_what_is_missing_and_downloads_nothing(
        tmp_path, monkeypatch):
    devkit = tmp_path / 'VOCdevkit'
    add_image(str(devkit / 'VOC2007'), '000001', [('dog', (1, 1, 9, 9), 0)])
    write_split(str(devkit / 'VOC2007'), 'trainval', ['000001'])
    with pytest.raises(FileNotFoundError) as e:
        voc0712_train(str(devkit))
    msg = str(e.value)
    assert 'never downloads' in msg and '\n' not in msg
    # A missing year is named once, not with every file under it; what exists is not named.
    assert 'missing %s/;' % (devkit / 'VOC2012') in msg
    assert 'VOC2007/JPEGImages' not in msg and 'VOC2012/JPEGImages' not in msg
    with pytest.raises(FileNotFoundError, match='test.txt'):
        voc07_test(str(devkit))
    # The parent of a VOCdevkit: the subfolder to give instead.
    with pytest.raises(FileNotFoundError, match='holds a VOCdevkit folder: give --data-dir %s$'
                       % devkit):
        voc0712_train(str(tmp_path))
    with pytest.raises(FileNotFoundError, match='no such folder: give --data-dir VOCDEVKIT'):
        voc0712_train(str(tmp_path / 'nope'))

    # The default location is ChainerCV's, under CHAINER_DATASET_ROOT, and is not created.
    monkeypatch.setattr(download, '_dataset_root', str(tmp_path / 'root'))
    assert default_devkit_dir() == str(tmp_path / 'root/pfnet/chainercv/voc/VOCdevkit')
    with pytest.raises(FileNotFoundError, match='pfnet/chainercv/voc/VOCdevkit/VOC2007'):
        voc07_test()
    assert not (tmp_path / 'root').exists()


# --- bad input -------------------------------------------------------------------------------

GOOD = [('player', (5, 5, 20, 30), 0), ('ball', (30, 10, 34, 14), 0)]


def _truncate(root, id_):
    path = os.path.join(root, 'JPEGImages', id_ + '.jpg')
    data = open(path, 'rb').read()
    with open(path, 'wb') as f:
        f.write(data[:len(data) // 2])
    return path


def _drop_annotation(root, id_):
    path = os.path.join(root, 'Annotations', id_ + '.xml')
    os.remove(path)
    return path


# case -> (objects of image 'bad', how to break it, error pattern, kind, boxes kept in 'skip' or
# None when the whole image goes)
BAD_CASES = {
    'truncated_jpeg': (GOOD, _truncate, r'JPEGImages/bad\.jpg: unreadable image',
                       V.UNREADABLE_IMAGE, None),
    'missing_annotation': (GOOD, _drop_annotation,
                           r'Annotations/bad\.xml: annotation file missing',
                           V.MISSING_ANNOTATION, None),
    'unknown_class': ([GOOD[0], ('alien', (1, 1, 9, 9), 0)], None,
                      r"Annotations/bad\.xml: box 1 has unknown class name 'alien'",
                      V.UNKNOWN_CLASS, 1),
    'x_min_ge_x_max': ([('referee', (41, 5, 13, 30), 0), GOOD[1]], None,
                       r'Annotations/bad\.xml: box 0 has x_min 40\.0 >= x_max 12\.0',
                       V.EMPTY_BOX, 1),
    'box_outside_image': ([GOOD[0], ('goalkeeper', (10, 10, W + 5, 20), 0)], None,
                          r'Annotations/bad\.xml: box 1 has x_max 64\.0 outside the 40x60',
                          V.BOX_OUTSIDE_IMAGE, 1),
    'malformed_coordinate': ([('other', (1, 'abc', 9, 9), 0)], None,
                             r'Annotations/bad\.xml: box 0 is malformed', V.MALFORMED_BOX, 0),
    'difficult_box_is_checked_too': ([GOOD[0], ('ball', (0, 3, 8, 9), 1)], None,
                                     r'box 1 has x_min -1\.0 outside', V.BOX_OUTSIDE_IMAGE, 1),
}


def make_filmrole(tmp_path, objects, breaker=None):
    """A VOC-format dataset with a good image on each side of the one called 'bad'."""
    root = str(tmp_path / 'filmrole')
    add_image(root, 'good1', GOOD, seed=1)
    add_image(root, 'bad', objects, seed=2)
    add_image(root, 'good2', GOOD[:1], seed=3)
    write_split(root, 'train', ['good1', 'bad', 'good2'])
    if breaker is not None:
        breaker(root, 'bad')
    return root


@pytest.mark.parametrize('case', sorted(BAD_CASES))
def test_bad_input_raises_naming_file_and_problem_by_default(tmp_path, case):
    objects, breaker, pattern, _, _ = BAD_CASES[case]
    root = make_filmrole(tmp_path, objects, breaker)
    with pytest.raises(V.BadSampleError, match=pattern) as e:
        VOCFormatDataset(root, 'train', FILMROLE)
    assert str(e.value).startswith(root)
    assert isinstance(e.value, ValueError)
    # ... and how to go on: the class to add where that is the problem, else skipping.
    assert '--on-bad-sample skip drops' in str(e.value)
    if case == 'unknown_class':
        assert "add 'alien' to --class-names" in str(e.value)


@pytest.mark.parametrize('case', sorted(BAD_CASES))
def test_bad_input_is_dropped_and_counted_when_skipping(tmp_path, case):
    objects, breaker, pattern, kind, boxes_kept = BAD_CASES[case]
    root = make_filmrole(tmp_path, objects, breaker)
    ds = VOCFormatDataset(root, 'train', FILMROLE, on_bad_sample='skip')
    report = ds.report
    assert report.counts == {kind: 1}
    assert len(report.problems) == 1
    assert report.problems[0][0].startswith(root)
    assert report.n_checked == 3
    if boxes_kept is None:
        assert ds.ids == ['good1', 'good2'] and report.n_kept == 2
    else:
        assert ds.ids == ['good1', 'bad', 'good2'] and report.n_kept == 3
        assert len(ds[1][1]) == len(ds[1][2]) == boxes_kept
        assert report.n_boxes_dropped == 1
    assert FILMROLE.index('player') == ds[0][2][0]  # the good images are untouched
    np.testing.assert_array_equal(ds[0][1], [[4, 4, 29, 19], [9, 29, 13, 33]])


@pytest.mark.parametrize('policy', ['error', 'skip'])
def test_image_without_objects_is_valid_and_kept(tmp_path, policy):
    root = make_filmrole(tmp_path, [])
    ds = VOCFormatDataset(root, 'train', FILMROLE, on_bad_sample=policy)
    assert len(ds) == 3 and not ds.report.problems
    img, bbox, label = ds[1]
    assert img.shape == (3, H, W)
    assert bbox.shape == (0, 4) and bbox.dtype == np.float32
    assert label.shape == (0,) and label.dtype == np.int32


def test_skip_report_merges_2007_and_2012_and_saves_json(devkit, tmp_path):
    _truncate(os.path.join(devkit, 'VOC2007'), '000007')
    write_xml(os.path.join(devkit, 'VOC2012', 'Annotations', '2008_000008.xml'),
              [('horse', (5, 6, 50, 35), 0), ('unicorn', (1, 1, 5, 5), 0)])
    with pytest.raises(V.BadSampleError, match='000007.jpg'):
        voc0712_train(devkit)
    ds = voc0712_train(devkit, on_bad_sample='skip')
    assert len(ds) == 2
    assert ds.report.counts == {V.UNREADABLE_IMAGE: 1, V.UNKNOWN_CLASS: 1}
    assert (ds.report.n_checked, ds.report.n_kept, ds.report.n_boxes_dropped) == (3, 2, 1)
    assert '3 samples checked, 2 kept, 1 dropped, 1 boxes dropped' in ds.report.summary()
    path = ds.report.save(str(tmp_path / 'bad_samples.json'))
    saved = json.load(open(path))
    assert saved['counts'] == {'unknown_class': 1, 'unreadable_image': 1}
    assert any('2008_000008.xml: box 1 has unknown class name' in p for p in saved['problems'])
    assert not [f for f in os.listdir(str(tmp_path)) if '.tmp' in f]  # no temp file left


def test_invalid_policy_is_rejected(tmp_path):
    root = make_filmrole(tmp_path, GOOD)
    with pytest.raises(ValueError, match='on_bad_sample'):
        VOCFormatDataset(root, 'train', FILMROLE, on_bad_sample='ignore')


# --- the generic wrapper for datasets that do not read files ---------------------------------


def test_one_pixel_past_any_edge_is_outside_on_every_side():
    # VOC indices after ChainerCV's -1: valid is 0 <= min < max <= size - 1 (H = 40, W = 60).
    assert V.box_problem([0, 0, 39, 59], 40, 60, indices=True) is None
    for box in ([-1, 0, 39, 59], [0, -1, 39, 59], [0, 0, 40, 59], [0, 0, 39, 60]):
        assert V.box_problem(box, 40, 60, indices=True)[0] == V.BOX_OUTSIDE_IMAGE, box
    # Pixel-edge coordinates (synthetic data): valid up to the size itself.
    assert V.box_problem([0, 0, 40, 60], 40, 60) is None
    assert V.box_problem([0, 0, 41, 60], 40, 60)[0] == V.BOX_OUTSIDE_IMAGE


def test_read_objects_keeps_every_object_as_written_and_says_what_is_malformed(tmp_path):
    from chainer_yolo_dist.datasets.voc import read_objects
    path = str(tmp_path / 'a.xml')
    write_xml(path, [('Dog ', (10, 12, 30, 33), 1), ('zebra', (1, 2, 3, 4), None),
                     ('cat', ('x', 2, 3, 4), 0)])
    objects = read_objects(path)
    assert objects[0] == ('Dog ', True, [11.0, 9.0, 32.0, 29.0])  # (y, x) order, minus 1
    assert objects[1] == ('zebra', False, [1.0, 0.0, 3.0, 2.0])  # no <difficult>: 0
    assert objects[2][:2] == ('cat', None) and 'x' in objects[2][2]


def test_datasets_use_the_annotations_read_across_the_ranks(devkit, monkeypatch):
    """What rank 0 gathered at start-up is what the dataset checks: the XML is not read again
    (here the file changed after the read, and the dataset keeps what was read)."""
    from chainer_yolo_dist.datasets import voc
    root = os.path.join(devkit, 'VOC2007')
    xml = os.path.join(root, 'Annotations', '000007.xml')
    read = voc.read_objects(xml)
    write_xml(xml, [('car', (1, 1, 60, 40), 0), ('dog', (2, 2, 9, 9), 0)])
    monkeypatch.setattr(voc, '_READ', {os.path.abspath(xml): read})
    ds = VOCFormatDataset(root, 'trainval', voc_bbox_label_names)
    assert len(ds[1][1]) == 1  # the one car that was read, not the two boxes written since
    voc.forget_read_annotations()
    assert len(VOCFormatDataset(root, 'trainval', voc_bbox_label_names)[1][1]) == 2
