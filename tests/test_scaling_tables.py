"""scripts/simulate_scaling.py prints what chainer_yolo_dist.analysis.scaling_tables builds."""
import json

from conftest import simulate_scaling
from chainer_yolo_dist.analysis import scaling_tables
from chainer_yolo_dist.core import presets


def test_default_gpu_counts_are_the_papers_where_a_paper_model_answers():
    assert scaling_tables.default_gpus('yolov2_voc_2018') == [1, 16, 32, 64, 128]
    for name, mode in (('slowfast_ava_2021', None), ('cyclegan_synthia2bdd_2019', None),
                       ('cnn11_imagenet_async_2015', None), ('yolov2_voc_2018', 'local')):
        assert scaling_tables.default_gpus(name, mode) == list(
            presets.load(name, 1).published_gpus)


def test_the_script_prints_the_report_lines(capsys):
    for args, kw in ((['--gpus', '1,16'], {'gpus': [1, 16]}),
                     (['--mode', 'async', '--gpus', '48'], {'gpus': [48], 'mode': 'async'})):
        out = simulate_scaling(capsys, '--preset', 'yolov2_voc_2018', *args)
        assert out == '\n'.join(scaling_tables.report('yolov2_voc_2018', **kw)) + '\n'


def test_json_is_one_line_of_predictions():
    (line,) = scaling_tables.report('yolov2_voc_2018', [1, 16], as_json=True)
    assert sorted(json.loads(line)) == ['epoch_seconds', 'gpus', 'speedup']
    (line,) = scaling_tables.report('cnn11_imagenet_async_2015', [48], as_json=True)
    assert json.loads(line)['mode'] == 'async'
