"""Batches travel to the device in the loader's dtype and are normalised there, bit for bit as
the host normalisation did it."""
import numpy as np
import pytest

from chainer_yolo_dist.slowfast import batch as batch_module
from chainer_yolo_dist.slowfast.batch import concat_clips, concat_normalised_clips
from chainer_yolo_dist.slowfast.synthetic import SyntheticActionClips
from chainer_yolo_dist.slowfast.transforms import normalise, random_scale_crop_flip


def _uint8_examples(n=3, seed=0):
    rng = np.random.RandomState(seed)
    return [(rng.randint(0, 256, (3, 4, 16, 20)).astype(np.uint8),
             rng.uniform(0, 16, (1 + i, 4)).astype(np.float32),
             rng.randint(0, 2, (1 + i, 5)).astype(np.int32)) for i in range(n)]


@pytest.fixture
def sent(monkeypatch):
    """The dtypes of the arrays the converter copies to the device."""
    dtypes = []
    plain = batch_module.to_device

    def recording(device, x):
        dtypes.append(x.dtype)
        return plain(device, x)

    monkeypatch.setattr(batch_module, 'to_device', recording)
    return dtypes


def test_uint8_clips_are_sent_as_uint8_and_normalised_as_on_the_host(sent):
    examples = _uint8_examples()
    clips, rois, idx, labels = concat_normalised_clips(examples, -1)
    assert sent[0] == np.uint8  # 1 byte per value crosses to the device, not 4
    host = np.stack([normalise(np.asarray(c, np.float32)) for c, _, _ in examples])
    assert clips.dtype == np.float32 and np.array_equal(clips, host)  # bitwise
    assert idx.tolist() == [0, 1, 1, 2, 2, 2] and rois.shape == (6, 4) and labels.shape == (6, 5)
    raw, _, _, _ = concat_clips(examples)
    assert raw.dtype == np.float32 and np.array_equal(raw, np.stack([c for c, _, _ in examples]))


def test_float32_synthetic_clips_are_normalised_as_before(sent):
    data = SyntheticActionClips(3, seed=1, n_frames=4, size=32)
    examples = [data[i] for i in range(3)]
    clips = concat_normalised_clips(examples)[0]
    assert sent[0] == np.float32
    assert np.array_equal(clips, np.stack([normalise(c) for c, _, _ in examples]))


def test_mixed_dtypes_are_not_truncated():
    a, b = _uint8_examples(2)
    b = (b[0].astype(np.float32) + 0.5, b[1], b[2])
    clips = concat_clips([a, b])[0]
    assert clips.dtype == np.float32 and np.array_equal(clips[1], b[0])


def test_augmentation_keeps_uint8_and_rounds_as_pyslowfast():
    """A uint8 clip stays uint8 through scale, crop and flip (PySlowFast's cv2 path resizes its
    uint8 frames, then converts to float32); a float32 clip is unchanged in type and values."""
    clip = np.random.RandomState(2).randint(0, 256, (3, 2, 40, 60)).astype(np.uint8)
    box = np.array([[4, 6, 30, 50]], np.float32)
    out, _ = random_scale_crop_flip(clip, box, np.random.RandomState(3), (48, 56), 40)
    assert out.dtype == np.uint8 and out.shape == (3, 2, 40, 40)
    as_float, _ = random_scale_crop_flip(clip.astype(np.float32), box,
                                         np.random.RandomState(3), (48, 56), 40)
    assert as_float.dtype == np.float32
    # The same resize, rounded (cv2 interpolates uint8 in fixed point: within one level).
    assert np.abs(out - as_float).max() <= 1
