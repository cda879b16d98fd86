"""``--profile`` in every parallelism mode: the phases are timed and written to profile.json
(the parameter-server optimizer has no loss scale: the updater must not need one)."""
import json

import pytest

from conftest import check, run_mpi


@pytest.mark.slow  # a training run
def test_async_workers_profile_their_updates(tmp_path):
    out = tmp_path / 'run'
    check(run_mpi(2, ['scripts/train_darknet.py', '--parallelism', 'async', '--profile',
                      '--n-train-images', '64', '--n-test-images', '16', '--iterations', '4',
                      '--eval-interval', '0', '--loaderjob', '0', '--no-progress',
                      '--out', str(out)], timeout=240))
    profile = json.loads((out / 'profile.json').read_text())
    text = json.dumps(profile)
    for phase in ('data', 'forward', 'backward', 'update'):
        assert phase in text, profile
