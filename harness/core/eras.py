"""Kernel eras of OOM victim selection, and how to tell which one wrote a report.

An *era* is a range of mainline releases over which ``oom_badness()`` / ``select_bad_process()``
behave the same.  The boundaries are the releases where ``mm/oom_kill.c`` changed behaviour:

========  ===============================================================================
2.6.36    a63d83f427fb "oom: badness heuristic rewrite": 0..1000 scale, rss+swap, root -30
2.6.38    f3e8eb70b180: a memcg's limit adds total swap in bytes (2.6.36-2.6.37 added pages to bytes)
2.6.39    f755a042d82b "oom: use pte pages in OOM score": + nr_ptes; global scan over threads
3.5       scores in pages; oom_score_adj x totalpages/1000; root: adj - 30
3.14      778c14affaf9: root bonus = 3% of own usage; tie-break prefers thread-group leaders
4.0       dc6c9a35b66b "mm: account pmd page tables to the process": + nr_pmds
4.7       global scan iterates processes again (for_each_process)
4.15      af5b0f6a09e4 "mm: consolidate page table accounting": pgtables_bytes / PAGE_SIZE
4.17      d46078b28889: root bonus removed
5.1       bbbe48029720: "sacrifice child" removed
5.3       memcg scan with CSS_TASK_ITER_PROCS; leader preference gone, ties go to the last scanned
5.9       9066e5cfb73c: oom_badness() returns long; LONG_MIN = ineligible; no clamp to 1
5.10      mem_cgroup_get_max() split: v1 adds min(memsw - mem, swap), v2 min(swap.max, swap)
7.0       exact rss sums (get_mm_rss_sum) instead of per-cpu approximations; a72f73c4dd9b hides
          exiting tasks from the memcg scan, so a second kill follows an unfreed victim
========  ===============================================================================

Version strings lie (vendor and stable kernels back-port OOM changes, e.g. RHEL 8's "4.18" has
5.9-era code), so :func:`infer_era` also reads the report's own format and says which evidence
decided.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

Version = tuple[int, ...]

__all__ = ["Era", "ERAS", "era_for_version", "parse_version", "infer_era", "EraChoice", "FINGERPRINTS"]


@dataclass(frozen=True)
class Era:
    """A band of releases with one selection behaviour; ``start`` is its first mainline release."""

    start: Version
    label: str

    def at_least(self, *v: int) -> bool:
        return self.start >= v

    # -- behaviour switches, each named after the kernel change it stands for --------------------
    @property
    def thousand_scale(self) -> bool:
        """2.6.36-3.4: badness is normalised to 0..1000 (a63d83f427fb)."""
        return self.start < (3, 5)

    @property
    def memcg_limit_adds_swap_pages_to_bytes(self) -> bool:
        """2.6.36-2.6.37: ``mem_cgroup_get_limit()`` (v2.6.36 mm/memcontrol.c) adds ``total_swap_pages``
        (pages) to ``res_counter_read_u64(&memcg->res, RES_LIMIT)`` (bytes) before
        ``mem_cgroup_out_of_memory()`` shifts the sum right by ``PAGE_SHIFT``: swap adds almost nothing.
        f3e8eb70b180 (2.6.38) shifts the swap pages left by ``PAGE_SHIFT`` first."""
        return self.start < (2, 6, 38)

    @property
    def counts_nr_ptes(self) -> bool:
        return (2, 6, 39) <= self.start < (4, 15)

    @property
    def counts_nr_pmds(self) -> bool:
        return (4, 0) <= self.start < (4, 15)

    @property
    def counts_pgtables_bytes(self) -> bool:
        return self.start >= (4, 15)

    @property
    def root_bonus(self) -> str | None:
        """'minus30' (<=3.13: adj - 30, or points - 30 on the 0..1000 scale), 'three_percent'
        (3.14-4.16), or None (4.17+)."""
        if self.start < (3, 14):
            return "minus30"
        if self.start < (4, 17):
            return "three_percent"
        return None

    @property
    def signed(self) -> bool:
        """5.9+: long scores, LONG_MIN for ineligible, no clamp of eligible scores to 1."""
        return self.start >= (5, 9)

    @property
    def sacrifice_child(self) -> bool:
        """<=5.0: oom_kill_process() kills the worst child not sharing the mm instead."""
        return self.start < (5, 1)

    @property
    def ties_to_last(self) -> bool:
        """5.3+: ``points < chosen_points`` skips, so an equal later task replaces the choice."""
        return self.start >= (5, 3)

    @property
    def leader_preference(self) -> bool:
        """3.14-5.2: an equal task replaces the choice only when the choice is not a leader."""
        return (3, 14) <= self.start < (5, 3)

    @property
    def global_scan_threads(self) -> bool:
        """2.6.39-4.6: the global scan walks every thread (do_each_thread)."""
        return (2, 6, 39) <= self.start < (4, 7)

    @property
    def memcg_scan_threads(self) -> bool:
        """<=5.2: memcg OOM scans every thread, in cgroup-iterator order (not table order)."""
        return self.start < (5, 3)

    @property
    def oom_score_formula(self) -> str:
        """How /proc/PID/oom_score is computed (fs/proc/base.c)."""
        if self.start < (3, 5):
            return "badness"
        if self.start < (5, 9):
            return "points*1000/totalpages"
        return "(1000+points*1000/totalpages)*2/3"

    @property
    def exact_counters(self) -> bool:
        return self.start >= (7, 0)

    @property
    def scan_hides_exiting_victim(self) -> bool:
        """7.0+ (a72f73c4dd9b "cgroup: Don't expose dead tasks in cgroup"): css_task_iter skips a
        task whose threads are all in do_exit (PF_EXITING, signal->live == 0), and
        mem_cgroup_scan_tasks() does not opt out, so a victim that has not freed its memory yet is
        invisible to the next memcg OOM, which then selects again instead of waiting."""
        return self.start >= (7, 0)

    def __str__(self) -> str:
        return self.label


ERAS: list[Era] = [
    Era((2, 6, 36), "2.6.36-2.6.37"),
    Era((2, 6, 38), "2.6.38"),
    Era((2, 6, 39), "2.6.39-3.4"),
    Era((3, 5), "3.5-3.13"),
    Era((3, 14), "3.14-3.19"),
    Era((4, 0), "4.0-4.6"),
    Era((4, 7), "4.7-4.14"),
    Era((4, 15), "4.15-4.16"),
    Era((4, 17), "4.17-5.0"),
    Era((5, 1), "5.1-5.2"),
    Era((5, 3), "5.3-5.8"),
    Era((5, 9), "5.9"),
    Era((5, 10), "5.10-6.19"),
    Era((7, 0), "7.0+"),
]
ERA_BY_LABEL = {e.label: e for e in ERAS}

_VERSION = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?")


def parse_version(s: str | None) -> Version | None:
    """``"6.1.0-26-cloud-amd64"`` -> ``(6, 1, 0)``; ``None`` when it is not a kernel version."""
    if not s:
        return None
    m = _VERSION.match(s.strip())
    if not m:
        return None
    v = tuple(int(x) for x in m.groups() if x is not None)
    return v if v[0] >= 2 else None


def era_for_version(v: Version) -> Era:
    chosen = ERAS[0]
    for e in ERAS:
        if v >= e.start:
            chosen = e
    return chosen


def era_by_name(name: str) -> Era:
    """Accept an era label (``"5.9-6.19"``) or any kernel version (``"6.1"``)."""
    if name in ERA_BY_LABEL:
        return ERA_BY_LABEL[name]
    v = parse_version(name)
    if v is None:
        raise ValueError(f"unknown era {name!r}: give a kernel version like 6.1 or one of " + ", ".join(ERA_BY_LABEL))
    return era_for_version(v)


# Format fingerprints (feature name set by the parser) -> [first, last+) releases that print them.
# Sources: oom_kill.c / memcontrol.c / show_mem.c / dump_stack.c of each era.
INF: Version = (99,)
FINGERPRINTS: dict[str, tuple[Version, Version]] = {
    "header:oom_adj": ((2, 6, 36), (3, 7)),
    "header:gfp_plain": ((2, 6, 36), (4, 6)),
    "header:gfp_symbolic": ((4, 6), INF),
    "header:nodemask": ((4, 9), (5, 0)),
    "cpuset_line": ((2, 6, 36), (5, 0)),
    "table:2.6.36-3.5": ((2, 6, 36), (3, 6)),
    "table:3.6-3.19": ((3, 6), (4, 0)),
    "table:4.0-4.14": ((4, 0), (4, 15)),
    "table:4.15-4.18": ((4, 15), (4, 19)),
    "table:4.19-6.7": ((4, 19), (6, 8)),
    "table:6.8+": ((6, 8), INF),
    "table:tasks_state": ((4, 19), INF),
    "summary": ((5, 0), INF),
    "select_line": ((2, 6, 36), (5, 1)),
    "killed:unprefixed": ((2, 6, 35), (5, 1)),
    "killed:prefixed": ((5, 1), INF),
    "killed:shmem": ((4, 5), INF),
    "killed:uid_pgtables": ((5, 4), INF),
    "memcg:task_in": ((2, 6, 36), (5, 0)),
    "memcg:stats_oneline": ((3, 9), (5, 3)),
    "memcg:stats_multiline": ((5, 3), INF),
    "memcg:swap_v2": ((5, 3), INF),
    "memcg:min_protection": ((6, 19), INF),
    "reaper": ((4, 6), INF),
    "oom_group": ((4, 19), INF),
    "dump_stack:uid": ((6, 11), INF),
    "swap_cache_stats": ((2, 6, 36), (6, 0)),
}


@dataclass(frozen=True)
class EraChoice:
    """The era used for a report, and why."""

    era: Era
    evidence: str
    version: str | None
    format_range: tuple[Version, Version]
    alternatives: tuple[Era, ...]  # other eras the report's format allows (for robustness checks)
    suspect_version: bool = False


def _fmt(v: Version) -> str:
    return "now" if v == INF else ".".join(map(str, v))


def format_range(features: list[str]) -> tuple[tuple[Version, Version], list[str]]:
    lo: Version = (2, 6, 36)
    hi: Version = INF
    used: list[str] = []
    for f in features:
        r = FINGERPRINTS.get(f)
        if r is None:
            continue
        nlo, nhi = max(lo, r[0]), min(hi, r[1])
        if nlo >= nhi:
            continue  # contradictory fingerprint (vendor back-port); keep the earlier evidence
        if (nlo, nhi) != (lo, hi):
            used.append(f)
        lo, hi = nlo, nhi
    return (lo, hi), used


def eras_in(rng: tuple[Version, Version]) -> list[Era]:
    lo, hi = rng
    out = []
    for i, e in enumerate(ERAS):
        end = ERAS[i + 1].start if i + 1 < len(ERAS) else INF
        if e.start < hi and end > lo:
            out.append(e)
    return out


def infer_era(version: str | None, features: list[str], forced: str | None = None) -> EraChoice:
    """Choose the era for a report from its kernel version and its format fingerprints.

    * ``forced`` (a label or version) wins, always.
    * A version consistent with the format decides.
    * A version the format contradicts is *suspect* (a vendor kernel with back-ported OOM code).
      Older than the format: the oldest era the format allows (the back-port brought at least
      that, e.g. RHEL 6's "2.6.32" printing 2.6.36 reports); newer: the newest allowed.  The
      other allowed eras are returned as alternatives, and the analysis tries them when the
      chosen era's victim differs from the kernel's (RHEL 8's "4.18" with 5.9 badness).
    * No version: the newest era the format allows, with the other allowed eras listed as
      alternatives so a caller can check whether the choice matters.
    """
    rng, used = format_range(features)
    allowed = eras_in(rng)
    ev_fmt = (
        f"report format ({', '.join(used)}) => {_fmt(rng[0])}..{_fmt(rng[1])}"
        if used
        else "report format says nothing about the era"
    )
    if forced:
        e = era_by_name(forced)
        return EraChoice(e, f"forced to {e.label}", version, rng, tuple(x for x in allowed if x != e))
    v = parse_version(version)
    if v is not None:
        e = era_for_version(v)
        if rng[0] <= v < rng[1] or not used:
            return EraChoice(e, f"kernel version {version}; {ev_fmt}", version, rng, ())
        # Older version than the format: a vendor back-port brought at least the oldest era the
        # format allows (RHEL 6's "2.6.32" prints 2.6.36 reports).  Newer: take the newest allowed.
        pick = (allowed[0] if v < rng[0] else allowed[-1]) if allowed else e
        return EraChoice(
            pick,
            f"kernel version {version} contradicts the {ev_fmt}: treated as a back-port, era {pick.label}",
            version,
            rng,
            tuple(x for x in allowed if x != pick),
            suspect_version=True,
        )
    newest = allowed[-1] if allowed else ERAS[-1]
    return EraChoice(
        newest,
        f"no kernel version; {ev_fmt}; newest era allowed: {newest.label}",
        None,
        rng,
        tuple(x for x in allowed if x != newest),
    )
