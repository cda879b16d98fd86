"""The loader benchmark: its reader, its arithmetic, and the files the script writes."""
import glob
import json
import math
import os

import chainer
import cv2
import numpy as np
import pytest
from chainercv.utils import read_image

from conftest import check, run_python

from chainer_yolo_dist.benchmarks import loader as bench_loader


@pytest.fixture(scope='module')
def jpegs(tmp_path_factory):
    return bench_loader.write_jpegs(str(tmp_path_factory.mktemp('jpegs')), 2)


def test_generated_jpegs_are_voc_shaped_with_boxes_inside(jpegs):
    for path, bbox, label in jpegs:
        assert read_image(path).shape == (3, 375, 500)
        assert len(bbox) == len(label) and bbox.dtype == np.float32
        assert (bbox[:, 0::2] <= 375).all() and (bbox[:, 1::2] <= 500).all()
        assert (bbox >= 0).all()


@pytest.mark.parametrize('backend', ['PIL', 'cv2'])
def test_reader_gives_chainercv_pixels(jpegs, backend):
    path = jpegs[0][0]
    with chainer.using_config('cv_read_image_backend', backend):
        expected = read_image(path, color=True)
    got = bench_loader.read_rgb_chw(path)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize('backend', ['PIL', 'cv2'])
def test_every_reader_gives_chainercv_pixels_and_the_last_is_the_datasets(jpegs, backend):
    from chainer_yolo_dist.datasets.validation import read_image as datasets_read_image
    assert [name for name, _ in bench_loader.READERS] == ['chainercv', 'opencv_planar',
                                                          'datasets']
    # The augmentation is timed on the last reader's output: the datasets' own.
    assert bench_loader.READERS[-1][1] is datasets_read_image
    for path, _, _ in jpegs:
        with chainer.using_config('cv_read_image_backend', backend):
            expected = read_image(path, color=True)
        for name, reader in bench_loader.READERS:
            got = reader(path)
            assert got.dtype == np.float32, name
            np.testing.assert_array_equal(got, expected, err_msg=name)


def test_reader_keeps_the_stored_pixel_grid_despite_exif_orientation(tmp_path):
    # Orientation 6 ("rotate 90 degrees to display"): annotations refer to the stored grid,
    # which ChainerCV's PIL backend returns and its cv2 backend (cv2.IMREAD_COLOR) rotates.
    from PIL import Image
    stored = np.random.RandomState(0).uniform(0, 255, (30, 50, 3)).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = str(tmp_path / 'rotated.jpg')
    Image.fromarray(stored).save(path, exif=exif, quality=95)
    with chainer.using_config('cv_read_image_backend', 'PIL'):
        expected = read_image(path, color=True)
    with chainer.using_config('cv_read_image_backend', 'cv2'):
        assert read_image(path, color=True).shape == (3, 50, 30)
    np.testing.assert_array_equal(bench_loader.read_rgb_chw(path), expected)


def test_reader_names_the_file_it_cannot_decode(tmp_path):
    bad = tmp_path / 'broken.jpg'
    bad.write_bytes(b'not a jpeg')
    with pytest.raises(ValueError, match='broken.jpg'):
        bench_loader.read_rgb_chw(str(bad))


def test_rates_and_workers_per_gpu_follow_from_the_times():
    timing = {'n': 10, 'decode_cpu_s': {'chainercv': 0.003, 'opencv_planar': 0.002},
              'decode_wall_s': {'chainercv': 0.006, 'opencv_planar': 0.004},
              'augment_cpu_s': 0.007, 'augment_wall_s': 0.014}
    out = bench_loader.summarise('detection_608', timing)
    fast = out['readers']['opencv_planar']
    assert fast['images_per_s_per_core'] == pytest.approx(111.1)
    assert fast['images_per_s_wall'] == pytest.approx(55.6)
    assert fast['workers_per_gpu'] == {'200': 2, '1000': 10}  # ceil(200 / 111.1), ...
    assert fast['meets_target'] is True
    slow = out['readers']['chainercv']
    assert slow['images_per_s_per_core'] == 100.0 and slow['meets_target'] is True
    assert slow['workers_per_gpu']['1000'] == math.ceil(1000 / 100.0)
    assert 'meets_target' not in bench_loader.summarise('detection_416', timing)['readers'][
        'chainercv']


def test_script_writes_json_and_figure_to_a_new_run_folder(tmp_path):
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          'scripts', 'bench_loader.py')
    proc = check(run_python([script, '--n-images', '2', '--repeat', '1'], timeout=180,
                            cwd=str(tmp_path)))
    written = glob.glob(str(tmp_path / 'runs' / 'bench' / '*' / 'loader.json'))
    assert len(written) == 1, proc.stdout
    with open(written[0]) as f:
        record = json.load(f)
    assert set(record['cases']) == {'detection_416', 'detection_608', 'classification_224'}
    for case in record['cases'].values():
        assert case['n_images_timed'] == 2 and case['augment_ms'] > 0
        assert set(case['readers']) == {'chainercv', 'opencv_planar', 'datasets'}
        for entry in case['readers'].values():
            assert entry['images_per_s_per_core'] > 0
            assert set(entry['workers_per_gpu']) == {'200', '1000'}
    assert record['environment']['OMP_NUM_THREADS'] == '1'
    assert record['environment']['opencv_threads'] == 1  # 0 requested: the calling thread
    assert len(record['load_average_before']) == 3
    png = os.path.join(os.path.dirname(written[0]), 'loader.png')
    assert cv2.imread(png) is not None  # a readable image
    assert not glob.glob(str(tmp_path / 'runs' / 'bench' / '*' / '*.tmp*'))
