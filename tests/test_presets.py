"""The paper presets: values against the papers' printed numbers, overrides, file citations."""
import dataclasses
import os
import re

import pytest

from chainer_yolo_dist.core import presets
from chainer_yolo_dist.core.schedules import LRSchedule

approx = pytest.approx
PAPER_PRESETS = ('darknet19_imagenet_2019', 'darknet53_imagenet_2019', 'yolov2_filmrole_2018',
                 'yolov2_voc_2018', 'yolov2_voc_2019', 'yolov3_voc_2019')
# Paper 002's presets are checked in tests/test_table2.py (their citations name paper 002),
# the SlowFast presets (paper 004) in tests/test_slowfast_presets.py, paper 003's preset and
# the LARS variant in tests/test_scaling_modes.py.
ALL = PAPER_PRESETS + ('synthetic_demo', 'synthetic_classification_demo',
                       'synthetic_darknet_small_demo', 'cyclegan_demo',
                       'cyclegan_synthia2bdd_2019', 'yolov3_person_bdd_2019',
                       'yolov3_person_demo', 'slowfast_ava_2021', 'slowfast_demo',
                       'cnn11_imagenet_async_2015', 'darknet53_imagenet_2019_lars')
CITATION = r'paper 00[01] (sec\.|table|fig\.|title)|not printed in paper 00[01]'


def test_names_lists_the_six_paper_presets_and_the_demo():
    assert tuple(presets.names()) == tuple(sorted(ALL))


def test_unknown_preset_names_the_known_ones():
    with pytest.raises(ValueError, match='yolov3_voc_2019'):
        presets.load('yolov4_coco', 8)


# --- peak rates from the figure captions ----------------------------------------------------

@pytest.mark.parametrize('name, k, peak', [
    ('yolov2_voc_2018', 16, 0.0016), ('yolov2_voc_2018', 32, 0.0032),     # paper 000 fig. 2
    ('yolov2_voc_2018', 64, 0.0064), ('yolov2_voc_2018', 128, 0.0128),
    ('yolov2_filmrole_2018', 16, 0.016), ('yolov2_filmrole_2018', 32, 0.032),  # fig. 3
    ('yolov2_filmrole_2018', 64, 0.064),
    ('darknet53_imagenet_2019', 256, 3.2),      # paper 001 sec. 4.1: 256*32/256*0.1
    ('darknet53_imagenet_2019', 64, 0.8),
    ('yolov3_voc_2019', 96, 0.096),             # k*eta reading of paper 001 sec. 4.2
    ('yolov2_voc_2019', 8, 0.008),
])
def test_peak_rate_matches_the_paper(name, k, peak):
    p = presets.load(name, k)
    assert p.peak_lr == approx(peak)
    assert p.schedule()(5) == approx(peak)


# --- step-decay presets: warmup start, warmup end, around each step -------------------------

@pytest.mark.parametrize('name', ['yolov2_voc_2018', 'yolov2_filmrole_2018', 'yolov2_voc_2019',
                                  'yolov3_voc_2019'])
@pytest.mark.parametrize('k', [8, 16, 64, 128])
def test_step_presets_follow_warmup_then_x01_at_60_and_90(name, k):
    p = presets.load(name, k)
    eta = p.eta
    peak = k * eta                                  # lr = k*eta with n = 16
    assert p.schedule()(0) == approx(eta)
    assert p.schedule()(0.5) == approx(eta)
    assert p.schedule()(3) == approx(eta + (peak - eta) / 2)   # half way along the epoch 1..5 ramp
    assert p.schedule()(5) == approx(peak)
    assert p.schedule()(59.99) == approx(peak)
    assert p.schedule()(60) == approx(peak * 0.1)
    assert p.schedule()(89.99) == approx(peak * 0.1)
    assert p.schedule()(90) == approx(peak * 0.01)
    assert p.schedule()(99.9) == approx(peak * 0.01)


