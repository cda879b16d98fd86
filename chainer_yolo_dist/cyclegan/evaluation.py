"""What a CycleGAN run measures and shows while it trains: Frechet distances and sample grids.

- :func:`translate`: a generator applied to a stack of images, in test mode, in batches.
- :class:`FrechetExtension` (every rank, collective): the Frechet distance (paper 002 eq. 1)
  between the features of ``gen_ab(A_test)`` and of ``B_test``, reported as ``fid`` with the
  fractional epoch of the measurement as ``fid/epoch``, and drawn against epoch into ``fid.png``
  by rank 0 (paper 002 Fig. 6's form for one run). The held-out images are split over the
  ranks in whole batches (:func:`shard`): each rank translates and extracts features of its
  share on its own device, rank 0 gathers the features as host NumPy arrays and computes the
  distance, which every rank then holds. The batches are those one process computes, so the
  distance is the one-process number. With Inception-v3 and converted weights
  (``fid_weights``) it is the FID of the literature; with the default extractor
  (:mod:`~chainer_yolo_dist.cyclegan.features`) it is a distance comparable only with others of
  the same extractor (the name ``fid`` in the log is kept for the curve's role).
- :class:`SampleGrid` (rank 0): ``samples/iter_<N>.png``, rows A, A->B, A->B->A of the same
  test images.
"""
import json
import math
import os

import chainer
import numpy as np

from chainer_yolo_dist.core import atomic, finite
from chainer_yolo_dist.cyclegan import fid
from chainer_yolo_dist.cyclegan.data import to_uint8


#: Images per forward pass of a generator in :func:`translate`.
TRANSLATE_BATCHSIZE = 16


def translate(gen, images, batchsize=TRANSLATE_BATCHSIZE):
    """``gen`` applied to ``images`` ``(N, 3, H, W)`` in [-1, 1]; NumPy ``(N, 3, H, W)``."""
    return chainer.backend.CpuDevice().send(_translate(gen, images, batchsize))


def _translate(gen, images, batchsize=TRANSLATE_BATCHSIZE):
    """:func:`translate`, left on ``gen``'s device (a feature extractor there reads it)."""
    out = []
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        for start in range(0, len(images), batchsize):
            out.append(gen(gen.device.send(images[start:start + batchsize])).array)
    if not out:
        return np.zeros((0,) + tuple(images.shape[1:]), np.float32)
    return out[0] if len(out) == 1 else gen.xp.concatenate(out)


def stack(view, n):
    """The first ``n`` images of a single-domain view, ``(n, 3, H, W)`` float32."""
    return stack_range(view, 0, min(n, len(view)))


def stack_range(view, start, stop):
    """Images ``start .. stop - 1`` of a single-domain view (or an array), ``(n, 3, H, W)``
    float32."""
    if stop <= start:
        return np.zeros((0, 3, 0, 0), np.float32)
    return np.stack([view[i] for i in range(start, stop)]).astype(np.float32)


