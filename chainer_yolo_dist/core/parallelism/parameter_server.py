"""Asynchronous data parallel with parameter servers over MPI (the package's reading of paper 003).

Paper 003 (Overview) trained with its own asynchronous data-parallel program and says only that
the data is processed in parallel on many GPUs with the parameters' update quantities summed
over the interconnect, gradients coming from possibly old weights; it names no parameter
server, sharding, push or pull period or staleness bound, and cites Dean et al. 2012 (its
reference [2]) as an example of asynchronous data parallelism. This module is the package's
reading of that unspecified method: parameter servers as in Dean et al.'s Downpour SGD, over
mpi4py, for CPU or GPU workers (the messages are host arrays). Server-free readings (peers
adding each other's updates, a sum applied late) fit the words too (docs/parallelism.md).

How the world splits: ranks ``0 .. n_servers - 1`` of the communicator are **servers**, the
others **workers**. The flat parameter vector (:mod:`.flat`) is cut into
``n_servers`` contiguous shards at parameter boundaries; server ``s`` holds shard ``s`` and a
Chainer optimizer over it (for example ``MomentumSGD`` with ``WeightDecay``, or with
``GradientLARS``: the shard keeps every parameter whole). Data must be split over the workers
only (:func:`split_world` gives their own communicator).

Protocol (non-blocking on the workers, so that their compute overlaps the transfers):

* a worker accumulates (sums) its gradients and every ``push_every`` steps sends them, one
  shard per server, tagged with the *version* of the parameters it computed them on;
* every ``pull_every`` steps it asks each server for its shard; the reply is used when it has
  arrived (checked at the start of each step; a worker never has two pulls in flight);
* a server applies each gradient when it arrives (one update = one *version*) and records its
  staleness: the server's version at application minus the gradient's version.

Staleness bound ``max_staleness = S`` (stale-synchronous parallel, Ho et al. 2013): a worker's
*clock* is the number of gradients it has pushed. After its ``c``-th push a worker waits for the
servers' acknowledgement, which they hold until every running worker has pushed at least
``c - S`` times: no worker computes more than ``S`` clocks ahead of the slowest, so when it
pushes it leads by at most ``S + 1`` pushes (``ServerStats.max_clock_gap``).
With ``S = 0`` the servers go further: they wait for every running worker's gradient of the
current version and apply their **mean** once (one version per round), and the acknowledgement
carries the new parameters when the push asked for them; with ``push_every = pull_every = 1``
this is synchronous SGD, update for update (tested in float64). ``S = None`` is Downpour's
way (no bound, no acknowledgements), the default reading.

Ending: each worker sends ``done`` after its last push; a server ends when every worker is done,
then the final parameters are broadcast to every rank (:meth:`ParameterServerOptimizer.finalize`
and :func:`run_server` meet in that collective). A rank that fails ends the whole job: an
uncaught exception calls ``MPI_Abort`` (ChainerMN's ``global_except_hook``, see
:func:`chainer_yolo_dist.core.mpi.abort_on_exception`) and MPICH's ``mpiexec`` kills every
rank when one exits without finalising MPI, so no server or worker waits forever.

Snapshots and resume: the servers run no trainer. When the worker that writes the trainer
snapshot serialises its optimizer (:meth:`ParameterServerOptimizer.serialize`), it asks every
server for its state (message ``SNAPSHOT``): the shard's parameters, the server optimizer's
state (momentum, its ``t``), the version, the statistics; the servers answer between two
messages, so each state is that of one moment, and it goes into the same snapshot file with
the worker's clock, versions and step counter. A resumed server reads its part of that file
before it serves (:func:`load_server_state`, by ``serve_run``), and every clock restarts at
the snapshot's. With ``max_staleness = 0`` the moment is exact: the writing worker has its
acknowledgement of the round, so every server has applied that round and no later one (a later
one needs this worker's next push, which follows the ``SNAPSHOT`` request in MPI's order), and
every worker holds the same parameters and clock: a resumed run ends with the bits of an
uninterrupted one, as long as the snapshot falls on a push (always with ``push_every = 1``; a
partial sum of ``push_every > 1`` steps is each worker's own and is dropped). Without a bound
(or with ``S >= 1``) the snapshot holds the servers as they were when asked and every worker
resumes with the writing worker's parameters: resumable, not exact, as the run itself is not
reproducible.

Batch-normalisation statistics (persistents) are not served: each worker keeps its own, as
Downpour's replicas do; a recipe averages them over the workers' communicator before
evaluating (:func:`.persistents.mean_persistents`).

MPI progress: with the pinned MPICH 5.0.2 (ch4) a point-to-point ``Isend`` of up to 16 MB
completed while the sending worker computed (the receiver copies it), so pushes overlap the
next step's computation; each step also tests the worker's requests. Where an MPI needs the
sender's progress, run MPICH with ``MPICH_ASYNC_PROGRESS=1``.

Staleness bound and versions: with a pull at every push, a gradient applied under a bound
``S >= 1`` with ``n`` workers is at most ``(n - 1) (2 S + 1)`` versions stale (the others can
have pushed from ``S`` behind to ``S + 1`` ahead of it since its parameters left the server).

GPU workers: the messages are host vectors (the MPI is not CUDA-aware). A worker sums its
gradients on its GPU and copies the packed sum to the host once per push; a pulled parameter
vector goes back to the GPU in one copy (:class:`.flat.PackedTransfer`).
The servers hold their shards and run their optimizer in host memory (NumPy).
"""
import collections
import json
import time
import zipfile
import zlib

