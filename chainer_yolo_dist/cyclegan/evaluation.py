"""What a CycleGAN run measures and shows while it trains: Frechet distances and sample grids.

- :func:`translate`: a generator applied to a stack of images, in test mode, in batches.
- :class:`FrechetExtension` (rank 0): the Frechet distance (paper 002 eq. 1) between the
  features of ``gen_ab(A_test)`` and of ``B_test``, reported as ``fid`` with the fractional
  epoch of the measurement as ``fid/epoch``, and drawn against epoch into ``fid.png`` (paper 002
  Fig. 6's form for one run). With Inception-v3 and
  converted weights (``fid_weights``) it is the FID of the literature; with the default
  extractor (:mod:`~chainer_yolo_dist.cyclegan.features`) it is a distance comparable only with
  others of the same extractor (the name ``fid`` in the log is kept for the curve's role).
- :class:`SampleGrid` (rank 0): ``samples/iter_<N>.png``, rows A, A->B, A->B->A of the same
  test images.
"""
import json
import os

import chainer
import numpy as np

from chainer_yolo_dist.core import atomic
from chainer_yolo_dist.cyclegan import fid
from chainer_yolo_dist.cyclegan.data import to_uint8


def translate(gen, images, batchsize=16):
    """``gen`` applied to ``images`` ``(N, 3, H, W)`` in [-1, 1]; NumPy ``(N, 3, H, W)``."""
    out = []
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        for start in range(0, len(images), batchsize):
            x = gen.xp.asarray(images[start:start + batchsize])
            out.append(chainer.backend.CpuDevice().send(gen(x).array))
    return np.concatenate(out) if out else np.zeros((0,) + tuple(images.shape[1:]), np.float32)


def stack(view, n):
    """The first ``n`` images of a single-domain view, ``(n, 3, H, W)`` float32."""
    return np.stack([view[i] for i in range(min(n, len(view)))]).astype(np.float32)


def inception_extractor(weights, batchsize=16):
    """Inception-v3 pool features (the FID of the literature, with converted ``weights``)."""
    from chainer_yolo_dist.cyclegan.inception import InceptionV3, resize_for_inception
    net = InceptionV3(weights=weights)

    def extract(images):
        feats = [net.features(resize_for_inception(images[i:i + batchsize]))
                 for i in range(0, len(images), batchsize)]
        return np.concatenate(feats).astype(np.float64)
    return extract


def default_extractor(path, log=print):
    """The download-free default extractor (:func:`features.build_default_extractor`) from
    ``path``; trained there first (about 2.5 minutes on two CPU cores) if the file is absent."""
    from chainer_yolo_dist.cyclegan import features
    if not os.path.isfile(path):
        log('training the default feature extractor into %s (once; reused by later runs)'
            % path)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with atomic.atomic_path(path) as tmp:
            features.train_default_extractor(tmp)
    return features.build_default_extractor(path)


class FrechetExtension(chainer.training.Extension):
    """Reports ``fid``, the Frechet distance of ``gen_ab(test_a)`` to ``test_b``, and
    ``fid/epoch``, the fractional epoch it was measured at (rank 0 only; the other ranks wait at
    the next AllReduce). The log's entries fall every ``log_interval`` iterations, not at the
    measurements, so a curve of FID against epoch (paper 002 Fig. 6) takes its x from
    ``fid/epoch``. With ``plot_path``, every measurement redraws the curve there.

    Args:
        gen_ab: the generator A -> B.
        test_a, test_b: ``(N, 3, H, W)`` images in [-1, 1].
        extract: ``images -> (N, D)`` features.
        plot_path (str or None): where to draw the curve (``fid.png``).
        title (str): the curve's title.
    ``baseline`` is the distance of the untranslated ``test_a`` to ``test_b``: what a
    translation that learnt nothing would score. ``history`` lists ``(epoch, fid)``, kept in
    the trainer's snapshot so that a resumed run's curve starts at epoch 0.
    """

    priority = chainer.training.PRIORITY_WRITER
    name = 'fid'

    def __init__(self, gen_ab, test_a, test_b, extract, plot_path=None, title=''):
        self.gen_ab, self.test_a, self.extract = gen_ab, test_a, extract
        self.features_b = extract(test_b)
        self.baseline = fid.frechet_distance_of_features(extract(test_a), self.features_b)
        self.plot_path, self.title = plot_path, title
        self.last = None
        self.history = []

    def measure(self):
        fake_b = translate(self.gen_ab, self.test_a)
        self.last = fid.frechet_distance_of_features(self.extract(fake_b), self.features_b)
        return self.last

    def __call__(self, trainer):
        value, epoch = self.measure(), float(trainer.updater.epoch_detail)
        self.history.append((epoch, value))
        chainer.reporter.report({'fid': value, 'fid/epoch': epoch})
        if self.plot_path:
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
    """Writes ``samples/iter_<N>.png``: rows A, A->B, A->B->A of ``images_a`` (rank 0 only)."""

    priority = chainer.training.PRIORITY_READER
    name = 'sample_grid'

    def __init__(self, gen_ab, gen_ba, images_a, out):
        self.gen_ab, self.gen_ba, self.images_a = gen_ab, gen_ba, images_a
        self.folder = os.path.join(out, 'samples')

    def __call__(self, trainer):
        import PIL.Image
        fake_b = translate(self.gen_ab, self.images_a)
        back = translate(self.gen_ba, fake_b)
        os.makedirs(self.folder, exist_ok=True)
        path = os.path.join(self.folder, 'iter_%07d.png' % trainer.updater.iteration)
        with atomic.atomic_path(path) as tmp:
            PIL.Image.fromarray(grid_image([self.images_a, fake_b, back])).save(tmp,
                                                                                 format='PNG')