def shard(n, size, rank, unit):
    """This rank's ``(start, stop)`` of ``n`` images split over ``size`` ranks in whole units
    of ``unit`` images, contiguous and in rank order (rank 0 first). Units are never cut, so
    every batch a rank computes is a batch one process computes; ranks beyond the number of
    units get ``(n, n)``, nothing."""
    units = -(-n // unit)
    first, last = units * rank // size, units * (rank + 1) // size
    return min(first * unit, n), min(last * unit, n)


class InceptionFeatures(object):
    """Inception-v3 pool features: ``images`` NumPy or CuPy ``(N, 3, H, W)`` in [-1, 1] ->
    NumPy ``(N, 2048)`` float64, resized to 299 px and computed in batches of ``batchsize`` on
    the network's device (a class rather than a closure: it is broadcast to the ranks)."""

    def __init__(self, net, batchsize=16):
        self.net, self.batchsize = net, int(batchsize)

    def to_device(self, device):
        """Moves the network to ``device`` (e.g. ``'@cupy:0'``); returns self."""
        self.net.to_device(device)
        return self

    def __call__(self, images):
        from chainer_yolo_dist.cyclegan.inception import resize_for_inception
        cpu = chainer.backend.CpuDevice()
        feats = [cpu.send(self.net.features(resize_for_inception(
            self.net.device.send(images[i:i + self.batchsize]))))
            for i in range(0, len(images), self.batchsize)]
        return np.concatenate(feats).astype(np.float64)


def inception_extractor(weights, batchsize=16):
    """Inception-v3 pool features (the FID of the literature, with converted ``weights``)."""
    from chainer_yolo_dist.cyclegan.inception import InceptionV3
    return InceptionFeatures(InceptionV3(weights=weights), batchsize)


#: The default extractor's file in the package's cache folder.
DEFAULT_EXTRACTOR_NAME = 'fid_extractor_default.npz'


def extractor_path(path=None):
    """``path``, or the default extractor's file in the package's cache folder
    (:func:`~chainer_yolo_dist.datasets.image_checks.cache_dir`: ``$CHAINER_YOLO_DIST_CACHE``,
    ``$XDG_CACHE_HOME/chainer_yolo_dist`` or ``~/.cache/chainer_yolo_dist``): one file for
    every run of the user, outside any run folder."""
    from chainer_yolo_dist.datasets.image_checks import cache_dir
    return path or os.path.join(cache_dir(), DEFAULT_EXTRACTOR_NAME)


def default_extractor(path=None, log=print):
    """The download-free default extractor (:func:`features.build_default_extractor`) from
    ``path`` (default :func:`extractor_path`); trained there first (about 2.5 minutes on two
    CPU cores) if the file is absent, written atomically (a second run never reads half a
    file)."""
    from chainer_yolo_dist.cyclegan import features
    path = extractor_path(path)
    if not os.path.isfile(path):
        log('training the default feature extractor into %s (once; reused by later runs)'
            % path)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with atomic.atomic_path(path) as tmp:
            features.train_default_extractor(tmp)
    return features.build_default_extractor(path)


def check_features(features, what, iteration=None):
    """Raises :class:`~chainer_yolo_dist.core.finite.NonFiniteError` naming ``what`` (and
    ``iteration``, if known) if the ``(N, D)`` ``features`` hold NaN or infinity."""
    bad = ~np.isfinite(features).all(axis=1)
    if bad.any():
        at = '' if iteration is None else ' after update %d' % iteration
        cause = ' (gen_ab has diverged)' if what.startswith('gen_ab') else ''
        raise finite.NonFiniteError(
            'Frechet distance%s: the features of %s are not finite for %d of %d images '
            '(first: image %d)%s; refusing to compute the distance'
            % (at, what, int(bad.sum()), len(features), int(np.flatnonzero(bad)[0]), cause))


class FrechetExtension(chainer.training.Extension):
    """Reports ``fid``, the Frechet distance of ``gen_ab(test_a)`` to ``test_b``, and
    ``fid/epoch``, the fractional epoch it was measured at. The log's entries fall every
    ``log_interval`` iterations, not at the measurements, so a curve of FID against epoch
    (paper 002 Fig. 6) takes its x from ``fid/epoch``. With ``plot_path``, every measurement
    redraws the curve there (rank 0).

    With ``comm`` (a ChainerMN communicator) the extension is collective: every rank must
    build it and call it at the same iterations. Each rank reads, translates and extracts only
    its :func:`shard` of the images, in units of the least common multiple of
    :data:`TRANSLATE_BATCHSIZE` and the extractor's ``batchsize``, on its own device (where
    ``gen_ab`` and the extractor are); rank 0 gathers the features (host NumPy, pickled through
    MPI: never device memory), computes the distance and broadcasts it, so the cost of
    translating and extracting falls as 1 / k up to ``n / unit`` ranks. On the CPU the
    distance is bit for bit the one-process number (``comm=None``): the same batches are
    computed, and the features are concatenated in the same order.

    Args:
        gen_ab: the generator A -> B.
        test_a, test_b: single-domain views (``view[i] -> (3, H, W)`` in [-1, 1]) or arrays
            ``(N, 3, H, W)``; the first ``n_images`` of each are used.
        extract: ``images (n, 3, H, W) -> (n, D)`` NumPy features, computed in batches of its
            ``batchsize`` attribute (one batch if it has none); it accepts arrays on
            ``gen_ab``'s device.
        plot_path (str or None): where to draw the curve (``fid.png``).
        title (str): the curve's title.
        comm: the communicator, or None for one process.
        n_images (int or None): images per domain (default: all).
    ``baseline`` is the distance of the untranslated ``test_a`` to ``test_b``: what a
    translation that learnt nothing would score. ``history`` lists ``(epoch, fid)``, kept in
    the trainer's snapshot so that a resumed run's curve starts at epoch 0. Both, and
    ``last``, are the same on every rank.
    """

    priority = chainer.training.PRIORITY_WRITER
    name = 'fid'

    def __init__(self, gen_ab, test_a, test_b, extract, plot_path=None, title='', comm=None,
                 n_images=None):
        self.gen_ab, self.extract, self.comm = gen_ab, extract, comm
        size, rank = (comm.size, comm.rank) if comm is not None else (1, 0)
        self.is_root = rank == 0
        extract_batch = int(getattr(extract, 'batchsize', 0) or 0)
        # Whole batches of both the generator and the extractor: without a batchsize the
        # extractor sees every image at once, so only one share is possible.
        self.unit = (TRANSLATE_BATCHSIZE * extract_batch // math.gcd(TRANSLATE_BATCHSIZE,
                                                                     extract_batch)
                     if extract_batch else None)

        def my_share(view):
            n = len(view) if n_images is None else min(n_images, len(view))
            start, stop = shard(n, size, rank, self.unit or max(n, 1))
            return stack_range(view, start, stop)

        self.share_a = my_share(test_a)
        self._iteration = None  # of the measurement under way, for an error message
        # Rank 0 alone keeps the gathered features of B (fixed for the run).
        self.features_b = self._gathered(self._features(my_share(test_b)))
        features_a = self._gathered(self._features(self.share_a))
        self.baseline = self._distance(features_a, 'the test images of A (untranslated)')
        self.plot_path, self.title = plot_path, title
        self.last = None
        self.history = []

    def _features(self, images):
        """This rank's ``(n, D)`` NumPy features of ``images``, or None for no images."""
        if len(images) == 0:
            return None
        unit = self.unit or len(images)
        # Unit by unit: the extractor's batches are then the one-process batches.
        return np.concatenate([self.extract(images[i:i + unit])
                               for i in range(0, len(images), unit)])

    def _gathered(self, features):
        """Every rank's features in rank order on rank 0 (host NumPy); None elsewhere."""
        parts = [features] if self.comm is None else self.comm.gather_obj(features)
        if not self.is_root:
            return None
        return np.concatenate([f for f in parts if f is not None])

    def _distance(self, gathered_a, what='gen_ab(A)'):
        """The distance of ``gathered_a`` (the features of ``what``) to B's features, computed
        by rank 0 and held by every rank. Non-finite features (a diverged generator's NaN
        fakes) raise :class:`~chainer_yolo_dist.core.finite.NonFiniteError` on one line, which
        ends the run (``core/mpi``), instead of NumPy's ``LinAlgError`` from the covariance."""
        value = None
        if self.is_root:
            check_features(gathered_a, what, self._iteration)
            check_features(self.features_b, 'the test images of B', self._iteration)
            value = fid.frechet_distance_of_features(gathered_a, self.features_b)
        return value if self.comm is None else self.comm.bcast_obj(value)

    def measure(self):
        """The distance now (collective with ``comm``); also kept as ``last``."""
        translated = None
        if len(self.share_a):
            # Unit by unit on the generator's device, the fakes staying there for the
            # extractor: the translation batches are the one-process batches too.
            unit = self.unit or len(self.share_a)
            translated = np.concatenate([
                self.extract(_translate(self.gen_ab, self.share_a[i:i + unit]))
                for i in range(0, len(self.share_a), unit)])
        self.last = self._distance(self._gathered(translated))
        return self.last

    def __call__(self, trainer):
        self._iteration = trainer.updater.iteration
        try:
            value = self.measure()
        finally:
            self._iteration = None
        epoch = float(trainer.updater.epoch_detail)
        self.history.append((epoch, value))
        chainer.reporter.report({'fid': value, 'fid/epoch': epoch})
        if self.plot_path and self.is_root:
            atomic.save_figure(fid_curve_figure(self.history, self.baseline, self.title),
                               self.plot_path)

    def serialize(self, serializer):
        # A JSON string, as Chainer's PlotReport keeps its points: the length varies.
        if isinstance(serializer, chainer.serializer.Serializer):
            serializer('history', json.dumps(self.history))
        else:
            self.history = [tuple(p) for p in json.loads(serializer('history', ''))]


