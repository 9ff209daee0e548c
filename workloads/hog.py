#!/usr/bin/env python3
"""A memory-hog workload: allocate, report ready, hold, grow on command, until killed.

Standalone and stdlib-only on purpose: the harness starts it with ``python3 -I -S`` (about 15 ms)
on the host, in a container and inside the QEMU guest alike.  Its imports are kept to what every
kind needs (json, ctypes and threading are not imported at start: under TCG they cost ~0.15 s a
hog, and a scenario starts several); ctypes and threading are imported by the kinds that use them.
The harness has already placed the process in its cgroup and set its ``oom_score_adj`` and uid
before ``exec``.

Protocol (line based): the spec is ``argv[1:]``, one ``key=value`` word per field (see
``harness.machine.scenario.spec_argv``).  The hog allocates its initial ``size``,
then prints ``ready <pid> [<child pid> ...]`` on stdout and reads commands from stdin:
``go`` starts the growth phase (``grow`` bytes more, or until killed), ``exit`` ends it.
After growing it prints ``grown`` and waits again.  End of stdin ends it too, so a crashed harness
never leaves hogs behind.

Kinds: anon, shmem (memfd, mapped), file (page cache from a real file; reclaimable), mlock, thp,
threads (N threads sharing one mm), fork (children sharing the parent's pages), many (N small
children), tmpfs (a file written with write(2) on a tmpfs at ``path``, never mapped: charged to the
cgroup, in nobody's RSS, and it outlives the writer), hugetlb (MAP_HUGETLB anonymous memory from
the reserved pool ``vm.nr_hugepages``: in no RSS counter, ``HugetlbPages`` in /proc/PID/status),
cache (clean page cache: ``size`` bytes read, buffered, from the block device ``path`` at ``offset``;
nothing written, so reclaim can drop it without swap; growing reads on from where it stopped).
After growing, ``grown <seconds>`` says how long the growth took.
``mempolicy`` ("bind:1") binds anonymous memory to NUMA nodes via ``set_mempolicy``.
"""

from __future__ import annotations

import mmap
import os
import sys
import time

MB = 1 << 20
STEP = 4 * MB
MADV_HUGEPAGE = 14
MPOL_BIND = 2
MAP_HUGETLB = 0x40000
HPAGE = 2 * MB

_maps: list[object] = []  # keep every mapping alive
_ONES = b"\1" * 65536  # what a touched page holds; small, so the hog's own heap stays small


def _libc():
    """The C library through ctypes, loaded on first use (only mlock and mempolicy need it)."""
    import ctypes

    return ctypes, ctypes.CDLL(None, use_errno=True)


def _touch(m: mmap.mmap, n: int) -> None:
    """Write every byte of the first *n* bytes, so each page is faulted in and dirty."""
    m.seek(0)
    while n >= len(_ONES):
        m.write(_ONES)
        n -= len(_ONES)
    if n:
        m.write(_ONES[:n])


