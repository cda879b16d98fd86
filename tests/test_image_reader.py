"""The datasets' image reader: ChainerCV's PIL pixels, contiguous float32, one-line errors."""
import chainer
import numpy as np
import pytest
from chainercv.utils import read_image as chainercv_read_image
from PIL import Image

from chainer_yolo_dist.datasets.validation import BadSampleError, read_image


def _pixels(shape, seed=0):
    return np.random.RandomState(seed).randint(0, 256, size=shape).astype(np.uint8)


@pytest.mark.parametrize('name,mode,shape', [
    ('rgb.jpg', 'RGB', (37, 53, 3)),
    ('rgb.png', 'RGB', (20, 30, 3)),
    ('gray.png', 'L', (20, 30)),
    ('rgba.png', 'RGBA', (20, 30, 4)),
    ('cmyk.jpg', 'CMYK', (24, 16, 4)),
    ('palette.png', 'P', (20, 30)),
])
def test_pixels_equal_chainercv_pil_backend(tmp_path, name, mode, shape):
    path = str(tmp_path / name)
    Image.fromarray(_pixels(shape), mode=mode).save(path)
    with chainer.using_config('cv_read_image_backend', 'PIL'):
        # An alpha channel is ignored (ChainerCV refuses RGBA unless told how to treat it).
        expected = chainercv_read_image(path, color=True, alpha='ignore')
    got = read_image(path)
    assert got.dtype == np.float32 and got.flags['C_CONTIGUOUS']
    assert got.shape == (3,) + shape[:2]
    np.testing.assert_array_equal(got, expected)


def test_truncated_jpeg_is_refused_naming_the_file(tmp_path):
    path = tmp_path / 'cut.jpg'
    Image.fromarray(_pixels((64, 64, 3))).save(str(path), quality=95)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(BadSampleError, match='cut.jpg: unreadable image'):
        read_image(str(path))


def test_missing_and_non_image_files_are_refused(tmp_path):
    with pytest.raises(BadSampleError, match='nope.jpg: unreadable image'):
        read_image(str(tmp_path / 'nope.jpg'))
    text = tmp_path / 'notes.jpg'
    text.write_text('not an image')
    with pytest.raises(BadSampleError, match='notes.jpg: unreadable image'):
        read_image(str(text))
