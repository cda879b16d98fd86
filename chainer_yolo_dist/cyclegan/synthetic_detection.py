"""The synthetic domains as detection data: paper 002 Table 2's training sets at CPU scale.

Paper 002 sec. 3.3 trains a one-class person detector on (a) real photographs, (b) the same
plus the raw computer-graphics images, (c) the same plus those images translated by CycleGAN,
and evaluates on real photographs only. On the synthetic domains
(:class:`~chainer_yolo_dist.cyclegan.data.SyntheticDomains`) the shapes are the "persons": one
class, ``object``. :func:`write_detection_sets` writes a VOC-layout folder that
``train_yolo.py --dataset vocformat`` reads:

- ``real_<i>``: domain B ("real") training scene ``i`` with its boxes;
- ``cg_<i>``: domain A ("CG") training scene ``i`` with its boxes;
- ``gen_<i>``: ``cg_<i>`` translated A -> B by a trained generator, with the same boxes (the
  translation keeps the content where it is);
- ``test_<i>``: domain B test scenes;

and the image sets ``a`` (real), ``b`` (real + cg), ``c`` (real + gen, with a generator) and
``test``, named after Table 2's rows so that ``compare_map.py`` finds the row to compare with.
Boxes are the tight boxes of each object's visible pixels, ChainerCV's ``(y_min, x_min, y_max,
x_max)``, written as VOC's 1-based inclusive pixel indices.
"""
import os
from xml.etree import ElementTree as ET

import numpy as np

from chainer_yolo_dist.core import atomic
from chainer_yolo_dist.cyclegan.data import _DOMAIN_A, _DOMAIN_B, SyntheticDomains, to_uint8

CLASS_NAME = 'object'


def scene_boxes(domains, domain, i):
    """``(R, 4)`` float32 tight boxes of scene ``i`` of ``domain`` ('a' or 'b')."""
    canvas, _ = domains._scene(_DOMAIN_A if domain == 'a' else _DOMAIN_B, domains._check(i))
    boxes = []
    for k in range(len(canvas.objects)):
        ys, xs = np.nonzero(canvas.owner == k)
        if len(ys):
            boxes.append([ys.min(), xs.min(), ys.max() + 1, xs.max() + 1])
    return np.asarray(boxes, np.float32).reshape(-1, 4)


def write_voc_example(root, name, image, bbox, class_name=CLASS_NAME):
    """``root/JPEGImages/name.jpg`` (``image`` ``(H, W, 3)`` uint8) and its VOC annotation."""
    import PIL.Image
    for sub in ('JPEGImages', 'Annotations'):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    with atomic.atomic_path(os.path.join(root, 'JPEGImages', name + '.jpg')) as tmp:
        PIL.Image.fromarray(image).save(tmp, format='JPEG', quality=95)
    anno = ET.Element('annotation')
    ET.SubElement(anno, 'filename').text = name + '.jpg'
    size = ET.SubElement(anno, 'size')
    for tag, value in (('width', image.shape[1]), ('height', image.shape[0]), ('depth', 3)):
        ET.SubElement(size, tag).text = str(value)
    for y0, x0, y1, x1 in bbox:
        obj = ET.SubElement(anno, 'object')
        ET.SubElement(obj, 'name').text = class_name
        ET.SubElement(obj, 'difficult').text = '0'
        box = ET.SubElement(obj, 'bndbox')
        # pixel edges (first, last + 1) -> VOC's 1-based inclusive indices (first + 1, last + 1)
        for tag, value in (('xmin', x0 + 1), ('ymin', y0 + 1), ('xmax', x1), ('ymax', y1)):
            ET.SubElement(box, tag).text = '%d' % int(round(value))
    atomic.write_text(os.path.join(root, 'Annotations', name + '.xml'),
                      ET.tostring(anno, encoding='unicode'))


def write_detection_sets(root, n_train, n_test, size, seed=0, gen_ab=None, batchsize=16):
    """Writes the VOC folder of the module doc; returns ``{image set: number of images}``.

    ``gen_ab``: a trained generator A -> B (:class:`~chainer_yolo_dist.cyclegan.networks.
    ResnetGenerator`) for the ``gen_*`` images and set ``c``; None writes sets a, b, test.
    """
    from chainer_yolo_dist.cyclegan.evaluation import translate
    train = SyntheticDomains('train', n_train, size, seed)
    test = SyntheticDomains('test', n_test, size, seed)
    sets = {'a': [], 'b': [], 'test': []}
    for i in range(n_train):
        write_voc_example(root, 'real_%05d' % i, to_uint8(train.image_b(i)),
                          scene_boxes(train, 'b', i))
        write_voc_example(root, 'cg_%05d' % i, to_uint8(train.image_a(i)),
                          scene_boxes(train, 'a', i))
        sets['a'].append('real_%05d' % i)
    sets['b'] = sets['a'] + ['cg_%05d' % i for i in range(n_train)]
    if gen_ab is not None:
        sets['c'] = list(sets['a'])
        for start in range(0, n_train, batchsize):
            idx = range(start, min(n_train, start + batchsize))
            fake = translate(gen_ab, np.stack([train.image_a(i) for i in idx]))
            for i, image in zip(idx, fake):
                write_voc_example(root, 'gen_%05d' % i, to_uint8(image),
                                  scene_boxes(train, 'a', i))
                sets['c'].append('gen_%05d' % i)
    for i in range(n_test):
        write_voc_example(root, 'test_%05d' % i, to_uint8(test.image_b(i)),
                          scene_boxes(test, 'b', i))
        sets['test'].append('test_%05d' % i)
    os.makedirs(os.path.join(root, 'ImageSets', 'Main'), exist_ok=True)
    for name, ids in sets.items():
        atomic.write_text(os.path.join(root, 'ImageSets', 'Main', name + '.txt'),
                          '\n'.join(ids) + '\n')
    return {name: len(ids) for name, ids in sets.items()}
