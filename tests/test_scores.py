"""The kernel's own printed score (<= 5.0 ``Kill process N (comm) score S``) against the model's.

The model's score is computed from the report alone, never from the printed score: a real report
that prints its score is a test that the model reproduces the kernel's arithmetic of that era.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.core.analysis import Context, _task, analyze_all, score_check
from harness.core.eras import ERA_BY_LABEL, era_by_name
from harness.core.events import MemcgInfo, OomEvent, SelectLine, TaskRow
from harness.core.model import Task, oom_badness, totalpages_memcg
from harness.core.parser import parse_file, parse_text

PUB = Path(__file__).parent / "fixtures" / "public"
INDEX = {d["file"]: d for d in json.loads((PUB / "index.json").read_text())}


def first(name: str, **ctx) -> dict:
    return analyze_all(parse_file(str(PUB / name)), Context(**ctx) if ctx else None)[0].to_dict()


# --- every public report that prints a score ------------------------------------------------------

PRINTED = sorted(n for n, m in INDEX.items() if any(e["printed_score"] is not None for e in m["expect"]))


def test_the_printed_scores_are_the_kernels() -> None:
    """The score comes from the report's own Kill line: read it back from the text."""
    assert len(PRINTED) >= 15
    for name in PRINTED:
        text = (PUB / name).read_text()
        for e in INDEX[name]["expect"]:
            if e["printed_score"] is not None:
                assert f"process {e['selected']} (" in text and f" score {e['printed_score']} " in text, name


@pytest.mark.parametrize("name", PRINTED)
def test_printed_score_is_never_contradicted(name: str) -> None:
    """Where the model can score the selected task, the kernel's number is inside the model's bounds
    (or the model names the era of a vendor back-port it fits); nowhere does it disagree."""
    for d in (a.to_dict() for a in analyze_all(parse_file(str(PUB / name)))):
        if d["printed_score"] is None:
            continue
        assert d["score_check"] in ("agree", "consistent", "other-era", "unchecked"), (d["score_check"],
                                                                                       d["score_note"])
        assert d["score_note"], "every score check says what it rests on"
        if d["score_check"] == "unchecked":
            # only for a stated reason the report itself gives
            assert any(w in d["score_note"] for w in ("not in the task table", "totalpages is not in the report",
                                                       "no task table")), d["score_note"]


def test_exact_agreement_where_the_report_has_every_input() -> None:
    """3.6+ tables print swapents and nr_ptes, and a memcg with memsw = limit pins totalpages."""
    d = first("3.x-devto-lxc-memcg-v1-collapsed-whitespace.log")
    assert (d["printed_score"], d["model_score"], d["score_check"]) == (1110, 1110, "agree")
    d = first("3.7-lkml-memcg-hierarchy-after-patch-annotated.log")
    assert (d["printed_score"], d["model_score"], d["score_check"]) == (669, 669, "agree")


def test_32_mysqld_swap_and_page_tables_are_not_printed() -> None:
    """v3.2 oom_badness(): points = rss + nr_ptes + swapents, * 1000 / totalpages.  The 3.2 table prints
    rss only: 8033034 pages alone give 921; the swap in use (all 488191 pages) and total_vm / 512 page
    tables bound it at 979.  The kernel printed 978."""
    d = first("3.2-ubuntu1204-mysqld-global-swap-numa-dmesg.log")
    assert d["era"] == "2.6.39-3.4" and d["printed_score"] == 978
    assert d["model_score"] is None and d["model_score_range"] == [921, 979] and d["score_check"] == "agree"
    assert "swapents or page tables" in d["score_note"]
    # rss alone is 921, the old comparison's "model says 921"
    assert 8033034 * 1000 // d["totalpages"] == 921


def test_rhel6_memcg_limit_adds_swap_pages_to_bytes() -> None:
    """RHEL 6.2's 2.6.32-220 printed 1000 for a task of 12903 resident pages in a 100 MiB memcg with a
    1 GiB memsw limit and 2 GiB of swap.  v2.6.36 mem_cgroup_get_limit() adds total_swap_pages (pages)
    to the byte limit: totalpages = min(104857600 + 516094, 1 GiB) >> 12 = 25725, and the task's swap
    (memsw usage - usage = 25960 pages) takes it past 1000.  With 2.6.38's fix (f3e8eb70b180) the
    limit is 262144 pages and the score could not exceed 148: the old comparison's "model says 49"."""
    d = first("2.6.32-rhel6-lkml-memcg-v1-memsw-syslog.log")
    assert d["era"] == "2.6.36-2.6.37" and d["totalpages"] == 25725
    assert d["printed_score"] == 1000 and d["score_check"] == "agree" and d["model_score_range"] == [501, 1000]
    fixed = first("2.6.32-rhel6-lkml-memcg-v1-memsw-syslog.log", era="2.6.38")
    assert fixed["totalpages"] == 262144 and fixed["model_score_range"][1] < 1000
    # forced to 2.6.38, the score does not fit; the analysis names the era it does fit
    assert fixed["score_check"] == "other-era" and "fits era 2.6.36-2.6.37, not 2.6.38" in fixed["score_note"]


