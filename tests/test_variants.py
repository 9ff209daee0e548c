"""Rule variants (harness/variants.py): name the selection rule a kernel changed."""

from __future__ import annotations

from pathlib import Path

from harness.core.analysis import Context, analyze_all
from harness.core.model import Task
from harness.core.parser import parse_text
from harness.core.variants import VARIANTS, check_scenario, era_variants, summarize

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
