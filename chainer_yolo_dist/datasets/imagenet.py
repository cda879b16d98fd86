"""ImageNet-style classification data from disk (never downloaded), with the bad-input policy.

Two usual layouts:

* by directory: ``root/<split>/<wnid>/*.JPEG``; the class index is the position of ``wnid`` in the
  sorted list of ``root/train``'s subdirectories (so train and val agree), or of
  ``root/<split>``'s when there is no ``root/train``;
* a list file of ``path label`` lines, ``path`` relative to ``root``, as ChainerMN's ImageNet
  example feeds ``chainer.datasets.LabeledImageDataset``.
"""
import os

import numpy as np

from chainercv.chainer_experimental.datasets.sliceable import GetterDataset

from chainer_yolo_dist.datasets import validation as V

IMAGE_EXTENSIONS = ('.jpeg', '.jpg', '.png')
IMAGENET_N_CLASS = 1000


def _subdirs(path):
    return sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))


def _directory_entries(root, split):
    """``(wnids, [(relative path, label)])`` for the by-directory layout."""
    split_dir = os.path.join(root, split)
    if not os.path.isdir(split_dir):
        raise FileNotFoundError('%s: no such directory (expected %s/<wnid>/*.JPEG; '
                                'this project never downloads ImageNet)' % (split_dir, split_dir))
    train_dir = os.path.join(root, 'train')
    wnids = _subdirs(train_dir if os.path.isdir(train_dir) else split_dir)
    index = {w: i for i, w in enumerate(wnids)}
    entries = []
    for wnid in _subdirs(split_dir):
        for name in sorted(os.listdir(os.path.join(split_dir, wnid))):
            if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                # A wnid unknown to the class list gets label -1 so validation reports it.
                entries.append((os.path.join(split, wnid, name), index.get(wnid, -1)))
    return tuple(wnids), entries


def _list_entries(list_file, report):
    """``[(relative path, label)]`` from a ``path label`` list; malformed lines are recorded."""
    if not os.path.isfile(list_file):
        raise FileNotFoundError('%s: list file not found' % list_file)
    entries = []
    with open(list_file) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            fields = line.split()
            try:
                if len(fields) != 2:
                    raise ValueError('expected "path label", got %d fields' % len(fields))
                entries.append((fields[0], int(fields[1])))
            except ValueError as e:
                report.n_checked += 1
                report.record(V.MALFORMED_ENTRY, '%s:%d' % (list_file, n), str(e))
    return entries


def image_files(root, split='train', list_file=None):
    """The image paths an :class:`ImageNetDataset` of these arguments reads (for checking
    them across ranks before it is built); ``[]`` where the layout is missing (the dataset
    then names what is missing)."""
    try:
        if list_file is None:
            entries = _directory_entries(root, split)[1]
        else:
            entries = _list_entries(list_file, V.BadSampleReport('skip'))
    except FileNotFoundError:
        return []
    return [os.path.join(root, rel) for rel, _ in entries]


class ImageNetDataset(GetterDataset):
    """ImageNet classification samples (sliceable): ``ds[i] -> (img, label)``.

    img float32 ``(3, H, W)`` RGB [0, 255]; label int32 scalar in ``[0, n_class)``.

    Args:
        root (str): dataset root; list-file paths are relative to it.
        split ('train' | 'val'): subdirectory for the by-directory layout.
        list_file (str): a ``path label`` list; when given, the directory layout is not used.
        on_bad_sample ('error' | 'skip'): see :mod:`chainer_yolo_dist.datasets.validation`.
            Checked at construction: missing file, unreadable image (if ``check_images``),
            label out of range, malformed list line.
        n_class (int): number of classes; defaults to the number of wnid directories, or
            1000 with a list file.
        check_images (bool): decode every image now (JPEGs at 1/8 scale, about 0.1-1 ms each).
            For the full 1.28M-image set consider False: then an unreadable image raises
            :class:`~chainer_yolo_dist.datasets.validation.BadSampleError` when it is read.
    """

    def __init__(self, root, split='train', list_file=None, on_bad_sample='error',
                 n_class=None, check_images=True):
        super(ImageNetDataset, self).__init__()
        self.root, self.split = root, split
        self.report = V.BadSampleReport(on_bad_sample)
        if list_file is None:
            wnids, entries = _directory_entries(root, split)
            self.n_class = len(wnids) if n_class is None else int(n_class)
            self.class_names = wnids
        else:
            entries = _list_entries(list_file, self.report)
            self.n_class = IMAGENET_N_CLASS if n_class is None else int(n_class)
            self.class_names = tuple(str(i) for i in range(self.n_class))
        self._pairs = []
        for rel, label in entries:
            self.report.n_checked += 1
            path = os.path.join(root, rel)
            if not V.check_label(self.report, path, label, self.n_class):
                continue
            if V.check_image(self.report, path, decode=check_images) is None:
                continue
            self._pairs.append((path, np.int32(label)))
        self.report.n_kept = len(self._pairs)
        self.add_getter(('img', 'label'), self._get)

    def __len__(self):
        return len(self._pairs)

    def _get(self, i):
        path, label = self._pairs[i]
        return V.read_image(path), label
