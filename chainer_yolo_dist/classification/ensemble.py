"""Ensemble classification: the mean of several models' softmax, scored top-1 and top-5.

Paper 003 (Overview, Results) reports 13.89% top-5 error on ILSVRC2012 for an *ensemble* of
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
                      k=TOP_K):
    """Top-1 and top-k accuracy of the ensemble and of each member over ``dataset``.

    Args:
        models: as :func:`ensemble_probabilities`.
        dataset: ``(img, label)`` examples (``img`` ``(3, S, S)`` in [0, 255] for the default
            converter, which scales to [0, 1]).
        converter: ``batch -> (x, t)``.

    Returns:
        dict: ``top1``, ``top5`` (fractions; errors are ``1 - value``) and ``n`` for the
        ensemble, and ``members``: a list of ``{'top1', 'top5'}``, one per model.
    """
    it = chainer.iterators.SerialIterator(dataset, batchsize, repeat=False, shuffle=False)
    n = 0
    correct = np.zeros((len(models) + 1, 2))
    for batch in it:
        x, t = converter(batch)
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