def _anon(n: int, *, lock: bool = False, thp: bool = False) -> None:
    done = 0
    while done < n:
        k = min(STEP if not thp else 2 * MB * 8, n - done)
        m = mmap.mmap(-1, k, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        if thp:
            m.madvise(MADV_HUGEPAGE)
        if lock:
            ctypes, libc = _libc()
            addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
            if libc.mlock(ctypes.c_void_p(addr), ctypes.c_size_t(k)) != 0:
                raise OSError(ctypes.get_errno(), "mlock failed")
        _touch(m, k)
        _maps.append(m)
        done += k


def _shmem(n: int) -> None:
    fd = os.memfd_create("oomh-shmem")
    os.ftruncate(fd, n)
    m = mmap.mmap(fd, n, flags=mmap.MAP_SHARED)
    os.close(fd)
    done = 0
    while done < n:
        k = min(STEP, n - done)
        m[done : done + k] = b"\1" * k
        done += k
    _maps.append(m)


def _tmpfs(n: int, path: str) -> None:
    """Shmem that no process maps: write(2) into a file on a tmpfs; the file keeps it."""
    buf = b"\1" * STEP
    with open(path, "ab") as f:
        done = 0
        while done < n:
            k = min(STEP, n - done)
            f.write(buf[:k])
            done += k


def _hugetlb(n: int) -> None:
    n = -(-n // HPAGE) * HPAGE
    m = mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_HUGETLB)
    _touch(m, n)  # faults the huge pages in from the reserved pool (SIGBUS if the pool is short)
    _maps.append(m)


def _file(n: int, path: str) -> None:
    """Page cache: write then read a real file; clean cache is reclaimable, so no OOM."""
    buf = b"\1" * STEP
    with open(path, "wb") as f:
        done = 0
        while done < n:
            f.write(buf)
            done += STEP
            if done % (8 * STEP) == 0:
                f.flush()
                os.fdatasync(f.fileno())
    with open(path, "rb") as f:
        while f.read(STEP):
            pass


_cache_pos: dict[str, int] = {}


def _cache(n: int, path: str, offset: int) -> None:
    """Clean page cache of a block device: buffered reads charge the pages to this task's memcg (as
    ``file`` in memory.stat, on the file LRU); nothing is dirty, so reclaim drops them at once."""
    pos = _cache_pos.get(path, offset)
    fd = os.open(path, os.O_RDONLY)
    try:
        # Drop what an earlier reader left cached here (a reused guest): a page already in the cache
        # stays charged to whoever read it first, and this read would charge nothing.
        os.posix_fadvise(fd, pos, n, os.POSIX_FADV_DONTNEED)
        done = 0
        while done < n:
            k = os.pread(fd, min(STEP, n - done), pos + done)
            if not k:
                raise OSError(f"{path}: end of device at {pos + done}")
            done += len(k)
    finally:
        os.close(fd)
    _cache_pos[path] = pos + done


def _set_mempolicy(spec: str) -> None:
    mode, _, nodes = spec.partition(":")
    if mode != "bind":
        raise ValueError(f"unsupported mempolicy {spec!r}")
    mask = 0
    for part in nodes.split(","):
        a, _, b = part.partition("-")
        for node in range(int(a), int(b or a) + 1):
            mask |= 1 << node
    ctypes, libc = _libc()
    cmask = ctypes.c_ulong(mask)
    if libc.syscall(238, MPOL_BIND, ctypes.byref(cmask), ctypes.c_ulong(64)) != 0:  # __NR_set_mempolicy
        raise OSError(ctypes.get_errno(), "set_mempolicy failed")


def allocate(spec: dict, n: int) -> None:
    kind = spec.get("kind", "anon")
    if n <= 0:
        return
    if kind in ("anon", "fork", "many", "threads", "grow"):
        _anon(n)
    elif kind == "mlock":
        _anon(n, lock=True)
    elif kind == "thp":
        _anon(n, thp=True)
    elif kind == "shmem":
        _shmem(n)
    elif kind == "file":
        _file(n, spec["path"])
    elif kind == "tmpfs":
        _tmpfs(n, spec["path"])
    elif kind == "cache":
        _cache(n, spec["path"], int(spec.get("offset", 0)))
    elif kind == "hugetlb":
        _hugetlb(n)
    else:
        raise ValueError(f"unknown kind {kind}")


def _threads(spec: dict, n: int) -> None:
    import threading

    count = max(1, int(spec.get("threads", 4)))
    per = n // count
    ts = [threading.Thread(target=allocate, args=({"kind": "anon"}, per)) for _ in range(count)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    park = threading.Event()
    for _ in range(count):  # keep threads alive: the point is many threads sharing one mm
        threading.Thread(target=park.wait, daemon=True).start()


def _children(spec: dict) -> list[int]:
    """fork: children that share the parent's pages and add child_size of their own.
    many: N tiny processes (``sleep``), cheap enough for hundreds."""
    count = int(spec.get("children", 0))
    if spec.get("kind") == "many":
        sleep = next((p for p in ("/bin/sleep", "/usr/bin/sleep") if os.path.exists(p)), "/bin/sleep")
        return [os.posix_spawn(sleep, ["sleep", "3600"], {}) for _ in range(count)]
    child_size = int(spec.get("child_size", 0))
    pids = []
    r, w = os.pipe()
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                allocate({"kind": "anon"}, child_size)
                os.write(w, b".")
                # hold until the parent goes (stdin is shared: EOF when the harness closes it)
                while sys.stdin.buffer.read(1):
                    pass
            finally:
                os._exit(0)
        pids.append(pid)
    os.close(w)
    got = 0
    while got < count:
        b = os.read(r, count - got)
        if not b:
            break
        got += len(b)
    os.close(r)
    return pids


def _set_comm(name: str) -> None:
    """Name the process after its workload so the kernel's report says which one it killed
    (writing /proc/self/comm is prctl(PR_SET_NAME); the kernel keeps the first 15 bytes)."""
    with open("/proc/self/comm", "w") as f:
        f.write(name[:15])


def main() -> int:
    spec = dict(word.partition("=")[::2] for word in sys.argv[1:])
    kind = spec.get("kind", "anon")
    if spec.get("comm"):
        _set_comm(spec["comm"])
    if "oom_score_adj" in spec:  # already set by the harness on the host; a container sets its own
        try:
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write(str(spec["oom_score_adj"]))
        except OSError:
            pass
    if spec.get("mempolicy"):
        _set_mempolicy(spec["mempolicy"])
    size = int(spec.get("size", 0))
    if kind == "threads":
        _threads(spec, size)
    else:
        allocate(spec, size)
    kids = _children(spec) if kind in ("fork", "many") else []
    print("ready", os.getpid(), *kids, flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "go":
            grow = spec.get("grow")
            rate = float(spec.get("rate_mb_s", 0) or 0)
            t_go = time.monotonic()
            gspec = {**spec, "kind": "anon" if kind in ("threads", "fork", "many", "file", "hugetlb") else kind}
            if kind == "file":
                _file(int(grow or 0), spec["path"] + ".grow")
            elif grow == "until-killed":
                while True:
                    allocate(gspec, STEP)
                    if rate:
                        time.sleep(STEP / MB / rate)
            elif grow:
                left = int(grow)
                while left > 0:
                    k = min(STEP, left)
                    allocate(gspec, k)
                    left -= k
                    if rate:
                        time.sleep(k / MB / rate)
            print(f"grown {time.monotonic() - t_go:.4f}", flush=True)
        elif cmd == "exit":
            break
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (BrokenPipeError, KeyboardInterrupt):
        sys.exit(0)
