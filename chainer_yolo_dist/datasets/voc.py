"""Pascal VOC and any VOC-format detection dataset, read from disk only (never downloaded).

The papers train on VOC2007 trainval + VOC2012 trainval (16,551 images) and test on VOC2007 test
(4,952 images). Annotations follow ChainerCV's ``VOCBboxDataset`` exactly: VOC's 1-based
inclusive pixel coordinates have 1 subtracted, boxes are ``(y_min, x_min, y_max, x_max)`` float32,
names are compared lower-cased and stripped, and with ``use_difficult=False`` difficult objects are
left out. The XML is parsed here rather than through ``VOCBboxDataset`` because that class
raises on the first unknown class name, missing XML or object-less image, so the
``on_bad_sample`` policy could not work; tests check both give identical samples on valid data.
"""
import os
import xml.etree.ElementTree as ET

import numpy as np
from chainer.dataset import download

from chainercv.chainer_experimental.datasets.sliceable import ConcatenatedDataset
from chainercv.chainer_experimental.datasets.sliceable import GetterDataset
from chainercv.datasets import voc_bbox_label_names

from chainer_yolo_dist.datasets import image_checks
from chainer_yolo_dist.datasets import validation as V

# Where ChainerCV's VOCBboxDataset(data_dir='auto') keeps VOC, relative to the dataset root.
CHAINERCV_VOC_DIR = 'pfnet/chainercv/voc'


def _canonical(name):
    return name.lower().strip()


def read_objects(xml_path):
    """The objects of one VOC XML as written, before any check against classes or the image.

    Returns a list, one ``(name, difficult, box)`` per ``<object>`` in file order: ``name`` the
    ``<name>`` text (None if absent); ``difficult`` bool (a missing tag counts as 0, as many
    non-VOC tools omit it); ``box`` ``[y_min, x_min, y_max, x_max]`` floats, VOC's 1-based
    inclusive pixel indices minus 1 (ChainerCV's convention), or, for a malformed object, the
    text of what is wrong with it (``difficult`` is then None). Raises ``ET.ParseError`` or
    ``OSError`` when the file cannot be read as XML.
    """
    return _read_xml(xml_path)[0]


def _read_xml(xml_path):
    """``(objects, size)``: :func:`read_objects`' list and the ``<size>`` the annotation gives
    for its image, ``(H, W)``, or None where it gives none (or not two positive integers)."""
    root = ET.parse(xml_path).getroot()
    objects = []
    for obj in root.findall('object'):
        name = obj.findtext('name')
        try:
            difficult = bool(int(obj.findtext('difficult', default='0').strip() or 0))
            bndbox = obj.find('bndbox')
            box = [float(bndbox.find(tag).text) - 1 for tag in ('ymin', 'xmin', 'ymax', 'xmax')]
        except (AttributeError, TypeError, ValueError) as e:
            objects.append((name, None, str(e)))
            continue
        objects.append((name, difficult, box))
    try:
        size = (int(root.findtext('size/height').strip()),
                int(root.findtext('size/width').strip()))
    except (AttributeError, ValueError):
        size = None
    return objects, (size if size and min(size) > 0 else None)


def _read_or_error(xml_path):
    """``(objects, size)`` of :func:`_read_xml`, or ``(why it failed, None)``."""
    try:
        return _read_xml(xml_path)
    except (ET.ParseError, OSError) as e:
        return 'unreadable annotation (%s)' % e, None


#: Annotations read across the ranks at start-up (:func:`read_annotations_across_ranks`),
#: by absolute path: what :func:`read_objects` returned, or the text of why it failed; and
#: the image sizes the annotations give (``<size>``, for ``image_check='none'``).
_READ = {}
_SIZES = {}


def read_annotations_across_ranks(xml_paths, comm):
    """Reads the VOC XML files ``xml_paths`` (the same list on every rank) split across the
    ranks of ``comm``: rank ``r`` parses every ``size``-th file, rank 0 gathers what they read
    and keeps it for the datasets it builds next (which then open no XML file that was read
    here; the checks against classes and image sizes stay theirs). Returns the number read.
    """
    mine = [(os.path.abspath(p),) + _read_or_error(p) for p in xml_paths[comm.rank::comm.size]
            if os.path.isfile(p)]  # a missing file is the dataset's to report
    gathered = comm.gather_obj(mine)
    forget_read_annotations()
    if comm.rank == 0:
        for share in gathered:
            for path, objects, size in share:
                _READ[path] = objects
                if size is not None:
                    _SIZES[path] = size
    return sum(len(share) for share in gathered) if comm.rank == 0 else None


