"""chainer_yolo_dist.compat: Chainer 7.8.1 / ChainerCV 0.13.1 on NumPy 2 (Python 3.12).

These run on both stacks: the reference one (Python 3.11, NumPy 1.23.5), where the module must
change nothing, and the second one (`make test-py312`: Python 3.12, NumPy 2), where it must
restore exactly the names its docstring lists.
"""
import sys

import numpy
import pytest

from chainer_yolo_dist import compat
from conftest import check, run_python

NUMPY = tuple(int(p) for p in numpy.__version__.split('.')[:2])

# NumPy 1.23's own numpy.sctypes on Linux x86-64 (longdouble is float128 there).
SCTYPES_1_23 = {
    'int': [numpy.int8, numpy.int16, numpy.int32, numpy.int64],
    'uint': [numpy.uint8, numpy.uint16, numpy.uint32, numpy.uint64],
    'float': [numpy.float16, numpy.float32, numpy.float64, numpy.longdouble],
    'complex': [numpy.complex64, numpy.complex128, numpy.clongdouble],
    'others': [bool, object, bytes, str, numpy.void],
}


def expected_restored():
    """What a fresh process must restore for the NumPy installed here."""
    if NUMPY < (1, 24):
        return []
    if NUMPY < (2, 0):
        return ['float', 'int', 'bool']
    # NumPy 2.0 re-added numpy.bool (= numpy.bool_) and removed sctypes and numpy.distutils.
    return ['float', 'int', 'sctypes', 'distutils']


def test_a_fresh_process_restores_exactly_the_missing_names():
    proc = check(run_python(
        ['-c', 'import sys; import chainer_yolo_dist.compat as c; print(c.RESTORED);'
               'print("chainer" in sys.modules, "chainercv" in sys.modules)'], timeout=60))
    restored, heavy = proc.stdout.strip().splitlines()
    assert restored == repr(expected_restored())
    # Importing the package stays light: compat imports NumPy only, never Chainer.
    assert heavy == 'False False'


def test_restored_values_are_numpy_1_23s():
    assert numpy.float is float and numpy.int is int
    assert numpy.dtype(numpy.float) == numpy.float64
    assert numpy.dtype(numpy.int) == numpy.int64
    # numpy.bool is the builtin where restored (NumPy 1.24-1.26) and numpy.bool_ on NumPy 2;
    # either way it means the bool dtype.
    assert numpy.dtype(numpy.bool) == numpy.dtype(bool)
    assert {k: [numpy.dtype(t) for t in v] for k, v in numpy.sctypes.items()} == \
        {k: [numpy.dtype(t) for t in v] for k, v in SCTYPES_1_23.items()}


@pytest.mark.skipif(NUMPY >= (1, 24), reason='needs NumPy 1.23 to compare with its own sctypes')
def test_rebuilt_sctypes_equals_numpy_1_23s_own():
    assert compat._sctypes() == numpy.sctypes


def test_distutils_stand_in_answers_not_found():
    pkg, info = compat._distutils_stand_in()
    assert pkg.__name__ == 'numpy.distutils' and info.__name__ == 'numpy.distutils.system_info'
    assert pkg.system_info is info
    # NumPy's own get_info answers {} for a library it cannot find; Chainer then gives no
    # Accelerate warning (it asks only on macOS).
    assert info.get_info('blas_opt') == {}


def test_apply_is_idempotent():
    before = list(compat.RESTORED)
    assert compat.apply() == before


def test_chainer_chainercv_chainermn_import_directly_in_the_projects_venv():
    # The tests and the MPI test scripts import chainer before chainer_yolo_dist; on NumPy 2
    # the install's .pth applies compat at interpreter start (tools/install_stack.sh).
    code = ('import chainer, chainercv, chainermn; '
            'print(chainer.__version__, chainercv.__version__)')
    proc = check(run_python(['-c', code], timeout=120))
    assert proc.stdout.split() == ['7.8.1', '0.13.1']


def test_chainer_paths_that_use_the_restored_names_run():
    import chainer.functions as F
    from chainer.functions.array.as_strided import index_dtype
    # as_strided builds {itemsize: int type} from numpy.sctypes['int'] at import.
    assert index_dtype == {1: numpy.int8, 2: numpy.int16, 4: numpy.int32, 8: numpy.int64}
    # F.resize_images computes its sampling grid with dtype=numpy.float and casts back.
    x = numpy.arange(16, dtype=numpy.float32).reshape(1, 1, 4, 4)
    y = F.resize_images(x, (7, 7), align_corners=True).array
    assert y.dtype == numpy.float32
    numpy.testing.assert_allclose(y[0, 0, 0], numpy.linspace(0, 3, 7), rtol=0, atol=1e-6)
    numpy.testing.assert_allclose(y[0, 0, :, 0], numpy.linspace(0, 12, 7), rtol=0, atol=1e-5)


def test_chainercv_bool_masks_and_strtobool():
    from chainercv.utils.download import strtobool  # distutils, gone from Python 3.12
    from chainercv.utils import mask_to_bbox
    assert strtobool('yes') == 1
    mask = numpy.zeros((1, 5, 6), dtype=numpy.bool)
    mask[0, 1:3, 2:5] = True
    numpy.testing.assert_array_equal(mask_to_bbox(mask), [[1, 2, 3, 5]])


def test_python_and_numpy_are_a_supported_pair():
    # setup.py: NumPy 1.23.5 on Python 3.11 (reference), NumPy 2 on Python 3.12.
    if sys.version_info[:2] == (3, 11):
        assert numpy.__version__ == '1.23.5'
    else:
        assert sys.version_info[:2] == (3, 12) and NUMPY >= (2, 0)
