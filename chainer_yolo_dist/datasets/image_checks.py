"""Start-up image checks split across the ranks and remembered, at the papers' data sizes.

Before training, every image of a run is checked once (:func:`~.validation.inspect_image`:
missing, unreadable, and its size): VOC's 21,503 images, ImageNet's 1.33 M files, the
CycleGAN domain folders, AVA's keyframes (:mod:`chainer_yolo_dist.slowfast.ava`).
:func:`check_images_across_ranks` gives each rank every ``size``-th file, and keeps
what it found in a cache keyed by each file's path, size and modification time, so that a
second start on unchanged data opens no image. Rank 0 then holds the results
(:class:`ImageChecks`) and the datasets it builds apply the bad-input policy to the whole set
from them, without opening a file again.

What is checked is ``--image-check`` (:data:`IMAGE_CHECKS`, the same meaning on every
training script): ``'header'`` (the default) reads each file's format and size from its header
(about 13 us a JPEG: a file cut short past its header is found only when it is read in
training, and named then); ``'decode'`` decodes every file once (JPEGs in PIL's draft mode,
which still consumes the whole entropy-coded stream: finds truncation); ``'none'`` opens no
image before training (a missing or unreadable file is found when it is read, and named
then). :func:`check_files` is what each system's ``check_images`` calls.

Everything here is arrays, not Python objects per file: at ImageNet's size a dict or a JSON
file of 1.33 M entries took 2 GB and 19 s to save on rank 0. A path is known by a 64-bit
BLAKE2b digest of its absolute form (:func:`path_keys`); a collision between two of 1.33 M
paths has a probability of about 10^-7, and would take, besides, equal sizes and times.
"""
import hashlib
import os

import numpy as np

from chainer_yolo_dist.core.atomic import atomic_path
from chainer_yolo_dist.core.cli import IMAGE_CHECKS
from chainer_yolo_dist.datasets import validation as V

#: Status codes of one file's check.
OK, MISSING, UNREADABLE = 0, 1, 2
_KIND = {MISSING: V.MISSING_IMAGE, UNREADABLE: V.UNREADABLE_IMAGE}
_STATUS = {V.MISSING_IMAGE: MISSING, V.UNREADABLE_IMAGE: UNREADABLE}


def path_key(path):
    """The 64-bit key of ``path`` (an absolute, normalised path), as a Python int."""
    digest = hashlib.blake2b(path.encode('utf-8', 'surrogateescape'), digest_size=8).digest()
    return int.from_bytes(digest, 'little')


def path_keys(paths):
    """uint64 ``(n,)`` keys of ``paths`` (absolutised here)."""
    return np.fromiter((path_key(os.path.abspath(p)) for p in paths), np.uint64, len(paths))


def cache_dir():
    """The package's cache folder: ``$CHAINER_YOLO_DIST_CACHE``, else
    ``$XDG_CACHE_HOME/chainer_yolo_dist``, else ``~/.cache/chainer_yolo_dist``."""
    return os.environ.get('CHAINER_YOLO_DIST_CACHE') or os.path.join(
        os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache'),
        'chainer_yolo_dist')


def default_cache_path(data_root):
    """Where the image checks of the data under ``data_root`` are remembered: in
    :func:`cache_dir`, one file per data root."""
    base = cache_dir()
    digest = hashlib.sha1(os.path.abspath(data_root).encode()).hexdigest()[:16]
    return os.path.join(base, 'image_checks-%s.npz' % digest)


