"""The published tables hold exactly the papers' numbers (docs/papers.md and the Japanese
originals), and
the numbers agree with each other the way the papers say they do."""
import math

import pytest

from chainer_yolo_dist.analysis import published

# Transcribed independently of the CSVs, from the papers' tables (docs/papers.md).
N = None
EXPECTED = {
    'p000_table3_voc_map': [(1, 69.3), (16, 70.2), (32, 68.6), (64, 67.3), (128, 63.3)],
    'p000_table4_voc_time_cost': [(1, 33124, 9.20), (16, 3224, 3.58), (32, 1747, 3.88),
                                  (64, 987, 4.39), (128, 597, 5.30)],
    'p000_table5_filmrole_time_cost': [(1, 11971, 3.33), (16, 1743, 1.94), (32, 932, 2.07)],
    'p000_peak_lr': [('voc', 16, 0.0016), ('voc', 32, 0.0032), ('voc', 64, 0.0064),
                     ('voc', 128, 0.0128), ('filmrole', 16, 0.016), ('filmrole', 32, 0.032),
                     ('filmrole', 64, 0.064)],
    'p001_table2_voc_map': [(8, 128, 78.1, 78.7), (16, 256, 78.1, 78.7), (32, 512, 78.0, 78.2),
                            (64, 1024, 75.5, 77.3), (96, 1536, 0.3, 76.3),
                            (128, 2048, N, 65.8)],
    'p001_imagenet_top1': [('darknet53', 64, N), ('darknet53', 128, N),
                           ('darknet53', 256, 77.2), ('darknet53', 512, 75.4),
                           ('darknet19', 64, 74.1)],
    'p001_speedups': [('darknet53', 256, 109.5), ('darknet53', 512, 256),
                      ('yolov3', 96, 64.4)],
    'p002_scaling_fid': [(4, 68.77, N, 221.0), (64, N, N, N), (128, N, N, N),
                         (256, N, N, 269.2), (512, 0.73, 93.8, 270.7)],
    'p004_table3_workers': [(0, 0, 90), (4, 50, 19), (6, 75, 15), (8, 110, 11)],
    'p004_table4_compute_comm': [(32, 56.2, 43.8), (64, 40.3, 59.7), (128, 21.9, 78.1)],
    'p004_table5_ava_map': [(16, 24.6, 24.6), (32, 24.4, 24.4), (64, 24.0, 24.0),
                            (128, 21.1, 20.9)],
    'p004_five_epoch_time': [(1, 9 * 60 + 4, N), (16, N, N), (32, 30, 22), (64, 27, 15.5),
                             (128, N, N)],
}
P002_TABLE2 = [  # run, tp, fp, fn, precision, recall, f1, mAP
    ('a', 3930, 2920, 6843, 0.57, 0.36, 0.45, 34.34),
    ('b', 4086, 2643, 6687, 0.61, 0.38, 0.47, 39.45),
    ('c', 4813, 4560, 5960, 0.51, 0.45, 0.48, 41.39),
    ('d', 4403, 2625, 6370, 0.63, 0.41, 0.49, 41.84),
    ('e', 4718, 3762, 6055, 0.56, 0.44, 0.49, 42.03),
    ('f', 3996, 1938, 6777, 0.67, 0.37, 0.48, 41.40),
    ('g', 4604, 3616, 6169, 0.56, 0.43, 0.48, 41.53),
    ('f_runner_up', 4866, 4741, 5907, N, N, N, 41.12),
]
VOC_TRAIN = 5011 + 11540
FILMROLE_TRAIN = 4797


def _values(name):
    return [tuple(row.values()) for row in published.table(name)]


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_table_holds_exactly_the_papers_numbers(name):
    assert _values(name) == EXPECTED[name]


def test_person_detection_table_holds_the_papers_numbers():
    rows = published.table('p002_table2_person_detection')
    got = [(r['run'], r['tp'], r['fp'], r['fn'], r['precision'], r['recall'], r['f1'],
            r['map_percent']) for r in rows]
    assert got == P002_TABLE2
    assert all(r['description'] for r in rows)


def test_every_csv_has_a_schema_and_loads():
    assert set(published.names()) == set(EXPECTED) | {'p002_table2_person_detection',
                                                      'headline_numbers'}
    for name in published.names():
        rows = published.table(name + '.csv')
        assert rows, name


