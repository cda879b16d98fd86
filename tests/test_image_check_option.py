"""``--image-check {header,decode,none}``: the same meaning on every training script, every
system's files through the checks split across the ranks and cached (issue 22).

For each system (detection on a VOC-format folder, classification on an ImageNet layout,
CycleGAN on two domain folders, SlowFast on AVA): 'none' opens no image before training (a bad
file is named when it is read), 'header' refuses a file named .jpg that is no image on one
line naming it, 'decode' refuses a truncated JPEG that 'header' accepts. Each system's
``check_images`` runs here on one rank (the split across real ranks: test_image_checks.py).
"""
import dataclasses
import importlib
import os

import numpy as np
import pytest
from PIL import Image

from chainer_yolo_dist.core.settings import pick
from chainer_yolo_dist.datasets import image_checks
from chainer_yolo_dist.datasets import validation as V
from conftest import load_script

H, W = 24, 32


class OneRank(object):
    """The communicator calls the checks make, for a single rank."""
    rank, size = 0, 1

    def gather_obj(self, obj, root=0):
        return [obj]

    def bcast_obj(self, obj, root=0):
        return obj


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv('CHAINER_YOLO_DIST_CACHE', str(tmp_path / 'cache'))
    yield
    V.install_checks(None)


def write_jpeg(path, seed=0, size=(H, W)):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=size + (3,), dtype=np.uint8)
    Image.fromarray(pixels).save(str(path), format='JPEG', quality=95)
    return str(path)


def not_an_image(path):
    with open(path, 'wb') as f:
        f.write(b'this is a text file, not an image\n' * 4)
    return str(path)


