"""The detection networks at any input size, and the train chain around them."""
import chainer
import numpy as np
import pytest
from chainercv.links import YOLOv2, YOLOv3

from chainer_yolo_dist.datasets import SyntheticShapesDataset
from chainer_yolo_dist.detection.losses import YOLOv2Loss, YOLOv3Loss
from chainer_yolo_dist.detection.models import (YOLOv3Small, build_loss, build_model,
                                                set_insize)
from chainer_yolo_dist.core.finite import NonFiniteLossError
from chainer_yolo_dist.detection.train_chain import YOLOTrainChain
from chainer_yolo_dist.detection.multiscale import MultiScaleConverter


def test_set_insize_matches_chainercv_at_416():
    for cls in (YOLOv2, YOLOv3):
        model = cls(n_fg_class=3)
        reference = model._default_bbox.copy()
        set_insize(model, 608)
        set_insize(model, 416)
        np.testing.assert_array_equal(model._default_bbox, reference)
        if cls is YOLOv3:
            step = model._step.copy()
            set_insize(model, 416)
            np.testing.assert_array_equal(model._step, step)


@pytest.mark.parametrize('insize', [96, 160])
def test_small_yolov3_outputs_one_slot_per_anchor_and_cell(insize):
    model = YOLOv3Small(n_fg_class=4)
    set_insize(model, insize)
    x = np.zeros((2, 3, insize, insize), np.float32)
    with chainer.using_config('train', False):
        locs, objs, confs = model(x)
    k = sum(3 * (insize // s) ** 2 for s in (32, 16, 8))
    assert locs.shape == (2, k, 4) and objs.shape == (2, k) and confs.shape == (2, k, 4)
    assert model._default_bbox.shape == (k, 4) and model._step.shape == (k,)


def test_predict_decodes_boxes_at_the_set_insize():
    """A network whose output is all zeros predicts each anchor box at its cell centre."""
    model = YOLOv3Small(n_fg_class=2)
    set_insize(model, 64)
    model.use_preset('visualize')
    with chainer.using_config('train', False):
        model(np.zeros((1, 3, 64, 64), np.float32))  # initialise the lazy weights
    for p in model.params():
        p.array[...] = 0
    model.score_thresh = 0.2  # sigma(0) * sigma(0) = 0.25 for every slot
    model.nms_thresh = 1.0
    bboxes, labels, scores = model.predict([np.zeros((3, 200, 200), np.float32)])
    centres = (bboxes[0][:, :2] + bboxes[0][:, 2:]) / 2
    # Cell centres of the stride-32 grid (2 x 2 at 64), mapped back to the 200-px image.
    assert {(round(float(y)), round(float(x))) for y, x in centres} >= {
        (50, 50), (50, 150), (150, 50), (150, 150)}
    np.testing.assert_allclose(scores[0], 0.25)


def test_insize_must_be_a_multiple_of_32():
    with pytest.raises(ValueError):
        set_insize(YOLOv3Small(n_fg_class=1), 100)


def test_build_model_and_loss_pairs():
    assert isinstance(build_loss(build_model('yolov3_small', 4)), YOLOv3Loss)
    assert isinstance(build_loss(build_model('yolov2_tiny', 4)), YOLOv2Loss)
    with pytest.raises(ValueError, match='unknown model'):
        build_model('yolov9', 4)


def _batch(n, size=64, seed=0):
    data = SyntheticShapesDataset('train', n, size=size, seed=seed)
    return MultiScaleConverter(size)([data[i] for i in range(n)])


def test_loss_decreases_over_a_few_dozen_iterations():
    np.random.seed(0)
    model = YOLOv3Small(n_fg_class=4)
    chain = YOLOTrainChain(model, build_loss(model))
    optimizer = chainer.optimizers.MomentumSGD(lr=0.005)
    optimizer.setup(chain)
    x, bboxes, labels = _batch(8)
    reporter = chainer.Reporter()
    reporter.add_observer('main', chain)
    losses = []
    for _ in range(30):
        observation = {}
        with reporter.scope(observation):
            optimizer.update(chain, x, bboxes, labels)
        losses.append(observation['main/loss'])
    assert set(observation) >= {'main/loss', 'main/loss/box', 'main/loss/conf',
                                'main/loss/prob'}
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])


def test_non_finite_loss_raises_naming_the_iteration():
    model = YOLOv3Small(n_fg_class=4)
    chain = YOLOTrainChain(model, build_loss(model))
    chain.iteration = 17
    x, bboxes, labels = _batch(2)
    x[0, 0, 0, 0] = np.nan
    with pytest.raises(NonFiniteLossError, match='iteration 17'):
        chain(x, bboxes, labels)


def test_the_classifier_names_the_iteration_of_a_non_finite_loss():
    import chainer
    from chainer_yolo_dist.classification.chain import ClassifierChain
    from chainer_yolo_dist.classification.models import build_classifier
    chain = ClassifierChain(build_classifier('darknet19', 4, channels_scale=1 / 8, seed=0))
    chain.iteration = 9
    x = np.zeros((2, 3, 32, 32), np.float32)
    x[0, 0, 0, 0] = np.nan
    with chainer.reporter.Reporter().scope({}):
        with pytest.raises(NonFiniteLossError, match='at iteration 9 .*before update 9'):
            chain(x, np.array([0, 1], np.int32))


def test_a_bare_model_file_is_evaluated_from_its_options(tmp_path):
    from chainer_yolo_dist.detection.evaluation import detector_prefix, saved_run_request
    path = tmp_path / 'model.npz'
    path.write_bytes(b'')
    with pytest.raises(ValueError, match='give --model and --dataset'):
        saved_run_request({'snapshot': str(path)})
    with pytest.raises(ValueError, match='--dataset synthetic needs --n-class'):
        saved_run_request({'snapshot': str(path), 'model': 'yolov3_small',
                           'dataset': 'synthetic'})
    request, model, insize = saved_run_request({'snapshot': str(path), 'model': 'yolov3_small',
                                                'dataset': 'synthetic', 'n_class': 4})
    assert (request.dataset, request.n_class, model, insize) == ('synthetic', 4,
                                                                 'yolov3_small', 416)
    import chainer
    from chainer_yolo_dist.classification.models import build_classifier
    chainer.serializers.save_npz(str(path), build_classifier('darknet19', 4, 1 / 8))
    with pytest.raises(ValueError, match='this is a classifier, not a detector'):
        detector_prefix(str(path))


@pytest.mark.parametrize('name', ['yolov2', 'yolov2_tiny', 'yolov3_small'])
def test_parameters_initialised_at_the_init_side_are_those_of_the_training_size(name):
    """The recipe creates the lazy parameters with one forward at INIT_SIDE, not at 416/608:
    the same shapes and the same random draws, in the same order."""
    from chainer_yolo_dist.detection.models import initialize_lazy_parameters

    def initialised(side=None):
        np.random.seed(3)
        model = build_model(name, 20)
        if side is None:  # the recipe's way, on the host before any to_gpu
            initialize_lazy_parameters(model)
        else:
            with chainer.using_config('train', False), chainer.no_backprop_mode():
                model(np.zeros((1, 3, side, side), np.float32))
        return {k: p.array for k, p in model.namedparams()}

    small, full = initialised(), initialised(416)
    assert small.keys() == full.keys() and all(v is not None for v in small.values())
    for key in full:
        np.testing.assert_array_equal(small[key], full[key], err_msg=key)
