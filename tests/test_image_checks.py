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

pytestmark = pytest.mark.slow


def _start(root, out, cache):
    return check(run_mpi(2, _vocformat_args(root) + ['--iterations', '1', '--loaderjob', '0',
                                                     '--out', str(out)],
                         timeout=180, env={'CHAINER_YOLO_DIST_CACHE': str(cache)}))


def test_images_are_checked_once_across_ranks_and_again_when_they_change(tmp_path):
    root = _vocformat(tmp_path, n=6)  # 6 training images, 2 of them also the test split
    cache = tmp_path / 'cache'
    first = _start(root, tmp_path / 'run1', cache)
    assert 'image checks: 0 images unchanged since a previous start (cached), 8 decoded now ' \
           'across 2 ranks' in first.stdout
    second = _start(root, tmp_path / 'run2', cache)
    assert 'image checks: 8 images unchanged since a previous start (cached), 0 decoded now' \
           in second.stdout
    changed = os.path.join(root, 'JPEGImages', 'img3.jpg')
    os.utime(changed, (time.time() + 10, time.time() + 10))
    third = _start(root, tmp_path / 'run3', cache)
    assert '7 images unchanged since a previous start (cached), 1 decoded now' in third.stdout


def test_a_cached_check_still_finds_a_file_truncated_since(tmp_path):
    root = _vocformat(tmp_path, n=6)
    cache = tmp_path / 'cache'
    _start(root, tmp_path / 'run1', cache)
    bad = os.path.join(root, 'JPEGImages', 'img2.jpg')
    with open(bad, 'rb') as f:
        head = f.read(300)
    with open(bad, 'wb') as f:
        f.write(head)  # size and time change: checked again, and refused
    proc = run_mpi(2, _vocformat_args(root) + ['--iterations', '1', '--out',
                                               str(tmp_path / 'run2')],
                   timeout=180, env={'CHAINER_YOLO_DIST_CACHE': str(cache)})
    assert proc.returncode == 2 and 'img2.jpg: unreadable image' in proc.stderr