def test_a_single_gpu_has_no_warmup():
    p = presets.load('yolov2_voc_2018', 1)
    assert [p.schedule()(t) for t in (0, 0.5, 3, 5, 59)] == approx([1e-4] * 5)


# --- polynomial presets ---------------------------------------------------------------------

@pytest.mark.parametrize('name', ['darknet53_imagenet_2019', 'darknet19_imagenet_2019'])
@pytest.mark.parametrize('k', [64, 128, 256, 512])
def test_poly_presets_warm_up_to_kn256_eta_then_decay_squared_to_zero_at_200(name, k):
    p = presets.load(name, k)
    peak = k * 32 / 256 * 0.1
    assert p.schedule()(0) == approx(0.1)
    assert p.schedule()(0.5) == approx(0.1)
    assert p.schedule()(5) == approx(peak)
    # Middle point by hand: t' = 102.5 - 5 = 97.5 of T' = 195 -> (1/2) ** 2.
    assert p.schedule()(102.5) == approx(peak / 4)
    assert p.schedule()(200) == 0.0


def test_darknet_below_256_images_per_step_starts_at_the_peak():
    # k = 4: peak 4*32/256*0.1 = 0.05 < eta = 0.1, so no warmup (lr = peak).
    p = presets.load('darknet53_imagenet_2019', 4)
    assert p.schedule()(0) == approx(0.05) and p.schedule()(5) == approx(0.05)


# --- batch fractions ------------------------------------------------------------------------

@pytest.mark.parametrize('name, k, printed', [
    ('yolov2_voc_2018', 64, '6.2'), ('yolov2_voc_2018', 128, '12.4'),        # paper 000
    ('yolov2_filmrole_2018', 16, '5.3'), ('yolov2_filmrole_2018', 32, '10.7'),
    ('yolov3_voc_2019', 96, '9.3'), ('yolov3_voc_2019', 128, '12.4'),         # paper 001
])
def test_batch_fraction_matches_the_papers(name, k, printed):
    p = presets.load(name, k)
    assert p.global_batchsize == 16 * k
    assert '%.1f' % (100 * p.batch_fraction) == printed
    fraction, message = p.batch_fraction_check()
    assert fraction == p.batch_fraction
    assert (message is None) == (p.batch_fraction <= 0.07)


# --- fields ---------------------------------------------------------------------------------

def test_paper_settings_of_each_preset():
    v2 = presets.load('yolov2_voc_2018', 16)
    assert (v2.model, v2.dataset, v2.n_class, v2.n_train) == ('yolov2', 'voc0712', 20, 16551)
    assert (v2.momentum, v2.weight_decay, v2.insize) == (0.9, 0.0005, 416)
    assert v2.multiscale == (320, 608, 10)
    assert (v2.pretrained, v2.transfer_layers) == ('darknet19', 18)
    assert (v2.communicator, v2.allreduce_grad_dtype, v2.cudnn_fast_bn) == \
        ('pure_nccl', None, False)
    assert (v2.warmup_hold_epochs, v2.warmup_epochs, v2.steps, v2.epochs) == \
        (1, 5, (60, 90), 100)
    film = presets.load('yolov2_filmrole_2018', 16)
    assert (film.n_class, film.n_train, film.eta) == (5, 4797, 1e-3)
    dn = presets.load('darknet53_imagenet_2019', 256)
    assert (dn.n_train, dn.insize, dn.epochs, dn.decay, dn.poly_power) == \
        (1281167, 224, 200, 'poly', 2)
    assert (dn.allreduce_grad_dtype, dn.cudnn_fast_bn, dn.pretrained) == \
        ('float16', True, None)
    assert dn.global_batchsize == 8192 and dn.reference_batch == 256
    v3 = presets.load('yolov3_voc_2019', 96)
    assert (v3.insize, v3.pretrained, v3.transfer_layers) == (608, 'darknet53', 52)
    assert (v3.lr_rule, v3.reference_batch) == ('k_eta', 16)
    assert presets.load('yolov2_voc_2019', 8).insize == 608


