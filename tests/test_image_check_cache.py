"""The start-up image checks' pieces at ImageNet's scale: the JPEG header reader, the cache
of readable files (arrays keyed by path, size and modification time) and its answers.

The checks across ranks, end to end, are in test_image_checks.py."""
import os

import numpy as np
import pytest
from PIL import Image

from chainer_yolo_dist.datasets import image_checks as IC
from chainer_yolo_dist.datasets import validation as V


def _jpeg(path, size=(37, 53), **save):
    pixels = np.random.default_rng(0).integers(0, 256, size=size + (3,), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format='JPEG', **save)
    return str(path)


@pytest.mark.parametrize('save', [{}, {'progressive': True}, {'quality': 20},
                                  {'exif': b'Exif\x00\x00' + b'\x00' * 2000}])
def test_jpeg_header_reader_agrees_with_pil(tmp_path, save):
    path = _jpeg(tmp_path / 'a.jpg', **save)
    with Image.open(path) as im:
        width, height = im.size
    assert V.jpeg_header_size(path) == (height, width) == V.image_size(path, decode=False)


def test_jpeg_header_reader_leaves_other_files_to_pil(tmp_path):
    png = tmp_path / 'a.png'
    Image.new('RGB', (7, 5)).save(png)
    assert V.jpeg_header_size(str(png)) is None
    assert V.image_size(str(png), decode=False) == (5, 7)
    cut = tmp_path / 'cut.jpg'
    data = open(_jpeg(tmp_path / 'b.jpg'), 'rb').read()
    cut.write_bytes(data[:20])  # ends inside the markers before the frame header
    assert V.jpeg_header_size(str(cut)) is None
    kind, message = V.inspect_image(str(cut), decode=False)
    assert kind == V.UNREADABLE_IMAGE and 'unreadable image' in message


def _found(keys, sizes, mtimes, decoded, heights=None):
    n = len(keys)
    return dict(key=np.array(keys, np.uint64), size=np.array(sizes, np.int64),
                mtime=np.array(mtimes, np.int64), decoded=np.array(decoded, bool),
                height=np.array(heights or [10] * n, np.int32), width=np.full(n, 20, np.int32))


def test_cache_answers_only_for_unchanged_files_and_the_check_asked(tmp_path):
    path = str(tmp_path / 'checks.npz')
    IC.ImageCheckCache(path).updated(_found([5, 3], [100, 200], [7, 8], [True, False],
                                            [11, 12])).save()
    cache = IC.ImageCheckCache(path)
    keys, sizes, mtimes = np.array([3, 5, 5, 5, 9], np.uint64), [200, 100, 101, 100, 1], \
        [8, 7, 7, 6, 1]
    hit, height, _ = cache.lookup(keys, np.array(sizes), np.array(mtimes), decode=False)
    assert hit.tolist() == [True, True, False, False, False]  # size, time, unknown path
    assert height[:2].tolist() == [12, 11]
    hit, _, _ = cache.lookup(keys, np.array(sizes), np.array(mtimes), decode=True)
    assert hit.tolist() == [False, True, False, False, False]  # a header check is no decode


def test_an_update_replaces_rechecked_files_and_keeps_the_others(tmp_path):
    path = str(tmp_path / 'checks.npz')
    first = IC.ImageCheckCache(path).updated(_found([5, 3], [100, 200], [7, 8], [True] * 2))
    second = first.updated(_found([3, 4], [201, 1], [9, 1], [True] * 2))
    assert second.arrays['key'].tolist() == [3, 4, 5]  # sorted by key
    assert second.arrays['size'].tolist() == [201, 1, 100]


def test_missing_stale_or_foreign_cache_files_start_afresh(tmp_path):
    assert len(IC.ImageCheckCache(str(tmp_path / 'none.npz'))) == 0
    garbage = tmp_path / 'garbage.npz'
    garbage.write_bytes(b'not a zip')
    assert len(IC.ImageCheckCache(str(garbage))) == 0
    old = tmp_path / 'old.npz'
    with open(old, 'wb') as f:
        np.savez(f, version=np.int64(1), key=np.zeros(1, np.uint64))
    assert len(IC.ImageCheckCache(str(old))) == 0


def test_save_is_atomic_and_leaves_no_temporary_file(tmp_path):
    path = str(tmp_path / 'sub' / 'checks.npz')
    IC.ImageCheckCache(path).updated(_found([1], [2], [3], [True])).save()
    assert os.listdir(tmp_path / 'sub') == ['checks.npz']
    assert len(IC.ImageCheckCache(path)) == 1


def test_keys_are_of_the_absolute_normalised_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert IC.path_keys(['a/b.jpg']).tolist() == IC.path_keys([str(tmp_path / 'a' / 'b.jpg')]
                                                              ).tolist()
    assert IC.path_keys(['a/./b.jpg'])[0] == IC.path_keys(['a/b.jpg'])[0] \
        != IC.path_keys(['a/c.jpg'])[0]
    assert IC.path_keys(['x']).dtype == np.uint64


def test_results_answer_as_inspect_image_would(tmp_path):
    good = _jpeg(tmp_path / 'good.jpg')
    checks = IC.ImageChecks(IC.path_keys([good, str(tmp_path / 'gone.jpg')]),
                            np.array([IC.OK, IC.MISSING], np.int8), np.array([37, 0], np.int32),
                            np.array([53, 0], np.int32),
                            {int(IC.path_keys([str(tmp_path / 'gone.jpg')])[0]):
                             'image file missing'},
                            decoded=False)
    assert checks.result(good, decode=False) == ('ok', 37, 53)
    assert checks.result(str(tmp_path / 'gone.jpg'), decode=False) == (V.MISSING_IMAGE,
                                                                       'image file missing')
    assert checks.result(str(tmp_path / 'other.jpg'), decode=False) is None  # not checked
    assert checks.result(good, decode=True) is None  # a header check does not vouch a decode
    status, height, width, problems = checks.results([str(tmp_path / 'gone.jpg'), good], False)
    assert status.tolist() == [IC.MISSING, IC.OK] and problems == {
        0: (V.MISSING_IMAGE, 'image file missing')}


def test_installed_checks_spare_check_image_from_opening_the_file(tmp_path):
    path = _jpeg(tmp_path / 'x.jpg')
    checks = IC.ImageChecks(IC.path_keys([path]), np.array([IC.OK], np.int8),
                            np.array([99], np.int32), np.array([98], np.int32), {}, True)
    report = V.BadSampleReport()
    try:
        V.install_checks(checks)
        assert V.check_image(report, path) == (99, 98)  # from the checks, not the file
    finally:
        V.install_checks(None)
    assert V.check_image(report, path) == (37, 53)
