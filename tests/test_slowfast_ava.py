"""AVA v2.2 readers on small hand-made files: CSVs, label maps, exclusions, frames, clips."""
import cv2
import numpy as np
import pytest

from chainer_yolo_dist.datasets.validation import BadSampleError, BadSampleReport
from chainer_yolo_dist.slowfast import ava
from chainer_yolo_dist.slowfast.metric import frame_map

LABEL_MAP_60 = '''item {
  name: "bend/bow (at the waist)"
  id: 1
}
item {
  name: "stand"
  id: 12
}
item {
  name: "watch (a person)"
  label_id: 80
}
'''

TRAIN_CSV = '''vid_a,0902,0.1,0.2,0.5,0.9,12,0
vid_a,0902,0.1,0.2,0.5,0.9,80,0
vid_a,0902,0.6,0.1,0.9,0.8,1,1
vid_a,0903,0.1,0.2,0.5,0.9,12,0
vid_b,0902,0.0,0.0,1.0,1.0,3,0
'''


def write(path, text):
    with open(path, 'w') as f:
        f.write(text)
    return str(path)


def make_frames(root, video, n, hw=(12, 16)):
    """``n`` frames whose grey level encodes the 0-based frame index (2 * index)."""
    d = root / 'frames' / video
    d.mkdir(parents=True)
    for i in range(n):
        img = np.full(hw + (3,), 2 * i % 256, np.uint8)
        cv2.imwrite(str(d / ('%s_%06d.jpg' % (video, i + 1))), img)


def test_label_map_60_class_subset_is_read_from_the_file(tmp_path):
    path = write(tmp_path / 'ava_action_list_v2.2_for_activitynet_2019.pbtxt', LABEL_MAP_60)
    assert ava.read_label_map(path) == [(1, 'bend/bow (at the waist)'), (12, 'stand'),
                                        (80, 'watch (a person)')]
    assert ava.evaluated_class_ids(path) == [1, 12, 80]


def test_bad_label_map_names_file_and_line(tmp_path):
    path = write(tmp_path / 'bad.pbtxt', 'item {\n  name: "stand"\n  id: x\n}\n')
    with pytest.raises(BadSampleError, match=r'bad.pbtxt:3: id is not an integer'):
        ava.read_label_map(path)
    path = write(tmp_path / 'noid.pbtxt', 'item {\n  name: "stand"\n}\n')
    with pytest.raises(BadSampleError, match=r'noid.pbtxt:1: item without an id'):
        ava.read_label_map(path)


def test_csv_rows_grouped_by_keyframe_and_box_into_multi_hot_labels(tmp_path):
    report = BadSampleReport('error')
    rows = ava.read_box_csv(write(tmp_path / 'train.csv', TRAIN_CSV), report)
    assert rows[0] == ava.BoxRow('vid_a', 902, (0.2, 0.1, 0.9, 0.5), 12, 0)  # (y1, x1, y2, x2)
    frames = ava.group_keyframes(rows)
    assert list(frames) == [('vid_a', 902), ('vid_a', 903), ('vid_b', 902)]
    boxes, labels = frames[('vid_a', 902)]
    np.testing.assert_allclose(boxes, [[0.2, 0.1, 0.9, 0.5], [0.1, 0.6, 0.8, 0.9]])
    assert labels.shape == (2, 80)
    assert np.nonzero(labels[0])[0].tolist() == [11, 79]  # actions 12 and 80
    assert np.nonzero(labels[1])[0].tolist() == [0]


@pytest.mark.parametrize('line,message', [
    ('vid_a,0902,0.1,0.2,0.5,12,0', 'has 7 columns, expected 8'),
    ('vid_a,09x2,0.1,0.2,0.5,0.9,12,0', 'is malformed'),
    ('vid_a,0850,0.1,0.2,0.5,0.9,12,0', 'second 850 outside 902..1798'),
    ('vid_a,0902,0.5,0.2,0.1,0.9,12,0', 'x_min 0.5 >= x_max 0.1'),
    ('vid_a,0902,0.1,0.2,1.5,0.9,12,0', 'x_max 1.5 outside'),
    ('vid_a,0902,0.1,0.2,0.5,0.9,81,0', 'action id 81 is outside'),
])
def test_bad_csv_row_names_file_and_line(tmp_path, line, message):
    path = write(tmp_path / 'ava_train_v2.2.csv', TRAIN_CSV + line + '\n')
    with pytest.raises(BadSampleError, match=r'ava_train_v2.2.csv:6: .*' + message):
        ava.read_box_csv(path, BadSampleReport('error'))
    report = BadSampleReport('skip')
    assert len(ava.read_box_csv(path, report)) == 5
    assert report.n_checked == 6 and report.n_kept == 5
    assert report.problems[0][0].endswith('ava_train_v2.2.csv:6')


