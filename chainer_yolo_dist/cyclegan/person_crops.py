"""Paper 002's CycleGAN inputs: one square crop per image, centred on its largest person box.

Paper 002 sec. 3.1 crops 256x256 so that the largest person box of an image is at the crop's
centre; sec. 4.1 takes 4,822 such crops of Berkeley DeepDrive images and 3,163 of SYNTHIA
images in which people appear large. Here the images and boxes come from a
VOC-format folder (:class:`chainer_yolo_dist.datasets.voc.VOCFormatDataset`, with its bad-input
policy); "largest" is the largest box area, difficult boxes included (the paper says nothing
about difficulty; a difficult box is still a person). The window is centred on the box centre
and, where that would leave the image, shifted to lie inside it (no padding, no resizing), so a
person near the border is off-centre but every pixel is real. An image without a person box is
left out, as is one smaller than the crop in either side (neither should happen to DeepDrive's
1280x720 or SYNTHIA's 1280x760 frames, sizes from those data sets, not from paper 002); both
are counted in the summary.

"Sufficiently large": paper 002 sec. 3.1 trains on "images that contain sufficiently large
persons" (sec. 4.1: "images in which persons appear large") and prints no size. The reading
here (:data:`MIN_PERSON_HEIGHT`): the person the crop is centred on is at least a quarter of
the crop side tall (64 px in a 256-pixel crop), since the crop is what CycleGAN sees and the
paper's aim is the person's appearance. The height may instead be a fraction of the image
height (``relative_to='image'``) or a number of pixels (``'px'``); 0 keeps every image with a
person. Images whose person is shorter are left out and counted (``n_too_short``).

Output: ``<out_dir>/<image id>.png`` (lossless) and ``<out_dir>/crops.json`` listing each crop's
id, its person box and its window ``(y_min, x_min, y_max, x_max)`` in the source image (0-based
pixel edges), plus the counts and the bad-input report.
"""
import os

import numpy as np
from PIL import Image

from chainer_yolo_dist.core.atomic import atomic_path, write_json

#: Paper 002 sec. 3.1: crop side in pixels.
CROP_SIZE = 256

#: Reading of paper 002 sec. 3.1's "sufficiently large persons" (no size is printed): the
#: centred person's box height, at least this fraction of the crop side.
MIN_PERSON_HEIGHT = 0.25

#: What ``min_person_height`` is measured against: the crop side (the reading), the image
#: height, or plain pixels.
RELATIVE_TO = ('crop', 'image', 'px')


def min_height_pixels(min_person_height, relative_to, image_height, size=CROP_SIZE):
    """The smallest person box height (pixels) that counts as "sufficiently large".

    ``min_person_height`` is a fraction in [0, 1] of the crop side ``size`` (``relative_to=
    'crop'``) or of ``image_height`` (``'image'``), or pixels >= 0 (``'px'``). ValueError
    names the bad value.
    """
    if relative_to not in RELATIVE_TO:
        raise ValueError('relative_to must be one of %s, got %r' % (RELATIVE_TO, relative_to))
    if relative_to == 'px':
        if not min_person_height >= 0:
            raise ValueError('a minimum person height in pixels must be >= 0, got %r'
                             % (min_person_height,))
        return float(min_person_height)
    if not 0 <= min_person_height <= 1:
        raise ValueError('a minimum person height relative to the %s must be in [0, 1], got %r'
                         % (relative_to, min_person_height))
    return min_person_height * (size if relative_to == 'crop' else image_height)


def largest_box(bbox, label, person_label):
    """Index of the largest-area box with ``label == person_label``, or None if there is none.

    ``bbox`` ``(R, 4)`` as ``(y_min, x_min, y_max, x_max)``; ties go to the first box.
    """
    bbox = np.asarray(bbox, np.float64).reshape(-1, 4)
    mask = np.asarray(label) == person_label
    if not mask.any():
        return None
    area = (bbox[:, 2] - bbox[:, 0]) * (bbox[:, 3] - bbox[:, 1])
    area[~mask] = -np.inf
    return int(np.argmax(area))


