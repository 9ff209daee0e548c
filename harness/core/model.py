"""Reference model of the kernel's OOM victim selection: pure functions, no I/O.

Each function follows ``mm/oom_kill.c`` (and ``mm/memcontrol.c``, ``fs/proc/base.c``) of the
era it is given; :mod:`harness.core.eras` names the boundaries.  Values are kernel units: pages,
except ``pgtables_bytes``.  Integer arithmetic mirrors C: unsigned floor division where the
kernel divides unsigned values, truncation toward zero where it divides signed ``long``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .eras import Era

LONG_MIN = -(1 << 63)
LONG_MAX = (1 << 63) - 1
OOM_SCORE_ADJ_MIN = -1000
OOM_SCORE_ADJ_MAX = 1000

__all__ = [
    "Task",
    "Candidate",
    "Selection",
    "oom_badness",
    "select_bad_process",
    "oom_score",
    "totalpages_global",
    "totalpages_memcg",
    "totalpages_nodes",
    "sacrifice_child",
    "LONG_MIN",
]


@dataclass(frozen=True, slots=True)
class Task:
    """What the kernel looks at when it scores one task (one process, or one thread pre-5.3)."""

    pid: int
    name: str
    rss: int  # get_mm_rss(): anon + file (+ shmem from 4.5), pages
    swapents: int = 0
    nr_ptes: int = 0  # PTE page-table pages (2.6.39-4.14)
    nr_pmds: int = 0  # PMD page-table pages (4.0-4.14)
    pgtables_bytes: int = 0  # mm_pgtables_bytes() (4.15+)
    oom_score_adj: int = 0
    tgid: int | None = None
    uid: int | None = None
    cap_sys_admin: bool = False  # root bonus until 4.16; capabilities, not uid
    unkillable: bool = False  # global init or kernel thread (oom_unkillable_task)
    has_mm: bool = True  # find_lock_task_mm() found a thread with an mm
    mm_oom_skip: bool = False  # MMF_OOM_SKIP / MMF_OOM_REAPED: already reaped (4.7+)
    in_vfork: bool = False  # vfork child sharing its parent's mm (4.8+)
    oom_victim: bool = False  # tsk_is_oom_victim(): an earlier victim still exiting
    oom_origin: bool = False  # swapoff / KSM unmerge in progress (oom_task_origin)
    ppid: int | None = None

    @property
    def is_leader(self) -> bool:
        return self.tgid is None or self.tgid == self.pid


def _pagetable_pages(t: Task, era: Era, page_size: int) -> int:
    if era.counts_pgtables_bytes:
        return t.pgtables_bytes // page_size
    pt = t.nr_ptes if era.counts_nr_ptes else 0
    if era.counts_nr_pmds:
        pt += t.nr_pmds
    return pt


def oom_badness(t: Task, totalpages: int, era: Era, page_size: int = 4096) -> int | None:
    """``oom_badness()`` of *era*; ``None`` where the kernel returns 0 (<5.9) or LONG_MIN (5.9+).

    * 2.6.36-3.4: ``points = (rss + swap [+ nr_ptes 2.6.39+]) * 1000 / totalpages``, CAP_SYS_ADMIN
      -30, + oom_score_adj, clamped to [1, 1000].
    * 3.5-5.8: pages; ``adj * (totalpages / 1000)`` added; root: adj-30 (<=3.13) or -3% of the
      points (3.14-4.16); eligible results below 1 become 1 (``unsigned long``).
    * 5.9+: the same sum as a signed ``long``: no clamp, may be negative.
    """
    if t.unkillable or not t.has_mm:
        return None
    adj = t.oom_score_adj
    if adj == OOM_SCORE_ADJ_MIN:
        return None
    if era.at_least(4, 7) and t.mm_oom_skip:
        return None
    if era.at_least(4, 8) and t.in_vfork:
        return None
    if t.oom_origin:
        return 1000 if era.thousand_scale else LONG_MAX
    if era.thousand_scale:
        base = t.rss + t.swapents + _pagetable_pages(t, era, page_size)
        pts = base * 1000 // max(totalpages, 1)
        if t.cap_sys_admin:
            pts -= 30
        pts += adj
        return 1 if pts <= 0 else min(pts, 1000)
    points = t.rss + t.swapents + _pagetable_pages(t, era, page_size)
    bonus = era.root_bonus
    if t.cap_sys_admin and bonus == "minus30":
        adj -= 30
    elif t.cap_sys_admin and bonus == "three_percent":
        points -= points * 3 // 100
    points += adj * (totalpages // 1000)
    if era.signed:
        return points
    return points if points > 0 else 1


@dataclass(slots=True)
class Candidate:
    task: Task
    points: int | None  # None: ineligible
    scan_index: int
    rank: int = 0


@dataclass(slots=True)
class Selection:
    """Result of :func:`select_bad_process`."""

    chosen: Task | None
    points: int | None
    ranked: list[Candidate] = field(default_factory=list)  # eligible first, in kernel preference order
    aborted_by: Task | None = None  # an earlier victim still exiting: the kernel kills nobody
    tied_with: list[Task] = field(default_factory=list)  # other tasks with the chosen points


def _better(era: Era, p: int, best: int | None, chosen: Task | None) -> bool:
    """Does a task with points *p* replace the current choice (points *best*)?"""
    if chosen is None or best is None:
        return True
    if era.ties_to_last:  # 5.3+: `if (points == LONG_MIN || points < oc->chosen_points) continue`
        return p >= best
    if era.leader_preference:  # 3.14-5.2: equal points replace a non-leader choice only
        return p > best or (p == best and not chosen.is_leader)
    return p > best  # <=3.13: strictly greater, first scanned wins


def select_bad_process(
    tasks: Sequence[Task], totalpages: int, era: Era, *, page_size: int = 4096, sysrq: bool = False
) -> Selection:
    """``select_bad_process()`` over *tasks* given in the kernel's scan order.

    Scan order is fork order for global OOMs (``for_each_process``, which is also the order of
    the report's task table) and cgroup-iterator order for memcg OOMs (the table order from 5.3).
    """
    chosen: Task | None = None
    best: int | None = None
    cands: list[Candidate] = []
    aborted: Task | None = None
    for i, t in enumerate(tasks):
        if t.unkillable:
            continue
        if t.oom_victim and not sysrq:
            if era.at_least(4, 9) and t.mm_oom_skip:
                cands.append(Candidate(t, None, i))
                continue
            aborted = aborted or t
        p = oom_badness(t, totalpages, era, page_size)
        cands.append(Candidate(t, p, i))
        if p is None or aborted is not None:
            continue
        if _better(era, p, best, chosen):
            chosen, best = t, p
    eligible = [c for c in cands if c.points is not None]
    # Preference order: points descending; among equals the kernel's tie rule decides.
    if era.ties_to_last:
        eligible.sort(key=lambda c: (-c.points, -c.scan_index))  # type: ignore[operator]
    else:
        eligible.sort(key=lambda c: (-c.points, c.scan_index))  # type: ignore[operator]
    if chosen is not None and eligible and eligible[0].task is not chosen:
        # leader preference can pick a later equal task; keep the chosen one first
        eligible.sort(key=lambda c: (c.task is not chosen, -c.points))  # type: ignore[operator]
    ranked = eligible + [c for c in cands if c.points is None]
    for r, c in enumerate(ranked, 1):
        c.rank = r if c.points is not None else 0
    tied = [c.task for c in eligible if c.task is not chosen and c.points == best]
    if aborted is not None:
        return Selection(None, None, ranked, aborted, [])
    return Selection(chosen, best, ranked, None, tied)


def sacrifice_child(selected: Task, children: Sequence[Task], totalpages: int, era: Era, page_size: int = 4096) -> Task:
    """<=5.0 ``oom_kill_process()``: the worst child not sharing the mm dies instead.

    ``victim_points`` starts at 0, so any eligible child beats the parent (the fix dc1b83ab08f1
    was reverted the same day); among equal children the first in fork order wins.
    *children* are the children of every thread of *selected*, in list order, excluding those
    sharing its mm.
    """
    if not era.sacrifice_child:
        return selected
    victim, victim_points = selected, 0
    for c in children:
        p = oom_badness(c, totalpages, era, page_size)
        if p is not None and p > victim_points:
            victim, victim_points = c, p
    return victim


def _cdiv(a: int, b: int) -> int:
    """C integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def oom_score(t: Task, totalpages: int, era: Era, page_size: int = 4096) -> int:
    """``/proc/PID/oom_score`` as *era* computes it (always with the global totalpages)."""
    b = oom_badness(t, totalpages, era, page_size)
    if era.oom_score_formula == "badness":
        return b or 0
    if era.oom_score_formula == "points*1000/totalpages":
        return (b or 0) * 1000 // max(totalpages, 1)
    if b is None:
        return 0
    return _cdiv((1000 + _cdiv(b * 1000, totalpages)) * 2, 3)


def totalpages_global(totalram_pages: int, total_swap_pages: int) -> int:
    """Global OOM (``constrained_alloc`` default): managed RAM pages + configured swap pages."""
    return totalram_pages + total_swap_pages


def totalpages_nodes(node_present_pages: Sequence[int], total_swap_pages: int) -> int:
    """Cpuset / mempolicy OOM: swap + present pages of the allowed nodes (spanned before ~5.4)."""
    return total_swap_pages + sum(node_present_pages)


def totalpages_memcg(
    era: Era,
    *,
    limit: int,
    total_swap_pages: int,
    swappiness: int = 60,
    memsw_limit: int | None = None,
    swap_max: int | None = None,
    cgroup_v2: bool = False,
    page_size: int = 4096,
) -> int:
    """``mem_cgroup_get_max()`` (``mem_cgroup_get_limit`` before 4.19), in pages.

    ``None`` limits are unlimited.  2.6.38-4.8: min(mem + swap, memsw), swap only with a non-zero
    swappiness from 3.7; 4.9-5.9: min(mem + min(swap.max, swap), memsw); 5.10+: v1 adds
    min(memsw - mem, swap), v2 adds min(swap.max, swap), both only with a non-zero swappiness.
    2.6.36-2.6.37 add the swap *pages* to the limit in *bytes* (see
    :attr:`~harness.core.eras.Era.memcg_limit_adds_swap_pages_to_bytes`), so swap adds ``swap // page_size``.
    A zero result becomes 1.
    """
    inf = 1 << 62
    mem = limit
    memsw = inf if memsw_limit is None else memsw_limit
    smax = inf if swap_max is None else swap_max
    if era.memcg_limit_adds_swap_pages_to_bytes:
        # v2.6.36 mem_cgroup_get_limit(): min(limit_bytes + total_swap_pages, memsw_bytes) >> PAGE_SHIFT
        out = min(mem + total_swap_pages // page_size, memsw)
    elif era.start < (3, 7):
        out = min(mem + total_swap_pages, memsw)
    elif swappiness == 0:
        out = mem
    elif era.start < (4, 9):
        out = min(mem + total_swap_pages, memsw)
    elif era.start < (5, 10):
        out = min(mem + min(smax, total_swap_pages), memsw)
    elif cgroup_v2:
        out = mem + min(smax, total_swap_pages)
    else:
        out = mem + min(max(memsw - mem, 0), total_swap_pages) if memsw_limit is not None else mem + total_swap_pages
    return out or 1
