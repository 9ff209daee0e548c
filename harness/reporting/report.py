"""Compare saved runs across kernels: Markdown, one self-contained HTML file, CSV, Parquet and plots.

Input is one or more ``results/<run-id>/`` folders (see :mod:`harness.reporting.results`); a folder that
holds run folders (``results/``) stands for all of them.  Partial runs (killed, interrupted, still
running) are read as far as they got and flagged in every output.

The comparison has one row per scenario and kernel label.  A scenario run more than once on the
same kernel (``run --repeat``, or several runs of one kernel) keeps every attempt in
``rows.csv``/``rows.parquet``; the comparison aggregates them (the victim and verdict as a tally
when the attempts disagree, median points and time-to-kill).

"Differences between kernels" come first: scenarios whose killed workload, verdict, outcome
against the expectation, or kernel report format (table layout and format fingerprints) is not
the same on every kernel that ran them.  Scenarios that were skipped on some kernel are listed
separately, as coverage gaps, not as differences.

pandas and matplotlib are imported only when a report is built, so the CLI stays fast.
"""

from __future__ import annotations

import base64
import concurrent.futures
import html
import io
import json
import multiprocessing
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError

from .results import load_run

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.figure import Figure

FORMATS = ("md", "html", "csv", "parquet")
PARTIAL = ("killed", "interrupted", "running")
NOT_RUN = ("skipped",)
#: Most workloads shown in a points plot (the rest are the harness's own helpers, sleepers ...).
MAX_WORKLOADS = 12

__all__ = [
    "FORMATS",
    "Report",
    "Run",
    "aggregate",
    "build_report",
    "candidates_frame",
    "differences",
    "expand_run_dirs",
    "kernel_order",
    "load_runs",
    "rows_frame",
]


# --------------------------------------------------------------------------------------------- input


@dataclass
class Run:
    dir: str
    env: dict[str, Any]
    rows: list[dict[str, Any]]
    status: str
    events: dict[str, Any] = field(default_factory=dict)
    snapshots: dict[str, Any] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        return str(self.env.get("run_id") or os.path.basename(os.path.normpath(self.dir)))

    @property
    def kernel_label(self) -> str:
        return str(self.env.get("kernel_label") or self.env.get("backend") or "?")

    @property
    def partial(self) -> bool:
        return self.status in PARTIAL

    def status_note(self) -> str:
        if self.status == "killed":
            pid = _read(os.path.join(self.dir, "RUNNING")).strip()
            who = f" (pid {pid})" if pid else ""
            return f"killed: no summary.json and its harness{who} is gone"
        if self.status == "running":
            return "still running: no summary.json yet"
        if self.status == "interrupted":
            return "interrupted (Ctrl-C or SIGTERM) before all scenarios ran"
        return self.status


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return ""


def _json_file(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def _is_run(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "env.json"))


def expand_run_dirs(paths: Sequence[str]) -> tuple[list[str], list[str]]:
    """Run folders named by *paths* (a folder of runs stands for each run in it), and notes."""
    out: list[str] = []
    notes: list[str] = []
    for p in paths:
        if _is_run(p):
            out.append(p)
        elif os.path.isdir(p):
            kids = sorted(os.path.join(p, n) for n in os.listdir(p))
            runs = [k for k in kids if _is_run(k)]
            if runs:
                out.extend(runs)
            else:
                notes.append(f"{p}: not a run folder (no env.json) and holds none; left out")
        else:
            notes.append(f"{p}: no such folder; left out")
    seen: set[str] = set()
    uniq = []
    for d in out:
        key = os.path.realpath(d)
        if key not in seen:
            seen.add(key)
            uniq.append(d)
    return uniq, notes


def load_runs(paths: Sequence[str]) -> tuple[list[Run], list[str]]:
    dirs, notes = expand_run_dirs(paths)
    runs = []
    for d in dirs:
        try:
            env, rows, status = load_run(d)
        except (OSError, ValueError) as e:
            notes.append(f"{d}: unreadable ({e}); left out")
            continue
        env.setdefault("run_id", os.path.basename(os.path.normpath(d)))
        runs.append(
            Run(d, env, rows, status, _json_file(os.path.join(d, "events.json")),
                _json_file(os.path.join(d, "snapshots.json")))
        )
    if not runs:
        why = f" ({'; '.join(notes)})" if notes else ""
        raise HarnessError(f"no run folders to report on{why}: give results/<run-id> folders or a folder holding them")
    runs.sort(key=lambda r: (str(r.env.get("started", "")), r.run_id))
    return runs, notes


# --------------------------------------------------------------------------------------------- frames


def kernel_order(label: str) -> tuple[int, tuple[int, ...], str]:
    """host first, then kernel series in version order, then anything else by name."""
    if label == "host":
        return (0, (), label)
    m = re.fullmatch(r"(\d+)\.(\d+)(?:\.(\d+))?", label)
    if m:
        return (1, tuple(int(x) for x in m.groups() if x is not None), label)
    return (2, (), label)


def _who(v: Any) -> str | None:
    if not isinstance(v, dict):
        return None
    return v.get("workload") or v.get("name") or (str(v["pid"]) if v.get("pid") is not None else None)


def _num(v: Any) -> float | None:
    try:
        return None if v is None or isinstance(v, bool) else float(v)
    except (TypeError, ValueError):
        return None


def _event_info(events: list[dict[str, Any]]) -> tuple[str, str | None, str | None]:
    tags: set[str] = set()
    era = layout = None
    for e in events:
        tags.update(str(t) for t in e.get("format") or [])
        era = era or e.get("era")
        layout = layout or e.get("table_layout")
    return ",".join(sorted(tags)), era, layout