def test_rhel6_642_counts_page_tables() -> None:
    """RHEL 6.8's 2.6.32-642 printed 442 where 2.6.36's formula gives 441 and no swap exists: only the
    2.6.39 nr_ptes term (f755a042d82b, unprinted in this table) reaches it.  The analysis says so."""
    d = first("2.6.32-rhel6-aliyun-java-global-noswap-syslog.log")
    assert d["printed_score"] == 442 and d["model_score_range"] == [441, 441]
    assert d["score_check"] == "other-era" and "2.6.39-3.4" in d["score_note"] and "back-port" in d["score_note"]


def test_310_memcg_score_zero_means_swap_not_printed() -> None:
    """RHEL 7's 3.10 printed score 0 for sh with 359 pages (349 after the 3 % root bonus): 3.10's
    mem_cgroup_out_of_memory() prints chosen_points * 1000 / totalpages, and totalpages is the 4 kB
    limit plus total swap (mem_cgroup_get_limit(), swappiness != 0, memsw unlimited), which a 3.10 memcg
    report does not print.  The model gives no score of its own; the printed 0 only says totalpages is
    above 349000 (>= 1.3 GiB of swap) - the old comparison's 349000 assumed no swap at all."""
    d = first("3.10-rhel7-linuxjournal-memcg-v1-journal-wrapped.log")
    assert d["printed_score"] == 0 and d["model_score"] is None and d["model_score_range"] is None
    assert d["score_check"] == "consistent"
    assert "totalpages is not in the report" in d["score_note"] and "349001.." in d["score_note"]
    # with the machine's swap known, the model scores it itself and agrees: 2 GiB of swap
    known = first("3.10-rhel7-linuxjournal-memcg-v1-journal-wrapped.log", total_swap_pages=524288)
    assert (known["model_score"], known["score_check"]) == (0, "agree")
    few = first("3.10-rhel7-linuxjournal-memcg-v1-journal-wrapped.log", total_swap_pages=1000)
    assert few["model_score"] == 349 * 1000 // 1001 and few["score_check"] == "disagree"


def test_k3s_score_fits_without_cap_sys_admin() -> None:
    d = first("4.15-ubuntu1804-k3s-memcg-v1-dmesg-T-score1718.log")
    assert d["printed_score"] == 1718 and d["score_check"] == "consistent"
    assert "without CAP_SYS_ADMIN" in d["score_note"] and "fits totalpages 31488..32050" in d["score_note"]


def test_score_never_comes_from_the_printed_score() -> None:
    """Change the printed number: the model's score and range stay, only the check changes."""
    name = "3.x-devto-lxc-memcg-v1-collapsed-whitespace.log"
    text = (PUB / name).read_text()
    forged = text.replace("score 1110 or sacrifice", "score 1109 or sacrifice")
    assert forged != text
    d = analyze_all(parse_text(forged))[0].to_dict()
    assert (d["printed_score"], d["model_score"], d["score_check"]) == (1109, 1110, "disagree")


def test_modern_reports_print_no_score() -> None:
    d = first("6.11-stress-ng-global-noswap-adj1000-dmesg.log")
    assert d["printed_score"] is None and d["model_score"] is None and d["score_check"] == "unchecked"
    assert "5.1" in d["score_note"]


# --- the model's arithmetic behind it --------------------------------------------------------------


def test_memcg_limit_unit_bug_only_before_2638() -> None:
    args = dict(limit=25600, total_swap_pages=516094, memsw_limit=262144)
    assert totalpages_memcg(era_by_name("2.6.36"), **args) == 25600 + 516094 // 4096
    assert totalpages_memcg(era_by_name("2.6.37"), **args) == 25725
    assert totalpages_memcg(era_by_name("2.6.38"), **args) == 262144
    assert totalpages_memcg(era_by_name("3.4"), **args) == 262144
    # the page size is the kernel's PAGE_SHIFT: 64 kB pages add even less
    assert totalpages_memcg(era_by_name("2.6.36"), page_size=65536, **args) == 25600 + 516094 // 65536


def test_era_boundaries_of_the_split() -> None:
    assert era_by_name("2.6.37").label == "2.6.36-2.6.37" and era_by_name("2.6.38").label == "2.6.38"
    assert ERA_BY_LABEL["2.6.38"].memcg_limit_adds_swap_pages_to_bytes is False
    assert ERA_BY_LABEL["2.6.36-2.6.37"].memcg_limit_adds_swap_pages_to_bytes is True
    # the rest of 2.6.38's behaviour is 2.6.36's: the 0..1000 scale, no page tables
    t = Task(pid=1, name="a", rss=5000, nr_ptes=100)
    assert oom_badness(t, 10000, ERA_BY_LABEL["2.6.38"]) == oom_badness(t, 10000, ERA_BY_LABEL["2.6.36-2.6.37"]) == 500


