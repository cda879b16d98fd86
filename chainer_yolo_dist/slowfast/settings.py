"""The SlowFast system's settings: the core's run settings plus what only action detection has."""
import dataclasses

from chainer_yolo_dist.core.settings import RunSettings


@dataclasses.dataclass(frozen=True)
class SlowFastData:
    """What action data a run loads (see :func:`chainer_yolo_dist.slowfast.data.load_data`).

    ``dataset`` is 'synthetic_actions' (generated clips: ``n_train_clips``, ``n_test_clips``,
    ``max_actors``, frames ``clip_frames`` of side ``clip_size``) or 'ava' (AVA v2.2 under
    ``data_dir``: the file names of :mod:`chainer_yolo_dist.slowfast.ava`, clips of
    ``clip_frames`` Fast-pathway frames at stride 2, short side ``clip_size``).
    """

    dataset: str
    seed: int
    n_class: int
    on_bad_sample: str
    clip_frames: int
    clip_size: int
    data_dir: str | None
    n_train_clips: int
    n_test_clips: int
    max_actors: int
    #: How the image files are checked before training (``--image-check``): 'header' (each
    #: file's format and size from its header), 'decode' (every file decoded once: finds
    #: truncation too) or 'none' (a bad file is found when training reads it). On AVA: each
    #: keyframe's file (:func:`chainer_yolo_dist.slowfast.data.check_images`).
    image_check: str = 'header'
    #: The boxes the evaluation scores (AVA only): None, the ground-truth person boxes of
    #: ``ava_val_v2.2.csv``; or a person detector's boxes in AVA's CSV format (``video_id,
    #: second, x1, y1, x2, y2, [action_id,] score``, normalised), those scoring at least
    #: ``eval_score_thresh`` (PySlowFast ``AVA.DETECTION_SCORE_THRESH`` 0.8), matched to the
    #: ground truth by the metric (paper 004 evaluates on Detectron's boxes, sec. 4.1).
    eval_boxes: str | None = None
    eval_score_thresh: float = 0.8


@dataclasses.dataclass(frozen=True)
class SlowFastSettings(RunSettings):
    """:class:`~chainer_yolo_dist.core.settings.RunSettings` plus: the augmentation switch
    (AVA: PySlowFast's scale jitter, crop and flip; synthetic clips: none, since a flip would
    swap move_left and move_right) and the head's dropout ratio (None: the paper's 0.5)."""

    augment: bool
    dropout: float | None
