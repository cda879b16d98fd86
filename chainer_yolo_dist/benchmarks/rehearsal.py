"""The rehearsal: the real training scripts under ``mpiexec`` on paper-shaped data
(:mod:`.rehearsal_data`), measured per rank from outside.

Each job (a training script with a paper preset) is started three times, each time as
``mpiexec -n RANKS python scripts/train_*.py --preset P ... --iterations N``:

1. ``first``: on the paper-sized data with an empty image-check cache
   (``$CHAINER_YOLO_DIST_CACHE`` points into the work directory);
2. ``second``: the same command again, the cache now filled (a second start);
3. ``one_image``: the same command on a dataset of one image per split, whose peak memory is
   the network's own training footprint (model, optimizer, activations, libraries).

Every rank records its times and peak memory through :mod:`chainer_yolo_dist.core.timing`
(``$CHAINER_YOLO_DIST_TIMING_DIR``). Once every rank has written its record the job is
stopped: what follows (the final evaluation on VOC2007 test or ImageNet val) is not measured.

Definitions, per rank, all wall-clock seconds:

- ``launch``: just before ``mpiexec`` is started;
- ``to_update_start``: launch -> the rank's ``trainer.run()`` entered (imports, MPI,
  image checks, data, network, iterators all done; the first update, its first batch
  included, starts);
- ``to_update_end``: launch -> the end of the first update;
- ``process_to_update_start`` / ``process_to_update_end``: the same from the rank's own
  process start;
- ``check_images``: the rank's share of the image checks; ``load_data``: rank 0 building
  the datasets (the other ranks wait for it);
- ``seconds_per_iteration``: median time between the ends of consecutive updates after the
  first;
- ``peak_rss``: the rank's peak resident memory (``getrusage`` maxrss of the rank process,
  its loader worker processes not included); ``beyond_footprint``: the first start's
  ``peak_rss`` less the one-image start's, rank by rank.

The targets (issue 11, this 2-core machine, 4 ranks) are judged on ``to_update_start``, the
end of start-up; ``to_update_end`` adds one training step of the paper's network at its
input size on a CPU core, which is compute, not start-up.
"""
import dataclasses
import json
import os
import signal
import statistics
import subprocess
import sys
import time

from chainer_yolo_dist.benchmarks import rehearsal_data
from chainer_yolo_dist.core import atomic, presets
from chainer_yolo_dist.core.timing import ENV as TIMING_ENV
from chainer_yolo_dist.core.timing import timing_path

MB = 1e6
#: Issue 11's targets: (kind, start) -> seconds to the start of the first update; kind ->
#: bytes beyond the network's footprint (the largest over the ranks is judged).
START_TARGETS = {('voc', 'first'): 60.0, ('voc', 'second'): 20.0, ('imagenet', 'first'): 60.0}
MEMORY_TARGETS = {'voc': 200 * MB, 'imagenet': 500 * MB}
STARTS = ('first', 'second', 'one_image')
#: A snapshot interval no rehearsal reaches: no snapshot is written.
NO_SNAPSHOT = 10 ** 9


@dataclasses.dataclass(frozen=True)
class Job:
    """One training script with one paper preset.

    Attributes:
        name: the job's name (``rehearsal_<name>.json``).
        script: the script under ``scripts/``.
        preset: the paper preset it runs.
        data: 'voc' or 'imagenet'.
        batchsize: images per rank (below the paper's, so that four ranks fit one small
            machine; the output says so).
        args: further options of the script.
    """

    name: str
    script: str
    preset: str
    data: str
    batchsize: int
    args: tuple = ()


#: The rehearsal's jobs: papers 000 and 001's detectors (their real model and input size,
#: from random weights) and paper 001's Darknet53 ImageNet classifier.
JOBS = (
    Job('yolov2_voc_2018', 'train_yolo.py', 'yolov2_voc_2018', 'voc', 2, ('--from-scratch',)),
    Job('yolov3_voc_2019', 'train_yolo.py', 'yolov3_voc_2019', 'voc', 1, ('--from-scratch',)),
    Job('darknet53_imagenet_2019', 'train_darknet.py', 'darknet53_imagenet_2019', 'imagenet',
        8),
)


def data_args(kind, root):
    """The data options of a job's command for data built at ``root``."""
    if kind == 'voc':
        return ['--data-dir', os.path.join(root, 'VOCdevkit')]
    return ['--data-dir', root, '--train-list', os.path.join(root, 'train.txt'),
            '--val-list', os.path.join(root, 'val.txt')]


