"""Column buffers of SlowFast's 3D convolutions at the paper's size, and the measured step."""
import numpy as np
import pytest

import chainer

from chainer_yolo_dist.slowfast import conv3d, memory
from chainer_yolo_dist.slowfast.networks import SlowFast

GIB = 1 << 30


class _InputShapes(chainer.LinkHook):
    """Records the input shape of every Conv3D call."""
    name = 'InputShapes'

    def __init__(self):
        self.shapes = {}

    def forward_preprocess(self, args):
        if isinstance(args.link, conv3d.Conv3D):
            self.shapes[id(args.link)] = args.args[0].shape


@pytest.mark.parametrize('slow_only', [False, True])
def test_analytic_inputs_are_those_of_the_forward_pass(slow_only):
    trunk = SlowFast(width=8, blocks=(2, 1, 2, 1), slow_only=slow_only)
    hook = _InputShapes()
    with hook, chainer.using_config('train', False):
        trunk(np.zeros((2, 3, 8, 64, 64), np.float32))
    rows = memory.conv_inputs(trunk, 8, 64, 64)
    n_convs = sum(1 for link in trunk.links() if isinstance(link, conv3d.Conv3D))
    assert len(rows) == n_convs == len(hook.shapes)
    for name, link, shape in rows:
        assert (2,) + shape == hook.shapes[id(link)], name


@pytest.fixture(scope='module')
def r50():
    return SlowFast()  # the paper's trunk (slowfast_r50), built on the host


def test_fast_conv1_column_buffer_at_the_paper_size(r50):
    """Issue 21 finding 15: 4.7 GB for the Fast conv1 at the preset's size (8 clips of 16 x
    224 x 224), the only one of the 110 convolutions over 1 GiB; pieces of one clip (590 MB)."""
    model, n_class, batch, frames, size = memory.paper_size()
    assert (model, n_class, batch, frames, size) == ('slowfast_r50', 80, 8, 16, 224)
    table = memory.column_table(r50, batch, frames, size, size, limit=GIB)
    assert len(table) == 110
    by_name = {r['name']: r for r in table}
    fast = by_name['/fast/conv1']
    assert fast['x_shape'] == (8, 3, 16, 224, 224) and fast['W_shape'] == (8, 3, 5, 7, 7)
    # col (N, C, kT, kH, kW, T', H', W') = 8 x 3 x 5 x 7 x 7 x 16 x 112 x 112 float32
    assert fast['column_bytes'] == 8 * 3 * 245 * 16 * 112 * 112 * 4 == 4720558080
    print('Fast conv1 column buffer: %.2f GB (%.2f GiB)'
          % (fast['column_bytes'] / 1e9, fast['column_bytes'] / GIB))
    assert [r['name'] for r in table if r['column_bytes'] > GIB] == ['/fast/conv1']
    assert fast['piece_bytes'] == fast['column_bytes'] // 8  # one clip per piece
    assert max(r['piece_bytes'] for r in table) <= GIB
    assert conv3d.chunk_plan(fast['x_shape'], fast['W_shape'], (1, 2, 2), (2, 3, 3), 1, 4,
                             GIB) == (1, 16)


def test_32_frames_at_256_need_pieces_in_time(r50):
    """PySlowFast's SLOWFAST_32x2 at 256 x 256: one clip's buffer (1.54 GB) is over 1 GiB."""
    table = memory.column_table(r50, 8, 32, 256, 256, limit=GIB)
    fast = table[[r['name'] for r in table].index('/fast/conv1')]
    assert fast['column_bytes'] == 8 * 3 * 245 * 32 * 128 * 128 * 4  # 12.3 GB
    plan = conv3d.chunk_plan(fast['x_shape'], fast['W_shape'], (1, 2, 2), (2, 3, 3), 1, 4, GIB)
    assert plan == (1, 22)
    assert fast['piece_bytes'] == 3 * 245 * 22 * 128 * 128 * 4 <= GIB


def test_step_runs_and_reports_on_the_cpu():
    """The GPU check's function, at a CPU size (no peak memory there)."""
    out = memory.paper_size_step(-1, batch=2, n_frames=4, size=32, model='slowfast_narrow')
    assert out['error'] is None and out['seconds'] > 0 and np.isfinite(out['loss'])
    assert out['peak_bytes'] is None and out['cudnn'] is False
    assert (out['batch'], out['n_frames'], out['size']) == (2, 4, 32)
    assert out['column_limit'] == conv3d.COLUMN_LIMIT_BYTES
    assert out['column_bytes_max'] == 2 * 3 * 245 * 4 * 16 * 16 * 4  # Fast conv1, width 8
    assert memory.paper_size_step(-1, batch=1, n_frames=4, size=32, model='slow_narrow',
                                  chunk_bytes=0)['column_limit'] is None
