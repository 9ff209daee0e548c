"""Rule variants (harness/variants.py): name the selection rule a kernel changed."""

from __future__ import annotations

import json
from pathlib import Path

from harness.core.analysis import Context, analyze_all
from harness.core.model import Task
from harness.core.parser import parse_text
from harness.core.variants import VARIANTS, check_scenario, era_variants, explain_rows, summarize

FIX = Path(__file__).parent / "fixtures" / "vm" / "6.12-adj-positive.log"
CTX = Context(total_swap_pages=0, cgroup_v2=True)


def _adj_ignored_log() -> str:
    """The 6.12 adj-positive report, as a kernel whose badness ignores oom_score_adj writes it:
    the big task (14011 rss) is killed, not the small one with adj 800."""
    text = FIX.read_text()
    text = text.replace("task=small,pid=139,uid=65534", "task=big,pid=140,uid=0")
    return text.replace("Killed process 139 (small)", "Killed process 140 (big)")


def test_stock_report_is_explained_by_the_model() -> None:
    c = check_scenario(parse_text(FIX.read_text()), CTX)
    assert c["agree"]["model"] == [1, 1]
    assert summarize([("adj-positive", c)])["text"] == ""


def test_adj_ignored_kernel_is_named() -> None:
    events = parse_text(_adj_ignored_log())
    assert analyze_all(events, CTX)[0].verdict == "mismatch"
    c = check_scenario(events, CTX)
    assert c["agree"]["model"] == [0, 1]
    assert c["agree"]["adj-ignored"] == [1, 1]
    assert c["agree"]["adj-positive-clamped"] == [1, 1]
    assert c["agree"]["swap-not-counted"] == [0, 1]
    s = summarize([("adj-positive", c)])
    names = [v["variant"] for v in s["consistent"]]
    assert "adj-ignored" in names and "swap-not-counted" not in names
    assert s["text"].startswith("consistent with: oom_score_adj not applied (adj-ignored); 1 of 1 scenarios")


