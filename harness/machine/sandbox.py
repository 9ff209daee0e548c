"""Memory-cgroup sandboxes for workloads: cgroup v2 first, cgroup v1 memcg as the fallback.

A sandbox is created below the harness's *own* memory cgroup (never elsewhere), always has a
memory limit unless the caller proves it runs inside a throw-away VM, and is removed, with every
process in it, when the scenario ends, whatever happens.  Names carry the owning harness's pid
(``oomh-<pid>-<scenario>``) so a later run can tell debris of a dead harness from a live one.

cgroup v1 is driven through cgroupspy (which knows only v1); cgroup v2 has no well-kept Python
library, so its few files are written directly.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import signal
import time
from dataclasses import dataclass

from harness.errors import HarnessError

from .liveness import harness_alive, hold_liveness_lock

V2_ROOT = "/sys/fs/cgroup"
V1_ROOT = "/sys/fs/cgroup/memory"
PREFIX = "oomh-"
UNLIMITED = None

__all__ = ["Sandbox", "CgroupLayout", "detect_layout", "sweep_stale", "PREFIX"]


@dataclass(frozen=True)
class CgroupLayout:
    """Where this process's memory cgroup lives."""

    version: int  # 1 or 2
    mount: str  # mount point of the memory hierarchy
    own: str  # our cgroup path relative to the mount ("/" or "/a/b")

    @property
    def own_dir(self) -> str:
        return os.path.join(self.mount, self.own.lstrip("/"))


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def read_int(path: str) -> int | None:
    """A cgroup or /proc number file as an int; None when it is missing, "max" or not a number."""
    try:
        with open(path) as f:
            v = f.read().strip()
    except OSError:
        return None
    return int(v) if v.isdigit() else None


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def detect_layout(proc_self: str = "/proc/self/cgroup") -> CgroupLayout:
    """Prefer a v2 hierarchy with the memory controller; else the v1 memory hierarchy."""
    try:
        lines = _read(proc_self).splitlines()
    except OSError as e:
        raise HarnessError(f"cannot read {proc_self}: {e.strerror}") from None
    v1_path = v2_path = None
    for line in lines:
        hid, ctrls, path = (line.split(":", 2) + ["", ""])[:3]
        if hid == "0" and ctrls == "":
            v2_path = path
        elif "memory" in ctrls.split(","):
            v1_path = path
    for mount in (V2_ROOT, "/sys/fs/cgroup/unified"):
        ctrl = os.path.join(mount, "cgroup.controllers")
        if v2_path is not None and os.path.exists(ctrl) and "memory" in _read(ctrl).split():
            return CgroupLayout(2, mount, v2_path)
    if v1_path is not None and os.path.isdir(V1_ROOT):
        return CgroupLayout(1, V1_ROOT, v1_path)
    raise HarnessError(
        "no cgroup memory controller: mount cgroup v2 with +memory, or the v1 memory hierarchy at /sys/fs/cgroup/memory"
    )


def parse_size(v: str | int | None) -> int | None:
    """``"64M"`` -> bytes; ``"max"``/``None`` -> None (unlimited)."""
    if v is None or v == "max" or v == "none":
        return None
    if isinstance(v, int):
        return v
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B?)\s*", str(v), re.I)
    if not m:
        raise ValueError(f"bad size {v!r}: use bytes or a number with K/M/G (e.g. 64M)")
    mult = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[m.group(2)[:1].upper()]
    return int(float(m.group(1)) * mult)


