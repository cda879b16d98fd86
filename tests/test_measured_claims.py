"""Every number README.md and docs/*.md state as measured comes from a committed file named
beside it, and holds that file's value.

The convention a writer follows:

* A measured number is written in the same item as the file that holds it. In README's
  "## Results" section an item is a bold-led paragraph (``**The demo** ...``) with everything
  up to the next one (its tables, notes and figures); in a docs page it is the paragraph that
  holds the number and the three before it (a table's preamble names its file). The file is
  named by its path under ``results/`` (``results/runs/demo/metrics.json``), by a folder of it
  at least three levels deep (``results/runs/study/``), or by a pattern
  (``results/bench/rehearsal_*.json``); what the tests themselves measure names the test
  (``tests/test_distributed.py``).
* :data:`CLAIMS` lists those numbers: the document, the text as written (which must appear in
  it verbatim), the number as written inside that text, the file, the key and a scale. A JSON
  key is a ``/``-separated path (list indices as numbers); a CSV key is ``row=<first column
  value>/<column>``; a callable takes the parsed JSON. The file's value times the scale must
  round to the number as written (same number of decimals).
* Guard: every item of README's Results section that states a number with a unit of time,
  size, rate or share (``s``, ``min``, ``ms``, ``MB``, ``images/s``, ``%``) or a mAP must name
  an existing file under ``results/`` or ``tests/``, so a new measured number without its file
  fails here even before it is added to :data:`CLAIMS`.
"""
import csv
import fnmatch
import glob
import json
import os
import re

import pytest

from conftest import REPO

DEMO = 'results/runs/demo/metrics.json'
STUDY = 'results/runs/study/study.csv'
CG = 'results/runs/demo-cyclegan/summary.json'
CG_RUN = 'results/runs/demo-cyclegan/cyclegan/metrics.json'
SF = 'results/runs/demo-slowfast/summary.json'
SF_RUN = 'results/runs/demo-slowfast/slowfast/metrics.json'
SLOW_RUN = 'results/runs/demo-slowfast/slow/metrics.json'
PAR = 'results/runs/parallelism/parallelism.csv'
LOADER = 'results/bench/loader.json'
V2, V3, D53 = ('results/bench/rehearsal_%s.json' % n for n in
               ('yolov2_voc_2018', 'yolov3_voc_2019', 'darknet53_imagenet_2019'))
STEP2 = 'results/bench/train_step_yolov2_416.json'
STEP3 = 'results/bench/train_step_yolov3_small_128.json'
LOSS = 'results/bench/loss_target_assignment.json'
DN1 = 'results/runs/darknet-demo/k1/metrics.json'
DN2 = 'results/runs/darknet-demo/k2/metrics.json'


def _slowest_second_start(data):
    """The rehearsal's "second start": launch to first update of the slowest rank."""
    return max(rank['to_update_start'] for rank in data['starts']['second'])


def _readme_rehearsal(row, first, second, memory, path):
    """README's rehearsal row: launch to first update (first start; second start, checks
    cached) and the memory beyond the network's own (MB), as the file's targets hold them."""
    said = '| %s | %s s (target 60) | %s | %s MB (target %d) |' % (
        row, first, '%s s (target 20)' % second if second else '29.2 s', memory,
        200 if second else 500)
    out = [('README.md', said, first, path, 'targets/0/value', 1),
           ('README.md', said, memory, path, 'targets/%d/value' % (2 if second else 1), 1)]
    if second:
        out.append(('README.md', said, second, path, 'targets/1/value', 1))
    return out


