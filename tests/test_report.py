"""``oom-harness report`` / :mod:`harness.reporting.report`: the kernel comparison from saved run folders.

Runs are written with the harness's own :class:`harness.reporting.results.RunRecorder`, so their layout is
exactly what ``oom-harness run`` leaves; real runs found under ``results/`` are used too when there
are any (a fresh clone has none).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import matplotlib  # noqa: F401  (a dependency of the harness: a broken install fails, it does not skip)
import pandas as pd
import pytest
from conftest import unavailable

from harness.errors import HarnessError
from harness.machine.record import ScenarioRecord
from harness.reporting.report import build_report, kernel_order, parse_formats
from harness.reporting.results import RunRecorder, load_run

ROOT = Path(__file__).parent.parent
REAL = ROOT / "results"
LAYOUT = {"new": "6.8+ (rss_anon rss_file rss_shmem)", "old": "4.19-6.7 (pgtables_bytes)"}
TAGS = {
    "new": ["dump_stack:uid", "header:gfp_symbolic", "killed:prefixed", "summary", "table:6.8+", "table:rss_split"],
    "old": ["header:gfp_symbolic", "killed:prefixed", "summary", "table:4.19-6.7"],
}


def _record(scenario: str, kernel: str, tasks: dict[str, int], killed: str | None, *, fmt: str = "new",
            predicted: str | None = None, ttk: float = 0.05, expect: str | None = None,
            verdict: str | None = None) -> dict[str, Any]:
    """A scenario record as the engine hands it to RunRecorder.add (the fields of a real run)."""
    pids = {name: 100 + i for i, name in enumerate(tasks)}
    ranked = sorted(tasks, key=lambda n: -tasks[n])
    predicted = predicted or ranked[0]
    cands = [
        {"rank": i + 1, "pid": pids[n], "tgid": pids[n], "name": n, "uid": 0, "points": tasks[n], "eligible": True,
         "rss": tasks[n] - 30, "swapents": 0, "pagetables": 30, "oom_score_adj": 0, "oom_score": 600}
        for i, n in enumerate(ranked)
    ]
    ov = {"pid": pids[killed], "name": killed, "workload": killed} if killed else None
    pv = {"pid": pids[predicted], "name": predicted, "workload": predicted}
    runner = next((n for n in ranked if n != killed), None)
    verdict = verdict or ("match" if killed == predicted else "mismatch")
    event = {
        "index": 0, "complete": True, "kind": "memcg", "kernel": kernel, "era": "5.10-6.19",
        "observed_victim": {"pid": ov["pid"], "name": killed} if ov else None,
        "predicted_victim": {"pid": pv["pid"], "name": predicted}, "verdict": verdict,
        "candidates": cands, "table_layout": LAYOUT[fmt], "format": TAGS[fmt],
    }
    return {
        "scenario": scenario, "backend": "vm", "kernel": kernel,
        "expected": {"outcome": "kill", "victim": expect or killed},
        "observed_victim": ov, "predicted_victim": pv,
        "victim_points": tasks.get(killed) if killed else None,
        "runner_up": {"pid": pids[runner], "name": runner, "workload": runner, "points": tasks[runner]}
        if runner else None,
        "report_format": LAYOUT[fmt], "outcome": "kill" if killed else "no-oom", "verdict": verdict,
        "as_expected": (killed == (expect or killed)), "reason": f"highest points of {len(tasks)} eligible",
        "time_to_kill_s": ttk, "oom_score_check": {"agree": True, "era": "5.10-6.19", "tasks": []},
        "timings": {"setup": 0.2, "fill": 0.3, "kill": ttk, "log": 0.01, "parse_model": 0.01},
        "duration_s": 0.6,
        "events": [event],
        "snapshot": [{"pid": pids[n], "name": n, "workload": n} for n in tasks],
        "kernel_log": f"[ 1.0] {killed} invoked oom-killer\n",
    }


def _run(root: Path, label: str, records: list[dict[str, Any]], *, partial: bool = False) -> Path:
    backend = "host" if label == "host" else "vm"
    rec = RunRecorder(str(root), backend=backend, kernel_label=label,
                      env={"kernel": f"{label}.0-test", "cgroup_version": 2}, run_id=f"run-{label}")
    for r in records:
        r = dict(r, backend=backend, kernel_label=label)
        rec.add(ScenarioRecord.from_dict(r))
    rec.close("complete")
    d = Path(rec.dir)
    if partial:  # as a run that was SIGKILLed: no summary, a RUNNING marker whose pid is gone
        (d / "summary.json").unlink()
        p = subprocess.Popen([sys.executable, "-c", "pass"])
        p.wait()
        (d / "RUNNING").write_text(str(p.pid))
    return d


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("results")
    _run(root, "host", [
        _record("larger-of-two", "host", {"big": 10400, "small": 6200}, "big", ttk=0.02),
        _record("near-tie", "host", {"a": 8300, "b": 8400}, "b", ttk=0.03),
        _record("single-hog", "host", {"hog": 17900}, "hog", ttk=0.06),
    ])
    _run(root, "6.1", [
        _record("larger-of-two", "6.1", {"big": 10300, "small": 6150}, "big", fmt="old", ttk=0.04),
        # the kernel picked the other task of a near tie: a victim (and verdict) difference
        _record("near-tie", "6.1", {"a": 8260, "b": 8250}, "a", predicted="a", fmt="old", ttk=0.05, expect="b"),
        _record("single-hog", "6.1", {"hog": 17800}, "hog", fmt="old", ttk=0.10),
        # ran twice with different victims: kept as two attempts, tallied in the comparison
        _record("single-hog", "6.1", {"hog": 17810}, "hog", fmt="old", ttk=0.12),
    ])
    _run(root, "5.10", [
        _record("larger-of-two", "5.10", {"big": 10320, "small": 6160}, "big", fmt="old", ttk=0.08),
    ], partial=True)
    (root / "bench").mkdir()  # not a run folder: left out quietly when a results root is given
    return root


@pytest.fixture(scope="module")
def report(runs: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    out = tmp_path_factory.mktemp("report")
    rep = build_report([str(runs)], str(out))
    rep.out = out
    return rep


def test_partial_run_is_read_and_flagged(runs: Path, report: Any) -> None:
    env, rows, status = load_run(str(runs / "run-5.10"))
    assert status == "killed" and len(rows) == 1
    assert [r.run_id for r in report.partial_runs] == ["run-5.10"]
    md = report.markdown
    assert "partial run run-5.10" in md and "killed" in md
    # its row is in the table, flagged
    line = next(ln for ln in md.splitlines() if ln.startswith("| larger-of-two | 5.10 |"))
    assert "partial run" in line


def test_markdown_lists_differences_first(report: Any) -> None:
    md = report.markdown
    assert md.index("## Differences between kernels") < md.index("## All scenarios") < md.index("## Runs")
    diff = md[md.index("### Victim, verdict or expectation differs"):md.index("### Report format differs")]
    # near-tie: b killed on host, a on 6.1 -> listed with what differs and each kernel's cell
    row = next(ln for ln in diff.splitlines() if ln.startswith("| near-tie |"))
    assert "victim" in row and "b · match · yes" in row and "a · match · NO" in row
    assert "larger-of-two" not in diff  # same victim everywhere: only its format differs
    fmt = md[md.index("### Report format differs"):md.index("## All scenarios")]
    # summarised per kernel pair (kernels that print alike are one side), not per scenario
    pairs = [ln for ln in fmt[:fmt.index("Not run on every kernel")].splitlines() if ln.startswith("- ")]
    assert len(pairs) == 1, fmt
    assert pairs[0].startswith("- host vs 5.10 = 6.1: 3 of 3 common scenario(s)")
    assert LAYOUT["old"] in pairs[0] and LAYOUT["new"] in pairs[0]
    assert "only 5.10/6.1 print table:4.19-6.7" in pairs[0] and "only host prints dump_stack:uid" in pairs[0]
    head = fmt[:fmt.index("Not run on every kernel")]
    assert "larger-of-two" not in head and "near-tie" not in head
    # the full table: kernels in version order within a scenario, host first
    full = [ln.split(" | ")[1] for ln in md[md.index("## All scenarios"):].splitlines()
            if ln.startswith("| larger-of-two | ")]
    assert full == ["host", "5.10", "6.1"]


def test_the_report_opens_on_the_matrix(report: Any) -> None:
    md = report.markdown
    assert md.index("## Matrix") < md.index("## Differences between kernels")
    mx = md[md.index("## Matrix"):md.index("## Differences between kernels")]
    rows = {ln.split(" | ")[0].lstrip("| "): ln.strip("| ").split(" | ")[1:]
            for ln in mx.splitlines() if ln.startswith("| ") and not ln.startswith("| scenario")}
    assert mx.splitlines()[2] == "| scenario | host | 5.10 | 6.1 |"
    assert rows["larger-of-two"] == ["big ✓", "big ✓", "big ✓"]  # all alike: nothing highlighted
    # two kernels that disagree: no majority, both highlighted; the ✗ says not as expected
    assert rows["near-tie"] == ["**b ✓**", "–", "**a ✗**"]
    assert rows["single-hog"] == ["hog ✓", "–", "hog ✓"]  # two attempts on 6.1, same victim
    assert rows["_as expected_"] == ["_3/3 ✓_", "_1/1 ✓_", "_2/3 ✓_"]


def test_matrix_highlights_the_minority(tmp_path: Path) -> None:
    from harness.reporting.report import aggregate, load_runs, matrix, rows_frame

    for k in ("host", "6.1", "6.12", "7.2"):
        killed = "a" if k == "6.12" else "b"
        recs = [_record("near-tie", k, {"a": 8300, "b": 8400}, killed, predicted="b", expect="b"),
                _record("single-hog", k, {"hog": 100}, "hog")]
        if k == "7.2":
            recs[1] = dict(recs[1], verdict="skipped", as_expected=None, outcome="skipped", observed_victim=None)
        _run(tmp_path, k, recs)
    runs, _ = load_runs([str(tmp_path)])
    rows, classes = matrix(aggregate(rows_frame(runs)), ["host", "6.1", "6.12", "7.2"])
    assert rows[0] == ["near-tie", "b ✓", "b ✓", "a ✗ mismatch", "b ✓"]
    assert classes[0] == ["", "", "", "odd bad", ""]
    assert rows[1] == ["single-hog", "hog ✓", "hog ✓", "hog ✓", "skipped"] and classes[1][4] == "skip"


def test_repeats_are_kept_and_aggregated(report: Any, tmp_path: Path) -> None:
    rows = pd.read_csv(report.out / "rows.csv")
    hog = rows[(rows.scenario == "single-hog") & (rows.kernel_label == "6.1")]
    assert sorted(hog.attempt) == [1, 2]
    agg = pd.read_csv(report.out / "comparison.csv")
    a = agg[(agg.scenario == "single-hog") & (agg.kernel_label == "6.1")].iloc[0]
    assert a.attempts == 2 and a.victim_points == pytest.approx(17805)
    assert a.time_to_kill_s == pytest.approx(0.11) and a.time_to_kill_max_s == pytest.approx(0.12)


def test_html_is_one_self_contained_file(report: Any) -> None:
    text = (report.out / "comparison.html").read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert "<style>" in text and "<link" not in text and "<script" not in text
    assert not re.search(r"""(src|href)=["'](https?:|//|[^"'#d])""", text), "external reference in the HTML"
    imgs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(imgs) >= 2
    assert base64.b64decode(imgs[0])[:8] == b"\x89PNG\r\n\x1a\n"
    assert text.index("Matrix") < text.index("Differences between kernels") < text.index("All scenarios")
    assert '<table class="matrix">' in text and '<td class="odd" title="differs from the other kernels">b ✓' in text
    assert "partial run run-5.10" in text


def test_csv_and_parquet_load_back(report: Any) -> None:
    csv = pd.read_csv(report.out / "comparison.csv")
    pq = pd.read_parquet(report.out / "comparison.parquet")
    assert len(csv) == len(pq) == 7  # 3 scenarios x host/6.1 + larger-of-two on 5.10
    assert list(csv.columns) == list(pq.columns)
    for col in ("scenario", "kernel_label", "observed_victim", "predicted_victim", "verdict", "as_expected",
                "victim_points", "runner_up_points", "time_to_kill_s", "report_format", "format_tags", "partial"):
        assert col in pq.columns, col
    nt = pq[(pq.scenario == "near-tie")].set_index("kernel_label")
    assert nt.loc["host", "observed_victim"] == "b" and nt.loc["6.1", "observed_victim"] == "a"
    assert bool(pq[pq.kernel_label == "5.10"].partial.iloc[0]) is True
    rows = pd.read_parquet(report.out / "rows.parquet")
    assert len(rows) == 8 and set(rows.run_status) == {"complete", "killed"}


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", data[16:24])


def test_plots_exist_and_are_not_trivial(report: Any) -> None:
    plots = report.out / "plots"
    names = sorted(p.name for p in plots.glob("*.png"))
    assert "time-to-kill.png" in names
    assert {"points-near-tie.png", "points-larger-of-two.png", "points-single-hog.png"} <= set(names)
    for p in plots.glob("*.png"):
        w, h = _png_size(p)
        assert w >= 600 and h >= 300, (p, w, h)
        assert p.stat().st_size > 15_000, p  # bars, labels and a legend, not an empty canvas


def test_format_selection_and_plot_choice(runs: Path, tmp_path: Path) -> None:
    rep = build_report([str(runs / "run-host"), str(runs / "run-6.1")], str(tmp_path), ["md", "csv"], ["near-tie"])
    names = sorted(os.listdir(tmp_path))
    assert names == ["comparison.csv", "comparison.md", "plots", "rows.csv"]
    assert sorted(os.listdir(tmp_path / "plots")) == ["points-near-tie.png", "time-to-kill.png"]
    assert not rep.partial_runs
    with pytest.raises(HarnessError):
        build_report([str(runs)], str(tmp_path / "x"), ["md"], ["no-such-scenario"])
    with pytest.raises(HarnessError, match="unknown report format"):
        parse_formats("md,pdf")


def test_kernel_order() -> None:
    assert sorted(["7.2", "6.12", "host", "5.10", "6.1", "custom"], key=kernel_order) == [
        "host", "5.10", "6.1", "6.12", "7.2", "custom"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_cli_report(runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "rep"
    r = _cli("report", str(runs), "--out", str(out), "--format", "md,html")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("# OOM killer: kernel comparison")
    assert (out / "comparison.md").read_text(encoding="utf-8") == r.stdout
    assert "run-5.10 is a partial run" in r.stderr
    assert sorted(os.listdir(out)) == ["comparison.html", "comparison.md", "plots"]


def test_cli_bad_input_is_one_line_exit_2(tmp_path: Path) -> None:
    for args in (
        ["report", str(tmp_path / "nothing-here")],
        ["report", str(tmp_path), "--format", "docx"],
        ["compare", "--kernels", "host,banana"],
        ["compare", "--kernels", "host,6.1", "no-such-scenario"],
    ):
        r = _cli(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert r.stderr.startswith("oom-harness: error: ") and r.stderr.count("\n") == 1, r.stderr
        assert "Traceback" not in r.stderr


def _real_runs() -> list[Path]:
    if not REAL.is_dir():
        return []
    out = []
    for d in sorted(REAL.iterdir()):
        if (d / "env.json").is_file() and (d / "verdicts.jsonl").is_file():
            env = json.loads((d / "env.json").read_text())
            out.append((env.get("backend"), d))
    def usable(d: Path) -> bool:  # complete, and with the three rows the test cuts from
        return (d / "summary.json").is_file() and len((d / "verdicts.jsonl").read_text().splitlines()) >= 3

    host = [d for b, d in out if b == "host" and usable(d)]
    vm = [d for b, d in out if b == "vm" and usable(d)]
    return [host[-1], vm[-1]] if host and vm else []


def _make_real_runs(where: Path) -> list[Path]:
    """Genuine runs made for this test when results/ has none (a fresh clone, CI)."""
    import os

    if os.geteuid() != 0:
        unavailable("host", "no host and VM run under results/, and making them needs root")
    if shutil.which("qemu-system-x86_64") is None:
        unavailable("vm", "no host and VM run under results/, and making them needs QEMU")
    root = Path(__file__).parent.parent
    for extra in ([], ["--backend", "vm", "--kernel", "6.12"]):
        r = subprocess.run([sys.executable, "-m", "harness", "run", "single-hog", "larger-of-two", "near-tie", *extra,
                            "--results", str(where)], cwd=root, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout + r.stderr
    runs = sorted(where.iterdir())
    host = [d for d in runs if "-host-" in d.name]
    vm = [d for d in runs if "-vm-" in d.name]
    return [host[-1], vm[-1]] if host and vm else []


@pytest.mark.root
@pytest.mark.vm
@pytest.mark.slow
def test_real_runs(tmp_path: Path) -> None:
    """A host run and a VM run (from results/, or made now: genuine OOMs, hence the markers), and a
    copy of the VM run cut short."""
    real = _real_runs() or _make_real_runs(tmp_path / "made")
    assert real, "the runs just made are not in the results folder"
    src = tmp_path / "runs"
    for d in real:
        shutil.copytree(d, src / d.name)
    cut = src / (real[1].name + "-cut")
    shutil.copytree(real[1], cut)
    env = json.loads((cut / "env.json").read_text())
    env.update(kernel_label="cut", run_id=cut.name)
    (cut / "env.json").write_text(json.dumps(env))
    rows = [json.loads(ln) for ln in (cut / "verdicts.jsonl").read_text().splitlines()[:3]]
    lines = [json.dumps(dict(r, kernel_label="cut", run_id=cut.name)) + "\n" for r in rows]
    (cut / "verdicts.jsonl").write_text("".join(lines[:2]) + lines[2][: len(lines[2]) // 2])  # torn last line
    for f in ("summary.json", "events.json", "snapshots.json"):
        (cut / f).unlink(missing_ok=True)
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    (cut / "RUNNING").write_text(str(p.pid))
    out = tmp_path / "out"
    rep = build_report([str(src)], str(out))
    md = rep.markdown
    assert f"partial run {cut.name}" in md
    assert md.index("## Differences between kernels") < md.index("## All scenarios")
    assert set(rep.agg.kernel_label) >= {"host", "cut"}
    cut_rows = rep.rows[rep.rows.kernel_label == "cut"]
    assert len(cut_rows) == 2 and set(cut_rows.run_status) == {"killed"}
    assert pd.read_parquet(out / "comparison.parquet").shape[0] == len(rep.agg)
    assert (out / "plots" / "time-to-kill.png").stat().st_size > 15_000