class Sandbox:
    """One memory cgroup (and its children) owned by this harness process."""

    def __init__(self, layout: CgroupLayout, relpath: str, *, parent: Sandbox | None = None) -> None:
        self.layout = layout
        self.rel = relpath  # relative to the memory mount, leading "/"
        self.path = os.path.join(layout.mount, relpath.lstrip("/"))
        self.parent = parent
        self.children: list[Sandbox] = []
        self._cg1 = None  # cgroupspy node (v1)

    # -- creation -------------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        name: str,
        *,
        memory_max: int | None,
        swap_max: int | None = 0,
        memory_high: int | None = None,
        oom_group: bool = False,
        layout: CgroupLayout | None = None,
        allow_unlimited: bool = False,
    ) -> Sandbox:
        """Create ``<own cgroup>/oomh-<pid>-<name>`` with its limits.

        *allow_unlimited* is only for a throw-away VM: on a host a workload without a limit could
        OOM the whole machine and kill the user's session.
        """
        if memory_max is None and not allow_unlimited:
            raise HarnessError(f"scenario {name}: refusing to run a host workload without a memory limit")
        layout = layout or detect_layout()
        hold_liveness_lock()
        base = layout.own_dir
        if layout.version == 2:
            _enable_v2_controllers(layout)
            base = layout.own_dir
        rel = os.path.join(layout.own, f"{PREFIX}{os.getpid()}-{_safe(name)}")
        sb = cls(layout, rel)
        try:
            sb._mkdir()
        except OSError as e:
            raise HarnessError(f"cannot create cgroup under {base}: {e.strerror} (run as root)") from None
        try:
            sb.set_limits(memory_max=memory_max, swap_max=swap_max, memory_high=memory_high, oom_group=oom_group)
        except BaseException:
            sb.destroy()
            raise
        return sb

    def child(
        self,
        name: str,
        *,
        memory_max: int | None = None,
        swap_max: int | None = None,
        memory_high: int | None = None,
        oom_group: bool = False,
    ) -> Sandbox:
        """A nested cgroup; the parent's limit still bounds it."""
        sb = Sandbox(self.layout, os.path.join(self.rel, _safe(name)), parent=self)
        if self.layout.version == 2:
            with contextlib.suppress(OSError):
                _write(os.path.join(self.path, "cgroup.subtree_control"), "+memory")
        sb._mkdir()
        self.children.append(sb)
        sb.set_limits(
            memory_max=memory_max, swap_max=swap_max, memory_high=memory_high, oom_group=oom_group, inherit=True
        )
        return sb

    def _mkdir(self) -> None:
        if self.layout.version == 1:
            try:
                from cgroupspy.trees import Tree  # v1 only; absent in the guest, which is v2
            except ImportError:
                os.mkdir(self.path)
                return
            parent_rel, name = os.path.split(self.rel)
            tree = Tree(
                root_path=os.path.dirname(self.layout.mount).encode() + b"/",
                groups=["memory"],
                sub_groups=[parent_rel.strip("/")] if parent_rel.strip("/") else None,
            )
            node = tree.get_node_by_path(("/memory" + parent_rel).rstrip("/"))
            if node is None:
                raise OSError(errno.ENOENT, os.strerror(errno.ENOENT))
            self._cg1 = node.create_cgroup(name)
        else:
            os.mkdir(self.path)

    def set_limits(
        self,
        *,
        memory_max: int | None,
        swap_max: int | None,
        memory_high: int | None = None,
        oom_group: bool = False,
        inherit: bool = False,
    ) -> None:
        if self.layout.version == 2:
            if memory_max is not None:
                self._set("memory.max", str(memory_max))
            if swap_max is not None and os.path.exists(os.path.join(self.path, "memory.swap.max")):
                self._set("memory.swap.max", str(swap_max))
            if memory_high is not None:
                self._set("memory.high", str(memory_high))
            if oom_group:
                self._set("memory.oom.group", "1")
            return
        if oom_group:
            raise HarnessError("memory.oom.group needs cgroup v2 (this host has the v1 memory controller)")
        if memory_high is not None:
            raise HarnessError("memory.high needs cgroup v2")
        if memory_max is None:
            return
        ctl = self._cg1.controller if self._cg1 is not None else None
        if ctl is not None:
            ctl.limit_in_bytes = memory_max
        else:
            self._set("memory.limit_in_bytes", str(memory_max))
        if os.path.exists(os.path.join(self.path, "memory.memsw.limit_in_bytes")):
            memsw = memory_max + (swap_max or 0) if swap_max is not None or not inherit else None
            if memsw is not None:
                if ctl is not None:
                    ctl.memsw_limit_in_bytes = memsw
                else:
                    self._set("memory.memsw.limit_in_bytes", str(memsw))

    def _set(self, fname: str, value: str) -> None:
        try:
            _write(os.path.join(self.path, fname), value)
        except OSError as e:
            raise HarnessError(f"cannot set {fname}={value} in {self.path}: {e.strerror}") from None

    # -- use --------------------------------------------------------------------------------------
    def procs_file(self) -> str:
        return os.path.join(self.path, "cgroup.procs")

    def pids(self, recursive: bool = True) -> list[int]:
        out: list[int] = []
        for sb in ([self] + self._descendants()) if recursive else [self]:
            try:
                out.extend(int(x) for x in _read(sb.procs_file()).split())
            except OSError:
                pass
        return out

    def _descendants(self) -> list[Sandbox]:
        out: list[Sandbox] = []
        for c in self.children:
            out.append(c)
            out.extend(c._descendants())
        return out

    def oom_kills(self) -> int:
        """Kernel's count of OOM kills in this cgroup and below.

        v2 ``memory.events`` is hierarchical; v1 ``memory.oom_control`` counts only the victim's
        own memcg, so the counts of every descendant are added up.
        """
        if self.layout.version == 2:
            return _counter(os.path.join(self.path, "memory.events"), "oom_kill")
        return sum(_counter(os.path.join(d, "memory.oom_control"), "oom_kill") for d, _, _ in os.walk(self.path))

    def swappiness(self) -> int | None:
        p = os.path.join(self.path, "memory.swappiness")
        try:
            return int(_read(p))
        except (OSError, ValueError):
            return None

    # -- removal ----------------------------------------------------------------------------------
    def destroy(self, timeout: float = 5.0) -> None:
        """Kill every process inside, then remove the cgroups, deepest first."""
        kill_cgroup_tree(self.path, timeout)