#: (document, text as written, number as written, file, key, scale).
CLAIMS = [
    ('README.md', 'mAP 0.843 after 778 s of training', '0.843', DEMO, 'map', 1),
    ('README.md', 'mAP 0.843 after 778 s of training', '778', DEMO, 'elapsed_seconds', 1),
] + [
    ('README.md', '| %s | %s |' % (share, value), value, STUDY, 'row=%s/map_percent' % run, 1)
    for run, share, value in (('k01', '0.0025', '61.5'), ('k02', '0.005', '74.5'),
                              ('k04', '0.01', '78.9'), ('k08', '0.02', '72.0'),
                              ('k16', '0.04', '36.9'), ('k32-sqrt', '0.0141', '27.5'))
] + [
    ('README.md', 'real B 4.23 against 14.36', '4.23', CG, 'cyclegan/fid', 1),
    ('README.md', 'real B 4.23 against 14.36', '14.36', CG, 'cyclegan/fid_baseline', 1),
    ('README.md', 'cycle loss 7.29 to 2.63', '7.29', CG, 'cyclegan/cycle_loss_first', 1),
    ('README.md', 'cycle loss 7.29 to 2.63', '2.63', CG, 'cyclegan/cycle_loss_last', 1),
    ('README.md', '77.06 mAP@0.5', '77.06', CG, 'detectors/detector_a/map_percent', 1),
    ('README.md', 'real + translated 75.22', '75.22', CG, 'detectors/detector_c/map_percent', 1),
    ('README.md', 'clips 0.445 for the narrow SlowFast', '0.445', SF, 'map/slowfast', 1),
    ('README.md', '0.426\nfor Slow-only', '0.426', SF, 'map/slow', 1),
    ('README.md', 'chance 0.247', '0.247', SF, 'chance', 1),
    ('README.md', 'blink: AP 0.881 against 0.349', '0.881', SF, 'runs/slowfast/ap/blink', 1),
    ('README.md', 'blink: AP 0.881 against 0.349', '0.349', SF, 'runs/slow/ap/blink', 1),
    ('README.md', 'top-1 0.977 sync', '0.977', PAR, 'row=sync-k2/final_top1', 1),
    ('README.md', '0.797 async', '0.797', PAR, 'row=async-k2/final_top1', 1),
    ('README.md', '0.980 local', '0.980', PAR, 'row=local-k2/final_top1', 1),
    ('README.md', '0.719 stale', '0.719', PAR, 'row=stale-k2/final_top1', 1),
    ('README.md', 'waited 23-45 s', '23', PAR, 'row=sync-k4/wait_mean_s', 1),
    ('README.md', 'waited 23-45 s', '45', PAR, 'row=sync-k2/wait_mean_s', 1),
    ('README.md', 'detection at 608 140 images/s', '140', LOADER,
     'cases/detection_608/readers/datasets/images_per_s_per_core', 1),
    ('README.md', 'at\n416 161', '161', LOADER,
     'cases/detection_416/readers/datasets/images_per_s_per_core', 1),
    ('README.md', 'classification at 224 354', '354', LOADER,
     'cases/classification_224/readers/datasets/images_per_s_per_core', 1),
] + _readme_rehearsal(
    '`yolov2_voc_2018` (416, batch 2 per rank)', '19.9', '14.5', '64', V2) + _readme_rehearsal(
    '`yolov3_voc_2019` (608, batch 1 per rank)', '21.7', '18.0', '64', V3) + _readme_rehearsal(
    '`darknet53_imagenet_2019` (256, batch 8 per rank)', '50.2', None, '81', D53) + [
    ('README.md', '50.2 s (target 60) | 29.2 s |', '29.2', D53, _slowest_second_start, 1),
    ('README.md', '| YOLOv2, 416, 4 | 1 | 0.58 |', '0.58', STEP2,
     'runs/0/images_per_second_per_process', 1),
    ('README.md', '| YOLOv2, 416, 4 | 2 | 0.51 | 1.02 | 1.77x |', '1.02', STEP2,
     'runs/1/images_per_second_total', 1),
    ('README.md', '| YOLOv2, 416, 4 | 2 | 0.51 | 1.02 | 1.77x |', '1.77', STEP2,
     'runs/1/speedup_vs_first', 1),
    ('README.md', '| 1.77x | 0.1% | 1.2% |', '1.2', STEP2, 'runs/1/phase_share/allreduce', 100),
    ('README.md', '| small YOLOv3, 128, 8 | 1 | 32.0 |', '32.0', STEP3,
     'runs/0/images_per_second_per_process', 1),
    ('README.md', '| small YOLOv3, 128, 8 | 2 | 27.4 | 54.8 | 1.71x |', '54.8', STEP3,
     'runs/1/images_per_second_total', 1),
    ('README.md', '| 1.71x | 0.7% | 3.8% |', '3.8', STEP3, 'runs/1/phase_share/allreduce', 100),
    ('README.md', 'YOLOv2 1.4 ms', '1.4', LOSS, 'results/0/assign_ms_median', 1),
    ('README.md', 'top-1 1.000 on\n1 and on 2 processes', '1.000', DN1, 'top1', 1),
    ('README.md', 'top-1 1.000 on\n1 and on 2 processes', '1.000', DN2, 'top1', 1),
    ('README.md', '101.8 s and 133.9 s of training', '101.8', DN1, 'elapsed_seconds', 1),
    ('README.md', '101.8 s and 133.9 s of training', '133.9', DN2, 'elapsed_seconds', 1),
    ('docs/darknet_training.md', '| 1 | 101.8 s | 100.5 | 1.000 |', '100.5', DN1,
     'images_per_second', 1),
    ('docs/darknet_training.md', '| 2 | 133.9 s | 76.5 | 1.000 |', '76.5', DN2,
     'images_per_second', 1),
    ('docs/darknet_training.md', '| 2 | 133.9 s | 76.5 | 1.000 |', '1.000', DN2, 'top1', 1),
    ('README.md', 'YOLOv3 6.8 ms', '6.8', LOSS, 'results/1/assign_ms_median', 1),
    ('docs/study.md', 'It took 7,574 s (126 min)', '7,574', 'results/runs/study/study.json',
     'wall_seconds', 1),
    ('docs/study.md', 'the square-root run 664 s', '664', 'results/runs/study/study.json',
     lambda d: [r for r in d['runs'] if r['name'] == 'k32-sqrt'][0]['wall_seconds'], 1),
    ('docs/parallelism.md', '12 runs in 726 s', '726', 'results/runs/parallelism/parallelism.json',
     'wall_seconds', 1),
    # docs/cyclegan.md, "Measured demo"
    ('docs/cyclegan.md', 'took 983 s of training', '983', CG, 'cyclegan/elapsed_seconds', 1),
    ('docs/cyclegan.md', 'detectors 375 s and 381 s', '375', CG,
     'detectors/detector_a/elapsed_seconds', 1),
    ('docs/cyclegan.md', 'detectors 375 s and 381 s', '381', CG,
     'detectors/detector_c/elapsed_seconds', 1),
    ('docs/cyclegan.md', 'Untranslated A against real B: 14.36', '14.36', CG_RUN,
     'fid_baseline', 1),
    ('docs/cyclegan.md', 'fell from 7.29 at the start to 2.63', '7.29', CG_RUN,
     'cycle_loss_first', 1),
    ('docs/cyclegan.md', 'fell from 7.29 at the start to 2.63', '2.63', CG_RUN,
     'cycle_loss_last', 1),
    ('docs/cyclegan.md', '| (a) real only, 128 images | 198 | 84 | 65 | 0.70 | 0.75 | 0.73 | '
     '77.06 |', '77.06', CG, 'detectors/detector_a/map_percent', 1),
    ('docs/cyclegan.md', '| (c) real + 128 translated "CG" | 201 | 113 | 62 |', '113', CG,
     'detectors/detector_c/fp', 1),
] + [
    ('docs/cyclegan.md', '| generated B = G_AB(A) | 9.91 | 3.89 | 2.63 | 2.26 | 2.42 | 4.23 |',
     value, CG_RUN, 'fid_history/%d/1' % i, 1)
    for i, value in enumerate(('9.91', '3.89', '2.63', '2.26', '2.42', '4.23'))
] + [
    # docs/slowfast.md, "Measured demo"
    ('docs/slowfast.md', '| **0.445** | 822 s | 19.5 |', '0.445', SF_RUN, 'map', 1),
    ('docs/slowfast.md', '| **0.445** | 822 s | 19.5 |', '822', SF_RUN, 'elapsed_seconds', 1),
    ('docs/slowfast.md', '| **0.445** | 822 s | 19.5 |', '19.5', SF_RUN, 'images_per_second',
     1),
    ('docs/slowfast.md', '| **0.426** | 345 s | 46.4 |', '0.426', SLOW_RUN, 'map', 1),
    ('docs/slowfast.md', '| **0.426** | 345 s | 46.4 |', '345', SLOW_RUN, 'elapsed_seconds', 1),
    ('docs/slowfast.md', '| **0.426** | 345 s | 46.4 |', '46.4', SLOW_RUN, 'images_per_second',
     1),
    ('docs/slowfast.md', '| 0.247 | | |', '0.247', SF, 'chance', 1),
    ('docs/slowfast.md', '| SlowFast | 0.004 | 0.152 | 0.204 | 0.425 | 0.012 | 0.797 |', '0.797',
     SF, 'runs/slowfast/profile/mean/step', 1),
    ('docs/slowfast.md', '| 0.797 | 46.4% / 53.6% |', '53.6', SF,
     'runs/slowfast/profile/table4/communication', 100),
    ('docs/slowfast.md', '| Slow-only | 0.003 | 0.071 | 0.058 | 0.187 | 0.005 | 0.324 |', '0.324',
     SF, 'runs/slow/profile/mean/step', 1),
    ('docs/slowfast.md', '`blink` 0.881 against\n0.349', '0.881', SF, 'runs/slowfast/ap/blink', 1),
]


