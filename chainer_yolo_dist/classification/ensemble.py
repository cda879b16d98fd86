"""Ensemble classification: the mean of several models' softmax, scored top-1 and top-5.

Paper 003 (Overview) reports 13.89% top-5 error on the ILSVRC2012 test set for an *ensemble* of
models trained with its asynchronous method, without saying how the members were combined;
the reading here is the usual one of that period (Krizhevsky et al. 2012, Simonyan & Zisserman
2015): average the members' class probabilities and rank the classes by that average.
"""
import chainer
import numpy as np

from chainer_yolo_dist.classification.chain import converter as classification_converter
from chainer_yolo_dist.classification.chain import top_k_accuracy

TOP_K = 5


def _probabilities(model, x):
    if hasattr(model, 'predict'):
        return model.predict(x)
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        return chainer.functions.softmax(model(x)).array


def ensemble_probabilities(models, x):
    """Mean softmax of ``models`` on a batch.

    Args:
        models: non-empty list of classifiers, each with ``predict(x) -> (N, C)``
            probabilities or callable ``model(x) -> (N, C)`` logits; all with the same C.
        x: ``(N, 3, S, S)`` float32 batch in [0, 1].

    Returns:
        array ``(N, C)``: rows sum to 1.
    """
    if not models:
        raise ValueError('an ensemble needs at least one model')
    probs = [_probabilities(m, x) for m in models]
    shapes = sorted(set(p.shape for p in probs))
    if len(shapes) != 1:
        raise ValueError('the ensemble members disagree on the output shape: %s' % shapes)
    return sum(probs) / len(probs)


def evaluate_ensemble(models, dataset, batchsize=32, converter=classification_converter,
                      k=TOP_K, device=None):
    """Top-1 and top-k accuracy of the ensemble and of each member over ``dataset``.

    Args:
        models: as :func:`ensemble_probabilities`.
        dataset: ``(img, label)`` examples (``img`` ``(3, S, S)`` in [0, 255] for the default
            converter, which scales to [0, 1]).
        converter: ``batch -> (x, t)``; with ``device``, ``(batch, device) -> (x, t)`` there.
        device: where the models are (None or -1: the host; a GPU id after ``to_gpu``).

    Returns:
        dict: ``top1``, ``top5`` (fractions; errors are ``1 - value``) and ``n`` for the
        ensemble, and ``members``: a list of ``{'top1', 'top5'}``, one per model.
    """
    it = chainer.iterators.SerialIterator(dataset, batchsize, repeat=False, shuffle=False)
    n = 0
    correct = np.zeros((len(models) + 1, 2))
    for batch in it:
        x, t = converter(batch) if device is None else converter(batch, device)
        probs = [_probabilities(m, x) for m in models]
        probs.append(sum(probs) / len(probs))  # the ensemble (ensemble_probabilities)
        for i, p in enumerate(probs):
            correct[i] += [top_k_accuracy(p, t, 1) * len(t), top_k_accuracy(p, t, k) * len(t)]
        n += len(t)
    if n == 0:
        raise ValueError('the evaluation dataset is empty')
    rates = correct / n
    return {'top1': float(rates[-1, 0]), 'top5': float(rates[-1, 1]), 'n': n,
            'members': [{'top1': float(r[0]), 'top5': float(r[1])} for r in rates[:-1]]}


# ---- saved classifiers (scripts/eval_darknet.py) -------------------------------------------

def load_members(paths):
    """Loads the classifier files ``paths`` (``model.npz`` or trainer snapshots of
    ``train_darknet.py``) as one ensemble.

    Returns:
        ``(models, infos)``: the classifiers and their
        :class:`~chainer_yolo_dist.classification.model_files.ClassifierFile`.
    Raises:
        ValueError: no path, a missing or unreadable file, or members with different numbers
            of classes (the message names the files).
    """
    import os
    from chainer_yolo_dist.classification.model_files import load_classifier
    if not paths:
        raise ValueError('give at least one classifier file')
    models, infos = [], []
    for path in paths:
        if not os.path.isfile(path):
            raise ValueError('%s: no such file' % path)
        model, info = load_classifier(path)
        if infos and info.n_class != infos[0].n_class:
            raise ValueError('%s has %d classes but %s has %d: an ensemble averages the same '
                             'classes' % (path, info.n_class, infos[0].path, infos[0].n_class))
        models.append(model)
        infos.append(info)
    return models, infos