def test_preset_is_frozen_and_schedule_is_an_lrschedule():
    p = presets.load('yolov3_voc_2019', 8)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.eta = 1.0
    assert isinstance(p.schedule(), LRSchedule)
    assert p.peak_lr == approx(0.008)
    # scatter_dataset gives each of 8 ranks ceil(16551 / 8) = 2069 images, 16 per update.
    assert p.iterations_per_epoch == approx(2069 / 16)


# --- overrides ------------------------------------------------------------------------------

def test_literal_kn_eta_reading_is_selectable():
    p = presets.load('yolov3_voc_2019', 8, lr_rule='literal_knEta')
    assert p.reference_batch == 1
    assert p.peak_lr == approx(8 * 16 * 0.001)
    assert p.schedule()(0) == approx(0.001)


def test_square_root_rule_is_selectable():
    # Not in the papers: peak sqrt(k)*eta, reference batch n; the warmup still starts at eta.
    p = presets.load('synthetic_demo', 32, lr_rule='sqrt_k_eta')
    assert p.reference_batch == 8
    assert p.peak_lr == approx(0.0025 * 32 ** 0.5)
    assert p.schedule()(0) == approx(0.0025)
    assert p.schedule()(2) == approx(0.0025 * 32 ** 0.5)
    linear = presets.load('synthetic_demo', 32)
    assert linear.peak_lr == approx(0.0025 * 32)
    assert presets.load('synthetic_demo', 1, lr_rule='sqrt_k_eta').peak_lr == approx(0.0025)
    assert presets.describe('yolov3_voc_2019')['lr'] == 'k·η'


def test_overrides_replace_fields_and_rederive_the_rest():
    p = presets.load('yolov2_voc_2018', 32, eta=1e-3, batchsize_per_gpu=8, epochs=10,
                     steps=[4, 8], multiscale=None, warmup_hold_epochs=0)
    assert p.global_batchsize == 256
    assert p.reference_batch == 8                  # k*eta keeps meaning lr = k*eta
    assert p.peak_lr == approx(0.032)
    assert p.multiscale is None and p.steps == (4.0, 8.0)
    assert p.schedule()(0) == approx(1e-3)                 # Goyal's ramp starts at eta at epoch 0
    assert p.schedule()(2.5) == approx(1e-3 + (0.032 - 1e-3) / 2)
    assert p.schedule()(8) == approx(0.032 * 0.01)


def test_reference_batch_override_switches_to_a_custom_rule():
    p = presets.load('darknet53_imagenet_2019', 64, reference_batch=512)
    assert p.lr_rule == 'custom' and p.peak_lr == approx(0.4)
    with pytest.raises(ValueError, match='contradicts'):
        presets.load('darknet53_imagenet_2019', 64, reference_batch=512, lr_rule='k_eta')


@pytest.mark.parametrize('overrides, error, match', [
    (dict(learning_rate=0.1), TypeError, 'unknown override'),
    (dict(peak_lr=0.1), TypeError, 'derived'),
    (dict(global_batchsize=64), TypeError, 'derived'),
    (dict(momentum=1.5), ValueError, 'momentum'),
    (dict(insize=500), ValueError, 'multiple'),
    (dict(decay='cosine'), ValueError, 'decay'),
    (dict(lr_rule='sqrt'), ValueError, 'lr_rule'),
    (dict(epochs='many'), ValueError, 'epochs'),
    (dict(multiscale=[320, 600, 10]), ValueError, 'multiscale'),
    (dict(cudnn_fast_bn='false'), ValueError, 'cudnn_fast_bn'),
])
def test_bad_overrides_raise(overrides, error, match):
    with pytest.raises(error, match=match):
        presets.load('yolov3_voc_2019', 8, **overrides)


def test_each_system_refuses_a_network_it_does_not_train():
    # The networks are registered by their systems; the check runs before any data is read.
    from chainer_yolo_dist.classification import recipe as classification
    from chainer_yolo_dist.detection import recipe as detection
    with pytest.raises(ValueError, match='resnet50'):
        detection.check(presets.load('yolov3_voc_2019', 8, model='resnet50'), {})
    with pytest.raises(ValueError, match='yolov3'):
        classification.check(presets.load('yolov3_voc_2019', 8), {})


