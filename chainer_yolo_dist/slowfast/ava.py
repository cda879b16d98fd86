"""AVA v2.2 as distributed, read from disk only (never downloaded), under the bad-input policy.

Files the user supplies (names as on the AVA download page and in PySlowFast's ``DATASET.md``):

* ``ava_{train,val}_v2.2.csv``: one row per (person box, action) at a keyframe:
  ``video_id, second, x1, y1, x2, y2, action_id, person_id`` with coordinates normalised to
  ``[0, 1]`` and ``second`` in 902..1798 (the 15th to 30th minute).
* ``ava_action_list_v2.2.pbtxt`` (all trained actions) and
  ``ava_action_list_v2.2_for_activitynet_2019.pbtxt`` (the 60 evaluated actions): ``item { name:
  "..." id: N }`` blocks (``label_id`` is accepted for ``id``). The 60-class list is read from this
  file; nothing is hard-coded.
* ``ava_{train,val}_excluded_timestamps_v2.2.csv``: ``video_id, second`` rows not evaluated.
* person-detector boxes for validation, e.g. PySlowFast's
  ``person_box_67091280_iou90/ava_detection_val_boxes_and_labels.csv``:
  ``video_id, second, x1, y1, x2, y2, (empty or an action id), score``, or the same without
  the action column (7 columns); boxes scoring under 0.8 are dropped (PySlowFast
  ``AVA.DETECTION_SCORE_THRESH: 0.8`` in ``SLOWFAST_32x2_R50_SHORT``).
* frames: ``<root>/frames/<video_id>/<video_id>_%06d.jpg``, the 15-minute segment from second 900
  decoded at 30 fps and numbered from 1 by ffmpeg (PySlowFast ``DATASET.md``: ``ffmpeg -ss 900 -t
  901``, then ``-r 30 -q:v 1 "<video_id>_%06d.jpg"``). Frame index ``i`` (0-based) is file
  ``i + 1``; the keyframe of second ``s`` is frame ``(s - 900) * 30`` (PySlowFast
  ``ava_helper.sec_to_frame``).

Clip sampling. A clip is ``n_frames`` frames at stride ``stride`` centred on the keyframe:
``range(k - n*stride/2, k + n*stride/2, stride)`` clamped to the video, as PySlowFast's
``utils.get_sequence``; these are the Fast pathway's frames and the network's Slow pathway takes
every alpha-th (:mod:`.networks`). Two readings (:data:`CLIP_READINGS`):

* ``'paper004'`` (default): paper 004 sec. 3.2 counts 16 frames read per label for the Fast
  pathway (tau = 8, alpha = 4 at 32 fps: Fast at 16 fps, stride 2) and sec. 3.3 builds its I/O
  volume on it (32 labels x 16 frames = 512 images per node and iteration). 16 Fast frames at
  stride 2 (Slow: 4 frames at stride 8), one second of video.
* ``'slowfast_32x2'``: PySlowFast's published AVA configuration ``SLOWFAST_32x2_R50_SHORT``
  (``DATA.NUM_FRAMES 32, SAMPLING_RATE 2``), the package's choice for what paper 004 leaves
  to "[1]" (the SlowFast paper; it names no configuration file): 32 Fast frames at stride 2
  (Slow: 8 at stride 8), about two seconds.

AVA frames are decoded at 30 fps; paper 004's "32 fps" is its round figure for the arithmetic.

Start-up image checks (``--image-check``; :func:`keyframe_files`). What the clips read is far
more than the other systems' data: 299 videos (235 training, 64 validation) of 27,030
extracted frames are 8.1 M files, and the clips of the at most 897 keyframes a video (one a
second, 902..1798) read about half of them, 4.0 M (16 frames at stride 2 around each keyframe,
or 32 for ``slowfast_32x2``: 13,456 and 13,472 distinct frames a video). A check of every one
would list 4 M paths on every rank and keep 4 M entries in the cache, and a decode of them
take CPU-hours. The check reads what is proportionate instead: each example's keyframe, at
most 268,203 files (the scale of VOC's 21,503 and ImageNet's 1.33 M), and for each video the
frame count as before (a video without frames drops its keyframes). The keyframe is the frame
the boxes are annotated on, and a clip whose extraction broke off or whose keyframe is
missing or unreadable is refused before training; another frame of a clip that is unreadable
is found when the clip is read, and named then (:meth:`AVAClips._read`).

Conventions of the examples: ``clip`` uint8 ``(3, T, H, W)`` RGB in ``[0, 255]`` (the decoded
frames' dtype: it stays uint8 through the augmentation and the copy to the device, where it is
normalised; see :mod:`.batch`), resized so the short side is ``size`` (PySlowFast tests on the
full frame at that size); ``bbox`` float32
``(R, 4)`` ``(y_min, x_min, y_max, x_max)`` in pixels of the resized frame; ``label`` int32
``(R, n_class)`` multi-hot, column ``j`` = action id ``j + 1``.
"""
import collections
import csv
import os
import re