def forget_read_annotations():
    """Drops what :func:`read_annotations_across_ranks` read (once the datasets are built)."""
    _READ.clear()
    _SIZES.clear()


def _annotation(xml_path):
    """``(objects or why they cannot be read, annotated size or None)`` of one VOC XML: what
    :func:`read_annotations_across_ranks` read, else the file."""
    key = os.path.abspath(xml_path)
    if _READ and key in _READ:
        return _READ[key], _SIZES.get(key)
    return _read_or_error(xml_path)


def _parse_objects(xml_path, objects, class_index, height, width, report):
    """Checks one VOC XML's objects (as :func:`_annotation` gives them); returns ``(bbox,
    label, difficult)`` of its valid objects, or None if the file cannot be read.

    Coordinates are VOC's 1-based inclusive pixel indices minus 1 (ChainerCV's convention).
    """
    if isinstance(objects, str):
        report.record(V.UNREADABLE_ANNOTATION, xml_path, objects)
        return None
    bbox, label, difficult = [], [], []
    for k, (name, diff, box) in enumerate(objects):
        if name is None or _canonical(name) not in class_index:
            report.record(V.UNKNOWN_CLASS, xml_path, 'box %d has unknown class name %r'
                          % (k, name), hint='add %r to --class-names (vocformat), or '
                          '--on-bad-sample skip drops such boxes' % name if name else None)
            continue
        if diff is None:
            report.record(V.MALFORMED_BOX, xml_path, 'box %d is malformed (%s)' % (k, box))
            continue
        problem = V.box_problem(box, height, width, indices=True)
        if problem is not None:
            report.record(problem[0], xml_path, 'box %d %s' % (k, problem[1]))
            continue
        bbox.append(box)
        label.append(class_index[_canonical(name)])
        difficult.append(diff)
    return (np.asarray(bbox, np.float32).reshape(-1, 4), np.asarray(label, np.int32),
            np.asarray(difficult, bool))


