"""CycleGAN refuses --double-buffering (issue 21, finding 9), by name and before any data is
read: ChainerMN's double-buffering optimizer keeps its two gradient buffers in the
communicator, which CycleGAN's four optimizers would share while their AllReduces overlap."""
import dataclasses

import pytest

from chainer_yolo_dist.core import presets
from chainer_yolo_dist.core.parallelism import modes
from chainer_yolo_dist.cyclegan import recipe
from chainer_yolo_dist.cyclegan.settings import (DOUBLE_BUFFERING_ERROR, CycleGANSettings,
                                                 refuse_double_buffering)
from conftest import resolve_script


def test_the_check_and_the_settings_refuse_it_in_one_line():
    assert '\n' not in DOUBLE_BUFFERING_ERROR
    assert DOUBLE_BUFFERING_ERROR.startswith('--double-buffering ')
    refuse_double_buffering(False)
    with pytest.raises(ValueError, match='^--double-buffering is not available for CycleGAN'):
        refuse_double_buffering(True)
    preset = presets.load('cyclegan_demo', 2)
    recipe.check(preset, {'double_buffering': False})
    with pytest.raises(ValueError, match='--double-buffering'):
        recipe.check(preset, {'double_buffering': True})
    # The frozen settings refuse it too (a caller that builds them without the script).
    fields = {f.name: None for f in dataclasses.fields(CycleGANSettings) if f.init}
    fields.update(preset=preset, ranks=2, nodes=1, virtual_ranks=1, device=-1, seed=0,
                  out='x', loaderjob=0, eval_interval=0, eval_batchsize=1, log_interval=1,
                  snapshot_interval=0, keep_snapshots=1, progress=False, departures=(),
                  communicator='naive', double_buffering=False, ngf=4, ndf=4, n_blocks=1,
                  pool_size=2, fid_images=2, n_samples=1, fid_interval=1, sample_interval=1)
    # the parallelism modes' options at their defaults (sync takes none of them)
    fields.update({k: v for k, v in modes.DEFAULTS.items() if k in fields})
    settings = CycleGANSettings(**fields)
    with pytest.raises(ValueError, match='^--double-buffering is not available'):
        dataclasses.replace(settings, double_buffering=True)


def test_the_script_s_options_are_refused_before_mpi_with_the_option_named(tmp_path):
    """train_cyclegan.py's options resolve in-process (core/resolve.py): refused before the
    run directory or any data (tests/test_faults.py checks how such a mistake ends a 2-rank
    job: one ``error:`` line, status 2)."""
    with pytest.raises(ValueError, match='^--double-buffering is not available for CycleGAN'):
        resolve_script('cyclegan', ['--double-buffering', '--out', str(tmp_path / 'run')])
    assert not (tmp_path / 'run').exists()
