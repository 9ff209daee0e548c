"""The reference model against values computed by hand from each era's oom_badness() (reference §2-§5)."""

from __future__ import annotations

import pytest

from harness.core.eras import ERAS, era_by_name
from harness.core.model import (
    LONG_MIN,
    Task,
    oom_badness,
    oom_score,
    sacrifice_child,
    select_bad_process,
    totalpages_global,
    totalpages_memcg,
    totalpages_nodes,
)

LONG_MAX = (1 << 63) - 1


def E(v: str):
    return era_by_name(v)


def T(pid: int = 1, rss: int = 0, **kw) -> Task:
    kw.setdefault("name", f"t{pid}")
    return Task(pid=pid, rss=rss, **kw)


# --- oom_badness per era --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("era", "task", "tp", "expected"),
    [
        # Era A 2.6.36-2.6.38: (rss + swap) * 1000 / tp, nr_ptes NOT counted; root -30; + adj; clamp [1, 1000]
        ("2.6.36", T(rss=5000, swapents=1000, nr_ptes=999), 100000, 60),  # 6000*1000/100000
        ("2.6.36", T(rss=5000, swapents=1000, cap_sys_admin=True), 100000, 30),
        ("2.6.36", T(rss=5000, swapents=1000, oom_score_adj=50, cap_sys_admin=True), 100000, 80),
        ("2.6.36", T(rss=10), 100000, 1),  # 10*1000/100000 = 0 -> eligible tasks never score 0
        ("2.6.36", T(rss=10, cap_sys_admin=True), 100000, 1),  # 0 - 30 -> 1
        ("2.6.36", T(rss=90000, oom_score_adj=500), 100000, 1000),  # 900 + 500 -> capped at 1000
        ("2.6.36", T(rss=90000, oom_score_adj=-999), 100000, 1),
        ("2.6.36", T(rss=1, oom_score_adj=5), 0, 1000),  # totalpages 0 is treated as 1: 1000 + 5 -> 1000
        # Era B 2.6.39-3.4: + nr_ptes
        ("3.0", T(rss=5000, nr_ptes=100), 100000, 51),  # 5100*1000/100000
        ("3.4", T(rss=20000), 51200, 390),  # 20000000/51200 = 390.6
        # Era C 3.5-3.13: pages; root: adj - 30, scaled by tp/1000
        ("3.5", T(rss=5000, nr_ptes=20, swapents=100, cap_sys_admin=True), 1548288, 1),  # 5120 - 30*1548 < 0
        ("3.10", T(rss=230000, nr_ptes=600, swapents=50000, cap_sys_admin=True), 1548288, 234160),  # 280600-46440
        ("3.13", T(rss=5000, nr_ptes=20, swapents=100, oom_score_adj=100), 1548288, 159920),  # 5120 + 154800
        ("3.13", T(rss=5000, nr_pmds=7, pgtables_bytes=1 << 20), 100000, 5000),  # no pmds / pgtables_bytes yet
        # Era D 3.14-3.19: root -3% of own points
        ("3.14", T(rss=10000, nr_ptes=50, cap_sys_admin=True), 100000, 9749),  # 10050 - 301
        ("3.19", T(rss=10000, nr_ptes=50, oom_score_adj=-30, cap_sys_admin=True), 100000, 6749),  # 9749 - 3000
        # Era E 4.0-4.14: + nr_pmds
        ("4.0", T(rss=10000, nr_ptes=50, nr_pmds=3, swapents=7, cap_sys_admin=True), 100000, 9759),  # 10060 - 301
        ("4.14", T(rss=40000, nr_ptes=90, nr_pmds=3), 65536, 40093),
        ("4.4", T(rss=20000, nr_ptes=40, nr_pmds=2, oom_score_adj=500), 65536, 52542),  # 20042 + 500*65
        # Era F 4.15-4.16: pgtables_bytes / PAGE_SIZE; nr_ptes ignored; root -3%
        ("4.15", T(rss=10000, pgtables_bytes=409600, nr_ptes=999, cap_sys_admin=True), 100000, 9797),  # 10100-303
        ("4.16", T(rss=98000, pgtables_bytes=204800), 512000, 98050),
        # Era G 4.17-5.8: no root bonus; still clamped to 1
        ("4.17", T(rss=10000, pgtables_bytes=409600, cap_sys_admin=True), 100000, 10100),
        ("5.8", T(rss=10000, pgtables_bytes=409600, oom_score_adj=-500), 100000, 1),  # 10100 - 50000 -> 1
        ("5.0", T(rss=1, pgtables_bytes=24576, oom_score_adj=-998), 131072, 1),
        # Era H 5.9+: signed, no clamp
        ("5.9", T(rss=10000, pgtables_bytes=409600, oom_score_adj=-500), 100000, -39900),
        ("6.1", T(rss=1, pgtables_bytes=24576, oom_score_adj=-998), 262144, -261469),  # 7 - 998*262
        ("6.1", T(rss=200000, pgtables_bytes=819200, oom_score_adj=-998), 262144, -61276),
        ("6.18", T(rss=17788, pgtables_bytes=188416), 16384, 17834),  # the host's memcg v1 OOM
        ("7.0", T(rss=300000, pgtables_bytes=1048576, oom_score_adj=300), 4624288, 1687456),  # 300256 + 300*4624
        ("7.0", T(rss=100000, pgtables_bytes=204800, oom_score_adj=-900), 4624288, -4061550),
    ],
)
def test_badness(era: str, task: Task, tp: int, expected: int) -> None:
    assert oom_badness(task, tp, E(era)) == expected


