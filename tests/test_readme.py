"""README's quick commands run as written (run folders moved under a temporary directory)."""
import os
import re
import shlex
import subprocess
import sys

import pytest

from conftest import MPIEXEC, REPO, _env


def _quick_commands():
    with open(os.path.join(REPO, 'README.md'), encoding='utf-8') as f:
        text = f.read()
    block = re.search(r'## Quick commands.*?```sh\n(.*?)```', text, re.S).group(1)
    commands, current = [], ''
    for line in block.splitlines():
        line = line.split('#', 1)[0].rstrip() if not line.lstrip().startswith('#') else ''
        if not line:
            continue
        current += line[:-1] + ' ' if line.endswith('\\') else line
        if not line.endswith('\\'):
            commands.append(current.strip())
            current = ''
    return commands


def test_the_readme_has_quick_commands():
    commands = _quick_commands()
    assert commands[0] == '. .venv/bin/activate' and len(commands) >= 6


@pytest.mark.slow  # the README's runs: about 95 s
def test_readme_quick_commands_run_as_written(tmp_path):
    for command in _quick_commands()[1:]:  # the venv is this interpreter's
        words = shlex.split(command.replace('runs/', str(tmp_path) + '/'))
        words = [MPIEXEC if w == 'mpiexec' else sys.executable if w == 'python' else w
                 for w in words]
        proc = subprocess.run(words, cwd=REPO, env=_env(), capture_output=True, text=True,
                              timeout=400)
        assert proc.returncode == 0, '%s\n%s' % (command, proc.stderr[-3000:])


def test_the_demo_outputs_the_readme_lists_as_committed_are_in_the_repository():
    """Issue 24: README listed `samples.png` among the committed outputs, which a clone
    lacks; what it lists as committed must exist, and what the demo writes but git ignores
    must be said to be uncommitted."""
    with open(os.path.join(REPO, 'README.md'), encoding='utf-8') as f:
        text = ' '.join(f.read().split())
    listed = re.search(r'Committed outputs: `results/runs/demo/` \((.*?)\)\.', text).group(1)
    names = re.findall(r'`([^`]+)`', listed)
    assert len(names) >= 5
    for name in names:
        assert os.path.exists(os.path.join(REPO, 'results', 'runs', 'demo', name)), name
    assert 'samples.png' not in names
    assert re.search(r'`samples.png`[^.]*\) and `model.npz`, which are not committed', text)
