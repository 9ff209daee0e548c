"""Boot snapshots: the whole guest saved the moment its agent is first ready, resumed by later VMs.

Why: under TCG, booting to the agent costs 2-3 s, and ~0.8 s of it is the harness's own userland
(the kernel unpacking a 36 MB Python initramfs, then the interpreter's first start, which TCG must
translate instruction by instruction).  That cost is physics for the *first* boot, but every later
VM of the same shape would pay it again for a state that is byte-for-byte the same.  QEMU can save
a running machine as a migration stream and start a new QEMU from it (``-incoming``).  Guest RAM
is kept out of the stream: a machine that will be saved runs with its RAM in files, the files are
copied beside the stream (device state only, ~0.4 MB), and a resumed machine maps the copies
copy-on-write, so that it starts without reading ~100 MB first (:func:`save`).

What a resumed guest shares with its first boot: the kernel, its command line, the initramfs, the
devices and all of guest RAM, i.e. exactly the state it had at "agent ready" (modules loaded, swap
on, cgroup controllers enabled, the agent's ``preload`` imports done, no scenario run yet).  What a
test could notice: the guest clock goes on from the snapshot's uptime, and every resume starts from
the same RNG state (so runs repeat more exactly, not less).  ``--cold-boot`` (or
``OOM_HARNESS_VM_SNAPSHOT=0``) boots every VM afresh.

A snapshot is keyed by a hash of everything that decides that state: the QEMU command line (with
the per-run paths replaced by placeholders), QEMU's version, and the kernel image and initramfs
(path, size, mtime).  Anything else changed means another key; a snapshot that will not resume is
deleted and the VM boots cold (the caller says so).  At most :data:`KEEP` are kept (~100-130 MB of
disk each for a 512 MiB guest, sparse RAM files; the VM catalogue has 4 shapes per kernel), least
recently used first out.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.machine.liveness import harness_alive, hold_liveness_lock
from vm.paths import atomic_dir, cache_root

#: Bump when the layout of a snapshot directory or what it means changes (2: guest RAM in files).
FORMAT = 2
#: Snapshots kept (least recently used are deleted first).
KEEP = int(os.environ.get("OOM_HARNESS_VM_SNAPSHOT_KEEP", "24"))
#: An unfinished save older than this is debris even if its owner pid is alive again (a save takes ~1 s).
STALE_TMP_S = 600.0
STATE, CONSOLE, READY, SWAP, META = "state", "console.log", "ready.json", "swap.img", "meta.json"
#: In an unfinished save: the pid of the harness writing it (a dead owner means debris).
OWNER = "owner"


class SnapshotError(Exception):
    """Saving a snapshot failed (the running VM is unaffected)."""


def enabled() -> bool:
    """False when the user asked for cold boots through ``OOM_HARNESS_VM_SNAPSHOT=0``."""
    return os.environ.get("OOM_HARNESS_VM_SNAPSHOT", "1").strip().lower() not in ("0", "no", "off", "false")


def snapshots_dir() -> Path:
    return cache_root() / "bootstate"


def _file_id(p: Path) -> str:
    st = p.stat()
    return f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def state_key(qemu_args: list[str], files: list[Path], qemu_version: str) -> str:
    """Key of the state a boot with ``qemu_args`` reaches (``files``: kernel image and initramfs)."""
    h = hashlib.sha256()
    h.update(f"format={FORMAT}\0qemu={qemu_version}\0".encode())
    h.update("\0".join(qemu_args).encode())
    for f in files:
        h.update(b"\0" + _file_id(f).encode())
    return h.hexdigest()[:24]


@dataclass(frozen=True)
class BootState:
    """One saved snapshot directory."""

    key: str
    path: Path

    @property
    def state_file(self) -> Path:
        return self.path / STATE

    @property
    def swap_file(self) -> Path | None:
        p = self.path / SWAP
        return p if p.exists() else None

    def console(self) -> str:
        """The console of the boot the snapshot was taken from (the kernel's boot messages)."""
        return (self.path / CONSOLE).read_text(errors="replace")

    def ready_info(self) -> dict[str, Any]:
        """The agent's ready frame of that boot."""
        return dict(json.loads((self.path / READY).read_text()))

    def open_stream(self) -> int:
        """A descriptor of the device-state stream for QEMU's ``migrate-incoming fd:N``: pass it to QEMU
        (``pass_fds``), then close it.

        Why ``fd:`` and not ``exec:cat FILE``: QEMU then reads the stream from the file itself, without
        a shell, a ``cat`` and a pipe; an open descriptor also keeps the stream readable if another
        harness prunes the snapshot meanwhile.
        """
        return os.open(self.state_file, os.O_RDONLY | os.O_CLOEXEC)  # pass_fds makes it inheritable

    def touch(self) -> None:
        """Mark as recently used (eviction is least-recently-used)."""
        with contextlib.suppress(OSError):
            os.utime(self.path)

    def discard(self) -> None:
        """Delete the snapshot (e.g. it failed to resume)."""
        shutil.rmtree(self.path, ignore_errors=True)


def lookup(key: str) -> BootState | None:
    """The complete snapshot with this key, or None."""
    p = snapshots_dir() / key
    if all((p / f).is_file() for f in (STATE, CONSOLE, READY)):
        return BootState(key, p)
    return None


def copy_sparse(src: Path, dst: Path) -> None:
    """Copy a disk image keeping its holes (a swap image is mostly holes)."""
    subprocess.run(["cp", "--sparse=always", str(src), str(dst)], check=True, capture_output=True)


def save(
    qmp_socket: Path,
    key: str,
    *,
    console: str,
    ready: dict[str, Any],
    swap_img: Path | None,
    meta: dict[str, Any],
    ram_files: list[Path],
    timeout: float = 60.0,
) -> BootState:
    """Snapshot the running VM behind ``qmp_socket`` and let it go on running.

    Guest RAM is not in the stream: the machine runs with its RAM in ``ram_files`` (shared file
    mappings) and the migration skips them (``x-ignore-shared``); once the stream is complete and
    the source paused, the files are copied (sparse) beside it.  A resumed machine maps those copies
    privately (copy-on-write) and loads only the device state: its RAM is read lazily, page by page
    as the guest touches it, instead of ~100 MB parsed and copied before the first instruction.

    Live migration (the guest keeps running while RAM is copied, then stops for the last dirty
    pages) rather than stop-then-migrate: the stream then records a *running* machine, so a QEMU
    started from it runs at once and resuming needs no monitor at all.  The source pauses when the
    stream is complete (its disks flushed: the swap image copied then matches the RAM) and is
    continued afterwards.
    """
    from qemu.qmp.legacy import QEMUMonitorProtocol  # only the first boot of a shape needs QMP


    mon = QEMUMonitorProtocol(str(qmp_socket))
    mon.settimeout(10.0)  # each QMP exchange: a QEMU that stops answering must not hang the harness
    try:
        mon.connect()
        mon.cmd("migrate-set-parameters", **{"max-bandwidth": 1 << 40})
        mon.cmd("migrate-set-capabilities", capabilities=[{"capability": "x-ignore-shared", "state": True}])
        with atomic_dir(snapshots_dir() / key) as tmp:
            hold_liveness_lock()  # so that another harness's prune() can tell this save is alive
            (tmp / OWNER).write_text(str(os.getpid()))
            mon.cmd("migrate", uri=f"exec:cat > {shlex.quote(str(tmp / STATE))}")
            deadline = time.monotonic() + timeout
            while True:
                info = mon.cmd("query-migrate")
                status = info.get("status") if isinstance(info, dict) else None
                if status == "completed":
                    break
                if status in ("failed", "cancelled") or time.monotonic() > deadline:
                    with contextlib.suppress(Exception):
                        mon.cmd("migrate_cancel")
                    raise SnapshotError(f"migration {status or 'timed out'}: {info!r:.200}")
                time.sleep(0.01)
            for f in ram_files:  # the source is paused: these are the RAM the stream's devices go with
                copy_sparse(f, tmp / f.name)
            if swap_img is not None:
                copy_sparse(swap_img, tmp / SWAP)
            (tmp / CONSOLE).write_text(console)
            (tmp / READY).write_text(json.dumps(ready))
            (tmp / META).write_text(json.dumps({**meta, "key": key, "format": FORMAT, "saved": time.time()}))
            (tmp / OWNER).unlink()
    except SnapshotError:
        raise
    except Exception as e:  # noqa: BLE001 - QMP/OS errors of any kind: the VM goes on, unsnapshotted
        raise SnapshotError(f"{type(e).__name__}: {e}") from e
    finally:
        with contextlib.suppress(Exception):
            mon.cmd("cont")  # paused after a completed (or cancelled) migration; harmless if running
        with contextlib.suppress(Exception):
            mon.close()
    prune()
    state = lookup(key)
    if state is None:
        raise SnapshotError("snapshot directory incomplete after saving")
    return state


def _owner_alive(tmp: Path) -> bool:
    """Is the harness that is writing this unfinished save still running?"""

    try:
        pid = int((tmp / OWNER).read_text())
    except (OSError, ValueError):
        return True  # just created (owner not written yet) or unknown: leave it to the age rule
    return harness_alive(pid)


def prune(keep: int | None = None) -> list[Path]:
    """Delete all but the ``keep`` most recently used snapshots, and stale unfinished saves."""
    keep = KEEP if keep is None else keep
    root = snapshots_dir()
    if not root.is_dir():
        return []
    removed: list[Path] = []
    now = time.time()
    done: list[tuple[float, Path]] = []
    for p in root.iterdir():
        try:
            mtime = p.stat().st_mtime
        except OSError:
            continue
        if p.name.startswith("."):
            if p.name.endswith(".tmp") and (now - mtime > STALE_TMP_S or not _owner_alive(p)):
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
            continue
        done.append((mtime, p))
    for _, p in sorted(done, reverse=True)[max(keep, 0) :]:
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed
