"""ImageNet-style classification data from disk (never downloaded), with the bad-input policy.

Two usual layouts:

* by directory: ``root/<split>/<wnid>/*.JPEG``; the class index is the position of ``wnid`` in the
  sorted list of ``root/train``'s subdirectories (so train and val agree), or of
  ``root/<split>``'s when there is no ``root/train``;
* a list file of ``path label`` lines, ``path`` relative to ``root``, as ChainerMN's ImageNet
  example feeds ``chainer.datasets.LabeledImageDataset``.
"""
import array
import os

import numpy as np

from chainercv.chainer_experimental.datasets.sliceable import GetterDataset

from chainer_yolo_dist.datasets import image_checks
from chainer_yolo_dist.datasets import validation as V
from chainer_yolo_dist.datasets.paths import PathTable, RootedPaths

IMAGE_EXTENSIONS = ('.jpeg', '.jpg', '.png')
IMAGENET_N_CLASS = 1000


def _subdirs(path):
    return sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))


def _directory_entries(root, split):
    """``(wnids, PathTable of relative paths, int64 labels)`` for the by-directory layout."""
    split_dir = os.path.join(root, split)
    if not os.path.isdir(split_dir):
        raise FileNotFoundError('%s: no such directory (expected %s/<wnid>/*.JPEG; '
                                'this project never downloads ImageNet)' % (split_dir, split_dir))
    train_dir = os.path.join(root, 'train')
    wnids = _subdirs(train_dir if os.path.isdir(train_dir) else split_dir)
    index = {w: i for i, w in enumerate(wnids)}
    labels = array.array('q')

    def paths():
        for wnid in _subdirs(split_dir):
            for name in sorted(os.listdir(os.path.join(split_dir, wnid))):
                if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                    # A wnid unknown to the class list gets label -1 so validation reports it.
                    labels.append(index.get(wnid, -1))
                    yield os.path.join(split, wnid, name)

    table = PathTable.build(paths())
    return tuple(wnids), table, np.frombuffer(labels, np.int64)


def _list_entries(list_file, report):
    """``(PathTable of relative paths, int64 labels)`` from a ``path label`` list, read line by
    line into arrays (1.28 M lines would take some 200 MB as Python tuples); malformed lines
    are recorded in ``report``."""
    if not os.path.isfile(list_file):
        raise FileNotFoundError('%s: list file not found' % list_file)
    labels = array.array('q')

    def paths():
        with open(list_file) as f:
            for n, line in enumerate(f, 1):
                fields = line.split()
                if not fields:
                    continue
                try:
                    if len(fields) != 2:
                        raise ValueError('expected "path label", got %d fields' % len(fields))
                    label = int(fields[1])
                except ValueError as e:
                    report.n_checked += 1
                    report.record(V.MALFORMED_ENTRY, '%s:%d' % (list_file, n), str(e))
                    continue
                labels.append(label)
                yield fields[0]

    table = PathTable.build(paths())
    return table, np.frombuffer(labels, np.int64)


def image_files(root, split='train', list_file=None):
    """The image paths an :class:`ImageNetDataset` of these arguments reads (for checking
    them across ranks before it is built), as a :class:`~.paths.RootedPaths`; empty where the
    layout is missing (the dataset then names what is missing)."""
    try:
        if list_file is None:
            table = _directory_entries(root, split)[1]
        else:
            table = _list_entries(list_file, V.BadSampleReport('skip'))[0]
    except FileNotFoundError:
        table = PathTable.build([])
    return RootedPaths(root, table)


class ImageNetDataset(GetterDataset):
    """ImageNet classification samples (sliceable): ``ds[i] -> (img, label)``.

    img float32 ``(3, H, W)`` RGB [0, 255]; label int32 scalar in ``[0, n_class)``.
    The kept entries are held as a :class:`~.paths.PathTable` and an int32 array (about 45
    bytes an entry: 60 MB for ImageNet's training set, pickled to the ranks as two arrays).

    Args:
        root (str): dataset root; list-file paths are relative to it.
        split ('train' | 'val'): subdirectory for the by-directory layout.
        list_file (str): a ``path label`` list; when given, the directory layout is not used.
        on_bad_sample ('error' | 'skip'): see :mod:`chainer_yolo_dist.datasets.validation`.
            Checked at construction: missing file, unreadable image, label out of range,
            malformed list line.
        n_class (int): number of classes; defaults to the number of wnid directories, or
            1000 with a list file.
        image_check ('decode' | 'header' | 'none'): 'decode' decodes every image now (JPEGs
            at 1/8 scale, about 0.1-1 ms each); 'header' reads each image's header only (about
            13 us a JPEG), and an image that is unreadable past its header raises
            :class:`~chainer_yolo_dist.datasets.validation.BadSampleError` when it is read;
            'none' opens no image now (a missing or unreadable one raises when it is read).
            Files the start-up checks covered
            (:func:`~chainer_yolo_dist.datasets.image_checks.check_images_across_ranks`) are
            not opened again.
        check_images (bool): the former switch, if given: True is 'decode', False 'header'.
    """

    def __init__(self, root, split='train', list_file=None, on_bad_sample='error',
                 n_class=None, image_check='decode', check_images=None):
        super(ImageNetDataset, self).__init__()
        image_check = image_checks.image_check_mode(image_check, check_images)
        self.root, self.split = root, split
        self.report = V.BadSampleReport(on_bad_sample)
        if list_file is None:
            wnids, table, labels = _directory_entries(root, split)
            self.n_class = len(wnids) if n_class is None else int(n_class)
            self.class_names = wnids
        else:
            table, labels = _list_entries(list_file, self.report)
            self.n_class = IMAGENET_N_CLASS if n_class is None else int(n_class)
            self.class_names = tuple(str(i) for i in range(self.n_class))
        paths = RootedPaths(root, table)
        label_ok = (labels >= 0) & (labels < self.n_class)
        if image_check == 'none':
            status, problems = np.zeros(len(table), np.int8), {}
        else:
            status, problems = image_checks.file_status(paths, image_check == 'decode',
                                                        label_ok)
        # Problems in file order, a label's before its image's (an entry with a bad label is
        # not opened), as the policy reports them.
        for i in np.flatnonzero(~label_ok | (status != 0)):
            if not label_ok[i]:
                V.check_label(self.report, paths[i], int(labels[i]), self.n_class)
            else:
                self.report.record(problems[i][0], paths[i], problems[i][1])
        keep = label_ok & (status == 0)
        self.report.n_checked += len(table)
        self.report.n_kept = int(keep.sum())
        self._paths = table if keep.all() else table.select(keep)
        self._labels = labels[keep].astype(np.int32)
        self.add_getter(('img', 'label'), self._get)

    def __len__(self):
        return len(self._labels)

    def _get(self, i):
        return V.read_image(os.path.join(self.root, self._paths[i])), self._labels[i]