def test_badness_page_size() -> None:
    t = T(rss=10000, pgtables_bytes=409600, cap_sys_admin=True)
    assert oom_badness(t, 100000, E("4.15"), page_size=16384) == 9725  # 10025 - 300
    assert oom_badness(t, 100000, E("6.1"), page_size=65536) == 10006


@pytest.mark.parametrize("era", [e.label for e in ERAS])
def test_ineligible_is_none_in_every_era(era: str) -> None:
    e = E(era)
    assert oom_badness(T(rss=100, oom_score_adj=-1000), 1000, e) is None  # 0 (<5.9) / LONG_MIN (5.9+)
    assert oom_badness(T(rss=100, unkillable=True), 1000, e) is None
    assert oom_badness(T(rss=100, has_mm=False), 1000, e) is None


def test_reaped_and_vfork_by_era() -> None:
    reaped = T(rss=100, mm_oom_skip=True)
    vfork = T(rss=100, in_vfork=True)
    assert oom_badness(reaped, 1000, E("4.6")) == 100  # MMF_OOM_REAPED only from 4.7
    assert oom_badness(reaped, 1000, E("4.7")) is None
    assert oom_badness(vfork, 1000, E("4.7")) == 100  # in_vfork() only from 4.8 (era 4.7-4.14 starts at 4.7)
    assert oom_badness(vfork, 1000, E("4.17")) is None
    assert oom_badness(vfork, 1000, E("6.1")) is None


def test_oom_origin() -> None:
    assert oom_badness(T(rss=1, oom_origin=True), 100000, E("2.6.36")) == 1000
    assert oom_badness(T(rss=1, oom_origin=True), 100000, E("6.1")) == LONG_MAX


def test_long_min_constant() -> None:
    assert LONG_MIN == -(2**63)


# --- select_bad_process: tie-breaking and aborts ------------------------------------------------


def _equal_pair(first_is_leader: bool) -> list[Task]:
    a = T(pid=11, rss=1000, tgid=10 if not first_is_leader else 11)
    b = T(pid=20, rss=1000, tgid=20)
    return [a, b]


@pytest.mark.parametrize("era", ["2.6.36", "3.0", "3.10", "3.13"])
def test_ties_first_wins_up_to_313(era: str) -> None:
    tasks = [T(pid=1, rss=1000), T(pid=2, rss=1000), T(pid=3, rss=999)]
    s = select_bad_process(tasks, 100000, E(era))
    assert s.chosen.pid == 1
    assert [t.pid for t in s.tied_with] == [2]


@pytest.mark.parametrize("era", ["3.14", "4.4", "4.19", "5.2"])
def test_leader_preference_314_to_52(era: str) -> None:
    # a thread (non-leader) chosen first is replaced by an equal leader scanned later
    assert select_bad_process(_equal_pair(first_is_leader=False), 100000, E(era)).chosen.pid == 20
    # a leader chosen first stays
    assert select_bad_process(_equal_pair(first_is_leader=True), 100000, E(era)).chosen.pid == 11


@pytest.mark.parametrize("era", ["5.3", "5.8", "5.9", "6.1", "7.0"])
def test_ties_last_wins_from_53(era: str) -> None:
    tasks = [T(pid=1, rss=1000), T(pid=2, rss=1000), T(pid=3, rss=999)]
    s = select_bad_process(tasks, 100000, E(era))
    assert s.chosen.pid == 2
    assert select_bad_process(_equal_pair(first_is_leader=True), 100000, E(era)).chosen.pid == 20