import cv2
import numpy as np

from chainercv.chainer_experimental.datasets.sliceable import GetterDataset

from chainer_yolo_dist.datasets import image_checks
from chainer_yolo_dist.datasets import validation as V

#: Frame rate of the extracted frames and the first second of the annotated segment.
FPS = 30
FIRST_SECOND = 900
#: Seconds that carry keyframes (PySlowFast ``AVA_VALID_FRAMES = range(902, 1799)``).
VALID_SECONDS = range(902, 1799)
#: AVA v2.2 trains 80 actions (ids 1..80) and evaluates 60 of them.
N_ACTIONS = 80
#: Person-detector score threshold for validation boxes (PySlowFast SLOWFAST_32x2_R50_SHORT).
DETECTION_SCORE_THRESH = 0.8
#: Input short side (reading: PySlowFast TEST_CROP_SIZE 224; paper 004 sec. 3.2 names
#: 224 x 224 only in a data-volume estimate).
SIZE = 224

ClipReading = collections.namedtuple('ClipReading', ['n_frames', 'stride'])
#: Fast-pathway frames per clip and their stride in 30-fps frames; see the module docstring.
CLIP_READINGS = {
    'paper004': ClipReading(16, 2),       # paper 004 sec. 3.2 (16 frames per label)
    'slowfast_32x2': ClipReading(32, 2),  # PySlowFast configs/AVA/SLOWFAST_32x2_R50_SHORT.yaml
}
DEFAULT_READING = 'paper004'


def _where(path, line):
    return '%s:%d' % (path, line)


def read_label_map(path, report=None):
    """``[(id, name)]`` of an AVA ``.pbtxt`` action list, in file order.

    Raises :class:`~chainer_yolo_dist.datasets.validation.BadSampleError` naming ``file:line``
    for an item without a name or an integer id, or a repeated id (a label map is never skipped
    around: a wrong one would silently change the evaluated classes).
    """
    report = report or V.BadSampleReport('error')
    if not os.path.isfile(path):
        raise V.BadSampleError('%s: label map file missing' % path)
    items, name, ident, start = [], None, None, None
    with open(path) as f:
        for n, line in enumerate(f, 1):
            s = line.strip()
            if s.startswith('item'):
                name, ident, start = None, None, n
            elif s.startswith('name:'):
                m = re.match(r'name:\s*"(.*)"\s*$', s)
                name = m.group(1) if m else None
            elif s.startswith('id:') or s.startswith('label_id:'):
                try:
                    ident = int(s.split(':', 1)[1])
                except ValueError:
                    raise V.BadSampleError('%s: id is not an integer: %r' % (_where(path, n), s))
            elif s.startswith('}'):
                if start is None:
                    raise V.BadSampleError('%s: "}" without "item {"' % _where(path, n))
                if name is None or ident is None:
                    raise V.BadSampleError('%s: item without %s' % (
                        _where(path, start), 'a quoted name' if name is None else 'an id'))
                if any(ident == i for i, _ in items):
                    raise V.BadSampleError('%s: id %d repeated' % (_where(path, start), ident))
                items.append((ident, name))
                start = None
    if not items:
        raise V.BadSampleError('%s: no "item { name: ... id: ... }" entries' % path)
    return items


BoxRow = collections.namedtuple('BoxRow', ['video_id', 'second', 'box', 'action', 'extra'])


