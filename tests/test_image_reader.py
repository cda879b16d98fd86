"""The datasets' image reader: ChainerCV's pixels, interleaved float32, truncated JPEGs refused.

JPEGs are decoded by OpenCV after a walk over their marker segments has found the end-of-image
marker (OpenCV alone would return a truncated file's decoded part); other formats by Pillow.
"""
import io
import struct

import chainer
import numpy as np
import pytest
from chainercv.utils import read_image as chainercv_read_image
from PIL import ExifTags, Image

from chainer_yolo_dist.datasets import jpeg
from chainer_yolo_dist.datasets.validation import BadSampleError, read_image


def _pixels(shape, seed=0):
    return np.random.RandomState(seed).randint(0, 256, size=shape).astype(np.uint8)


def _scene(shape=(48, 64), seed=0):
    """A smooth RGB image (noise compresses badly and hides nothing here)."""
    y, x = np.mgrid[:shape[0], :shape[1]]
    img = np.stack([x * 4, y * 5, (x + y) * 2], axis=-1) % 256
    return (img + _pixels(shape + (3,), seed) // 8).astype(np.uint8)


def _jpeg_bytes(img, **options):
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, 'JPEG', **options)
    return buf.getvalue()


def _with_exif_thumbnail(main, thumbnail):
    """``main`` (JPEG bytes) with an APP1 EXIF segment whose IFD1 holds ``thumbnail`` (a whole
    JPEG, with its own SOS and EOI markers), inserted after SOI, as cameras write it."""
    ifd0 = struct.pack('<H', 0) + struct.pack('<I', 26)  # no entries; IFD1 at offset 26
    entries = struct.pack('<HHII', 0x0201, 4, 1, 56) + struct.pack('<HHII', 0x0202, 4, 1,
                                                                   len(thumbnail))
    ifd1 = struct.pack('<H', 2) + entries + struct.pack('<I', 0)
    tiff = b'II*\x00' + struct.pack('<I', 8) + ifd0 + b'\x00' * 12 + ifd1 + thumbnail
    assert tiff.index(thumbnail) == 56
    payload = b'Exif\x00\x00' + tiff
    return main[:2] + b'\xff\xe1' + struct.pack('>H', len(payload) + 2) + payload + main[2:]


def _write(path, data):
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize('name,mode,shape', [
    ('rgb.jpg', 'RGB', (37, 53, 3)),
    ('gray.jpg', 'L', (21, 34)),
    ('cmyk.jpg', 'CMYK', (24, 16, 4)),
    ('rgb.png', 'RGB', (20, 30, 3)),
    ('gray.png', 'L', (20, 30)),
    ('rgba.png', 'RGBA', (20, 30, 4)),
    ('palette.png', 'P', (20, 30)),
])
def test_pixels_equal_chainercv_both_backends(tmp_path, name, mode, shape):
    path = str(tmp_path / name)
    Image.fromarray(_pixels(shape), mode=mode).save(path)
    got = read_image(path)
    assert got.dtype == np.float32 and got.shape == (3,) + shape[:2]
    # A (3, H, W) view of interleaved (H, W, 3) memory.
    assert got.transpose(1, 2, 0).flags['C_CONTIGUOUS']
    with chainer.using_config('cv_read_image_backend', 'cv2'):
        # ChainerCV's default backend when OpenCV is installed; it drops an alpha channel.
        np.testing.assert_array_equal(got, chainercv_read_image(path, color=True))
    with chainer.using_config('cv_read_image_backend', 'PIL'):
        # An alpha channel is ignored (ChainerCV refuses RGBA unless told how to treat it).
        pil = chainercv_read_image(path, color=True, alpha='ignore')
    if mode == 'CMYK':  # OpenCV divides by 256 rounding down, Pillow by 255 rounding
        assert np.abs(got - pil).max() <= 2
    else:  # the same libjpeg-turbo decode: bit for bit
        np.testing.assert_array_equal(got, pil)


def test_exif_orientation_is_ignored(tmp_path):
    # Orientation 6 ("rotate 90 degrees to display"): VOC's boxes refer to the stored grid.
    exif = Image.Exif()
    exif[0x0112] = 6
    path = str(tmp_path / 'rotated.jpg')
    Image.fromarray(_scene((30, 50))).save(path, exif=exif, quality=95)
    with chainer.using_config('cv_read_image_backend', 'PIL'):
        expected = chainercv_read_image(path, color=True)
    assert expected.shape == (3, 30, 50)
    np.testing.assert_array_equal(read_image(path), expected)