class ImageCheckCache(object):
    """The readable images found before: per file its key, size (bytes), modification time
    (ns), whether it was decoded (a header-only entry does not answer a request for a full
    decode) and its height and width. Arrays sorted by key; missing and unreadable files are
    never remembered (they are checked again, and reported, at every start)."""

    VERSION = 2
    FIELDS = (('key', np.uint64), ('size', np.int64), ('mtime', np.int64),
              ('decoded', np.bool_), ('height', np.int32), ('width', np.int32))

    def __init__(self, path, arrays=None):
        self.path = path
        self.arrays = arrays if arrays is not None else self._read(path)

    @classmethod
    def _read(cls, path):
        empty = {name: np.zeros(0, dtype) for name, dtype in cls.FIELDS}
        try:
            with np.load(path) as stored:
                if int(stored['version']) != cls.VERSION:
                    return empty
                arrays = {name: stored[name].astype(dtype, copy=False)
                          for name, dtype in cls.FIELDS}
        except (OSError, ValueError, KeyError):
            return empty  # no cache yet, or an unreadable one: start afresh (it is only a cache)
        if len({len(a) for a in arrays.values()}) != 1:
            return empty
        return arrays

    def __len__(self):
        return len(self.arrays['key'])

    def lookup(self, keys, sizes, mtimes, decode):
        """``(hit, height, width)`` for files of ``keys`` / ``sizes`` / ``mtimes`` (n,):
        ``hit`` bool where the cache vouches for the file as it is now."""
        a = self.arrays
        if not len(self):
            return np.zeros(len(keys), bool), np.zeros(len(keys), np.int32), \
                np.zeros(len(keys), np.int32)
        at = np.minimum(np.searchsorted(a['key'], keys), len(self) - 1)
        hit = ((a['key'][at] == keys) & (a['size'][at] == sizes) & (a['mtime'][at] == mtimes)
               & (a['decoded'][at] | (not decode)))
        return hit, a['height'][at], a['width'][at]

    def updated(self, found):
        """A cache holding ``found`` (arrays of :data:`FIELDS`, readable files only) and every
        entry of this one that ``found`` does not replace."""
        old = self.arrays
        keep = ~np.isin(old['key'], found['key'])
        merged = {name: np.concatenate([old[name][keep], np.asarray(found[name], dtype)])
                  for name, dtype in self.FIELDS}
        order = np.argsort(merged['key'], kind='stable')
        return ImageCheckCache(self.path, {k: v[order] for k, v in merged.items()})

    def save(self):
        """Writes the cache atomically (a unique temporary name, then a rename)."""
        with atomic_path(self.path) as tmp:
            with open(tmp, 'wb') as f:
                np.savez(f, version=np.int64(self.VERSION), **self.arrays)


class ImageChecks(object):
    """What the checks of one start found, for the datasets built after them (rank 0).

    ``result(path)`` answers as :func:`~.validation.inspect_image` would (``('ok', H, W)`` or
    ``(kind, message)``), or ``None`` for a file that was not checked; ``results(paths)`` does
    it for many at once: int8 status (:data:`OK`, :data:`MISSING`, :data:`UNREADABLE`, -1 not
    checked), int32 height and width ``(n,)`` and ``{position: (kind, message)}`` for the bad.
    """

    def __init__(self, keys, status, height, width, messages, decoded):
        order = np.argsort(keys, kind='stable')
        self.keys, self.status = keys[order], status[order]
        self.height, self.width = height[order], width[order]
        self.messages = messages  # key -> message, for the files that are not OK
        self.decoded = decoded

    def results(self, paths, decode=True):
        keys = path_keys(paths)
        status = np.full(len(keys), -1, np.int8)
        height = np.zeros(len(keys), np.int32)
        width = np.zeros(len(keys), np.int32)
        if len(self.keys) and (self.decoded or not decode):
            at = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
            found = self.keys[at] == keys
            status[found] = self.status[at[found]]
            height[found], width[found] = self.height[at[found]], self.width[at[found]]
        problems = {}
        for i in np.flatnonzero(status > 0):
            problems[int(i)] = (_KIND[int(status[i])], self.messages[int(keys[i])])
        return status, height, width, problems

    def result(self, path, decode=True):
        # One file at a time (VOC's datasets ask for each image): no arrays made per call.
        if not len(self.keys) or (decode and not self.decoded):
            return None
        key = path_key(os.path.abspath(path))
        at = int(np.searchsorted(self.keys, np.uint64(key)))
        if at == len(self.keys) or int(self.keys[at]) != key:
            return None
        status = int(self.status[at])
        if status != OK:
            return _KIND[status], self.messages[key]
        return 'ok', int(self.height[at]), int(self.width[at])


def _check_share(paths, indices, cache, decode):
    """Checks ``paths[i]`` for ``i`` in ``indices``: the cache answers for unchanged files,
    :func:`~.validation.inspect_image` for the others. Returns the share's arrays, the
    messages of its bad files by key, and how many files the cache answered for."""
    n = len(indices)
    keys = np.zeros(n, np.uint64)
    sizes = np.full(n, -1, np.int64)
    mtimes = np.zeros(n, np.int64)
    for j, i in enumerate(indices):
        path = os.path.abspath(paths[i])
        keys[j] = path_key(path)
        try:
            st = os.stat(path)
        except OSError:
            continue  # missing: inspected below, never cached
        sizes[j], mtimes[j] = st.st_size, st.st_mtime_ns
    hit, height, width = cache.lookup(keys, sizes, mtimes, decode)
    hit &= sizes >= 0
    status = np.zeros(n, np.int8)
    height, width = height.copy(), width.copy()
    messages = {}
    for j in np.flatnonzero(~hit):
        result = V.inspect_image(paths[indices[j]], decode)
        if result[0] == 'ok':
            height[j], width[j] = result[1], result[2]
        else:
            status[j] = _STATUS[result[0]]
            messages[int(keys[j])] = result[1]
    return dict(key=keys, size=sizes, mtime=mtimes, status=status, height=height,
                width=width), messages, int(hit.sum())