def read_box_csv(path, report, n_actions=N_ACTIONS, scored=False):
    """Rows of an AVA box CSV; bad rows are reported as ``file:line`` under ``report``'s policy.

    Args:
        path (str): the CSV.
        report (BadSampleReport): collects (or raises at) bad rows.
        n_actions (int): action ids must lie in ``[1, n_actions]``.
        scored (bool): detector-box file (last column a score in [0, 1], action may be empty
            or its column absent).

    Returns:
        list of :class:`BoxRow`: ``box`` is ``(y1, x1, y2, x2)`` normalised, ``action`` the action
        id (-1 when empty in a detector file), ``extra`` the person id or the detector score.
    """
    if not os.path.isfile(path):
        raise V.BadSampleError('%s: annotation file missing' % path)
    rows = []
    with open(path, newline='') as f:
        for n, row in enumerate(csv.reader(f), 1):
            if not row or all(not c.strip() for c in row):
                continue
            where = _where(path, n)
            report.n_checked += 1
            parsed = _parse_row(row, where, report, n_actions, scored)
            if parsed is not None:
                rows.append(parsed)
                report.n_kept += 1
    return rows


def _parse_row(row, where, report, n_actions, scored):
    if scored and len(row) == 7:  # a detector file without the action column
        row = row[:6] + [''] + row[6:]
    if len(row) != 8:
        report.record(V.MALFORMED_ENTRY, where, 'has %d columns, expected %s'
                      % (len(row), '7 or 8' if scored else '8'))
        return None
    try:
        video_id = row[0].strip()
        second = int(row[1])
        x1, y1, x2, y2 = (float(c) for c in row[2:6])
        action = -1 if (scored and not row[6].strip()) else int(row[6])
        extra = float(row[7]) if scored else int(row[7])
    except ValueError as e:
        report.record(V.MALFORMED_ENTRY, where, 'is malformed (%s)' % e)
        return None
    if not video_id or second not in VALID_SECONDS:
        report.record(V.MALFORMED_ENTRY, where, 'has second %d outside %d..%d'
                      % (second, VALID_SECONDS[0], VALID_SECONDS[-1]))
        return None
    problem = V.box_problem((y1, x1, y2, x2), 1, 1)
    if problem is not None:
        report.record(problem[0], where, 'box (normalised) %s' % problem[1])
        return None
    if not (action == -1 and scored) and not 1 <= action <= n_actions:
        report.record(V.LABEL_OUT_OF_RANGE, where, 'action id %d is outside [1, %d]'
                      % (action, n_actions))
        return None
    if scored and not 0. <= extra <= 1.:
        report.record(V.MALFORMED_ENTRY, where, 'score %r is outside [0, 1]' % extra)
        return None
    return BoxRow(video_id, second, (y1, x1, y2, x2), action, extra)


def read_exclusions(path, report):
    """Set of ``(video_id, second)`` of an excluded-timestamps CSV (2 columns per row)."""
    if not os.path.isfile(path):
        raise V.BadSampleError('%s: exclusion file missing' % path)
    out = set()
    with open(path, newline='') as f:
        for n, row in enumerate(csv.reader(f), 1):
            if not row:
                continue
            try:
                if len(row) != 2:
                    raise ValueError('%d columns, expected 2' % len(row))
                out.add((row[0].strip(), int(row[1])))
            except ValueError as e:
                report.record(V.MALFORMED_ENTRY, _where(path, n), 'is malformed (%s)' % e)
    return out


def group_keyframes(rows, n_actions=N_ACTIONS, min_score=None):
    """Keyframes in first-seen order: ``{(video_id, second): (boxes (R, 4), labels (R, n))}``.

    Rows of the same box (same four coordinates, as PySlowFast keys boxes) are merged into one
    multi-hot label row. ``boxes`` are normalised ``(y1, x1, y2, x2)`` float32; ``labels`` int32.
    With ``min_score`` (detector files) rows scoring under it are left out.
    """
    frames = collections.OrderedDict()
    for r in rows:
        if min_score is not None and r.extra < min_score:
            continue
        boxes = frames.setdefault((r.video_id, r.second), collections.OrderedDict())
        label = boxes.setdefault(r.box, np.zeros(n_actions, np.int32))
        if r.action > 0:
            label[r.action - 1] = 1
    return collections.OrderedDict(
        (k, (np.array(list(v.keys()), np.float32).reshape(-1, 4),
             np.array(list(v.values()), np.int32).reshape(-1, n_actions)))
        for k, v in frames.items())


