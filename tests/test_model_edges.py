"""Edges of the model and of era inference that mutation testing (``make mutants``) found untested.

Each test pins one behaviour of a kernel era whose breakage left the rest of the suite green.
"""

from __future__ import annotations

import pytest

from harness.core.eras import ERAS, INF, era_by_name, era_for_version, eras_in, format_range, infer_era, parse_version
from harness.core.model import Task, oom_badness, oom_score, sacrifice_child, select_bad_process, totalpages_memcg

E = era_by_name


def T(pid: int = 1, rss: int = 0, **kw) -> Task:
    kw.setdefault("name", f"t{pid}")
    return Task(pid=pid, rss=rss, **kw)


# --- oom_badness ------------------------------------------------------------------------------------


@pytest.mark.parametrize("era,want", [("3.5", 1), ("4.15", 1), ("5.8", 1), ("5.9", 0), ("6.12", 0)])
def test_eligible_task_with_no_memory(era: str, want: int) -> None:
    """3.5-5.8 `return points > 0 ? points : 1` (unsigned long); 5.9+ returns the signed sum, 0 here."""
    assert oom_badness(T(rss=0), 100_000, E(era)) == want


def test_page_size_reaches_pgtables_bytes() -> None:
    """4.15+: mm_pgtables_bytes(mm) / PAGE_SIZE: 64 kB pages (ppc64) count 16 times fewer pages."""
    t = T(rss=100, pgtables_bytes=65536 * 4)
    assert oom_badness(t, 100_000, E("5.10")) == 164
    assert oom_badness(t, 100_000, E("5.10"), page_size=65536) == 104
    # /proc/PID/oom_score, sacrifice_child and select_bad_process pass the page size on
    tp = 100_000
    assert oom_score(t, 1000, E("5.10"), 65536) == (1000 + 104) * 2 // 3
    assert oom_score(t, 1000, E("5.10")) == (1000 + 164) * 2 // 3
    a, b = T(pid=1, rss=120), T(pid=2, rss=100, pgtables_bytes=65536 * 8)  # 100 + 128 (4k) / + 8 (64k)
    assert select_bad_process([a, b], tp, E("5.10")).chosen.pid == 2
    assert select_bad_process([a, b], tp, E("5.10"), page_size=65536).chosen.pid == 1
    parent = T(pid=10, rss=5000)
    kids = [T(pid=11, rss=120), T(pid=12, rss=100, pgtables_bytes=65536 * 8)]
    assert sacrifice_child(parent, kids, tp, E("4.15")).pid == 12
    assert sacrifice_child(parent, kids, tp, E("4.15"), page_size=65536).pid == 11


# --- /proc/PID/oom_score ------------------------------------------------------------------------------


def test_oom_score_of_an_ineligible_task_is_zero_on_a_small_machine() -> None:
    """3.5-5.8 fs/proc/base.c: oom_badness() * 1000 / totalpages, 0 for an ineligible task, whatever
    totalpages (here fewer than 1000 pages)."""
    assert oom_score(T(rss=10, oom_score_adj=-1000), 500, E("4.19")) == 0
    assert oom_score(T(rss=10), 500, E("4.19")) == 20


def test_oom_score_divides_by_totalpages_itself() -> None:
    assert oom_score(T(rss=3), 1, E("4.19")) == 3000
    assert oom_score(T(rss=3), 2, E("4.19")) == 1500


# --- select_bad_process --------------------------------------------------------------------------------


def _order(sel) -> list[tuple[int, int | None, int]]:
    return [(c.task.pid, c.points, c.rank) for c in sel.ranked]


def test_ranked_order_ties_per_era() -> None:
    tasks = [T(pid=1, rss=50), T(pid=2, rss=100), T(pid=3, rss=100), T(pid=4, rss=10, oom_score_adj=-1000)]
    # <= 3.13: first scanned wins, and ranks first among equals
    assert _order(select_bad_process(tasks, 10_000, E("3.10"))) == [(2, 100, 1), (3, 100, 2), (1, 50, 3),
                                                                   (4, None, 0)]
    # 5.3+: the last scanned wins, and ranks first among equals
    sel = select_bad_process(tasks, 10_000, E("6.1"))
    assert sel.chosen.pid == 3 and [t.pid for t in sel.tied_with] == [2]
    assert _order(sel) == [(3, 100, 1), (2, 100, 2), (1, 50, 3), (4, None, 0)]


