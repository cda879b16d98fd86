"""Lets Chainer 7.8.1, ChainerMN and ChainerCV 0.13.1 import and run on NumPy 2 (Python 3.12).

The reference stack is Python 3.11 with NumPy 1.23.5, where this module changes nothing. Newer
NumPy releases removed names that those three packages still use; this module puts back exactly
those, and only where they are missing, before Chainer or ChainerCV is imported
(``chainer_yolo_dist/__init__.py`` applies it first thing). Found by scanning every
``np.NAME`` / ``numpy.NAME`` in chainer/, chainermn/ and chainercv/ against NumPy 2.5 and by
running the test suite there:

============================  ========================  ===========================================
restored                      removed in                used by (import or run time)
============================  ========================  ===========================================
``numpy.sctypes``             NumPy 2.0                 ``import chainer``:
                                                        ``functions/array/as_strided.py`` builds
                                                        its index dtypes from ``sctypes['int']``
                                                        and checks ``sctypes['float']``
``numpy.distutils``           NumPy 2.0 (module gone;   ``import chainer``: ``_environment_check``
(``.system_info.get_info``)   also on Python >= 3.12)   imports it; it calls
                                                        ``get_info('blas_opt')`` only on macOS to
                                                        warn about Accelerate. The stand-in returns
                                                        ``{}`` (NumPy's own "not found" answer), so
                                                        that warning is never given.
``numpy.float`` = ``float``   NumPy 1.24                ``F.resize_images``
                                                        (``dtype=numpy.float``), which YOLOv2's
                                                        reorg/upsampling paths and the transforms
                                                        reach at run time
``numpy.int`` = ``int``       NumPy 1.24                ChainerCV's FCIS code (``astype(np.int)``);
                                                        not reached by this project, restored so
                                                        the same ChainerCV behaves as on 1.23
``numpy.bool`` = ``bool``     NumPy 1.24, re-added in   ``VOCBboxDataset`` (``difficult``) and
                              2.0 as ``numpy.bool_``    ChainerCV's mask utilities. On NumPy 2 the
                                                        name exists again, so nothing is restored
                                                        there (only on 1.24-1.26).
============================  ========================  ===========================================

The values are the ones NumPy 1.23 had: ``float``/``int``/``bool`` were aliases of the Python
builtins (so ``dtype=numpy.float`` is float64 and ``numpy.int`` is int64 on Linux), and
``sctypes`` is rebuilt with NumPy 1.23's layout (``int``, ``uint``, ``float``, ``complex``,
``others``; one type per size). ``numpy.object``, ``numpy.str``, ``numpy.long`` and the other
removed aliases are not restored: none of the three packages uses them.

Not restored, because they are not NumPy names: ``pkg_resources`` (``import chainercv`` and
Chainer's version check use it) comes from setuptools < 82, which the install keeps in the venv;
``distutils`` (``chainercv.utils.download`` imports ``distutils.util.strtobool``), removed from
Python 3.12, is provided by the same setuptools (its ``distutils-precedence.pth``).

NumPy 2 also changed behaviour that no shim can restore: scalar type promotion (NEP 50: a
NumPy float64 scalar times a float32 array is now float64) and ``copy=False`` (now an error
where a copy is needed; ChainerMN's ``pack_params`` uses it, reached only when gradients are
packed on a GPU, never by the CPU ``naive`` communicator). docs/install.md says where results
differ in the last bits because of this.
"""
import importlib.util
import sys
import types
import warnings

import numpy

#: Names this module set on ``numpy`` in this process (empty on the reference stack).
RESTORED = []


def _sctypes():
    """``numpy.sctypes`` as NumPy 1.23 built it: one scalar type per size and kind."""
    def unique(types_):
        seen, out = set(), []
        for t in types_:
            if t is not None and numpy.dtype(t) not in seen:
                seen.add(numpy.dtype(t))
                out.append(t)
        return out
    return {
        'int': unique([numpy.int8, numpy.int16, numpy.int32, numpy.int64]),
        'uint': unique([numpy.uint8, numpy.uint16, numpy.uint32, numpy.uint64]),
        'float': unique([numpy.float16, numpy.float32, numpy.float64, numpy.longdouble]),
        'complex': unique([numpy.complex64, numpy.complex128, numpy.clongdouble]),
        'others': [bool, object, bytes, str, numpy.void],
    }


def _missing(name):
    # NumPy 1.20-1.23 still answer the deprecated aliases with a DeprecationWarning; asking
    # must not emit it.
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return not hasattr(numpy, name)


def _distutils_stand_in():
    """A ``numpy.distutils`` with just ``system_info.get_info`` (answers "not found": ``{}``)."""
    pkg = types.ModuleType('numpy.distutils', 'Stand-in from chainer_yolo_dist.compat.')
    pkg.__path__ = []
    info = types.ModuleType('numpy.distutils.system_info',
                            'Stand-in from chainer_yolo_dist.compat.')

    def get_info(name, notfound_action=0):
        return {}
    info.get_info = get_info
    pkg.system_info = info
    return pkg, info


def apply():
    """Restores the missing names listed in the module docstring; idempotent.

    Returns the list of names restored in this process (``RESTORED``).
    """
    for name, value in (('float', float), ('int', int), ('bool', bool)):
        if _missing(name):
            setattr(numpy, name, value)
            RESTORED.append(name)
    if _missing('sctypes'):
        numpy.sctypes = _sctypes()
        RESTORED.append('sctypes')
    if 'numpy.distutils' not in sys.modules and \
            importlib.util.find_spec('numpy.distutils') is None:
        pkg, info = _distutils_stand_in()
        sys.modules['numpy.distutils'] = pkg
        sys.modules['numpy.distutils.system_info'] = info
        numpy.distutils = pkg
        RESTORED.append('distutils')
    return RESTORED


apply()