class VOCFormatDataset(GetterDataset):
    """Any VOC-format detection dataset (sliceable, ChainerCV-style).

    ``root`` holds ``Annotations/<id>.xml``, ``JPEGImages/<id>.jpg`` and
    ``ImageSets/Main/<split>.txt`` (one id per line). ``ds[i] -> (img, bbox, label)`` plus
    ``difficult`` (bool ``(R,)``) when ``return_difficult``: img float32 ``(3, H, W)`` RGB
    [0, 255]; bbox float32 ``(R, 4)`` ``(y_min, x_min, y_max, x_max)``, 0-based pixel indices
    (VOC's minus 1); label int32 ``(R,)`` indexing ``class_names``.

    All annotations are parsed at construction, and every image checked as ``image_check``
    says: 'decode' (every image decoded), 'header' (its size read from its header; an image
    unreadable past it fails when it is read, named then) or 'none' (no image opened: the size
    the boxes are checked against is the annotation's ``<size>``, or, where an annotation has
    none, the image's header); files the start-up checks covered
    (:func:`~chainer_yolo_dist.datasets.image_checks.check_images_across_ranks`) are not
    opened again. ``check_images`` is the former switch: True is 'decode', False 'header'.
    See :mod:`chainer_yolo_dist.datasets.validation` for ``on_bad_sample``. An image without
    objects is valid and kept. ``report`` holds what was dropped. Difficult objects are checked
    like the others and, when ``use_difficult`` is False, then left out.
    """

    def __init__(self, root, split, class_names, use_difficult=False, return_difficult=False,
                 on_bad_sample='error', image_check='decode', check_images=None):
        super(VOCFormatDataset, self).__init__()
        self.image_check = image_checks.image_check_mode(image_check, check_images)
        self.root, self.split = root, split
        self.class_names = tuple(class_names)
        self.use_difficult = use_difficult
        self.report = V.BadSampleReport(on_bad_sample)
        class_index = {_canonical(n): i for i, n in enumerate(self.class_names)}
        if len(class_index) != len(self.class_names):
            raise ValueError('class_names has duplicates (case-insensitive): %r'
                             % (self.class_names,))
        id_file = os.path.join(root, 'ImageSets', 'Main', split + '.txt')
        if not os.path.isfile(id_file):
            raise FileNotFoundError('%s: split list for split %r not found' % (id_file, split))
        with open(id_file) as f:
            ids = [line.split()[0] for line in f if line.strip()]
        self.ids, self._annotations = [], []
        for id_ in ids:
            self.report.n_checked += 1
            anno = self._load(id_, class_index)
            if anno is not None:
                self.ids.append(id_)
                self._annotations.append(anno)
        self.report.n_kept = len(self.ids)
        self.add_getter('img', self._get_image)
        self.add_getter(('bbox', 'label', 'difficult'), self._get_annotations)
        if not return_difficult:
            self.keys = ('img', 'bbox', 'label')

    def _load(self, id_, class_index):
        xml_path = os.path.join(self.root, 'Annotations', id_ + '.xml')
        if not os.path.isfile(xml_path):
            self.report.record(V.MISSING_ANNOTATION, xml_path, 'annotation file missing')
            return None
        if self.image_check == 'none':
            objects, size = _annotation(xml_path)
            if isinstance(objects, str):
                size = (0, 0)  # unreadable: _parse_objects reports it
            elif size is None:  # the boxes need the image's size: its header gives it
                size = V.check_image(self.report, self.image_path(id_), decode=False)
        else:
            size = V.check_image(self.report, self.image_path(id_),
                                 decode=self.image_check == 'decode')
            objects = _annotation(xml_path)[0] if size is not None else None
        if size is None:
            return None
        n_found = len(self.report.problems)
        anno = _parse_objects(xml_path, objects, class_index, size[0], size[1], self.report)
        if anno is None:
            return None
        self.report.n_boxes_dropped += len(self.report.problems) - n_found
        if not self.use_difficult:
            keep = ~anno[2]
            anno = tuple(a[keep] for a in anno)
        return anno

    def image_path(self, id_):
        return os.path.join(self.root, 'JPEGImages', id_ + '.jpg')

    def __len__(self):
        return len(self.ids)

    def _get_image(self, i):
        return V.read_image(self.image_path(self.ids[i]))

    def _get_annotations(self, i):
        return self._annotations[i]


class ConcatenatedDetectionDataset(ConcatenatedDataset):
    """ChainerCV's sliceable concatenation that keeps ``class_names`` and a merged ``report``."""

    def __init__(self, *datasets):
        super(ConcatenatedDetectionDataset, self).__init__(*datasets)
        self.class_names = datasets[0].class_names
        if any(d.class_names != self.class_names for d in datasets):
            raise ValueError('datasets to concatenate have different class_names')
        self.report = V.BadSampleReport.merge(
            [d.report for d in datasets if getattr(d, 'report', None) is not None])


def default_devkit_dir():
    """ChainerCV's VOCdevkit location: ``$CHAINER_DATASET_ROOT/pfnet/chainercv/voc/VOCdevkit``.

    Only the path is computed; unlike ChainerCV's own helper nothing is created or downloaded.
    """
    return os.path.join(download.get_dataset_directory(CHAINERCV_VOC_DIR, create_directory=False),
                        'VOCdevkit')