def test_leader_preference_puts_the_chosen_leader_first() -> None:
    """3.14-5.2: an equal task replaces a non-leader choice; the ranked list starts with the choice."""
    thread = T(pid=11, rss=100, tgid=10)
    leader = T(pid=12, rss=100, tgid=12)
    small = T(pid=13, rss=40)
    sel = select_bad_process([thread, leader, small], 10_000, E("4.4"))
    assert sel.chosen.pid == 12
    assert _order(sel) == [(12, 100, 1), (11, 100, 2), (13, 40, 3)]
    # with the leader first, the later thread does not replace it
    sel = select_bad_process([leader, thread, small], 10_000, E("4.4"))
    assert sel.chosen.pid == 12 and _order(sel)[0] == (12, 100, 1)


def test_reaped_victim_is_listed_but_not_eligible_from_49() -> None:
    victim = T(pid=1, rss=500, oom_victim=True, mm_oom_skip=True)
    other = T(pid=2, rss=100)
    sel = select_bad_process([victim, other], 10_000, E("4.15"))
    assert sel.chosen.pid == 2 and sel.aborted_by is None
    assert _order(sel) == [(2, 100, 1), (1, None, 0)]
    assert sel.ranked[1].scan_index == 0 and sel.ranked[0].scan_index == 1
    # before 4.9 (the 4.0-4.6 band) MMF_OOM_SKIP does not exist: the exiting victim aborts the scan
    sel = select_bad_process([victim, other], 10_000, E("4.4"))
    assert sel.chosen is None and sel.aborted_by is victim and sel.tied_with == []


# --- totalpages for a memcg ------------------------------------------------------------------------------


def test_memcg_v1_without_memsw_limit_adds_all_swap_from_510() -> None:
    assert totalpages_memcg(E("5.10"), limit=1000, total_swap_pages=300) == 1300
    assert totalpages_memcg(E("6.12"), limit=1000, total_swap_pages=300, memsw_limit=1100) == 1100
    assert totalpages_memcg(E("6.12"), limit=1000, total_swap_pages=300, swappiness=0) == 1000


# --- era inference ----------------------------------------------------------------------------------------


def test_parse_version_refuses_non_kernel_versions() -> None:
    assert parse_version("1.2.3") is None
    assert parse_version("6.1.0-26-amd64") == (6, 1, 0)


def test_era_for_a_version_older_than_every_era() -> None:
    assert era_for_version((2, 6, 32)) is ERAS[0]
    assert era_for_version((2, 6, 36)) is ERAS[0]


def test_era_by_name_error_lists_the_labels() -> None:
    with pytest.raises(ValueError, match=r"unknown era 'banana'.*2\.6\.36-2\.6\.37, 2\.6\.38, "):
        era_by_name("banana")


def test_eras_in_reaches_the_last_era() -> None:
    assert eras_in(((7, 1), INF)) == [ERAS[-1]]
    assert eras_in(((6, 8), INF)) == [ERAS[-2], ERAS[-1]]


def test_format_range_skips_unknown_and_contradictory_fingerprints() -> None:
    assert format_range([]) == (((2, 6, 36), INF), [])
    assert format_range(["no-such-feature", "table:6.8+"]) == (((6, 8), INF), ["table:6.8+"])
    # a fingerprint that narrows nothing is not evidence
    assert format_range(["table:6.8+", "summary"]) == (((6, 8), INF), ["table:6.8+"])
    # summary (5.0+) and select line (<5.1) leave 5.0 only; a prefixed kill line (5.1+) then contradicts
    # them and is skipped, even though it leaves an empty range [5.1, 5.1), and later evidence still counts
    assert format_range(["summary", "select_line", "killed:prefixed", "no-such-feature"]) == (
        ((5, 0), (5, 1)), ["summary", "select_line"])