def rows_frame(runs: Sequence[Run]) -> pd.DataFrame:
    """One row per scenario attempt (every verdict row of every run)."""
    import pandas as pd

    recs = []
    for run in runs:
        for i, r in enumerate(run.rows):
            events = run.events.get(f"{r.get('scenario')}#{i}") or []
            tags, era, layout = _event_info(events)
            ru = r.get("runner_up") or {}
            ov = r.get("observed_victim") or {}
            osc = r.get("oom_score_check") or {}
            rec: dict[str, Any] = {
                "scenario": r.get("scenario"),
                "kernel_label": str(r.get("kernel_label") or run.kernel_label),
                "kernel": r.get("kernel") or run.env.get("kernel"),
                "backend": r.get("backend") or run.env.get("backend"),
                "run_id": run.run_id,
                "run_status": run.status,
                "row_index": i,
                "verdict": r.get("verdict"),
                "as_expected": r.get("as_expected"),
                "outcome": r.get("outcome"),
                "expected_victim": _expected(r),
                "observed_victim": _who(ov),
                "observed_pid": ov.get("pid") if isinstance(ov, dict) else None,
                "predicted_victim": _who(r.get("predicted_victim")),
                "victim_points": _num(r.get("victim_points")),
                "runner_up": _who(ru),
                "runner_up_points": _num(ru.get("points") if isinstance(ru, dict) else None),
                "time_to_kill_s": _num(r.get("time_to_kill_s")),
                "report_format": r.get("report_format") or layout,
                "format_tags": tags,
                "era": era or osc.get("era"),
                "oom_score_agree": osc.get("agree") if isinstance(osc, dict) else None,
                "reason": r.get("reason"),
                "second_victims": ",".join(map(str, r.get("second_victims") or [])) or "-",
                "kill_count": kill_count_cell(r.get("kill_count")),
                "duration_s": _num(r.get("duration_s")),
            }
            for k, v in (r.get("timings") or {}).items():
                rec[f"t_{k}_s"] = _num(v)
            recs.append(rec)
    df = pd.DataFrame.from_records(recs)
    if df.empty:
        return df
    df["attempt"] = df.groupby(["scenario", "kernel_label"], sort=False).cumcount() + 1
    df["as_expected"] = df["as_expected"].astype("object")
    df["oom_score_agree"] = df["oom_score_agree"].astype("object")
    return df


def kill_count_cell(kc: Any) -> str:
    """The kill count of a row in one cell: ``1`` when the log's Killed lines and the kernel's
    counters agree, else every count (``log 1 ≠ memcg 2``): a difference is shown, never hidden."""
    if not isinstance(kc, dict):
        return "-"
    if kc.get("agree"):
        return str(kc.get("log"))
    parts = [f"log {kc.get('log')}"]
    if kc.get("memcg_oom_kill") is not None:
        parts.append(f"memcg {kc['memcg_oom_kill']}")
    if kc.get("vmstat_oom_kill") is not None and kc.get("vmstat_compared"):
        parts.append(f"vmstat {kc['vmstat_oom_kill']}")
    return " ≠ ".join(parts)


def _expected(r: dict[str, Any]) -> str | None:
    exp = r.get("expected") or {}
    v = exp.get("victim") if isinstance(exp, dict) else None
    if isinstance(v, list):
        return "|".join(str(x) for x in v)
    return v


def candidates_frame(runs: Sequence[Run]) -> pd.DataFrame:
    """Every candidate task of the first analysed event of every scenario attempt, with its workload."""
    import pandas as pd

    recs = []
    for run in runs:
        for i, r in enumerate(run.rows):
            key = f"{r.get('scenario')}#{i}"
            events = [e for e in run.events.get(key) or [] if e.get("candidates")]
            if not events:
                continue
            ov = r.get("observed_victim") or {}
            ev = next((e for e in events if (e.get("observed_victim") or {}).get("pid") == ov.get("pid")), events[0])
            wl = {s.get("pid"): s.get("workload") for s in run.snapshots.get(key) or [] if isinstance(s, dict)}
            for t in (r.get("oom_score_check") or {}).get("tasks") or []:
                wl.setdefault(t.get("pid"), t.get("workload"))
            for c in ev["candidates"]:
                recs.append(
                    {
                        "scenario": r.get("scenario"),
                        "kernel_label": str(r.get("kernel_label") or run.kernel_label),
                        "run_id": run.run_id,
                        "row_index": i,
                        "pid": c.get("pid"),
                        "name": c.get("name"),
                        "workload": wl.get(c.get("pid")) or c.get("name") or str(c.get("pid")),
                        "points": _num(c.get("points")),
                        "eligible": bool(c.get("eligible", True)),
                        "rank": c.get("rank"),
                        "killed": c.get("pid") == ov.get("pid"),
                    }
                )
    return pd.DataFrame.from_records(
        recs,
        columns=["scenario", "kernel_label", "run_id", "row_index", "pid", "name", "workload", "points", "eligible",
                 "rank", "killed"],
    )


def _tally(values: Iterable[Any]) -> str:
    vals = ["-" if v is None or (isinstance(v, float) and v != v) else str(v) for v in values]
    c = Counter(vals)
    if len(c) == 1:
        return vals[0]
    return ", ".join(f"{v} ×{n}" for v, n in c.most_common())


def _yes(v: Any) -> str:
    if v is True:
        return "yes"
    return "NO" if v is False else "-"


