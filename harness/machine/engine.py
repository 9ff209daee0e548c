"""The scenario engine: one implementation, run on the host and inside the QEMU guest alike.

For one scenario it arms the kernel-log cursor, creates the memory cgroup sandbox, starts the
workloads and waits until each reports ready, snapshots every task (``/proc/PID/oom_score`` and
the counters the model uses), triggers the growth, waits (bounded) for the kernel to act,
collects the log, parses it, runs the model, and returns one verdict record.  Whatever happens
(an exception, Ctrl-C, SIGTERM), the sandbox and every workload process are gone afterwards.
"""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness.core.analysis import Context, analyze_all
from harness.core.eras import era_for_version, parse_version
from harness.core.model import oom_score
from harness.core.parser import parse_lines
from harness.core.variants import check_scenario
from harness.errors import HarnessError

from . import situations
from .counters import kill_count, read_counters
from .kmsg import KmsgCursor
from .liveness import pid_alive
from .record import UNSET, ScenarioRecord
from .sandbox import Sandbox, detect_layout
from .scenario import CgroupSpec, Scenario, Workload, spec_argv
from .snapshot import PAGE_KB, TaskSnapshot, meminfo, snapshot

CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOG = os.path.join(CHECKOUT, "workloads", "hog.py")

__all__ = ["EngineOptions", "run_scenario", "protect_self"]


@dataclass
class EngineOptions:
    backend: str = "host"
    allow_unlimited: bool = False  # only inside a throw-away VM
    allow_sysctl: bool = False  # only inside a throw-away VM
    python: str = ""  # the workloads' interpreter; default: see _hog_python()
    settle_s: float = 0.05  # after the last grower finished: time for late kill lines
    tmpdir: str = "/tmp"
    host_safety_margin: float = 0.5  # refuse limits above this fraction of MemAvailable
    #: Fault the workload interpreter in before the first sandbox (see warm_up).  Off in the QEMU
    #: guest: its interpreter lives in the initramfs, whose pages are in memory from boot and charged
    #: to the root cgroup, so no sandbox can be charged for them; and every scenario there is a fresh
    #: process, which would pay the ~0.8 s warm-up (TCG) each time.
    warm_up: bool = True


def _hog_python() -> str:
    """An interpreter every uid can execute (the hog is stdlib-only; a venv under /root is not)."""
    for cand in ("/usr/bin/python3", sys.executable):
        if os.path.exists(cand) and os.stat(cand).st_mode & 0o001:
            return cand
    return sys.executable


def protect_self() -> bool:
    """The kernel must never pick the harness itself: oom_score_adj -1000.

    Needs CAP_SYS_RESOURCE; without it (some containers and sandboxes drop it even for root)
    the harness is still safe from memcg OOMs, which only choose inside the sandbox.
    Returns whether the protection took effect.
    """
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("-1000")
        return True
    except OSError:
        return False


def can_lower_oom_score_adj() -> bool:
    """CAP_SYS_RESOURCE is needed to set a negative oom_score_adj."""
    return has_cap_sys_resource()