def test_headline_numbers_agree_with_the_tables():
    heads = {(r['paper'], r['quantity']): r['value'] for r in published.table('headline_numbers')}
    voc = {r['gpus']: r['time_s'] for r in published.table('p000_table4_voc_time_cost')}
    cost = {r['gpus']: r['cost_c'] for r in published.table('p000_table4_voc_time_cost')}
    assert round(voc[1] / voc[64], 1) == heads['000', 'VOC speed-up of 64 GPUs over 1 GPU']
    assert round(voc[16] / voc[128], 1) == heads['000', 'VOC speed-up from 16 to 128 GPUs']
    assert round(cost[128] / cost[16], 1) == heads['000', 'VOC cost ratio from 16 to 128 GPUs']
    for paper, gpus, n_train in (('000', 64, VOC_TRAIN), ('000', 128, VOC_TRAIN),
                                 ('001', 96, VOC_TRAIN), ('001', 128, VOC_TRAIN)):
        share = [v for (p, q), v in heads.items()
                 if p == paper and q.startswith('VOC batch %d ' % (gpus * 16))]
        assert share == [round(100 * gpus * 16 / n_train, 1)]
    for gpus in (16, 32):
        share = [v for (p, q), v in heads.items()
                 if p == '000' and q.startswith('Filmrole batch %d ' % (gpus * 16))]
        assert share == [round(100 * gpus * 16 / FILMROLE_TRAIN, 1)]
    assert heads['003', 'ILSVRC2012 top-5 error of the ensemble'] == 13.89
    assert heads['004', '5-epoch speed-up of 64 nodes over 1 node after RepeatSampler'] == 34.5


def test_peak_lr_is_k_times_eta():
    # Paper 000 sec. 4.1: eta = 1e-4 (VOC) and 1e-3 (Filmrole), lr = k * eta.
    eta = {'voc': 1e-4, 'filmrole': 1e-3}
    for row in published.table('p000_peak_lr'):
        assert math.isclose(row['lr'], row['gpus'] * eta[row['dataset']])


def test_p001_batch_is_16_per_gpu():
    for row in published.table('p001_table2_voc_map'):
        assert row['batch'] == 16 * row['gpus']


def test_p002_precision_recall_f1_follow_from_the_counts():
    for row in published.table('p002_table2_person_detection'):
        if row['precision'] is None:
            continue
        p = row['tp'] / (row['tp'] + row['fp'])
        r = row['tp'] / (row['tp'] + row['fn'])
        assert round(p, 2) == row['precision'], row['run']
        assert round(r, 2) == row['recall'], row['run']
        assert round(2 * p * r / (p + r), 2) == row['f1'], row['run']


def test_p004_shares_add_up_to_100_percent():
    for row in published.table('p004_table4_compute_comm'):
        assert math.isclose(row['compute_percent'] + row['comm_percent'], 100.0)


def test_select_and_column():
    assert published.select('p000_table3_voc_map', gpus=64) == [{'gpus': 64,
                                                                 'map_percent': 67.3}]
    assert published.column('p001_imagenet_top1', 'top1_percent', model='darknet53') == [
        None, None, 77.2, 75.4]
    with pytest.raises(KeyError, match='no column'):
        published.select('p000_table3_voc_map', nodes=4)


def test_unknown_table_names_the_known_ones():
    with pytest.raises(KeyError, match='p000_table3_voc_map'):
        published.table('p000_table9')


def test_bad_header_names_the_file(tmp_path):
    (tmp_path / 'p000_table3_voc_map.csv').write_text('gpu,map\n1,69.3\n')
    with pytest.raises(ValueError, match=r'p000_table3_voc_map\.csv: header'):
        published.table('p000_table3_voc_map', directory=str(tmp_path))


def test_bad_cell_names_file_line_and_column(tmp_path):
    (tmp_path / 'p000_table3_voc_map.csv').write_text('gpus,map_percent\n1,69.3\n16,7O.2\n')
    with pytest.raises(ValueError, match=r"line 3, column 'map_percent'.*7O\.2"):
        published.table('p000_table3_voc_map', directory=str(tmp_path))


def test_short_row_is_an_error(tmp_path):
    (tmp_path / 'p000_table3_voc_map.csv').write_text('gpus,map_percent\n1\n')
    with pytest.raises(ValueError, match='line 2: 1 cells, expected 2'):
        published.table('p000_table3_voc_map', directory=str(tmp_path))