def run_config(path, config_path=None):
    """The ``config.json`` of the run that wrote ``path`` (``config_path``, else beside it),
    or ``{}`` when there is none."""
    import json
    import os
    config_path = config_path or os.path.join(os.path.dirname(os.path.abspath(path)),
                                              'config.json')
    if not os.path.isfile(config_path):
        return {}
    try:
        with open(config_path, encoding='utf-8') as f:
            return json.load(f)
    except ValueError as e:
        raise ValueError('%s: not a run\'s config.json (%s)' % (config_path, e)) from e


def evaluation_data(n_class, config, synthetic=False, data_dir=None, val_list=None,
                    n_test_images=None, image_size=None, seed=None, insize=None,
                    on_bad_sample='error'):
    """The held-out set to score an ensemble of ``n_class`` classes on, centre-cropped.

    Which data: ImageNet's ``val`` split at ``data_dir`` (by-directory layout, or the
    ``val_list`` of ``path label`` lines); the synthetic crops' test split (``synthetic``);
    else the data of the run's ``config`` (what ``train_darknet.py`` validated on). The
    synthetic sizes and seed, and the input size, default to the run's, then to
    ``train_darknet.py``'s defaults (256 images of 32 px, seed 0; input 224 on ImageNet).

    Returns:
        ``(dataset, description, insize)``: ``dataset[i] -> (img (3, insize, insize) float32
        in [0, 255], label)``.
    Raises:
        ValueError: nothing says which data, the data's classes differ from ``n_class``, or
            an input size that is not a positive multiple of 32.
    """
    from chainer_yolo_dist.classification.transforms import CenterCrop
    from chainer_yolo_dist.datasets import ImageNetDataset, SyntheticShapesClassificationDataset
    data = config.get('data') or {}
    preset = config.get('preset') or {}
    if synthetic and data_dir:
        raise ValueError('give --synthetic or --data-dir, not both')
    dataset_name = ('imagenet' if data_dir else 'synthetic_classification' if synthetic
                    else data.get('dataset'))
    if dataset_name is None:
        raise ValueError('no config.json beside the first model says which data it was '
                         'trained on: give --synthetic or --data-dir')
    same_data = dataset_name == data.get('dataset')
    if dataset_name == 'synthetic_classification':
        pick = lambda given, key, default: (  # noqa: E731
            given if given is not None else data.get(key, default) if same_data else default)
        data_n_class = pick(None, 'n_class', n_class)
        dataset = SyntheticShapesClassificationDataset(
            'test', pick(n_test_images, 'n_test_images', 256),
            size=pick(image_size, 'image_size', 32), n_class=data_n_class,
            seed=pick(seed, 'seed', 0))
        description = 'synthetic classification test split (%d images, seed %d)' % (
            len(dataset), dataset.seed)
        default_insize = dataset.size
    elif dataset_name == 'imagenet':
        root = data_dir or data.get('data_dir')
        val_list = val_list if data_dir else (val_list or data.get('val_list'))
        if not root:
            raise ValueError('ImageNet evaluation needs --data-dir')
        dataset = ImageNetDataset(root, 'val', list_file=val_list, on_bad_sample=on_bad_sample,
                                  n_class=n_class if val_list else None, image_check='header')
        data_n_class = dataset.n_class
        description = 'ImageNet val at %s (%d images)' % (root, len(dataset))
        default_insize = 224
    else:
        raise ValueError('unknown classification dataset %r in the run\'s config.json'
                         % dataset_name)
    if data_n_class != n_class:
        raise ValueError('the models have %d classes but the %s has %d' % (
            n_class, description, data_n_class))
    if len(dataset) == 0:
        raise ValueError('the %s holds no image' % description)
    if insize is None:
        insize = preset.get('insize') if same_data and preset.get('insize') else default_insize
    if insize <= 0 or insize % 32:
        raise ValueError('input size %d: must be a positive multiple of 32' % insize)
    return (chainer.datasets.TransformDataset(dataset, CenterCrop(insize)), description,
            int(insize))