def has_cap_sys_resource() -> bool:
    """CAP_SYS_RESOURCE (bit 24 of CapEff): a negative oom_score_adj, rlimits above the hard limit."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> 24 & 1)
    except (OSError, ValueError):
        pass
    return False


_warm = False
# mm/oom_kill.c: `static DEFINE_RATELIMIT_STATE(oom_rs, DEFAULT_RATELIMIT_INTERVAL, DEFAULT_RATELIMIT_BURST)`
# guards dump_header(): at most 10 full reports per 5 s; past that only "Killed process" is printed.
OOM_REPORT_BURST = 10
OOM_REPORT_INTERVAL_S = 5.0
_recent_triggers: list[float] = []


def _pace_for_ratelimit() -> float:
    """Wait so this trigger's report cannot be suppressed by the kernel's OOM-report ratelimit.

    Returns the seconds waited (reported apart from the scenario's own time)."""
    now = time.monotonic()
    waited = 0.0
    window = OOM_REPORT_INTERVAL_S + 0.3
    while _recent_triggers and now - _recent_triggers[0] > window:
        _recent_triggers.pop(0)
    if len(_recent_triggers) >= OOM_REPORT_BURST - 2:
        wait = window - (now - _recent_triggers[0])
        if wait > 0:
            print(
                f"  (waiting {wait:.1f}s: the kernel prints at most {OOM_REPORT_BURST} OOM reports per "
                f"{OOM_REPORT_INTERVAL_S:.0f}s)",
                file=sys.stderr,
                flush=True,
            )
            time.sleep(wait)
            waited = wait
        _recent_triggers.clear()
    _recent_triggers.append(time.monotonic())
    return waited


def warm_up(python: str = "") -> None:
    """Fault the workload interpreter's file pages in from the harness's own cgroup, once.

    Otherwise the first sandbox to exec it is charged for the interpreter's page cache, and a
    memcg with no swap then thrashes reclaiming executable text instead of OOM-killing (seen on
    the first scenario of a run: 15 s with no kill).
    """
    global _warm
    if _warm:
        return
    subprocess.run(
        [python or _hog_python(), "-I", "-S", HOG, *spec_argv({"kind": "anon", "size": 0})],
        input=b"exit\n",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=30,
        check=False,
    )
    _warm = True


@dataclass
class _Proc:
    wl: Workload
    popen: subprocess.Popen[bytes]
    pids: list[int] = field(default_factory=list)  # main pid + forked children
    ready: bool = False
    grown: bool = False
    grow_s: float | None = None  # how long the growth took (the hog says so)
    buf: bytes = b""
    died_at: float | None = None


def _preexec(procs_file: str, adj: int, uid: int, gid: int | None, memlock: bool = False) -> Callable[[], None]:
    def setup() -> None:
        # Order matters: join the cgroup and lower oom_score_adj while still root, then drop.
        with open(procs_file, "w") as f:
            f.write(str(os.getpid()))
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(adj))
        if memlock and uid:
            # an mlock workload under another uid: lift RLIMIT_MEMLOCK while still root (needs
            # CAP_SYS_RESOURCE above the hard limit; unmet_requirements says so beforehand)
            with contextlib.suppress(OSError, ValueError):
                resource.setrlimit(resource.RLIMIT_MEMLOCK, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        if gid is not None or uid:
            os.setgroups([])
            os.setgid(gid if gid is not None else uid)
        if uid:
            os.setuid(uid)

    return setup


def _kernel() -> str:
    return platform.release()


def _ensure_safe(sc: Scenario, opts: EngineOptions) -> None:
    if sc.cgroup.memory_max is None and not opts.allow_unlimited:
        raise HarnessError(f"{sc.name}: refusing a workload without a memory limit outside a VM")
    if sc.sysctl and not opts.allow_sysctl:
        raise HarnessError(f"{sc.name}: sysctl changes ({', '.join(sc.sysctl)}) are only made inside a VM")
    if sc.cgroup.memory_max is not None and not opts.allow_unlimited:
        avail = meminfo().get("MemAvailable", 0) * 1024
        if avail and sc.cgroup.memory_max > avail * opts.host_safety_margin:
            raise HarnessError(
                f"{sc.name}: limit {sc.cgroup.memory_max >> 20} MiB is more than the host can spare "
                f"({avail >> 20} MiB available, margin {opts.host_safety_margin:.0%})"
            )


def _make_cgroups(sc: Scenario, opts: EngineOptions) -> tuple[Sandbox, dict[str, Sandbox]]:
    cg = sc.cgroup
    root = Sandbox.create(
        sc.name,
        memory_max=cg.memory_max,
        swap_max=cg.swap_max,
        memory_high=cg.memory_high,
        oom_group=cg.oom_group,
        allow_unlimited=opts.allow_unlimited,
    )
    by_name: dict[str, Sandbox] = {"": root}
    try:
        if cg.cpuset_mems is not None:
            _set_cpuset(root, cg.cpuset_mems)

        def add(parent: Sandbox, spec: CgroupSpec) -> None:
            for ch in spec.children:
                sb = parent.child(
                    ch.name,
                    memory_max=ch.memory_max,
                    swap_max=ch.swap_max,
                    memory_high=ch.memory_high,
                    oom_group=ch.oom_group,
                )
                by_name[ch.name] = sb
                add(sb, ch)

        add(root, cg)
    except BaseException:
        root.destroy()
        raise
    return root, by_name


def _set_cpuset(sb: Sandbox, mems: str) -> None:
    if sb.layout.version != 2:
        raise HarnessError("cpuset-constrained scenarios need cgroup v2 (they run in the VM)")
    parent = os.path.dirname(sb.path)
    with contextlib.suppress(OSError), open(os.path.join(parent, "cgroup.subtree_control"), "w") as f:
        f.write("+cpuset")
    with open(os.path.join(sb.path, "cpuset.mems"), "w") as f:
        f.write(mems)


class Launcher:
    """How a backend makes the sandbox and starts workloads in it.

    The default runs workloads on this machine in cgroups below the harness's own.  The Docker
    backend subclasses it: the container's memcg is the sandbox and workloads start with
    ``docker exec``; everything else (ready, snapshot, trigger, wait, judge) stays shared.
    """

    name = "host"
    hog = HOG

    def sandbox(self, sc: Scenario, opts: EngineOptions) -> tuple[Sandbox, dict[str, Sandbox]]:
        return _make_cgroups(sc, opts)

    def popen(self, wl: Workload, spec: dict[str, Any], sb: Sandbox, opts: EngineOptions) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [opts.python or _hog_python(), "-I", "-S", self.hog, *spec_argv(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,  # read only if it dies early (a traceback is far below a pipe's 64 KiB)
            preexec_fn=_preexec(sb.procs_file(), wl.oom_score_adj, wl.uid, wl.gid, memlock=wl.kind == "mlock"),
            close_fds=True,
        )

    def stderr_tail(self, wl: Workload, popen: subprocess.Popen[bytes]) -> str:
        """The last line a dead workload wrote to stderr (its exception), or ""."""
        return _last_line(_read_dead_pipe(popen.stderr))

    def host_pids(self, reported: list[int], sb: Sandbox) -> list[int]:
        """Map the pids a workload reported (its own pid namespace) to this machine's pids."""
        return reported

    def release(self, root: Sandbox) -> None:
        root.destroy()

    def deaths_explained(self, sc: Scenario, killed: set[str], dead: list[str]) -> dict[str, str]:
        """Workloads in *dead* whose death follows from the kernel's kills of *killed* without an
        OOM report of their own (e.g. a container ending with its main process): name -> why.
        On the host nothing dies that way."""
        return {}


def _start(wl: Workload, sb: Sandbox, opts: EngineOptions, tmpdir: str, launcher: Launcher,
           situ: dict[str, Any] | None = None) -> _Proc:
    spec = wl.spec()
    spec["comm"] = wl.name
    spec["oom_score_adj"] = wl.oom_score_adj
    if wl.kind == "file":
        spec["path"] = os.path.join(tmpdir, f"{wl.name}.data")
    elif wl.kind == "tmpfs":
        spec["path"] = situations.workload_path(tmpdir, wl.name)
    elif wl.kind == "cache":
        spec["path"], spec["offset"] = (situ or {})["cache"][wl.name]
    try:
        p = launcher.popen(wl, spec, sb, opts)
    except subprocess.SubprocessError as e:  # preexec_fn failed: Python keeps no detail
        raise HarnessError(f"workload {wl.name} could not be started in cgroup {sb.rel} with oom_score_adj "
                           f"{wl.oom_score_adj} and uid {wl.uid} ({e})") from None
    assert p.stdout is not None
    os.set_blocking(p.stdout.fileno(), False)
    return _Proc(wl, p, [p.pid])


def _pump(sel: selectors.BaseSelector, procs: dict[int, _Proc], timeout: float) -> None:
    """Read available stdout lines from workloads (ready / grown)."""
    for key, _ in sel.select(timeout):
        pr: _Proc = key.data
        try:
            chunk = os.read(key.fd, 4096)
        except (BlockingIOError, OSError):
            continue
        if not chunk:
            sel.unregister(key.fileobj)
            continue
        pr.buf += chunk
        while b"\n" in pr.buf:
            line, pr.buf = pr.buf.split(b"\n", 1)
            parts = line.decode(errors="replace").split()
            if parts and parts[0] == "ready":
                pr.ready = True
                pr.pids = [int(x) for x in parts[1:]] or pr.pids
            elif parts and parts[0] == "grown":
                pr.grown = True
                with contextlib.suppress(IndexError, ValueError):
                    pr.grow_s = float(parts[1])


def _send(pr: _Proc, cmd: str) -> None:
    with contextlib.suppress(BrokenPipeError, OSError, ValueError):
        assert pr.popen.stdin is not None
        pr.popen.stdin.write(cmd.encode() + b"\n")
        pr.popen.stdin.flush()


def run_scenario(
    sc: Scenario, opts: EngineOptions | None = None, launcher: Launcher | None = None
) -> ScenarioRecord:
    """Run *sc* for real and return its verdict record (see README, "Results").

    If the kernel suppressed the report (ratelimit; other OOMs on the machine count too), the
    scenario is run once more after the ratelimit window, and the record says so.
    """
    rec = _run_once(sc, opts, launcher or Launcher())
    if rec.report_suppressed:
        time.sleep(OOM_REPORT_INTERVAL_S + 0.3)
        _recent_triggers.clear()
        first_reason = rec.reason
        rec = _run_once(sc, opts, launcher or Launcher())
        rec.retried = "the first run's report was suppressed by the kernel's ratelimit: " + first_reason[:200]
    return rec


def _run_once(sc: Scenario, opts: EngineOptions | None, launcher: Launcher) -> ScenarioRecord:
    opts = opts or EngineOptions()
    _ensure_safe(sc, opts)
    t0 = time.monotonic()
    timings: dict[str, float] = {}
    rec = ScenarioRecord(
        scenario=sc.name,
        backend=opts.backend,
        kernel=_kernel(),
        expected={"outcome": sc.expect_outcome, "victim": sc.expect_victim},
        started=time.time(),
    )
    layout = detect_layout()
    rec.cgroup_version = layout.version
    inner = internal_processes(sc) if layout.version == 2 else []
    if inner:
        rec.set_verdict("error", "error", False, inner[0])
        rec.timings = {}
        rec.duration_s = round(time.monotonic() - t0, 4)
        return rec
    missing = unmet_requirements(sc, layout.version)
    if missing:
        rec.set_verdict("skipped", "skipped", None, "needs " + "; ".join(missing))
        rec.timings = {}
        rec.duration_s = round(time.monotonic() - t0, 4)
        return rec
    if opts.warm_up:
        warm_up(opts.python)
    cursor = KmsgCursor()
    procs: dict[int, _Proc] = {}
    root: Sandbox | None = None
    tmpdir = ""
    sel = selectors.DefaultSelector()
    old_sysctl: dict[str, str] = {}
    situ: dict[str, Any] = {}
    try:
        _apply_sysctl(sc.sysctl, old_sysctl)
        root, cgs = launcher.sandbox(sc, opts)
        rec.cgroup = root.rel
        tmpdir = tempfile.mkdtemp(prefix=f"oomh-{os.getpid()}-", dir=opts.tmpdir)
        os.chmod(tmpdir, 0o1777)  # like /tmp: file workloads under another uid write their files here
        situ = situations.prepare(sc, tmpdir)
        situations.apply_protection(sc, cgs)
        timings["setup"] = time.monotonic() - t0
        # -- start every workload and wait until each holds its initial memory --------------------
        t1 = time.monotonic()
        try:
            for wl in sc.workloads:
                if wl.start_delay_s:
                    time.sleep(wl.start_delay_s)
                pr = _start(wl, cgs[wl.cgroup], opts, tmpdir, launcher, situ)
                procs[pr.popen.pid] = pr
                sel.register(pr.popen.stdout, selectors.EVENT_READ, pr)  # type: ignore[arg-type]
                if wl.start_delay_s or wl.kind in ("fork", "many"):
                    _wait_ready(sel, procs, [pr], ready_bound(sc))  # keep fork order = scan order
            _wait_ready(sel, procs, list(procs.values()), ready_bound(sc))
        except _DiedEarly as e:
            raise HarnessError(_early_death(e, sc, cursor, launcher)) from None
        timings["fill"] = time.monotonic() - t1
        for pr in procs.values():
            pr.pids = launcher.host_pids(pr.pids, cgs[pr.wl.cgroup])
        pid_map = {pid: pr.wl.name for pr in procs.values() for pid in pr.pids}
        snap = snapshot(pid_map)
        pre_kills = root.oom_kills()
        pre_counters = read_counters(root.path, layout.version)
        pre_state = situations.memory_state(cgs)
        # -- trigger ---------------------------------------------------------------------------------
        t2 = time.monotonic()
        growers = [pr for pr in procs.values() if pr.wl.grow is not None]
        if sc.expect_outcome != "no-oom":
            paced = _pace_for_ratelimit()
            if paced:
                rec.ratelimit_wait_s = round(paced, 3)
            t2 = time.monotonic()
        for pr in growers:
            _send(pr, "go")
        trig_ts = time.monotonic()
        manual_death = situations.trigger(sc, [pr.popen for pr in procs.values()], sc.timeout_s)
        outcome = _wait_outcome(sel, procs, cursor, sc, root)
        outcome["first_death"] = outcome.get("first_death") or manual_death
        situations.stop_at_bound(sc, outcome, [(pr.wl.name, pr.popen) for pr in growers])
        timings["kill"] = time.monotonic() - t2
        # -- collect -------------------------------------------------------------------------------
        t3 = time.monotonic()
        dead = {pid for pr in procs.values() for pid in pr.pids if not pid_alive(pid)}
        # the growers the harness itself stopped at a no-victim scenario's bound have no kill line to wait for
        by_harness = {pid for pr in procs.values() if pr.wl.name in outcome.get("alive_at_bound", [])
                      for pid in pr.pids}
        awaited = dead - by_harness
        cursor.wait_for(lambda lines: _kill_lines_seen(lines, awaited), 1.0 if awaited else 0.0)
        timings["log"] = time.monotonic() - t3
        t4 = time.monotonic()
        rec.update(_judge(sc, cursor, root, pid_map, snap, dead, pre_kills, layout.version, outcome, launcher))
        rec.time_to_kill_s = round(outcome["first_death"] - trig_ts, 4) if outcome.get("first_death") else None
        _count_and_situate(rec, sc, opts, layout.version, root, cgs, procs, pre_counters, pre_state, outcome,
                           cursor.gaps)
        timings["parse_model"] = time.monotonic() - t4
        rec.kernel_log = cursor.text()
        rec.kmsg_gaps = cursor.gaps
    except HarnessError as e:
        rec.set_verdict("error", "error", False, str(e))
        rec.kernel_log = cursor.text()
    except Exception as e:  # noqa: BLE001 - any failure is a verdict, never a crash mid-scenario
        rec.set_verdict("error", "error", False, f"{type(e).__name__}: {e}")
        rec.kernel_log = cursor.text()
    finally:
        for pr in procs.values():
            _send(pr, "exit")
            with contextlib.suppress(OSError, ValueError):
                if pr.popen.stdin:
                    pr.popen.stdin.close()
        if root is not None:
            try:
                launcher.release(root)
            except HarnessError as e:
                rec.cleanup_error = rec.cleanup_error or str(e)
        for pr in procs.values():
            with contextlib.suppress(Exception):
                pr.popen.kill()
            with contextlib.suppress(Exception):
                pr.popen.wait(timeout=5)
            with contextlib.suppress(Exception):
                pr.popen.stdout.close()  # type: ignore[union-attr]
            if pr.popen.stderr is not None:
                with contextlib.suppress(Exception):
                    pr.popen.stderr.close()
        sel.close()
        cursor.close()
        situations.teardown(situ)
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)
        try:
            _apply_sysctl(old_sysctl, {})
        except HarnessError as e:
            rec.cleanup_error = rec.cleanup_error or str(e)
    rec.timings = {k: round(v, 4) for k, v in timings.items()}
    rec.duration_s = round(time.monotonic() - t0 - (rec.ratelimit_wait_s or 0), 4)
    return rec


def _count_and_situate(rec: ScenarioRecord, sc: Scenario, opts: EngineOptions, cg_version: int, root: Sandbox,
                       cgs: dict[str, Sandbox], procs: dict[int, _Proc], pre_counters: dict[str, Any],
                       pre_state: dict[str, Any], outcome: dict[str, Any], kmsg_gaps: int) -> None:
    """Kill counting (the kernel's counters against the log's kill lines) and the situation
    facts (:mod:`harness.machine.situations`) added to the verdict record."""
    d = rec.to_dict()
    kc = kill_count(pre_counters, read_counters(root.path, cg_version), len(d.get("kills") or []), cg_version,
                    machine_private=opts.backend == "vm", log_reports=len(d.get("events") or []),
                    kmsg_gaps=kmsg_gaps)
    d["kill_count"] = kc
    if kc["differences"]:
        d["reason"] = (d.get("reason") or "") + "; kill count differs: " + "; ".join(kc["differences"])
    info = {
        pr.wl.name: {"grower": pr.wl.grow is not None, "grown": pr.grown, "grow_s": pr.grow_s,
                     "alive": pr.popen.poll() is None, "returncode": pr.popen.returncode, "cgroup": pr.wl.cgroup,
                     "alive_at_bound": outcome.get("alive_at_bound", [])}
        for pr in procs.values()
    }
    situations.judge(sc, d, before=pre_state, after=situations.memory_state(cgs), cgs=cgs, procs=info,
                     timed_out=bool(outcome.get("timed_out")))
    for k in ("second_victims", "second_kill_cause"):
        if k not in d:
            setattr(rec, k, UNSET)
    rec.update({k: v for k, v in d.items() if k in SITUATION_FIELDS})


#: The record fields kill counting and the situations may set or change.
SITUATION_FIELDS = frozenset({
    "kill_count", "memory_state", "throttle", "allocating_task", "unfreed", "predicted_victims", "predicted_group",
    "killed_workloads", "survivors", "protection", "zswap", "reason", "outcome", "verdict", "as_expected",
})


#: Starting the workloads is not what a short ``timeout_s`` bounds (no-killable-process: 4 s for the
#: kernel to act); on a loaded machine under TCG, starting them alone can take longer than that.
READY_MIN_S = 30.0


def ready_bound(sc: Scenario) -> float:
    return max(sc.timeout_s, READY_MIN_S)


def internal_processes(sc: Scenario) -> list[str]:
    """Workloads placed in a cgroup that has child cgroups: cgroup v2 refuses that ("no internal
    processes": a cgroup with controllers enabled for its children holds no processes itself, and
    writing a pid to its cgroup.procs fails with EBUSY).  One sentence per offending workload."""
    inner: dict[str, str] = {}

    def walk(spec: CgroupSpec, name: str, label: str) -> None:
        if spec.children:
            inner[name] = label
        for ch in spec.children:
            walk(ch, ch.name, f"child cgroup {ch.name!r}")

    walk(sc.cgroup, "", "the scenario's cgroup")
    return [f"workload {w.name} is placed in {inner[w.cgroup]}, which has child cgroups: cgroup v2 keeps processes "
            "only in leaf cgroups (\"no internal processes\"); put it in one of the children"
            for w in sc.workloads if w.cgroup in inner]


def unmet_requirements(sc: Scenario, cgroup_version: int) -> list[str]:
    """What *sc* needs that this machine lacks, in words a user can act on."""
    out = []
    for r in sc.requires:
        if r == "cgroup2" and cgroup_version != 2:
            out.append("cgroup v2 with the memory controller (this host has v1; run it with --backend vm)")
        elif r == "numa" and not os.path.isdir("/sys/devices/system/node/node1"):
            out.append("two NUMA nodes (run it with --backend vm)")
        elif r == "swap" and not meminfo().get("SwapTotal"):
            out.append("swap (run it with --backend vm)")
        elif r == "zswap" and not os.path.isdir("/sys/module/zswap"):
            out.append(zswap_missing(platform.release()))
    if any(w.oom_score_adj < 0 for w in sc.workloads) and not can_lower_oom_score_adj():
        out.append("CAP_SYS_RESOURCE to set a negative oom_score_adj (this root lacks it; run it with --backend vm)")
    hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)[1]
    for w in sc.workloads:
        if w.kind == "mlock" and w.uid and hard != resource.RLIM_INFINITY and not has_cap_sys_resource():
            want = w.size + (w.grow if isinstance(w.grow, int) else 0)
            if w.grow == "until-killed" or want > hard:
                out.append(f"CAP_SYS_RESOURCE to let uid {w.uid} mlock {w.name}'s memory (RLIMIT_MEMLOCK hard limit "
                           f"{hard >> 10} KiB; this root lacks it; run it with --backend vm or as uid 0)")
    return out


