"""Paper-shaped data on disk for the rehearsal: a VOCdevkit and an ImageNet layout with the
papers' counts, small enough to create in a minute or two and to keep on a laptop's disk.

VOCdevkit (papers 000 and 001: train on VOC2007 + VOC2012 trainval, test on VOC2007 test):
VOC2007 trainval 5,011 images, VOC2012 trainval 11,540, VOC2007 test 4,952, each with a real
VOC XML annotation and a JPEG path of its own: a hard link to one of a pool of real JPEGs
(``VOCdevkit/pool/``), so that the disk holds about 90 MB, mostly the XML files' blocks. Sizes are
VOC's: the long side 500 pixels for nine images in ten, the other side 56-90 % of it, landscape
seven times in ten. The pixels are smooth colour fields with a few rectangles, saved at JPEG
quality 75: about 5-10 KB a file where VOC's own average about 100 KB, so a decode here is cheaper
than on the real data (the loader benchmark, ``docs/loader.md``, measures files of VOC's size).
Objects per image follow a geometric law of mean 2.4 (VOC2007+2012 trainval: 40,058 objects on
16,551 images, 2.4 each; most images hold one or two, a few over twenty), capped at 42; one object
in six is ``difficult`` (a reading: VOC2007 marks roughly that share); class names are VOC's 20,
drawn uniformly (VOC's own are dominated by ``person``; the class mix does not change start-up or
memory).

ImageNet (paper 001 sec. 4.1: ILSVRC2012, 1,281,167 training images in 1,000 classes, 50,000
validation images): the by-directory layout ``train/<wnid>/<wnid>_<i>.JPEG`` and
``val/<wnid>/ILSVRC2012_val_<i>.JPEG`` plus the list files ``train.txt`` / ``val.txt`` of
``path label`` lines that :class:`~chainer_yolo_dist.datasets.ImageNetDataset` reads. Every
entry is its own path (the image-check cache, the datasets and their broadcast see 1,331,167
distinct files, as on the real data), but a hard link to one of a pool of real JPEGs, so the
disk holds the pool and the directory entries only. 966 classes hold 1,300 training images and
34 hold 746-747, so that the total is ILSVRC2012's exactly (its classes hold 732-1,300);
validation has 50 per class, as ILSVRC2012's. Creating the 1.33M links takes about a minute
(measured: ``docs/rehearsal.md``); 1.33M files of their own would take the same time plus
some 7 GB.
"""
import os
import time
from multiprocessing import Pool

import cv2
import numpy as np

from chainercv.datasets import voc_bbox_label_names

#: The papers' VOC splits and their sizes: (VOC year, image set) -> images.
VOC_SPLITS = {('2007', 'trainval'): 5011, ('2012', 'trainval'): 11540, ('2007', 'test'): 4952}
#: ILSVRC2012 (paper 001 sec. 4.1).
IMAGENET_TRAIN, IMAGENET_VAL, IMAGENET_CLASSES = 1281167, 50000, 1000
#: Objects per VOC image: mean and the largest count drawn (VOC2007 has an image with 42).
MEAN_OBJECTS, MAX_OBJECTS = 2.4, 42
DIFFICULT_SHARE = 1 / 6.
JPEG_QUALITY = 75


def image_shape(rng):
    """``(H, W)`` of one VOC- or ImageNet-like image: long side 500 nine times in ten (else
    200-500), the short side 56-90 % of it, landscape seven times in ten."""
    long_side = 500 if rng.rand() < 0.9 else int(rng.randint(200, 501))
    short_side = int(round(long_side * rng.uniform(0.56, 0.9)))
    return (short_side, long_side) if rng.rand() < 0.7 else (long_side, short_side)


