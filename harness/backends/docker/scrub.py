"""Scrubbing what a throw-away dockerd leaves: its cgroups in every hierarchy, processes, mounts, global paths.

Why its own module: the daemon's stop, the sweep after a killed run and the tests all need the same
primitives, and none of them depends on Docker's API.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import signal
import time

from harness.errors import HarnessError
from harness.machine.liveness import pid_alive
from harness.machine.sandbox import kill_cgroup_tree

from . import progress

# --- cgroups of a throw-away daemon ---------------------------------------------------------------


def cgroup_mounts() -> list[str]:
    """Mount points of every cgroup hierarchy (v1 and v2) visible here."""
    out = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                fstype = right.split(" ", 1)[0]
                if fstype in ("cgroup", "cgroup2"):
                    out.append(left.split()[4].replace("\\040", " "))
    except OSError:
        pass
    return sorted(set(out))


def remove_cgroup_dirs(rel: str, created: dict[str, list[str]] | None = None) -> list[str]:
    """Remove ``<mount>/<rel>`` (and everything below, killing what still runs there) in every
    hierarchy, then the ancestors listed in *created* (made by runc, not there before).

    Returns what could not be removed.
    """
    left = []
    for mount in cgroup_mounts():
        path = os.path.join(mount, rel.lstrip("/"))
        try:
            kill_cgroup_tree(path, timeout=5.0)
        except HarnessError as e:
            left.append(str(e))
        for anc in (created or {}).get(mount, []):
            try:
                os.rmdir(anc)
            except FileNotFoundError:
                pass
            except OSError as e:
                left.append(f"{anc}: {e.strerror}")
    return left


def missing_ancestors(rel: str) -> dict[str, list[str]]:
    """Per hierarchy, the ancestors of *rel* that do not exist yet (deepest first)."""
    parts = [p for p in rel.strip("/").split("/") if p][:-1]
    out: dict[str, list[str]] = {}
    for mount in cgroup_mounts():
        miss = []
        for i in range(1, len(parts) + 1):
            d = os.path.join(mount, *parts[:i])
            if not os.path.isdir(d):
                miss.append(d)
        out[mount] = list(reversed(miss))
    return out


# --- processes and mounts of a throw-away daemon ----------------------------------------------------


def pids_mentioning(needle: str) -> list[int]:
    """Processes whose command line contains *needle* (our private daemon dir)."""
    out = []
    b = needle.encode()
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                if b in f.read():
                    out.append(int(d))
        except OSError:
            pass
    return out


def kill_all(pids: list[int], sig: int) -> None:
    for p in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p, sig)


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if pid_alive(p)]
        if alive:
            time.sleep(0.05)
    return [p for p in alive if pid_alive(p)]


def unmount_below(root: str) -> list[str]:
    """Lazily unmount everything mounted at or below *root* (deepest first); returns failures."""
    mps = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                mp = line.split()[4].replace("\\040", " ")
                if mp == root or mp.startswith(root.rstrip("/") + "/"):
                    mps.append(mp)
    except OSError:
        return []
    libc = ctypes.CDLL(None, use_errno=True)
    bad = []
    for mp in sorted(set(mps), key=len, reverse=True):
        if libc.umount2(mp.encode(), 2) != 0:  # MNT_DETACH
            err = ctypes.get_errno()
            if err not in (errno.EINVAL, errno.ENOENT):
                bad.append(f"{mp}: {os.strerror(err)}")
    return bad


#: Places outside its own dirs where dockerd/containerd write even when told otherwise (the shims'
#: sockets live in /run/containerd/s); whatever of these a throw-away daemon created is removed.
GLOBAL_PATHS = (
    "/etc/docker/key.json", "/run/containerd/s", "/run/containerd", "/run/docker", "/var/lib/docker",
    "/var/lib/containerd", "/run/docker.sock", "/etc/docker",
)  # fmt: skip


def remove_new_global_paths(before: dict[str, bool]) -> list[str]:
    """Remove the GLOBAL_PATHS that did not exist before: files, and directories once empty."""
    bad = []
    for p, existed in before.items():
        if existed or not os.path.lexists(p):
            continue
        try:
            if os.path.isdir(p) and not os.path.islink(p):
                for d, _, files in os.walk(p, topdown=False):
                    if not files:
                        with contextlib.suppress(OSError):
                            os.rmdir(d)
                if os.path.exists(p):
                    progress(f"note: {p} holds files of another engine; left in place")
            else:
                os.unlink(p)
        except OSError as e:
            bad.append(f"{p}: {e.strerror}")
    return bad


def set_pdeathsig() -> None:
    """In the child: get SIGTERM when the harness dies, so a SIGKILLed run does not leak dockerd."""
    ctypes.CDLL(None).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    os.setsid()
