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
