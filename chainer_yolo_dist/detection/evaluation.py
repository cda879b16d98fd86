"""VOC detection mAP, computed across ranks.

Rank 0 reads the test set and ChainerCV's ``apply_to_iterator(..., comm=comm)`` scatters the
images, every rank predicts on its share, and the predictions are gathered on rank 0, where
``eval_detection_voc`` computes the mAP over the whole test set: the same number a single
process gets for the same model. Every rank must hold the same model (parameters and batch
normalisation statistics: see :func:`chainer_yolo_dist.core.persistents.mean_persistents`).
"""
import os
import warnings

import chainer
import numpy as np
from chainercv.evaluations import eval_detection_voc
from chainercv.utils import apply_to_iterator

from chainer_yolo_dist.core import bn_eps
from chainer_yolo_dist.core.persistents import mean_persistents
from chainer_yolo_dist.detection.counts import DEFAULT_SCORE_THRESH, detection_counts


def evaluate_detection(model, dataset, comm=None, batchsize=8, use_07_metric=True,
                       class_names=None, score_thresh=DEFAULT_SCORE_THRESH):
    """Returns ``{'map': float, 'ap': {class_name: float}, 'counts': {...}}`` on every rank.

    ``counts`` are paper 002 Table 2's columns over the same predictions
    (:func:`~chainer_yolo_dist.detection.counts.detection_counts`): ``tp``, ``fp``, ``fn``,
    ``precision``, ``recall``, ``f1`` of the detections scoring at least ``score_thresh``
    (a reading, 0.25: see that module), matched at IoU 0.5.

    Args:
        model: a ChainerCV detector with ``predict`` (its ``insize`` sets the eval size).
        dataset: ``(img, bbox, label[, difficult])`` examples; only rank 0 reads it.
        comm: a ChainerMN communicator, or ``None`` for one process.
        use_07_metric (bool): VOC2007's 11-point AP, as YOLO9000 and ChainerCV report (the papers
            name no metric: a reading, docs/papers.md).
    """
    rank0 = comm is None or comm.rank == 0
    # A barely trained network's raw outputs overflow exp() in ChainerCV's decoding; the
    # boxes are discarded by the score threshold anyway, so the warning only adds noise.
    with np.errstate(over='ignore'):
        return _evaluate(model, dataset, comm, batchsize, use_07_metric, class_names, rank0,
                         score_thresh)


class _InterleavedImages(chainer.dataset.DatasetMixin):
    """``dataset``'s examples with the image as C-contiguous ``(H, W, 3)``, for scattering.

    ``apply_to_iterator`` pickles each image to send it to a rank. NumPy pickles a
    C-contiguous array with one copy, but the datasets' images are ``(3, H, W)`` views of
    interleaved memory, which it first gathers element by element (measured: 5.7 against
    1.9 ms per 500x375 image): rank 0, which reads and sends the whole test set, would spend
    that on every image. Their ``(H, W, 3)`` transpose is that memory, so no copy is made here
    (a planar image is copied once); :func:`_predict_chw` turns it back on the receiving rank.
    """

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def get_example(self, i):
        example = self.dataset[i]
        return (np.ascontiguousarray(example[0].transpose(1, 2, 0)),) + tuple(example[1:])


def _predict_chw(model):
    """``model.predict`` on ``(H, W, 3)`` images, given as ``(3, H, W)`` views."""
    return lambda imgs: model.predict([img.transpose(2, 0, 1) for img in imgs])


