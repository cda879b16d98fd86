"""scripts/check_gpu.py on a machine without a GPU: it says what is missing and fails."""
from conftest import run_python


def test_without_a_gpu_the_check_names_what_is_missing_and_fails():
    proc = run_python(['scripts/check_gpu.py'], timeout=120)
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[0].startswith('stack: {')
    assert 'BROKEN: ' in proc.stdout and proc.stdout.strip().endswith('GPU check: broken')