import chainer
import numpy as np

from chainer_yolo_dist.core.parallelism.flat import (FlatLayout, PackedTransfer, pack_grads,
                                                     pack_params, host_buffer, mpi_comm_of,
                                                     shard_bounds, unpack_params)

# Message kinds and tags. A request header is int64 [kind, clock, version, want_params];
# a reply header is int64 [version, has_params]; a server's state (SNAPSHOT) is a pickled dict.
PUSH, PULL, DONE, SNAPSHOT = 0, 1, 2, 3
TAG_REQUEST, TAG_GRAD, TAG_REPLY, TAG_PARAMS, TAG_STATE = 101, 102, 103, 104, 105
#: Where a snapshot keeps the servers' state, under the writing worker's optimizer.
SNAPSHOT_GROUP = 'parameter_servers'


Roles = collections.namedtuple('Roles', 'is_server server_ranks worker_ranks local_comm')


def split_world(comm, n_servers):
    """Splits the world into servers (ranks ``< n_servers``) and workers (a collective).

    Returns:
        :class:`Roles`: ``is_server`` for this rank, the two rank lists, and ``local_comm``,
        an mpi4py communicator over this rank's group (workers: to split the data, average
        batch-normalisation statistics or evaluate with
        ``chainermn.create_communicator('naive', mpi_comm=roles.local_comm)``).
    """
    mpi = mpi_comm_of(comm)
    if not 1 <= n_servers < mpi.size:
        raise ValueError('n_servers=%d needs at least one worker besides the servers; the '
                         'job has %d ranks' % (n_servers, mpi.size))
    is_server = mpi.rank < n_servers
    local = mpi.Split(0 if is_server else 1, mpi.rank)
    return Roles(is_server, list(range(n_servers)), list(range(n_servers, mpi.size)), local)


def _check_staleness(max_staleness):
    if max_staleness is not None and (int(max_staleness) != max_staleness
                                      or max_staleness < 0):
        raise ValueError('max_staleness must be None or an integer >= 0, got %r'
                         % (max_staleness,))


def _check_settings(first_workers, n_servers, max_staleness, who):
    # Ranks that disagree on these would wait for messages that never come: fail instead
    # (the exception aborts the job).
    mine = {'n_servers': n_servers, 'max_staleness': max_staleness}
    if first_workers != mine:
        raise ValueError('%s has %s but the first worker has %s: every rank must use the same '
                         'n_servers and max_staleness' % (who, mine, first_workers))


