"""Real pasted OOM reports: is the kernel's victim found, and is the model's verdict the right one?

Reads every public fixture set (``tests/fixtures/public`` and ``tests/fixtures/pastes``, one
``index.json`` format), parses each report in-process with the same code as ``oom-harness parse``
and judges it against its index entry:

* *victim found*: an event whose observed victim (the task the kernel selected: the
  ``Kill process`` line up to 5.0, the ``oom-kill:`` summary from 5.0, else the ``Killed`` line) is
  the index's ``selected_pid`` (or ``victim_pid``), and whose kills include ``victim_pid``;
* *prediction right*: that event's verdict equals the index's ``expect_verdict`` (default
  ``match`` for a complete report), and its reason class (:mod:`harness.core.reasons`) equals
  ``expect_reason`` when one is given;
* a *crash* is any exception out of the parser or the analysis.

The headline is over the reports whose task table is complete (``complete`` in the index); the
same figures over every report follow, then every failure with a one-line cause.

    .venv/bin/python bench/eval_pastes.py [--dir DIR ...] [--code TREE] [--json]

``--code TREE`` judges with the harness of another checkout (e.g. ``/work/wt-repair``), read-only;
the fixtures and the reason classes stay this tree's.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CODE = Path(sys.argv[sys.argv.index("--code") + 1]).resolve() if "--code" in sys.argv[:-1] else ROOT
sys.path.insert(0, str(CODE))
sys.dont_write_bytecode = CODE != ROOT  # another checkout is only read

from harness.core.analysis import analyze_all  # noqa: E402
from harness.core.parser import parse_file  # noqa: E402


def _load_reasons() -> Any:
    """This tree's harness/core/reasons.py, whatever tree the harness is imported from."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_eval_reasons", ROOT / "harness" / "core" / "reasons.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


reason_class = _load_reasons().reason_class

DIRS = [ROOT / "tests" / "fixtures" / "public", ROOT / "tests" / "fixtures" / "pastes"]


@dataclass
class Judged:
    file: str
    complete: bool
    has_victim: bool  # the index names a victim or a selected task
    victim_found: bool
    expected: str | None
    expected_reason: str | None
    verdict: str | None
    reason_class: str | None
    right: bool
    crash: str | None = None
    cause: str = ""
    xfail: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)


def load_index(d: Path) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads((d / "index.json").read_text())
    for e in entries:
        e.setdefault("expect_verdict", "match" if e.get("complete") else None)
        e.setdefault("expect_reason", None)
        e.setdefault("xfail", None)
        e["_path"] = str(d / e["file"])
    return entries


def analyze_path(path: str) -> list[dict[str, Any]]:
    return [a.to_dict() for a in analyze_all(parse_file(path))]


