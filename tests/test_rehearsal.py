"""The rehearsal (docs/rehearsal.md): its paper-shaped data, the per-rank timing records it
reads, the figures it derives from them, and one tiny rehearsal end to end under mpiexec."""
import json
import os
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from chainer_yolo_dist.benchmarks import rehearsal, rehearsal_data as RD
from chainer_yolo_dist.core import timing
from chainer_yolo_dist.datasets import ImageNetDataset
from chainer_yolo_dist.datasets.validation import image_size
from chainer_yolo_dist.datasets.voc import voc07_test, voc0712_train
from conftest import check, run_python

TINY_VOC = {('2007', 'trainval'): 40, ('2012', 'trainval'): 30, ('2007', 'test'): 20}


def test_imagenet_class_counts_add_up_to_ilsvrc2012_within_its_class_sizes():
    counts = RD.class_counts(RD.IMAGENET_TRAIN, RD.IMAGENET_CLASSES)
    assert counts.sum() == 1281167 and len(counts) == 1000
    assert counts.max() == 1300 and counts.min() >= 732
    assert RD.class_counts(5, 5).tolist() == [1] * 5
    with pytest.raises(ValueError):
        RD.class_counts(1301, 1)


def test_voc_builder_writes_the_splits_with_valid_annotations(tmp_path):
    devkit = str(tmp_path / 'VOCdevkit')
    counts = RD.build_voc(devkit, TINY_VOC, pool_size=8, seed=3)
    assert {k: v['images'] for k, v in counts.items()} == {
        'VOC2007 trainval': 40, 'VOC2012 trainval': 30, 'VOC2007 test': 20}
    # VOC2007's trainval and test share one folder and never an id.
    ids = {s: open(os.path.join(devkit, 'VOC2007', 'ImageSets', 'Main', s + '.txt')).read()
           .split() for s in ('trainval', 'test')}
    assert len(ids['trainval']) == 40 and not set(ids['trainval']) & set(ids['test'])
    n_objects = n_difficult = 0
    for id_ in ids['test']:
        root = ET.parse(os.path.join(devkit, 'VOC2007', 'Annotations', id_ + '.xml')).getroot()
        jpeg = os.path.join(devkit, 'VOC2007', 'JPEGImages', id_ + '.jpg')
        height, width = image_size(jpeg)  # a real JPEG, fully decodable
        assert (int(root.findtext('size/height')), int(root.findtext('size/width'))) == (
            height, width)
        for obj in root.findall('object'):
            n_objects += 1
            n_difficult += int(obj.findtext('difficult'))
            box = [int(obj.findtext('bndbox/' + t)) for t in ('xmin', 'ymin', 'xmax', 'ymax')]
            assert 1 <= box[0] < box[2] <= width and 1 <= box[1] < box[3] <= height
    assert n_objects == counts['VOC2007 test']['objects'] >= 20
    assert n_difficult == counts['VOC2007 test']['difficult']
    # The project's own readers accept every image and box, with the policy at 'error'.
    train, test = voc0712_train(devkit), voc07_test(devkit)
    assert (len(train), len(test)) == (70, 20)
    assert train.report.n_boxes_dropped == 0 and test.report.n_boxes_dropped == 0


def test_voc_objects_per_image_follow_vocs_mean_and_share_of_difficult():
    rng = np.random.RandomState(0)
    objects = [RD.random_objects((375, 500), rng) for _ in range(4000)]
    per_image = np.array([len(o) for o in objects])
    assert abs(per_image.mean() - 2.4) < 0.1 and per_image.min() >= 1
    assert (per_image == 1).mean() > 0.35 and per_image.max() > 10
    difficult = np.mean([d for o in objects for _, d, _ in o])
    assert abs(difficult - 1 / 6.) < 0.02