def keyframe_index(second):
    """0-based frame index of the keyframe of ``second`` in the extracted 30-fps frames."""
    return (int(second) - FIRST_SECOND) * FPS


def clip_frame_indices(center, n_frames, stride, n_video_frames):
    """``n_frames`` indices at ``stride`` around ``center``, clamped to ``[0, n_video_frames)``."""
    half = n_frames * stride // 2
    idx = np.arange(center - half, center + half, stride)
    return np.clip(idx, 0, n_video_frames - 1)


def frame_path(frames_dir, video_id, index):
    """Path of 0-based frame ``index`` of ``video_id`` (ffmpeg numbers files from 1)."""
    return os.path.join(frames_dir, video_id, '%s_%06d.jpg' % (video_id, index + 1))


def keyframe_files(root, box_csv, scored=False):
    """The keyframe file of every keyframe of ``box_csv`` under ``root/frames``, sorted and
    without repeats (for the start-up checks across the ranks: :meth:`AVAClips.keyframe_path`
    of each example of an :class:`AVAClips` of the same files). Bad rows are left out here
    (the dataset reports them); a missing CSV gives ``[]`` (the dataset names it).
    ``scored``: a detector-box file (:func:`read_box_csv`)."""
    if not os.path.isfile(box_csv):
        return []
    frames_dir = os.path.join(root, 'frames')
    keys = {(r.video_id, r.second) for r in read_box_csv(box_csv, V.BadSampleReport('skip'),
                                                         scored=scored)}
    return sorted(frame_path(frames_dir, video, keyframe_index(second))
                  for video, second in keys)


def count_frames(frames_dir, video_id):
    """Number of ``<video_id>_NNNNNN.jpg`` files, or None if the directory is missing."""
    d = os.path.join(frames_dir, video_id)
    if not os.path.isdir(d):
        return None
    pattern = re.compile(r'^%s_\d{6}\.jpg$' % re.escape(video_id))
    return sum(1 for name in os.listdir(d) if pattern.match(name))


