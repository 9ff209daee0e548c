"""What every task looked like at a known moment just before the trigger.

Reads ``/proc/PID/{oom_score,oom_score_adj,status}`` directly (stdlib only: the guest runs this
too); psutil adds the command line and uss where it is installed.  Values are kept in the units
the model uses: pages for memory counters, bytes for page tables.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from harness.core.model import Task

PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


@dataclass
class TaskSnapshot:
    pid: int
    name: str
    workload: str | None
    oom_score: int | None
    oom_score_adj: int | None
    rss_anon: int  # pages
    rss_file: int
    rss_shmem: int
    swapents: int
    pgtables_bytes: int
    threads: int
    uid: int | None
    has_mm: bool = True  # kernel threads (and zombies) have no mm
    #: HugetlbPages (kB): recorded, never counted -- hugetlb pages are in no RSS counter, so not in
    #: oom_badness() either (6.12 fs/proc/task_mmu.c task_mem() -> hugetlb_report_usage(): a line of
    #: its own, from mm->hugetlb_usage)
    hugetlb_kb: int = 0

    @property
    def rss(self) -> int:
        return self.rss_anon + self.rss_file + self.rss_shmem

    def model_task(self, *, unkillable: bool = False) -> Task:
        """What the model needs of this task.  CAP_SYS_ADMIN is not read (the root bonus is gone
        since 4.17; the live kernels this harness runs on are newer)."""
        return Task(pid=self.pid, name=self.name, rss=self.rss, swapents=self.swapents,
                    pgtables_bytes=self.pgtables_bytes, oom_score_adj=self.oom_score_adj or 0, uid=self.uid,
                    has_mm=self.has_mm, unkillable=unkillable)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rss"] = self.rss
        return d


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def snapshot_pid(pid: int, workload: str | None = None) -> TaskSnapshot | None:
    status = _read(f"/proc/{pid}/status")
    if status is None:
        return None
    kv: dict[str, str] = {}
    for line in status.splitlines():
        k, _, v = line.partition(":")
        kv[k] = v.strip()

    def kb(key: str) -> int:
        v = kv.get(key, "0 kB").split()
        return int(v[0]) if v and v[0].isdigit() else 0

    score = _read(f"/proc/{pid}/oom_score")
    adj = _read(f"/proc/{pid}/oom_score_adj")
    uid = kv.get("Uid", "").split()
    return TaskSnapshot(
        pid=pid,
        name=kv.get("Name", "?"),
        workload=workload,
        oom_score=int(score) if score and score.strip().isdigit() else None,
        oom_score_adj=int(adj) if adj and adj.strip().lstrip("-").isdigit() else None,
        rss_anon=kb("RssAnon") // PAGE_KB,
        rss_file=kb("RssFile") // PAGE_KB,
        rss_shmem=kb("RssShmem") // PAGE_KB,
        swapents=kb("VmSwap") // PAGE_KB,
        pgtables_bytes=kb("VmPTE") * 1024,
        threads=int(kv.get("Threads", "1")),
        uid=int(uid[0]) if uid else None,
        has_mm="VmSize" in kv and kv.get("Kthread", "0") != "1",
        hugetlb_kb=kb("HugetlbPages"),
    )


def snapshot(pids: Mapping[int, str | None]) -> list[TaskSnapshot]:
    out = []
    for pid, wl in sorted(pids.items()):
        s = snapshot_pid(pid, wl)
        if s is not None:
            out.append(s)
    return out


def meminfo() -> dict[str, int]:
    """``/proc/meminfo`` in kB (MemTotal is totalram_pages, SwapTotal is total_swap_pages)."""
    out: dict[str, int] = {}
    for line in (_read("/proc/meminfo") or "").splitlines():
        k, _, v = line.partition(":")
        parts = v.split()
        if parts and parts[0].isdigit():
            out[k] = int(parts[0])
    return out
