"""The classification system's settings: the core's run settings plus what only it has."""
import dataclasses

from chainer_yolo_dist.core.settings import RunSettings


@dataclasses.dataclass(frozen=True)
class ClassificationData:
    """What classification data a run loads (see
    :func:`chainer_yolo_dist.classification.data.load_data`): 'synthetic_classification'
    (generated) or 'imagenet' (``data_dir`` with ``train/`` and ``val/``, or list files)."""

    dataset: str
    seed: int
    n_class: int
    on_bad_sample: str
    data_dir: str | None
    train_list: str | None
    val_list: str | None
    n_train_images: int
    n_test_images: int
    image_size: int
    #: How the image files are checked before training (``--image-check``): 'header' (each
    #: file's format and size from its header), 'decode' (every file decoded once: finds
    #: truncation too) or 'none' (a bad file is found when training reads it).
    image_check: str = 'header'


@dataclasses.dataclass(frozen=True)
class ClassificationSettings(RunSettings):
    """:class:`~chainer_yolo_dist.core.settings.RunSettings` plus: the network's width
    (``channels_scale``: 1 is the paper model) and the augmentation's crop and angle."""

    channels_scale: float
    augment: bool
    min_crop: int | None
    max_crop: int | None
    angle: float
