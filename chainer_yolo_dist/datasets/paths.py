"""A compact, picklable sequence of file paths, for datasets of ImageNet's size.

A Python list of 1,281,167 path strings takes about 150 MB in every process that holds it (an
object of about 90 bytes each, and the list), and pickling it to the other ranks or to loader
workers costs seconds. :class:`PathTable` keeps the same paths as one UTF-8 byte array and an
offset array: 40-odd bytes a path, pickled as two memory copies.
"""
import array
import os

import numpy as np


class PathTable(object):
    """An immutable sequence of ``str``: ``table[i]``, ``len(table)``, iteration, ``select``.

    Args:
        blob (numpy.ndarray): uint8 ``(total_bytes,)``, the UTF-8 encoded paths one after another.
        offsets (numpy.ndarray): int64 ``(n + 1,)``; path ``i`` is
            ``blob[offsets[i]:offsets[i + 1]]``.
    """

    def __init__(self, blob, offsets):
        self.blob = np.asarray(blob, dtype=np.uint8)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        if self.offsets.ndim != 1 or len(self.offsets) == 0 or self.offsets[0] != 0 \
                or self.offsets[-1] != len(self.blob):
            raise ValueError('PathTable: offsets must start at 0 and end at the blob\'s length')

    @classmethod
    def build(cls, strings):
        """A table of ``strings`` (any iterable of ``str``), built without holding them all."""
        blob, offsets = bytearray(), array.array('q', [0])
        for s in strings:
            blob += s.encode('utf-8')
            offsets.append(len(blob))
        return cls(np.frombuffer(bytes(blob), np.uint8), np.frombuffer(offsets, np.int64))

    @classmethod
    def concatenate(cls, tables):
        """One table of the paths of ``tables``, in order."""
        tables = list(tables)
        if not tables:
            return cls.build([])
        starts = np.cumsum([0] + [len(t.blob) for t in tables[:-1]])
        return cls(np.concatenate([t.blob for t in tables]),
                   np.concatenate([tables[0].offsets[:1]]
                                  + [t.offsets[1:] + s for t, s in zip(tables, starts)]))

    def __len__(self):
        return len(self.offsets) - 1

    def __getitem__(self, i):
        if i < 0:
            i += len(self)
        begin, end = self.offsets[i], self.offsets[i + 1]  # IndexError past the end
        return self.blob[begin:end].tobytes().decode('utf-8')

    def __iter__(self):
        data, offsets = self.blob.tobytes(), self.offsets.tolist()
        for begin, end in zip(offsets[:-1], offsets[1:]):
            yield data[begin:end].decode('utf-8')

    def select(self, keep):
        """A new table of the paths where the boolean ``keep`` ``(n,)`` is true, in order."""
        keep = np.asarray(keep, dtype=bool)
        lengths = np.diff(self.offsets)[keep]
        offsets = np.zeros(len(lengths) + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        # One flag a byte (not an index: 8 times smaller at ImageNet's 50 MB of paths).
        return PathTable(self.blob[np.repeat(keep, np.diff(self.offsets))], offsets)

    def __eq__(self, other):
        return (isinstance(other, PathTable) and np.array_equal(self.offsets, other.offsets)
                and np.array_equal(self.blob, other.blob))

    def __ne__(self, other):
        return not self == other

    def __repr__(self):
        return '<PathTable of %d paths, %d bytes>' % (len(self), len(self.blob))


class RootedPaths(object):
    """``os.path.join(root, table[i])`` for each path of a :class:`PathTable`, made on demand."""

    def __init__(self, root, table):
        self.root, self.table = root, table

    def __len__(self):
        return len(self.table)

    def __getitem__(self, i):
        return os.path.join(self.root, self.table[i])

    def __iter__(self):
        for rel in self.table:
            yield os.path.join(self.root, rel)
