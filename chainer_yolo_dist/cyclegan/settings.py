"""The CycleGAN system's settings: the core's run settings plus what only CycleGAN has."""
import dataclasses

from chainer_yolo_dist.core.settings import RunSettings


#: Why CycleGAN refuses ``--double-buffering`` (see :func:`refuse_double_buffering`).
DOUBLE_BUFFERING_ERROR = (
    '--double-buffering is not available for CycleGAN: its four optimizers would share '
    'ChainerMN\'s one pair of gradient buffers in the communicator; train without it')


def refuse_double_buffering(double_buffering):
    """Raises ValueError (:data:`DOUBLE_BUFFERING_ERROR`) if ``double_buffering`` is set.

    ChainerMN's double-buffering optimizer packs each update's gradients into the
    communicator's ``gpu_buffer_a`` / ``gpu_buffer_b`` and all-reduces them on its own stream
    without waiting: CycleGAN's four optimizers (two generators, then two discriminators, in
    one update) would overwrite, and resize, the same two buffers while another optimizer's
    AllReduce still reads them. A communicator per optimizer (``comm.split``) would give each
    its own buffers, but then four NCCL communicators run collectives concurrently on four
    streams, which NCCL documents as prone to deadlock; each also costs its own NCCL
    initialisation and buffers. Double buffering also applies every gradient one update late,
    unlike the synchronous averaging of paper 002 sec. 3.2. So it is refused, by name.
    """
    if double_buffering:
        raise ValueError(DOUBLE_BUFFERING_ERROR)


@dataclasses.dataclass(frozen=True)
class CycleGANData:
    """What unpaired data a run loads (see :func:`chainer_yolo_dist.cyclegan.data.load_data`):
    'synthetic_domains' (generated, ``n_train_images`` / ``n_test_images`` of ``image_size``)
    or 'folders' (``dir_a`` / ``dir_b``, evaluated on ``test_dir_a`` / ``test_dir_b`` or, without
    them, on the training folders), images cropped to ``image_size``."""

    dataset: str
    seed: int
    n_class: int
    on_bad_sample: str
    dir_a: str | None
    dir_b: str | None
    test_dir_a: str | None
    test_dir_b: str | None
    n_train_images: int
    n_test_images: int
    image_size: int
    #: How the image files are checked before training (``--image-check``): 'header' (each
    #: file's format and size from its header), 'decode' (every file decoded once: finds
    #: truncation too) or 'none' (a bad file is found when training reads it).
    image_check: str = 'header'


@dataclasses.dataclass(frozen=True)
class CycleGANSettings(RunSettings):
    """:class:`~chainer_yolo_dist.core.settings.RunSettings` plus the networks' widths and depth
    (``ngf`` / ``ndf`` 64 and 9 blocks at 256 px are the defaults of Zhu et al.'s implementation,
    which paper 002 sec. 3.1 follows; the paper prints none of them), the
    discriminators' rate rule, the loss weights, the history pool, how each rank draws its
    examples, and what is written during training (FID, sample grids)."""

    ngf: int
    ndf: int
    n_blocks: int
    dis_lr_rule: str
    lambda_cycle: float
    lambda_id: float
    pool_size: int
    sampling_replace: bool
    sampling_resample: str
    flip: bool
    fid_interval: float
    fid_images: int
    fid_extractor: str | None
    fid_weights: str | None
    sample_interval: float
    n_samples: int

    def __post_init__(self):
        super().__post_init__()
        for field, low in (('ngf', 1), ('ndf', 1), ('n_blocks', 0), ('pool_size', 0),
                           ('fid_images', 2), ('n_samples', 1)):
            if getattr(self, field) < low:
                raise ValueError('--%s must be >= %d, got %r' % (field.replace('_', '-'), low,
                                                                 getattr(self, field)))
        if self.fid_interval < 0 or self.sample_interval < 0:
            raise ValueError('--fid-interval and --sample-interval must be >= 0')
        refuse_double_buffering(self.double_buffering)
        if self.preset.sampling_scale is None:
            raise ValueError('preset %s has no sampling_scale: CycleGAN runs draw scale x D / n '
                             'examples per rank and epoch (paper 002 sec. 3.2)'
                             % self.preset.name)

    def identity_extras(self):
        """A resume must keep the draws per epoch and the pools (each rank's own file)."""
        return {'sampling_scale': self.preset.sampling_scale, 'pool_size': self.pool_size,
                'sampling_replace': self.sampling_replace,
                'sampling_resample': self.sampling_resample}