def test_oom_score_observations_discriminate() -> None:
    """/proc/PID/oom_score before the trigger: a negative adj ignored shows there too."""
    tp = 131072
    t = Task(pid=1, name="a", rss=1000, oom_score_adj=-500)
    ignored = (1000 + 1000 * 1000 // tp) * 2 // 3  # what a kernel without the adj term reports
    c = check_scenario([], CTX, [(t, ignored)], "5.10-6.19", tp)
    assert c["agree"]["model"] == [0, 1]
    assert c["agree"]["adj-ignored"] == [1, 1]
    assert c["agree"]["adj-negative-clamped"] == [1, 1]
    assert c["agree"]["adj-positive-clamped"] == [0, 1]


def test_no_variant_consistent_is_said() -> None:
    agree = {"model": [0, 1], **{v.name: [0, 1] for v in VARIANTS}}
    bad = {"rules": {v.name: v.rule for v in VARIANTS}, "agree": agree}
    ok = {"rules": {}, "agree": {"model": [1, 1]}}
    s = summarize([("x", bad), ("y", ok)])
    assert s["consistent"] == [] and "no single rule variant" in s["text"] and "x" in s["text"]


def test_era_variants_are_the_neighbours() -> None:
    from harness.core.eras import ERAS

    vs = era_variants(ERAS[-1])
    assert [v.era for v in vs] == [ERAS[-2].label]


def test_oom_score_disagreement_alone_is_explained_too() -> None:
    """A rule change can leave every victim alone and still move oom_score (swap not counted)."""
    only_scores = {"rules": {"adj-ignored": "x", "swap-not-counted": "swap"}, "victims": [1, 1],
                   "agree": {"model": [1, 2], "adj-ignored": [1, 2], "swap-not-counted": [2, 2]}}
    s = summarize([("s", only_scores)])
    assert s["victims_differ"] == [] and s["unexplained"] == ["s"]
    assert s["text"] == "consistent with: swap (swap-not-counted); 1 of 1 scenarios"
    none = {"rules": {"adj-ignored": "x"}, "victims": [1, 1], "agree": {"model": [1, 2], "adj-ignored": [1, 2]}}
    assert "only oom_score values differ" in summarize([("s", none)])["text"]


def test_victims_count_excludes_oom_score_observations() -> None:
    tp = 131072
    t = Task(pid=1, name="a", rss=1000, oom_score_adj=-500)
    c = check_scenario(parse_text(FIX.read_text()), CTX, [(t, 0)], "5.10-6.19", tp)
    assert c["victims"] == [1, 1] and c["agree"]["model"][1] == 2


# --- a run's rows name the rule; the memcg-global-totalpages variant, on recorded runs --------------

RUNS = Path(__file__).parent / "fixtures" / "runs"


def test_mismatching_rows_name_the_rule_consistent_with_the_run() -> None:
    """A kernel built with oom_score_adj ignored (tests/data/kernel-patches/oom-adj-ignored.patch): its
    scenarios recorded "unexplained"; the run's rows, as handed out, name the rule instead."""
    from harness.reporting.results import load_run

    _env, rows, _status = load_run(str(RUNS / "6.12-built-adj-ignored"))
    by = {r["scenario"]: r for r in rows}
    for s in ("adj-positive", "memcg-v2-swap-max"):
        assert by[s]["verdict"] == "mismatch"
        assert by[s]["reason"].startswith(
            "consistent with: oom_score_adj not applied (adj-ignored; 4 of 4 scenarios)"), by[s]["reason"]
        assert "unexplained" not in by[s]["reason"] and "the model picks" in by[s]["reason"]
        assert "adj-ignored" in by[s]["rule_variants"]
    assert by["larger-of-two"]["reason"] == "highest points (10336) of 3 eligible"
    assert "rule_variants" not in by["larger-of-two"]
    assert explain_rows(rows) == rows  # twice is once


def test_rule_reaches_ktap_and_junit() -> None:
    from harness.reporting.junit import junit_xml
    from harness.reporting.ktap import ktap
    from harness.reporting.results import load_run

    run = str(RUNS / "6.12-built-adj-ignored")
    assert "consistent with: oom_score_adj not applied (adj-ignored" in ktap(load_run(run)[1])
    assert "consistent with: oom_score_adj not applied (adj-ignored" in junit_xml([run])


def test_no_fitting_variant_is_said_in_the_row() -> None:
    agree = {"model": [0, 1], **{v.name: [0, 1] for v in VARIANTS}}
    bad = {"rules": {v.name: v.rule for v in VARIANTS}, "agree": agree}
    rows = [{"scenario": "x", "verdict": "mismatch", "reason": "unexplained: the model picks a", "variants": bad},
            {"scenario": "y", "verdict": "match", "reason": "ok",
             "variants": {"rules": {}, "agree": {"model": [1, 1]}}}]
    out = explain_rows(rows)
    assert out[0]["reason"].startswith("unexplained: the model picks a; no single rule variant is consistent")
    assert out[1] == rows[1] and rows[0]["reason"] == "unexplained: the model picks a"  # inputs untouched


def _host_memcg_run() -> tuple[list, Context]:
    """The recorded host run: +100 adj in a 64 MiB memcg, the larger task killed (6.18, no swap)."""
    run = RUNS / "6.18-host-adj-small-positive"
    row = json.loads((run / "verdicts.jsonl").read_text().splitlines()[0])
    tp = row["oom_score_check"]["totalpages"]  # the machine's totalram (no swap on that host)
    return parse_text((run / "kernel.log").read_text()), Context(total_swap_pages=0, totalram_pages=tp, cgroup_v2=False)


def test_memcg_global_totalpages_is_refuted_by_a_memcg_oom_with_an_adj() -> None:
    events, ctx = _host_memcg_run()
    assert events[0].kind == "memcg" and analyze_all(events, ctx)[0].verdict == "match"
    c = check_scenario(events, ctx)
    assert c["agree"]["memcg-global-totalpages"] == [0, 1]  # it would kill small (adj +100 of 6.2M pages)
    assert c["distinct"]["memcg-global-totalpages"] == 1
    assert "memcg-global-totalpages" not in summarize([("adj-small-positive", c)])["indistinguishable"]
    # the same kill seen by a kernel that used the machine's totalpages: named
    killed_small = parse_text((RUNS / "6.18-host-adj-small-positive" / "kernel.log").read_text()
                              .replace("task=big,pid=3770", "task=small,pid=3769")
                              .replace("Killed process 3770 (big)", "Killed process 3769 (small)"))
    s = summarize([("adj-small-positive", check_scenario(killed_small, ctx))])
    assert "memcg-global-totalpages" in [v["variant"] for v in s["consistent"]], s


def test_memcg_global_totalpages_is_not_distinguishable_everywhere() -> None:
    """Not told apart: a memcg OOM whose adj outweighs the others under both totalpages (6.12
    adj-positive: +800 of 64 MiB or of the whole VM, small dies either way), a global OOM (same
    totalpages by definition), and /proc/PID/oom_score (the machine's totalpages under both rules)."""
    ctx = Context(total_swap_pages=0, totalram_pages=125000, cgroup_v2=True)
    c = check_scenario(parse_text(FIX.read_text()), ctx, [(Task(pid=1, name="a", rss=1000, oom_score_adj=100), 700)],
                       "5.10-6.19", 125000)
    assert c["agree"]["memcg-global-totalpages"] == [1, 1]  # victims only: no oom_score observation
    assert c["distinct"]["memcg-global-totalpages"] == 0
    assert "memcg-global-totalpages" in summarize([("adj-positive", c)])["indistinguishable"]
    glob = Path(__file__).parent / "fixtures" / "vm" / "6.12-global-noswap.log"
    g = check_scenario(parse_text(glob.read_text()), Context(total_swap_pages=0, totalram_pages=125000))
    assert g["distinct"]["memcg-global-totalpages"] == 0


def test_memcg_global_totalpages_needs_the_machines_ram() -> None:
    """A memcg report prints neither RAM nor swap totals: without them the variant is not tried."""
    c = check_scenario(parse_text(FIX.read_text()), CTX)
    assert "memcg-global-totalpages" not in c["agree"]