# --- the model's score when the table leaves a counter out (score_check on a report built field by field) ---

def _scored(era_name: str, row: TaskRow, printed: int, lo: int | None = 1000, hi: int | None = 1000, pkb: int = 4,
            swap_kb: tuple[int, int] | None = (4000, 4800)) -> dict:
    """score_check() for *row* selected with *printed*; totalpages 1000 makes one page one unit of score.
    *swap_kb*: the memcg's (usage, memory+swap usage) in kB, the swap-in-use bound (200 pages by default)."""
    era = era_by_name(era_name)
    ev = OomEvent(select=SelectLine(pid=row.pid, name=row.name, score=printed),
                  memcg=MemcgInfo(usage_kb=swap_kb[0], memsw_usage_kb=swap_kb[1]) if swap_kb else None)
    return score_check(ev, era, _task(row, era, Context(), set()), row, lo, hi, pkb, "n", None)


def _row(**kw) -> TaskRow:
    return TaskRow(**{"pid": 1, "uid": 1000, "tgid": 1, "total_vm": 5121, "rss": 500, "oom_score_adj": 0, "name": "a",
                      **kw})


def test_score_range_bounds_unprinted_swap_and_page_tables() -> None:
    # 3.5-3.13 counts nr_ptes: rss 500, swap 0..200 (swap in use), page tables 0..ceil(5121 / 512) + 64 = 75
    d = _scored("3.10", _row(), 500)
    assert d == {"printed_score": 500, "model_score": None, "model_score_range": [500, 775], "score_check": "agree",
                 "score_note": "the report's table does not print swapents or page tables: the model bounds the score "
                               "(swap by the swap in use, page tables by total_vm / 512 + 64); totalpages 1000 (n)"}
    assert _scored("3.10", _row(), 775)["score_check"] == "agree"
    assert _scored("3.10", _row(), 499)["score_check"] == "disagree"
    assert _scored("3.10", _row(), 776)["score_check"] == "disagree"
    # no swap usage printed: no upper bound
    d = _scored("3.10", _row(), 10**6, swap_kb=None)
    assert (d["model_score_range"], d["score_check"]) == ([500, None], "agree")
    assert _scored("3.10", _row(), 499, swap_kb=None)["score_check"] == "disagree"
    # only the page tables unprinted
    d = _scored("3.10", _row(swapents=7), 0)
    assert d["model_score_range"] == [507, 582] and d["score_note"].startswith(
        "the report's table does not print page tables:")


def test_score_range_pgtables_bytes_unprinted_with_64k_pages() -> None:
    # 4.15+ count page-table bytes; 64 kB pages map 8192 pages per table: ceil(16385 / 8192) + 64 = 67 pages
    d = _scored("4.15", _row(total_vm=16385, swapents=0), 567, pkb=64)
    assert (d["model_score_range"], d["score_check"]) == ([500, 567], "agree")
    assert d["score_note"] == ("the report's table does not print page tables: the model bounds the score (swap by "
                               "the swap in use, page tables by total_vm / 8192 + 64); totalpages 1000 (n)")
    assert _scored("4.15", _row(total_vm=16385, swapents=0), 568, pkb=64)["score_check"] == "disagree"


def test_exact_score_with_page_table_bytes_and_ineligible() -> None:
    d = _scored("4.15", _row(swapents=0, pgtables_bytes=10 * 4096), 510)
    assert (d["model_score"], d["model_score_range"], d["score_check"]) == (510, [510, 510], "agree")
    assert d["score_note"] == "totalpages 1000 (n)"
    # a task the model finds ineligible scores 0
    d = _scored("4.15", _row(swapents=0, pgtables_bytes=0, oom_score_adj=-1000), 0)
    assert (d["model_score"], d["score_check"]) == (0, "agree")


def test_score_with_totalpages_unknown() -> None:
    # 500 pages print 250..500 for totalpages 1000..2000; 100 needs 4951..5000 (500000 // tp == 100)
    d = _scored("3.10", _row(swapents=0, nr_ptes=0), 100, lo=1000, hi=2000)
    assert d == {"printed_score": 100, "model_score": None, "model_score_range": None, "score_check": "disagree",
                 "score_note": "totalpages is not in the report (n): only the printed score could pin it down, so the "
                               "model gives no score of its own; no totalpages from 1000 to 2000 gives it"}
    d = _scored("3.10", _row(swapents=0, nr_ptes=0), 100, lo=1000, hi=None)
    assert (d["score_check"], d["score_note"]) == (
        "consistent", "totalpages is not in the report (n): only the printed score could pin it down, so the model "
                      "gives no score of its own; the printed score fits totalpages 4951..5000")
    d = _scored("3.10", _row(swapents=0, nr_ptes=0), 1000, lo=1000, hi=None)
    assert d["score_check"] == "disagree"
    assert d["score_note"].endswith("; no totalpages from 1000 to unbounded gives it")