def zswap_missing(release: str) -> str:
    """Why a kernel without zswap skips: a capability of that kernel, not a harness failure.  Debian's
    cloud flavour leaves CONFIG_ZSWAP out up to 6.12 (7.2's has it); its generic flavour, built from
    the same source, has it and boots in the VM backend by its exact release."""
    msg = f"zswap, which this kernel ({release}) is built without (CONFIG_ZSWAP is not set: the kernel lacks it"
    if release.endswith("-cloud-amd64"):
        generic = release[: -len("-cloud-amd64")] + "-amd64"
        return msg + f"; Debian's generic flavour of the same kernel has it: --kernel {generic})"
    return msg + ")"


def sysctl_path(key: str) -> str:
    """The file behind a scenario's ``[sysctl]`` key: ``vm.nr_hugepages`` is /proc/sys/vm/nr_hugepages;
    a key that is a /sys path is a module parameter (e.g. /sys/module/zswap/parameters/enabled)."""
    return key if key.startswith("/sys/") else "/proc/sys/" + key.replace(".", "/")


def _apply_sysctl(values: dict[str, str], old: dict[str, str]) -> None:
    """Set sysctls, remembering each previous value in *old* as it goes (so a failure halfway
    still restores what was changed)."""
    for k, v in values.items():
        path = sysctl_path(k)
        try:
            with open(path) as f:
                old[k] = f.read().strip()
            with open(path, "w") as f:
                f.write(v)
        except OSError as e:
            raise HarnessError(f"cannot set sysctl {k}={v}: {e.strerror}") from None


