"""What the engine adds for the OOM situations users meet (issue 15), kept apart from the engine.

Each function is a small hook the engine calls at one point of a scenario:

* :func:`prepare` / :func:`teardown` -- a private tmpfs for ``kind = "tmpfs"`` workloads;
* :func:`apply_protection` -- cgroup v2 ``memory.min`` / ``memory.low``;
* :func:`memory_state` -- ``memory.current`` / ``memory.stat`` of every cgroup of the sandbox
  (before the trigger and after the kernel acted);
* :func:`judge` -- the outcomes and facts the plain kill verdict does not cover: ``throttled``
  (memory.high), ``no-victim`` (nothing killable: what happened to the allocating task), the
  memory a kill could not free (tmpfs), and the whole set of victims a memory.oom.group kill must
  take (:func:`group_victims`).

Stdlib only: this runs in the guest too.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import time
from typing import Any

from .sandbox import read_int
from .scenario import CgroupSpec, Scenario

__all__ = ["prepare", "teardown", "apply_protection", "memory_state", "judge", "group_victims"]

MB = 1 << 20
DEBUGFS = "/sys/kernel/debug"
ZSWAP_DEBUGFS = DEBUGFS + "/zswap"
OOM_SCORE_ADJ_MIN = -1000
MNT_DETACH = 2


# -- tmpfs --------------------------------------------------------------------------------------------


def prepare(sc: Scenario, tmpdir: str) -> dict[str, Any]:
    """Mount a private tmpfs under *tmpdir* when a workload writes a tmpfs file (unmounted by
    :func:`teardown`: that is what frees a tmpfs file's pages, never a kill); give every ``cache``
    workload its own region of the block device it reads (:func:`cache_regions`)."""
    ctx: dict[str, Any] = {}
    if any(w.kind == "cache" for w in sc.workloads):
        ctx["cache"] = cache_regions(sc, swap_device())
    if "zswap" in sc.requires and not os.path.isdir(ZSWAP_DEBUGFS):
        # zswap's own counters (stored_pages: 5.10 has no zswap lines in memory.stat, 5.19 added them)
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.mount(b"debugfs", DEBUGFS.encode(), b"debugfs", 0, None) == 0:
            ctx["debugfs"] = DEBUGFS
    if any(w.kind == "tmpfs" for w in sc.workloads):
        path = os.path.dirname(workload_path(tmpdir, "x"))
        os.mkdir(path)
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.mount(b"oomh-tmpfs", path.encode(), b"tmpfs", 0, b"mode=1777") != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"mount tmpfs on {path}: {os.strerror(err)}")
        ctx["tmpfs"] = path
    return ctx


def teardown(ctx: dict[str, Any]) -> None:
    """Unmount the tmpfs; drop the page cache the ``cache`` workloads read (clean pages, which would
    otherwise stay in a reused guest, charged to the root cgroup once the sandbox is gone)."""
    for key in ("tmpfs", "debugfs"):
        path = ctx.get(key)
        if path:
            with contextlib.suppress(Exception):
                ctypes.CDLL(None, use_errno=True).umount2(path.encode(), MNT_DETACH)
    for dev in {d for d, _ in (ctx.get("cache") or {}).values()}:
        with contextlib.suppress(OSError):
            fd = os.open(dev, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def swap_device(swaps: str = "/proc/swaps") -> str:
    """The block device the ``cache`` workloads read: the VM's swap disk, its only block device (the
    guest's files live in the initramfs, whose pages are never clean page cache).  Reading it is
    harmless (read-only, buffered; swap I/O bypasses the device's page cache) and gives genuine
    clean file pages."""
    with contextlib.suppress(OSError), open(swaps) as f:
        for line in f.read().splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 2 and parts[1] == "partition" and parts[0].startswith("/dev/"):
                return parts[0]
    raise OSError("no swap partition to read page cache from (a cache workload needs the VM's swap disk: "
                  "give the scenario [vm] swap_mb)")


#: Space between two cache workloads' regions, so that readahead past one region never reads
#: (and charges) the start of the next.
CACHE_GAP = 4 * MB


def cache_regions(sc: Scenario, device: str) -> dict[str, tuple[str, int]]:
    """``{workload: (device, offset)}``: disjoint regions in workload order (a block device's page
    is charged to the memcg that first read it, so two readers of one region would share pages).
    The first region starts past the swap header page."""
    out: dict[str, tuple[str, int]] = {}
    pos = CACHE_GAP
    for w in sc.workloads:
        if w.kind == "cache":
            out[w.name] = (device, pos)
            pos += w.size + (w.grow if isinstance(w.grow, int) else 0) + CACHE_GAP
    return out


def workload_path(tmpdir: str, name: str) -> str:
    """Where a ``tmpfs`` workload writes its file (on the tmpfs :func:`prepare` mounts)."""
    return os.path.join(tmpdir, "tmpfs", f"{name}.tmpfs")


def stop_at_bound(sc: Scenario, outcome: dict[str, Any], growers: list[tuple[str, Any]]) -> None:
    """A scenario that expects no victim and hit its bound: the growers still alive are looping in
    the kernel (charge, reclaim, an OOM report each time); SIGKILL them now, before the log is
    collected, and note who was alive (:func:`_allocating_fate` reports it).  Otherwise they would
    flood the log and eat the CPU while the engine reads and parses it."""
    if sc.expect_outcome != "no-victim" or not outcome.get("timed_out"):
        return
    alive = [name for name, p in growers if p.poll() is None]
    outcome["alive_at_bound"] = alive
    for name, p in growers:
        if name in alive:
            with contextlib.suppress(OSError):
                p.kill()
    for name, p in growers:
        if name in alive:
            with contextlib.suppress(Exception):
                p.wait(timeout=10)


def trigger(sc: Scenario, workers: list[Any], timeout: float) -> float | None:
    """``trigger = "sysrq-f"``: a manual OOM, ``echo f > /proc/sysrq-trigger`` (6.12
    drivers/tty/sysrq.c moom_callback(): ``order = -1``, no memcg, no nodemask, GFP_KERNEL, run
    from a workqueue; 6.12 mm/oom_kill.c: ``is_sysrq_oom()`` skips check_panic_on_oom() and the
    wait for an exiting victim). Waits (bounded) for a workload to die; returns when it did."""
    if sc.trigger != "sysrq-f":
        return None
    with open("/proc/sysrq-trigger", "w") as f:
        f.write("f")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in workers):
            return time.monotonic()
        time.sleep(0.005)
    return None


# -- protection ---------------------------------------------------------------------------------------


def _specs(spec: CgroupSpec, parent: str | None = None) -> dict[str, tuple[CgroupSpec, str | None]]:
    out = {spec.name: (spec, parent)}
    for ch in spec.children:
        out.update(_specs(ch, spec.name))
    return out


def apply_protection(sc: Scenario, cgs: dict[str, Any]) -> None:
    """memory.min / memory.low of every cgroup that asks for it (cgroup v2 only)."""
    for name, (spec, _) in _specs(sc.cgroup).items():
        sb = cgs.get(name)
        if sb is None:
            continue
        if spec.memory_min is not None:
            sb._set("memory.min", str(spec.memory_min))
        if spec.memory_low is not None:
            sb._set("memory.low", str(spec.memory_low))


# -- memory state -------------------------------------------------------------------------------------



def _stat(path: str) -> dict[str, int]:
    out: dict[str, int] = {}
    with contextlib.suppress(OSError), open(path) as f:
        for line in f:
            k, _, v = line.partition(" ")
            if v.strip().isdigit():
                out[k] = int(v)
    return out


def memory_state(cgs: dict[str, Any]) -> dict[str, dict[str, int | None]]:
    """Per cgroup name: memory.current, memory.max, memory.peak (5.19+), memory.swap.current and
    the memory.stat lines the situations use (bytes)."""
    out: dict[str, dict[str, int | None]] = {}
    for name, sb in cgs.items():
        st = _stat(os.path.join(sb.path, "memory.stat"))
        out[name] = {
            "current": read_int(os.path.join(sb.path, "memory.current")),
            "max": read_int(os.path.join(sb.path, "memory.max")),
            "peak": read_int(os.path.join(sb.path, "memory.peak")),
            "swap": read_int(os.path.join(sb.path, "memory.swap.current")),
            "anon": st.get("anon"),
            "file": st.get("file"),
            "shmem": st.get("shmem"),
            "zswap": st.get("zswap"),  # compressed bytes in the zswap pool (5.19+ memory.stat)
            "zswapped": st.get("zswapped"),  # bytes of the pages it holds
        }
    if os.path.isfile(ZSWAP_DEBUGFS + "/stored_pages"):  # zswap's machine-wide pool (debugfs, every kernel)
        out["(zswap)"] = {k: read_int(os.path.join(ZSWAP_DEBUGFS, k)) for k in ("stored_pages", "pool_total_size")}
    return out


def _mib(n: int | None) -> str:
    return "?" if n is None else f"{n / MB:.1f} MiB"


# -- memory.oom.group ---------------------------------------------------------------------------------


def group_victims(sc: Scenario, victim_wl: str | None, domain: str | None) -> tuple[str | None, list[str]]:
    """The cgroup a memory.oom.group kill cleans up and every workload it kills.

    6.12 ``mm/memcontrol.c`` ``mem_cgroup_get_oom_group(victim, oom_domain)``: from the victim's
    memcg up to the OOM domain (the memcg whose limit was hit; the root for a global OOM) the
    *highest* memcg with ``memory.oom.group`` set is the group -- a setting *above* the domain
    does not count.  ``oom_kill_memcg_member()`` then kills every task of that subtree except
    those at ``oom_score_adj`` -1000.  Without a group only the victim dies.  *domain* is the
    scenario's cgroup name of the domain ("" = the sandbox; None = a global OOM).
    """
    if victim_wl is None:
        return None, []
    specs = _specs(sc.cgroup)
    wl = {w.name: w for w in sc.workloads}
    if victim_wl not in wl:
        return None, [victim_wl]
    group: str | None = None
    cur: str | None = wl[victim_wl].cgroup
    while cur is not None:
        spec, parent = specs[cur]
        if spec.oom_group:
            group = cur
        if domain is not None and cur == domain:
            break
        cur = parent
    if group is None:
        return None, [victim_wl]
    inside = {group}
    changed = True
    while changed:
        changed = False
        for name, (_, parent) in specs.items():
            if parent in inside and name not in inside:
                inside.add(name)
                changed = True
    return group, sorted(w.name for w in sc.workloads if w.cgroup in inside and w.oom_score_adj != OOM_SCORE_ADJ_MIN)


def _domain(rec: dict[str, Any], cgs: dict[str, Any]) -> str | None:
    ev = (rec.get("events") or [{}])[0]
    memcg = ev.get("oom_memcg")
    if ev.get("kind") != "memcg" or not memcg:
        return None
    for name, sb in cgs.items():
        if sb.rel.rstrip("/") == memcg.rstrip("/"):
            return name
    return ""


def _judge_group(sc: Scenario, rec: dict[str, Any], cgs: dict[str, Any]) -> None:
    pred = (rec.get("predicted_victim") or {}).get("workload")
    obs = (rec.get("observed_victim") or {}).get("workload")
    group, want = group_victims(sc, pred or obs, _domain(rec, cgs))
    # the first OOM's kills (a later, separate OOM is judged as a second victim by the engine)
    first = {k["pid"] for k in (rec.get("events") or [{}])[0].get("kills", [])}
    killed = sorted({k["workload"] for k in rec.get("kills", []) if k.get("workload") and k["pid"] in first})
    rec["predicted_victims"] = want
    rec["predicted_group"] = group
    rec["killed_workloads"] = killed
    rec["survivors"] = sorted({w.name for w in sc.workloads} - set(killed))
    if killed != want and rec.get("as_expected"):
        rec["as_expected"] = False
        rec["reason"] = (f"the model predicts the kill of {want} (group {group!r}), the kernel killed {killed}; "
                         + rec.get("reason", ""))
    elif rec.get("outcome") in ("kill", "group-kill"):
        where = (f"memory.oom.group of {group or 'the sandbox'!r}" if group is not None
                 else "no memory.oom.group up to the domain")
        rec["reason"] = rec.get("reason", "") + f"; every victim as the model predicts ({where}): {', '.join(want)}"


def _judge_protection(sc: Scenario, rec: dict[str, Any], after: dict[str, Any]) -> None:
    """memory.min / memory.low shield a cgroup's memory from *reclaim* (6.12 mm/vmscan.c
    shrink_node_memcgs(): mem_cgroup_below_min() skips it always, mem_cgroup_below_low() unless a
    first pass reclaimed nothing, then memory.events ``low`` counts the breach); the OOM killer
    has no such term (6.12 mm/oom_kill.c oom_badness()), so the largest task of the OOM domain dies
    even inside a protected cgroup.  Records where reclaim went (swap per cgroup) and says so."""
    specs = _specs(sc.cgroup)
    prot = {n for n, (sp, _) in specs.items() if sp.memory_min or sp.memory_low}
    events = (rec.get("kill_count") or {}).get("events", {})
    facts = []
    for name in sorted(n for n in specs if n):
        st = after.get(name) or {}
        sp = specs[name][0]
        how = (f"memory.min {_mib(sp.memory_min)}" if sp.memory_min else
               f"memory.low {_mib(sp.memory_low)}" if sp.memory_low else "unprotected")
        low = events.get(name, {}).get("low")
        facts.append(f"{name} ({how}): {_mib(st.get('swap'))} swapped out" + (f", memory.events low +{low}" if low
                                                                             else ""))
    victim = (rec.get("observed_victim") or {}).get("workload")
    wl = {w.name: w for w in sc.workloads}
    in_prot = victim in wl and wl[victim].cgroup in prot
    rec["protection"] = {"protected": sorted(prot), "victim_in_protected": in_prot,
                         "swap_after": {n: (after.get(n) or {}).get("swap") for n in specs}}
    rec["reason"] = (rec.get("reason", "") + "; reclaim: " + ", ".join(facts)
                     + ("; the victim is in a protected cgroup: memory.min/low protect from reclaim only, "
                        "oom_badness() has no protection term and the model ignores it too" if in_prot else ""))


#: A reclaim that took less than this from the unprotected siblings' page cache shows nothing.
RECLAIM_SHOWN = 4 * MB
#: The protected cgroups' page cache must keep this share of what it held before the trigger.
PROTECTED_KEPT = 0.9


def _judge_reclaim(sc: Scenario, rec: dict[str, Any], before: dict[str, Any], after: dict[str, Any],
                   timed_out: bool) -> None:
    """No OOM under memory.min / memory.low: reclaim found enough in the unprotected siblings.  6.12
    mm/vmscan.c shrink_node_memcgs(): a memcg below its effective protection is skipped (memory.low:
    unless a pass reclaimed nothing, then memory.events ``low`` counts the breach), so the pages
    reclaim takes at the parent's limit are the unprotected siblings' clean page cache; when that
    covers the growth, try_charge_memcg() succeeds and nothing is killed.  Measured from memory.stat
    ``file`` per cgroup before the trigger and after the growth (what reclaim took from each), the
    protected cgroups' memory.current against their protection, and memory.events ``max`` (the
    parent's limit was reached: reclaim ran) and ``low`` (a breach of memory.low)."""
    specs = _specs(sc.cgroup)
    events = (rec.get("kill_count") or {}).get("events", {})
    prot = sorted(n for n, (sp, _) in specs.items() if n and (sp.memory_min or sp.memory_low))
    unprot = sorted(n for n in specs if n and n not in prot)

    def file(state: dict[str, Any], name: str) -> int:
        return (state.get(name) or {}).get("file") or 0

    taken = {n: file(before, n) - file(after, n) for n in specs if n}
    facts, why = [], []
    hits = events.get("", {}).get("max", 0)
    facts.append(f"the parent's memory.max was reached {hits} time(s) (memory.events max)" if hits
                 else "memory.events max of the parent did not grow")
    for n in unprot:
        facts.append(f"{n} (unprotected): page cache {_mib(file(before, n))} -> {_mib(file(after, n))} "
                     f"(reclaim took {_mib(taken[n])})")
    for n in prot:
        sp = specs[n][0]
        how = f"memory.min {_mib(sp.memory_min)}" if sp.memory_min else f"memory.low {_mib(sp.memory_low)}"
        cur_b, cur_a = (before.get(n) or {}).get("current"), (after.get(n) or {}).get("current")
        low = events.get(n, {}).get("low", 0)
        facts.append(f"{n} ({how}): page cache {_mib(file(before, n))} -> {_mib(file(after, n))}, memory.current "
                     f"{_mib(cur_b)} -> {_mib(cur_a)}, memory.events low +{low}")
        if file(after, n) < file(before, n) * PROTECTED_KEPT:
            why.append(f"{n} lost {_mib(taken[n])} of its page cache despite its protection")
        if low:
            why.append(f"{n}'s memory.low was breached {low} time(s)")
    taken_unprot = sum(taken[n] for n in unprot)
    if timed_out:
        why.append(f"the growers did not finish within the bound ({sc.timeout_s}s)")
    if taken_unprot < RECLAIM_SHOWN:
        why.append(f"reclaim took only {_mib(taken_unprot)} from the unprotected page cache: the scenario never "
                   "needed reclaim")
    rec["protection"] = {"protected": prot, "reclaimed_file": taken, "parent_max_events": hits,
                         "file_before": {n: file(before, n) for n in specs if n},
                         "file_after": {n: file(after, n) for n in specs if n}}
    ok = rec.get("outcome") == "no-oom" and not why
    rec["as_expected"] = bool(rec.get("as_expected")) and ok
    rec["reason"] = (rec.get("reason", "") + "; reclaim sufficed: " + "; ".join(facts)
                     + ("" if not why else "; but " + "; ".join(why)))


def _judge_zswap(rec: dict[str, Any], before: dict[str, Any]) -> None:
    """zswap really held the swapped pages before the trigger: its debugfs pool (stored_pages, every
    kernel) or the sandbox's memory.stat zswapped (5.19+).  Otherwise the pages went straight to the
    swap device and the scenario showed nothing about zswap."""
    pool = before.get("(zswap)") or {}
    stored = (pool.get("stored_pages") or 0) * 4096
    memcg = (before.get("") or {}).get("zswapped")
    rec["zswap"] = {"stored_bytes": stored, "pool_bytes": pool.get("pool_total_size"), "memcg_zswapped": memcg}
    if stored or memcg:
        rec["reason"] = (rec.get("reason", "") + f"; before the trigger zswap held {_mib(max(stored, memcg or 0))} of "
                         f"swapped pages in a {_mib(pool.get('pool_total_size'))} pool")
    else:
        rec["as_expected"] = False
        rec["reason"] = rec.get("reason", "") + "; but zswap held no page before the trigger (swap bypassed it)"


# -- the judge ----------------------------------------------------------------------------------------


def _over_high(sc: Scenario) -> set[str]:
    """Names of the cgroups at or below a memory.high."""
    specs = _specs(sc.cgroup)
    out = set()
    for name in specs:
        cur: str | None = name
        while cur is not None:
            spec, parent = specs[cur]
            if spec.memory_high is not None:
                out.add(name)
                break
            cur = parent
    return out


def _judge_throttled(sc: Scenario, rec: dict[str, Any], procs: dict[str, dict[str, Any]],
                     timed_out: bool) -> None:
    """memory.high: the kernel reclaims and throttles the charging task on its way back to user
    space (``mem_cgroup_handle_over_high()``, 6.12 ``mm/memcontrol.c``; a penalty of up to
    ``MEMCG_MAX_HIGH_DELAY_JIFFIES`` = 2 s per return), and never OOM-kills for it: memory.high
    has no OOM path (``try_charge_memcg`` only reclaims and schedules the penalty)."""
    events = (rec.get("kill_count") or {}).get("events", {})
    high = {cg or "(sandbox)": ev.get("high", 0) for cg, ev in events.items() if ev.get("high")}
    limited = _over_high(sc)
    slow = {n: p for n, p in procs.items() if p["grow_s"] is not None and p["cgroup"] in limited}
    free = {n: p for n, p in procs.items() if p["grow_s"] is not None and p["cgroup"] not in limited}
    facts = []
    if high:
        facts.append("memory.events high +" + ", ".join(f"{v} in {k}" for k, v in high.items()))
    slowdown = None
    if slow and free:
        s = max(p["grow_s"] for p in slow.values())
        f = max(p["grow_s"] for p in free.values())
        slowdown = round(s / f, 2) if f > 0 else None
        facts.append(f"the throttled grower(s) took {s:.2f}s, the unthrottled control {f:.2f}s"
                     + (f" (slowed ×{slowdown})" if slowdown else ""))
    rec["throttle"] = {"high_events": high, "slowdown": slowdown,
                       "grow_s": {n: p["grow_s"] for n, p in procs.items() if p["grow_s"] is not None}}
    if rec.get("kills"):
        return  # the plain verdict already says the kernel killed
    ok = bool(high) and not timed_out
    why = []
    if not high:
        why.append("memory.events high did not grow")
    if timed_out:
        why.append(f"the growers did not finish within the bound ({sc.timeout_s}s)")
    rec.update(outcome="throttled", verdict="no-oom", as_expected=ok if sc.expect_outcome == "throttled" else False,
               reason=("no OOM kill; " + "; ".join(facts)) + ("" if ok else "; but " + "; ".join(why)))


def _allocating_fate(sc: Scenario, procs: dict[str, dict[str, Any]], state: dict[str, Any]) -> dict[str, str]:
    out = {}
    for n, p in procs.items():
        if not p["grower"]:
            continue
        if p["grown"]:
            cg = state.get(p["cgroup"]) or state.get("") or {}
            # memory.peak is 5.19+; before it, memory.current after the growth says the same
            peak, mx = max(cg.get("peak") or 0, cg.get("current") or 0), cg.get("max")
            over = f" (memory.peak {_mib(peak)} > memory.max {_mib(mx)})" if peak and mx and peak > mx else ""
            out[n] = "completed its growth: the kernel forced the charge past the limit" + over
        elif p["alive"] or n in p.get("alive_at_bound", ()):
            out[n] = ("still looping when the bound expired: charge -> OOM -> no victim -> -ENOMEM -> "
                      "VM_FAULT_OOM -> the fault is retried; killed by the harness at the bound")
        else:
            rc = p["returncode"]
            sig = f"signal {-rc}" if rc is not None and rc < 0 else f"exit {rc}"
            out[n] = f"died ({sig}): the allocation failed"
    return out


def _judge_no_victim(sc: Scenario, rec: dict[str, Any], procs: dict[str, dict[str, Any]],
                     state: dict[str, Any]) -> None:
    """Every task in the OOM domain at -1000: 6.12 ``mm/oom_kill.c`` ``out_of_memory()`` finds no
    victim, prints ``dump_header()`` and "Out of memory and no killable processes..." (not under
    the ``oom_rs`` ratelimit: every invocation prints a full report) and returns false; a memcg
    OOM then fails the charge (6.12 ``try_charge_memcg``: ``nomem`` -> -ENOMEM, the fault is
    retried).  5.10 as released forced it instead (``mem_cgroup_oom() == OOM_FAILED`` ->
    ``goto force``); a4ebf1b6ca1e (5.16, in 5.10.80 stable) removed that."""
    docs = rec.get("events") or []
    fates = _allocating_fate(sc, procs, state)
    rec["allocating_task"] = fates
    reports = sum(1 for d in docs if d.get("verdict") == "no-victim")
    kills = rec.get("kills") or []
    predicted = [d.get("predicted_victim") for d in docs if d.get("predicted_victim")]
    msg = "Out of memory and no killable processes..."
    facts = [f"{reports} OOM report(s) ending {msg!r}" if reports else "no OOM report"]
    facts += [f"{n}: {f}" for n, f in fates.items()]
    facts += (rec.get("kill_count") or {}).get("notes", [])
    ok = bool(docs) and not kills and reports == len(docs) and not predicted
    why = []
    if kills:
        why.append("the kernel killed " + ", ".join(str(k.get("workload") or k.get("name")) for k in kills))
    if predicted:
        why.append("the model predicts a victim: " + ", ".join(str(p.get("name")) for p in predicted[:3]))
    if not docs:
        why.append("no OOM happened")
    rec.update(outcome="no-victim" if docs and not kills else rec.get("outcome", "error"),
               verdict="no-victim" if ok else rec.get("verdict", "error"),
               as_expected=ok and sc.expect_outcome == "no-victim",
               reason="; ".join(facts) + ("; the model agrees: no eligible task" if ok else "; but " + "; ".join(why)))
    rec.pop("second_victims", None)
    rec.pop("second_kill_cause", None)


def _judge_unfreed(sc: Scenario, rec: dict[str, Any], before: dict[str, Any], after: dict[str, Any]) -> None:
    """A tmpfs file is shmem charged to the cgroup of the task that wrote it, and owned by the
    file, not by any process: it is in nobody's RSS (so not in any badness) and no kill frees it
    (kubernetes#128339: a pod's memory-backed emptyDir keeps it at its limit after the kill)."""
    b, a = before.get("", {}), after.get("", {})
    tmpfs = sum(w.size for w in sc.workloads if w.kind == "tmpfs")
    victim_kb = sum(k.get("anon_rss_kb", 0) + k.get("file_rss_kb", 0) + k.get("shmem_rss_kb", 0)
                    for k in rec.get("kills", []))
    cur, shm, mx = a.get("current"), a.get("shmem"), a.get("max")
    rec["unfreed"] = {
        "tmpfs_written": tmpfs,
        "current_before_trigger": b.get("current"),
        "current_after_kill": cur,
        "shmem_after_kill": shm,
        "memory_max": mx,
        "victims_rss_kb": victim_kb,
        "why": "tmpfs pages belong to the file, not to a process: not in any RSS or badness, and no kill "
               "frees them (kubernetes#128339)",
    }
    if not rec.get("kills") or cur is None:
        return
    share = f", {cur * 100 // mx}% of memory.max" if mx else ""
    rec["reason"] = (rec.get("reason", "") + f"; the kill freed ~{victim_kb // 1024} MiB (the victims' RSS) and left "
                     f"{_mib(cur)} charged{share}, of which {_mib(shm)} is the tmpfs file no kill can free "
                     "(kubernetes#128339)")
    if shm is None or shm < tmpfs * 9 // 10:
        rec["as_expected"] = False
        rec["reason"] += f"; but only {_mib(shm)} of the {_mib(tmpfs)} tmpfs file stayed charged"


def judge(sc: Scenario, rec: dict[str, Any], *, before: dict[str, Any], after: dict[str, Any],
          cgs: dict[str, Any], procs: dict[str, dict[str, Any]], timed_out: bool) -> None:
    """Complete the engine's verdict *rec* in place (see the module docstring).  *procs*: per
    workload ``grower, grown, grow_s, alive, returncode, cgroup``; *before*/*after*:
    :func:`memory_state` before the trigger and after the kernel acted."""
    rec["memory_state"] = {"before": before, "after": after}
    if rec.get("verdict") == "error" and sc.expect_outcome != "no-victim":
        return
    if sc.expect_outcome == "throttled" or any(s.memory_high is not None for s, _ in _specs(sc.cgroup).values()):
        _judge_throttled(sc, rec, procs, timed_out)
    if sc.expect_outcome == "no-victim":
        _judge_no_victim(sc, rec, procs, after)
    if any(w.kind == "tmpfs" for w in sc.workloads):
        _judge_unfreed(sc, rec, before, after)
    protected = any(s.memory_min or s.memory_low for s, _ in _specs(sc.cgroup).values())
    if rec.get("kills") and protected:
        _judge_protection(sc, rec, after)
    if not rec.get("kills") and protected and sc.expect_outcome == "no-oom":
        _judge_reclaim(sc, rec, before, after, timed_out)
    if "zswap" in sc.requires and rec.get("kills"):
        _judge_zswap(rec, before)
    if rec.get("kills") and any(s.oom_group for s, _ in _specs(sc.cgroup).values()):
        _judge_group(sc, rec, cgs)