def test_infer_era_evidence_and_choice_fields() -> None:
    c = infer_era("6.1.0-26-amd64", ["table:4.19-6.7"])
    assert c.era.label == "5.10-6.19" and c.version == "6.1.0-26-amd64"
    assert c.format_range == ((4, 19), (6, 8)) and c.alternatives == () and not c.suspect_version
    assert c.evidence == "kernel version 6.1.0-26-amd64; report format (table:4.19-6.7) => 4.19..6.8"
    c = infer_era(None, ["table:6.8+"])
    assert c.evidence == "no kernel version; report format (table:6.8+) => 6.8..now; newest era allowed: 7.0+"
    assert c.format_range == ((6, 8), INF) and c.alternatives == (era_by_name("6.12"),) and c.version is None
    c = infer_era(None, [])
    assert c.evidence == "no kernel version; report format says nothing about the era; newest era allowed: 7.0+"
    c = infer_era("3.10.0", ["table:6.8+"], forced="4.4")
    assert c.evidence == "forced to 4.0-4.6" and c.version == "3.10.0" and c.format_range == ((6, 8), INF)


def test_infer_era_version_at_the_exclusive_end_of_the_format_range() -> None:
    c = infer_era("5.1", ["select_line"])  # the select line ends with 5.0: a "5.1" printing it is a back-port
    assert c.suspect_version and c.era.label == "4.17-5.0" and c.version == "5.1"


def test_infer_era_newer_and_older_than_the_format() -> None:
    newer = infer_era("6.1", ["table:4.0-4.14"])  # format allows 4.0-4.6 and 4.7-4.14: take the newest
    assert newer.suspect_version and newer.era.label == "4.7-4.14"
    assert newer.alternatives == (era_by_name("4.4"),)
    assert "contradicts" in newer.evidence and "era 4.7-4.14" in newer.evidence
    older = infer_era("4.18.0-348.el8", ["killed:prefixed"])  # RHEL 8: a 5.1+ format
    assert older.suspect_version and older.era.label == "5.1-5.2" and older.version == "4.18.0-348.el8"
    assert older.format_range == ((5, 1), INF)


def test_memcg_swap_unit_bug_divides_by_the_page_size() -> None:
    """2.6.36-2.6.37: (limit_bytes + total_swap_pages) >> PAGE_SHIFT: 4096 swap pages add one page."""
    assert totalpages_memcg(E("2.6.36"), limit=100, total_swap_pages=4096) == 101
    assert totalpages_memcg(E("2.6.36"), limit=100, total_swap_pages=4095) == 100
    assert totalpages_memcg(E("2.6.36"), limit=100, total_swap_pages=65536, page_size=65536) == 101


def test_sacrifice_child_default_page_size() -> None:
    """4.15-5.0: pgtables_bytes / PAGE_SIZE; one page of tables makes the second child the worse."""
    parent = T(pid=10, rss=5000)
    kids = [T(pid=11, rss=100), T(pid=12, rss=100, pgtables_bytes=4096)]
    assert sacrifice_child(parent, kids, 100_000, E("4.15")).pid == 12


def test_ranked_order_of_equal_runners_up() -> None:
    # 5.3+: among equals the later scanned ranks first, the chosen first of all
    sel = select_bad_process([T(pid=1, rss=50), T(pid=2, rss=50), T(pid=3, rss=100)], 10_000, E("6.1"))
    assert [c.task.pid for c in sel.ranked] == [3, 2, 1]
    sel = select_bad_process([T(pid=1, rss=50), T(pid=2, rss=50), T(pid=3, rss=100)], 10_000, E("5.2"))
    assert [c.task.pid for c in sel.ranked] == [3, 1, 2]


def test_format_range_goes_on_after_a_contradiction() -> None:
    # header oom_adj (<3.7), then a 5.0+ summary (contradiction: skipped), then the 3.6 table narrows it
    assert format_range(["header:oom_adj", "summary", "table:3.6-3.19"]) == (
        ((3, 6), (3, 7)), ["header:oom_adj", "table:3.6-3.19"])


def test_evidence_names_every_fingerprint_used() -> None:
    c = infer_era("6.1", ["table:4.19-6.7", "killed:uid_pgtables"])
    assert c.evidence == "kernel version 6.1; report format (table:4.19-6.7, killed:uid_pgtables) => 5.4..6.8"