def kill_cgroup_tree(path: str, timeout: float = 5.0) -> None:
    """SIGKILL every process below *path*, wait for them, rmdir bottom-up.  Idempotent."""
    if not os.path.isdir(path):
        return
    deadline = time.monotonic() + timeout
    dirs = [d for d, _, _ in os.walk(path, topdown=False)]
    while True:
        alive: list[int] = []
        for d in dirs:
            try:
                alive.extend(int(p) for p in _read(os.path.join(d, "cgroup.procs")).split())
            except OSError:
                pass
        for pid in alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if not alive:
            break
        if time.monotonic() > deadline:
            raise HarnessError(f"processes {alive[:5]} in {path} do not die; cgroup left in place")
        time.sleep(0.01)
    for d in dirs:
        for _ in range(100):
            try:
                os.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError as e:
                if e.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise HarnessError(f"cannot remove cgroup {d}: {e.strerror}") from None
                time.sleep(0.02)


def _counter(path: str, key: str) -> int:
    try:
        for line in _read(path).splitlines():
            k, _, v = line.partition(" ")
            if k == key:
                return int(v)
    except (OSError, ValueError):
        pass
    return 0


def _enable_v2_controllers(layout: CgroupLayout) -> None:
    """Make +memory available to our children (v2 "no internal processes" rule permitting)."""
    sc = os.path.join(layout.own_dir, "cgroup.subtree_control")
    try:
        if "memory" not in _read(sc).split():
            _write(sc, "+memory")
    except OSError as e:
        if e.errno == errno.EBUSY:
            raise HarnessError(
                f"cannot enable the memory controller below {layout.own_dir}: it holds "
                "processes (run the harness in its own leaf cgroup, e.g. systemd-run --scope "
                "-p Delegate=yes)"
            ) from None
        raise HarnessError(f"cannot enable the memory controller in {sc}: {e.strerror}") from None


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:60]


def sweep_stale(layout: CgroupLayout | None = None) -> list[str]:
    """Remove ``oomh-<pid>-*`` cgroups below our own cgroup whose harness process is gone.

    Returns what was removed, so the caller can say so.  Cgroups of a live harness (another run
    at the same time) are left alone.
    """
    try:
        layout = layout or detect_layout()
    except HarnessError:
        return []
    removed = sweep_stale_files() + sweep_stale_files("/dev/shm")  # /dev/shm: a saved VM's RAM files
    try:
        names = os.listdir(layout.own_dir)
    except OSError:
        return removed
    for n in names:
        m = re.match(re.escape(PREFIX) + r"(\d+)-", n)
        if not m:
            continue
        pid = int(m.group(1))
        if harness_alive(pid):
            continue
        p = os.path.join(layout.own_dir, n)
        try:
            kill_cgroup_tree(p)
            removed.append(p)
        except HarnessError:
            pass
    return removed


def sweep_stale_files(tmp: str = "/tmp") -> list[str]:
    """Remove ``/tmp/oomh-<pid>-*`` and ``/tmp/oomh-vm-<pid>-*`` left by a harness that is gone.

    QEMU dies with its harness (PR_SET_PDEATHSIG) and workloads exit when their command pipe
    closes, but a SIGKILLed harness cannot remove its temporary folders; the next run does.
    """
    removed = []
    try:
        names = os.listdir(tmp)
    except OSError:
        return []
    for n in names:
        m = re.match(r"oomh-(?:vm-)?(\d+)-", n)
        if not m:
            continue
        pid = int(m.group(1))
        if harness_alive(pid):
            continue
        path = os.path.join(tmp, n)
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.exists(path):
            removed.append(path)
    return removed
