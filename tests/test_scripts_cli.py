"""Every script has one command-line surface: core.cli.Parser (a bad option is one `error:`
line from rank 0, status 2), and the training scripts run through core.cli.run."""
import glob
import os

import pytest

from conftest import REPO, run_python

SCRIPTS = sorted(glob.glob(os.path.join(REPO, 'scripts', '*.py')))


@pytest.mark.parametrize('path', SCRIPTS, ids=os.path.basename)
def test_every_script_parses_with_the_shared_parser(path):
    text = open(path).read()
    assert 'argparse.ArgumentParser(' not in text
    assert 'cli.Parser(' in text or 'cli.training_parser(' in text


@pytest.mark.parametrize('name', ['train_yolo', 'train_darknet', 'train_cyclegan',
                                  'train_slowfast'])
def test_training_scripts_run_through_cli_run(name):
    text = open(os.path.join(REPO, 'scripts', name + '.py')).read()
    assert 'return cli.run(parse_args(argv), ' in text and 'mpi.main' not in text


@pytest.mark.parametrize('name', ['eval_yolo', 'simulate_scaling', 'reproduce_figures'])
def test_a_bad_option_is_one_line_with_status_2(name):
    proc = run_python([os.path.join('scripts', name + '.py'), '--no-such-option'], timeout=60)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith('error: '), (
        proc.stderr)
