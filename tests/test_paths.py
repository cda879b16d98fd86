"""PathTable: the compact path list that ImageNet-sized datasets hold and send to the ranks."""
import pickle

import numpy as np
import pytest

from chainer_yolo_dist.datasets.paths import PathTable, RootedPaths

PATHS = ['train/n01440764/n01440764_1.JPEG', 'val/é/ILSVRC2012_val_00000001.JPEG', 'x', '']


def test_holds_the_paths_in_order_including_non_ascii_and_empty_ones():
    table = PathTable.build(iter(PATHS))  # any iterable, consumed once
    assert len(table) == 4 and list(table) == PATHS
    assert [table[i] for i in range(4)] == PATHS and table[-1] == ''
    with pytest.raises(IndexError):
        table[4]


def test_is_two_arrays_not_an_object_per_path():
    table = PathTable.build(PATHS)
    assert table.blob.dtype == np.uint8 and len(table.blob) == sum(len(p.encode()) for p in PATHS)
    assert table.offsets.dtype == np.int64 and len(table.offsets) == len(PATHS) + 1


def test_select_keeps_the_flagged_paths_in_order():
    table = PathTable.build(PATHS)
    assert list(table.select([True, False, True, False])) == [PATHS[0], PATHS[2]]
    assert list(table.select([False] * 4)) == []
    assert table.select([True] * 4) == table


def test_concatenate_and_pickle_round_trip():
    a, b = PathTable.build(PATHS[:2]), PathTable.build(PATHS[2:])
    both = PathTable.concatenate([a, b])
    assert list(both) == PATHS
    assert pickle.loads(pickle.dumps(both)) == both
    assert both != a and list(PathTable.concatenate([])) == []


def test_bad_offsets_are_refused():
    with pytest.raises(ValueError, match='offsets'):
        PathTable(np.zeros(3, np.uint8), np.array([0, 2]))


def test_rooted_paths_join_the_root_on_demand():
    rooted = RootedPaths('/data/ILSVRC', PathTable.build(PATHS[:2]))
    assert len(rooted) == 2 and rooted[1] == '/data/ILSVRC/' + PATHS[1]
    assert list(rooted) == ['/data/ILSVRC/' + p for p in PATHS[:2]]