def test_imagenet_builder_writes_list_files_of_distinct_links_to_a_pool(tmp_path):
    root = str(tmp_path / 'imagenet')
    info = RD.build_imagenet(root, n_train=60, n_val=10, n_class=5, pool_size=4, workers=2)
    assert (info['train'], info['val'], info['classes']) == (60, 10, 5)
    train = ImageNetDataset(root, 'train', list_file=info['train_list'])
    val = ImageNetDataset(root, 'val', list_file=info['val_list'], check_images=False)
    assert (len(train), len(val)) == (60, 10)
    labels = [int(train[i][1]) for i in range(len(train))]
    assert sorted(set(labels)) == [0, 1, 2, 3, 4]
    lines = open(info['train_list']).read().split('\n')[:-1]
    paths = [os.path.join(root, line.split()[0]) for line in lines]
    assert len(set(paths)) == 60  # every entry its own path...
    inodes = {os.stat(p).st_ino for p in paths}
    assert len(inodes) <= 4  # ...sharing the pool's files
    # The by-directory layout reads the same entries.
    assert len(ImageNetDataset(root, 'train', check_images=False)) == 60
    assert RD.disk_bytes(root) < 4 * 64 * 1024 + 64 * 1024
    # The footprint's dataset: one training entry, one validation entry per rank.
    one = RD.build_one_image(str(tmp_path / 'one'), 'imagenet', ranks=3)
    assert (one['train'], one['val']) == (1, 3)


def _record(rank, launch, updates, peak, check_images=(1.0, 3.0)):
    return {'rank': rank, 'process_start': launch + 0.5, 'first_update_start': launch + 10,
            'phases': {'check_images': [launch + check_images[0], launch + check_images[1]]},
            'updates': [[i + 1, launch + t, peak] for i, t in enumerate(updates)],
            'peak_rss_bytes': peak}


def test_rank_figures_follow_the_documented_definitions():
    figures = rehearsal.rank_figures(_record(1, 100.0, [14.0, 16.0, 19.0, 21.0], 7e8), 100.0)
    assert figures['to_update_start'] == 10 and figures['to_update_end'] == 14
    assert figures['process_to_update_start'] == 9.5
    assert figures['check_images'] == 2 and figures['load_data'] is None
    assert figures['seconds_per_iteration'] == 2  # median of 2, 3, 2
    assert figures['iterations'] == 4 and figures['peak_rss'] == 7e8


def test_targets_are_judged_on_the_slowest_rank_and_the_largest_excess():
    first = [rehearsal.rank_figures(_record(r, 0.0, [15.0], p), 0.0)
             for r, p in ((0, 9e8), (1, 6e8))]
    second = [dict(f, to_update_start=s) for f, s in zip(first, (5.0, 25.0))]
    one = [rehearsal.rank_figures(_record(r, 0.0, [15.0], 5e8), 0.0) for r in (0, 1)]
    beyond = rehearsal.beyond_footprint(first, one)
    assert beyond == [4e8, 1e8]
    verdicts = {t['target']: t for t in rehearsal.judge(
        'voc', {'first': first, 'second': second}, beyond)}
    assert verdicts['launch to first update, first start (s)']['met']
    assert not verdicts['launch to first update, second start (s)']['met']
    assert verdicts['launch to first update, second start (s)']['value'] == 25
    memory = verdicts['memory beyond the network\'s footprint (MB)']
    assert memory['value'] == 400 and not memory['met']
    assert rehearsal.judge('imagenet', {'first': first}, beyond)[-1]['met']  # 500 MB there


def test_timing_records_nothing_unless_asked(monkeypatch, tmp_path):
    monkeypatch.delenv(timing.ENV, raising=False)
    with timing.phase('not_recorded'):
        pass
    assert 'not_recorded' not in timing._PHASES
    monkeypatch.setenv(timing.ENV, str(tmp_path))
    with timing.phase('recorded'):
        pass
    start, end = timing._PHASES.pop('recorded')
    assert start <= end
    assert timing.process_start_time() <= start
    assert timing.peak_rss_bytes() > 10e6  # a Python with NumPy and Chainer loaded


