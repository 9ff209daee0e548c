"""Verdict rows as KTAP version 1 (``oom-harness run --format ktap``), as kselftest and KUnit print.

The format is the kernel's ``Documentation/dev-tools/ktap.rst``: a version line, a plan, then one
result line per test, ``ok``/``not ok``, numbered from 1.  Here one test is one scenario run (with
``--repeat``, one per attempt).  A skipped scenario is ``ok N name # SKIP <reason>``; a harness
error (the scenario could not be judged) is ``not ok N name # ERROR <reason>``; every ``not ok`` is
preceded by a block of diagnostic lines (``# ...``) with the victim, the model's choice, the points
and the reason, so a KTAP reader (KernelCI, LAVA, kunit.py) shows why without opening the results.

Nothing but version, plan, result and diagnostic lines is printed, so the output is also valid TAP.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from harness import __version__

__all__ = ["ktap", "test_name"]

_UNSAFE = re.compile(r"[#\s]+")


def test_name(row: dict[str, Any], attempt: int = 1) -> str:
    """The result line's description: the scenario name without ``#`` or blanks (a KTAP description
    cannot hold ``#``; blanks would be legal but parsers split on them)."""
    name = _UNSAFE.sub("_", str(row.get("scenario") or "scenario")).strip("_") or "scenario"
    return name if attempt == 1 else f"{name}_attempt_{attempt}"


def _one_line(text: Any, limit: int = 400) -> str:
    s = " ".join(str(text if text is not None else "").split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _who(v: Any) -> str:
    if not isinstance(v, dict):
        return "-"
    name = v.get("workload") or v.get("name") or "?"
    return f"{name} (pid {v['pid']})" if v.get("pid") is not None else str(name)


def _diagnostics(row: dict[str, Any]) -> list[str]:
    exp = row.get("expected") or {}
    ev = exp.get("victim") if isinstance(exp, dict) else None
    ev = ",".join(map(str, ev)) if isinstance(ev, list) else ev
    ru = row.get("runner_up") or {}
    lines = [
        f"kernel: {row.get('kernel') or '-'} ({row.get('kernel_label') or row.get('backend') or '-'})",
        f"verdict: {row.get('verdict')}; outcome: {row.get('outcome') or '-'}; "
        f"expected: {exp.get('outcome', '-') if isinstance(exp, dict) else '-'} {ev or ''}".rstrip(),
        f"victim: {_who(row.get('observed_victim'))}",
        f"model: {_who(row.get('predicted_victim'))}",
        f"points: victim {row.get('victim_points', '-') if row.get('victim_points') is not None else '-'}, "
        f"runner-up {_who(ru) if ru else '-'} {ru.get('points', '-') if isinstance(ru, dict) and ru else ''}".rstrip(),
    ]
    if row.get("second_victims"):
        lines.append("second victims: " + ", ".join(map(str, row["second_victims"])))
    lines.append(f"reason: {_one_line(row.get('reason'), 2000)}")
    return [f"# {_one_line(x, 2000)}" for x in lines]


def ktap(rows: Sequence[dict[str, Any]], header: Sequence[str] = ()) -> str:
    """KTAP version 1 text for *rows* (verdict rows of one run); *header* lines become diagnostics."""
    out = ["KTAP version 1", f"# oom-harness {__version__}"]
    out += [f"# {_one_line(h, 2000)}" for h in header]
    out.append(f"1..{len(rows)}")
    seen: dict[str, int] = {}
    for n, row in enumerate(rows, 1):
        sc = str(row.get("scenario"))
        seen[sc] = seen.get(sc, 0) + 1
        name = test_name(row, seen[sc])
        ok = row.get("as_expected")
        if ok is None or row.get("verdict") == "skipped":
            out.append(f"ok {n} {name} # SKIP {_one_line(row.get('reason'))}".rstrip())
        elif ok is True:
            out.append(f"ok {n} {name}")
        else:
            out += _diagnostics(row)
            if row.get("verdict") == "error":
                out.append(f"not ok {n} {name} # ERROR {_one_line(row.get('reason'), 200)}".rstrip())
            else:
                out.append(f"not ok {n} {name}")
    return "\n".join(out) + "\n"
