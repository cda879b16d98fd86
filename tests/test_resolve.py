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
