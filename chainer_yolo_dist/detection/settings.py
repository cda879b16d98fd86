"""The detection system's settings: the core's run settings plus what only detection has."""
import dataclasses

from chainer_yolo_dist.core.settings import RunSettings


@dataclasses.dataclass(frozen=True)
class DetectionData:
    """What detection data a run loads (see :func:`chainer_yolo_dist.detection.data.load_data`).

    ``dataset`` is 'synthetic', 'voc0712' or 'vocformat'; the synthetic fields describe the
    generated data, ``data_dir`` / ``class_names`` / splits the data read from disk.
    """

    dataset: str
    seed: int
    n_class: int
    on_bad_sample: str
    data_dir: str | None
    class_names: tuple | None
    train_split: str
    test_split: str
    n_train_images: int
    n_test_images: int
    image_size: int
    object_scales: tuple
    scale_distribution: str
    #: How the image files are checked before training (``--image-check``): 'header' (each
    #: file's format and size from its header), 'decode' (every file decoded once: finds
    #: truncation too) or 'none' (a bad file is found when training reads it).
    image_check: str = 'header'


@dataclasses.dataclass(frozen=True)
class DetectionSettings(RunSettings):
    """:class:`~chainer_yolo_dist.core.settings.RunSettings` plus: the augmentation switch and
    Darknet's crop ``jitter``, the evaluation input size, synchronised batch normalisation,
    and whether a preset's pretraining was skipped on purpose (``from_scratch``)."""

    augment: bool
    jitter: float
    eval_insize: int | None
    sync_bn: bool
    from_scratch: bool