def test_ranked_candidates_order() -> None:
    tasks = [T(pid=1, rss=10), T(pid=2, rss=30), T(pid=3, rss=20, oom_score_adj=-1000), T(pid=4, rss=30)]
    s = select_bad_process(tasks, 100000, E("6.1"))
    assert [c.task.pid for c in s.ranked] == [4, 2, 1, 3]
    assert [c.rank for c in s.ranked] == [1, 2, 3, 0]
    assert s.ranked[-1].points is None


K8S = [
    T(pid=100, name="pause", rss=1, pgtables_bytes=24576, oom_score_adj=-998),
    T(pid=200, name="app", rss=200000, pgtables_bytes=819200, oom_score_adj=-998),
    T(pid=300, name="sidecar", rss=10, pgtables_bytes=24576, oom_score_adj=-998),
]


@pytest.mark.parametrize(
    ("era", "victim", "points"),
    [
        ("4.19", 100, 1),  # everything clamped to 1; strictly-greater/leader rules keep the first scanned
        ("5.2", 100, 1),
        ("5.3", 300, 1),  # clamped to 1 but ties go to the last scanned (points < chosen skips only smaller)
        ("5.8", 300, 1),
        ("5.9", 200, -61276),  # signed scores: the largest task wins (9066e5cfb73c)
        ("6.1", 200, -61276),
    ],
)
def test_k8s_adj_998(era: str, victim: int, points: int) -> None:
    s = select_bad_process(K8S, 262144, E(era))
    assert (s.chosen.pid, s.points) == (victim, points)


def test_earlier_victim_aborts_selection() -> None:
    tasks = [T(pid=1, rss=100), T(pid=2, rss=50, oom_victim=True), T(pid=3, rss=10)]
    s = select_bad_process(tasks, 100000, E("6.1"))
    assert s.chosen is None and s.points is None and s.aborted_by.pid == 2
    # sysrq-triggered OOMs do not wait for earlier victims
    assert select_bad_process(tasks, 100000, E("6.1"), sysrq=True).chosen.pid == 1


def test_reaped_earlier_victim_is_skipped_from_49() -> None:
    tasks = [T(pid=1, rss=100, oom_victim=True, mm_oom_skip=True), T(pid=2, rss=50)]
    s = select_bad_process(tasks, 100000, E("6.1"))
    assert s.aborted_by is None and s.chosen.pid == 2


def test_unkillable_tasks_are_not_candidates() -> None:
    s = select_bad_process([T(pid=1, rss=10**6, unkillable=True), T(pid=2, rss=5)], 100000, E("6.1"))
    assert s.chosen.pid == 2 and [c.task.pid for c in s.ranked] == [2]


def test_nothing_eligible() -> None:
    s = select_bad_process([T(pid=1, rss=5, oom_score_adj=-1000)], 100000, E("6.1"))
    assert s.chosen is None and s.aborted_by is None


# --- totalpages ------------------------------------------------------------------------------


def test_totalpages_global_and_nodes() -> None:
    assert totalpages_global(1024000, 524288) == 1548288
    assert totalpages_nodes([1048576], 0) == 1048576
    assert totalpages_nodes([1048445, 10], 262144) == 1310599


MEM, SWAP = 25600, 262144


@pytest.mark.parametrize(
    ("era", "kw", "expected"),
    [
        # 2.6.38-3.6: min(mem + swap, memsw); swappiness ignored
        ("3.4", {"memsw_limit": 51200}, 51200),
        ("3.4", {"memsw_limit": 51200, "swappiness": 0}, 51200),
        ("3.4", {}, MEM + SWAP),
        # 3.7-4.8: swap only with swappiness != 0 (era 3.14-3.19 / 4.0-4.6 here)
        ("3.14", {"memsw_limit": 51200}, 51200),
        ("3.14", {"memsw_limit": 51200, "swappiness": 0}, MEM),
        ("4.4", {}, MEM + SWAP),
        # 4.9-5.9: min(mem + min(swap.max, swap), memsw)
        ("5.3", {"swap_max": 1000, "cgroup_v2": True}, MEM + 1000),
        ("5.3", {"memsw_limit": MEM}, MEM),
        ("5.9", {"swap_max": 0, "cgroup_v2": True}, MEM),
        ("5.9", {"swappiness": 0}, MEM),
        # 5.10+ v1: mem + min(memsw - mem, swap)
        ("5.10", {"memsw_limit": 51200}, 51200),
        ("6.1", {"memsw_limit": MEM}, MEM),
        ("6.1", {"memsw_limit": MEM + 10**9}, MEM + SWAP),
        ("6.1", {"memsw_limit": 51200, "swappiness": 0}, MEM),
        # 5.10+ v2: mem + min(swap.max, swap)
        ("6.1", {"swap_max": 0, "cgroup_v2": True}, MEM),
        ("6.1", {"swap_max": 100, "cgroup_v2": True}, MEM + 100),
        ("6.1", {"cgroup_v2": True}, MEM + SWAP),
        ("6.1", {"cgroup_v2": True, "swappiness": 0}, MEM),
    ],
)
def test_totalpages_memcg(era: str, kw: dict, expected: int) -> None:
    assert totalpages_memcg(E(era), limit=MEM, total_swap_pages=SWAP, **kw) == expected


