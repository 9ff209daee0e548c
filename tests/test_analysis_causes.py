"""Every cause the analysis gives for a mismatch or a missing victim, on reports built field by field.

Public and VM fixtures are (rightly) matches; these pin the words and the numbers of each other
verdict, so a broken explanation fails a test instead of reaching a user.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.core.analysis import (
    Context,
    _choice_independent_of_totalpages,
    _foreign_columns,
    _global_totalpages,
    _impossible_score,
    _no_victim_reason,
    _nodes,
    _solve_totalpages,
    analyze,
    derive_totalpages,
)
from harness.core.eras import era_by_name
from harness.core.events import KillRecord, MemcgInfo, MemInfo, OomEvent, SelectLine, Summary, TaskRow, Trigger
from harness.core.model import Task, oom_badness
from harness.core.parser import parse_file


def row(pid: int, rss: int, adj: int = 0, uid: int = 1000, name: str | None = None) -> TaskRow:
    return TaskRow(pid=pid, uid=uid, tgid=pid, total_vm=rss * 2, rss=rss, oom_score_adj=adj, name=name or f"t{pid}",
                   pgtables_bytes=0, swapents=0)


def memcg_event(rows: list[TaskRow], killed: int, version: str = "6.1.0", trigger: bool = True, **kw) -> OomEvent:
    name = next((r.name for r in rows if r.pid == killed), "gone")
    return OomEvent(
        kernel_version=version,
        trigger=Trigger(comm="x") if trigger else None,
        summary=Summary(constraint="CONSTRAINT_MEMCG", oom_memcg="/a", pid=killed, task=name),
        memcg=MemcgInfo(usage_kb=400_000, limit_kb=400_000, memsw_usage_kb=400_000, memsw_limit_kb=400_000),
        table=rows,
        table_complete=True,
        kills=[KillRecord(pid=killed, name=name)],
        complete=True,
        **kw,
    )


def verdict(ev: OomEvent) -> tuple[str, str]:
    a = analyze(ev)
    return a.verdict, a.reason


def test_tie_in_the_scan_order() -> None:
    # 5.3+: the last scanned of equals wins; the kernel killed the first one
    v, r = verdict(memcg_event([row(1, 5000), row(2, 5000)], killed=1))
    assert v == "mismatch"
    assert r == "tie: 1 and 2 both have 5000 points; the scan order the kernel used differs from the table order"


def test_tie_in_a_pre_53_memcg_names_the_thread_scan() -> None:
    v, r = verdict(memcg_event([row(1, 5000), row(2, 5000)], killed=2, version="4.4.0"))
    assert v == "mismatch" and r.startswith("tie: 2 and 1 both have 5000 points; the memcg scan order (cgroup "
                                            "iterator, threads) differs from the table order before 5.3")


def test_near_tie_within_the_counters_inexactness() -> None:
    v, r = verdict(memcg_event([row(1, 5000), row(2, 5100)], killed=1))
    assert v == "mismatch"
    assert r.startswith("near tie: the model's 2 (t2) leads the observed 1 by 100 pages, within the rss counters' "
                        "inexactness (256 pages")
    # 7.0+ sums the counters exactly: 100 pages are no longer noise
    v, r = verdict(memcg_event([row(1, 5000), row(2, 5100)], killed=1, version="7.2.0"))
    assert r.startswith("unexplained: the model picks 2 (t2, 5100 points) but the kernel chose 1 (t1, 5000 points)")
    # the 5.10-6.19 band keeps the per-thread bound (256 pages) for 6.2+ too (its per-cpu counters
    # could drift up to 3 x 64 x CPUs): 700 pages are not a near tie in it
    v, r = verdict(memcg_event([row(1, 5000), row(2, 5700)], killed=1, version="6.12.0"))
    assert r.startswith("unexplained: the model picks 2 (t2, 5700 points)")


def test_another_era_explains_it() -> None:
    # 5.2 keeps the first of equals; a kernel that killed the last behaves like 5.3+
    v, r = verdict(memcg_event([row(1, 5000), row(2, 5000)], killed=2, version="5.2.0"))
    assert v == "mismatch"
    assert r.startswith("era mismatch: era 5.1-5.2 picks 1 (t1), but era 5.3-5.8 picks the observed 2 (t2); the "
                        "kernel behaves like 5.3-5.8 (version 5.2.0")
    # and the other way round: a 5.3 kernel that kept the first behaves like 5.1-5.2
    v, r = verdict(memcg_event([row(1, 5000), row(2, 5000)], killed=1, version="5.3.0"))
    assert r.startswith("era mismatch: era 5.3-5.8 picks 2 (t2), but era 5.1-5.2 picks the observed 1 (t1)")


def test_root_bonus_guess() -> None:
    # 3.14-4.16: CAP_SYS_ADMIN takes 3 % off; guessed from uid 0.  Without it, the uid-0 task wins.
    rows = [row(1, 100_000, uid=0), row(2, 98_000)]
    v, r = verdict(memcg_event(rows, killed=1, version="4.4.0"))
    assert v == "mismatch"
    assert r == ("root bonus: CAP_SYS_ADMIN is not in the report and was guessed from uid 0; with the other guess "
                 "the model picks the observed 1")


def test_observed_victim_ineligible_in_the_model() -> None:
    v, r = verdict(memcg_event([row(1, 5000, adj=-1000), row(2, 100)], killed=1))
    assert v == "mismatch"
    assert r == ("the observed victim 1 (t1) is ineligible in the model (oom_score_adj -1000); the kernel had a "
                 "reason the report does not show")


def test_no_eligible_task_in_the_model() -> None:
    v, r = verdict(memcg_event([row(1, 5000, adj=-1000), row(2, 100, adj=-1000)], killed=1))
    assert v == "mismatch" and r == "the model finds no eligible task, but the kernel killed 1 (t1)"


def test_victim_not_in_the_table() -> None:
    v, r = verdict(memcg_event([row(1, 5000), row(2, 100)], killed=7))
    assert v == "mismatch" and r.startswith("victim 7 (gone) is not in the task table (the table lists one row per "
                                            "process")
    # the same without the report's beginning: the table may be partial, so no verdict
    v, r = verdict(memcg_event([row(1, 5000), row(2, 100)], killed=7, trigger=False))
    assert v == "undecidable" and r.startswith("victim 7 (gone) is not in the task table, and the report's "
                                               "beginning is lost")


def test_match_reason_counts_and_ties() -> None:
    v, r = verdict(memcg_event([row(1, 5000), row(2, 5000), row(3, 10, adj=-1000)], killed=2))
    assert (v, r) == ("match", "highest points (5000) of 2 eligible; tied with 1, last scanned wins (5.3+)")
    v, r = verdict(memcg_event([row(1, 5000), row(2, 5000)], killed=1, version="5.2.0"))
    assert (v, r) == ("match", "highest points (5000) of 2 eligible; tied with 2, first scanned wins")


def _bare(**kw) -> OomEvent:
    return OomEvent(kernel_version="6.1.0", trigger=Trigger(comm="x"), complete=False, **kw)


def test_no_victim_reasons() -> None:
    a = analyze(_bare(panic="Out of memory: system-wide panic_on_oom is enabled\n"))
    assert (a.verdict, a.reason) == ("no-victim", "vm.panic_on_oom: the kernel panicked instead of killing (Out of "
                                                  "memory: system-wide panic_on_oom is enabled)")
    a = analyze(_bare(no_killable=True))
    assert (a.verdict, a.reason) == ("no-victim", "no killable process: every candidate was ineligible")
    a = analyze(memcg_event([row(1, 5000)], killed=1, victim_exiting=True))
    assert (a.verdict, a.reason) == ("no-victim", "the selected victim was already exiting; the kernel skipped the "
                                                  "kill")
    a = analyze(_bare(panic="  Kernel panic - not syncing: foo  "))
    assert (a.verdict, a.reason) == ("no-victim", "kernel panic: Kernel panic - not syncing: foo")
    a = analyze(_bare())
    assert (a.verdict, a.reason) == ("undecidable", "no task table in the report (vm.oom_dump_tasks=0, or it was "
                                                    "cut off)")


def test_node_lists() -> None:
    assert _nodes("0-1,3") == {0, 1, 3}
    assert _nodes("2") == {2}
    assert _nodes("0,") == {0}
    assert _nodes("(null)") is None and _nodes(None) is None and _nodes("") is None
    assert _nodes("a-b") is None and _nodes("x") is None


# --- a second kill before the first victim's memory was freed ----------------------------------------


def _pair(ts2: float = 10.005, usage_kb: int = 400_000, rows2=None, version: str = "6.1.0", kind2: str = "memcg"):
    first = memcg_event([row(1, 5000), row(2, 3000)], killed=1, version=version, ts=10.0)
    rows2 = rows2 if rows2 is not None else [row(2, 3000)]
    second = memcg_event(rows2, killed=2, version=version, ts=ts2)
    second.memcg.usage_kb = usage_kb
    if kind2 != "memcg":
        second.summary.constraint = "CONSTRAINT_NONE"
        second.summary.oom_memcg = None
        second.memcg = None
    return first, second


def _second_notes(first: OomEvent, second: OomEvent) -> list[str]:
    return [n for n in analyze(second, previous=first, previous_victims={1}).notes if n.startswith("second kill")]


def test_second_kill_note() -> None:
    assert _second_notes(*_pair()) == [
        "second kill 0.005s after 1 (t1): it is no longer listed and the memory is still charged; the victim had "
        "left the task list (or was marked MMF_OOM_SKIP) before its memory was freed, so the kernel selected again "
        "instead of waiting"]
    (n,) = _second_notes(*_pair(version="7.2.0"))
    assert "since 7.0 (a72f73c4dd9b, 'cgroup: Don't expose dead tasks in cgroup')" in n
    # survivors that grew back by less than half the victim's memory: still the unfreed victim
    assert _second_notes(*_pair(rows2=[row(2, 3000 + 2500)]))
    assert _second_notes(*_pair(ts2=11.0))  # within one second, inclusive


def test_no_second_kill_note_for_an_ordinary_new_oom() -> None:
    assert not _second_notes(*_pair(ts2=11.5))  # more than a second later
    assert not _second_notes(*_pair(ts2=11.0 + 1e-9))
    assert not _second_notes(*_pair(usage_kb=399_996))  # the memcg is below its limit again
    assert not _second_notes(*_pair(rows2=[row(1, 5000), row(2, 3000)]))  # the victim is still listed
    assert not _second_notes(*_pair(rows2=[row(2, 3000 + 2501)]))  # the survivors grew back
    assert not _second_notes(*_pair(kind2="global"))  # another kind of OOM
    first, second = _pair()
    first.kills = []
    assert not _second_notes(first, second)
    first, second = _pair()
    first.ts = None
    assert not _second_notes(first, second)


# --- edges found by mutation testing ----------------------------------------------------------------------


def test_near_tie_bounds_are_inclusive() -> None:
    for gap, near in ((1, True), (256, True), (257, False)):
        v, r = verdict(memcg_event([row(1, 5000), row(2, 5000 + gap)], killed=1))
        assert r.startswith("near tie" if near else "unexplained"), (gap, r)
    v, r = verdict(memcg_event([row(1, 5000), row(2, 5001)], killed=1))
    assert r == ("near tie: the model's 2 (t2) leads the observed 1 by 1 pages, within the rss counters' inexactness "
                 "(256 pages: per-cpu/per-thread batching) and the time between selection and the dump, when "
                 "counters can still move")
    # 7.0+: exact sums, 8 pages of slack for what moved between selection and dump
    assert verdict(memcg_event([row(1, 5000), row(2, 5008)], killed=1, version="7.2.0"))[1].startswith("near tie")
    assert verdict(memcg_event([row(1, 5000), row(2, 5009)], killed=1, version="7.2.0"))[1].startswith("unexpl")


def test_era_mismatch_without_a_version() -> None:
    v, r = verdict(memcg_event([row(1, 5000), row(2, 5000)], killed=1, version=None))
    assert v == "mismatch" and r.startswith("era mismatch: era 7.0+ picks 2 (t2)") and "(version unknown;" in r


def test_root_bonus_flip_is_both_ways() -> None:
    # a non-root task above the root one: only flipping BOTH guesses lets the root task win
    v, r = verdict(memcg_event([row(1, 100_000, uid=0), row(2, 100_500)], killed=1, version="4.4.0"))
    assert r.startswith("root bonus:"), r
    # a root victim far below the model's pick: the guess cannot explain it
    v, r = verdict(memcg_event([row(1, 10_000, uid=0), row(2, 50_000)], killed=1, version="4.4.0"))
    assert r.startswith("unexplained:"), r


def test_node_ranges() -> None:
    assert _nodes("2-3") == {2, 3}


def test_swap_in_use_bound() -> None:
    from harness.core.analysis import _swap_in_use_pages
    from harness.core.events import MemInfo

    ev = OomEvent(memcg=MemcgInfo(usage_kb=4000, memsw_usage_kb=6000))
    assert _swap_in_use_pages(ev, 4) == 500
    ev = OomEvent(memcg=MemcgInfo(usage_kb=6000, memsw_usage_kb=4000))  # counters raced: never negative
    assert _swap_in_use_pages(ev, 4) == 0
    ev = OomEvent(memcg=MemcgInfo(usage_kb=4000))
    assert _swap_in_use_pages(ev, 4) is None
    ev = OomEvent(memcg=MemcgInfo(memsw_usage_kb=4000))
    assert _swap_in_use_pages(ev, 4) is None
    ev = OomEvent(memcg=MemcgInfo(swap_usage_kb=4002))
    assert _swap_in_use_pages(ev, 4) == 1000
    ev = OomEvent(meminfo=MemInfo(total_swap_kb=10_000, free_swap_kb=6_002))
    assert _swap_in_use_pages(ev, 4) == 999
    ev = OomEvent(meminfo=MemInfo(total_swap_kb=10_000, free_swap_kb=10_000))
    assert _swap_in_use_pages(ev, 4) == 0
    ev = OomEvent(meminfo=MemInfo(total_swap_kb=10_000))
    assert _swap_in_use_pages(ev, 4) is None
    # the tightest bound wins
    ev = OomEvent(memcg=MemcgInfo(usage_kb=4000, memsw_usage_kb=6000),
                  meminfo=MemInfo(total_swap_kb=10_000, free_swap_kb=9_000))
    assert _swap_in_use_pages(ev, 4) == 250
    assert _swap_in_use_pages(OomEvent(), 4) is None


def test_solve_totalpages() -> None:
    from harness.core.analysis import _solve_totalpages
    from harness.core.eras import era_by_name
    from harness.core.model import Task

    # 3.5-5.0, adj 0: floor(points * 1000 / tp) == S solves exactly; 64 kB pages reach pgtables_bytes
    t = Task(pid=1, name="a", rss=1000, pgtables_bytes=65536 * 16)
    assert _solve_totalpages(t, 500, era_by_name("4.15"), 1, None, 64) == (2028, 2032)
    assert _solve_totalpages(t, 500, era_by_name("4.15"), 1, None, 4) == (2507, 2512)
    assert _solve_totalpages(t, 500, era_by_name("4.15"), 2030, 2031, 64) == (2030, 2031)
    assert _solve_totalpages(t, 500, era_by_name("4.15"), 2031, 2031, 64) == (2031, 2031)
    assert _solve_totalpages(t, 500, era_by_name("4.15"), 3000, None, 64) is None
    # score 0: any totalpages above points * 1000, up to hi (or without bound)
    assert _solve_totalpages(t, 0, era_by_name("4.15"), 1, None, 64) == (1016001, 1 + (1 << 40))
    assert _solve_totalpages(t, 0, era_by_name("4.15"), 1, 10**7, 64) == (1016001, 10**7)
    # 2.6.39-3.4 print the 0..1000 badness itself: searched per thousand pages
    t = Task(pid=1, name="a", rss=500)
    assert _solve_totalpages(t, 250, era_by_name("3.2"), 1000, None, 4) == (1993, 2000)
    # an adj makes points depend on totalpages: searched per thousand pages
    t = Task(pid=1, name="a", rss=500, oom_score_adj=100)
    got = _solve_totalpages(t, 350, era_by_name("4.4"), 1000, None, 4)
    assert got is not None and all(
        (500 + 100 * (tp // 1000)) * 1000 // tp == 350 for tp in got)
    # 5.1+ print no score: nothing to solve
    assert _solve_totalpages(t, 350, era_by_name("5.10"), 1000, None, 4) is None


def test_second_kill_note_edges() -> None:
    # the victim still listed as the tgid of a thread row: not gone
    first, second = _pair(rows2=[row(2, 3000), TaskRow(pid=5, uid=0, tgid=1, total_vm=10, rss=1, oom_score_adj=0,
                                                      name="t1")])
    assert not _second_notes(first, second)
    # two victims, one still listed: no note
    first, second = _pair(rows2=[row(3, 10), row(2, 3000)])
    first.table.append(row(3, 10))
    first.kills.append(KillRecord(pid=3, name="t3"))
    assert not _second_notes(first, second)
    # two victims, both gone: both named
    first, second = _pair()
    first.table.append(row(3, 10))
    first.kills.append(KillRecord(pid=3, name="t3"))
    (n,) = _second_notes(first, second)
    assert n.startswith("second kill 0.005s after 1 (t1), 3 (t3): it is no longer listed")
    # a small victim: survivors may grow back 256 pages and it is still the same OOM
    first = memcg_event([row(1, 100), row(2, 3000)], killed=1, ts=10.0)
    second = memcg_event([row(2, 3256)], killed=2, ts=10.005)
    assert _second_notes(first, second)
    second = memcg_event([row(2, 3257)], killed=2, ts=10.005)
    assert not _second_notes(first, second)
    # a memcg report without its memcg block: no claim about the charge
    first, second = _pair()
    second.memcg = None
    assert not _second_notes(first, second)
    (n,) = _second_notes(*_pair(version="7.2.0"))
    assert n.endswith("since 7.0 (a72f73c4dd9b, 'cgroup: Don't expose dead tasks in cgroup') the memcg scan skips "
                      "a victim whose threads are all exiting, before its memory is freed, so the kernel selected "
                      "again instead of waiting")


# --- the printed score's bound, the words of rarer reasons, totalpages' independence --------------------

def _select_event(rows: list[TaskRow], pid: int, score: int, version: str = "4.19.0") -> OomEvent:
    """A <=5.0 memcg report whose 'Kill process' line selects *pid* with *score*: totalpages is the
    400000 kB limit (memory+swap limit equal to it: swap cannot add), 100000 pages."""
    ev = memcg_event(rows, killed=pid, version=version)
    ev.select = SelectLine(pid=pid, name=next(r.name for r in rows if r.pid == pid), score=score)
    return ev


def _big_and_small() -> list[TaskRow]:
    # rss 20000 + swap 1000 + 44 page-table pages (4.15+: bytes) = 21044 pages; + 256 pages of counter slack
    return [TaskRow(pid=1, uid=1000, tgid=1, total_vm=40000, rss=20000, oom_score_adj=0, name="big",
                    pgtables_bytes=44 * 4096, swapents=1000),
            row(2, 100, adj=-900, name="dbus")]


def test_impossible_score_bound_is_exact() -> None:
    # no task can print more than (21044 + 256 + 1000 * 100) * 1000 / 100000 = 1213
    a = analyze(_select_event(_big_and_small(), 2, 1213))
    assert a.verdict == "mismatch" and a.reason.startswith("unexplained: the model picks 1 (big, 21044 points)")
    a = analyze(_select_event(_big_and_small(), 2, 1214))
    assert (a.verdict, a.reason) == (
        "mismatch", "impossible score: the kernel printed score 1214 for 2 (dbus), but in era 4.17-5.0 the score is "
        "points * 1000 / totalpages and no task of this table can exceed 1213 (totalpages 100000): the kernel's "
        "badness is not mainline's (a patched or buggy kernel, e.g. an arithmetic overflow)")


def test_impossible_score_on_the_thousand_scale_and_edges() -> None:
    rows = [row(1, 20000), row(2, 100, name="dbus")]
    era = era_by_name("3.2")
    tasks = [Task(pid=r.pid, name=r.name, rss=r.rss) for r in rows]
    assert _impossible_score(_select_event(rows, 2, 1000, "3.2.0"), tasks, era, 100000, 4) is None
    assert _impossible_score(_select_event(rows, 2, 1001, "3.2.0"), tasks, era, 100000, 4) == (
        "impossible score: the kernel printed score 1001 for 2 (dbus), but in era 2.6.39-3.4 the score is the "
        "0..1000 badness and no task of this table can exceed 1000 (totalpages 100000): the kernel's badness is "
        "not mainline's (a patched or buggy kernel, e.g. an arithmetic overflow)")
    # 5.1+ print no score: a select line under a forced 5.x era proves nothing
    assert _impossible_score(_select_event(rows, 2, 10**9), tasks, era_by_name("5.10"), 100000, 4) is None
    # a one-page totalpages (a memcg limit of one page): the bound is (20000 + 256) * 1000 / 1
    four = era_by_name("4.4")
    assert _impossible_score(_select_event(rows, 2, 20_256_000, "4.4.0"), tasks, four, 1, 4) is None
    assert _impossible_score(_select_event(rows, 2, 20_256_001, "4.4.0"), tasks, four, 1, 4) is not None
    # 64 kB pages: 44 * 65536 bytes of page tables are 44 pages
    big = Task(pid=1, name="big", rss=20000, swapents=1000, pgtables_bytes=44 * 65536)
    ev = _select_event(_big_and_small(), 2, 1213)
    assert _impossible_score(ev, [big], era_by_name("4.19"), 100000, 64) is None
    ev.select.score = 1214
    assert _impossible_score(ev, [big], era_by_name("4.19"), 100000, 64) is not None


def test_no_killable_process_on_a_whole_system_oom_panics() -> None:
    a = analyze(_bare(no_killable=True, panic=" Kernel panic - not syncing: System is deadlocked on memory\n"))
    assert (a.verdict, a.reason) == (
        "no-victim", "no killable process: every candidate was ineligible; a whole-system OOM cannot go on, so the "
        "kernel panicked (Kernel panic - not syncing: System is deadlocked on memory)")
    assert _no_victim_reason(OomEvent()) == "no kill in the report"


def test_foreign_columns_are_named() -> None:
    ev = OomEvent(table_layout="4.19-6.7 (pgtables_bytes) + unknown columns: (01)nrss x2")
    assert _foreign_columns(ev) == ["(01)nrss", "x2"]
    assert _foreign_columns(OomEvent()) == [] and _foreign_columns(OomEvent(table_layout="4.19-6.7")) == []


def test_tie_with_64k_pages_counts_page_tables_in_pages_of_64k() -> None:
    # 5000 rss + 10 page-table pages of 64 kB == 5010 rss: a tie, which 4 kB pages (160) would not make
    rows = [TaskRow(pid=1, uid=1000, tgid=1, total_vm=10000, rss=5000, oom_score_adj=0, name="t1",
                    pgtables_bytes=10 * 65536, swapents=0), row(2, 5010)]
    a = analyze(memcg_event(rows, killed=1), Context(page_size=65536))
    assert (a.verdict, a.reason) == ("mismatch", "tie: 1 and 2 both have 5010 points; the scan order the kernel "
                                                 "used differs from the table order")


def test_root_bonus_guess_only_for_root_tasks() -> None:
    # 3.5-3.13: uid-0 guesses subtract 30 * totalpages / 1000 (3000 pages here); neither task is root, so
    # no guess to blame: 290 pages apart (beyond the 256 of counter slack) is unexplained.  (Granting
    # everyone CAP_SYS_ADMIN would clamp both to 1 and let the first scanned win.)
    v, r = verdict(memcg_event([row(1, 10, uid=1000), row(2, 300, uid=1)], killed=1, version="3.10.0"))
    assert (v, r) == ("mismatch", "unexplained: the model picks 2 (t2, 300 points) but the kernel chose 1 (t1, "
                                  "10 points)")


def test_second_kill_note_without_a_limit_line() -> None:
    # a memcg block that printed no limit: nothing says the memcg was below it
    first, second = _pair(usage_kb=0)
    second.memcg.limit_kb = None
    assert _second_notes(first, second)


def test_swap_in_use_bound_is_whole_pages() -> None:
    from harness.core.analysis import _swap_in_use_pages

    got = _swap_in_use_pages(OomEvent(memcg=MemcgInfo(usage_kb=4000, memsw_usage_kb=8003)), 4)
    assert got == 1000 and isinstance(got, int)


def test_choice_independent_of_totalpages_ends() -> None:
    four, three = era_by_name("4.4"), era_by_name("3.2")
    # every task ineligible at an end: no choice to keep
    assert not _choice_independent_of_totalpages([Task(pid=1, name="a", rss=5, oom_score_adj=-1000)], None, None,
                                                 four, 4)
    # 2 points at both ends (no clamp involved), one task: independent
    assert _choice_independent_of_totalpages([Task(pid=1, name="a", rss=2)], 1000, 5000, four, 4)
    # clamped to 1 at an end: dependent
    assert not _choice_independent_of_totalpages([Task(pid=1, name="a", rss=1)], 1000, 5000, four, 4)
    # the 0..1000 ceiling at an end: dependent; 999 is not the ceiling
    assert not _choice_independent_of_totalpages([Task(pid=1, name="a", rss=1000)], 1000, 1000, three, 4)
    assert _choice_independent_of_totalpages([Task(pid=1, name="a", rss=999)], 1000, 1000, three, 4)
    # an unknown lower bound is 1 page: a 1-page task scores 1000 - 400 = 600 there and beats an adj-300 task
    # with nothing resident, which wins everywhere from 2 pages up
    tasks = [Task(pid=1, name="a", rss=1, oom_score_adj=-400), Task(pid=2, name="b", rss=0, oom_score_adj=300)]
    assert not _choice_independent_of_totalpages(tasks, None, None, three, 4)
    assert not _choice_independent_of_totalpages(tasks, 1, None, three, 4)
    assert _choice_independent_of_totalpages(tasks, 2, None, three, 4)


# --- totalpages from what the report printed, and the candidates' /proc oom_score ------------------------

_CONSTRAINT = {"memcg": "CONSTRAINT_MEMCG", "cpuset": "CONSTRAINT_CPUSET", "mempolicy": "CONSTRAINT_MEMORY_POLICY",
               "global": "CONSTRAINT_NONE"}


def _ev(kind: str, nodemask: str | None = None, mems_allowed: str | None = None, **kw) -> OomEvent:
    """An event of *kind* (from its summary line's constraint), with the given blocks."""
    return OomEvent(summary=Summary(constraint=_CONSTRAINT[kind], nodemask=nodemask, mems_allowed=mems_allowed), **kw)


def _tp(ev: OomEvent, ctx: Context | None = None, era: str = "6.1") -> tuple:
    return derive_totalpages(ev, era_by_name(era), ctx or Context())


def test_memcg_totalpages_from_the_report() -> None:
    assert _tp(_ev("memcg")) == (None, None, "memcg limit not in the report")
    assert _tp(_ev("memcg", memcg=MemcgInfo(usage_kb=4))) == (None, None, "memcg limit not in the report")
    v1 = MemcgInfo(limit_kb=400_000, memsw_limit_kb=600_000)  # 100000 pages; memory+swap 150000
    swap = MemInfo(total_swap_kb=1_000_000)  # 250000 pages
    # 5.10+ v1: mem + min(memsw - mem, swap)
    assert _tp(_ev("memcg", memcg=v1, meminfo=swap)) == (
        150_000, 150_000, "memcg limit 400000kB + swap term (total swap 250000 pages)")
    assert _tp(_ev("memcg", memcg=v1, meminfo=swap), Context(swappiness=0)) == (
        100_000, 100_000, "memcg limit 400000kB")
    # v2 (told, or seen from a swap.max line): memory.swap.max (here unlimited) bounds swap, memsw does not
    assert _tp(_ev("memcg", memcg=v1, meminfo=swap), Context(cgroup_v2=True))[:2] == (350_000, 350_000)
    # the machine's swap when the report lacks it; the report's own wins
    assert _tp(_ev("memcg", memcg=v1), Context(total_swap_pages=1000))[:2] == (101_000, 101_000)
    assert _tp(_ev("memcg", memcg=v1, meminfo=swap), Context(total_swap_pages=1000))[:2] == (150_000,
                                                                                                        150_000)
    # 64 kB pages: the limit and swap in pages of 64 kB
    assert _tp(_ev("memcg", memcg=v1, meminfo=MemInfo(total_swap_kb=1_000_000, page_size_kb=64)))[:2] == (
        9375, 9375)
    assert _tp(_ev("memcg", memcg=v1, meminfo=swap), Context(page_size=65536))[:2] == (9375, 9375)
    # swap unknown: from no swap to all of it, within the limits
    v2 = MemcgInfo(limit_kb=400_000, swap_limit_kb=8000)
    assert _tp(_ev("memcg", memcg=v2)) == (
        100_000, 102_000, "memcg limit 400000kB; swap term unknown (the report does not print total swap)")
    assert _tp(_ev("memcg", memcg=MemcgInfo(limit_kb=400_000))) == (
        100_000, None, "memcg limit 400000kB; swap term unknown (the report does not print total swap)")
    assert _tp(_ev("memcg", memcg=MemcgInfo(limit_kb=400_000, memsw_limit_kb=400_000))) == (
        100_000, 100_000, "memcg limit 400000kB (swap cannot add: its limit is 0)")
    # v2 without swap.max printed is v1-like unless told: memsw unlimited, so swappiness 0 is what keeps swap out
    assert _tp(_ev("memcg", memcg=MemcgInfo(limit_kb=400_000)), Context(swappiness=0))[:2] == (100_000,
                                                                                                         100_000)


def test_constrained_totalpages_from_the_nodes() -> None:
    mi = MemInfo(total_swap_kb=40_000, zone_present_kb={"0/DMA32": 400_000, "1/Normal": 800_000})
    cpuset = _ev("cpuset", meminfo=mi, mems_allowed="0", nodemask="1")
    assert _tp(cpuset) == (110_000, 110_000, "swap 10000 + present pages of nodes [0]")
    mempolicy = _ev("mempolicy", meminfo=mi, mems_allowed="0", nodemask="1")
    assert _tp(mempolicy) == (210_000, 210_000, "swap 10000 + present pages of nodes [1]")
    assert _tp(_ev("cpuset", meminfo=mi, mems_allowed="0-1")) == (
        310_000, 310_000, "swap 10000 + present pages of nodes [0, 1]")
    for ev in (_ev("cpuset", meminfo=MemInfo(zone_present_kb=mi.zone_present_kb), mems_allowed="0"),
               _ev("cpuset", meminfo=MemInfo(total_swap_kb=4), mems_allowed="0"),
               _ev("cpuset", meminfo=mi, mems_allowed="(null)"),
               _ev("mempolicy", mems_allowed="0")):
        assert _tp(ev) == (None, None, "node sizes or swap not in the report")


def test_global_totalpages_from_the_report() -> None:
    mi = MemInfo(pages_ram=50_000, pages_reserved=1000, total_swap_kb=40_000)
    assert _tp(_ev("global", meminfo=mi)) == (59_000, 59_000, "pages RAM - pages reserved + Total swap")
    assert _tp(_ev("global", meminfo=mi), era="4.0")[2] == "pages RAM - pages reserved + Total swap"
    assert _tp(_ev("global", meminfo=mi), era="3.19") == (
        59_000, 59_000, "pages RAM - pages reserved + Total swap (approximate before 4.0: show_mem counted reserved "
                        "pages differently)")
    assert _tp(_ev("global", meminfo=MemInfo(pages_ram=50_000, total_swap_kb=0)))[:2] == (50_000, 50_000)
    assert _tp(_ev("global", meminfo=mi), Context(totalram_pages=7000)) == (
        17_000, 17_000, "totalram (from the machine) + total swap")
    assert _tp(_ev("global"), Context(totalram_pages=7000, total_swap_pages=5)) == (
        7005, 7005, "totalram (from the machine) + total swap")
    for ev, ctx in ((_ev("global"), Context(totalram_pages=7000)),
                    (_ev("global", meminfo=MemInfo(pages_ram=50_000)), Context()),
                    (_ev("global", meminfo=MemInfo(total_swap_kb=4)), Context())):
        assert _tp(ev, ctx) == (None, None, "Mem-Info totals not in the report")


def test_proc_oom_score_uses_the_global_totalpages() -> None:
    # a memcg OOM: /proc/PID/oom_score is still scored against totalram + total swap (here 1000000 + 200000)
    ev = memcg_event([row(1, 5000), row(2, 300_000)], killed=2)
    ctx = Context(totalram_pages=1_000_000, total_swap_pages=200_000)
    assert _global_totalpages(ev, 123, ctx, 4) == 1_200_000
    assert _global_totalpages(ev, 123, Context(totalram_pages=1_000_000), 4) is None
    ev.meminfo = MemInfo(total_swap_kb=800_000)
    assert _global_totalpages(ev, 123, Context(totalram_pages=1_000_000), 4) == 1_200_000
    assert _global_totalpages(ev, 123, Context(totalram_pages=1_000_000, total_swap_pages=7), 4) == 1_000_007
    assert _global_totalpages(ev, 123, Context(), 4) is None
    assert _global_totalpages(_ev("global"), 123, Context(totalram_pages=5), 4) == 123
    # 5.10+: (1000 + points * 1000 / totalpages) * 2 / 3, C division: 300000 points -> 833, 5000 -> 669
    cands = analyze(memcg_event([row(1, 5000), row(2, 300_000)], killed=2), ctx).candidates
    assert [(c["pid"], c["points"], c["oom_score"]) for c in cands] == [(2, 300_000, 833), (1, 5000, 669)]
    assert [c["oom_score"] for c in analyze(memcg_event([row(1, 5000)], killed=1)).candidates] == [None]


def test_candidates_page_tables_per_era() -> None:
    rows = [TaskRow(pid=1, uid=1000, tgid=1, total_vm=9, rss=5000, oom_score_adj=0, name="a", nr_ptes=7, nr_pmds=3,
                    pgtables_bytes=65536 * 2, swapents=11)]
    (c,) = analyze(memcg_event(rows, killed=1, version="4.4.0")).candidates
    assert (c["pagetables"], c["points"], c["swapents"], c["rss"], c["tgid"], c["uid"], c["eligible"]) == (
        10, 5021, 11, 5000, 1, 1000, True)
    (c,) = analyze(memcg_event(rows, killed=1), Context(page_size=65536)).candidates
    assert (c["pagetables"], c["points"]) == (2, 5013)
    (c,) = analyze(memcg_event(rows, killed=1)).candidates
    assert (c["pagetables"], c["points"]) == (32, 5043)


def test_cap_sys_admin_from_the_machine() -> None:
    # 3.14-4.16 take 3 % off CAP_SYS_ADMIN holders; without a list the guess is uid 0
    rows = [row(1, 100_000, uid=0), row(2, 100_000, uid=1000)]
    got = {c["pid"]: c["points"] for c in analyze(memcg_event(rows, killed=2, version="4.4.0")).candidates}
    assert got == {1: 97_000, 2: 100_000}
    ctx = Context(cap_sys_admin_pids=frozenset({2}))
    got = {c["pid"]: c["points"] for c in analyze(memcg_event(rows, killed=1, version="4.4.0"), ctx).candidates}
    assert got == {1: 100_000, 2: 97_000}
    # 4.17+: no bonus whatever the capabilities
    got = {c["pid"]: c["points"] for c in analyze(memcg_event(rows, killed=2), ctx).candidates}
    assert got == {1: 100_000, 2: 100_000}


# --- every branch of analyze(), in full words ------------------------------------------------------------

ALLOC = "vm.oom_kill_allocating_task=1: the allocating task is killed without scoring"


def _summary(a) -> tuple:
    return a.verdict, a.reason, a.predicted, a.notes, len(a.candidates)


def test_allocating_task_kill_without_a_table() -> None:
    def ev(current: int | None, killed: int | None, comm: str | None = "x") -> OomEvent:
        return OomEvent(kernel_version="6.1.0", trigger=Trigger(comm=comm) if comm else None, current_pid=current,
                        allocating_task_kill=True, kills=[KillRecord(pid=killed, name="y")] if killed else [])

    assert _summary(analyze(ev(5, 5))) == ("match", ALLOC, {"pid": 5, "name": "x"}, [], 0)
    assert _summary(analyze(ev(5, 6))) == ("mismatch", ALLOC, {"pid": 5, "name": "x"}, [], 0)
    assert _summary(analyze(ev(None, 6, None))) == ("match", ALLOC, None, [], 0)
    assert _summary(analyze(ev(None, None))) == ("mismatch", ALLOC, None, [], 0)
    assert _summary(analyze(ev(5, 5, None))) == ("match", ALLOC, {"pid": 5, "name": None}, [], 0)


def test_allocating_task_kill_with_a_table() -> None:
    rows = [row(1, 5000), row(2, 100)]
    a = analyze(memcg_event(rows, killed=2, allocating_task_kill=True, current_pid=2))
    assert _summary(a) == ("match", ALLOC, {"pid": 2, "name": "x"}, [], 2)
    a = analyze(memcg_event(rows, killed=2, allocating_task_kill=True, current_pid=1))
    assert _summary(a) == ("mismatch", ALLOC + "; killed {'pid': 2, 'name': 't2'} instead of the allocating task "
                                               "{'pid': 1, 'name': 'x'}", {"pid": 1, "name": "x"}, [], 2)
    # without the header the kill line's "(oom_kill_allocating_task)" names current
    a = analyze(memcg_event(rows, killed=2, allocating_task_kill=True, trigger=False))
    assert _summary(a) == ("match", ALLOC, {"pid": 2, "name": "t2"},
                           ["allocating task taken from the kill line (the report's header is not in the log)"], 2)


def test_only_the_kill_line() -> None:
    a = analyze(OomEvent(kernel_version="6.1.0", kills=[KillRecord(pid=6, name="y")]))
    assert _summary(a) == ("undecidable", "only the kill line was printed: the kernel suppressed the report (OOM "
                                          "report ratelimit: at most 10 reports per 5 s), or the log lost its start",
                           None, [], 0)
    # anything else of the report printed: it is the table that is missing
    no_table = "no task table in the report (vm.oom_dump_tasks=0, or it was cut off)"
    for kw in ({"meminfo": MemInfo()}, {"memcg": MemcgInfo()}, {"summary": Summary()}, {"trigger": Trigger(comm="x")}):
        a = analyze(OomEvent(kernel_version="6.1.0", kills=[KillRecord(pid=6, name="y")], **kw))
        assert (a.verdict, a.reason) == ("undecidable", no_table), kw
    assert (analyze(OomEvent(kernel_version="6.1.0")).reason) == no_table


def test_table_without_a_verdict() -> None:
    a = analyze(memcg_event([row(1, 5000)], killed=1, panic="Kernel panic - not syncing: x"))
    assert _summary(a) == ("no-victim", "kernel panic: Kernel panic - not syncing: x", {"pid": 1, "name": "t1"}, [], 1)
    a = analyze(memcg_event([row(1, 5000)], killed=1, no_killable=True))
    assert _summary(a)[:3] == ("no-victim", "no killable process: every candidate was ineligible",
                               {"pid": 1, "name": "t1"})
    ev = memcg_event([row(1, 5000)], killed=1, missing=["kill line"])
    ev.kills, ev.summary.pid = [], None
    assert _summary(analyze(ev)) == ("undecidable", "the report ends before the kill line: kill line",
                                     {"pid": 1, "name": "t1"}, [], 1)
    ev = memcg_event([row(1, 5000)], killed=1, missing=["rest of the task table", "kill line"])
    ev.table_complete = False
    assert _summary(analyze(ev)) == ("undecidable", "task table incomplete: rest of the task table; kill line",
                                     {"pid": 1, "name": "t1"}, [], 1)


def test_memcg_protection_is_noted() -> None:
    ev = memcg_event([row(1, 5000)], killed=1)
    ev.memcg.min_protection_kb, ev.memcg.low_protection_kb = 1000, 2000
    assert analyze(ev).notes == ["memory.min/low protection (1000 kB / 2000 kB) shields memory from reclaim only: "
                                 "victim selection ignores it, and so does the model"]
    ev.memcg.min_protection_kb = None
    assert analyze(ev).notes == ["memory.min/low protection (None kB / 2000 kB) shields memory from reclaim only: "
                                 "victim selection ignores it, and so does the model"]
    ev.memcg.min_protection_kb, ev.memcg.low_protection_kb = 1000, 0
    assert len(analyze(ev).notes) == 1
    ev.memcg.min_protection_kb = 0
    assert analyze(ev).notes == []


def test_select_line_naming_a_thread() -> None:
    # pre-5.3 memcg OOMs scan threads: "Kill process 1234 (t1)" names a thread of the listed process 1
    ev = memcg_event([row(1, 5000), row(2, 100)], killed=1, version="4.4.0")
    ev.select, ev.summary = SelectLine(pid=1234, name="t1", score=5), None
    assert _summary(analyze(ev)) == ("match", "highest points (5000) of 2 eligible", {"pid": 1, "name": "t1"},
                                     ["the select line names thread 1234 of process 1 (thread scan)"], 2)
    # another name: not that process's thread
    ev.select = SelectLine(pid=1234, name="other", score=5)
    assert analyze(ev).reason.startswith("victim 1234 (other) is not in the task table")


def test_score_check_says_why_it_is_unchecked() -> None:
    ev = memcg_event([row(1, 5000), row(2, 100)], killed=7, version="4.19.0")
    a = analyze(ev)
    assert (a.score["score_check"], a.score["score_note"]) == ("unchecked", "the report has no 'Kill process ... "
                                                                            "score' line")
    ev.select = SelectLine(pid=7, name="gone", score=5)
    a = analyze(ev)
    assert (a.score["printed_score"], a.score["score_check"], a.score["score_note"]) == (
        5, "unchecked", "the selected task 7 is not in the task table")
    a = analyze(memcg_event([row(1, 5000), row(2, 100)], killed=7, trigger=False))
    assert (a.verdict, a.reason) == ("undecidable", "victim 7 (gone) is not in the task table, and the report's "
                                                    "beginning is lost, so the table may be partial")


# --- solving totalpages from the printed score, against brute force ---------------------------------------

def _printed(t: Task, tp: int, era_name: str, pkb: int = 4) -> int | None:
    era = era_by_name(era_name)
    b = oom_badness(t, tp, era, pkb * 1024)
    return None if b is None else (b if era.thousand_scale else b * 1000 // max(tp, 1))


@pytest.mark.parametrize("era", ["3.2", "3.10", "4.4", "4.19"])
@pytest.mark.parametrize(("rss", "adj", "cap"), [(500, 0, False), (500, 100, False), (37, -5, False),
                                                 (900, 3, True), (3000, -20, False), (120, 999, False)])
def test_solve_totalpages_finds_every_fitting_totalpages(era: str, rss: int, adj: int, cap: bool) -> None:
    """Where the search is exhaustive (every totalpages / 1000 step up to 4 * score + 4 is bisected), the
    solver returns exactly the least and the greatest totalpages in [lo, hi] that print the score."""
    t = Task(pid=1, name="a", rss=rss, swapents=3, nr_ptes=2, pgtables_bytes=5 * 4096, oom_score_adj=adj,
             cap_sys_admin=cap)
    # (the last two end at the last bisected step for scores 1 and 5: totalpages / 1000 == 4 * score + 4)
    for lo, hi in ((1, 3000), (2999, 6001), (1500, 1500), (1, 1), (4, 60), (1, 8999), (20_000, 24_999)):
        fits: dict[int, list[int]] = {}
        for tp in range(lo, hi + 1):
            p = _printed(t, tp, era)
            if p is not None:
                fits.setdefault(p, []).append(tp)
        scores = sorted(fits)
        for s in scores[::max(1, len(scores) // 10)] + scores[-1:] + [scores[-1] + 1, max(scores[0] - 1, 0)]:
            if hi // 1000 > 4 * max(s, 1) + 4:
                continue  # sampled, not bisected
            want = (min(fits[s]), max(fits[s])) if s in fits else None
            assert _solve_totalpages(t, s, era_by_name(era), lo, hi, 4) == want, (lo, hi, s)


def test_solve_totalpages_unbounded_above() -> None:
    # hi unknown: searched up to 4096 times the lower bound (16 TiB of 4 kB pages above a 4 GiB floor)
    t = Task(pid=1, name="a", rss=500, oom_score_adj=100)
    four = era_by_name("4.4")
    # (500 + 100 * k) * 1000 / tp prints 100 from 400991 on (1000 * k + 101 * r > 500000), up to the end
    assert _solve_totalpages(t, 100, four, 1000, None, 4) == (400_991, 4_096_000)
    assert _solve_totalpages(t, 100, four, 1, None, 4) is None  # 4096 pages: too small for any of them
    # at most 20000 steps of 1000 pages are walked one by one
    assert _solve_totalpages(t, 100, four, 10_000, 20_010_999, 4) == (400_991, 20_010_999)
    # 64 kB pages: page-table bytes count in pages of 64 kB
    t = Task(pid=1, name="a", rss=500, pgtables_bytes=65536 * 100, oom_score_adj=100)
    assert _solve_totalpages(t, 200, era_by_name("4.19"), 1000, 10_000, 64) == (4976, 6000)
    assert _solve_totalpages(t, 200, era_by_name("4.19"), 1000, 10_000, 4) is None


def test_json_document_without_header_or_summary() -> None:
    d = analyze(OomEvent(kernel_version="6.1.0", kills=[KillRecord(pid=6, name="y")])).to_dict()
    assert (d["trigger"], d["constraint"], d["oom_memcg"], d["kind"]) == (None, None, None, "unknown")
    # <=4.20 names the limiting memcg in "Task in A killed as a result of limit of B"
    ev = OomEvent(kernel_version="4.4.0", memcg=MemcgInfo(limit_kb=4, task_in="/a/b", limit_of="/a"))
    d = analyze(ev).to_dict()
    assert (d["oom_memcg"], d["constraint"], d["kind"]) == ("/a", None, "memcg")
    ev.summary = Summary(constraint="CONSTRAINT_MEMCG", oom_memcg="/s")
    assert analyze(ev).to_dict()["oom_memcg"] == "/s"


# --- more edges found by mutation testing: every path returns its candidates, children, ties of three -------


def test_every_verdict_path_keeps_the_ranked_table() -> None:
    rows = [row(1, 5000), row(2, 100)]
    # the victim is not in the table and the beginning is lost
    a = analyze(memcg_event(rows, killed=7, trigger=False))
    assert (a.verdict, a.predicted, len(a.candidates)) == ("undecidable", {"pid": 1, "name": "t1"}, 2)
    # a mismatch (a tie broken the other way)
    a = analyze(memcg_event([row(1, 5000), row(2, 5000)], killed=1))
    assert (a.verdict, a.predicted, [c["pid"] for c in a.candidates]) == ("mismatch", {"pid": 2, "name": "t2"}, [2, 1])
    # the beginning is lost and the model's top task is not the kernel's (4.7+: maybe killed and reaped before)
    a = analyze(memcg_event(rows, killed=2, version="4.9.0", trigger=False))
    assert (a.verdict, a.reason, a.predicted, len(a.candidates)) == (
        "undecidable", "the model's top task 1 (t1) is not the kernel's, and the report's beginning is lost: an "
                       "earlier kill of it (reaped, MMF_OOM_SKIP) would explain the choice",
        {"pid": 1, "name": "t1"}, 2)
    # before 4.7 a reaped victim is not skipped: the same choice is unexplained
    a = analyze(memcg_event(rows, killed=2, version="4.4.0", trigger=False))
    assert (a.verdict, a.reason) == ("mismatch", "unexplained: the model picks 1 (t1, 5000 points) but the kernel "
                                                 "chose 2 (t2, 100 points)")
    # the report ends before the kill line: every missing piece is named
    ev = memcg_event(rows, killed=1, missing=["kill line", "oom_reaper line"])
    ev.kills, ev.summary.pid = [], None
    assert analyze(ev).reason == "the report ends before the kill line: kill line; oom_reaper line"


def test_no_task_table_says_so_in_the_score_note() -> None:
    ev = OomEvent(kernel_version="4.4.0", trigger=Trigger(comm="x"), kills=[KillRecord(pid=6, name="y")],
                  select=SelectLine(pid=6, name="y", score=5))
    a = analyze(ev)
    assert (a.score["printed_score"], a.score["score_note"]) == (5, "no task table in the report")


def test_sacrificed_child_named_only_where_the_kernel_sacrifices() -> None:
    # 4.4 memcg report without a select line: summary names 1, the kill line a child 3
    def ev(version: str) -> OomEvent:
        e = memcg_event([row(1, 5000), row(3, 100)], killed=3, version=version)
        e.summary.pid, e.summary.task = 1, "t1"
        return e

    assert analyze(ev("4.4.0")).reason == "highest points (5000) of 2 eligible; the kernel then sacrificed child 3 (t3)"
    assert analyze(ev("6.1.0")).reason == "highest points (5000) of 2 eligible"
    # a child of the same name as the selected process is still the child, not the selected task
    e = memcg_event([row(1, 5000, name="a"), row(3, 100, name="a")], killed=3, version="4.4.0")
    e.select = SelectLine(pid=1, name="a", score=5)
    a = analyze(e, Context(total_swap_pages=0))
    assert (a.verdict, a.reason) == ("match", "highest points (5000) of 2 eligible; the kernel then sacrificed "
                                              "child 3 (a)")


def test_tie_of_three_names_both_others() -> None:
    v, r = verdict(memcg_event([row(1, 5000), row(2, 5000), row(3, 5000)], killed=3))
    # (in the ranked order: last scanned first)
    assert (v, r) == ("match", "highest points (5000) of 3 eligible; tied with 2, 1, last scanned wins (5.3+)")


def test_patched_kernel_reason_in_full() -> None:
    ev = memcg_event([row(1, 5000), row(2, 100)], killed=2, table_layout="4.19-6.7 (pgtables_bytes) + unknown "
                                                                          "columns: (01)nrss x2")
    assert analyze(ev).reason == ("patched kernel: its task table has column(s) no mainline kernel prints ((01)nrss, "
                                  "x2), so its selection need not follow mainline's oom_badness()")


def test_reaped_victim_still_listed_is_skipped_from_49() -> None:
    # 4.9+: an earlier victim whose mm is reaped (MMF_OOM_SKIP) is skipped, and the next task chosen
    first = memcg_event([row(1, 5000), row(2, 3000)], killed=1, ts=10.0)
    second = memcg_event([row(1, 5000), row(2, 3000)], killed=2, ts=20.0)
    a = analyze(second, previous_victims={1}, previous=first)
    assert (a.verdict, a.reason, a.notes) == ("match", "highest points (3000) of 1 eligible", [])


def test_totalpages_bounds_from_the_limits_decide() -> None:
    # v1 memcg, memory+swap limit twice the memory limit, swap not printed: totalpages 100000..200000.  b's adj
    # of 500 puts it ahead anywhere in that range (not at 1 page, where a's rss would win): decided
    ev = memcg_event([row(1, 50_000, name="a"), row(2, 10_000, adj=500, name="b")], killed=2, version="4.19.0")
    ev.memcg.memsw_limit_kb = 800_000
    a = analyze(ev)
    assert (a.verdict, a.totalpages) == ("match", 100_000)
    assert a.notes == ["totalpages not exact (memcg limit 400000kB; swap term unknown (the report does not print "
                       "total swap)); it does not change the ranking"]


def test_printed_score_pins_totalpages_within_the_limits() -> None:
    # score 0 for 10 pages: any totalpages above 10000 - within the memcg's bounds 100000..200000
    ev = memcg_event([row(1, 10), row(2, 5)], killed=1, version="4.19.0")
    ev.memcg.memsw_limit_kb = 800_000
    ev.select = SelectLine(pid=1, name="t1", score=0)
    a = analyze(ev)
    assert a.totalpages_note == ("memcg limit 400000kB; swap term unknown (the report does not print total swap); "
                                 "100000..200000 from the printed score 0")
    assert (a.verdict, a.predicted) == ("match", {"pid": 1, "name": "t1"})
    # no memory+swap limit: unbounded above
    ev.memcg.memsw_limit_kb = None
    assert analyze(ev).totalpages_note.endswith(f"; 100000..{100_000 + (1 << 40)} from the printed score 0")


def test_memcg_totalpages_edges() -> None:
    # 2.6.36-2.6.37 add swap pages to the byte limit: 409600 swap pages add 409600 // 4096 = 100
    swap = MemInfo(total_swap_kb=409_600 * 4)
    v1 = MemcgInfo(limit_kb=400_000, memsw_limit_kb=1_000_000)
    assert _tp(_ev("memcg", memcg=v1, meminfo=swap), era="2.6.36")[:2] == (100_100, 100_100)
    # 64 kB pages: 25600 swap pages add 25600 // 65536 = 0 to 6250
    swap64 = MemInfo(total_swap_kb=409_600 * 4, page_size_kb=64)
    assert _tp(_ev("memcg", memcg=v1, meminfo=swap64), era="2.6.36")[:2] == (6250, 6250)
    # swap unknown there: at most 2^40 swap pages, which add 2^28
    assert _tp(_ev("memcg", memcg=MemcgInfo(limit_kb=400_000)), era="2.6.36")[:2] == (100_000, 100_000 + (1 << 28))
    # an upper bound of 2^40 pages or more is no bound
    at = MemcgInfo(limit_kb=400_000, memsw_limit_kb=(1 << 40) * 4)
    assert _tp(_ev("memcg", memcg=at))[:2] == (100_000, None)
    below = MemcgInfo(limit_kb=400_000, memsw_limit_kb=((1 << 40) - 1) * 4)
    assert _tp(_ev("memcg", memcg=below))[:2] == (100_000, (1 << 40) - 1)


def test_node_totalpages_are_whole_pages() -> None:
    mi = MemInfo(total_swap_kb=40_000, zone_present_kb={"0/DMA32": 400_002})
    lo, hi, _ = _tp(_ev("cpuset", meminfo=mi, mems_allowed="0"))
    assert lo == hi == 110_000 and isinstance(lo, int)


def test_proc_oom_score_through_analyze() -> None:
    # a global report: /proc's totalpages is the OOM's own
    (ev,) = parse_file(str(Path(__file__).parent / "fixtures" / "synthetic" / "7.0-global-adj-percent-d.log"))
    assert [(c["pid"], c["oom_score"]) for c in analyze(ev).candidates] == [(14002, 909), (14001, 752), (14003, 81)]
    # a memcg report: totalram from the machine, swap from the report (in 64 kB pages here)
    ev = memcg_event([row(1, 5000), row(2, 300_000)], killed=2)
    ev.meminfo = MemInfo(total_swap_kb=200_000 * 64, page_size_kb=64)
    assert [c["oom_score"] for c in analyze(ev, Context(totalram_pages=1_000_000)).candidates] == [833, 669]


def test_whole_pages_and_64k_pages_in_the_candidates() -> None:
    ev = memcg_event([row(1, 5000)], killed=1)
    ev.meminfo = MemInfo(total_swap_kb=800_001)
    assert _global_totalpages(ev, 1, Context(totalram_pages=1_000_000), 4) == 1_200_000
    assert isinstance(_global_totalpages(ev, 1, Context(totalram_pages=1_000_000), 4), int)
    # 2 page tables of 4 kB and 100 bytes: the count is in whole pages
    rows = [TaskRow(pid=1, uid=1000, tgid=1, total_vm=9, rss=5000, oom_score_adj=0, name="a",
                    pgtables_bytes=2 * 4096 + 100, swapents=0)]
    (c,) = analyze(memcg_event(rows, killed=1)).candidates
    assert c["pagetables"] == 2 and isinstance(c["pagetables"], int)
    # /proc/PID/oom_score with 64 kB pages: 100 page tables of 64 kB are 100 pages, not 1600
    rows = [TaskRow(pid=1, uid=1000, tgid=1, total_vm=9, rss=300_000, oom_score_adj=0, name="a",
                    pgtables_bytes=100 * 65536, swapents=0)]
    ctx = Context(page_size=65536, totalram_pages=1_000_000, total_swap_pages=200_000)
    (c,) = analyze(memcg_event(rows, killed=1), ctx).candidates
    assert (c["points"], c["oom_score"]) == (300_100, 833)  # (1000 + 300100000 / 1200000) * 2 / 3
    rows[0].pgtables_bytes = 10_000 * 65536  # 310000 points: (1000 + 258) * 2 / 3 = 838
    (c,) = analyze(memcg_event(rows, killed=1), ctx).candidates
    assert (c["points"], c["oom_score"]) == (310_000, 838)


def test_score_fits_only_without_the_root_bonus_guess() -> None:
    # 3.5-3.13, uid 0 guessed CAP_SYS_ADMIN: adj - 30 makes the range [470, 745]; without it [500, 775]
    from harness.core.analysis import _task, score_check

    era = era_by_name("3.10")
    r = TaskRow(pid=1, uid=0, tgid=1, total_vm=5121, rss=500, oom_score_adj=0, name="a")
    ev = OomEvent(select=SelectLine(pid=1, name="a", score=760),
                  memcg=MemcgInfo(usage_kb=4000, memsw_usage_kb=4800))
    d = score_check(ev, era, _task(r, era, Context(), set()), r, 1000, 1000, 4, "n", None)
    assert (d["model_score_range"], d["score_check"]) == ([500, 775], "agree")
    assert d["score_note"].endswith("; totalpages 1000 (n); it fits only without CAP_SYS_ADMIN (uid 0 without the "
                                    "capability: no root bonus)")
    ev.select.score = 780
    d = score_check(ev, era, _task(r, era, Context(), set()), r, 1000, 1000, 4, "n", None)
    assert (d["model_score_range"], d["score_check"]) == ([470, 745], "disagree")


def test_thread_of_another_name_is_not_the_selected_task() -> None:
    ev = memcg_event([row(1, 5000), row(2, 100)], killed=1, version="4.4.0")
    ev.select, ev.summary = SelectLine(pid=1234, name="other", score=5), None
    assert analyze(ev).score["score_note"] == "the selected task 1234 is not in the task table"