class _Shard(chainer.Link):
    """The server's parameters: views into one flat shard, one Parameter per model parameter,
    so that per-parameter hooks (LARS) and optimizer states act as they do on the model."""

    def __init__(self, layout, lo, hi, flat):
        super().__init__()
        self.flat = flat  # this shard, (hi - lo,)
        self.views = []
        with self.init_scope():
            for i, (name, shape, offset, size) in enumerate(zip(
                    layout.names, layout.shapes, layout.offsets, layout.sizes)):
                if lo <= offset < hi:
                    view = flat[offset - lo:offset - lo + size].reshape(shape)
                    setattr(self, 'p%d' % i, chainer.Parameter(view))
                    self.views.append((name, getattr(self, 'p%d' % i), offset - lo, size))

    def set_grad(self, grad):
        for _, param, offset, size in self.views:
            param.grad = grad[offset:offset + size].reshape(param.array.shape)

    def sync_flat(self):
        # Optimizers update in place (the arrays stay views of ``flat``); one that rebinds
        # ``param.array`` is copied back here.
        for _, param, offset, size in self.views:
            if not np.shares_memory(param.array, self.flat):
                self.flat[offset:offset + size] = param.array.ravel()


class ServerStats(object):
    """What one server did: updates (versions), staleness of each applied gradient
    (``{staleness: count}``), gradients received per worker, bytes in and out, the time
    spent waiting for messages (idle), and the largest lead in pushes of a pushing worker
    over the slowest running one (``max_clock_gap``; at most ``max_staleness + 1``)."""

    def __init__(self, rank):
        self.rank = rank
        self.updates = 0
        self.staleness = collections.Counter()
        self.pushes = collections.Counter()
        self.bytes_received = 0
        self.bytes_sent = 0
        self.idle_s = 0.0
        self.max_clock_gap = 0

    def as_dict(self):
        return {'role': 'server', 'rank': self.rank, 'updates': self.updates,
                'staleness': {int(k): int(v) for k, v in sorted(self.staleness.items())},
                'pushes': {int(k): int(v) for k, v in sorted(self.pushes.items())},
                'bytes_received': int(self.bytes_received), 'bytes_sent': int(self.bytes_sent),
                'idle_s': float(self.idle_s), 'max_clock_gap': int(self.max_clock_gap)}

    def load_dict(self, record):
        """Takes back the counts of :meth:`as_dict` (a resumed server's, from a snapshot)."""
        self.updates = int(record['updates'])
        self.staleness = collections.Counter({int(k): v for k, v in record['staleness'].items()})
        self.pushes = collections.Counter({int(k): v for k, v in record['pushes'].items()})
        for key in ('bytes_received', 'bytes_sent', 'max_clock_gap'):
            setattr(self, key, int(record[key]))
        self.idle_s = float(record['idle_s'])


def _server_state(shard, optimizer, lo, hi, version, stats):
    """What a snapshot keeps of one server: a flat dict of host arrays."""
    serializer = chainer.serializers.DictionarySerializer()
    optimizer.serialize(serializer)
    state = {'optimizer/' + key: np.array(value) for key, value in serializer.target.items()}
    state.update(bounds=np.array([lo, hi], np.int64), params=shard.flat.copy(),
                 version=np.array(version, np.int64),
                 stats=np.array(json.dumps(stats.as_dict(), sort_keys=True)))
    return state