class _DiedEarly(HarnessError):
    """A workload died before it held its initial size (explained by :func:`_early_death`)."""

    def __init__(self, proc: _Proc) -> None:
        super().__init__(f"workload {proc.wl.name} died before it was ready (exit {proc.popen.returncode})")
        self.proc = proc


def _read_dead_pipe(pipe: Any) -> bytes:
    """What is left in a dead process's pipe (never blocks: the writer is gone)."""
    if pipe is None:
        return b""
    try:
        return bytes(pipe.read(65536) or b"")
    except (OSError, ValueError):
        return b""


def _last_line(data: bytes) -> str:
    lines = [ln.strip() for ln in data.decode("utf-8", "replace").splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def _early_death(e: _DiedEarly, sc: Scenario, cursor: KmsgCursor, launcher: Launcher) -> str:
    """Why a workload died before the trigger, in words a scenario author can act on.

    Killed by the kernel (SIGKILL and a kill line for its pid): the workloads' initial sizes plus
    their interpreters' own memory (a few MiB each) did not fit the limit.  Otherwise the hog's own
    error (e.g. mlock refused), read from its stderr."""
    pr = e.proc
    rc = pr.popen.returncode
    name = pr.wl.name
    if rc in (-9, 137):
        pid = pr.popen.pid
        cursor.wait_for(lambda lines: _kill_lines_seen(lines, {pid} | set(pr.pids)), 1.0)
        killed = {ll.text.split("Killed process ", 1)[1].split(" ", 1)[0].rstrip(",")
                  for ll in cursor.lines if "Killed process " in ll.text}
        if str(pid) in killed or any(str(p) in killed for p in pr.pids):
            where, limit, members = _tightest_limit(sc, pr.wl.cgroup)
            total = sum(w.size + w.children * w.child_size for w in sc.workloads if w.cgroup in members)
            bound = f"{where}'s memory_max of {limit >> 20} MiB" if limit else "the machine's memory"
            return (f"workload {name} was OOM-killed before the trigger, while the workloads took their initial "
                    f"sizes ({total >> 20} MiB in all, plus about 4 MiB of interpreter per process) under "
                    f"{bound}: lower the sizes or raise that limit")
        return f"workload {name} was killed (SIGKILL) before it was ready, with no OOM kill line for it in the log"
    why = launcher.stderr_tail(pr.wl, pr.popen)
    return f"workload {name} failed before it was ready (exit {rc})" + (f": {why}" if why else "")


def _tightest_limit(sc: Scenario, cgroup: str) -> tuple[str, int | None, set[str]]:
    """The smallest memory_max on the way from the workload's cgroup up to the sandbox: which cgroup
    ("the sandbox" or a child's name), its limit, and the names of the cgroups under it."""
    chain: list[CgroupSpec] = []

    def find(spec: CgroupSpec, path: list[CgroupSpec]) -> bool:
        here = [*path, spec]
        if (spec is sc.cgroup and cgroup == "") or (spec is not sc.cgroup and spec.name == cgroup):
            chain.extend(here)
            return True
        return any(find(ch, here) for ch in spec.children)

    find(sc.cgroup, [])
    limited = [c for c in chain if c.memory_max is not None]
    if not limited:
        return "the sandbox", None, {""}
    tight = min(limited, key=lambda c: c.memory_max or 0)
    names: set[str] = set()

    def under(spec: CgroupSpec) -> None:
        names.add("" if spec is sc.cgroup else spec.name)
        for ch in spec.children:
            under(ch)

    under(tight)
    return ("the sandbox" if tight is sc.cgroup else f"child cgroup {tight.name}"), tight.memory_max, names


def _wait_ready(sel: selectors.BaseSelector, procs: dict[int, _Proc], want: list[_Proc], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not all(p.ready for p in want):
        for p in want:
            if not p.ready and p.popen.poll() is not None:
                raise _DiedEarly(p)
        left = deadline - time.monotonic()
        if left <= 0:
            raise HarnessError(
                f"workloads not ready within {timeout}s: " + ", ".join(p.wl.name for p in want if not p.ready)
            )
        _pump(sel, procs, min(left, 0.05))


def _kill_lines_seen(lines: list[Any], dead: set[int]) -> bool:
    if not dead:
        return True
    seen = set()
    for ll in lines:
        t = ll.text
        if "Killed process " in t:
            with contextlib.suppress(ValueError, IndexError):
                seen.add(int(t.split("Killed process ", 1)[1].split(" ", 1)[0].rstrip(",")))
    return bool(dead & seen)  # one of OUR dead has its kill line (another harness may be killing too)


def _wait_outcome(
    sel: selectors.BaseSelector, procs: dict[int, _Proc], cursor: KmsgCursor, sc: Scenario, root: Sandbox
) -> dict[str, Any]:
    """Wait until every grower is dead or done (bounded by the scenario's timeout)."""
    deadline = time.monotonic() + sc.timeout_s
    growers = [pr for pr in procs.values() if pr.wl.grow is not None]
    first_death: float | None = None
    while True:
        _pump(sel, procs, 0.005)
        now = time.monotonic()
        for pr in procs.values():
            if pr.died_at is None and pr.popen.poll() is not None:
                pr.died_at = now
                first_death = first_death or now
            elif first_death is None and any(not pid_alive(c) for c in pr.pids[1:]):
                first_death = now
        if all(pr.died_at is not None or pr.grown for pr in growers):
            break
        if now > deadline:
            return {"timed_out": True, "first_death": first_death}
    return {"timed_out": False, "first_death": first_death}


def _ctx(layout_version: int, root: Sandbox) -> Context:
    mi = meminfo()
    return Context(
        total_swap_pages=mi.get("SwapTotal", 0) // PAGE_KB,
        totalram_pages=mi.get("MemTotal", 0) // PAGE_KB,
        swappiness=root.swappiness() if layout_version == 1 else _global_swappiness(),
        cgroup_v2=layout_version == 2,
        page_size=PAGE_KB * 1024,
    )


def _global_swappiness() -> int | None:
    try:
        with open("/proc/sys/vm/swappiness") as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def _judge(
    sc: Scenario,
    cursor: KmsgCursor,
    root: Sandbox,
    pid_map: dict[int, str],
    snap: list[TaskSnapshot],
    dead: set[int],
    pre_kills: int,
    cg_version: int,
    outcome: dict[str, Any],
    launcher: Launcher,
) -> dict[str, Any]:
    ctx = _ctx(cg_version, root)
    events = [e for e in parse_lines(cursor.lines) if _ours(e, root, pid_map)]
    analyses = analyze_all(events, ctx)
    docs = [a.to_dict() for a in analyses]
    kills = []
    for d in docs:
        for k in d["kills"]:
            kills.append({**k, "workload": pid_map.get(k["pid"])})
    out: dict[str, Any] = {"events": docs, "kills": kills, "snapshot": [s.to_dict() for s in snap]}
    out["oom_kill_counter"] = root.oom_kills() - pre_kills
    out["oom_score_check"] = _oom_score_check(snap, ctx)
    out["variants"] = _variants(events, ctx, snap, out["oom_score_check"])
    exp, victim = sc.expect_outcome, sc.expect_victim
    killed_wl = [k["workload"] for k in kills]
    unexplained_dead = sorted({pid_map[p] for p in dead if p in pid_map and p not in {k["pid"] for k in kills}}
                              - {w for w in killed_wl if w})
    explained = launcher.deaths_explained(sc, {w for w in killed_wl if w}, unexplained_dead)
    if explained:
        out["explained_deaths"] = explained
        unexplained_dead = [w for w in unexplained_dead if w not in explained]
    if not docs:
        if unexplained_dead:
            out.update(
                outcome="error",
                verdict="error",
                as_expected=False,
                reason=f"workload(s) {', '.join(unexplained_dead)} died, but the kernel log has no OOM kill "
                "for them: killed by something else",
            )
        elif outcome.get("timed_out"):
            out.update(
                outcome="no-oom",
                verdict="no-oom",
                as_expected=exp == "no-oom",
                reason=f"no OOM kill within {sc.timeout_s}s and the growers did not finish",
            )
        else:
            out.update(
                outcome="no-oom",
                verdict="no-oom",
                as_expected=exp == "no-oom",
                reason="the workloads reached their sizes without an OOM kill"
                + ("" if exp == "no-oom" else " (the limit was never reached)"),
            )
        return out
    first = docs[0]
    if first.get("trigger") is None and not first["candidates"] and first["kills"]:
        out["report_suppressed"] = True
    obs = first.get("observed_victim")
    pred = first.get("predicted_victim")
    out["observed_victim"] = obs and {**obs, "workload": pid_map.get(obs["pid"])}
    out["predicted_victim"] = pred and {**pred, "workload": pid_map.get(pred["pid"])}
    cands = [c for c in first["candidates"] if c["eligible"]]
    if cands:
        out["victim_points"] = next((c["points"] for c in cands if obs and c["pid"] == obs["pid"]), None)
        ru = next((c for c in cands if not obs or c["pid"] != obs["pid"]), None)
        out["runner_up"] = ru and {
            "pid": ru["pid"],
            "name": ru["name"],
            "workload": pid_map.get(ru["pid"]),
            "points": ru["points"],
        }
    out["report_format"] = first["table_layout"]
    verdict = first["verdict"]
    group = bool(first.get("group_kill_memcg"))
    out["outcome"] = "group-kill" if group else ("kill" if kills else "no-victim")
    primary = [k for k in kills if not k["group"]]
    reasons = [first["reason"]]
    ok = verdict == "match"
    if exp == "no-oom":
        ok = False
        reasons.insert(0, "expected no OOM, but the kernel killed " + ", ".join(str(w) for w in killed_wl))
    elif exp == "group-kill":
        want = set(victim if isinstance(victim, list) else [victim])
        got = {k["workload"] for k in kills}
        if not group:
            ok = False
            reasons.insert(0, "expected a memory.oom.group kill; the kernel killed one task")
        elif not want <= got:
            ok = False
            reasons.insert(0, f"group kill missed {sorted(want - got, key=str)}")
    else:
        want_v = victim if isinstance(victim, list) else [victim]
        obs_wl = out["observed_victim"]["workload"] if out.get("observed_victim") else None
        if obs_wl not in want_v and "*" not in want_v:
            ok = False
            reasons.insert(
                0,
                f"the kernel killed {obs_wl or obs}, the scenario expected {victim}"
                + (
                    " (the model agrees with the kernel: the scenario's expectation is wrong)"
                    if verdict == "match"
                    else ""
                ),
            )
        if len(docs) > 1 or len(primary) > 1:
            extra = primary[1:]
            out["second_victims"] = [pid_map.get(k["pid"], k["name"]) for k in extra]
            out["second_kill_cause"] = second_kill_cause(docs, first)
            if sc.second_victim_ok:
                reasons.append(f"the second kill is declared possible by the scenario: {sc.second_victim_ok}")
            else:
                ok = False
            reasons.insert(
                0,
                "second victim: the kernel killed again: "
                + ", ".join(f"{k['pid']} ({pid_map.get(k['pid'], k['name'])})" for k in extra)
                + f" ({out['second_kill_cause']})",
            )
    if unexplained_dead:
        ok = False
        reasons.insert(0, f"workload(s) {', '.join(unexplained_dead)} died without an OOM kill in the log")
    for w, why in explained.items():
        reasons.append(f"{w} ended too: {why}")
    if any(not d["complete"] for d in docs):
        reasons.append("report incomplete: " + "; ".join(m for d in docs for m in d["missing"]))
    out.update(verdict=verdict, as_expected=ok, reason="; ".join(reasons))
    return out


def second_kill_cause(docs: list[dict[str, Any]], first: dict[str, Any]) -> str:
    """Why the kernel killed again: the analysis of the second report says (see
    ``analysis._second_kill_note``); without its note it was an ordinary new OOM."""
    if len(docs) < 2:
        return "one report named several victims"
    second = docs[1]
    note = next((n for n in second["notes"] if n.startswith("second kill")), None)
    cause = note or "a new OOM: the limit was reached again after the first victim's memory was freed"
    model = ("the second selection matches the model with the first victim gone" if second["verdict"] == "match"
             else f"the second selection: {second['verdict']}")
    return f"{cause}; {model}"


def _ours(ev: Any, root: Sandbox, pid_map: dict[int, str]) -> bool:
    if ev.summary is not None and ev.summary.oom_memcg:
        return ev.summary.oom_memcg.startswith(root.rel) or ev.summary.oom_memcg == "/"
    if ev.summary is not None and ev.summary.global_oom:
        return True
    return any(k.pid in pid_map for k in ev.kills) or any(r.pid in pid_map for r in ev.table)


def _variants(events: list[Any], ctx: Context, snap: list[TaskSnapshot], check: dict[str, Any]) -> dict[str, Any]:
    """Which selection-rule variants agree with this scenario's observations (harness.core.variants)."""
    try:
        return check_scenario(events, ctx, [(s.model_task(), s.oom_score) for s in snap], check.get("era"),
                              check.get("totalpages"), PAGE_KB * 1024)
    except Exception as e:  # noqa: BLE001 - an explanation aid must never cost a verdict
        return {"error": f"{type(e).__name__}: {e}"}


def _oom_score_check(snap: list[TaskSnapshot], ctx: Context) -> dict[str, Any]:
    """The kernel's /proc/PID/oom_score before the trigger against the model's, task by task."""
    v = parse_version(platform.release())
    if v is None or not snap or ctx.totalram_pages is None:
        return {"checked": 0}
    era = era_for_version(v)
    tp = ctx.totalram_pages + (ctx.total_swap_pages or 0)
    rows: list[dict[str, Any]] = []
    for s in snap:
        t = s.model_task()
        model = oom_score(t, tp, era, PAGE_KB * 1024)
        rows.append(
            {
                "pid": s.pid,
                "workload": s.workload,
                "kernel": s.oom_score,
                "model": model,
                "diff": None if s.oom_score is None else s.oom_score - model,
            }
        )
    diffs = [abs(r["diff"]) for r in rows if r["diff"] is not None]
    k_rank = [r["pid"] for r in sorted(rows, key=lambda r: (-(r["kernel"] or 0), r["pid"]))]
    m_rank = [r["pid"] for r in sorted(rows, key=lambda r: (-r["model"], r["pid"]))]
    return {
        "checked": len(rows),
        "max_abs_diff": max(diffs) if diffs else None,
        "agree": bool(diffs) and max(diffs) <= 1,
        "ranking_agrees": k_rank == m_rank,
        "era": era.label,
        "totalpages": tp,
        "tasks": rows,
    }