def check_images_across_ranks(paths, comm, decode, cache_path):
    """Checks the image files ``paths`` (the same sequence on every rank) split across the
    ranks of ``comm``, and remembers the readable ones in the cache at ``cache_path``.

    Rank ``r`` checks ``paths[r::size]`` (a full decode with ``decode``, else the header);
    rank 0 gathers the results, saves the cache and keeps them for
    :func:`~.validation.check_image` and :meth:`ImageChecks.results` (the datasets it builds
    next apply the bad-input policy to the whole set there). Returns
    ``(from_cache, checked_now)`` counts on every rank.
    """
    cache = ImageCheckCache(cache_path)
    share, messages, from_cache = _check_share(
        paths, range(comm.rank, len(paths), comm.size), cache, decode)
    gathered = comm.gather_obj((share, messages, from_cache))
    if comm.rank == 0:
        arrays = {name: np.concatenate([g[0][name] for g in gathered]) for name in share}
        ok = arrays['status'] == OK
        found = {name: arrays[name][ok] for name in ('key', 'size', 'mtime', 'height', 'width')}
        # A header check keeps what a former decode of the unchanged file established.
        found['decoded'] = (np.ones(int(ok.sum()), bool) if decode else
                            cache.lookup(found['key'], found['size'], found['mtime'], True)[0])
        cache.updated(found).save()
        all_messages = {}
        for g in gathered:
            all_messages.update(g[1])
        V.install_checks(ImageChecks(arrays['key'], arrays['status'], arrays['height'],
                                     arrays['width'], all_messages, bool(decode)))
        total_from_cache = sum(g[2] for g in gathered)
    else:
        total_from_cache = None
    total_from_cache = comm.bcast_obj(total_from_cache)
    return total_from_cache, len(paths) - total_from_cache


def image_check_mode(image_check='header', check_images=None):
    """The check in force, one of :data:`IMAGE_CHECKS`: ``image_check``, or, when the former
    boolean ``check_images`` is given (the datasets' keyword before ``image_check``), 'decode'
    for True and 'header' for False. Raises ValueError for any other value."""
    if check_images is not None:
        image_check = 'decode' if check_images else 'header'
    if image_check not in IMAGE_CHECKS:
        raise ValueError('image_check must be one of %s, got %r'
                         % (', '.join(IMAGE_CHECKS), image_check))
    return image_check


def check_files(paths, comm, image_check, cache_path):
    """A system's start-up image checks: :func:`check_images_across_ranks` of ``paths`` with a
    full decode for ``image_check == 'decode'`` and the header for 'header'; nothing for
    'none' (and no earlier checks stay installed for the datasets). Returns
    ``(from_cache, checked_now)`` on every rank, or None for 'none'."""
    if image_check_mode(image_check) == 'none':
        V.install_checks(None)
        return None
    return check_images_across_ranks(paths, comm, image_check == 'decode', cache_path)


def summary(image_check, counts, ranks):
    """Rank 0's log line of :func:`check_files` (``counts`` what it returned)."""
    if counts is None:
        return ('image checks: none (--image-check none): a missing or unreadable image is '
                'found when training reads it')
    return ('image checks: %d images unchanged since a previous start (cached), %d %s now '
            'across %d ranks (--image-check %s)'
            % (counts[0], counts[1], 'decoded' if image_check == 'decode' else
               'checked (headers)', ranks, image_check))


def file_status(paths, decode, wanted=None):
    """Whether each file of ``paths`` (a sequence of paths) is readable: int8 status ``(n,)``
    (0 readable, else not) and ``{position: (kind, message)}`` for the bad, from the start-up
    checks where they cover a file (:func:`~.validation.installed_checks`), else by opening it
    (:func:`~.validation.inspect_image`, a decode with ``decode``). Only the files where
    ``wanted`` (bool ``(n,)``, default all) are looked at; the others are given 0."""
    n = len(paths)
    wanted = np.ones(n, bool) if wanted is None else np.asarray(wanted, bool)
    checks = V.installed_checks()
    if checks is not None:
        status, _, _, problems = checks.results(paths, decode)
    else:
        status, problems = np.full(n, -1, np.int8), {}
    for i in np.flatnonzero(wanted & (status < 0)):
        result = V.inspect_image(paths[i], decode)
        status[i] = 0 if result[0] == 'ok' else 1
        if result[0] != 'ok':
            problems[int(i)] = result
    status[~wanted] = 0
    return status, problems
