"""Person crops from a tiny generated VOC-layout folder: window placement, skips, bad input."""
import json
import os

import numpy as np
import pytest
from chainercv.utils import read_image
from PIL import Image

from chainer_yolo_dist.cyclegan.person_crops import (crop_window, largest_box, make_person_crops,
                                                     min_height_pixels)
from chainer_yolo_dist.datasets.validation import BadSampleError
from chainer_yolo_dist.datasets.voc import VOCFormatDataset
from conftest import check, run_python

NAMES = ('car', 'person')


def _xml(objects, h, w):
    # VOC's 1-based coordinates; ChainerCV's reader subtracts 1 from all four.
    objs = ''.join(
        '<object><name>%s</name><difficult>%d</difficult><bndbox><xmin>%d</xmin>'
        '<ymin>%d</ymin><xmax>%d</xmax><ymax>%d</ymax></bndbox></object>'
        % (name, diff, x0 + 1, y0 + 1, x1 + 1, y1 + 1) for name, (y0, x0, y1, x1), diff in objects)
    return ('<annotation><size><width>%d</width><height>%d</height><depth>3</depth></size>%s'
            '</annotation>' % (w, h, objs))


def _voc(root, entries, broken=()):
    """entries: id -> (h, w, [(name, (y0, x0, y1, x1) 0-based edges, difficult)])."""
    for sub in ('Annotations', 'JPEGImages', os.path.join('ImageSets', 'Main')):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    rng = np.random.RandomState(0)
    for id_, (h, w, objects) in entries.items():
        path = os.path.join(root, 'JPEGImages', id_ + '.jpg')
        if id_ in broken:
            open(path, 'wb').write(b'\xff\xd8 broken')
        else:
            Image.fromarray(rng.randint(0, 255, (h, w, 3)).astype(np.uint8)).save(path)
        with open(os.path.join(root, 'Annotations', id_ + '.xml'), 'w') as f:
            f.write(_xml(objects, h, w))
    with open(os.path.join(root, 'ImageSets', 'Main', 'all.txt'), 'w') as f:
        f.write('\n'.join(entries) + '\n')


ENTRIES = {
    # two persons: the larger one (40x30 = 1200 px) sits at the right border
    'two': (100, 150, [('person', (10, 10, 30, 30), 0), ('person', (50, 115, 90, 145), 1),
                       ('car', (0, 0, 99, 149), 0)]),
    'centre': (120, 120, [('person', (40, 40, 80, 80), 0)]),
    'cars': (100, 100, [('car', (10, 10, 50, 50), 0)]),
    'small': (50, 200, [('person', (10, 10, 40, 40), 0)]),
}


def test_largest_box_and_window():
    bbox = np.array([[0, 0, 10, 10], [0, 0, 20, 20], [0, 0, 50, 50]], np.float32)
    assert largest_box(bbox, [1, 1, 0], 1) == 1  # the car is larger but not a person
    assert largest_box(bbox, [0, 0, 0], 1) is None
    assert crop_window((40, 40, 80, 80), 120, 120, 64) == (28, 28, 92, 92)  # centred
    assert crop_window((50, 115, 90, 145), 100, 150, 64) == (36, 86, 100, 150)  # shifted in
    with pytest.raises(ValueError, match='smaller'):
        crop_window((0, 0, 5, 5), 50, 200, 64)


def test_crops_written_and_listed(tmp_path):
    root, out = str(tmp_path / 'voc'), str(tmp_path / 'crops')
    _voc(root, ENTRIES)
    ds = VOCFormatDataset(root, 'all', NAMES, use_difficult=True)
    summary = make_person_crops(ds, out, NAMES.index('person'), size=64)
    assert (summary['n_images'], summary['n_crops'], summary['n_no_person'],
            summary['n_too_small']) == (4, 2, 1, 1)
    assert summary['no_person'] == ['cars'] and summary['too_small'] == ['small']
    by_id = {c['id']: c for c in summary['crops']}
    assert by_id['two']['window'] == [36, 86, 100, 150]  # the larger (difficult) person
    assert by_id['two']['box'] == [50.0, 115.0, 90.0, 145.0]
    crop = np.asarray(Image.open(os.path.join(out, 'two.png')))
    source = read_image(os.path.join(root, 'JPEGImages', 'two.jpg'))
    np.testing.assert_array_equal(crop, source[:, 36:100, 86:150].transpose(1, 2, 0))
    with open(os.path.join(out, 'crops.json')) as f:
        assert json.load(f)['n_crops'] == 2