def _read(relpath):
    with open(os.path.join(REPO, relpath), encoding='utf-8') as f:
        return f.read()


def _value(relpath, key):
    path = os.path.join(REPO, relpath)
    if relpath.endswith('.csv'):
        row_id, column = re.fullmatch(r'row=([^/]+)/(.+)', key).groups()
        with open(path, newline='', encoding='utf-8') as f:
            rows = [r for r in csv.DictReader(f) if next(iter(r.values())) == row_id]
        assert len(rows) == 1, (relpath, row_id)
        return float(rows[0][column])
    with open(path, encoding='utf-8') as f:
        data = json.load(f)
    if callable(key):
        return float(key(data))
    for part in key.split('/'):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return float(data)


def _blocks(text):
    return re.split(r'\n\s*\n', text)


def _named_paths(text):
    """Paths under results/ or tests/ named in ``text`` (backquoted or bare)."""
    return set(re.findall(r'(?<![\w/.])((?:results|tests)/[\w./*-]+\w/?)', text))


def _names(named, relpath):
    """Whether the path or pattern ``named`` names ``relpath``: the path itself, a pattern that
    matches it, or a folder of it at least three levels deep."""
    named = named.rstrip('/')
    if relpath == named or fnmatch.fnmatch(relpath, named):
        return True
    return named.count('/') >= 2 and relpath.startswith(named + '/')