def test_totalpages_memcg_host_probe_and_zero() -> None:
    # this machine's probe: v1, memory.limit = memsw.limit = 64 MiB
    assert totalpages_memcg(E("6.18"), limit=16384, memsw_limit=16384, total_swap_pages=0) == 16384
    assert totalpages_memcg(E("6.18"), limit=16384, memsw_limit=16384, total_swap_pages=10**6) == 16384
    assert totalpages_memcg(E("6.1"), limit=0, total_swap_pages=0, cgroup_v2=True) == 1  # 0 -> 1


# --- /proc/PID/oom_score ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("era", "task", "tp", "expected"),
    [
        ("2.6.36", T(rss=5000, swapents=1000), 100000, 60),  # the 0..1000 badness itself
        ("3.4", T(rss=1), 100000, 1),
        ("3.5", T(rss=10000, nr_ptes=100), 100000, 101),  # 10100*1000/100000
        ("4.19", T(rss=10000, pgtables_bytes=409600), 100000, 101),
        ("4.19", T(rss=10, oom_score_adj=-500), 100000, 0),  # badness clamped to 1 -> 1000/100000 = 0
        ("5.8", T(rss=120000, pgtables_bytes=524288, oom_score_adj=969), 131072, 1884),
        ("5.9", T(rss=10000, pgtables_bytes=409600), 100000, 734),  # (1000 + 101) * 2 / 3
        ("6.1", T(rss=0), 100000, 666),
        ("6.1", T(rss=10000, pgtables_bytes=409600, oom_score_adj=-500), 100000, 400),  # (1000 - 399) * 2 / 3
        # C truncation toward zero: -999000 / 1007 = -992.05 -> -992 (floor would give -993 and 4)
        ("6.1", T(rss=0, oom_score_adj=-999), 1007, 5),
        ("7.0", T(rss=100, oom_score_adj=1000), 2000, 1366),  # 100 + 1000*2 = 2100 -> (1000 + 1050) * 2 / 3
    ],
)
def test_oom_score(era: str, task: Task, tp: int, expected: int) -> None:
    assert oom_score(task, tp, E(era)) == expected


@pytest.mark.parametrize("era", ["2.6.36", "4.19", "6.1"])
def test_oom_score_ineligible_is_zero(era: str) -> None:
    assert oom_score(T(rss=10**6, oom_score_adj=-1000), 100000, E(era)) == 0


# --- sacrifice_child ---------------------------------------------------------------------------


def test_sacrifice_child_picks_worst_child_first_among_equals() -> None:
    parent = T(pid=1, rss=100000)
    kids = [T(pid=2, rss=10), T(pid=3, rss=50), T(pid=4, rss=50), T(pid=5, rss=90, oom_score_adj=-1000)]
    assert sacrifice_child(parent, kids, 100000, E("4.19")).pid == 3
    # any eligible child beats the parent: victim_points starts at 0
    assert sacrifice_child(parent, [T(pid=9, rss=1)], 100000, E("3.10")).pid == 9
    assert sacrifice_child(parent, [], 100000, E("4.19")).pid == 1
    assert sacrifice_child(parent, [T(pid=9, rss=1, oom_score_adj=-1000)], 100000, E("4.19")).pid == 1


@pytest.mark.parametrize("era", ["5.1", "5.3", "6.1", "7.0"])
def test_no_sacrifice_from_51(era: str) -> None:
    assert sacrifice_child(T(pid=1, rss=100000), [T(pid=2, rss=50)], 100000, E(era)).pid == 1