def command(job, repo, ranks, data_root, iterations, out, extra=()):
    """The argv of one start: ``mpiexec -n RANKS python scripts/SCRIPT --preset ...``.

    Evaluation during training is off (``--eval-interval 0``), no snapshot is written (its
    interval, :data:`NO_SNAPSHOT`, lies beyond the run: the final one of a paper network and
    its momentum is hundreds of MB, compressed on one core) and every update is logged."""
    python = sys.executable
    mpiexec = os.path.join(os.path.dirname(python), 'mpiexec')
    return ([mpiexec, '-n', str(ranks), python, os.path.join(repo, 'scripts', job.script),
             '--preset', job.preset] + data_args(job.data, data_root)
            + ['--batchsize', str(job.batchsize), '--iterations', str(iterations),
               '--eval-interval', '0', '--snapshot-interval', str(NO_SNAPSHOT),
               '--log-interval', '1', '--no-progress',
               '--out', out, '--overwrite'] + list(job.args) + list(extra))


def environment(repo, timing_dir, cache_dir):
    """The environment of one start: per-rank timing on, its own image-check cache."""
    env = dict(os.environ)
    env.update({TIMING_ENV: timing_dir, 'CHAINER_YOLO_DIST_CACHE': cache_dir,
                'OMP_NUM_THREADS': env.get('OMP_NUM_THREADS', '1'), 'MPLBACKEND': 'Agg',
                'PYTHONUNBUFFERED': '1', 'CHAINERMN_FORCE_ABORT_ON_EXCEPTION': '1',
                'PYTHONPATH': repo + os.pathsep + env.get('PYTHONPATH', '')})
    return env


def _records(timing_dir, ranks):
    paths = [timing_path(timing_dir, r) for r in range(ranks)]
    if not all(os.path.isfile(p) for p in paths):
        return None
    out = []
    for p in paths:
        with open(p) as f:
            out.append(json.load(f))
    return out


def descendants(pid):
    """The pids of every process below ``pid`` (Linux ``/proc``; empty elsewhere)."""
    children = {}
    for entry in os.listdir('/proc') if os.path.isdir('/proc') else ():
        if entry.isdigit():
            try:
                with open('/proc/%s/stat' % entry) as f:
                    ppid = int(f.read().rsplit(')', 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue  # exited meanwhile
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), ()):
            out.append(child)
            todo.append(child)
    return out


def _alive(pids):
    alive = []
    for pid in pids:
        try:
            with open('/proc/%d/stat' % pid) as f:
                if f.read().rsplit(')', 1)[1].split()[0] != 'Z':
                    alive.append(pid)
        except OSError:
            pass
    return alive


def stop(proc, grace=30):
    """Ends the job ``proc`` started in its own session: SIGTERM to its process group and to
    every process below it (MPICH's proxy puts each rank in a process group of its own; the
    ranks' forkserver and loader workers), SIGKILL after ``grace`` seconds; returns once all
    of them have exited, so that the next start does not share the cores with this one's
    leftovers."""
    family = descendants(proc.pid)
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10)):
        family = _alive(set(family) | set(descendants(proc.pid)))
        if proc.poll() is not None and not family:
            break
        for pid in family:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        deadline = time.time() + wait
        while time.time() < deadline and (proc.poll() is None or _alive(family)):
            time.sleep(0.1)
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers of a group whose leader has exited
    except ProcessLookupError:
        pass
    proc.wait()


def run_start(argv, env, ranks, log_path, timeout):
    """Runs one start until every rank has written its timing record, then stops it.

    Returns:
        ``(launch time, [record per rank])``. Raises RuntimeError naming the log when the
        job ends without the records or runs past ``timeout`` seconds.
    """
    timing_dir = env[TIMING_ENV]
    with open(log_path, 'w') as log:
        launch = time.time()
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        try:
            while True:
                records = _records(timing_dir, ranks)
                if records is not None:
                    return launch, records
                if proc.poll() is not None:
                    records = _records(timing_dir, ranks)
                    if records is not None:
                        return launch, records
                    raise RuntimeError('%s exited with status %d before every rank recorded '
                                       'its timing; its output: %s\n%s'
                                       % (argv[4], proc.returncode, log_path,
                                          _tail(log_path)))
                if time.time() - launch > timeout:
                    raise RuntimeError('%s ran past %d s; its output: %s\n%s'
                                       % (argv[4], timeout, log_path, _tail(log_path)))
                time.sleep(0.5)
        finally:
            stop(proc)


