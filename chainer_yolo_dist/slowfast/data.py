"""The action datasets of a run, chosen by name (the registry of SlowFast datasets).

- ``synthetic_actions``: :class:`~chainer_yolo_dist.slowfast.synthetic.SyntheticActionClips`
  'train' and 'test' splits (independent streams of the seed), 7 actions.
- ``ava``: AVA v2.2 as distributed, under ``data_dir`` (never downloaded):
  ``ava_train_v2.2.csv`` for training, ``ava_val_v2.2.csv`` (ground-truth person boxes) for
  evaluation, ``ava_val_excluded_timestamps_v2.2.csv`` when present, the 80 actions trained and
  the 60 of ``ava_action_list_v2.2_for_activitynet_2019.pbtxt`` evaluated; frames under
  ``data_dir/frames``. The evaluation scores the ground-truth person boxes by default, or,
  with ``eval_boxes``, a person detector's boxes from a CSV in AVA's format (as paper 004,
  on Detectron's boxes, and PySlowFast do), those scoring at least ``eval_score_thresh``;
  the ground truth of the metric stays ``ava_val_v2.2.csv``'s (docs/slowfast.md).

Examples are ``(clip (3, T, H, W) in [0, 255], bbox (R, 4), label (R, n_class))``, the clip
uint8 for AVA (decoded frames) and float32 for synthetic clips; each test example also has a frame
key (``keys``) for the frame-level mAP.

Start-up image checks (``--image-check``, :func:`check_images`): on AVA, each example's
keyframe file (the module docstring of :mod:`chainer_yolo_dist.slowfast.ava` says why not
every frame a clip reads), split across the ranks and cached; synthetic clips have no files.
"""
import os

from chainer_yolo_dist.datasets import image_checks
from chainer_yolo_dist.slowfast import ava
from chainer_yolo_dist.slowfast.synthetic import ACTION_NAMES, SyntheticActionClips

#: The action datasets a preset or ``--dataset`` may name.
DATASETS = ('synthetic_actions', 'ava')

#: AVA's Fast-pathway frames per clip -> its clip reading (stride 2 in 30-fps frames).
AVA_READINGS = {reading.n_frames: name for name, reading in ava.CLIP_READINGS.items()}

AVA_FILES = {'train': 'ava_train_v2.2.csv', 'test': 'ava_val_v2.2.csv',
             'labels': 'ava_action_list_v2.2.pbtxt',
             'evaluated': 'ava_action_list_v2.2_for_activitynet_2019.pbtxt',
             'excluded': 'ava_val_excluded_timestamps_v2.2.csv'}


#: What a test split's ``boxes`` says when the examples' own boxes and labels are scored.
GROUND_TRUTH_BOXES = 'ground truth'


class ActionData(object):
    """One split: ``dataset`` (examples), ``keys`` (frame key per example), ``class_ids``
    (evaluated action ids; column ``j`` of a label is id ``j + 1``), ``excluded`` keys.

    A test split also says which boxes its examples hold (``boxes``: :data:`GROUND_TRUTH_BOXES`
    or the detector file and threshold) and, when they are a detector's,
    ``ground_truth``: ``{frame key: (boxes (G, 4) normalised (y1, x1, y2, x2), labels (G,
    n_class) multi-hot)}``, the metric's ground truth (None: the examples' own labels)."""

    def __init__(self, dataset, keys, class_ids, excluded=(), boxes=GROUND_TRUTH_BOXES,
                 ground_truth=None):
        self.dataset, self.keys = dataset, list(keys)
        self.class_ids, self.excluded = list(class_ids), set(excluded)
        self.boxes, self.ground_truth = boxes, ground_truth

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        return self.dataset[i]