def _evaluate(model, dataset, comm, batchsize, use_07_metric, class_names, rank0,
              score_thresh=DEFAULT_SCORE_THRESH):
    scattered = comm is not None and comm.size > 1
    predict = _predict_chw(model) if scattered else model.predict
    if rank0:
        it = chainer.iterators.SerialIterator(_InterleavedImages(dataset) if scattered
                                              else dataset, batchsize, repeat=False,
                                              shuffle=False)
        _, (pred_bboxes, pred_labels, pred_scores), gt = apply_to_iterator(
            predict, it, comm=comm)
        gt_bboxes, gt_labels = gt[0], gt[1]
        gt_difficults = gt[2] if len(gt) > 2 else None
        # The iterators are consumed once: keep the per-image arrays for both metrics.
        pred_bboxes, pred_labels, pred_scores = (list(pred_bboxes), list(pred_labels),
                                                 list(pred_scores))
        gt_bboxes, gt_labels = list(gt_bboxes), list(gt_labels)
        gt_difficults = list(gt_difficults) if gt_difficults is not None else None
        # The recall and AP of a class with no ground-truth box in the evaluated images are
        # NaN by definition (0 / 0 in ChainerCV, reported below as null with the reason);
        # after a short run every class may be one: no RuntimeWarning for what is expected.
        with np.errstate(divide='ignore', invalid='ignore'), warnings.catch_warnings():
            warnings.filterwarnings('ignore', 'Mean of empty slice', RuntimeWarning)
            result = eval_detection_voc(pred_bboxes, pred_labels, pred_scores, gt_bboxes,
                                        gt_labels, gt_difficults, use_07_metric=use_07_metric)
        counts = detection_counts(pred_bboxes, pred_labels, pred_scores, gt_bboxes, gt_labels,
                                  gt_difficults, score_thresh=score_thresh)
        counts['per_class'] = {k: v.tolist() for k, v in counts['per_class'].items()}
        names = class_names or [str(i) for i in range(len(result['ap']))]
        # A class with no ground truth in the evaluated set has no AP: null, with the reason.
        ap = {name: None if np.isnan(v) else float(v) for name, v in zip(names, result['ap'])}
        out = {'map': float(result['map']), 'ap': ap, 'counts': counts}
        if None in ap.values():
            out['ap_null'] = 'no ground-truth box of that class in the evaluated images'

    else:
        apply_to_iterator(predict, None, comm=comm)
        out = None
    if comm is not None:
        out = comm.bcast_obj(out)
    return out


class DetectionEvaluator(chainer.training.Extension):
    """Trainer extension: reports ``validation/main/map`` (and per-class AP) on every rank.

    Averages the batch-normalisation statistics across ranks first, so that every rank
    predicts with the same model. (ChainerCV's ``DetectionVOCEvaluator(comm=...)`` computes
    the same mAP, but lacks that averaging, the switch to the evaluation input size and
    preset, and a result usable outside the trainer for the final ``metrics.json``.)
    """

    priority = chainer.training.PRIORITY_WRITER

    def __init__(self, model, dataset, comm=None, batchsize=8, class_names=None,
                 eval_insize=None):
        self.model = model
        self.dataset = dataset
        self.comm = comm
        self.batchsize = batchsize
        self.class_names = class_names
        self.eval_insize = eval_insize

    def __call__(self, trainer=None):
        from chainer_yolo_dist.detection.models import set_insize
        if self.comm is not None and self.comm.size > 1:
            mean_persistents(self.comm, self.model)
        if self.eval_insize:
            set_insize(self.model, self.eval_insize)
        self.model.use_preset('evaluate')
        result = evaluate_detection(self.model, self.dataset, self.comm, self.batchsize,
                                    class_names=self.class_names)
        self.model.use_preset('visualize')
        observation = {'validation/main/map': result['map']}
        for name, ap in result['ap'].items():
            observation['validation/main/ap/%s' % name] = np.float32(np.nan if ap is None
                                                                     else ap)
        chainer.reporter.report(observation)
        self.last_result = result
        return result


def evaluate_saved_model(path, request, model_name, comm, insize, batchsize=8,
                         score_thresh=DEFAULT_SCORE_THRESH, device=-1):
    """Evaluates the network in ``path`` on the test split of ``request`` (DetectionData)
    on this rank's GPU ``device`` (-1: the CPU); reads nothing of the training split.
    Returns the result on rank 0, None elsewhere."""
    from chainer_yolo_dist.detection.data import load_split
    from chainer_yolo_dist.detection.models import build_model, set_insize
    test, class_names, _ = comm.bcast_obj(
        load_split(request, 'test') if comm.rank == 0 else None)
    model = build_model(model_name, len(class_names))
    _load_model(path, model)
    if device >= 0:  # ChainerCV's predict takes host images and returns host arrays
        chainer.backends.cuda.get_device_from_id(device).use()
        model.to_gpu(device)
    set_insize(model, insize)
    model.use_preset('evaluate')
    result = evaluate_detection(model, test, comm, batchsize, class_names=class_names,
                                score_thresh=score_thresh)
    result.update(insize=model.insize, model_file=os.path.abspath(path),
                  dataset=request.dataset, n_images=len(test))
    return result if comm.rank == 0 else None