def _tail(path, n=3000):
    with open(path, errors='replace') as f:
        return f.read()[-n:]


def _span(record, name):
    span = record['phases'].get(name)
    return None if span is None else span[1] - span[0]


def rank_figures(record, launch):
    """One rank's figures of one start (see the module's docstring)."""
    ends = [u[1] for u in record['updates']]
    if not ends:
        raise ValueError('rank %d recorded no update' % record['rank'])
    steps = [b - a for a, b in zip(ends, ends[1:])]
    return {'rank': record['rank'],
            'to_process_start': record['process_start'] - launch,
            'to_update_start': record['first_update_start'] - launch,
            'to_update_end': ends[0] - launch,
            'process_to_update_start': record['first_update_start'] - record['process_start'],
            'process_to_update_end': ends[0] - record['process_start'],
            'check_images': _span(record, 'check_images'),
            'load_data': _span(record, 'load_data'),
            'seconds_per_iteration': statistics.median(steps) if steps else None,
            'iterations': len(ends), 'peak_rss': record['peak_rss_bytes']}


def beyond_footprint(first, one_image):
    """Per rank: the first start's peak memory less the one-image start's (bytes)."""
    return [a['peak_rss'] - b['peak_rss'] for a, b in zip(first, one_image)]


def judge(kind, starts, beyond):
    """Issue 11's targets for this job: ``[{target, limit, value, met}]`` (the worst rank)."""
    out = []
    for (target_kind, start), limit in sorted(START_TARGETS.items()):
        if target_kind == kind and start in starts:
            value = max(r['to_update_start'] for r in starts[start])
            out.append({'target': 'launch to first update, %s start (s)' % start,
                        'limit': limit, 'value': value, 'met': value <= limit})
    if beyond is not None:
        value = max(beyond)
        out.append({'target': 'memory beyond the network\'s footprint (MB)',
                    'limit': MEMORY_TARGETS[kind] / MB, 'value': value / MB,
                    'met': value <= MEMORY_TARGETS[kind]})
    return out


def departures(job, iterations, preset_batchsize=None):
    """In words, how the rehearsal's run departs from the paper preset's."""
    out = ['%d images per rank%s' % (job.batchsize, ' instead of the preset\'s %d'
                                     % preset_batchsize if preset_batchsize else ''),
           '%d iterations (--iterations), evaluation off (--eval-interval 0), no snapshot '
           '(--snapshot-interval %d); each start is stopped once every rank has recorded '
           'its timing (the final evaluation is not run)' % (iterations, NO_SNAPSHOT)]
    if '--from-scratch' in job.args:
        out.append('random initial weights (--from-scratch) instead of the preset\'s '
                   'pretrained trunk')
    others = [a for a in job.args if a != '--from-scratch']
    if others:
        out.append('further options: %s' % ' '.join(others))
    return out


def _cell(value, fmt='%.1f'):
    return '-' if value is None else fmt % value


def markdown_table(results):
    """A table of every job and rank: start-up (first / second start), image checks, time
    per iteration, peak memory and memory beyond the footprint."""
    lines = ['| job | rank | to 1st update start / end, 1st start (s) | same, 2nd start (s) '
             '| image checks 1st / 2nd (s) | data load 1st / 2nd (s) | s / iteration '
             '| peak RSS (MB) | one-image peak (MB) | beyond (MB) |',
             '|' + '---|' * 10]
    for result in results:
        starts, beyond = result['starts'], result['beyond_footprint_bytes']
        for rank, first in enumerate(starts['first']):
            second = starts.get('second', [None] * (rank + 1))[rank] or {}
            one = starts.get('one_image', [None] * (rank + 1))[rank] or {}
            lines.append('| %s | %d | %s / %s | %s / %s | %s / %s | %s / %s | %s | %s | %s | %s |'
                         % (result['job'], rank, _cell(first['to_update_start']),
                            _cell(first['to_update_end']), _cell(second.get('to_update_start')),
                            _cell(second.get('to_update_end')), _cell(first['check_images']),
                            _cell(second.get('check_images')), _cell(first['load_data']),
                            _cell(second.get('load_data')),
                            _cell(first['seconds_per_iteration'], '%.2f'),
                            _cell(first['peak_rss'] / MB, '%.0f'),
                            _cell(one.get('peak_rss') and one['peak_rss'] / MB, '%.0f'),
                            _cell(beyond and beyond[rank] / MB, '%.0f')))
    return '\n'.join(lines)