def require_voc(devkit_dir, parts):
    """Raises ``FileNotFoundError``, in one line, naming what is missing from ``devkit_dir``
    and how to go on (a parent of VOCdevkit: the subfolder to give instead).

    Args:
        devkit_dir (str): the VOCdevkit directory (``--data-dir``).
        parts: ``(year, split)`` pairs needed, e.g. ``[('2007', 'trainval')]``.
    """
    missing = []
    for year, split in parts:
        base = os.path.join(devkit_dir, 'VOC' + year)
        if not os.path.isdir(base):  # its contents are missing too: name the folder once
            missing.append(base + '/')
            continue
        for path, is_dir in ((os.path.join(base, 'ImageSets', 'Main', split + '.txt'), False),
                             (os.path.join(base, 'Annotations'), True),
                             (os.path.join(base, 'JPEGImages'), True)):
            if not (os.path.isdir(path) if is_dir else os.path.isfile(path)):
                missing.append(path + ('/' if is_dir else ''))
    missing = sorted(set(missing), key=missing.index)
    if not missing:
        return
    inner = os.path.join(devkit_dir, 'VOCdevkit')
    if os.path.isdir(inner):
        how = 'it holds a VOCdevkit folder: give --data-dir %s' % inner
    elif not os.path.isdir(devkit_dir):
        how = ('no such folder: give --data-dir VOCDEVKIT (the folder holding VOC2007/ and '
               'VOC2012/), or set CHAINER_DATASET_ROOT so that $CHAINER_DATASET_ROOT/%s/'
               'VOCdevkit holds it' % CHAINERCV_VOC_DIR)
    else:
        how = ('give --data-dir the VOCdevkit folder holding VOC2007/ and VOC2012/, each with '
               'ImageSets/Main/, Annotations/ and JPEGImages/')
    raise FileNotFoundError('Pascal VOC data not found at %s (this project never downloads '
                            'it): missing %s; %s' % (devkit_dir, ', '.join(missing), how))


def image_files(root, split):
    """The image paths of split ``split`` of the VOC-layout dataset at ``root`` (for checking
    them across ranks before the dataset is built); ``[]`` where the split list is missing."""
    return _split_files(root, split, 'JPEGImages', '.jpg')


def annotation_files(root, split):
    """The annotation (XML) paths of split ``split`` of the VOC-layout dataset at ``root``."""
    return _split_files(root, split, 'Annotations', '.xml')


def _split_files(root, split, folder, extension):
    id_file = os.path.join(root, 'ImageSets', 'Main', split + '.txt')
    if not os.path.isfile(id_file):
        return []
    with open(id_file) as f:
        return [os.path.join(root, folder, line.split()[0] + extension)
                for line in f if line.strip()]


#: VOC2007+2012 trainval (training) and VOC2007 test (evaluation), the papers' splits.
VOC0712_SPLITS = (('2007', 'trainval'), ('2012', 'trainval'), ('2007', 'test'))


def voc0712_image_files(data_dir=None):
    """The image paths of VOC2007+2012 trainval and VOC2007 test."""
    devkit = data_dir if data_dir is not None else default_devkit_dir()
    return [path for year, split in VOC0712_SPLITS
            for path in image_files(os.path.join(devkit, 'VOC' + year), split)]


def voc0712_annotation_files(data_dir=None):
    """The annotation paths of VOC2007+2012 trainval and VOC2007 test."""
    devkit = data_dir if data_dir is not None else default_devkit_dir()
    return [path for year, split in VOC0712_SPLITS
            for path in annotation_files(os.path.join(devkit, 'VOC' + year), split)]


def voc0712_train(data_dir=None, on_bad_sample='error', image_check='decode', check_images=None):
    """VOC2007 trainval + VOC2012 trainval without difficult objects (16,551 images in full).

    ``data_dir`` is the VOCdevkit directory (default :func:`default_devkit_dir`). Returns a
    sliceable :class:`ConcatenatedDetectionDataset` of ``(img, bbox, label)``.
    """
    devkit = data_dir if data_dir is not None else default_devkit_dir()
    parts = [('2007', 'trainval'), ('2012', 'trainval')]
    require_voc(devkit, parts)
    return ConcatenatedDetectionDataset(*[
        VOCFormatDataset(os.path.join(devkit, 'VOC' + year), split, voc_bbox_label_names,
                         use_difficult=False, return_difficult=False,
                         on_bad_sample=on_bad_sample, image_check=image_check,
                         check_images=check_images)
        for year, split in parts])


def voc07_test(data_dir=None, on_bad_sample='error', image_check='decode', check_images=None):
    """VOC2007 test (4,952 images) with difficult objects and their flags, for VOC07 evaluation.

    Returns a :class:`VOCFormatDataset` of ``(img, bbox, label, difficult)``.
    """
    devkit = data_dir if data_dir is not None else default_devkit_dir()
    require_voc(devkit, [('2007', 'test')])
    return VOCFormatDataset(os.path.join(devkit, 'VOC2007'), 'test', voc_bbox_label_names,
                            use_difficult=True, return_difficult=True,
                            on_bad_sample=on_bad_sample, image_check=image_check,
                            check_images=check_images)
