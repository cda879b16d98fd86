"""Start-up image checks: split across the ranks and remembered (issue: paper-scale start-up).

Every rank decodes its share of the images; the results are kept in a cache keyed by each
file's path, size and modification time, so a second start on unchanged data opens no image,
and a changed file is checked again.
"""
import os
import time

import pytest

from conftest import check, run_mpi
from test_faults import _vocformat, _vocformat_args


def _start(root, out, cache):
    return check(run_mpi(2, _vocformat_args(root) + ['--iterations', '1', '--loaderjob', '0',
                                                     '--image-check', 'decode',
                                                     '--out', str(out)],
                         timeout=180, env={'CHAINER_YOLO_DIST_CACHE': str(cache)}))


@pytest.mark.slow  # three 2-rank training runs
def test_images_are_checked_once_across_ranks_and_again_when_they_change(tmp_path):
    root = _vocformat(tmp_path, n=6)  # 6 training images, 2 of them also the test split
    cache = tmp_path / 'cache'
    first = _start(root, tmp_path / 'run1', cache)
    assert 'image checks: 0 images unchanged since a previous start (cached), 8 decoded now ' \
           'across 2 ranks (--image-check decode); 8 annotations read across the ranks' \
           in first.stdout
    second = _start(root, tmp_path / 'run2', cache)
    assert 'image checks: 8 images unchanged since a previous start (cached), 0 decoded now' \
           in second.stdout
    changed = os.path.join(root, 'JPEGImages', 'img3.jpg')
    os.utime(changed, (time.time() + 10, time.time() + 10))
    third = _start(root, tmp_path / 'run3', cache)
    assert '7 images unchanged since a previous start (cached), 1 decoded now' in third.stdout


@pytest.mark.slow  # a 2-rank training run
def test_a_cached_check_still_finds_a_file_truncated_since(tmp_path):
    root = _vocformat(tmp_path, n=6)
    cache = tmp_path / 'cache'
    _start(root, tmp_path / 'run1', cache)
    bad = os.path.join(root, 'JPEGImages', 'img2.jpg')
    with open(bad, 'rb') as f:
        head = f.read(300)
    with open(bad, 'wb') as f:
        f.write(head)  # size and time change: checked again, and refused
    proc = run_mpi(2, _vocformat_args(root) + ['--iterations', '1', '--image-check', 'decode',
                                               '--out', str(tmp_path / 'run2')],
                   timeout=180, env={'CHAINER_YOLO_DIST_CACHE': str(cache)})
    assert proc.returncode == 2 and 'img2.jpg: unreadable image' in proc.stderr


def _imagenet_lists(tmp_path):
    """A list-file ImageNet layout: 2 classes x 5 training entries, 2 validation entries,
    every entry a path of its own (hard links to 3 JPEGs, as the rehearsal makes them)."""
    from PIL import Image
    import numpy as np
    root = tmp_path / 'ILSVRC'
    (root / 'pool').mkdir(parents=True)
    pool = []
    for k in range(3):
        pixels = np.random.RandomState(k).randint(0, 256, size=(40 + 8 * k, 56, 3))
        pool.append(root / 'pool' / ('%d.JPEG' % k))
        Image.fromarray(pixels.astype(np.uint8)).save(str(pool[-1]), format='JPEG')
    lines = {'train': [], 'val': []}
    for split, per_class in (('train', 5), ('val', 1)):
        for label in range(2):
            (root / split / str(label)).mkdir(parents=True)
            for j in range(per_class):
                rel = '%s/%d/%d.JPEG' % (split, label, j)
                os.link(pool[(label + j) % 3], root / rel)
                lines[split].append('%s %d\n' % (rel, label))
    for split in lines:
        (root / (split + '.txt')).write_text(''.join(lines[split]))
    return root


def _darknet_start(root, out, cache, extra=()):
    return run_mpi(2, ['scripts/train_darknet.py', '--dataset', 'imagenet', '--data-dir',
                       str(root), '--train-list', str(root / 'train.txt'), '--val-list',
                       str(root / 'val.txt'), '--channels-scale', '1/8', '--insize', '32',
                       '--batchsize', '2', '--iterations', '1', '--loaderjob', '0',
                       '--no-progress', '--out', str(out)] + list(extra),
                   timeout=180, env={'CHAINER_YOLO_DIST_CACHE': str(cache)})


@pytest.mark.slow  # four 2-rank training runs
def test_imagenet_headers_are_checked_once_across_ranks_and_a_bad_header_is_named(tmp_path):
    root = _imagenet_lists(tmp_path)
    cache = tmp_path / 'cache'
    first = check(_darknet_start(root, tmp_path / 'run1', cache))
    assert ('image checks: 0 images unchanged since a previous start (cached), 12 checked '
            '(headers) now across 2 ranks (--image-check header)') in first.stdout
    second = check(_darknet_start(root, tmp_path / 'run2', cache))
    assert '12 images unchanged since a previous start (cached), 0 checked (headers) now' \
        in second.stdout
    # A decode is not vouched for by header checks: all 12 are decoded now (the deprecated
    # --decode-images is --image-check decode).
    third = check(_darknet_start(root, tmp_path / 'run3', cache, ['--decode-images']))
    assert '0 images unchanged since a previous start (cached), 12 decoded now' in third.stdout
    bad = root / 'train' / '1' / '3.JPEG'
    os.unlink(bad)
    bad.write_bytes(b'\xff\xd8\xff\xe0 not a JPEG header')
    proc = _darknet_start(root, tmp_path / 'run4', cache)
    assert proc.returncode == 2 and '%s: unreadable image' % bad in proc.stderr
    skipped = check(_darknet_start(root, tmp_path / 'run5', cache, ['--on-bad-sample', 'skip']))
    assert '11 images unchanged since a previous start (cached), 1 checked (headers) now' \
        in skipped.stdout
    assert 'train data: 10 samples checked, 9 kept, 1 dropped' in skipped.stdout