def judged_event(entry: dict[str, Any], docs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The event that holds the index's victim; without one, the first event."""
    want = entry.get("selected_pid") or entry.get("victim_pid")
    if want is None:
        return docs[0] if docs else None
    for d in docs:
        obs = (d.get("observed_victim") or {}).get("pid")
        kills = {k["pid"] for k in d.get("kills", [])}
        if obs == want and (entry.get("victim_pid") is None or entry["victim_pid"] in kills | {obs}):
            return d
    return None


def judge(entry: dict[str, Any], docs: list[dict[str, Any]]) -> Judged:
    want = entry.get("selected_pid") or entry.get("victim_pid")
    ev = judged_event(entry, docs)
    expected = entry.get("expect_verdict")  # None: the index makes no claim (older public entries)
    exp_reason = entry.get("expect_reason")
    j = Judged(
        entry["file"],
        bool(entry.get("complete")),
        want is not None,
        ev is not None,
        expected,
        exp_reason,
        None,
        None,
        False,
        xfail=entry.get("xfail"),
        events=docs,
    )
    if ev is None:
        got = [((d.get("observed_victim") or {}).get("pid"), [k["pid"] for k in d.get("kills", [])]) for d in docs]
        j.cause = f"victim {want} not found (events: {got or 'none'})" if want else "no OOM event found"
        return j
    j.verdict, j.reason_class = ev["verdict"], reason_class(ev["verdict"], ev["reason"])
    j.right = expected is None or (j.verdict == expected and (exp_reason is None or j.reason_class == exp_reason))
    if not j.right:
        j.cause = f"{j.verdict} [{j.reason_class}] instead of {expected}" + (f" [{exp_reason}]" if exp_reason else "")
        j.cause += f": {ev['reason']}"
    return j


def evaluate(dirs: list[Path]) -> list[Judged]:
    out = []
    for d in dirs:
        for entry in load_index(d):
            try:
                docs = analyze_path(entry["_path"])
            except Exception as e:  # noqa: BLE001 - a crash is a result here
                tb = traceback.format_exception_only(type(e), e)[-1].strip()
                out.append(
                    Judged(
                        entry["file"],
                        bool(entry.get("complete")),
                        True,
                        False,
                        entry.get("expect_verdict"),
                        None,
                        None,
                        None,
                        False,
                        crash=tb,
                        cause=f"crash: {tb}",
                        xfail=entry.get("xfail"),
                    )
                )
                continue
            out.append(judge(entry, docs))
    return out


def _pct(a: int, b: int) -> str:
    return f"{100.0 * a / b:.0f}%" if b else "-"


def summary(rows: list[Judged]) -> dict[str, Any]:
    comp = [r for r in rows if r.complete]
    with_victim = [r for r in rows if r.has_victim]
    return {
        "complete": len(comp),
        "complete_victim_found": sum(r.victim_found for r in comp if r.has_victim),
        "complete_with_victim": sum(1 for r in comp if r.has_victim),
        "complete_right": sum(r.right for r in comp),
        "all": len(rows),
        "all_victim_found": sum(r.victim_found for r in with_victim),
        "all_with_victim": len(with_victim),
        "all_right": sum(r.right for r in rows if r.expected is not None),
        "all_judged": sum(1 for r in rows if r.expected is not None),
        "crashes": sum(1 for r in rows if r.crash),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", action="append", type=Path, help="fixture folder with index.json (repeatable)")
    ap.add_argument("--code", type=Path, help="judge with the harness of this checkout (read-only)")
    ap.add_argument("--json", action="store_true", help="machine-readable output")
    a = ap.parse_args(argv)
    rows = evaluate(a.dir or DIRS)
    s = summary(rows)
    if a.json:
        print(
            json.dumps(
                {
                    "summary": s,
                    "failures": [
                        {"file": r.file, "complete": r.complete, "cause": r.cause, "xfail": r.xfail}
                        for r in rows
                        if not (r.right and (r.victim_found or not r.has_victim))
                    ],
                },
                indent=1,
            )
        )
        return 0
    print(
        f"complete task table: victim found {s['complete_victim_found']}/{s['complete_with_victim']}, "
        f"prediction right {s['complete_right']}/{s['complete']} ({_pct(s['complete_right'], s['complete'])}), "
        f"crashes {s['crashes']}"
    )
    print(
        f"every report:        victim found {s['all_victim_found']}/{s['all_with_victim']}, "
        f"verdict as expected {s['all_right']}/{s['all_judged']} ({_pct(s['all_right'], s['all_judged'])})"
    )
    bad = [r for r in rows if not (r.right and (r.victim_found or not r.has_victim))]
    if bad:
        print("failures (complete first; [repair] etc. = the index's known cause):")
    for r in sorted(bad, key=lambda r: (not r.complete, r.file)):
        tag = "complete  " if r.complete else "incomplete"
        known = f"  <- known: {r.xfail}" if r.xfail else ""
        print(f"  {tag} {r.file}: {r.cause[:220]}{known[:160]}")
    return 1 if s["crashes"] else 0


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `| head` is fine
    sys.exit(main())
