"""Loader throughput on one core: JPEG decode + augmentation, images per second.

A training loader worker does, per image, a JPEG decode and the augmentation; one such worker
is a single-threaded process on one core. :func:`run` measures that on VOC-shaped data:
500x375 JPEGs (VOC's commonest size) drawn by the synthetic shapes generator into a temporary
directory, for

- detection, :class:`~chainer_yolo_dist.detection.transforms.YOLOAugmentation` at 416 and 608;
- classification, :class:`~chainer_yolo_dist.classification.transforms.DarknetAugmentation` at 224
  (ImageNet's images are of the same order of size: about 400x350 on average).

Each image is decoded with three readers: ``chainercv.utils.read_image`` (its OpenCV backend),
:func:`read_rgb_chw` (the same pixels as a C-contiguous ``(3, H, W)`` array, without ChainerCV's
strided float conversion) and the datasets' own reader
(:func:`chainer_yolo_dist.datasets.validation.read_image`: a check that a JPEG reaches its
end-of-image marker, so that truncated files are refused, then OpenCV's decode, returned as a
``(3, H, W)`` view of interleaved memory). The augmentation is timed once per image, on the
datasets' reader's output, as in training, and each reader's rate adds that time to its
decode. The augmentations take an interleaved view without a copy
(:func:`chainer_yolo_dist.datasets.imageops.hwc`); ChainerCV's output is one too (its float
conversion keeps the strided layout), while :func:`read_rgb_chw`'s planes are interleaved first,
about 0.1 ms per 500x375 image that its rate leaves out.

Time is taken both as process CPU time, which is what one core delivers whatever else the machine
runs, and as wall-clock time, which on a shared machine includes waiting for a core; the record
keeps both with the load average before and after.

Workers per GPU: one worker process per core at the measured CPU-time rate, so feeding ``R``
images/s takes ``ceil(R / rate)`` cores. This assumes the workers scale linearly (no shared
bottleneck: storage, memory bandwidth) and leaves out the main process's batching and
host-to-device copy.
"""
import math
import os
import platform
import sys
import tempfile
import time

import cv2
import numpy as np

from chainer_yolo_dist.classification.transforms import DarknetAugmentation
from chainer_yolo_dist.core import atomic
from chainer_yolo_dist.datasets.synthetic import draw_detection_image
from chainer_yolo_dist.datasets.validation import read_image
from chainer_yolo_dist.detection.transforms import YOLOAugmentation, clip_and_filter_bbox

#: (name, task, output side) of the measured cases.
CASES = (('detection_416', 'detection', 416),
         ('detection_608', 'detection', 608),
         ('classification_224', 'classification', 224))
#: Images/s per core that a case must reach (issue 11's targets).
TARGETS = {'detection_608': 100.0, 'classification_224': 300.0}
#: Per-GPU input rates (images/s) to size the worker count for.
FEED_RATES = (200.0, 1000.0)
#: VOC's commonest image size (height, width).
VOC_SHAPE = (375, 500)
#: JPEG quality of the generated images. Decoding time grows with the file's size, and at 97
#: the synthetic 500x375 scenes take about 100 KB, the mean size of VOC's JPEGs (VOC2007
#: trainval's archive holds 5,011 images in 460 MB, VOC2012's 17,125 in 2.0 GB). At the usual
#: quality of 90 they take about 44 KB and decode about a third faster.
QUALITY = 97


def read_rgb_chw(path):
    """Decodes an image file to float32 ``(3, H, W)`` RGB in [0, 255], as ChainerCV would.

    The pixels equal ``chainercv.utils.read_image(path, color=True)``'s with either of its
    backends (both use libjpeg-turbo), but the EXIF orientation tag is ignored, as the PIL
    backend ignores it (VOC's boxes refer to the stored pixel grid), and the BGR to RGB planar
    float conversion goes plane by plane instead of through a strided view (1.8 ms saved per
    500x375 image on the machine of ``docs/loader.md``).

    Raises ValueError naming the file when it cannot be decoded.
    """
    bgr = cv2.imread(path, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if bgr is None:
        raise ValueError('%s: cannot be decoded as an image (missing, truncated or not an '
                         'image file)' % path)
    out = np.empty((3,) + bgr.shape[:2], np.float32)
    blue, green, red = cv2.split(bgr)
    out[0], out[1], out[2] = red, green, blue
    return out


def read_chainercv(path):
    """``chainercv.utils.read_image(path, color=True)``, ChainerCV's default (OpenCV) backend."""
    from chainercv.utils import read_image
    return read_image(path, color=True)


#: (name, reader). ``datasets`` is what the VOC and ImageNet datasets call
#: (:func:`chainer_yolo_dist.datasets.validation.read_image`); it comes last, so the
#: augmentation is timed on its output, an interleaved ``(3, H, W)`` view, as in training.
READERS = (('chainercv', read_chainercv), ('opencv_planar', read_rgb_chw),
           ('datasets', read_image))


def write_jpegs(directory, n_images, shape=VOC_SHAPE, seed=0, quality=QUALITY):
    """Writes ``n_images`` synthetic scenes as JPEGs of ``shape = (H, W)`` into ``directory``.

    Each is a synthetic shapes image drawn at side ``max(shape)`` and cut to ``shape`` (boxes
    clipped, those left under a pixel dropped). Returns a list of ``(path, bbox, label)``:
    bbox float32 ``(R, 4)`` ``(y_min, x_min, y_max, x_max)``, label int32 ``(R,)``.
    """
    H, W = shape
    examples = []
    for i in range(n_images):
        img, bbox, label = draw_detection_image(np.random.default_rng([seed, i]), max(H, W))
        img = img[:, :H, :W]
        bbox, label = clip_and_filter_bbox(bbox, label, (H, W))
        path = os.path.join(directory, '%06d.jpg' % i)
        bgr = np.ascontiguousarray(img[::-1].transpose(1, 2, 0)).round().astype(np.uint8)
        if not cv2.imwrite(path, bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)]):
            raise OSError('%s: cannot be written' % path)
        examples.append((path, bbox, label))
    return examples


