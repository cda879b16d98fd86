"""A PNG grid of dataset samples with their boxes and class names, for eyeballing data."""

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from chainercv.visualizations import vis_bbox, vis_image

from chainer_yolo_dist.core.atomic import save_figure


def _draw_sample(ax, sample, class_names):
    img = np.asarray(sample[0])
    if len(sample) >= 3:  # detection: (img, bbox, label[, ...])
        bbox, label = np.asarray(sample[1]), np.asarray(sample[2])
        vis_bbox(img, bbox, label, label_names=class_names, ax=ax)
        ax.set_title('%d objects' % len(bbox), fontsize=8)
    else:  # classification: (img, label)
        vis_image(img, ax=ax)
        label = int(sample[1])
        name = class_names[label] if class_names is not None and label < len(class_names) \
            else str(label)
        ax.set_title(name, fontsize=8)
    ax.set_axis_off()


def render_samples(dataset, path, n=16, cols=4, class_names=None, indices=None):
    """Draws the first ``n`` samples (or ``indices``) of ``dataset`` as a PNG grid at ``path``.

    Works for detection samples ``(img, bbox, label[, ...])`` (boxes drawn with ChainerCV's
    ``vis_bbox``) and classification samples ``(img, label)`` (class name as the title). ``img``
    is CHW RGB in [0, 255]; bbox ``(R, 4)`` ``(y_min, x_min, y_max, x_max)``. ``class_names``
    defaults to ``dataset.class_names`` when the dataset has it. The file is written under a
    temporary name and renamed, so a reader never sees a partial PNG. Returns ``path``.
    """
    if indices is None:
        indices = range(min(n, len(dataset)))
    indices = list(indices)
    if not indices:
        raise ValueError('render_samples: nothing to draw (dataset of length %d, n=%d)'
                         % (len(dataset), n))
    if class_names is None:
        class_names = getattr(dataset, 'class_names', None)
    cols = max(1, min(cols, len(indices)))
    rows = (len(indices) + cols - 1) // cols
    fig = Figure(figsize=(3.0 * cols, 3.0 * rows))
    FigureCanvasAgg(fig)
    for k, i in enumerate(indices):
        _draw_sample(fig.add_subplot(rows, cols, k + 1), dataset[i], class_names)
    fig.tight_layout()
    return save_figure(fig, path, dpi=80)