def crop_window(box, height, width, size=CROP_SIZE):
    """``(y0, x0, y0 + size, x0 + size)`` centred on ``box``'s centre, shifted inside the image.

    Raises ValueError if the image is smaller than ``size`` in either side.
    """
    if height < size or width < size:
        raise ValueError('a %dx%d image is smaller than the %d-pixel crop' % (height, width, size))
    cy, cx = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
    y0 = int(np.clip(int(round(cy - size / 2.0)), 0, height - size))
    x0 = int(np.clip(int(round(cx - size / 2.0)), 0, width - size))
    return y0, x0, y0 + size, x0 + size


def make_person_crops(dataset, out_dir, person_label, size=CROP_SIZE,
                      min_person_height=MIN_PERSON_HEIGHT, relative_to='crop'):
    """Writes one crop per image of ``dataset`` whose largest person is tall enough; returns
    the summary dict.

    Args:
        dataset: a :class:`VOCFormatDataset` (``ids``, ``report``, sliceable ``img`` /
            ``bbox`` / ``label``), already checked under its ``on_bad_sample`` policy.
        out_dir (str): created if missing.
        person_label (int): index of the person class in ``dataset.class_names``.
        size (int): crop side.
        min_person_height, relative_to: the size criterion (:func:`min_height_pixels`): the
            largest-area person box (the one the crop is centred on) must be at least that
            tall; ``y_max - y_min`` of the box, in pixels.

    Returns:
        dict with ``n_images``, ``n_crops``, ``n_no_person``, ``n_too_small`` (image smaller
        than the crop), ``n_too_short`` (person below the criterion), the criterion
        (``min_person_height``, ``relative_to``), ``crops`` (one entry per written file),
        the skipped ids and ``bad_samples`` (the dataset's report); also written to
        ``crops.json``.
    """
    min_height_pixels(min_person_height, relative_to, 0, size)   # a bad criterion: now
    os.makedirs(out_dir, exist_ok=True)
    annotations = dataset.slice[:, ('bbox', 'label')]  # no image is decoded for these
    images = dataset.slice[:, 'img']
    crops, no_person, too_small, too_short = [], [], [], []
    for i in range(len(dataset)):
        id_ = dataset.ids[i]
        bbox, label = annotations[i]
        k = largest_box(bbox, label, person_label)
        if k is None:
            no_person.append(id_)
            continue
        img = images[i]
        height, width = img.shape[1:]
        if height < size or width < size:
            too_small.append(id_)
            continue
        box_height = bbox[k][2] - bbox[k][0]
        if box_height < min_height_pixels(min_person_height, relative_to, height, size):
            too_short.append(id_)
            continue
        y0, x0, y1, x1 = crop_window(bbox[k], height, width, size)
        crop = np.clip(np.round(img[:, y0:y1, x0:x1]), 0, 255).astype(np.uint8)
        name = id_.replace('/', '_') + '.png'
        path = os.path.join(out_dir, name)
        with atomic_path(path) as tmp:
            Image.fromarray(crop.transpose(1, 2, 0)).save(tmp, format='PNG')
        crops.append({'id': id_, 'file': name, 'box': [float(v) for v in bbox[k]],
                      'window': [y0, x0, y1, x1]})
    summary = {'n_images': len(dataset), 'n_crops': len(crops), 'n_no_person': len(no_person),
               'n_too_small': len(too_small), 'n_too_short': len(too_short),
               'crop_size': size, 'min_person_height': min_person_height,
               'relative_to': relative_to, 'crops': crops,
               'no_person': no_person, 'too_small': too_small, 'too_short': too_short,
               'bad_samples': dataset.report.as_dict() if getattr(dataset, 'report', None)
               else None}
    write_json(os.path.join(out_dir, 'crops.json'), summary)
    return summary
