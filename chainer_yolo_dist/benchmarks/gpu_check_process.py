"""Running one stage of the GPU check as a process that cannot outlive its time budget.

A stage starts in a session of its own (``start_new_session``); at its timeout every process
of that session is ended, and every descendant of the stage's process besides: ``mpiexec``
ranks, their data-loader workers and forkservers. Both sets are needed: MPICH's process manager
moves each rank into a process group of its own (so signalling the stage's group misses them,
see ``scripts/rehearse.py``), and a process that starts a session of its own leaves ours but is
still a descendant while its parent lives. SIGTERM first, then SIGKILL to whatever is left
after a few seconds: a rank hung in a CUDA call or an MPI collective ignores SIGTERM.
"""
import os
import signal
import subprocess
import time

#: Seconds between SIGTERM and SIGKILL.
GRACE_SECONDS = 3.0


def _proc_table():
    """``{pid: (ppid, session id)}`` of every process, from ``/proc`` ({} elsewhere)."""
    table = {}
    try:
        names = os.listdir('/proc')
    except OSError:
        return table
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % name) as f:
                # The command name (field 2) may hold spaces and parentheses: split after it.
                fields = f.read().rsplit(')', 1)[1].split()
        except (OSError, IndexError):
            continue  # ended meanwhile
        table[int(name)] = (int(fields[1]), int(fields[3]))
    return table


def tree(pid):
    """``pid``, every process of its session and every descendant of ``pid`` (a set)."""
    table = _proc_table()
    found = {pid} | {p for p, (_, sid) in table.items() if sid == pid}
    children = {}
    for p, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(p)
    todo = list(found)
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _signal_all(pids, sig):
    for p in pids:
        try:
            os.kill(p, sig)
        except (ProcessLookupError, PermissionError):
            pass


def kill_session(proc, grace=GRACE_SECONDS):
    """Ends ``proc`` (a Popen; with ``start_new_session=True`` its whole session) and
    everything it started: SIGTERM, then after ``grace`` seconds SIGKILL to what is left.
    Returns when ``proc`` has been reaped."""
    pids = tree(proc.pid)
    if not _proc_table():  # no /proc: the session's process group is what can be reached
        pids = set()
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except OSError:
            pass
    _signal_all(pids, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    # Processes started meanwhile are in the tree too: look again before the last signal.
    left = (pids | tree(proc.pid)) if pids else set()
    _signal_all(left, signal.SIGKILL)
    if not pids:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
    proc.wait()


def run_with_budget(argv, budget, log_path, env=None, cwd=None):
    """Runs ``argv`` (stdout and stderr into ``log_path``) for at most ``budget`` seconds.

    Returns ``(exit status, seconds, timed_out)``; on a timeout the whole process tree is
    ended (:func:`kill_session`) and the status is the killed process's (negative).
    """
    start = time.time()
    with open(log_path, 'w') as log:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            status = proc.wait(timeout=budget)
            timed_out = False
        except subprocess.TimeoutExpired:
            kill_session(proc)
            status, timed_out = proc.returncode, True
    # Whatever the stage left running in its session (a rank or loader worker that outlived
    # mpiexec) goes with it. Only the session is searched now: the stage's pid is reaped, and
    # a new process may have been given it.
    left = {p for p, (_, sid) in _proc_table().items() if sid == proc.pid and p != proc.pid}
    _signal_all(left, signal.SIGKILL)
    return status, time.time() - start, timed_out
