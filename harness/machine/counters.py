"""Kill counting: the kernel's own counters before and after a scenario, against the kill lines.

Every OOM kill the kernel makes is counted in three places, all incremented in
``__oom_kill_process()`` for each process it kills, group members included (6.12
``mm/oom_kill.c``: ``count_vm_event(OOM_KILL); memcg_memory_event_mm(mm, MEMCG_OOM_KILL);``):

* ``/proc/vmstat`` ``oom_kill`` (4.13+): machine-wide, so on a shared host other OOMs count too;
* cgroup v2 ``memory.events`` ``oom_kill`` (hierarchical: a cgroup counts its subtree), plus
  ``oom`` (every OOM invocation, ``mem_cgroup_oom()``: also those that killed nobody) and, from
  5.16, ``oom_group_kill`` (one per memory.oom.group kill, ``oom_kill_process()``);
* cgroup v1 ``memory.oom_control`` ``oom_kill`` (4.13+; the victim's own memcg only).

The log shows one ``Killed process`` line per kill (``pr_err``, not ratelimited: the ratelimit
``oom_rs`` only suppresses the report before it). The two counts are compared and a difference
is reported as it is -- a kill with no line (a kmsg gap, a line lost), a line with no count --
never reconciled.  Stdlib only: this runs in the guest too.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["read_counters", "kill_count", "vmstat_oom_kill"]

_V1_KEYS = ("oom_kill", "under_oom", "oom_kill_disable")


def _kv(path: str) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        with open(path) as f:
            for line in f:
                k, _, v = line.strip().partition(" ")
                if v.strip().lstrip("-").isdigit():
                    out[k] = int(v)
    except OSError:
        pass
    return out


def vmstat_oom_kill() -> int | None:
    return _kv("/proc/vmstat").get("oom_kill")


def read_counters(root_path: str, cgroup_version: int) -> dict[str, Any]:
    """``{"vmstat_oom_kill": n, "cgroups": {"": {...}, "child": {...}}}`` for the sandbox at
    *root_path* and every cgroup below it (v2 ``memory.events``; v1 ``memory.oom_control``)."""
    cgroups: dict[str, dict[str, int]] = {}
    for d, _, _ in os.walk(root_path):
        rel = os.path.relpath(d, root_path)
        rel = "" if rel == "." else rel
        if cgroup_version == 2:
            vals = _kv(os.path.join(d, "memory.events"))
        else:
            vals = {k: v for k, v in _kv(os.path.join(d, "memory.oom_control")).items() if k in _V1_KEYS}
        if vals:
            cgroups[rel] = vals
    return {"vmstat_oom_kill": vmstat_oom_kill(), "cgroups": cgroups}


def _delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for cg, vals in after.get("cgroups", {}).items():
        b = before.get("cgroups", {}).get(cg, {})
        out[cg] = {k: v - b.get(k, 0) for k, v in vals.items() if k != "oom_kill_disable"}
    return out


def kill_count(before: dict[str, Any], after: dict[str, Any], log_kills: int, cgroup_version: int,
               machine_private: bool, log_reports: int = 0, kmsg_gaps: int = 0) -> dict[str, Any]:
    """Compare the counters' growth with the number of ``Killed process`` lines of this scenario.

    *machine_private*: nothing else runs OOMs on this machine (a throw-away VM), so the
    machine-wide vmstat count must agree too; on a host it is shown, not compared.
    """
    deltas = _delta(before, after)
    root = deltas.get("", {})
    if cgroup_version == 2:
        memcg_kills = root.get("oom_kill")
    else:
        memcg_kills = sum(v.get("oom_kill", 0) for v in deltas.values()) if deltas else None
    vb, va = before.get("vmstat_oom_kill"), after.get("vmstat_oom_kill")
    vm_kills = va - vb if va is not None and vb is not None else None
    out: dict[str, Any] = {
        "log": log_kills,
        "memcg_oom_kill": memcg_kills,
        "memcg_oom": root.get("oom") if cgroup_version == 2 else None,
        "memcg_oom_group_kill": root.get("oom_group_kill") if cgroup_version == 2 else None,
        "vmstat_oom_kill": vm_kills,
        "vmstat_compared": machine_private,
        "events": {cg: {k: v for k, v in d.items() if v} for cg, d in deltas.items()},
    }
    diffs = []
    if memcg_kills is not None and memcg_kills != log_kills:
        diffs.append(f"the cgroup counted {memcg_kills} kill(s), the log shows {log_kills} Killed line(s)")
    if machine_private and vm_kills is not None and vm_kills != log_kills:
        diffs.append(f"/proc/vmstat oom_kill grew by {vm_kills}, the log shows {log_kills} Killed line(s)")
    notes = []
    oom = out["memcg_oom"]
    if oom is not None and oom != log_reports:
        # memory.events "oom" counts every mem_cgroup_oom() call; one that finds the previous victim
        # still exiting (oom_evaluate_task: abort) or the margin back (try_charge) prints nothing.
        notes.append(f"the cgroup counted {oom} OOM invocation(s), the log holds {log_reports} report(s)")
    if kmsg_gaps:
        notes.append(f"{kmsg_gaps} gap(s) in the kernel log: the ring buffer overwrote records before they were "
                     "read, so the log's counts are short")
    out.update(log_reports=log_reports, kmsg_gaps=kmsg_gaps, agree=not diffs, differences=diffs, notes=notes)
    return out
