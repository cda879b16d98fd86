"""Whether a JPEG file's bytes hold a whole image: a walk over its marker segments.

OpenCV's decoder (libjpeg-turbo behind ``cv2.imdecode``) returns the decoded part of a
truncated JPEG, the rest grey, with only a warning on stderr; Pillow raises. The datasets decode
with OpenCV (faster, :func:`chainer_yolo_dist.datasets.validation.read_image`), so they check
the file's structure first, which costs a few hundredths of a millisecond against about 1.6 ms
for the decode of a 100 KB file.

The structure (ITU-T T.81, annex B): ``FF D8`` (SOI), then marker segments, each ``FF``, a code
and a two-byte big-endian length that counts itself and the payload; a scan (SOS, ``FF DA``) is
followed by its entropy-coded data, which ends at the next marker; the image ends with ``FF D9``
(EOI). Entropy-coded data cannot contain a marker: an ``FF`` data byte is always followed by a
stuffed ``00``, and only the restart markers ``FF D0`` to ``FF D7`` may appear inside it. So a
file cut anywhere before its EOI either ends inside a segment (its length runs past the end) or
inside a scan's data (no marker follows): no EOI is found by the walk. Segments are skipped by
their lengths, so the EOI and SOS markers of an EXIF thumbnail (a whole JPEG inside the APP1
segment) are never taken for the image's own, and bytes after the image's EOI (a Multi-Picture
file's further images, padding) are not looked at, as decoders do not look at them either.

:func:`frame_size` walks the same segments from the start to the frame header, which holds the
image's size (the start-up header checks of ImageNet's 1.33 M files).
"""
import re
import struct

#: Start of image, the first two bytes of every JPEG file.
SOI = b'\xff\xd8'
_EOI, _SOS, _TEM = 0xD9, 0xDA, 0x01
_RST = range(0xD0, 0xD8)
# The end of a scan's entropy-coded data: the first FF followed by neither a stuffed 00 nor a
# restart code. (FF FF is fill before a marker; the walk skips it.)
_AFTER_SCAN = re.compile(rb'\xff[^\x00\xd0-\xd7]')


def is_jpeg(data):
    """True if the bytes ``data`` start like a JPEG file (SOI, then a marker)."""
    return data[:3] == SOI + b'\xff'


def truncation(data):
    """What makes the JPEG bytes ``data`` incomplete, as a short phrase, or ``None`` if the walk
    over its segments reaches the image's EOI marker after at least one scan.

    Only the structure is checked, not the entropy-coded data itself (a decoder reports
    corrupt data there). ``data`` must start with :data:`SOI`.
    """
    n = len(data)
    pos = len(SOI)
    scans = 0
    while True:
        if pos >= n:
            return 'truncated JPEG: the file ends after %d scan%s, without its end-of-image ' \
                   'marker' % (scans, '' if scans == 1 else 's')
        if data[pos] != 0xFF:
            return 'corrupt JPEG: no marker at byte %d' % pos
        while pos < n and data[pos] == 0xFF:  # a marker may be preceded by fill bytes FF
            pos += 1
        if pos >= n:
            continue
        code = data[pos]
        pos += 1
        if code == _EOI:
            return None if scans else 'corrupt JPEG: end-of-image marker before any scan'
        if code in _RST or code == _TEM:  # markers without a length
            continue
        if pos + 2 > n:
            return 'truncated JPEG: the file ends inside a marker segment'
        pos += (data[pos] << 8) | data[pos + 1]
        if pos > n:
            return 'truncated JPEG: the file ends inside a marker segment (FF %02X)' % code
        if code == _SOS:
            scans += 1
            end = _AFTER_SCAN.search(data, pos)
            if end is None:
                return 'truncated JPEG: the file ends inside scan %d' % scans
            pos = end.start()


def frame_size(head):
    """``(H, W)`` from the frame header (SOF) of the JPEG whose first bytes are ``head``, or
    ``None`` if ``head`` does not start as a JPEG, its segments up to the frame header cannot
    be followed within ``head``, or the header gives a zero size."""
    if head[:2] != SOI:
        return None
    pos = len(SOI)
    while pos + 9 <= len(head):
        if head[pos] != 0xFF:
            return None
        code = head[pos + 1]
        if code == 0xFF:  # a fill byte before a marker
            pos += 1
            continue
        # SOF0-SOF15 but DHT (C4), JPG (C8) and DAC (CC): precision, height, width.
        if 0xC0 <= code <= 0xCF and code not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack('>HH', head[pos + 5:pos + 9])
            return (height, width) if height and width else None
        if code == _SOS or code in _RST or code in (_EOI, 0xD8):  # no frame header before
            return None
        pos += 2 + struct.unpack('>H', head[pos + 2:pos + 4])[0]
    return None
