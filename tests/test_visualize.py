"""The PNG sample grid."""
import os

import numpy as np
from PIL import Image

from chainer_yolo_dist.datasets.synthetic import (SyntheticShapesClassificationDataset,
                                                  SyntheticShapesDataset)
from chainer_yolo_dist.datasets.visualize import render_samples


def _check_png(path, min_size):
    assert os.path.getsize(path) > 0
    with Image.open(path) as im:
        assert im.format == 'PNG'
        assert im.size[0] >= min_size[0] and im.size[1] >= min_size[1]
        pixels = np.asarray(im.convert('RGB'), np.float32)
    assert pixels.std() > 10  # something was drawn
    assert not [f for f in os.listdir(os.path.dirname(path)) if '.tmp' in f]


def test_detection_grid_is_written(tmp_path):
    path = str(tmp_path / 'out' / 'samples.png')
    ds = SyntheticShapesDataset(n_images=6, size=64)
    assert render_samples(ds, path, n=6, cols=3) == path
    _check_png(path, (3 * 3 * 80 * 0.8, 2 * 3 * 80 * 0.8))


def test_classification_grid_and_explicit_names(tmp_path):
    path = str(tmp_path / 'cls.png')
    ds = SyntheticShapesClassificationDataset(n_images=4, size=32)
    render_samples(ds, path, n=4, cols=4, class_names=('A', 'B', 'C', 'D'))
    _check_png(path, (4 * 3 * 80 * 0.8, 3 * 80 * 0.8))