@pytest.mark.slow  # three starts of a 2-rank job: about a minute on an idle 2-core machine
def test_a_tiny_rehearsal_runs_the_real_script_and_writes_its_record(tmp_path):
    """Two ranks, a tiny network on a tiny VOCdevkit: three starts, the second one finding
    every image check cached, and the record with every figure per rank."""
    out = tmp_path / 'bench'
    proc = check(run_python(
        ['scripts/rehearse.py', '--jobs', 'yolov2_voc_2018', '--ranks', '2', '--iterations',
         '2', '--scale', '0.001', '--extra', '--model yolov2_tiny --insize 64 '
         '--no-multiscale --loaderjob 0', '--out', str(out), '--workdir',
         str(tmp_path / 'work'), '--timeout', '240', '--keep'], timeout=900))
    record = json.loads((out / 'rehearsal_yolov2_voc_2018.json').read_text())
    assert record['ranks'] == 2 and record['data']['counts']['VOC2007 test']['images'] == 5
    for start in rehearsal.STARTS:
        assert [r['rank'] for r in record['starts'][start]] == [0, 1]
        for r in record['starts'][start]:
            assert 0 < r['to_process_start'] < r['to_update_start'] < r['to_update_end']
            assert r['iterations'] == 2 and r['seconds_per_iteration'] > 0
            assert r['peak_rss'] > 100e6
    assert '--model yolov2_tiny' in ' '.join(record['commands']['first'])
    assert any('2 images per rank instead of the preset\'s 16' in d
               for d in record['departures'])
    assert len(record['beyond_footprint_bytes']) == 2
    assert '| yolov2_voc_2018 | 1 |' in proc.stdout
    # The first start checks every image; the second finds them all in its cache.
    logs = {s: (tmp_path / 'work' / ('yolov2_voc_2018-%s.log' % s)).read_text()
            for s in ('first', 'second')}
    assert 'image checks: 0 images unchanged since a previous start (cached), 22' in logs['first']
    assert 'image checks: 22 images unchanged since a previous start (cached), 0' in logs['second']


@pytest.mark.slow  # three starts of a 2-rank job: about a minute on an idle 2-core machine
def test_a_tiny_imagenet_rehearsal_runs_train_darknet_on_the_list_files(tmp_path):
    out = tmp_path / 'bench'
    check(run_python(
        ['scripts/rehearse.py', '--jobs', 'darknet53_imagenet_2019', '--ranks', '2',
         '--iterations', '2', '--scale', '0.0001', '--imagenet-classes', '10', '--extra',
         '--model darknet_small --insize 64 --channels-scale 1/8 --loaderjob 0', '--out',
         str(out), '--workdir', str(tmp_path / 'work'), '--timeout', '240'], timeout=900))
    assert not (tmp_path / 'work').exists()  # removed without --keep
    record = json.loads((out / 'rehearsal_darknet53_imagenet_2019.json').read_text())
    assert (record['data']['counts']['train'], record['data']['counts']['val']) == (128, 10)
    assert '--train-list' in record['commands']['first']
    for start in rehearsal.STARTS:
        assert [r['iterations'] for r in record['starts'][start]] == [2, 2]
    assert [t['target'] for t in record['targets']] == [
        'launch to first update, first start (s)',
        'memory beyond the network\'s footprint (MB)']


def test_stop_ends_every_process_below_the_job_even_in_other_process_groups(tmp_path):
    """MPICH's proxy starts each rank in a process group of its own, and the ranks start
    forkserver and loader processes: stopping a start must leave none of them running."""
    import signal
    import subprocess
    import sys
    from chainer_yolo_dist.benchmarks.rehearsal import _alive, stop
    script = ('import subprocess, sys, time\n'
              'child = subprocess.Popen([sys.executable, "-c", "import signal, time; '
              'signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"], '
              'start_new_session=True)\n'
              'print(child.pid, flush=True)\n'
              'time.sleep(60)\n')
    proc = subprocess.Popen([sys.executable, '-c', script], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    grandchild = int(proc.stdout.readline())
    stop(proc, grace=1)
    assert proc.returncode == -signal.SIGTERM
    assert _alive([grandchild]) == []  # gone, or a zombie waiting for init to reap it