def test_bad_input_policy_and_script(tmp_path):
    root, out = str(tmp_path / 'voc'), str(tmp_path / 'crops')
    entries = dict(ENTRIES)
    entries['dog'] = (100, 100, [('dog', (0, 0, 10, 10), 0), ('person', (10, 10, 90, 90), 0)])
    entries['broken'] = (100, 100, [('person', (10, 10, 90, 90), 0)])
    _voc(root, entries, broken=('broken',))
    with pytest.raises(BadSampleError, match="dog.xml: box 0 has unknown class name 'dog'"):
        VOCFormatDataset(root, 'all', NAMES)
    proc = check(run_python(['scripts/make_person_crops.py', '--voc-root', root, '--split',
                             'all', '--class-names', 'car', 'person', '--size', '64',
                             '--on-bad-sample', 'skip', '--out', out], timeout=60))
    assert '6 images' not in proc.stdout  # the broken image is dropped before cropping
    assert '5 images: 3 crops' in proc.stdout, proc.stdout
    with open(os.path.join(out, 'crops.json')) as f:
        summary = json.load(f)
    problems = ' '.join(summary['bad_samples']['problems'])
    assert 'broken.jpg' in problems and "'dog'" in problems
    assert sorted(os.listdir(out)) == ['centre.png', 'crops.json', 'dog.png', 'two.png']
    bad = run_python(['scripts/make_person_crops.py', '--voc-root', root, '--split', 'all',
                      '--class-names', 'car', 'person', '--out', out], timeout=60)
    assert bad.returncode != 0 and 'Traceback' not in bad.stderr
    assert "dog.xml: box 0 has unknown class name 'dog'" in bad.stderr


TALL = {
    # persons of 40, 20 and 10 pixels in 120 x 120 images (crop 64: 0.625, 0.31, 0.16 of it)
    'tall': (120, 120, [('person', (40, 40, 80, 60), 0)]),
    'medium': (120, 120, [('person', (50, 50, 70, 60), 0)]),
    'short': (120, 120, [('person', (55, 55, 65, 60), 0), ('car', (0, 0, 100, 100), 0)]),
}


def test_only_sufficiently_large_persons_are_cropped(tmp_path):
    # Paper 002 sec. 3.1 prints no size: the reading is a quarter of the crop side (16 px
    # in a 64-pixel crop); the image height and plain pixels are the alternatives.
    root = str(tmp_path / 'voc')
    _voc(root, TALL)
    ds = VOCFormatDataset(root, 'all', NAMES, use_difficult=True)
    counts = {}
    for criterion in [(), (0.25, 'crop'), (0.2, 'image'), (10, 'px'), (0, 'crop')]:
        summary = make_person_crops(ds, str(tmp_path / str(criterion)), 1, 64, *criterion)
        counts[criterion] = ([c['id'] for c in summary['crops']], summary['too_short'])
        assert summary['n_too_short'] == len(summary['too_short'])
    assert counts[()] == counts[(0.25, 'crop')] == (['tall', 'medium'], ['short'])
    assert counts[(0.2, 'image')] == (['tall'], ['medium', 'short'])   # 24 px of 120
    assert counts[(10, 'px')] == counts[(0, 'crop')] == (['tall', 'medium', 'short'], [])
    assert min_height_pixels(0.25, 'crop', 720, 256) == 64
    with pytest.raises(ValueError, match=r'in \[0, 1\], got 1.5'):
        make_person_crops(ds, str(tmp_path / 'bad'), 1, 64, 1.5, 'image')

    out = str(tmp_path / 'script')
    proc = check(run_python(['scripts/make_person_crops.py', '--voc-root', root, '--split',
                             'all', '--class-names', 'car', 'person', '--size', '64',
                             '--min-person-height', '0.2', '--relative-to', 'image',
                             '--out', out], timeout=60))
    assert ('3 images: 1 crops written to %s, 0 without a person, 0 smaller than 64 px, '
            '2 whose person is shorter than 0.2 of the image height' % out) in proc.stdout
    with open(os.path.join(out, 'crops.json')) as f:
        assert json.load(f)['too_short'] == ['medium', 'short']
    bad = run_python(['scripts/make_person_crops.py', '--voc-root', root, '--split', 'all',
                      '--class-names', 'car', 'person', '--min-person-height', '2',
                      '--out', out], timeout=60)
    assert bad.returncode == 2 and bad.stderr.startswith('error: --min-person-height'), bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