def make_augmentation(task, size):
    """The training augmentation of ``task`` at output side ``size``, paper defaults."""
    if task == 'detection':
        return YOLOAugmentation(size)
    if task == 'classification':
        return DarknetAugmentation(size)
    raise ValueError('unknown task %r' % (task,))


def _clock():
    return time.process_time(), time.perf_counter()


def time_case(task, size, examples, repeat=1, seed=0):
    """Decode + augment every example ``repeat`` times; returns seconds per image.

    Each decode is timed for every reader in :data:`READERS`; the augmentation runs on the
    last reader's output (all readers give the same pixels, in different memory layouts).
    Returns a dict: ``decode_cpu_s`` / ``decode_wall_s`` {reader: s per image}, ``augment_cpu_s``,
    ``augment_wall_s`` (s per image) and ``n`` (images timed).
    """
    aug = make_augmentation(task, size)
    rng = np.random.RandomState(seed)
    # One untimed pass over a few images: imports, first-call set-up, scratch arrays.
    for path, bbox, label in examples[:2]:
        img = READERS[-1][1](path)
        aug((img, bbox, label) if task == 'detection' else (img, np.int32(0)), rng)
    decode_cpu = dict.fromkeys((name for name, _ in READERS), 0.0)
    decode_wall = dict(decode_cpu)
    augment_cpu = augment_wall = 0.0
    n = 0
    for _ in range(repeat):
        for path, bbox, label in examples:
            for name, reader in READERS:
                c0, w0 = _clock()
                img = reader(path)
                c1, w1 = _clock()
                decode_cpu[name] += c1 - c0
                decode_wall[name] += w1 - w0
            example = (img, bbox, label) if task == 'detection' else (img, np.int32(0))
            c0, w0 = _clock()
            aug(example, rng)
            c1, w1 = _clock()
            augment_cpu += c1 - c0
            augment_wall += w1 - w0
            n += 1
    return {'n': n,
            'decode_cpu_s': {k: v / n for k, v in decode_cpu.items()},
            'decode_wall_s': {k: v / n for k, v in decode_wall.items()},
            'augment_cpu_s': augment_cpu / n, 'augment_wall_s': augment_wall / n}


def summarise(name, timing):
    """Images/s per core and workers per GPU of one case, for each reader."""
    out = {'n_images_timed': timing['n'],
           'augment_ms': round(timing['augment_cpu_s'] * 1e3, 3),
           'augment_wall_ms': round(timing['augment_wall_s'] * 1e3, 3),
           'target_images_per_s_per_core': TARGETS.get(name),
           'readers': {}}
    for reader, decode in timing['decode_cpu_s'].items():
        per_image = decode + timing['augment_cpu_s']
        wall = timing['decode_wall_s'][reader] + timing['augment_wall_s']
        rate = 1.0 / per_image
        entry = {'decode_ms': round(decode * 1e3, 3),
                 'decode_wall_ms': round(timing['decode_wall_s'][reader] * 1e3, 3),
                 'images_per_s_per_core': round(rate, 1),
                 'images_per_s_wall': round(1.0 / wall, 1),
                 'workers_per_gpu': {'%d' % r: int(math.ceil(r / rate)) for r in FEED_RATES}}
        if name in TARGETS:
            entry['meets_target'] = bool(rate >= TARGETS[name])
        out['readers'][reader] = entry
    return out


