"""Paper 002's CycleGAN inputs: one square crop per image, centred on its largest person box.

Paper 002 sec. 3.1 crops 256x256 so that the largest person box of an image is at the crop's
centre; sec. 4.1 takes 4,822 such crops of Berkeley DeepDrive images and 3,163 of SYNTHIA
images in which people appear large. Here the images and boxes come from a
VOC-format folder (:class:`chainer_yolo_dist.datasets.voc.VOCFormatDataset`, with its bad-input
policy); "largest" is the largest box area, difficult boxes included (the paper says nothing
about difficulty; a difficult box is still a person). The window is centred on the box centre
and, where that would leave the image, shifted to lie inside it (no padding, no resizing), so a
person near the border is off-centre but every pixel is real. An image without a person box is
left out, as is one smaller than the crop in either side (neither happens to the paper's
1280x720 DeepDrive and 1280x760 SYNTHIA frames); both are counted in the summary.

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


def make_person_crops(dataset, out_dir, person_label, size=CROP_SIZE):
    """Writes one crop per image of ``dataset`` that has a person; returns the summary dict.

    Args:
        dataset: a :class:`VOCFormatDataset` (``ids``, ``report``, sliceable ``img`` /
            ``bbox`` / ``label``), already checked under its ``on_bad_sample`` policy.
        out_dir (str): created if missing.
        person_label (int): index of the person class in ``dataset.class_names``.
        size (int): crop side.

    Returns:
        dict with ``n_images``, ``n_crops``, ``n_no_person``, ``n_too_small``, ``crops`` (one
        entry per written file) and ``bad_samples`` (the dataset's report); also written to
        ``crops.json``.
    """
    os.makedirs(out_dir, exist_ok=True)
    annotations = dataset.slice[:, ('bbox', 'label')]  # no image is decoded for these
    images = dataset.slice[:, 'img']
    crops, no_person, too_small = [], [], []
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
        y0, x0, y1, x1 = crop_window(bbox[k], height, width, size)
        crop = np.clip(np.round(img[:, y0:y1, x0:x1]), 0, 255).astype(np.uint8)
        name = id_.replace('/', '_') + '.png'
        path = os.path.join(out_dir, name)
        with atomic_path(path) as tmp:
            Image.fromarray(crop.transpose(1, 2, 0)).save(tmp, format='PNG')
        crops.append({'id': id_, 'file': name, 'box': [float(v) for v in bbox[k]],
                      'window': [y0, x0, y1, x1]})
    summary = {'n_images': len(dataset), 'n_crops': len(crops), 'n_no_person': len(no_person),
               'n_too_small': len(too_small), 'crop_size': size, 'crops': crops,
               'no_person': no_person, 'too_small': too_small,
               'bad_samples': dataset.report.as_dict() if getattr(dataset, 'report', None)
               else None}
    write_json(os.path.join(out_dir, 'crops.json'), summary)
    return summary
