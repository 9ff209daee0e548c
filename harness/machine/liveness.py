"""Is a process alive, and is a harness alive: the one place both questions are answered.

Why a module of its own: the engine (did a workload die?), the cgroup and temp-file sweeps, the
Docker daemon sweep and the VM boot-snapshot prune all ask, and two hand-written copies of the
``/proc/PID/stat`` check had drifted (one split at the first ``") "``, which a comm containing
``") "`` defeats; the state field follows the *last* one).  A harness holds a liveness lock for its
whole life so that a later run tells a live harness from a dead one without guessing from a
possibly recycled pid.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os

__all__ = ["pid_alive", "harness_alive", "hold_liveness_lock", "LOCK_DIR"]


def pid_alive(pid: int) -> bool:
    """True while *pid* exists and is neither a zombie nor dead (``/proc/PID/stat`` state field).

    The comm field is in parentheses and may itself contain ``") "``: the state is the first
    character after the *last* ``") "`` (see proc(5), and ``fs/proc/array.c: do_task_stat``).
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][:1] not in ("Z", "X")
    except (OSError, IndexError):
        return False


LOCK_DIR = "/run/oom-harness" if os.path.isdir("/run") else "/tmp/oom-harness"
_lock_fd: int | None = None


def hold_liveness_lock() -> None:
    """Hold ``<LOCK_DIR>/<pid>.lock`` for this process's lifetime.

    A later run tells a live harness from a dead one by trying the lock, instead of guessing
    from a (possibly recycled) pid's command line.
    """
    global _lock_fd
    if _lock_fd is not None:
        return
    try:
        os.makedirs(LOCK_DIR, exist_ok=True)
        path = os.path.join(LOCK_DIR, f"{os.getpid()}.lock")
        fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return
    _lock_fd = fd

    def _drop() -> None:
        with contextlib.suppress(OSError):
            os.unlink(path)

    atexit.register(_drop)


def _lock_state(pid: int) -> bool | None:
    """True: its harness holds the lock (alive); False: the lock is free (dead); None: no lock."""
    path = os.path.join(LOCK_DIR, f"{pid}.lock")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(path)
    return False


def harness_alive(pid: int) -> bool:
    """Is ``pid`` a running harness (this one included)?  Its liveness lock decides; without one,
    a live pid whose command line is not a harness's is a recycled pid, i.e. the harness is gone."""
    if pid == os.getpid():
        return True
    state = _lock_state(pid)
    if state is not None:
        return state
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a recycled pid is not our harness: check its command line
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read()
        return b"harness" in cmd or b"oom-harness" in cmd or b"pytest" in cmd
    except OSError:
        return False