def cpu_model():
    """The processor's model name, for the record of a benchmark."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown'


def environment():
    """What the numbers depend on: machine, load, thread settings, library versions."""
    import chainer
    import chainercv
    return {'cpu': cpu_model(), 'cpu_count': os.cpu_count(),
            'python': platform.python_version(), 'numpy': np.__version__,
            'opencv': cv2.__version__, 'chainer': chainer.__version__,
            'chainercv': chainercv.__version__,
            'opencv_threads': cv2.getNumThreads(),
            'OMP_NUM_THREADS': os.environ.get('OMP_NUM_THREADS'),
            'niceness': os.nice(0),
            'affinity': sorted(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity')
            else None}


def run(n_images=48, repeat=3, seed=0, quality=QUALITY, cases=CASES, workdir=None):
    """Generates the JPEGs, times every case and returns the record (a JSON-able dict)."""
    load_before = os.getloadavg()
    started = time.time()
    with tempfile.TemporaryDirectory(prefix='bench_loader_', dir=workdir) as tmp:
        examples = write_jpegs(tmp, n_images, seed=seed, quality=quality)
        jpeg_bytes = sum(os.path.getsize(path) for path, _, _ in examples) / len(examples)
        results = {}
        for name, task, size in cases:
            results[name] = dict(summarise(name, time_case(task, size, examples, repeat, seed)),
                                 task=task, size=size)
    return {'what': 'JPEG decode + augmentation on one core, images/s (CPU time), '
                    'and workers per GPU for the given input rates',
            'images': {'n': n_images, 'shape_hw': list(VOC_SHAPE), 'jpeg_quality': quality,
                       'mean_jpeg_bytes': round(jpeg_bytes),
                       'source': 'chainer_yolo_dist.datasets.synthetic.draw_detection_image'},
            'repeat': repeat, 'seed': seed,
            'feed_rates_images_per_s': list(FEED_RATES),
            'cases': results,
            'load_average_before': [round(x, 2) for x in load_before],
            'load_average_after': [round(x, 2) for x in os.getloadavg()],
            'seconds': round(time.time() - started, 1),
            'environment': environment(),
            'command': ' '.join([os.path.basename(sys.argv[0])] + sys.argv[1:])}


def write_json(record, path):
    """Writes ``record`` to ``path``, atomically."""
    atomic.write_json(path, record)


def plot(record, path):
    """Bar chart: images/s per core per case and reader, targets, and workers per GPU."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    names = [name for name, _, _ in CASES if name in record['cases']]  # JSON sorts its keys
    readers = [name for name, _ in READERS]
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    width = 0.8 / len(readers)
    for j, reader in enumerate(readers):
        rates = [record['cases'][n]['readers'][reader]['images_per_s_per_core'] for n in names]
        xs = [i + (j - (len(readers) - 1) / 2.0) * width for i in range(len(names))]
        bars = ax.bar(xs, rates, width, label='decode: %s' % reader)
        for bar, n in zip(bars, names):
            workers = record['cases'][n]['readers'][reader]['workers_per_gpu']
            ax.annotate('%s / %s' % (workers['200'], workers['1000']),
                        (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha='center', va='bottom', fontsize=7)
    augment_only = [1e3 / record['cases'][n]['augment_ms'] for n in names]
    ax.plot(range(len(names)), augment_only, 'kx', label='augmentation alone')
    labelled = False
    for i, n in enumerate(names):
        target = record['cases'][n]['target_images_per_s_per_core']
        if target:
            ax.hlines(target, i - 0.45, i + 0.45, colors='k', linestyles='--',
                      label=None if labelled else 'target')
            labelled = True
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([n.replace('_', ' ') for n in names])
    ax.set_ylabel('images/s per core (CPU time)')
    ax.set_title('Decode + augment on one thread; bar labels: workers per GPU for 200 / 1000 '
                 'images/s\nload average %.1f on %d cores (1 min, before the run)'
                 % (record['load_average_before'][0], record['environment']['cpu_count']),
                 fontsize=8)
    ax.set_ylim(0, 1.2 * max(augment_only + [t for t in TARGETS.values()]))
    ax.legend(fontsize=7, loc='upper left')
    fig.tight_layout()
    atomic.save_figure(fig, path, dpi=100)
    plt.close(fig)


def default_out_dir(root='runs/bench'):
    """A new ``runs/bench/loader-<UTC time>`` directory name."""
    from chainer_yolo_dist.core.rundir import timestamped
    return timestamped(root, 'loader')


def write_outputs(record, out_dir):
    """Writes ``loader.json`` and ``loader.png`` into ``out_dir``; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    json_path = os.path.join(out_dir, 'loader.json')
    png_path = os.path.join(out_dir, 'loader.png')
    write_json(record, json_path)
    plot(record, png_path)
    return json_path, png_path