def _item(doc, text, position):
    """The text of the item that holds ``position`` (the module doc says what an item is)."""
    if doc == 'README.md':
        results = text.index('## Results')
        start = text.rfind('\n**', results, position + 1)
        end = text.find('\n**', position)
        end = min(e for e in (end, text.find('\n## ', position)) if e >= 0)
        return text[start:end]
    blocks, at = _blocks(text), 0
    for i, block in enumerate(blocks):
        at = text.index(block, at) + len(block)
        if at > position:
            return '\n\n'.join(blocks[max(0, i - 3):i + 1])
    raise AssertionError('position beyond the text')


@pytest.mark.parametrize('doc, said, number, relpath, key, scale', CLAIMS,
                         ids=['%s:%s' % (c[0], c[2]) for c in CLAIMS])
def test_each_measured_number_is_the_value_of_the_file_named_beside_it(
        doc, said, number, relpath, key, scale):
    text = _read(doc)
    assert said in text, '%s no longer says %r: update CLAIMS with the text' % (doc, said)
    assert number in said
    assert os.path.isfile(os.path.join(REPO, relpath)), relpath
    item = _item(doc, text, text.index(said))
    assert any(_names(p, relpath) for p in _named_paths(item)), (
        '%s states %s without naming %s beside it' % (doc, number, relpath))
    written = float(number.replace(',', ''))
    decimals = len(number.split('.')[1]) if '.' in number else 0
    value = _value(relpath, key) * scale
    assert abs(value - written) <= 0.5 * 10 ** -decimals + 1e-9, (
        '%s says %s; %s holds %r' % (doc, number, relpath, value))


MEASURED = re.compile(r'\d[\d,.]*\s?(?:s|min|ms|MB|GB|images/s|%)(?![\w/])|mAP')


def _readme_results_items():
    text = _read('README.md')
    section = text[text.index('## Results'):]
    section = section[:section.index('\n## ', 1)]
    return [item for item in re.split(r'\n(?=\*\*)', section)[1:]]


def test_every_readme_result_with_a_measured_number_names_its_file():
    items = _readme_results_items()
    assert len(items) >= 10
    for item in items:
        if not MEASURED.search(item):
            continue
        named = [p for p in _named_paths(item)
                 if glob.glob(os.path.join(REPO, p.rstrip('/')))]
        assert named, 'README Results item without a committed file: %r' % item[:120]


def test_the_guard_catches_a_number_without_its_file():
    assert MEASURED.search('trains in 512 s on two cores')
    assert MEASURED.search('reaches mAP 0.84')
    assert not _named_paths('trains in 512 s on two cores (docs/study.md)')
    assert _names('results/runs/study/', STUDY) and _names('results/bench/rehearsal_*.json', V2)
    assert not _names('results/', STUDY) and not _names('results/runs/', STUDY)


def test_readme_demo_numbers_are_those_of_the_committed_demo_run():
    """Issue 25: README once gave 0.839 in 512 s while the committed run holds another."""
    text = _read('README.md')
    metrics = json.loads(_read(DEMO))
    assert '%.3f' % metrics['map'] in text
    assert format(round(metrics['elapsed_seconds']), ',') + ' s' in text
    assert '0.839' not in text and '512 s' not in text
