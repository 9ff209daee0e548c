"""``oom-harness predict``: who would the OOM killer take now, and why - provoking nothing.

Ranks the processes of one memory cgroup (a memcg OOM there) or of the whole system (a global
OOM) with the model of the running kernel's era, next to the kernel's own
``/proc/PID/oom_score``.  psutil enumerates the processes; the counters come from ``/proc`` as
the kernel exposes them, so the model sees what ``oom_badness()`` would.
"""

from __future__ import annotations

import os
import platform
from typing import Any

from harness.core.eras import era_by_name, era_for_version, parse_version
from harness.core.model import oom_score, select_bad_process, totalpages_memcg
from harness.errors import HarnessError
from harness.machine.sandbox import detect_layout, read_int
from harness.machine.snapshot import PAGE_KB, meminfo, snapshot_pid


def _pids_in(cgdir: str) -> list[int]:
    pids: list[int] = []
    for d, _, files in os.walk(cgdir):
        if "cgroup.procs" in files:
            try:
                with open(os.path.join(d, "cgroup.procs")) as f:
                    pids.extend(int(x) for x in f.read().split())
            except OSError:
                pass
    return pids



def predict(cgroup: str | None = None, era: str | None = None) -> dict[str, Any]:
    mi = meminfo()
    total_swap = mi.get("SwapTotal", 0) // PAGE_KB
    global_tp = mi.get("MemTotal", 0) // PAGE_KB + total_swap
    ver = platform.release()
    e = era_by_name(era) if era else era_for_version(parse_version(ver) or (6, 1))
    if cgroup:
        layout = detect_layout()
        cgdir = os.path.join(layout.mount, cgroup.strip("/"))
        if not os.path.isdir(cgdir):
            raise HarnessError(f"no memory cgroup {cgroup} under {layout.mount}")
        pids = _pids_in(cgdir)
        if layout.version == 2:
            mem = read_int(os.path.join(cgdir, "memory.max"))
            smax = read_int(os.path.join(cgdir, "memory.swap.max"))
            memsw = None
        else:
            mem = read_int(os.path.join(cgdir, "memory.limit_in_bytes"))
            memsw = read_int(os.path.join(cgdir, "memory.memsw.limit_in_bytes"))
            smax = None
        unlimited = mem is None or mem >= (1 << 60)
        if unlimited:
            tp, note = global_tp, "the cgroup has no limit: a global OOM would decide"
        else:
            assert mem is not None  # not unlimited
            to_pages = PAGE_KB * 1024
            tp = totalpages_memcg(
                e,
                limit=mem // to_pages,
                total_swap_pages=total_swap,
                memsw_limit=memsw // to_pages if memsw is not None and memsw < (1 << 60) else None,
                swap_max=smax // to_pages if smax is not None else None,
                cgroup_v2=layout.version == 2,
            )
            note = f"memcg limit {mem >> 10} kB (+ swap term)"
        scope = f"memory cgroup {cgroup}"
    else:
        import psutil

        pids = psutil.pids()
        tp, note, scope = global_tp, "totalram + total swap (global OOM)", "whole system"
    snaps = [s for s in (snapshot_pid(p) for p in sorted(pids)) if s is not None]
    tasks = [s.model_task(unkillable=s.pid == 1) for s in snaps]
    sel = select_bad_process(tasks, tp, e, page_size=PAGE_KB * 1024)
    by_pid = {s.pid: s for s in snaps}
    cands = []
    disagree = 0
    for c in sel.ranked:
        t = c.task
        model_score = oom_score(t, global_tp, e, PAGE_KB * 1024)
        k = by_pid[t.pid].oom_score
        if k is not None and abs(k - model_score) > 1:
            disagree += 1
        cands.append(
            {
                "rank": c.rank,
                "pid": t.pid,
                "name": t.name,
                "points": c.points,
                "eligible": c.points is not None,
                "rss": t.rss,
                "swapents": t.swapents,
                "oom_score_adj": t.oom_score_adj,
                "oom_score_model": model_score,
                "oom_score_kernel": k,
            }
        )
    nxt = sel.chosen
    why = ""
    if nxt is not None:
        why = f"highest points ({sel.points}) among {sum(1 for c in cands if c['eligible'])} eligible"
        if sel.tied_with:
            why += f", tied with {len(sel.tied_with)}"
    return {
        "scope": scope,
        "kernel": ver,
        "era": e.label,
        "totalpages": tp,
        "totalpages_note": note,
        "tasks": len(tasks),
        "candidates": cands,
        "next_victim": nxt and {"pid": nxt.pid, "name": nxt.name},
        "why": why,
        "disagreements": disagree,
        "scan_order_note": "process order approximated by pid (the kernel scans in fork order)",
    }