# --- preset files ---------------------------------------------------------------------------

def _key_lines(path):
    with open(path, encoding='utf-8') as f:
        return [line.rstrip('\n') for line in f if re.match(r'[a-z_]+\s*=', line)]


@pytest.mark.parametrize('name', PAPER_PRESETS)
def test_every_paper_preset_key_cites_paper_and_section(name):
    lines = _key_lines(presets.preset_path(name))
    assert len(lines) == len(presets.read_file(presets.preset_path(name)))
    for line in lines:
        assert '#' in line, 'no comment on %r in %s' % (line, name)
        comment = line.split('#', 1)[1]
        assert re.search(CITATION, comment), 'no paper/section cited on %r in %s' % (line, name)


def test_every_demo_key_cites_a_paper_or_says_why_it_departs():
    lines = _key_lines(presets.preset_path('synthetic_demo'))
    assert len(lines) == len(presets.read_file(presets.preset_path('synthetic_demo')))
    for line in lines:
        comment = line.split('#', 1)[1] if '#' in line else ''
        assert re.search(CITATION, comment) or comment.strip().startswith('demo: '), line


def test_demo_keeps_the_papers_rules_at_cpu_scale():
    p = presets.load('synthetic_demo', 2)
    assert (p.model, p.dataset, p.insize, p.pretrained) == ('yolov3_small', 'synthetic', 128,
                                                            None)
    # lr = k * eta, eta for the first epoch, linear to the peak at epoch 2, x0.1 at 19 and 24.
    assert p.peak_lr == approx(0.005)
    assert p.schedule()(0.5) == approx(0.0025) and p.schedule()(1.5) == approx(0.00375)
    assert p.schedule()(18.9) == approx(0.005) and p.schedule()(19) == approx(0.0005)
    assert p.schedule()(24) == approx(0.00005)
    # The training script records the size of the data actually loaded.
    assert presets.load('synthetic_demo', 2, n_train=300, n_class=6).batch_fraction == \
        approx(16 / 300)


def test_yolov3_rate_reading_is_explained_in_its_file():
    with open(presets.preset_path('yolov3_voc_2019'), encoding='utf-8') as f:
        text = f.read()
    assert '非分散時の学習率' in text and 'literal_knEta' in text


def test_bad_preset_file_errors_name_the_file_and_the_problem(tmp_path):
    good = open(presets.preset_path('yolov3_voc_2019'), encoding='utf-8').read()
    cases = {
        'unknown.toml': (good + 'colour = "red"  # nowhere\n', 'unknown keys'),
        'missing.toml': (good.replace('momentum = 0.9', '# momentum'), 'missing keys'),
        'broken.toml': (good + 'eta = = 1\n', 'not valid TOML'),
        'badvalue.toml': (good.replace('epochs = 100', 'epochs = "x"'), 'bad value'),
    }
    for filename, (text, match) in cases.items():
        path = tmp_path / filename
        path.write_text(text, encoding='utf-8')
        with pytest.raises(ValueError, match=match) as info:
            presets.read_file(str(path))
        assert filename in str(info.value)


# --- documentation --------------------------------------------------------------------------

def test_describe_gives_the_readme_row():
    row = presets.describe('yolov2_voc_2018')
    assert row['paper'] == '000' and row['lr'] == 'k·η'
    assert row['peak lr at k'] == '0.0001, 0.0016, 0.0032, 0.0064, 0.0128'
    assert presets.describe('darknet53_imagenet_2019')['peak lr at k'] == '0.8, 1.6, 3.2, 6.4'


def test_docs_table_is_the_generated_one(repo):
    with open(os.path.join(repo, 'docs', 'presets.md'), encoding='utf-8') as f:
        doc = f.read()
    assert presets.table() in doc, 'regenerate the table in docs/presets.md with presets.table()'