def test_truncated_jpeg_is_refused_on_one_line_naming_the_file(tmp_path):
    data = _jpeg_bytes(_scene(), quality=95)
    path = _write(tmp_path / 'cut.jpg', data[:len(data) // 2])
    with pytest.raises(BadSampleError, match=r'cut\.jpg: unreadable image \(truncated JPEG') \
            as error:
        read_image(path)
    assert '\n' not in str(error.value)


def _progressive():
    return _jpeg_bytes(_scene(seed=1), quality=90, progressive=True)


def _thumbnailed():
    thumbnail = _jpeg_bytes(_scene((12, 16), seed=2), quality=80)
    return _with_exif_thumbnail(_jpeg_bytes(_scene(seed=3), quality=90), thumbnail)


@pytest.mark.parametrize('make', [lambda: _jpeg_bytes(_scene(), quality=95), _progressive,
                                  _thumbnailed], ids=['baseline', 'progressive', 'thumbnail'])
def test_a_jpeg_cut_anywhere_is_refused_and_whole_is_read(tmp_path, make):
    data = make()
    whole = read_image(_write(tmp_path / 'whole.jpg', data))
    np.testing.assert_array_equal(whole, np.asarray(Image.open(io.BytesIO(data)).convert('RGB'))
                                  .transpose(2, 0, 1))
    accepted = []
    for cut in range(len(data)):  # every byte: the cut may fall in any segment or scan
        try:
            read_image(_write(tmp_path / 'cut.jpg', data[:cut]))
        except BadSampleError as e:
            assert str(e).startswith(str(tmp_path / 'cut.jpg') + ': unreadable image (')
        else:
            accepted.append(cut)
    assert accepted == []


def test_the_test_files_have_what_they_claim():
    assert jpeg.truncation(_progressive()) is None
    assert Image.open(io.BytesIO(_progressive())).info.get('progressive')
    data = _thumbnailed()
    thumbnail = Image.open(io.BytesIO(data)).getexif().get_ifd(ExifTags.IFD.IFD1)
    assert thumbnail[0x0202] > 0 and data.count(b'\xff\xd9') == 2  # the thumbnail's EOI too
    # The thumbnail's scan and EOI lie before the image's scan: a cut inside the image's scan
    # leaves no EOI after the last SOS, and a cut after the thumbnail's EOI but before the
    # image's scan leaves one (a last-SOS/last-EOI check would pass that file, and only the
    # decoder's failing header parse would refuse it; the walk refuses it itself).
    assert data.index(b'\xff\xd9') < data.rindex(b'\xff\xda')


def test_bytes_after_the_end_of_image_are_ignored(tmp_path):
    data = _jpeg_bytes(_scene(), quality=95)
    whole = read_image(_write(tmp_path / 'whole.jpg', data))
    # Padding, or a Multi-Picture file's further image: decoders stop at the first EOI.
    padded = read_image(_write(tmp_path / 'padded.jpg', data + b'\x00' * 100 + data[:300]))
    np.testing.assert_array_equal(padded, whole)


def test_complete_jpeg_with_a_corrupt_header_is_refused(tmp_path):
    data = bytearray(_jpeg_bytes(_scene(), quality=95))
    sof = data.index(b'\xff\xc0')
    data[sof + 5:sof + 9] = b'\x00\x00\x00\x00'  # height and width 0
    assert jpeg.truncation(bytes(data)) is None
    with pytest.raises(BadSampleError, match=r'zero\.jpg: unreadable image \('):
        read_image(_write(tmp_path / 'zero.jpg', bytes(data)))


def test_missing_and_non_image_files_are_refused(tmp_path):
    with pytest.raises(BadSampleError, match=r'nope\.jpg: unreadable image \(FileNotFoundError'):
        read_image(str(tmp_path / 'nope.jpg'))
    text = _write(tmp_path / 'notes.jpg', b'not an image')
    with pytest.raises(BadSampleError, match=r'notes\.jpg: unreadable image'):
        read_image(text)