def test_detector_boxes_with_score_threshold_and_exclusions(tmp_path):
    det = write(tmp_path / 'det.csv', 'vid_a,0902,0.1,0.2,0.5,0.9,,0.95\n'
                                      'vid_a,0902,0.3,0.3,0.4,0.4,,0.5\n'
                                      'vid_a,0903,0.1,0.2,0.5,0.9,,0.85\n')
    rows = ava.read_box_csv(det, BadSampleReport('error'), scored=True)
    assert [r.action for r in rows] == [-1, -1, -1] and rows[0].extra == 0.95
    frames = ava.group_keyframes(rows, min_score=ava.DETECTION_SCORE_THRESH)
    assert [len(b) for b, _ in frames.values()] == [1, 1]
    assert not frames[('vid_a', 902)][1].any()  # detector boxes carry no labels
    excl = write(tmp_path / 'excl.csv', 'vid_a,0903\n')
    assert ava.read_exclusions(excl, BadSampleReport('error')) == {('vid_a', 903)}
    bad = write(tmp_path / 'det_bad.csv', 'vid_a,0902,0.1,0.2,0.5,0.9,,1.5\n')
    with pytest.raises(BadSampleError, match='det_bad.csv:1: score 1.5'):
        ava.read_box_csv(bad, BadSampleReport('error'), scored=True)


def test_clip_readings_and_keyframe_frame_numbering():
    assert ava.keyframe_index(902) == 60 and ava.keyframe_index(900) == 0
    paper = ava.CLIP_READINGS['paper004']
    idx = ava.clip_frame_indices(60, paper.n_frames, paper.stride, 27030)
    assert idx.tolist() == list(range(44, 76, 2))  # 16 Fast frames; Slow reads idx[::4]
    assert idx[::4].tolist() == [44, 52, 60, 68]  # tau = 8 frames apart, keyframe included
    sf = ava.CLIP_READINGS['slowfast_32x2']
    assert ava.clip_frame_indices(60, sf.n_frames, sf.stride, 27030).tolist() == \
        list(range(28, 92, 2))
    assert ava.clip_frame_indices(5, 4, 2, 8).tolist() == [1, 3, 5, 7]
    assert ava.clip_frame_indices(7, 4, 2, 8).tolist() == [3, 5, 7, 7]  # clamped at the end
    assert ava.frame_path('/d/frames', 'vid', 0) == '/d/frames/vid/vid_000001.jpg'


def test_dataset_reads_clips_boxes_labels_and_drops_videos_without_frames(tmp_path):
    make_frames(tmp_path, 'vid_a', 100)
    csv_path = write(tmp_path / 'ava_val_v2.2.csv', TRAIN_CSV)
    with pytest.raises(BadSampleError, match=r'frames/vid_b: no vid_b_NNNNNN.jpg frames'):
        ava.AVAClips(str(tmp_path), csv_path, size=24)
    data = ava.AVAClips(str(tmp_path), csv_path, size=24, on_bad_sample='skip')
    assert data.frame_keys == [('vid_a', 902), ('vid_a', 903)]
    assert data.report.counts == {'missing_image': 1}
    clip, bbox, label = data[1]
    assert clip.shape == (3, 16, 24, 32) and clip.dtype == np.uint8  # short side 12 -> 24
    # Keyframe of second 903 is frame 90; the clip reads 74, 76, ... 98, then 99 (clamped).
    expected = 2 * np.minimum(np.arange(74, 106, 2), 99)
    np.testing.assert_allclose(clip[:, :, 12, 16].mean(axis=0), expected, atol=3)
    np.testing.assert_allclose(bbox, [[0.2 * 24, 0.1 * 32, 0.9 * 24, 0.5 * 32]], rtol=1e-6)
    assert label.dtype == np.int32 and np.nonzero(label[0])[0].tolist() == [11]
    wide = ava.AVAClips(str(tmp_path), csv_path, reading='slowfast_32x2', size=12,
                        on_bad_sample='skip')
    assert wide[0][0].shape == (3, 32, 12, 16)
    excl = write(tmp_path / 'excl.csv', 'vid_a,0902\n')
    assert ava.AVAClips(str(tmp_path), csv_path, exclusions=excl,
                        on_bad_sample='skip').frame_keys == [('vid_a', 903)]


def test_ground_truth_csv_feeds_the_metric_with_the_60_class_filter(tmp_path):
    rows = ava.read_box_csv(write(tmp_path / 'val.csv', TRAIN_CSV), BadSampleReport('error'))
    gt = {}
    for r in rows:
        b, a = gt.setdefault((r.video_id, r.second), ([], []))
        b.append(r.box)
        a.append(r.action)
    classes = ava.evaluated_class_ids(write(tmp_path / 'm.pbtxt', LABEL_MAP_60))
    result = frame_map(gt, {}, classes)
    assert result['n_gt'] == {1: 1, 12: 2, 80: 1}  # action 3 (vid_b) is not evaluated
    assert result['map'] == 0.