def target_lines(results):
    return ['- %s, %s: %s %.1f (limit %g)' % (r['job'], t['target'],
                                              'met' if t['met'] else 'MISSED', t['value'],
                                              t['limit'])
            for r in results for t in r['targets']]


def write_result(out_dir, result):
    """``out_dir/rehearsal_<job>.json``, atomically; returns its path."""
    path = os.path.join(out_dir, 'rehearsal_%s.json' % result['job'])
    atomic.write_json(path, result)
    return path


def build_data(kind, root, scale=1.0, n_class=rehearsal_data.IMAGENET_CLASSES):
    """Builds a job's paper-shaped data at ``root`` (``scale`` x the papers' counts, at least
    one image per split); returns the counts with the seconds taken and the disk used."""
    start, cpu = time.time(), _cpu_seconds()
    if kind == 'voc':
        splits = {k: max(1, int(round(n * scale))) for k, n in rehearsal_data.VOC_SPLITS.items()}
        counts = rehearsal_data.build_voc(os.path.join(root, 'VOCdevkit'), splits)
    else:
        n_val = max(1, int(round(rehearsal_data.IMAGENET_VAL * scale / n_class))) * n_class
        n_train = max(n_class, int(round(rehearsal_data.IMAGENET_TRAIN * scale)))
        counts = rehearsal_data.build_imagenet(root, n_train=n_train, n_val=n_val,
                                               n_class=n_class, pool_size=min(1000, n_train))
    seconds, cpu = time.time() - start, _cpu_seconds() - cpu
    return {'counts': counts, 'build_seconds': seconds, 'build_cpu_seconds': cpu,
            'disk_bytes': rehearsal_data.disk_bytes(root)}


def _cpu_seconds():
    """CPU time of this process and its finished children (the link workers)."""
    import resource
    return sum(u.ru_utime + u.ru_stime for u in (
        resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)))


def one_image_data(kind, root, ranks):
    """The one-image-per-split dataset of ``kind`` at ``root`` (the footprint's run; ImageNet's
    validation split holds one entry per rank, see
    :func:`~.rehearsal_data.build_one_image`)."""
    if kind == 'voc':
        return rehearsal_data.build_one_image(os.path.join(root, 'VOCdevkit'), 'voc')
    return rehearsal_data.build_one_image(root, 'imagenet', ranks)


def rehearse_job(job, repo, workdir, data_root, one_image_root, ranks=4, iterations=4,
                 timeout=1800, extra=(), log=print):
    """The three starts of ``job`` (first, second, one_image) and their figures.

    ``data_root`` holds the paper-shaped data, ``one_image_root`` the one-image data; the
    runs, timing records, caches and logs go under ``workdir``. Returns the job's record
    (what ``rehearsal_<job>.json`` holds)."""
    starts, commands, load = {}, {}, {}
    for start in STARTS:
        root = one_image_root if start == 'one_image' else data_root
        tag = '%s-%s' % (job.name, start)
        cache = os.path.join(workdir, 'cache', job.name + ('-one_image' if start == 'one_image'
                                                           else ''))
        argv = command(job, repo, ranks, root, iterations, os.path.join(workdir, 'runs', tag),
                       extra)
        env = environment(repo, os.path.join(workdir, 'timing', tag), cache)
        log('%s: %s' % (tag, ' '.join(argv)))
        before = os.getloadavg()
        launch, records = run_start(argv, env, ranks, os.path.join(workdir, tag + '.log'),
                                    timeout)
        starts[start] = [rank_figures(r, launch) for r in records]
        commands[start] = argv
        load[start] = {'before': before, 'after': os.getloadavg()}
        worst = max(r['to_update_start'] for r in starts[start])
        log('%s: first update started %.1f s after launch (slowest rank)' % (tag, worst))
    beyond = beyond_footprint(starts['first'], starts['one_image'])
    preset = presets.load(job.preset, ranks)
    return {'job': job.name, 'preset': job.preset, 'script': job.script, 'ranks': ranks,
            'iterations': iterations, 'batchsize_per_rank': job.batchsize,
            'departures': departures(job, iterations, preset.batchsize_per_gpu)
            + (['further options: %s' % ' '.join(extra)] if extra else []),
            'commands': commands, 'load_average': load, 'starts': starts,
            'beyond_footprint_bytes': beyond, 'targets': judge(job.data, starts, beyond),
            'cpus': os.cpu_count(), 'niceness': os.nice(0), 'definitions': __doc__}