def _optimizer(name):
    p = presets.load(name, 1)
    if p.model.startswith('cyclegan'):
        return 'Adam'
    return 'MomentumSGD + LARS' if p.lars else 'MomentumSGD'


def _readme_preset_rows(repo):
    with open(os.path.join(repo, 'README.md'), encoding='utf-8') as f:
        text = f.read()
    section = text[text.index('\n## Presets'):]
    section = section[:section.index('\n## ', 1)]
    lines = [line for line in section.splitlines() if line.startswith('| ')]
    header = [c.strip() for c in lines[0].strip('|').split('|')]
    return {row[0]: dict(zip(header, row)) for row in
            ([c.strip() for c in line.strip('|').split('|')] for line in lines[2:])}


def test_readme_lists_every_preset_with_its_optimizer_and_schedule(repo):
    """Issue 25: README's table once held only the YOLO and Darknet presets and said every
    preset warms up with MomentumSGD; each row is now the preset's own settings."""
    rows = _readme_preset_rows(repo)
    assert sorted(rows) == sorted(presets.names())
    for name, row in rows.items():
        described = presets.describe(name)
        assert row.pop('optimizer') == _optimizer(name), name
        assert row == {column: described[column] for column in row}, name
    assert rows['cyclegan_synthia2bdd_2019']['warmup (epochs)'] == 'none'


def test_docs_presets_names_every_preset_and_the_optimizer_of_each_system(repo):
    with open(os.path.join(repo, 'docs', 'presets.md'), encoding='utf-8') as f:
        doc = f.read()
    assert all(name in doc for name in presets.names())
    optimizers = doc[doc.index('Optimizer and schedule per system'):]
    for name in presets.names():
        if _optimizer(name) != 'MomentumSGD':
            assert name in optimizers, name


def test_the_async_preset_documents_the_rate_of_each_mode(repo):
    """CNN11's table rate is the k = 48 one; its own mode (async, no bound) runs k = 1's."""
    assert presets.load('cnn11_imagenet_async_2015', 48).peak_lr == approx(0.06)
    one = presets.load('cnn11_imagenet_async_2015', 1).peak_lr
    assert one == approx(0.00125)
    with open(os.path.join(repo, 'docs', 'presets.md'), encoding='utf-8') as f:
        doc = ' '.join(f.read().split())
    assert 'k = 1 rate, 0.01 × 16 / 128 = 0.00125' in doc


def test_paper_003_preset_records_its_asynchronous_mode_and_a_sync_run_says_it_departs():
    from chainer_yolo_dist.core.resolve import departures_from_preset
    paper = presets.load('cnn11_imagenet_async_2015', 48)
    assert paper.parallelism == 'async'
    assert presets.load('darknet53_imagenet_2019', 64).parallelism == 'sync'
    said = departures_from_preset(paper, paper, {'parallelism': 'sync'})
    assert "parallelism sync instead of the paper's async (--parallelism async)" in said
    assert not any('parallelism' in d
                   for d in departures_from_preset(paper, paper, {'parallelism': 'async'}))


def test_unknown_parallelism_mode_is_refused():
    with pytest.raises(ValueError, match="parallelism must be one of"):
        presets.load('synthetic_demo', 1, parallelism='gossip')


def test_only_paper_004_gives_loader_workers_and_its_preset_carries_6():
    # Paper 004 sec. 4.2: 6 workers once they are kept across epochs (8 before, sec. 4.1);
    # papers 000-003 give no count, so their presets leave it to the machine (None).
    assert presets.load('slowfast_ava_2021', 4).loader_workers == 6
    assert {name: presets.load(name, 1).loader_workers
            for name in presets.names() if name != 'slowfast_ava_2021'} == {
        name: None for name in presets.names() if name != 'slowfast_ava_2021'}
    with pytest.raises(ValueError, match='loader_workers must be >= 0'):
        presets.load('slowfast_demo', 1, loader_workers=-1)