# --- Evaluation on a person detector's boxes (paper 004: Detectron's) -----------------------

VAL_CSV = '''vid_a,0902,0.1,0.2,0.5,0.9,12,0
vid_a,0902,0.1,0.2,0.5,0.9,80,0
vid_a,0902,0.55,0.1,0.95,0.8,1,1
vid_a,0903,0.1,0.2,0.5,0.9,12,0
'''
# The detector found both persons of 902 and the one of 903 (AVA's 7-column form, no action),
# and a box that scores under the 0.8 threshold.
DETECTED = '''vid_a,0902,0.1,0.2,0.5,0.9,0.95
vid_a,0902,0.55,0.1,0.95,0.8,0.9
vid_a,0902,0.0,0.0,0.2,0.2,0.5
vid_a,0903,0.1,0.2,0.5,0.9,0.85
'''


def _ava_eval(tmp_path, boxes=None, thresh=0.8, on_bad_sample='error'):
    """Test split and frame mAP of an untrained narrow detector on a tiny AVA folder."""
    import chainer
    from chainer_yolo_dist.slowfast import data
    from chainer_yolo_dist.slowfast.evaluation import evaluate_actions
    from chainer_yolo_dist.slowfast.models import build_detector
    from chainer_yolo_dist.slowfast.settings import SlowFastData
    if not (tmp_path / 'frames').exists():
        make_frames(tmp_path, 'vid_a', 100, hw=(24, 32))
        write(tmp_path / 'ava_train_v2.2.csv', VAL_CSV)
        write(tmp_path / 'ava_val_v2.2.csv', VAL_CSV)
        for name in ('ava_action_list_v2.2.pbtxt',
                     'ava_action_list_v2.2_for_activitynet_2019.pbtxt'):
            write(tmp_path / name, LABEL_MAP_60)
    request = SlowFastData(dataset='ava', seed=0, n_class=80, on_bad_sample=on_bad_sample,
                           clip_frames=16, clip_size=32, data_dir=str(tmp_path),
                           n_train_clips=0, n_test_clips=0, max_actors=1, image_check='none',
                           eval_boxes=boxes, eval_score_thresh=thresh)
    _, test, _, reports = data.load_data(request)
    np.random.seed(0)
    detector = build_detector('slowfast_narrow', 80)
    with chainer.using_config('train', False):
        return test, evaluate_actions(detector, test, None, batchsize=1), reports


def test_a_detector_box_file_is_scored_against_the_ground_truth(tmp_path):
    truth, on_truth, _ = _ava_eval(tmp_path)
    assert truth.boxes == 'ground truth' and on_truth['boxes'] == 'ground truth'
    det = write(tmp_path / 'det.csv', DETECTED)
    test, on_det, reports = _ava_eval(tmp_path, det)
    assert on_det['boxes'] == '%s (score >= 0.8)' % det
    assert [len(test[i][1]) for i in range(len(test))] == [2, 1]   # 0.5 < 0.8: dropped
    assert not any(test[i][2].any() for i in range(len(test)))      # no labels from a detector
    # The detector found exactly the ground-truth boxes: the same scores, the same metric.
    assert on_det['n_frames'] == on_truth['n_frames'] == 2
    assert on_det['ap'] == on_truth['ap'] and on_det['map'] == on_truth['map']
    assert reports['test_boxes'].n_kept == 4
    # A threshold that keeps the stray box adds a detection of every class there.
    assert [len(t[1]) for t in _ava_eval(tmp_path, det, thresh=0.4)[0]] == [3, 1]
    # A frame without a detected box misses its ground truth: 'stand' (id 12) has two
    # ground-truth boxes, one of them on 903, so its recall, and AP, is at most 1/2.
    only_902 = write(tmp_path / 'det_902.csv', DETECTED.split('vid_a,0903')[0])
    _, partial, _ = _ava_eval(tmp_path, only_902)
    assert partial['n_frames'] == 2 and partial['ap'][12] <= 0.5 < on_truth['ap'][12]


def test_a_bad_detector_row_names_file_and_line(tmp_path):
    bad = write(tmp_path / 'det_bad.csv', 'vid_a,0902,0.1,0.2,0.5,0.9,0.95\n'
                                          'vid_a,0902,0.1,0.2,0.5,0.9,,1.5\n'
                                          'vid_a,0902,0.1,0.2\n')
    with pytest.raises(BadSampleError, match=r'det_bad.csv:2: score 1.5 is outside \[0, 1\]'):
        _ava_eval(tmp_path, bad)
    _, _, reports = _ava_eval(tmp_path, bad, on_bad_sample='skip')
    assert reports['test_boxes'].n_kept == 1
    assert [p for p, _ in reports['test_boxes'].problems] == [bad + ':2', bad + ':3']
