"""Options become a run's settings in one pure step (core/resolve.py), before MPI starts:
every script's options resolve in-process, with the preset, the modes' defaults and the
system's defaults merged in one place, and a mistake named by the option the user typed."""
import pytest

from chainer_yolo_dist.core import resolve
from chainer_yolo_dist.core.parallelism import modes
from conftest import SCRIPTS, load_script, resolve_script


@pytest.mark.parametrize('system', sorted(SCRIPTS))
def test_every_script_resolves_its_demo_without_mpi(system):
    plan = resolve_script(system)
    settings = plan.settings
    assert settings.ranks == 2 and settings.device == -1 and settings.communicator == 'naive'
    assert settings.preset.n_gpus == 2  # k = the processes that train
    assert plan.request.seed == settings.seed
    assert settings.parallelism == 'sync' and plan.servers == 0


def test_the_systems_defaults_follow_the_preset_unless_an_option_is_given():
    assert resolve_script('classification').settings.channels_scale == 1 / 8
    cyclegan = resolve_script('cyclegan')
    assert cyclegan.request.image_size == cyclegan.settings.preset.insize
    assert resolve_script('cyclegan', ['--insize', '32']).request.image_size == 32
    plan = resolve_script('slowfast', ['--clip-frames', '8'])
    assert (plan.request.clip_frames, plan.request.clip_size) == (8, plan.settings.preset.insize)


def test_async_counts_only_the_workers_and_needs_one():
    plan = resolve_script('classification', ['--parallelism', 'async'], world_size=3)
    assert plan.servers == 1 and plan.settings.preset.n_gpus == 2
    with pytest.raises(ValueError, match=r'async needs a server and a worker: .*mpiexec -n 2'):
        resolve_script('classification', ['--parallelism', 'async'], world_size=1)
    with pytest.raises(ValueError, match=r'mpiexec -n 3 or more'):
        resolve_script('classification', ['--parallelism', 'async', '--servers', '2'],
                       world_size=2)


@pytest.mark.parametrize('argv, message', [
    (['--parallelism', 'local', '--push-every', '2'],
     '--push-every is an option of --parallelism async, not local'),
    (['--parallelism', 'sync', '--average-every', '8'],
     '--average-every is an option of --parallelism local, not sync'),
    (['--parallelism', 'stale', '--virtual-ranks', '2'],
     '--virtual-ranks is not available with --parallelism stale'),
    (['--parallelism', 'stale', '--double-buffering'],
     '--double-buffering is not available with --parallelism stale'),
])
def test_an_option_of_another_mode_is_refused_by_its_name(argv, message):
    with pytest.raises(ValueError, match=message):
        resolve_script('classification', argv, world_size=3)


def test_a_script_offers_only_its_modes_and_their_options():
    with pytest.raises(SystemExit):  # async is not offered by train_yolo.py: nor its options
        load_script('train_yolo').parse_args(['--push-every', '2'])
    yolo = load_script('train_yolo').parse_args(['--parallelism', 'local',
                                                 '--average-every', '2'])
    assert (yolo.parallelism, yolo.average_every) == ('local', 2)
    assert set(modes.DEFAULTS) == {'parallelism', 'lars'} | set(modes.OPTIONS)


def test_a_gpu_node_gets_pure_nccl_loader_workers_and_the_fp16_departures():
    plan = resolve_script('detection', ['--preset', 'yolov3_voc_2019', '--from-scratch'],
                          world_size=4, node=resolve.Node(gpus=4, cudnn=False))
    settings = plan.settings
    assert settings.communicator == 'pure_nccl' and settings.allreduce_grad_dtype == 'float16'
    assert settings.loaderjob == resolve.GPU_LOADER_WORKERS
    assert any('cudnn_fast_bn has no effect' in d for d in plan.departures)
    cpu = resolve_script('detection', ['--preset', 'yolov3_voc_2019', '--from-scratch'], 4)
    assert cpu.settings.loaderjob == 2 and cpu.settings.allreduce_grad_dtype is None


def test_a_resume_that_names_nothing_resumable_is_one_line_before_mpi(tmp_path):
    with pytest.raises(ValueError, match='--resume auto needs --out'):
        resolve_script('detection', ['--resume', 'auto'])
    with pytest.raises(ValueError, match='no such file or folder'):
        resolve_script('detection', ['--resume', str(tmp_path / 'nope')])
    fresh = resolve_script('detection', ['--resume', 'auto', '--out', str(tmp_path / 'run')])
    assert fresh.settings.resume == 'auto'  # nothing to resume yet: a fresh start


def test_the_preset_s_loader_workers_apply_cut_to_the_cores_and_a_change_is_a_departure():
    ava = ['--preset', 'slowfast_ava_2021', '--data-dir', 'AVA']
    abci = resolve.Node(gpus=4, cudnn=True, cpus=40)  # paper 004's node: 4 GPUs, 40 cores
    plan = resolve_script('slowfast', ava, 4, abci)
    assert plan.settings.loaderjob == 6 and not any('loader' in d for d in plan.departures)
    small = resolve_script('slowfast', ava, 4, resolve.Node(gpus=4, cudnn=True, cpus=12))
    assert small.settings.loaderjob == 3
    assert ("loader workers 3 per rank instead of the preset's 6: 3 CPU core(s) per rank on "
            "this node (--loaderjob sets them)") in small.departures
    before_fix = resolve_script('slowfast', ava + ['--loader-workers', '8'], 4, abci)
    assert before_fix.settings.loaderjob == 8
    assert "loader workers 8 per rank instead of the preset's 6 (--loaderjob)" in (
        before_fix.departures)
    # A preset without a count keeps the machine's default, and the user's count is no
    # departure from it.
    demo = resolve_script('slowfast', ['--loader-workers', '3'], 2, resolve.Node(0, False, 2))
    assert demo.settings.loaderjob == 3 and not any('loader' in d for d in demo.departures)
    assert resolve_script('slowfast', [], 2, resolve.Node(0, False, 2)).settings.loaderjob == 2


@pytest.mark.parametrize('system, argv, message', [
    # a preset field set on the command line is named by the option typed, not the field
    ('detection', ['--insize', '100'],
     r'^--insize 100 is not a multiple of the stride 32 \(preset synthetic_demo\)$'),
    ('detection', ['--lr-rule', 'k'], r'^--lr-rule must be one of .*, got \'k\''),
    ('slowfast', ['--clip-frames', '6'], r'^--clip-frames 6 is not a positive multiple'),
    # a typo of a preset: the near names, not all of them
    ('detection', ['--preset', 'synthetic_dmo'],
     r'^unknown preset \'synthetic_dmo\': did you mean synthetic_demo'),
    # each trunk's own Darknet file as the example of what --pretrained takes
    ('detection', ['--preset', 'yolov2_voc_2018'], r'such as darknet19_448\.conv\.23\)'),
    ('detection', ['--preset', 'yolov3_voc_2019'], r'such as darknet53\.conv\.74\)'),
])
def test_a_mistake_is_named_as_the_user_typed_it(system, argv, message):
    with pytest.raises(ValueError, match=message):
        resolve_script(system, argv)


def test_an_option_is_taken_only_by_its_whole_name(capsys):
    with pytest.raises(SystemExit):
        load_script('train_yolo').parse_args(['--iter', '1'])
    assert 'unrecognized arguments: --iter 1' in capsys.readouterr().err