def fid_curve_figure(history, baseline=None, title=''):
    """One run's Frechet distance against epoch (``history``: ``(epoch, fid)`` pairs), with the
    untranslated A's distance ``baseline`` dashed; a Matplotlib ``Figure`` (no pyplot)."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(6, 4), layout='constrained')
    ax = fig.subplots()
    if history:
        x, y = zip(*history)
        ax.plot(x, y, 'o-', color='tab:orange', label='gen_ab(A) against B')
    if baseline is not None:
        ax.axhline(baseline, color='0.4', linestyle='--', linewidth=1,
                   label='untranslated A against B (%.3g)' % baseline)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel('Epoch')
    ax.set_ylabel('Frechet distance')
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.legend(loc='best', fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def grid_image(rows):
    """Rows of ``(n, 3, H, W)`` images in [-1, 1] -> one ``(R*H, n*W, 3)`` uint8 picture."""
    return np.concatenate([np.concatenate([to_uint8(x) for x in row], axis=1) for row in rows])


class SampleGrid(chainer.training.Extension):
    """Writes ``samples/iter_<N>.png``: rows A, A->B, A->B->A of ``images_a``, labelled
    (:func:`sample_sheet_figure`; rank 0 only)."""

    priority = chainer.training.PRIORITY_READER
    name = 'sample_grid'

    def __init__(self, gen_ab, gen_ba, images_a, out):
        self.gen_ab, self.gen_ba, self.images_a = gen_ab, gen_ba, images_a
        self.folder = os.path.join(out, 'samples')

    def __call__(self, trainer):
        fake_b = translate(self.gen_ab, self.images_a)
        back = translate(self.gen_ba, fake_b)
        os.makedirs(self.folder, exist_ok=True)
        iteration = trainer.updater.iteration
        path = os.path.join(self.folder, 'iter_%07d.png' % iteration)
        atomic.save_figure(sample_sheet_figure(
            [self.images_a, fake_b, back], SAMPLE_ROWS,
            'CycleGAN samples after update %d\n(test images of domain A)' % iteration), path)


#: The rows of a sample sheet, top to bottom.
SAMPLE_ROWS = ('A (real)', 'A->B (gen_ab)', 'A->B->A (gen_ba)')


def sample_sheet_figure(rows, labels, title=''):
    """Rows of ``(n, 3, H, W)`` images in [-1, 1] as one picture, each row labelled (y tick
    labels ``labels``) and each column numbered; a Matplotlib ``Figure`` at one screen pixel
    per image pixel (at 100 dpi) plus the margins."""
    from matplotlib.figure import Figure
    picture = grid_image(rows)
    height, width = picture.shape[:2]
    side_h, side_w = height // len(rows), width // len(rows[0])
    fig = Figure(figsize=(width / 100. + 1.6, height / 100. + 0.8), layout='constrained')
    ax = fig.subplots()
    ax.imshow(picture, interpolation='nearest')
    ax.set_yticks([(i + 0.5) * side_h for i in range(len(rows))])
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_xticks([(j + 0.5) * side_w for j in range(len(rows[0]))])
    ax.set_xticklabels([str(j + 1) for j in range(len(rows[0]))], fontsize=7)
    ax.set_xlabel('test image', fontsize=8)
    ax.set_ylabel('row', fontsize=8)
    ax.set_title(title, fontsize=8)
    return fig
