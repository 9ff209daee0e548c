"""Every cause the analysis gives for a mismatch or a missing victim, on reports built field by field.

Public and VM fixtures are (rightly) matches; these pin the words and the numbers of each other
verdict, so a broken explanation fails a test instead of reaching a user.
"""

from __future__ import annotations

from harness.core.analysis import _nodes, analyze
from harness.core.events import KillRecord, MemcgInfo, OomEvent, Summary, TaskRow, Trigger


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