def load_server_state(path, rank):
    """Server ``rank``'s state in the snapshot ``path`` (a dict for :func:`run_server`'s
    ``state``). ValueError, in words, when the snapshot holds none (written before issue 23,
    or by another mode) or cannot be read."""
    suffix = '/%s/server%d/params' % (SNAPSHOT_GROUP, rank)
    try:
        with np.load(path) as npz:
            found = [key for key in npz.files if key.endswith(suffix)]
            if len(found) != 1:
                raise ValueError('%s holds no state of parameter server %d (a snapshot of '
                                 'another mode, or written before the servers\' state was '
                                 'kept)' % (path, rank))
            prefix = found[0][:-len('params')]
            state = {key[len(prefix):]: npz[key] for key in npz.files
                     if key.startswith(prefix)}
            clock = npz[prefix[:-len('server%d/' % rank)] + 'clock']
    except (OSError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise ValueError('%s: cannot read parameter server %d\'s state: %s' % (path, rank, e))
    state['clock'] = clock
    return state


def _restore_server(state, shard, optimizer, lo, hi, stats):
    """Puts a snapshot's :func:`_server_state` back; returns ``(version, clock)``."""
    if tuple(int(b) for b in state['bounds']) != (lo, hi):
        raise ValueError('the snapshot\'s shard is [%d, %d) of the parameters, this server\'s '
                         '[%d, %d): another model or number of servers'
                         % (tuple(int(b) for b in state['bounds']) + (lo, hi)))
    shard.flat[...] = state['params']  # in place: the parameters are views of it
    optimizer.serialize(chainer.serializers.NpzDeserializer(
        {key[len('optimizer/'):]: value for key, value in state.items()
         if key.startswith('optimizer/')}))
    stats.load_dict(json.loads(str(state['stats'])))
    return int(state['version']), int(state['clock'])


def run_server(comm, optimizer, n_servers=1, max_staleness=None, hooks=(), on_update=None,
               state=None):
    """Serves shard ``rank`` until every worker is done (call on ranks ``< n_servers``).

    Args:
        comm: ChainerMN communicator or mpi4py communicator over all ranks.
        optimizer: a Chainer optimizer, not yet set up (it is set up on this server's shard
            and given ``hooks``), or a callable ``link -> set-up optimizer`` such as
            ``lambda link: build_optimizer(link, lr, 0.9, 5e-4, lars=True)``.
        n_servers (int), max_staleness (int or None): as the workers'
            :class:`ParameterServerOptimizer` (the same on every rank).
        on_update: optional ``f(optimizer, version)`` called before each update (learning-rate
            schedules in server versions).
        state: this server's state in a snapshot (:func:`load_server_state`), to resume
            from: parameters, optimizer state, version, statistics, the workers' clock; or a
            callable giving it (or None), called after the set-up collective.

    Returns:
        :class:`ServerStats`. The final parameters have been broadcast to every rank.
    """
    from mpi4py import MPI
    _check_staleness(max_staleness)
    mpi = mpi_comm_of(comm)
    rank = mpi.rank
    if rank >= n_servers:
        raise ValueError('rank %d is a worker: run_server is for ranks < %d' % (rank, n_servers))
    workers = list(range(n_servers, mpi.size))
    description, settings = mpi.bcast(None, root=n_servers)
    _check_settings(settings, n_servers, max_staleness, 'server %d' % rank)
    layout = FlatLayout.from_tuple(description)
    bounds = shard_bounds(layout, n_servers)
    lo, hi = bounds[rank], bounds[rank + 1]
    full = np.empty(layout.size, layout.dtype)
    mpi.Bcast(full, root=n_servers)
    shard = _Shard(layout, lo, hi, full[lo:hi].copy())
    del full
    if isinstance(optimizer, chainer.Optimizer):
        optimizer.setup(shard)
        for hook in hooks:
            optimizer.add_hook(hook)
    else:
        optimizer = optimizer(shard)

    stats = ServerStats(rank)
    version, start_clock = 0, 0
    if callable(state):
        state = state()
    if state is not None:
        version, start_clock = _restore_server(state, shard, optimizer, lo, hi, stats)
    active = set(workers)
    clock = dict.fromkeys(workers, start_clock)
    round_grads = {}  # max_staleness == 0: this round's gradients, by worker
    held = []  # acknowledgements waiting for the bound: (worker, clock, want_params)
    sends = []  # (request, buffer) of replies in flight
    header = np.empty(4, np.int64)
    status = MPI.Status()

    def apply(grad, grad_versions):
        nonlocal version
        if on_update is not None:
            on_update(optimizer, version)
        shard.cleargrads()
        shard.set_grad(grad)
        optimizer.update()
        shard.sync_flat()
        for v in grad_versions:
            stats.staleness[version - v] += 1
        version += 1
        stats.updates += 1

    def reply(worker, with_params):
        head = np.array([version, int(with_params)], np.int64)
        sends.append((mpi.Isend(head, dest=worker, tag=TAG_REPLY), head))
        stats.bytes_sent += head.nbytes
        if with_params:
            # a copy: later updates must not change a message in flight
            body = shard.flat.copy()
            sends.append((mpi.Isend(body, dest=worker, tag=TAG_PARAMS), body))
            stats.bytes_sent += body.nbytes

    def release():
        # a worker at clock c may go on once every running worker has pushed c - S times
        if max_staleness is None:
            return
        slowest = min((clock[w] for w in active), default=None)
        for item in list(held):
            worker, c, want = item
            if slowest is None or slowest >= c - max_staleness:
                held.remove(item)
                reply(worker, want)

    while active:
        start = time.perf_counter()
        mpi.Recv(header, source=MPI.ANY_SOURCE, tag=TAG_REQUEST, status=status)
        stats.idle_s += time.perf_counter() - start
        worker = status.Get_source()
        kind, c, v, want = (int(x) for x in header)
        stats.bytes_received += header.nbytes
        if kind == PUSH:
            grad = np.empty(hi - lo, layout.dtype)
            mpi.Recv(grad, source=worker, tag=TAG_GRAD)
            stats.bytes_received += grad.nbytes
            stats.pushes[worker] += 1
            clock[worker] = c
            # how many pushes this worker is ahead of the slowest running one
            stats.max_clock_gap = max(stats.max_clock_gap, c - min(clock[w] for w in active))
            if max_staleness == 0:
                if worker in round_grads:
                    raise RuntimeError('worker %d pushed twice in one synchronous round'
                                       % worker)
                round_grads[worker] = (grad, v)
            else:
                apply(grad, [v])
            if max_staleness is None:
                if want:
                    reply(worker, True)
            else:
                held.append((worker, c, want))
        elif kind == PULL:
            reply(worker, True)
        elif kind == DONE:
            active.discard(worker)
        elif kind == SNAPSHOT:
            # between two messages: the state of one moment (see the module docstring)
            mpi.send(_server_state(shard, optimizer, lo, hi, version, stats), dest=worker,
                     tag=TAG_STATE)
        else:
            raise RuntimeError('unknown message kind %d from rank %d' % (kind, worker))
        if max_staleness == 0 and round_grads and active <= set(round_grads):
            # every running worker's gradient of this version is in: one update, their mean
            grads = [round_grads[w][0] for w in sorted(round_grads)]
            apply(np.mean(grads, axis=0), [round_grads[w][1] for w in sorted(round_grads)])
            round_grads = {}
        release()
        sends = [(r, b) for r, b in sends if not r.Test()]
    MPI.Request.Waitall([r for r, _ in sends])
    _share_final(mpi, layout, n_servers, shard.flat)
    return stats


def _share_final(mpi, layout, n_servers, my_shard=None):
    """Every server broadcasts its shard; returns the full flat vector on every rank."""
    bounds = shard_bounds(layout, n_servers)
    full = np.empty(layout.size, layout.dtype)
    for s in range(n_servers):
        piece = full[bounds[s]:bounds[s + 1]]
        if mpi.rank == s:
            piece[...] = my_shard
        mpi.Bcast(piece, root=s)
    return full


class ParameterServerOptimizer(object):
    """The worker side: computes gradients, pushes them to the servers, pulls parameters.

    Used like a Chainer optimizer (``setup(link)``, ``update(lossfun, *args)``, ``t``,
    ``epoch``, ``new_epoch``), so ``chainer.training.StandardUpdater`` can drive it. The worker
    does not update its weights itself: they change only when a pull's reply arrives. Call
    :meth:`finalize` after the last step (it loads the final parameters).

    Args:
        comm: ChainerMN communicator or mpi4py communicator over all ranks.
        n_servers (int): ranks ``0 .. n_servers - 1`` serve (same on every rank).
        push_every (int): steps whose gradients are summed into one push.
        pull_every (int): steps between two pulls.
        max_staleness (int or None): see the module docstring.

    Attributes:
        stats (dict): steps, pushes, pulls, ``wait_s`` (time blocked on communication),
        ``bytes_sent`` / ``bytes_received``.
    """

    def __init__(self, comm, n_servers=1, push_every=1, pull_every=1, max_staleness=None):
        _check_staleness(max_staleness)
        for name, value in (('push_every', push_every), ('pull_every', pull_every)):
            if int(value) != value or value < 1:
                raise ValueError('%s must be a positive integer, got %r' % (name, value))
        self.mpi = mpi_comm_of(comm)
        if not 1 <= n_servers < self.mpi.size or self.mpi.rank < n_servers:
            raise ValueError('rank %d of %d is not a worker with n_servers=%d'
                             % (self.mpi.rank, self.mpi.size, n_servers))
        self.n_servers = n_servers
        self.push_every = int(push_every)
        self.pull_every = int(pull_every)
        self.max_staleness = max_staleness
        self.target = None
        self.t = 0
        self.epoch = 0
        self.stats = {'role': 'worker', 'rank': self.mpi.rank, 'steps': 0, 'pushes': 0,
                      'pulls': 0, 'wait_s': 0.0, 'bytes_sent': 0, 'bytes_received': 0}

    # -- set-up ---------------------------------------------------------------------------
    def setup(self, link):
        """Collective with :func:`run_server`: the first worker's weights become version 0
        on every server and every worker."""
        first = self.n_servers
        layout = FlatLayout.of(link)
        mine = {'n_servers': self.n_servers, 'max_staleness': self.max_staleness}
        _, settings = self.mpi.bcast((layout.to_tuple(), mine) if self.mpi.rank == first
                                     else None, root=first)
        _check_settings(settings, self.n_servers, self.max_staleness,
                        'worker %d' % self.mpi.rank)
        like = next(iter(link.params())).array  # page-locked host vectors for a GPU model
        # gradients are summed on a GPU between pushes, so they keep their own device vector
        # then; with a push every step it is free again by the time a pull is unpacked
        self._grad_transfer = PackedTransfer()
        self._param_transfer = (self._grad_transfer if self.push_every == 1
                                else PackedTransfer())
        flat = host_buffer(layout.size, layout.dtype, like)
        if self.mpi.rank == first:
            pack_params(link, flat, transfer=self._param_transfer)
        self.mpi.Bcast(flat, root=first)
        if self.mpi.rank != first:
            unpack_params(link, flat, transfer=self._param_transfer)
        self.target = link
        self.layout = layout
        self.bounds = shard_bounds(layout, self.n_servers)
        self._accum = host_buffer(layout.size, layout.dtype, like)
        self._sending = host_buffer(layout.size, layout.dtype, like)
        self._accum[...] = 0
        self._sending[...] = 0
        self._received = flat  # pulled parameters land here
        self._n_accum = 0
        self._clock = 0
        self._versions = [0] * self.n_servers
        self._send_requests = []  # (request, buffer)
        self._pull = None  # requests of the pull in flight: [(server, head, req_h, req_p)]
        self._ack = None  # bounded mode: acknowledgements of the last push
        self._done = False  # finalize has told the servers: they answer no more
        return self

    def _shard(self, array, s):
        return array[self.bounds[s]:self.bounds[s + 1]]

    # -- the step ---------------------------------------------------------------------------
    def update(self, lossfun=None, *args, **kwds):
        """One step: gradient of ``lossfun(*args)`` (or the gradients already in the
        target), accumulated; a push and/or a pull when they are due."""
        if self.target is None:
            raise RuntimeError('call setup(link) before update')
        self._poll_pull()
        if lossfun is not None:
            loss = lossfun(*args, **kwds)
            self.target.cleargrads()
            loss.backward()
            del loss
        # on a GPU the sum stays on the device until the step that pushes it
        push_now = self._n_accum + 1 == self.push_every
        pack_grads(self.target, self._accum, accumulate=self._n_accum > 0, defer=not push_now,
                   transfer=self._grad_transfer)
        self._n_accum += 1
        self.t += 1
        self.stats['steps'] += 1
        pull_now = self.t % self.pull_every == 0
        if self._n_accum == self.push_every:
            self._push(want_params=pull_now)
        elif pull_now:
            self._request_pull()

    def _wait(self, requests):
        start = time.perf_counter()
        from mpi4py import MPI
        MPI.Request.Waitall(requests)
        self.stats['wait_s'] += time.perf_counter() - start

    def _push(self, want_params):
        bounded = self.max_staleness is not None
        # a GPU worker's sum reaches the host now (finalize pushes a partial sum)
        self._grad_transfer.flush(self._accum)
        # the previous push's buffer must have left before it is reused
        self._wait([r for r, _ in self._send_requests])
        self._send_requests = []
        if self._pull is not None and (want_params or bounded):
            self._finish_pull()  # never two replies in flight
        self._accum, self._sending = self._sending, self._accum
        self._n_accum = 0
        self._clock += 1
        replies = []
        for s in range(self.n_servers):
            head = np.array([PUSH, self._clock, self._versions[s], int(want_params)], np.int64)
            body = self._shard(self._sending, s)
            if bounded or want_params:
                replies.append(self._post_reply(s, want_params))
            self._send_requests.append((self.mpi.Isend(head, dest=s, tag=TAG_REQUEST), head))
            self._send_requests.append((self.mpi.Isend(body, dest=s, tag=TAG_GRAD), body))
            self.stats['bytes_sent'] += head.nbytes + body.nbytes
        self.stats['pushes'] += 1
        if want_params:
            self.stats['pulls'] += 1
        if bounded:
            # the acknowledgement is the staleness bound: wait for it (and its parameters)
            self._pull = replies
            self._finish_pull()
        elif want_params:
            self._pull = replies

    def _post_reply(self, s, want_params):
        head = np.empty(2, np.int64)
        req_h = self.mpi.Irecv(head, source=s, tag=TAG_REPLY)
        req_p = (self.mpi.Irecv(self._shard(self._received, s), source=s, tag=TAG_PARAMS)
                 if want_params else None)
        return (s, head, req_h, req_p)

    def _request_pull(self):
        if self._pull is not None:
            self._finish_pull()
        replies = []
        for s in range(self.n_servers):
            replies.append(self._post_reply(s, True))
            head = np.array([PULL, self._clock, self._versions[s], 1], np.int64)
            self._send_requests.append((self.mpi.Isend(head, dest=s, tag=TAG_REQUEST), head))
            self.stats['bytes_sent'] += head.nbytes
        self.stats['pulls'] += 1
        self._pull = replies

    def _pull_requests(self):
        return [r for _, _, req_h, req_p in self._pull for r in (req_h, req_p) if r is not None]

    def _poll_pull(self):
        from mpi4py import MPI
        if self._send_requests and MPI.Request.Testall([r for r, _ in self._send_requests]):
            self._send_requests = []
        if self._pull is not None and MPI.Request.Testall(self._pull_requests()):
            self._finish_pull()

    def _finish_pull(self):
        self._wait(self._pull_requests())
        loaded = False
        for s, head, _, req_p in self._pull:
            self._versions[s] = int(head[0])
            self.stats['bytes_received'] += head.nbytes
            if req_p is not None:
                self.stats['bytes_received'] += self._shard(self._received, s).nbytes
                loaded = True
        if loaded:
            unpack_params(self.target, self._received, transfer=self._param_transfer)
        self._pull = None

    # -- the end ----------------------------------------------------------------------------
    def finalize(self):
        """Pushes what is left, tells the servers this worker is done, and loads the final
        parameters (a collective with the servers and the other workers). Returns stats."""
        if self._n_accum:
            self._push(want_params=False)
        if self._pull is not None:
            self._finish_pull()
        self._wait([r for r, _ in self._send_requests])
        self._send_requests = []
        done = np.array([DONE, self._clock, 0, 0], np.int64)
        for s in range(self.n_servers):
            self.mpi.Send(done, dest=s, tag=TAG_REQUEST)
            self.stats['bytes_sent'] += done.nbytes
        self._done = True
        final = _share_final(self.mpi, self.layout, self.n_servers)
        unpack_params(self.target, final, transfer=self._param_transfer)
        self.stats['bytes_final'] = final.nbytes  # the closing broadcast, counted apart
        return self.stats

    # -- what a StandardUpdater and the extensions expect of an optimizer ------------------
    def new_epoch(self, auto=False):
        self.epoch += 1

    #: Counts of ``stats`` a snapshot keeps (the same on every worker: functions of the step);
    #: ``wait_s`` is this process's.
    COUNTS = ('steps', 'pushes', 'pulls', 'bytes_sent', 'bytes_received')

    def serialize(self, serializer):
        """``t``, ``epoch``, then under ``parameter_servers/``: this worker's clock, versions
        and counts and, when writing, every server's state, asked for now
        (``server<s>/...``: see the module docstring). Loading restores the worker's part;
        each server reads its own part itself (:func:`load_server_state`)."""
        self.t = serializer('t', self.t)
        self.epoch = serializer('epoch', self.epoch)
        own = serializer[SNAPSHOT_GROUP]
        if isinstance(serializer, chainer.serializer.Serializer):
            own('n_servers', self.n_servers)
            own('clock', self._clock)
            own('versions', np.array(self._versions, np.int64))
            for key in self.COUNTS:
                own(key, self.stats[key])
            for s, state in enumerate(self._server_states()):
                for key, value in sorted(state.items()):
                    own['server%d' % s](key, value)
            return
        try:
            n_servers = int(own('n_servers', 0))
            clock = int(own('clock', 0))
            versions = [int(v) for v in own('versions', None)]
            counts = {key: int(own(key, 0)) for key in self.COUNTS}
        except KeyError:
            raise ValueError('the snapshot holds no parameter-server state (written before '
                             'issue 23 or by another mode): --parallelism async cannot resume '
                             'from it') from None
        if n_servers != self.n_servers:
            raise ValueError('the snapshot was written with %d parameter server(s), this run '
                             'has %d' % (n_servers, self.n_servers))
        if self._n_accum or self._pull is not None or self._clock:
            raise RuntimeError('load a snapshot before the first step, not during a run')
        self._clock, self._versions = clock, versions
        self.stats.update(counts)

    def _server_states(self):
        """Every server's state, asked for now (a snapshot: see the module docstring)."""
        if self._done:
            raise RuntimeError('the parameter servers have ended (finalize): a snapshot after '
                               'the last step cannot hold their state')
        request = np.array([SNAPSHOT, self._clock, 0, 0], np.int64)
        states = []
        for s in range(self.n_servers):
            self.mpi.Send(request, dest=s, tag=TAG_REQUEST)
            states.append(self.mpi.recv(source=s, tag=TAG_STATE))
        return states


def gather_stats(comm, stats):
    """Collects every rank's stats dict on rank 0 (a collective).

    Returns (rank 0 only; None elsewhere) ``{'servers': [...], 'workers': [...],
    'updates': total, 'staleness': merged histogram, 'bytes': total sent}``.
    """
    mpi = mpi_comm_of(comm)
    if isinstance(stats, ServerStats):
        stats = stats.as_dict()
    everyone = mpi.gather(stats, root=0)
    if mpi.rank != 0:
        return None
    servers = [s for s in everyone if s['role'] == 'server']
    workers = [s for s in everyone if s['role'] == 'worker']
    staleness = collections.Counter()
    for s in servers:
        staleness.update(s['staleness'])
    return {'servers': servers, 'workers': workers,
            'updates': sum(s['updates'] for s in servers),
            'staleness': {int(k): int(v) for k, v in sorted(staleness.items())},
            'bytes': sum(s['bytes_sent'] for s in everyone)}
