"""Saved runs as JUnit XML (``run --junit``, ``compare --junit``, ``report --junit``).

The shape Jenkins, GitLab and the GitHub test-reporter actions read (the Jenkins xUnit plugin's
``junit-10.xsd``; ``tests/data/junit.xsd`` states it and a test validates against it):

* ``<testsuites>`` holding one ``<testsuite>`` per kernel label (``host``, ``6.12`` ...), with the
  kernel release, backend, cgroup version and run folders as ``<properties>``;
* one ``<testcase>`` per scenario run: ``classname`` ``oom-harness.<kernel label>``, ``name`` the
  scenario (``name [attempt 2]`` when repeated), ``time`` its duration;
* a verdict not as expected is a ``<failure>`` whose ``message`` is the reason and ``type`` the
  verdict; a harness error (the scenario could not be judged) an ``<error>``; a skip ``<skipped>``
  with the reason;
* ``<system-out>`` is the kernel log the scenario read (its OOM report), from the run's ``kernel.log``.

Only the standard library is used: reading a run and writing XML must work wherever the harness does.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import Any

from harness.atomic import atomic_write

from .report import kernel_order
from .results import load_run

__all__ = ["junit_xml", "kernel_logs", "write_junit"]

# XML 1.0 allows tab, newline, carriage return and U+0020 upwards (less surrogates, FFFE, FFFF)
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_HEADER = re.compile(r"^=== (.+#\d+) ===$", re.M)
#: System-out larger than this is cut from the front (a report's end, the kill, matters most).
MAX_LOG_CHARS = 200_000


def _x(v: Any) -> str:
    return _NOT_XML.sub("\ufffd", "" if v is None else str(v))


def kernel_logs(run_dir: str) -> dict[str, str]:
    """``scenario#index`` -> the kernel log that scenario read, from ``kernel.log`` of a run folder."""
    try:
        with open(os.path.join(run_dir, "kernel.log"), encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return {}
    out: dict[str, str] = {}
    heads = list(_HEADER.finditer(text))
    for i, m in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        out[m.group(1)] = text[m.end() + 1 : end]
    return out



def junit_xml(run_dirs: Sequence[str], name: str = "oom-harness") -> str:
    """JUnit XML for the run folders *run_dirs*, one testsuite per kernel label."""
    suites: dict[str, list[tuple[dict[str, Any], dict[str, Any], str, int]]] = {}
    envs: dict[str, list[dict[str, Any]]] = {}
    for d in run_dirs:
        env, rows, status = load_run(d)
        env = dict(env, status=status)
        logs = kernel_logs(d)
        for i, r in enumerate(rows):
            label = str(r.get("kernel_label") or env.get("kernel_label") or env.get("backend") or "?")
            suites.setdefault(label, []).append((r, env, logs.get(f"{r.get('scenario')}#{i}", ""), i))
        label = str(env.get("kernel_label") or env.get("backend") or "?")
        envs.setdefault(label, []).append(env)
        suites.setdefault(label, [])
    root = ET.Element("testsuites", name=name)
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0, "time": 0.0}
    for label in sorted(suites, key=kernel_order):
        cases = suites[label]
        ts = ET.SubElement(root, "testsuite", name=f"{name}: kernel {label}")
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0, "time": 0.0}
        props = ET.SubElement(ts, "properties")
        es = envs.get(label) or list({id(c[1]): c[1] for c in cases}.values())
        for key in ("kernel", "backend", "cgroup_version", "host", "harness_version"):
            vals = list(dict.fromkeys(str(e.get(key)) for e in es if e.get(key) is not None))
            if vals:
                ET.SubElement(props, "property", name=key, value=_x(", ".join(vals)))
        ET.SubElement(props, "property", name="runs", value=_x(", ".join(
            f"{e.get('run_id')} ({e.get('status')})" for e in es)))
        seen: dict[str, int] = {}
        for row, _env, log, _i in cases:
            sc = str(row.get("scenario"))
            seen[sc] = seen.get(sc, 0) + 1
            dur = float(row.get("duration_s") or 0.0)
            tc = ET.SubElement(ts, "testcase", name=_x(sc if seen[sc] == 1 else f"{sc} [attempt {seen[sc]}]"),
                               classname=f"oom-harness.{label}", time=f"{dur:.3f}")
            counts["tests"] += 1
            counts["time"] += dur
            reason = _x(row.get("reason") or "")
            ok = row.get("as_expected")
            if ok is None or row.get("verdict") == "skipped":
                counts["skipped"] += 1
                ET.SubElement(tc, "skipped", message=reason)
            elif ok is False:
                kind = "error" if row.get("verdict") == "error" else "failure"
                counts["errors" if kind == "error" else "failures"] += 1
                el = ET.SubElement(tc, kind, message=reason, type=str(row.get("verdict")))
                el.text = _x(_details(row))
            if log:
                if len(log) > MAX_LOG_CHARS:
                    log = f"[... {len(log) - MAX_LOG_CHARS} characters cut ...]\n" + log[-MAX_LOG_CHARS:]
                ET.SubElement(tc, "system-out").text = _x(log)
        for k, v in counts.items():
            ts.set(k, f"{v:.3f}" if k == "time" else str(v))
            totals[k] += v
    for k in ("tests", "failures", "errors", "time"):
        root.set(k, f"{totals[k]:.3f}" if k == "time" else str(totals[k]))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _details(row: dict[str, Any]) -> str:
    def who(v: Any) -> str:
        if not isinstance(v, dict):
            return "-"
        return f"{v.get('workload') or v.get('name')} (pid {v.get('pid')})"

    ru = row.get("runner_up") or {}
    exp = row.get("expected") or {}
    lines = [
        f"scenario: {row.get('scenario')}  kernel: {row.get('kernel')} ({row.get('kernel_label')})",
        f"verdict: {row.get('verdict')}  outcome: {row.get('outcome')}  expected: {exp}",
        f"killed: {who(row.get('observed_victim'))}  model: {who(row.get('predicted_victim'))}",
        f"points: {row.get('victim_points')}  runner-up: {who(ru) if ru else '-'} {ru.get('points', '') if ru else ''}",
    ]
    if row.get("second_victims"):
        lines.append(f"second victims: {', '.join(map(str, row['second_victims']))}")
    lines.append(f"reason: {row.get('reason')}")
    return "\n".join(lines) + "\n"


def write_junit(path: str, run_dirs: Sequence[str]) -> str:
    """Write the JUnit XML of *run_dirs* to *path* (atomically; atomic_write makes the folders)."""
    atomic_write(path, junit_xml(run_dirs))
    return path