def detector_prefix(path):
    """Where the detector's arrays start in ``path``: ``''`` in a ``model.npz``,
    ``'updater/model:main/model/'`` in a trainer snapshot; ValueError naming the file for a
    classifier or anything else (saying what it is and which script evaluates it)."""
    from chainer_yolo_dist.core.snapshots import npz_problem
    problem = None if not os.path.isfile(path) else npz_problem(path)
    if not os.path.isfile(path) or problem:
        raise ValueError('%s: %s' % (path, problem and 'not a readable .npz file: ' + problem
                                     or 'no such file'))
    try:
        with np.load(path) as f:
            keys = f.files
    except (OSError, ValueError) as e:
        raise ValueError('%s: not a readable .npz file (%s)' % (path, e)) from e
    prefix = next((p for p in ('', 'updater/model:main/model/') if
                   any(k.startswith(p + 'extractor/') for k in keys)), None)
    if prefix is None:
        if any('slow/conv1/' in k for k in keys):
            raise ValueError('%s: this is a SlowFast model, not a detector: train_slowfast.py '
                             'evaluates it (frame mAP, in its run\'s metrics.json)' % path)
        if any(k.startswith(p + 'trunk/') for p in ('', 'updater/model:main/predictor/')
               for k in keys):
            raise ValueError('%s: this is a classifier, not a detector: evaluate it with '
                             'scripts/eval_darknet.py' % path)
        raise ValueError('%s: neither a model.npz nor a train_yolo.py trainer snapshot '
                         '(no extractor/ arrays)' % path)
    return prefix


def _load_model(path, model):
    """Loads ``model.npz`` or the model inside a trainer snapshot (with the batch-norm
    epsilons it carries: Darknet's, where a Darknet file initialised the run); names the file
    on error."""
    prefix = detector_prefix(path)
    bn_eps.restore_eps(path, model, prefix)
    chainer.serializers.load_npz(path, model, path=prefix)


def saved_run_request(options):
    """``(DetectionData, model name, input size)`` to evaluate a saved network: from the
    ``config.json`` of its run (beside it, or ``options['config']``), overridden by the given
    options; a bare ``model.npz`` needs ``model`` and ``dataset`` (and ``n_class`` for
    synthetic data)."""
    import json
    from chainer_yolo_dist.detection.settings import DetectionData
    path = options['snapshot']
    config_path = options.get('config') or os.path.join(
        os.path.dirname(os.path.abspath(path)), 'config.json')
    cfg = {}
    if os.path.isfile(config_path):
        with open(config_path) as f:
            cfg = json.load(f)
    preset = cfg.get('preset', {})
    data = dict(cfg.get('data', {}))
    for key in ('dataset', 'data_dir', 'class_names', 'test_split', 'n_class'):
        if options.get(key) is not None:
            data[key] = options[key]
    model = options.get('model') or preset.get('model')
    missing = [name for name, value in (('model', model), ('dataset', data.get('dataset')))
               if not value]
    if missing:
        raise ValueError('%s: no config.json at %s; give --%s'
                         % (path, config_path, ' and --'.join(missing)))
    if data['dataset'] == 'synthetic' and not data.get('n_class'):
        raise ValueError('%s: --dataset synthetic needs --n-class (no config.json at %s)'
                         % (path, config_path))
    defaults = dict(seed=0, n_class=data.get('n_class') or 0, on_bad_sample='error',
                    data_dir=None, class_names=None, train_split='trainval',
                    test_split='test', n_train_images=0, n_test_images=300, image_size=128,
                    object_scales=(1 / 16., 2 / 3.), scale_distribution='log')
    defaults.update({k: v for k, v in data.items() if v is not None})
    defaults['object_scales'] = tuple(defaults['object_scales'])
    if defaults['class_names'] is not None:
        defaults['class_names'] = tuple(defaults['class_names'])
    insize = (options.get('insize') or cfg.get('eval_insize') or preset.get('insize') or 416)
    return DetectionData(**defaults), model, insize
