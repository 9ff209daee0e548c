"""What one OOM-killer report says: plain data, filled by :mod:`harness.core.parser`.

Every field mirrors something the kernel printed; ``None`` means "not printed" (older kernel, a
config option that removes it, or a truncated report), never "zero".  Units follow the kernel's
own: the task table is in pages (``pgtables_bytes`` in bytes), the memcg and Killed lines in kB.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(slots=True)
class Trigger:
    """``<comm> invoked oom-killer: gfp_mask=..., order=..., oom_score_adj=...``"""

    comm: str | None  # None: the pre-2.6.19 header "oom-killer: gfp_mask=..., order=..." names nobody
    gfp_mask: int | None = None
    gfp_flags: str | None = None
    order: int | None = None
    oom_score_adj: int | None = None
    oom_adj: int | None = None  # 2.6.36-3.6 only (2.6.19-2.6.35: the header's "oomkilladj=")
    nodemask: str | None = None  # 4.9-4.18 header only


@dataclass(slots=True)
class TaskRow:
    """One row of the task table (``dump_tasks``), in pages except ``pgtables_bytes``."""

    pid: int
    uid: int
    tgid: int
    total_vm: int
    rss: int
    oom_score_adj: int
    name: str
    rss_anon: int | None = None
    rss_file: int | None = None
    rss_shmem: int | None = None
    nr_ptes: int | None = None
    nr_pmds: int | None = None
    pgtables_bytes: int | None = None
    swapents: int | None = None
    cpu: int | None = None  # 2.6.36-3.5 layout
    oom_adj: int | None = None  # 2.6.36-3.5 layout


@dataclass(slots=True)
class KillRecord:
    """``[<msg>: ]Killed process N (comm) total-vm:...kB, anon-rss:...`` (one per killed process)."""

    pid: int
    name: str
    message: str | None = None  # "Out of memory", "Memory cgroup out of memory", ...; None before 5.1
    total_vm_kb: int | None = None
    anon_rss_kb: int | None = None
    file_rss_kb: int | None = None
    shmem_rss_kb: int | None = None
    uid: int | None = None
    pgtables_kb: int | None = None
    oom_score_adj: int | None = None
    group: bool = False  # killed because of memory.oom.group, not selected
    shared_mm: bool = False  # "Kill process N (x) sharing same memory" (2.6.37-4.x)
    ts: float | None = None


@dataclass(slots=True)
class MemcgInfo:
    """The memcg block of a memcg OOM report."""

    usage_kb: int | None = None
    limit_kb: int | None = None
    failcnt: int | None = None
    memsw_usage_kb: int | None = None  # cgroup v1 "memory+swap:"
    memsw_limit_kb: int | None = None
    swap_usage_kb: int | None = None  # cgroup v2 "swap:" (5.3+)
    swap_limit_kb: int | None = None
    kmem_usage_kb: int | None = None
    task_in: str | None = None  # "Task in A killed as a result of limit of B" (<=4.20)
    limit_of: str | None = None
    stats_path: str | None = None  # "Memory cgroup stats for <path>:"
    stats: dict[str, int] = field(default_factory=dict)
    min_protection_kb: int | None = None  # 6.19+
    low_protection_kb: int | None = None


@dataclass(slots=True)
class MemInfo:
    """Totals from the global ``Mem-Info:`` block (``show_mem``)."""

    pages_ram: int | None = None
    pages_reserved: int | None = None
    pages_highmem: int | None = None
    pages_cma_reserved: int | None = None
    total_swap_kb: int | None = None
    free_swap_kb: int | None = None
    page_size_kb: int | None = None  # smallest buddy block, e.g. "Node 0 DMA: 1*4kB"
    zone_present_kb: dict[str, int] = field(default_factory=dict)  # "0/DMA32" -> kB
    zone_managed_kb: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class Summary:
    """``oom-kill:constraint=...,nodemask=...,cpuset=...,mems_allowed=...,oom_memcg=...`` (5.0+)."""

    constraint: str | None = None
    nodemask: str | None = None
    cpuset: str | None = None
    mems_allowed: str | None = None
    oom_memcg: str | None = None
    global_oom: bool = False
    task_memcg: str | None = None
    task: str | None = None
    pid: int | None = None
    uid: int | None = None


@dataclass(slots=True)
class SelectLine:
    """``<msg>: Kill process N (comm) score S or sacrifice child`` (<= 5.0)."""

    pid: int
    name: str
    score: int
    message: str | None = None


@dataclass(slots=True)
class ReaperLine:
    """``oom_reaper: reaped process N (comm), now anon-rss:...`` or ``unable to reap``."""

    pid: int
    name: str
    reaped: bool
    anon_rss_kb: int | None = None
    file_rss_kb: int | None = None
    shmem_rss_kb: int | None = None


@dataclass(slots=True)
class Repairs:
    """What had to be undone to read the report (a pasted log: wrapped, quoted, interleaved).

    Filled from the repair stage (:mod:`harness.core.repair`) and the parser, so a user can judge
    how much of the verdict rests on reconstruction.  All zero/empty for a log as the kernel wrote it.
    """

    lines_rejoined: int = 0  # continuation pieces glued back onto the line they were cut from
    foreign_lines_skipped: int = 0  # lines inside the report that no report grammar knows
    prefixes_stripped: dict[str, int] = field(default_factory=dict)  # quote, indent, html, cr, rsyslog
    ambiguous_joins: list[str] = field(default_factory=list)  # joins the grammar could not decide
    unrecognised: list[str] = field(default_factory=list)  # OOM-looking lines of a non-standard kernel

    def any(self) -> bool:
        return bool(
            self.lines_rejoined
            or self.foreign_lines_skipped
            or self.prefixes_stripped
            or self.ambiguous_joins
            or self.unrecognised
        )


@dataclass(slots=True)
class OomEvent:
    """One OOM-killer invocation as the kernel reported it."""

    index: int = 0
    first_line: int = 0
    last_line: int = 0
    ts: float | None = None
    caller: str | None = None
    trigger: Trigger | None = None
    kernel_version: str | None = None  # from dump_stack "Not tainted 6.1.0-..." or "Linux version"
    current_pid: int | None = None  # dump_stack "PID: N Comm: x" (the allocating task)
    cpuset: str | None = None  # pre-5.0 cpuset line
    mems_allowed: str | None = None
    summary: Summary | None = None
    memcg: MemcgInfo | None = None
    meminfo: MemInfo | None = None
    table_layout: str | None = None  # name of the column layout seen (see parser.TABLE_LAYOUTS)
    table: list[TaskRow] = field(default_factory=list)
    table_complete: bool = False
    select: SelectLine | None = None
    kills: list[KillRecord] = field(default_factory=list)
    group_memcg: str | None = None  # "Tasks in <memcg> are going to be killed due to memory.oom.group"
    reaper: list[ReaperLine] = field(default_factory=list)
    panic: str | None = None  # panic message when panic_on_oom (or no killable task) ended it
    no_killable: bool = False  # "Out of memory and no killable processes..."
    allocating_task_kill: bool = False  # "(oom_kill_allocating_task)"
    victim_exiting: bool = False  # "OOM victim N (x) is already exiting. Skip killing the task"
    features: list[str] = field(default_factory=list)  # format fingerprints, see eras.FINGERPRINTS
    complete: bool = False
    missing: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # raw messages of the report, for the record
    host: str | None = None  # syslog/journal host name, when the log shows one
    repairs: Repairs = field(default_factory=Repairs)

    @property
    def kind(self) -> str:
        """global | memcg | cpuset | mempolicy | unknown, from the summary or the report's shape."""
        if self.summary and self.summary.constraint:
            c = self.summary.constraint
            if c == "CONSTRAINT_MEMCG" or (c == "CONSTRAINT_NONE" and self.summary.oom_memcg):
                return "memcg"  # 5.0-5.2 print CONSTRAINT_NONE for memcg OOMs (fixed by 432b1de0de02)
            return {
                "CONSTRAINT_NONE": "global",
                "CONSTRAINT_CPUSET": "cpuset",
                "CONSTRAINT_MEMORY_POLICY": "mempolicy",
            }.get(c, "unknown")
        if self.memcg is not None and (self.memcg.limit_kb is not None or self.memcg.task_in):
            return "memcg"
        msgs = [k.message for k in self.kills if k.message] + ([self.select.message] if self.select else [])
        if any(m and m.startswith("Memory cgroup") for m in msgs):
            return "memcg"
        if self.meminfo is not None or any(m and m.startswith("Out of memory") for m in msgs):
            return "global"
        return "unknown"

    @property
    def first_kill(self) -> KillRecord | None:
        for k in self.kills:
            if not k.group and not k.shared_mm:
                return k
        return self.kills[0] if self.kills else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["kind"] = self.kind
        d.pop("lines", None)
        return d