def aggregate(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per scenario × kernel label; the attempts tallied or summarised by their median."""
    import pandas as pd

    cols = [
        "scenario", "kernel_label", "kernel", "attempts", "observed_victim", "predicted_victim", "verdict",
        "as_expected", "outcome", "victim_points", "runner_up", "runner_up_points", "time_to_kill_s",
        "time_to_kill_min_s", "time_to_kill_max_s", "report_format", "format_tags", "era", "stable", "partial",
        "run_ids", "reason", "second_victims", "kill_count",
    ]
    if rows.empty:
        return pd.DataFrame(columns=cols)
    out = []
    for (sc, k), g in rows.groupby(["scenario", "kernel_label"], sort=False):
        ttk = g["time_to_kill_s"].dropna()
        rec = {
            "scenario": sc,
            "kernel_label": k,
            "kernel": _tally(g["kernel"].dropna().unique()) if g["kernel"].notna().any() else None,
            "attempts": len(g),
            "observed_victim": _tally(g["observed_victim"]),
            "predicted_victim": _tally(g["predicted_victim"]),
            "verdict": _tally(g["verdict"]),
            "as_expected": _tally(_yes(v) for v in g["as_expected"]),
            "outcome": _tally(g["outcome"]),
            "victim_points": _median(g["victim_points"]),
            "runner_up": _tally(g["runner_up"]),
            "runner_up_points": _median(g["runner_up_points"]),
            "time_to_kill_s": round(float(ttk.median()), 4) if len(ttk) else None,
            "time_to_kill_min_s": round(float(ttk.min()), 4) if len(ttk) else None,
            "time_to_kill_max_s": round(float(ttk.max()), 4) if len(ttk) else None,
            "report_format": _tally(g["report_format"]),
            "format_tags": ",".join(sorted(set().union(*(_tags(t) for t in g["format_tags"])))),
            "era": _tally(g["era"]),
            "second_victims": _tally(g["second_victims"]) if "second_victims" in g else "-",
            "kill_count": _tally(g["kill_count"]) if "kill_count" in g else "-",
            "stable": bool(g["observed_victim"].nunique(dropna=False) == 1 and g["verdict"].nunique() == 1),
            "partial": bool(g["run_status"].isin(PARTIAL).any()),
            "run_ids": ",".join(dict.fromkeys(g["run_id"])),
            "reason": _tally(g["reason"]),
        }
        out.append(rec)
    agg = pd.DataFrame.from_records(out, columns=cols)
    agg["_k"] = agg["kernel_label"].map(kernel_order)
    agg = agg.sort_values(["scenario", "_k"], kind="stable").drop(columns="_k").reset_index(drop=True)
    return agg


def _median(s: pd.Series) -> float | None:
    s = s.dropna()
    return float(s.median()) if len(s) else None


#: (name, column) of what is compared across kernels; behaviour first, then the report's format.
BEHAVIOUR = (("victim", "observed_victim"), ("outcome", "outcome"), ("verdict", "verdict"),
             ("as expected", "as_expected"), ("second kill", "second_victims"), ("kill count", "kill_count"))
FORMAT = (("table layout", "report_format"), ("fingerprints", "format_tags"))


def _tags(v: Any) -> set[str]:
    return {t for t in str(v or "").split(",") if t and t != "-"}


def differences(agg: pd.DataFrame) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(differences, coverage gaps).

    A difference is a scenario whose victim, verdict, as-expected, table layout or format
    fingerprints are not the same on every kernel that ran it (skipped attempts left out); its
    ``what`` names those aspects, behaviour ones first.  A gap is a scenario that some kernels did
    not run (skipped, or absent from their run).
    """
    diffs: list[dict[str, Any]] = []
    gaps: list[dict[str, Any]] = []
    if agg.empty:
        return diffs, gaps
    kernels = sorted(agg["kernel_label"].unique(), key=kernel_order)
    for sc, g in agg.groupby("scenario", sort=True):
        ran = g[~g["verdict"].isin(NOT_RUN)]
        missing = [k for k in kernels if k not in set(g["kernel_label"])]
        skipped = g[g["verdict"].isin(NOT_RUN)]
        if missing or len(skipped):
            gaps.append({"scenario": sc, "absent": missing,
                         "skipped": {r.kernel_label: r.reason for r in skipped.itertuples()}})
        if len(ran) < 2:
            continue
        what = [name for name, col in BEHAVIOUR + FORMAT if ran[col].nunique(dropna=False) > 1]
        if not what:
            continue
        per_kernel = {
            r.kernel_label: {
                "victim": r.observed_victim,
                "verdict": r.verdict,
                "as expected": r.as_expected,
                "outcome": r.outcome,
                "second kill": r.second_victims,
                "kill count": r.kill_count,
                "table layout": r.report_format,
                "fingerprints": r.format_tags,
                "reason": r.reason,
            }
            for r in ran.itertuples()
        }
        behaviour = [w for w in what if w in dict(BEHAVIOUR)]
        diffs.append({"scenario": sc, "what": what, "behaviour": behaviour,
                      "format": [w for w in what if w in dict(FORMAT)], "kernels": per_kernel})
    diffs.sort(key=lambda d: (not d["behaviour"], d["scenario"]))
    return diffs, gaps


#: The verdict mark of a matrix cell, from the (tallied) as-expected value.
MARKS = {"yes": "✓", "NO": "✗", "-": "–"}


def _mark(as_expected: str) -> str:
    if as_expected in MARKS:
        return MARKS[as_expected]
    # a tally over attempts ("yes ×2, NO ×1"): keep the counts, with marks
    return re.sub(r"\b(yes|NO)\b", lambda m: MARKS[m.group(1)], as_expected)


def matrix_cell(r: Any) -> str:
    """One cell of the matrix: the killed workload, the verdict mark, the verdict when it is not a plain
    match, and a second victim."""
    if r.verdict in NOT_RUN:
        return "skipped"
    victim = r.observed_victim if r.observed_victim not in (None, "-") else "no kill"
    cell = f"{victim} {_mark(r.as_expected)}"
    if r.verdict != "match":
        cell += f" {r.verdict}"
    if r.second_victims not in (None, "-", ""):
        cell += f" (+{r.second_victims})"
    return cell


def matrix(agg: pd.DataFrame, kernels: Sequence[str]) -> tuple[list[list[str]], list[list[str]]]:
    """Scenario × kernel: (rows of cells, the CSS class of each cell).

    A cell is ``odd`` when it differs from the scenario's majority among the kernels that ran it
    (skipped and absent cells take no part); when there is no strict majority (two kernels that
    disagree, a 2-2 split) every cell that ran is ``odd``.  ``bad`` marks a verdict not as expected.
    """
    rows: list[list[str]] = []
    classes: list[list[str]] = []
    if agg.empty:
        return rows, classes
    for sc, g in agg.groupby("scenario", sort=True):
        by_k = {r.kernel_label: r for r in g.itertuples()}
        cells = {k: matrix_cell(by_k[k]) for k in kernels if k in by_k}
        ran = {k: c for k, c in cells.items() if by_k[k].verdict not in NOT_RUN}
        counts = Counter(ran.values()).most_common()
        majority = counts[0][0] if counts and (len(counts) == 1 or counts[0][1] > counts[1][1]) else None
        row, cls = [str(sc)], [""]
        for k in kernels:
            if k not in cells:
                row.append("–")
                cls.append("absent")
                continue
            c = []
            if k in ran and len(ran) > 1 and ran[k] != majority:
                c.append("odd")
            if "✗" in cells[k]:
                c.append("bad")
            if k not in ran:
                c.append("skip")
            row.append(cells[k])
            cls.append(" ".join(c))
        rows.append(row)
        classes.append(cls)
    return rows, classes


def matrix_totals(agg: pd.DataFrame, kernels: Sequence[str]) -> list[str]:
    """The matrix's last row: per kernel, scenarios as expected / run (skipped apart)."""
    out = []
    for k in kernels:
        g = agg[agg["kernel_label"] == k]
        ran = g[~g["verdict"].isin(NOT_RUN)]
        ok = int((ran["as_expected"] == "yes").sum())
        skipped = len(g) - len(ran)
        out.append(f"{ok}/{len(ran)} ✓" + (f", {skipped} skipped" if skipped else ""))
    return out


def _pair_diff(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any] | None:
    """How the reports of two kernels differ over the scenarios both ran (*a*, *b*: scenario -> agg row)."""
    common = sorted(set(a) & set(b))
    if not common:
        return None
    only_a: set[str] = set()
    only_b: set[str] = set()
    lay_a: list[str] = []
    lay_b: list[str] = []
    n = 0
    for sc in common:
        ra, rb = a[sc], b[sc]
        ta, tb = _tags(ra.format_tags), _tags(rb.format_tags)
        if ta != tb or ra.report_format != rb.report_format:
            n += 1
            only_a |= ta - tb
            only_b |= tb - ta
            if ra.report_format != rb.report_format:
                for lay, acc in ((ra.report_format, lay_a), (rb.report_format, lay_b)):
                    if str(lay) not in acc:
                        acc.append(str(lay))
    return {"n": n, "common": len(common), "only_a": only_a, "only_b": only_b, "lay_a": lay_a, "lay_b": lay_b}


def format_pairs(agg: pd.DataFrame, kernels: Sequence[str]) -> list[str]:
    """Report-format differences summarised per kernel pair, never per scenario.

    Kernels whose reports look the same (over the scenarios they share) are one group ("5.10 = 6.1");
    then one line per pair of groups that differ: in how many of their common scenarios, the table
    layouts, and the format fingerprints only one side prints.
    """
    ran = agg[~agg["verdict"].isin(NOT_RUN)]
    per: dict[str, dict[str, Any]] = {}
    for r in ran.itertuples():
        per.setdefault(r.kernel_label, {})[r.scenario] = r
    ks = [k for k in kernels if k in per]
    groups: list[list[str]] = []
    for k in ks:  # a kernel joins the first group whose every member prints as it does
        for g in groups:
            if all((d := _pair_diff(per[m], per[k])) is not None and d["n"] == 0 for m in g):
                g.append(k)
                break
        else:
            groups.append([k])
    lines = []
    for i, ga in enumerate(groups):
        for gb in groups[i + 1:]:
            # the members that share the most scenarios speak for their groups
            diffs = [d for x in ga for y in gb if (d := _pair_diff(per[x], per[y])) is not None]
            d = max(diffs, key=lambda d: d["common"], default=None)
            if d is None or not d["n"]:
                continue
            a, b = " = ".join(ga), " = ".join(gb)
            parts = [f"{a} vs {b}: {d['n']} of {d['common']} common scenario(s)"]
            if d["lay_a"] or d["lay_b"]:
                parts.append(f"table layout {' / '.join(d['lay_a']) or '-'} vs {' / '.join(d['lay_b']) or '-'}")
            if d["only_a"]:
                parts.append(f"only {'/'.join(ga)} print{'s' if len(ga) == 1 else ''} "
                             + " ".join(sorted(d["only_a"])))
            if d["only_b"]:
                parts.append(f"only {'/'.join(gb)} print{'s' if len(gb) == 1 else ''} "
                             + " ".join(sorted(d["only_b"])))
            lines.append("; ".join(parts))
    return lines


# --------------------------------------------------------------------------------------------- plots


def _colors(kernels: Sequence[str]) -> dict[str, Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {k: cmap(i % 10) for i, k in enumerate(kernels)}


def points_plot(cands: pd.DataFrame, scenario: str, kernels: Sequence[str]) -> Figure | None:
    """Grouped bars: the model's badness points of each workload in *scenario*, one bar per kernel."""
    import numpy as np
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    c = cands[(cands["scenario"] == scenario) & cands["eligible"] & cands["points"].notna()]
    if c.empty:
        return None
    # per attempt: the highest points of each workload (and how many tasks it has); then the median attempt
    per = (
        c.groupby(["kernel_label", "run_id", "row_index", "workload"])
        .agg(points=("points", "max"), tasks=("pid", "count"), killed=("killed", "any"))
        .reset_index()
    )
    per = (
        per.groupby(["kernel_label", "workload"])
        .agg(points=("points", "median"), tasks=("tasks", "max"), killed=("killed", "any"))
        .reset_index()
    )
    ks = [k for k in kernels if k in set(per["kernel_label"])]
    order = per.groupby("workload")["points"].max().sort_values(ascending=False)
    wls = list(order.index[:MAX_WORKLOADS])
    hidden = len(order) - len(wls)
    colors = _colors(kernels)
    n = len(ks)
    width = 0.8 / max(n, 1)
    x = np.arange(len(wls))
    fig = Figure(figsize=(max(7.0, 1.1 * len(wls) + 3.0), 4.8), dpi=110, layout="constrained")
    ax = fig.subplots()
    for j, k in enumerate(ks):
        sub = per[per["kernel_label"] == k].set_index("workload")
        vals = [float(sub.loc[w, "points"]) if w in sub.index else 0.0 for w in wls]
        killed = [bool(sub.loc[w, "killed"]) if w in sub.index else False for w in wls]
        bars = ax.bar(x + (j - (n - 1) / 2) * width, vals, width, color=colors[k], label=k, edgecolor="white")
        for b, kl in zip(bars, killed, strict=True):
            if kl:
                b.set_hatch("///")
                b.set_edgecolor("black")
        if len(wls) * n <= 40:  # the exact points, so near ties can be read off
            ax.bar_label(bars, labels=[f"{v:.0f}" if v else "" for v in vals], rotation=90, padding=2, fontsize=7)
    tasks = per.groupby("workload")["tasks"].max()
    ax.set_xticks(x, [f"{w}\n×{int(tasks[w])} tasks" if tasks[w] > 1 else w for w in wls])
    if len(wls) > 6:
        ax.tick_params(axis="x", labelrotation=30)
        for lab in ax.get_xticklabels():
            lab.set_horizontalalignment("right")
    ax.set_ylabel("badness points (highest task of the workload)")
    ax.set_xlabel("workload" + (f"  ({hidden} more with fewer points not shown)" if hidden else ""))
    ax.set_title(f"Points per task by kernel: {scenario}")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    handles = [Patch(facecolor=colors[k], label=k) for k in ks]
    handles.append(Patch(facecolor="white", edgecolor="black", hatch="///", label="killed"))
    fig.legend(handles=handles, title="kernel", loc="outside right upper", fontsize="small")
    ax.margins(y=0.14)
    return fig


def ttk_plot(rows: pd.DataFrame, kernels: Sequence[str]) -> Figure | None:
    """Horizontal grouped bars: median time from trigger to kill per scenario and kernel (min-max whiskers)."""
    import numpy as np
    from matplotlib.figure import Figure

    d = rows[rows["time_to_kill_s"].notna()]
    if d.empty:
        return None
    g = d.groupby(["scenario", "kernel_label"])["time_to_kill_s"].agg(["median", "min", "max"]).reset_index()
    scen = sorted(g["scenario"].unique(), reverse=True)  # alphabetical from the top
    ks = [k for k in kernels if k in set(g["kernel_label"])]
    colors = _colors(kernels)
    n = len(ks)
    h = 0.8 / max(n, 1)
    y = np.arange(len(scen))
    fig = Figure(figsize=(9, max(3.0, (0.11 * n + 0.12) * len(scen) + 1.4)), dpi=110, layout="constrained")
    ax = fig.subplots()
    for j, k in enumerate(ks):
        sub = g[g["kernel_label"] == k].set_index("scenario")
        pos = [y[i] + ((n - 1) / 2 - j) * h for i, s in enumerate(scen) if s in sub.index]
        med = [float(sub.loc[s, "median"]) for s in scen if s in sub.index]
        lo = [float(sub.loc[s, "median"] - sub.loc[s, "min"]) for s in scen if s in sub.index]
        hi = [float(sub.loc[s, "max"] - sub.loc[s, "median"]) for s in scen if s in sub.index]
        err = [lo, hi] if any(lo) or any(hi) else None
        ax.barh(pos, med, h, color=colors[k], label=k, xerr=err, error_kw={"elinewidth": 0.8, "capsize": 2})
    ax.set_yticks(y, scen)
    ax.set_xlabel("time from trigger to kill (s; median of attempts, whiskers min-max)")
    ax.set_title("Time to kill per scenario and kernel")
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    ax.set_ylim(-0.6, len(scen) - 0.4)
    fig.legend(title="kernel", loc="outside right upper", fontsize="small")
    return fig


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


# --------------------------------------------------------------------------------------------- text


def _md(v: Any) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    if isinstance(v, float):
        v = f"{v:.0f}" if v.is_integer() and abs(v) >= 100 else f"{v:g}"
    return str(v).replace("|", "\\|").replace("\n", " ")


FULL_HEADERS = ["scenario", "kernel", "runs", "killed", "model", "verdict", "as expected", "points", "runner-up pts",
                "kill (s)", "table layout", "Δ"]
SHORT = {"victim": "victim", "outcome": "outcome", "verdict": "verdict", "as expected": "expected",
         "second kill": "2nd kill", "kill count": "kills",
         "table layout": "format", "fingerprints": "format"}
LEGEND = ("killed / model: the workload the kernel killed / the model predicted; points: the victim's badness points, "
          "runner-up pts: the next task's; kill (s): time from trigger to kill; Δ: what differs between kernels for "
          "the scenario; medians over attempts when a scenario ran more than once (tallies when they disagree).")

MATRIX_LEGEND = ("Each cell: the workload the kernel killed, ✓ as the scenario expects / ✗ not, the verdict when it "
                 "is not a plain match (mismatch, no-oom, error ...) and (+name) a second victim. Highlighted (bold): "
                 "the cell differs from the majority of the kernels that ran the scenario (with no majority, every "
                 "cell that ran). – : not run on that kernel.")

Block = tuple[Any, ...]


@dataclass
class Report:
    runs: list[Run]
    rows: Any  # pd.DataFrame, one row per attempt
    agg: Any  # pd.DataFrame, one row per scenario x kernel
    diffs: list[dict[str, Any]]
    gaps: list[dict[str, Any]]
    kernels: list[str]
    notes: list[str]
    markdown: str = ""
    files: list[str] = field(default_factory=list)

    @property
    def partial_runs(self) -> list[Run]:
        return [r for r in self.runs if r.partial]

    @property
    def behaviour_diffs(self) -> list[dict[str, Any]]:
        return [d for d in self.diffs if d["behaviour"]]

    @property
    def format_diffs(self) -> list[dict[str, Any]]:
        return [d for d in self.diffs if d["format"]]


def _blocks(rep: Report, plots: Sequence[str]) -> list[Block]:
    """The report as neutral blocks, rendered to Markdown or HTML."""
    ks = rep.kernels
    nsc = rep.agg["scenario"].nunique() if not rep.agg.empty else 0
    out: list[Block] = [
        ("h1", "OOM killer: kernel comparison"),
        ("p", f"{len(rep.runs)} run(s) · kernels {', '.join(ks) or '-'} · {nsc} scenario(s) · "
              f"generated {time.strftime('%Y-%m-%d %H:%M:%S')}"),
    ]
    for r in rep.partial_runs:
        out.append(("warn", f"⚠ partial run {r.run_id} ({r.kernel_label}): {r.status_note()}; "
                            f"{len(r.rows)} scenario row(s) read."))
    for n in rep.notes:
        out.append(("note", f"note: {n}"))

    if len(ks) >= 1 and not rep.agg.empty:
        out.append(("h2", "Matrix: who was killed, per scenario and kernel"))
        mrows, mcls = matrix(rep.agg, ks)
        out.append(("matrix", ["scenario", *ks], mrows, mcls, ["as expected", *matrix_totals(rep.agg, ks)]))
        out.append(("note", MATRIX_LEGEND))

    out.append(("h2", f"Differences between kernels ({len(rep.diffs)} scenario(s))"))
    if len(ks) < 2:
        out.append(("p", "Only one kernel in these runs: nothing to compare."))
    bd = rep.behaviour_diffs
    out.append(("h3", f"Victim, verdict or expectation differs ({len(bd)})"))
    if bd:
        out.append(("p", "Each kernel's cell: killed workload · verdict · as expected (· the outcome when nobody "
                         "was killed; · then a second victim, when the kernel killed again; · the kill count when "
                         "the log's Killed lines and the kernel's counters disagree)."))
        rows = []
        for d in bd:
            cells = []
            for k in ks:
                v = d["kernels"].get(k)
                second = f" · then {v['second kill']}" if v and v.get("second kill") not in (None, "-") else ""
                if v and v.get("victim") in (None, "-") and v.get("outcome"):
                    second = f" · {v['outcome']}{second}"
                if v and "≠" in str(v.get("kill count") or ""):
                    second += f" · kills {v['kill count']}"
                cells.append(f"{v['victim']} · {v['verdict']} · {v['as expected']}{second}" if v else "-")
            rows.append([d["scenario"], ", ".join(d["behaviour"]), *cells])
        out.append(("table", ["scenario", "differs in", *ks], rows, ["diff"] * len(rows)))
        why = [f"{d['scenario']} on {k}: {v['reason']}" for d in bd for k in ks
               if (v := d["kernels"].get(k)) and "mismatch" in str(v.get("verdict")) and v.get("reason")]
        if why:  # the row's own reason: it names the rule variant that fits the run, when one does
            out.append(("p", "Why, where the verdict is mismatch:"))
            out.append(("ul", why))
    elif len(ks) >= 2:
        out.append(("p", "None: every scenario killed the same workload with the same verdict on every kernel that "
                         "ran it."))
    fd = rep.format_diffs
    out.append(("h3", f"Report format differs ({len(fd)})"))
    if fd:
        only = [d for d in fd if not d["behaviour"]]
        out.append(("p", f"{len(fd)} scenario(s) whose kernel report has another table layout or other format "
                         f"fingerprints ({len(only)} differ in nothing else). Per kernel pair:"))
        out.append(("ul", format_pairs(rep.agg, ks)))
    elif len(ks) >= 2:
        out.append(("p", "None: every kernel printed its reports in the same format."))
    if rep.gaps:
        out.append(("p", "Not run on every kernel:"))
        out.append(("ul", [_gap_text(g) for g in rep.gaps]))

    out.append(("h2", "All scenarios"))
    what = {d["scenario"]: d["what"] for d in rep.diffs}
    rows, classes = [], []
    for r in rep.agg.itertuples():
        flags = list(dict.fromkeys(SHORT[w] for w in what.get(r.scenario, [])))
        if not r.stable:
            flags.append("unstable")
        if r.partial:
            flags.append("partial run")
        rows.append([r.scenario, r.kernel_label, r.attempts, r.observed_victim, r.predicted_victim, r.verdict,
                     r.as_expected, r.victim_points, r.runner_up_points, r.time_to_kill_s, r.report_format,
                     ", ".join(flags)])
        classes.append(" ".join(c for c in ("diff" if r.scenario in what and any(
            w in dict(BEHAVIOUR) for w in what[r.scenario]) else "", "partial" if r.partial else "") if c))
    out.append(("table", FULL_HEADERS, rows, classes))
    out.append(("note", LEGEND))
    out.append(("images", list(plots)))
    out.append(("h2", "Runs"))
    out.append(("table", ["run", "kernel", "backend", "release", "rows", "status"],
                [[r.run_id, r.kernel_label, r.env.get("backend"), r.env.get("kernel"), len(r.rows),
                  f"⚠ {r.status_note()}" if r.partial else r.status] for r in rep.runs],
                ["partial" if r.partial else "" for r in rep.runs]))
    return out


def _gap_text(g: dict[str, Any]) -> str:
    parts = []
    if g["absent"]:
        parts.append("not in the runs of " + ", ".join(g["absent"]))
    for k, why in g["skipped"].items():
        parts.append(f"skipped on {k} ({why})")
    return f"{g['scenario']}: " + "; ".join(parts)


def to_markdown(rep: Report, plots: Sequence[str] = ()) -> str:
    lines: list[str] = []
    for b in _blocks(rep, plots):
        kind = b[0]
        if kind in ("h1", "h2", "h3"):
            lines += ["#" * int(kind[1]) + " " + b[1], ""]
        elif kind == "p":
            lines += [b[1], ""]
        elif kind == "warn":
            lines += [f"> **{b[1]}**", ""]
        elif kind == "note":
            lines += [f"_{b[1]}_", ""]
        elif kind == "ul":
            lines += [f"- {_md(i)}" for i in b[1]] + [""]
        elif kind == "table":
            headers, rows = b[1], b[2]
            lines.append("| " + " | ".join(headers) + " |")
            lines.append("|" + "|".join("---" for _ in headers) + "|")
            lines += ["| " + " | ".join(_md(v) for v in r) + " |" for r in rows]
            lines.append("")
        elif kind == "matrix":
            headers, rows, classes, totals = b[1], b[2], b[3], b[4]
            lines.append("| " + " | ".join(headers) + " |")
            lines.append("|" + "|".join("---" for _ in headers) + "|")
            for r, cls in zip(rows, classes, strict=True):
                lines.append("| " + " | ".join(f"**{_md(v)}**" if "odd" in c else _md(v)
                                               for v, c in zip(r, cls, strict=True)) + " |")
            lines.append("| " + " | ".join(f"_{_md(v)}_" for v in totals) + " |")
            lines.append("")
        elif kind == "images" and b[1]:
            lines += ["Plots: " + ", ".join(f"`{p}`" for p in b[1]), ""]
    return "\n".join(lines).rstrip() + "\n"


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em;color:#222;max-width:1400px}
h1{font-size:1.5em}h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #ddd}h3{font-size:1.05em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f0f0f0;position:sticky;top:0}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.diff td{background:#fff6e0}tr.partial td{color:#8a5a00}
td.bad{color:#b00020;font-weight:bold}td.ok{color:#1b6e20}
.warn{background:#fff3cd;border:1px solid #e0c060;padding:.4em .8em;margin:.3em 0;font-weight:bold}
.note{color:#555;font-size:.9em}.plots img{max-width:100%;border:1px solid #eee;margin:.5em 0}
details{margin:.4em 0}summary{cursor:pointer}
table.matrix{font-size:.9em}table.matrix th{text-align:left;white-space:nowrap}
table.matrix td{white-space:nowrap;min-width:7em}table.matrix tbody th{background:#fafafa;font-weight:600}
table.matrix td.odd{background:#ffd966;font-weight:bold;box-shadow:inset 0 0 0 2px #c99a00}
table.matrix td.bad{color:#b00020}table.matrix td.skip,table.matrix td.absent{color:#999}
table.matrix tr.totals td,table.matrix tr.totals th{background:#f0f0f0;font-style:italic}
"""


def _h(v: Any) -> str:
    return html.escape(_md(v).replace("\\|", "|"))


def _html_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], classes: Sequence[str]) -> str:
    out = ["<table><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in headers) + "</tr></thead><tbody>"]
    for i, r in enumerate(rows):
        cls = classes[i] if i < len(classes) else ""
        cells = []
        for v in r:
            c = "num" if isinstance(v, int | float) and not isinstance(v, bool) else ""
            if isinstance(v, str) and (v == "NO" or v.startswith("NO ")):
                c = "bad"
            elif v == "yes":
                c = "ok"
            cells.append(f'<td class="{c}">{_h(v)}</td>' if c else f"<td>{_h(v)}</td>")
        out.append((f'<tr class="{cls}">' if cls else "<tr>") + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _html_matrix(headers: Sequence[str], rows: Sequence[Sequence[str]], classes: Sequence[Sequence[str]],
                 totals: Sequence[str]) -> str:
    out = ['<table class="matrix"><thead><tr>' + "".join(f"<th>{html.escape(h)}</th>" for h in headers)
           + "</tr></thead><tbody>"]
    for r, cls in zip(rows, classes, strict=True):
        cells = [f"<th>{html.escape(r[0])}</th>"]
        for v, c in zip(r[1:], cls[1:], strict=True):
            title = ' title="differs from the other kernels"' if "odd" in c else ""
            cells.append(f'<td class="{c}"{title}>{html.escape(v)}</td>' if c else f"<td>{html.escape(v)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append('<tr class="totals">' + f"<th>{html.escape(totals[0])}</th>"
               + "".join(f"<td>{html.escape(t)}</td>" for t in totals[1:]) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def to_html(rep: Report, images: Sequence[tuple[str, str, bytes]]) -> str:
    p = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
         "<title>OOM killer: kernel comparison</title>", f"<style>{CSS}</style></head><body>"]
    for b in _blocks(rep, [name for _t, name, _d in images]):
        kind = b[0]
        if kind in ("h1", "h2", "h3"):
            p.append(f"<{kind}>{html.escape(b[1])}</{kind}>")
        elif kind == "p":
            p.append(f"<p>{html.escape(b[1])}</p>")
        elif kind == "warn":
            p.append(f'<div class="warn">{html.escape(b[1])}</div>')
        elif kind == "note":
            p.append(f'<p class="note">{html.escape(b[1])}</p>')
        elif kind == "ul":
            p.append("<ul>" + "".join(f"<li>{html.escape(str(i))}</li>" for i in b[1]) + "</ul>")
        elif kind == "table":
            p.append(_html_table(b[1], b[2], b[3]))
        elif kind == "matrix":
            p.append(_html_matrix(b[1], b[2], b[3], b[4]))
        elif kind == "images" and images:
            p.append('<h2>Plots</h2><div class="plots">')
            first, rest = images[:2], images[2:]
            p += [_img(t, d) for t, _n, d in first]
            if rest:
                p.append(f"<details><summary>Points per task for {len(rest)} more scenario(s)</summary>")
                p += [_img(t, d) for t, _n, d in rest]
                p.append("</details>")
            p.append("</div>")
    p.append("</body></html>")
    return "\n".join(p) + "\n"


def _img(title: str, data: bytes) -> str:
    b64 = base64.b64encode(data).decode("ascii")
    return f'<figure><img alt="{html.escape(title)}" src="data:image/png;base64,{b64}"></figure>'


# --------------------------------------------------------------------------------------------- build


def parse_formats(spec: str | Sequence[str] | None) -> list[str]:
    if spec is None:
        return list(FORMATS)
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    fmts = [f.strip().lower() for f in items if f.strip()]
    bad = [f for f in fmts if f not in FORMATS]
    if bad or not fmts:
        raise HarnessError(f"unknown report format {','.join(bad) or spec!r}: choose from {','.join(FORMATS)}")
    return fmts


def _frame_for_file(df: pd.DataFrame) -> pd.DataFrame:
    """Columns of one type each, so Parquet takes them (mixed True/False/None becomes a nullable boolean)."""
    import pandas as pd

    out = df.copy()
    for col in out.columns:
        s = out[col]
        if s.dtype == object:
            vals = s.dropna()
            if len(vals) and all(isinstance(v, bool) for v in vals):
                out[col] = s.astype("boolean")
            elif len(vals) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in vals):
                out[col] = pd.to_numeric(s)
            else:
                out[col] = s.map(lambda v: None if v is None else str(v)).astype("string")
    return out


def build_report(
    paths: Sequence[str],
    out_dir: str,
    formats: Sequence[str] = FORMATS,
    plot_scenarios: Sequence[str] | None = None,
    notes: Sequence[str] = (),
) -> Report:
    """Read *paths* (run folders), write the comparison into *out_dir*; returns the :class:`Report`."""
    import matplotlib

    matplotlib.use("Agg", force=False)

    runs, load_notes = load_runs(paths)
    rows = rows_frame(runs)
    agg = aggregate(rows)
    diffs, gaps = differences(agg)
    kernels = sorted({r.kernel_label for r in runs} | set(agg["kernel_label"]), key=kernel_order)
    rep = Report(runs, rows, agg, diffs, gaps, kernels, [*notes, *load_notes])
    os.makedirs(out_dir, exist_ok=True)

    images: list[tuple[str, str, bytes]] = []
    if "html" in formats or "md" in formats:
        images = _plots(rep, runs, plot_scenarios)
        if images:
            pdir = os.path.join(out_dir, "plots")
            os.makedirs(pdir, exist_ok=True)
            for _title, name, data in images:
                path = os.path.join(pdir, name)
                with open(path, "wb") as f:
                    f.write(data)
                rep.files.append(path)
    plot_names = [f"plots/{name}" for _t, name, _d in images]
    rep.markdown = to_markdown(rep, plot_names)
    if "md" in formats:
        rep.files.append(_write(out_dir, "comparison.md", rep.markdown))
    if "html" in formats:
        rep.files.append(_write(out_dir, "comparison.html", to_html(rep, images)))
    if "csv" in formats:
        path = os.path.join(out_dir, "comparison.csv")
        _frame_for_file(agg).to_csv(path, index=False)
        rows_path = os.path.join(out_dir, "rows.csv")
        _frame_for_file(rows).to_csv(rows_path, index=False)
        rep.files += [path, rows_path]
    if "parquet" in formats:
        try:
            path = os.path.join(out_dir, "comparison.parquet")
            _frame_for_file(agg).to_parquet(path, index=False)
            rows_path = os.path.join(out_dir, "rows.parquet")
            _frame_for_file(rows).to_parquet(rows_path, index=False)
            rep.files += [path, rows_path]
        except ImportError as e:
            raise HarnessError(f"Parquet output needs pyarrow ({e}); pip install pyarrow, or drop parquet "
                               "from --format") from None
    return rep


def _plots(rep: Report, runs: Sequence[Run], only: Sequence[str] | None) -> list[tuple[str, str, bytes]]:
    images = []
    fig = ttk_plot(rep.rows, rep.kernels) if not rep.rows.empty else None
    if fig is not None:
        images.append(("Time to kill per scenario and kernel", "time-to-kill.png", _png(fig)))
    cands = candidates_frame(runs)
    if cands.empty:
        return images
    have = set(cands["scenario"])
    if only:
        unknown = [s for s in only if s not in set(rep.agg["scenario"])]
        if unknown:
            raise HarnessError(f"no scenario {', '.join(unknown)} in these runs (plots)")
        scen = [s for s in only if s in have]
    else:
        # differences first (their plots are the interesting ones), then the rest alphabetically
        first = [d["scenario"] for d in rep.diffs if d["scenario"] in have]
        scen = first + sorted(have - set(first))
    jobs = [(cands[cands["scenario"] == sc], sc, list(rep.kernels)) for sc in scen]
    workers = min(os.cpu_count() or 1, len(jobs) // 4)  # savefig is ~0.15 s a plot: worth a pool past a few
    if workers > 1:
        ctx = multiprocessing.get_context("fork")  # the children inherit matplotlib already imported
        with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            pngs = list(pool.map(_points_png, jobs))
    else:
        pngs = [_points_png(job) for job in jobs]
    for sc, png in zip(scen, pngs, strict=True):
        if png is not None:
            images.append((f"Points per task by kernel: {sc}", f"points-{_safe(sc)}.png", png))
    return images


def _points_png(job: tuple[pd.DataFrame, str, list[str]]) -> bytes | None:
    """One scenario's points plot as PNG (a process-pool job: a Figure does not cross processes)."""
    cands, sc, kernels = job
    fig = points_plot(cands, sc, kernels)
    return None if fig is None else _png(fig)


def _write(out_dir: str, name: str, text: str) -> str:
    path = os.path.join(out_dir, name)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


def default_out(kind: str, root: str = "results") -> str:
    return os.path.join(root, f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}")


def print_files(rep: Report, stream: Any = None) -> None:
    stream = stream or sys.stderr
    plots = [f for f in rep.files if f.endswith(".png")]
    other = [f for f in rep.files if not f.endswith(".png")]
    where = os.path.dirname(other[0]) if other else os.path.dirname(os.path.dirname(plots[0])) if plots else ""
    names = [os.path.basename(f) for f in other] + ([f"plots/ ({len(plots)} PNG)"] if plots else [])
    print(f"wrote {', '.join(names)} in {where}", file=stream)