class AVAClips(GetterDataset):
    """AVA keyframes as ``(clip, bbox, label)`` examples (see the module docstring).

    Args:
        root (str): directory holding ``frames/``.
        box_csv (str): ``ava_{train,val}_v2.2.csv`` (ground truth), or a detector-box CSV.
        reading (str): a key of :data:`CLIP_READINGS`.
        size (int): short side of the returned frames in pixels.
        scored (bool): ``box_csv`` is a detector-box file (labels all zero, score-filtered).
        min_score (float): detector score threshold when ``scored``.
        exclusions (str): optional excluded-timestamps CSV; its keyframes are left out.
        n_actions (int): label width (80).
        on_bad_sample (str): ``'error'`` or ``'skip'``; bad CSV rows are named ``file:line``, a
            video without frames drops its keyframes and is named by its directory, an
            example whose keyframe file is missing or unreadable (see ``image_check``) is
            dropped and named by that file.
        image_check (str): how each example's keyframe file is checked now: 'none' (the
            default here: not opened), 'header' or 'decode'; the start-up checks' results
            (:func:`keyframe_files`, checked across the ranks) answer for the files they
            covered. The module docstring says why the keyframe only.

    Attributes: ``frame_keys`` (list of ``(video_id, second)`` per example), ``report``,
    ``annotations`` (per example ``(boxes (R, 4) normalised (y1, x1, y2, x2) float32, labels
    (R, n_actions) int32 multi-hot)``, as in the CSV, before any resizing).
    """

    def __init__(self, root, box_csv, reading=DEFAULT_READING, size=SIZE, scored=False,
                 min_score=DETECTION_SCORE_THRESH, exclusions=None, n_actions=N_ACTIONS,
                 on_bad_sample='error', image_check='none'):
        super(AVAClips, self).__init__()
        if reading not in CLIP_READINGS:
            raise ValueError('reading must be one of %s, got %r' % (sorted(CLIP_READINGS),
                                                                    reading))
        self.reading = CLIP_READINGS[reading]
        self.size = size
        self.n_actions = n_actions
        self.frames_dir = os.path.join(root, 'frames')
        self.report = V.BadSampleReport(on_bad_sample)
        rows = read_box_csv(box_csv, self.report, n_actions, scored)
        frames = group_keyframes(rows, n_actions, min_score if scored else None)
        excluded = read_exclusions(exclusions, self.report) if exclusions else set()
        self._n_video_frames = {}
        self.frame_keys, self._annotations = [], []
        for key, ann in frames.items():
            if key in excluded:
                continue
            video = key[0]
            if video not in self._n_video_frames:
                n = count_frames(self.frames_dir, video)
                self._n_video_frames[video] = n
                if not n:
                    self.report.record(V.MISSING_IMAGE, os.path.join(self.frames_dir, video),
                                       'no %s_NNNNNN.jpg frames' % video)
            if self._n_video_frames[video]:
                self.frame_keys.append(key)
                self._annotations.append(ann)
        image_check = image_checks.image_check_mode(image_check)
        if image_check != 'none':
            self._check_keyframes(image_check == 'decode')
        self.add_getter(('clip', 'bbox', 'label'), self._get)

    def __len__(self):
        return len(self.frame_keys)

    @property
    def annotations(self):
        return list(self._annotations)

    def frame_indices(self, i):
        """0-based frame indices of example ``i``'s clip (Fast pathway order)."""
        video, second = self.frame_keys[i]
        return clip_frame_indices(keyframe_index(second), self.reading.n_frames,
                                  self.reading.stride, self._n_video_frames[video])

    def keyframe_path(self, i):
        """The file of example ``i``'s keyframe (the clip's centre frame, clamped as the
        clip's frames are to the video's last frame)."""
        video, second = self.frame_keys[i]
        index = min(keyframe_index(second), self._n_video_frames[video] - 1)
        return frame_path(self.frames_dir, video, index)

    def _check_keyframes(self, decode):
        """Applies the bad-input policy to the examples' keyframe files."""
        paths = [self.keyframe_path(i) for i in range(len(self.frame_keys))]
        status, problems = image_checks.file_status(paths, decode)
        bad = np.flatnonzero(status != 0)
        for i in bad:
            self.report.record(problems[int(i)][0], paths[i], problems[int(i)][1])
        if len(bad):
            keep = np.ones(len(paths), bool)
            keep[bad] = False
            self.frame_keys = [k for k, ok in zip(self.frame_keys, keep) if ok]
            self._annotations = [a for a, ok in zip(self._annotations, keep) if ok]

    def _read(self, path):
        """One frame, uint8 ``(H, W, 3)`` RGB with the short side ``size``.

        Read by the package's one reader
        (:func:`~chainer_yolo_dist.datasets.validation.read_image`, as uint8): a missing or
        unreadable frame, and a JPEG cut short (``cv2.imread`` alone decodes the part it has
        and greys the rest), raise :class:`BadSampleError` naming the file. Linear resizing
        treats the channels alike, so resizing RGB gives the pixels of resizing BGR."""
        img = V.read_image(path, dtype=np.uint8).transpose(1, 2, 0)  # the decoder's HWC memory
        h, w = img.shape[:2]
        scale = float(self.size) / min(h, w)
        if scale != 1:
            img = cv2.resize(img, (int(round(w * scale)), int(round(h * scale))),
                             interpolation=cv2.INTER_LINEAR)
        return img

    def _get(self, i):
        video, _ = self.frame_keys[i]
        frames = [self._read(frame_path(self.frames_dir, video, k))
                  for k in self.frame_indices(i)]
        clip = np.stack(frames).transpose(3, 0, 1, 2)  # (3, T, H, W), uint8 as decoded
        h, w = clip.shape[2:]
        boxes, labels = self._annotations[i]
        bbox = boxes * np.array([h, w, h, w], np.float32)
        return clip, bbox, labels.copy()


def evaluated_class_ids(label_map_path):
    """Action ids of an AVA label map (the 60 evaluated ones for the ActivityNet 2019 list)."""
    return [i for i, _ in read_label_map(label_map_path)]