def jpeg_bytes(shape, rng):
    """A real, decodable JPEG of ``shape`` (H, W): a smooth colour field (a 3x3 random image
    enlarged bicubically) with a few filled rectangles, at quality :data:`JPEG_QUALITY`."""
    height, width = shape
    field = cv2.resize(rng.randint(0, 256, (3, 3, 3)).astype(np.uint8), (width, height),
                       interpolation=cv2.INTER_CUBIC)
    for _ in range(rng.randint(1, 5)):
        y0, x0 = rng.randint(0, height - 1), rng.randint(0, width - 1)
        y1, x1 = rng.randint(y0 + 1, height + 1), rng.randint(x0 + 1, width + 1)
        field[y0:y1, x0:x1] = rng.randint(0, 256, 3)
    ok, encoded = cv2.imencode('.jpg', field, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError('OpenCV could not encode a %dx%d JPEG' % (width, height))
    return encoded.tobytes()


def image_pool(n, seed):
    """``n`` JPEGs as ``[(bytes, (H, W))]`` of :func:`image_shape` sizes."""
    rng = np.random.RandomState(seed)
    pool = []
    for _ in range(n):
        shape = image_shape(rng)
        pool.append((jpeg_bytes(shape, rng), shape))
    return pool


def write_pool(directory, pool):
    """Writes the JPEGs of :func:`image_pool` as ``directory/<k>.JPEG``; returns
    ``[(path, (H, W))]``."""
    os.makedirs(directory, exist_ok=True)
    out = []
    for k, (blob, shape) in enumerate(pool):
        out.append((os.path.join(directory, '%06d.JPEG' % k), shape))
        with open(out[-1][0], 'wb') as f:
            f.write(blob)
    return out


def n_objects(rng):
    """Objects in one image: geometric with mean :data:`MEAN_OBJECTS`, at most
    :data:`MAX_OBJECTS`."""
    return int(min(rng.geometric(1 / MEAN_OBJECTS), MAX_OBJECTS))


def random_objects(shape, rng):
    """``[(class name, difficult, (xmin, ymin, xmax, ymax))]`` in VOC's 1-based inclusive
    pixel coordinates (``1 <= xmin < xmax <= W``), boxes of 5-90 % of each side."""
    height, width = shape
    objects = []
    for _ in range(n_objects(rng)):
        box_h = max(2, int(height * rng.uniform(0.05, 0.9)))
        box_w = max(2, int(width * rng.uniform(0.05, 0.9)))
        ymin, xmin = rng.randint(1, height - box_h + 2), rng.randint(1, width - box_w + 2)
        objects.append((voc_bbox_label_names[rng.randint(len(voc_bbox_label_names))],
                        rng.rand() < DIFFICULT_SHARE,
                        (xmin, ymin, xmin + box_w - 1, ymin + box_h - 1)))
    return objects


_OBJECT_XML = """  <object>
    <name>%s</name>
    <pose>Unspecified</pose>
    <truncated>0</truncated>
    <difficult>%d</difficult>
    <bndbox>
      <xmin>%d</xmin>
      <ymin>%d</ymin>
      <xmax>%d</xmax>
      <ymax>%d</ymax>
    </bndbox>
  </object>
"""


def voc_xml(folder, filename, shape, objects):
    """A VOC annotation file's text, in VOC's own element order."""
    head = ('<annotation>\n  <folder>%s</folder>\n  <filename>%s</filename>\n'
            '  <source>\n    <database>rehearsal (generated)</database>\n  </source>\n'
            '  <size>\n    <width>%d</width>\n    <height>%d</height>\n    <depth>3</depth>\n'
            '  </size>\n  <segmented>0</segmented>\n' % (folder, filename, shape[1], shape[0]))
    return head + ''.join(_OBJECT_XML % ((name, int(difficult)) + tuple(box))
                          for name, difficult, box in objects) + '</annotation>\n'


def voc_ids(year, split_sizes, rng):
    """``{split: [image id]}`` of one VOC year: VOC2007's ids ``000001``... shared out at
    random between its splits (as VOC2007's trainval and test interleave), VOC2012's
    ``2008_000001``... spread over the years 2008-2011."""
    total = sum(split_sizes.values())
    if year == '2007':
        ids = ['%06d' % (i + 1) for i in rng.permutation(total)]
    else:
        ids = ['%d_%06d' % (2008 + i % 4, i // 4 + 1) for i in range(total)]
    out, start = {}, 0
    for split, n in sorted(split_sizes.items()):
        out[split] = sorted(ids[start:start + n])
        start += n
    return out


def build_voc(devkit, splits=None, pool_size=256, seed=0):
    """Writes a VOCdevkit at ``devkit``: ``VOC<year>/{JPEGImages,Annotations,ImageSets/Main}``.

    Args:
        splits (dict): ``(year, image set) -> images``; default :data:`VOC_SPLITS`.
        pool_size (int): distinct JPEGs (in ``devkit/pool``); every image is a hard link to
            one of them.
    Returns:
        dict: images and objects (difficult ones apart) per split.
    """
    splits = dict(VOC_SPLITS if splits is None else splits)
    rng = np.random.RandomState(seed)
    pool = write_pool(os.path.join(devkit, 'pool'), image_pool(pool_size, seed))
    counts = {}
    for year in sorted({y for y, _ in splits}):
        base = os.path.join(devkit, 'VOC' + year)
        for sub in ('JPEGImages', 'Annotations', os.path.join('ImageSets', 'Main')):
            os.makedirs(os.path.join(base, sub), exist_ok=True)
        sizes = {s: n for (y, s), n in splits.items() if y == year}
        for split, ids in voc_ids(year, sizes, rng).items():
            n_obj = n_difficult = 0
            for id_ in ids:
                pool_path, shape = pool[rng.randint(len(pool))]
                objects = random_objects(shape, rng)
                n_obj += len(objects)
                n_difficult += sum(d for _, d, _ in objects)
                os.link(pool_path, os.path.join(base, 'JPEGImages', id_ + '.jpg'))
                with open(os.path.join(base, 'Annotations', id_ + '.xml'), 'w') as f:
                    f.write(voc_xml('VOC' + year, id_ + '.jpg', shape, objects))
            with open(os.path.join(base, 'ImageSets', 'Main', split + '.txt'), 'w') as f:
                f.write(''.join(id_ + '\n' for id_ in ids))
            counts['VOC%s %s' % (year, split)] = {'images': len(ids), 'objects': n_obj,
                                                  'difficult': n_difficult}
    return counts


def class_counts(n_total, n_class, most=1300):
    """Training images per class: ``most`` in as many classes as possible, the rest spread
    evenly over the fewest classes that absorb the difference (sums to ``n_total``)."""
    if n_total > most * n_class:
        raise ValueError('%d images do not fit %d classes of at most %d'
                         % (n_total, n_class, most))
    counts = np.full(n_class, most, np.int64)
    deficit = most * n_class - n_total
    if deficit:
        # The fewest classes that absorb the deficit while each keeps more than 732 / 1,300
        # of `most` (ILSVRC2012's smallest class holds 732 images, its largest 1,300).
        n_short = min(n_class, -(-deficit // (most - -(-most * 732 // 1300))))
        cut, extra = divmod(deficit, n_short)
        counts[n_class - n_short:] -= cut
        counts[n_class - extra:] -= 1
    return counts


def wnids(n_class):
    """WordNet-like class directory names, sorted as ImageNet's (``n00000001``...)."""
    return ['n%08d' % (i + 1) for i in range(n_class)]


def _link_class(task):
    """Hard links of one class (one pool file per entry); returns the list-file lines."""
    root, split, wnid, label, names, pool_paths, offset = task
    directory = os.path.join(root, split, wnid)
    os.makedirs(directory, exist_ok=True)
    lines = []
    for i, name in enumerate(names):
        rel = os.path.join(split, wnid, name)
        os.link(pool_paths[(offset + i * 7) % len(pool_paths)], os.path.join(root, rel))
        lines.append('%s %d\n' % (rel, label))
    return ''.join(lines)


def build_imagenet(root, n_train=IMAGENET_TRAIN, n_val=IMAGENET_VAL, n_class=IMAGENET_CLASSES,
                   pool_size=1000, seed=0, workers=None):
    """Writes the ImageNet layout at ``root`` (see the module's docstring) with ``workers``
    processes creating the links (default: one per CPU). ``n_val`` must be a multiple of
    ``n_class``.

    Returns:
        dict: ``train`` / ``val`` entries, ``classes``, ``pool`` (distinct files) and the list
        files' paths ``train_list`` / ``val_list``.
    """
    if n_val % n_class:
        raise ValueError('n_val %d is not a multiple of n_class %d' % (n_val, n_class))
    pool_paths = [path for path, _ in write_pool(os.path.join(root, 'pool'),
                                                 image_pool(pool_size, seed + 1))]
    names = wnids(n_class)
    per_class = class_counts(n_train, n_class)
    tasks = [(root, 'train', w, c, ['%s_%d.JPEG' % (w, i + 1) for i in range(per_class[c])],
              pool_paths, c) for c, w in enumerate(names)]
    per_val, image = n_val // n_class, 0
    for c, w in enumerate(names):
        tasks.append((root, 'val', w, c, ['ILSVRC2012_val_%08d.JPEG' % (image + i + 1)
                                          for i in range(per_val)], pool_paths, c + 3))
        image += per_val
    with Pool(workers or os.cpu_count() or 1) as pool:
        lines = pool.map(_link_class, tasks, chunksize=8)
        # Ended by their queue, not by the SIGTERM of Pool.terminate, which the workers of a
        # training process's forkserver ignore (core.mpi.start_forkserver).
        pool.close()
        pool.join()
    lists = {}
    for split, chunk in (('train', lines[:n_class]), ('val', lines[n_class:])):
        lists[split] = os.path.join(root, split + '.txt')
        with open(lists[split], 'w') as f:
            f.writelines(chunk)
    return {'train': int(per_class.sum()), 'val': n_val, 'classes': n_class,
            'pool': pool_size, 'train_list': lists['train'], 'val_list': lists['val']}


def build_one_image(root, kind, ranks=1, seed=0):
    """The smallest dataset of the same kind, for the network's own training footprint:
    ``kind='voc'``, one image in each of VOC2007 trainval, VOC2012 trainval and VOC2007 test;
    ``kind='imagenet'``, one training entry and ``ranks`` validation entries (list files; the
    classifier's evaluation needs one per rank). Returns the builder's counts."""
    if kind == 'voc':
        return build_voc(root, {split: 1 for split in VOC_SPLITS}, pool_size=1, seed=seed)
    return build_imagenet(root, n_train=1, n_val=ranks, n_class=1, pool_size=1, seed=seed,
                          workers=1)


def disk_bytes(path):
    """Bytes the files under ``path`` take on disk, each inode once (hard links share one)."""
    seen, total = set(), 0
    for directory, _, files in os.walk(path):
        for name in files:
            st = os.lstat(os.path.join(directory, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def timed(build, *args, **kwargs):
    """``(result, seconds)`` of ``build(*args, **kwargs)``."""
    start = time.time()
    result = build(*args, **kwargs)
    return result, time.time() - start
