"""Verdict rows as KTAP version 1 (``oom-harness run --format ktap``), as kselftest and KUnit print.

The format is the kernel's ``Documentation/dev-tools/ktap.rst``: a version line, a plan, then one
result line per test, ``ok``/``not ok``, numbered from 1.  Here one test is one scenario run (with
``--repeat``, one per attempt).  A skipped scenario is ``ok N name # SKIP <reason>``; a harness
error (the scenario could not be judged) is ``not ok N name # ERROR <reason>``; every ``not ok`` is
preceded by a block of diagnostic lines (``# ...``) with the victim, the model's choice, the points
and the reason, so a KTAP reader (KernelCI, LAVA, kunit.py) shows why without opening the results.

``compare --ktap PATH`` / ``report --ktap PATH`` write the same for several kernels: one top-level
test per kernel label (``host``, ``6.12`` ...), its scenarios as nested subtests introduced by an
indented version line and ``# Subtest: <label>``, as KUnit prints suites, so kunit.py shows one
suite per kernel.

Nothing but version, plan, result and diagnostic lines is printed, so the output is also valid TAP.
The tests feed real output to the kernel tree's own ``tools/testing/kunit/kunit_parser.py``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from harness import __version__
from harness.atomic import atomic_write

from .report import kernel_order
from .results import load_run

__all__ = ["ktap", "ktap_runs", "test_name", "write_ktap"]

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


def _results(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Plan and result lines (with the diagnostic blocks) for *rows*, unindented."""
    out = [f"1..{len(rows)}"]
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
    return out


def ktap(rows: Sequence[dict[str, Any]], header: Sequence[str] = ()) -> str:
    """KTAP version 1 text for *rows* (verdict rows of one run); *header* lines become diagnostics."""
    out = ["KTAP version 1", f"# oom-harness {__version__}"]
    out += [f"# {_one_line(h, 2000)}" for h in header]
    out += _results(rows)
    return "\n".join(out) + "\n"


def ktap_runs(run_dirs: Sequence[str]) -> str:
    """KTAP version 1 for saved run folders: one test per kernel label (in the comparison's kernel
    order), holding one subtest per scenario run.  A kernel is ``not ok`` when one of its scenarios
    is; a kernel with no scenario run (interrupted at once) is ``ok ... # SKIP``."""
    per: dict[str, list[dict[str, Any]]] = {}
    envs: dict[str, list[dict[str, Any]]] = {}
    for d in run_dirs:
        env, rows, status = load_run(d)
        label = str(env.get("kernel_label") or env.get("backend") or "?")
        per.setdefault(label, []).extend(rows)
        envs.setdefault(label, []).append(dict(env, status=status))
    out = ["KTAP version 1", f"# oom-harness {__version__}", f"1..{len(per)}"]
    for n, label in enumerate(sorted(per, key=kernel_order), 1):
        rows = per[label]
        name = _UNSAFE.sub("_", label).strip("_") or "kernel"
        kernels = ", ".join(dict.fromkeys(str(e.get("kernel")) for e in envs[label] if e.get("kernel")))
        runs = ", ".join(f"{e.get('run_id')} ({e.get('status')})" for e in envs[label])
        out += ["  KTAP version 1", f"  # Subtest: {name}",
                f"  # kernel {_one_line(kernels or '?')}; runs {_one_line(runs, 2000)}"]
        out += ["  " + ln for ln in _results(rows)]
        if not rows:
            out.append(f"ok {n} {name} # SKIP no scenario ran on this kernel")
        elif any(r.get("as_expected") is False for r in rows):
            out.append(f"not ok {n} {name}")
        else:
            out.append(f"ok {n} {name}")
    return "\n".join(out) + "\n"


def write_ktap(path: str, run_dirs: Sequence[str]) -> str:
    """Write :func:`ktap_runs` of *run_dirs* to *path* (atomically; atomic_write makes the folders)."""
    atomic_write(path, ktap_runs(run_dirs))
    return path