def truncate(path):
    """Cuts a JPEG past its header: 'header' accepts it, only a decode finds it."""
    data = open(path, 'rb').read()
    with open(path, 'wb') as f:
        f.write(data[:len(data) * 3 // 4])
    assert V.inspect_image(path, decode=False) == ('ok', H, W)
    assert V.inspect_image(path, decode=True)[0] == V.UNREADABLE_IMAGE
    return str(path)


def start(system_data, request):
    """What core.run does before rank 0 loads: the system's checks, then ``load_data``."""
    lines = []
    system_data.check_images(request, OneRank(), lines.append)
    return system_data.load_data(request), lines


def refused(system_data, request, bad):
    with pytest.raises(V.BadSampleError) as error:
        start(system_data, request)
    message = str(error.value)
    assert message.startswith(bad + ': unreadable image') and '\n' not in message, message


def opens_no_image(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError('an image was opened under --image-check none')
    monkeypatch.setattr(V, 'inspect_image', forbidden)
    monkeypatch.setattr(V, 'image_size', forbidden)


# --- detection: a VOC-format folder ------------------------------------------------------

def _voc(tmp_path, n=3):
    root = tmp_path / 'voc'
    for folder in ('Annotations', 'JPEGImages', os.path.join('ImageSets', 'Main')):
        (root / folder).mkdir(parents=True)
    for i in range(n):
        write_jpeg(root / 'JPEGImages' / ('img%d.jpg' % i), i)
        (root / 'Annotations' / ('img%d.xml' % i)).write_text(
            '<annotation><size><width>%d</width><height>%d</height><depth>3</depth></size>'
            '<object><name>thing</name><difficult>0</difficult><bndbox><xmin>2</xmin>'
            '<ymin>3</ymin><xmax>20</xmax><ymax>15</ymax></bndbox></object></annotation>'
            % (W, H))
    (root / 'ImageSets' / 'Main' / 'train.txt').write_text(
        ''.join('img%d\n' % i for i in range(n)))
    (root / 'ImageSets' / 'Main' / 'test.txt').write_text('img0\n')
    return root


def _detection_request(root, image_check):
    from chainer_yolo_dist.detection.settings import DetectionData
    return DetectionData(
        dataset='vocformat', seed=0, n_class=1, on_bad_sample='error', data_dir=str(root),
        class_names=('thing',), train_split='train', test_split='test', n_train_images=0,
        n_test_images=0, image_size=0, object_scales=(0.1, 0.5), scale_distribution='log',
        image_check=image_check)


def test_detection_image_check(tmp_path, monkeypatch):
    from chainer_yolo_dist.detection import data
    root = _voc(tmp_path)
    bad = not_an_image(str(root / 'JPEGImages' / 'img1.jpg'))
    refused(data, _detection_request(root, 'header'), bad)
    write_jpeg(bad, 1)
    cut = truncate(str(root / 'JPEGImages' / 'img2.jpg'))
    loaded, lines = start(data, _detection_request(root, 'header'))
    assert len(loaded[0]) == 3 and 'checked (headers) now across 1 ranks' in lines[0]
    refused(data, _detection_request(root, 'decode'), cut)
    not_an_image(bad)
    with monkeypatch.context() as m:
        opens_no_image(m)
        (train, test, _, _), lines = start(data, _detection_request(root, 'none'))
    assert len(train) == 3 and lines[0].startswith('image checks: none')
    assert train[0][1].shape == (1, 4)  # boxes checked against the annotation's <size>
    with pytest.raises(V.BadSampleError, match=r'img1\.jpg: unreadable image'):
        train[1]
    # An annotation without <size>: the boxes need the image's, which its header gives.
    from chainer_yolo_dist.datasets.voc import VOCFormatDataset
    for i in (0, 1):
        xml = root / 'Annotations' / ('img%d.xml' % i)
        xml.write_text(xml.read_text().replace('<size><width>%d</width><height>%d</height>'
                                               '<depth>3</depth></size>' % (W, H), ''))
    ds = VOCFormatDataset(str(root), 'train', ('thing',), on_bad_sample='skip',
                          image_check='none')
    assert ds.ids == ['img0', 'img2'] and ds.report.counts == {V.UNREADABLE_IMAGE: 1}


# --- classification: an ImageNet directory layout ---------------------------------------

def _imagenet(tmp_path):
    root = tmp_path / 'imagenet'
    for split, n in (('train', 2), ('val', 1)):
        for k, wnid in enumerate(('n01', 'n02')):
            for j in range(n):
                write_jpeg(root / split / wnid / ('%s_%d.JPEG' % (wnid, j)), 10 * k + j)
    return root


def _classification_request(root, image_check):
    from chainer_yolo_dist.classification.settings import ClassificationData
    return ClassificationData(
        dataset='imagenet', seed=0, n_class=2, on_bad_sample='error', data_dir=str(root),
        train_list=None, val_list=None, n_train_images=0, n_test_images=0, image_size=0,
        image_check=image_check)


def test_classification_image_check(tmp_path, monkeypatch):
    from chainer_yolo_dist.classification import data
    root = _imagenet(tmp_path)
    bad = not_an_image(str(root / 'train' / 'n02' / 'n02_1.JPEG'))
    refused(data, _classification_request(root, 'header'), bad)
    write_jpeg(bad, 3)
    cut = truncate(str(root / 'train' / 'n01' / 'n01_0.JPEG'))
    loaded, lines = start(data, _classification_request(root, 'header'))
    assert len(loaded[0]) == 4 and 'checked (headers) now' in lines[0]
    refused(data, _classification_request(root, 'decode'), cut)
    not_an_image(bad)
    with monkeypatch.context() as m:
        opens_no_image(m)
        (train, _, _, _), lines = start(data, _classification_request(root, 'none'))
    assert len(train) == 4 and lines[0].startswith('image checks: none')
    with pytest.raises(V.BadSampleError, match=r'n02_1\.JPEG: unreadable image'):
        train[3]


# --- CycleGAN: two domain folders --------------------------------------------------------

def _cyclegan_request(dir_a, dir_b, image_check):
    from chainer_yolo_dist.cyclegan.settings import CycleGANData
    return CycleGANData(
        dataset='folders', seed=0, n_class=2, on_bad_sample='error', dir_a=str(dir_a),
        dir_b=str(dir_b), test_dir_a=None, test_dir_b=None, n_train_images=0,
        n_test_images=0, image_size=16, image_check=image_check)


def test_cyclegan_image_check_goes_through_the_checks_across_ranks(tmp_path, monkeypatch):
    from chainer_yolo_dist.cyclegan import data
    dir_a, dir_b = tmp_path / 'a', tmp_path / 'b'
    for i in range(3):
        write_jpeg(dir_a / ('%d.jpg' % i), i)
        write_jpeg(dir_b / ('%d.jpg' % i), 10 + i)
    bad = not_an_image(str(dir_b / '1.jpg'))
    refused(data, _cyclegan_request(dir_a, dir_b, 'header'), bad)
    write_jpeg(bad, 11)
    cut = truncate(str(dir_a / '2.jpg'))
    (train, _, _, _), lines = start(data, _cyclegan_request(dir_a, dir_b, 'header'))
    # The refused start cached the 5 readable files; the 2 rewritten since are checked again.
    assert len(train) == 3 and lines == ['image checks: 4 images unchanged since a previous '
                                         'start (cached), 2 checked (headers) now across 1 '
                                         'ranks (--image-check header)']
    # A second start on unchanged files opens none: the cache answers for the checks, the
    # checks' results for the folders (no longer a decode of every file on rank 0).
    with monkeypatch.context() as m:
        m.setattr(V, 'inspect_image', lambda *a, **k: pytest.fail('opened %s' % (a,)))
        (train, _, _, _), lines = start(data, _cyclegan_request(dir_a, dir_b, 'header'))
    assert len(train) == 3 and '6 images unchanged since a previous start (cached), 0 ' \
        'checked (headers) now' in lines[0]
    refused(data, _cyclegan_request(dir_a, dir_b, 'decode'), cut)
    not_an_image(bad)
    with monkeypatch.context() as m:
        opens_no_image(m)
        (train, _, _, _), lines = start(data, _cyclegan_request(dir_a, dir_b, 'none'))
    assert len(train.domain_b) == 3 and lines[0].startswith('image checks: none')
    with pytest.raises(V.BadSampleError, match=r'b/1\.jpg: unreadable image'):
        train.domain_b[1]


# --- SlowFast: AVA ------------------------------------------------------------------------

LABELS = 'item {\n  name: "stand"\n  id: 12\n}\n'


def _ava(tmp_path):
    """Two videos of 70 frames (keyframe of second 902: frame 60, file 61); training on
    vid_a (two keyframes), validation on vid_b."""
    root = tmp_path / 'ava'
    for video in ('vid_a', 'vid_b'):
        for i in range(70):
            write_jpeg(root / 'frames' / video / ('%s_%06d.jpg' % (video, i + 1)), i)
    (root / 'ava_train_v2.2.csv').write_text('vid_a,0902,0.1,0.2,0.5,0.9,12,0\n'
                                             'vid_a,0903,0.1,0.2,0.5,0.9,12,0\n')
    (root / 'ava_val_v2.2.csv').write_text('vid_b,0902,0.1,0.2,0.5,0.9,12,0\n')
    (root / 'ava_action_list_v2.2.pbtxt').write_text(LABELS)
    (root / 'ava_action_list_v2.2_for_activitynet_2019.pbtxt').write_text(LABELS)
    return root


def _slowfast_request(root, image_check):
    from chainer_yolo_dist.slowfast.settings import SlowFastData
    return SlowFastData(
        dataset='ava', seed=0, n_class=80, on_bad_sample='error', clip_frames=16,
        clip_size=H, data_dir=str(root), n_train_clips=0, n_test_clips=0, max_actors=1,
        image_check=image_check)


def test_slowfast_ava_keyframes_are_checked(tmp_path, monkeypatch):
    from chainer_yolo_dist.slowfast import ava, data
    root = _ava(tmp_path)
    frames = root / 'frames'
    # What is checked: the keyframe of each example (second 903 is beyond the 70 frames:
    # the clip, and its keyframe, clamp to the last frame, which the dataset checks itself).
    assert ava.keyframe_files(str(root), str(root / 'ava_train_v2.2.csv')) == [
        str(frames / 'vid_a' / 'vid_a_000061.jpg'), str(frames / 'vid_a' / 'vid_a_000091.jpg')]
    bad = not_an_image(str(frames / 'vid_b' / 'vid_b_000061.jpg'))
    refused(data, _slowfast_request(root, 'header'), bad)
    last = not_an_image(str(frames / 'vid_a' / 'vid_a_000070.jpg'))
    refused(data, _slowfast_request(root, 'header'), last)
    write_jpeg(bad, 60)
    write_jpeg(last, 69)
    cut = truncate(str(frames / 'vid_a' / 'vid_a_000061.jpg'))
    (train, test, _, _), lines = start(data, _slowfast_request(root, 'header'))
    assert (len(train), len(test)) == (2, 1)
    assert 'checked (headers) now across 1 ranks' in lines[0] and 'AVA' in lines[0]
    refused(data, _slowfast_request(root, 'decode'), cut)
    skip = dataclasses.replace(_slowfast_request(root, 'decode'), on_bad_sample='skip')
    (train, _, _, reports), _ = start(data, skip)
    assert train.keys == [('vid_a', 903)] and reports['train'].counts == {
        V.UNREADABLE_IMAGE: 1}
    not_an_image(bad)
    with monkeypatch.context() as m:
        opens_no_image(m)
        (train, test, _, _), lines = start(data, _slowfast_request(root, 'none'))
    assert len(test) == 1 and lines[0].startswith('image checks: none')
    with pytest.raises(V.BadSampleError, match=r'vid_b_000061\.jpg: unreadable image'):
        test[0]


def test_synthetic_data_has_nothing_to_check(monkeypatch):
    from chainer_yolo_dist.slowfast import data as slowfast_data
    from chainer_yolo_dist.cyclegan import data as cyclegan_data
    monkeypatch.setattr(image_checks, 'check_images_across_ranks',
                        lambda *a, **k: pytest.fail('checked files of generated data'))
    lines = []
    slowfast_data.check_images(dataclasses.replace(
        _slowfast_request(None, 'header'), dataset='synthetic_actions'), OneRank(), lines.append)
    cyclegan_data.check_images(dataclasses.replace(
        _cyclegan_request(None, None, 'decode'), dataset='synthetic_domains'), OneRank(),
        lines.append)
    assert lines == []


def test_every_system_has_the_checks():
    from chainer_yolo_dist.classification.recipe import SYSTEM as classification
    from chainer_yolo_dist.cyclegan.recipe import SYSTEM as cyclegan
    from chainer_yolo_dist.detection.recipe import SYSTEM as detection
    from chainer_yolo_dist.slowfast.recipe import SYSTEM as slowfast
    for system in (classification, cyclegan, detection, slowfast):
        assert system.check_images is not None, system.name
        assert system.data_cls.__dataclass_fields__['image_check'].default == 'header'


def test_unknown_value_is_refused():
    with pytest.raises(ValueError, match="image_check must be one of header, decode, none"):
        image_checks.image_check_mode('full')
    assert image_checks.image_check_mode('none', check_images=True) == 'decode'
    assert image_checks.image_check_mode(check_images=False) == 'header'


# --- the scripts' option and its deprecated aliases ------------------------------------------

@pytest.mark.parametrize('script,data_cls', [
    ('train_yolo', 'detection'), ('train_darknet', 'classification'),
    ('train_cyclegan', 'cyclegan'), ('train_slowfast', 'slowfast')])
def test_every_script_has_the_option_with_the_same_default(script, data_cls):
    parse = load_script(script).parse_args
    assert parse([]).image_check == 'header'
    for value in ('header', 'decode', 'none'):
        options = vars(parse(['--image-check', value]))
        settings = importlib.import_module('chainer_yolo_dist.%s.settings' % data_cls)
        cls = [c for name, c in vars(settings).items() if name.endswith('Data')][0]
        fixed = {f: 0 for f in cls.__dataclass_fields__ if f not in options}
        assert pick(cls, options, **fixed).image_check == value


@pytest.mark.parametrize('script,argv,value', [
    ('train_darknet', ['--decode-images'], 'decode'),
    ('train_darknet', ['--no-check-images'], 'none'),
    ('train_darknet', [], 'header'),
    ('train_cyclegan', ['--no-check-images'], 'none'),
    ('train_cyclegan', [], 'header'),
])
def test_deprecated_aliases(script, argv, value):
    assert load_script(script).parse_args(argv).image_check == value