def check_images(request, comm, log):
    """Checks the keyframe file of every AVA example (training and validation) once as
    ``request.image_check`` says ('header', 'decode', or nothing for 'none'), split across the
    ranks and remembered between starts
    (:func:`~chainer_yolo_dist.datasets.image_checks.check_files`); rank 0's
    :class:`~chainer_yolo_dist.slowfast.ava.AVAClips` then apply the bad-input policy from the
    results. Synthetic clips: nothing on disk."""
    root = request.data_dir
    if request.dataset != 'ava' or not root or not os.path.isdir(root):
        return  # synthetic clips; or load_data names what is missing
    if request.image_check == 'none':
        image_checks.check_files([], comm, 'none', None)
        if comm.rank == 0:
            log(image_checks.summary('none', None, comm.size))
        return
    paths = [p for split in ('train', 'test')
             for p in ava.keyframe_files(root, os.path.join(root, AVA_FILES[split]))]
    if request.eval_boxes:  # the detector's keyframes: mostly the same files
        paths = sorted(set(paths).union(ava.keyframe_files(root, request.eval_boxes, True)))
    counts = image_checks.check_files(paths, comm, request.image_check,
                                      image_checks.default_cache_path(root))
    if comm.rank == 0 and paths:
        log('%s (AVA: the keyframes of the clips)'
            % image_checks.summary(request.image_check, counts, comm.size))


def load_data(request):
    """``(train, test, class_names, reports)`` for ``request.dataset`` (SlowFastData);
    ``train`` and ``test`` are :class:`ActionData`."""
    if request.dataset == 'synthetic_actions':
        common = dict(seed=request.seed, n_frames=request.clip_frames, size=request.clip_size,
                      max_actors=request.max_actors)
        ids = range(1, len(ACTION_NAMES) + 1)
        train = SyntheticActionClips(request.n_train_clips, 'train', **common)
        test = SyntheticActionClips(request.n_test_clips, 'test', **common)
        return (ActionData(train, range(len(train)), ids),
                ActionData(test, range(len(test)), ids), ACTION_NAMES,
                {'train': None, 'test': None})
    if request.dataset == 'ava':
        return _load_ava(request)
    raise ValueError('unknown action dataset %r: choose one of %s'
                     % (request.dataset, ', '.join(DATASETS)))


def _load_ava(request):
    root = request.data_dir
    if not root or not os.path.isdir(root):
        raise ValueError('--dataset ava needs --data-dir, the AVA v2.2 directory (got %r)'
                         % (root,))
    if request.clip_frames not in AVA_READINGS:
        raise ValueError('AVA clips of %d frames: choose one of %s (paper 004 sec. 3.2: 16; '
                         'PySlowFast SLOWFAST_32x2: 32)' % (request.clip_frames,
                                                            sorted(AVA_READINGS)))
    path = {k: os.path.join(root, v) for k, v in AVA_FILES.items()}
    names = dict(ava.read_label_map(path['labels']))
    class_ids = ava.evaluated_class_ids(path['evaluated'])
    kwargs = dict(reading=AVA_READINGS[request.clip_frames], size=request.clip_size,
                  n_actions=ava.N_ACTIONS, on_bad_sample=request.on_bad_sample,
                  image_check=request.image_check)
    train = ava.AVAClips(root, path['train'], **kwargs)
    test = ava.AVAClips(root, path['test'], **kwargs)
    excluded = (ava.read_exclusions(path['excluded'], test.report)
                if os.path.isfile(path['excluded']) else set())
    class_names = tuple(names.get(i, str(i)) for i in range(1, ava.N_ACTIONS + 1))
    reports = {'train': train.report, 'test': test.report}
    if not request.eval_boxes:
        return (ActionData(train, train.frame_keys, class_ids),
                ActionData(test, test.frame_keys, class_ids, excluded), class_names, reports)
    detected = ava.AVAClips(root, request.eval_boxes, scored=True,
                            min_score=request.eval_score_thresh, **kwargs)
    reports['test_boxes'] = detected.report
    ground_truth = dict(zip(test.frame_keys, test.annotations))
    boxes = '%s (score >= %g)' % (request.eval_boxes, request.eval_score_thresh)
    return (ActionData(train, train.frame_keys, class_ids),
            ActionData(detected, detected.frame_keys, class_ids, excluded, boxes, ground_truth),
            class_names, reports)
