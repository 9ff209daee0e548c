"""The ``results/<run-id>/`` record of a run, written so that no interruption corrupts it.

Layout (documented in the README)::

    results/<run-id>/
        env.json          kernel, cgroup version, backend, harness version, host (written first)
        verdicts.jsonl    one verdict row per scenario, appended and fsync'ed as each finishes
        kernel.log        the raw kernel-log records each scenario read (per-scenario headers)
        events.json       every parsed OOM event with the model's analysis, per scenario
        snapshots.json    the pre-trigger /proc snapshot of every task, per scenario
        summary.json      written last: counts and status ("complete" or "interrupted")
        RUNNING           present while the run is in progress (holds the harness pid)

Whole files are written to a temporary name and renamed; the JSON Lines file only ever grows by
whole lines.  A row keeps the reason its scenario got when it ended; the rows of a run as the harness
hands them out (when the run closes, :func:`load_run`) are passed through
:func:`harness.core.variants.explain_rows`, so a mismatch the stock rules do not explain names the rule
variant consistent with the whole run, in every view of the run.  A run folder without
``summary.json`` is partial: if its ``RUNNING`` pid is dead, the run was killed; ``oom-harness
report`` reads such runs and says so.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import time
from typing import Any

from harness import __version__
from harness.atomic import atomic_write
from harness.core.variants import explain_rows
from harness.machine.record import ScenarioRecord

DEFAULT_ROOT = "results"
ROW_DROP = ("events", "snapshot", "kernel_log")

__all__ = ["RunRecorder", "load_run", "run_status"]


class RunRecorder:
    """Collects one run's scenario records into ``results/<run-id>/``."""

    def __init__(
        self,
        root: str = DEFAULT_ROOT,
        *,
        backend: str,
        kernel_label: str,
        env: dict[str, Any] | None = None,
        run_id: str | None = None,
    ) -> None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.run_id = run_id or f"{stamp}-{backend}-{kernel_label}-{os.getpid()}"
        self.dir = os.path.join(root, self.run_id)
        os.makedirs(self.dir, exist_ok=False)
        atomic_write(os.path.join(self.dir, "RUNNING"), str(os.getpid()))
        self.env = {
            "run_id": self.run_id,
            "backend": backend,
            "kernel_label": kernel_label,
            "harness_version": __version__,
            "host_kernel": platform.release(),
            "host": socket.gethostname(),
            "python": platform.python_version(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **(env or {}),
        }
        atomic_write(os.path.join(self.dir, "env.json"), json.dumps(self.env, indent=1))
        self.events: dict[str, Any] = {}
        self.snapshots: dict[str, Any] = {}
        self.rows: list[dict[str, Any]] = []
        self._verdicts = open(os.path.join(self.dir, "verdicts.jsonl"), "a", encoding="utf-8")  # noqa: SIM115
        self._log = open(os.path.join(self.dir, "kernel.log"), "a", encoding="utf-8")  # noqa: SIM115

    def add(self, record: ScenarioRecord) -> dict[str, Any]:
        """Record one scenario; returns the verdict row that was written."""
        rec = record.to_dict()
        key = f"{rec.get('scenario')}#{len(self.rows)}"
        row = {k: v for k, v in rec.items() if k not in ROW_DROP}
        row["run_id"] = self.run_id
        row.setdefault("kernel_label", self.env.get("kernel_label"))
        self.events[key] = rec.get("events", [])
        self.snapshots[key] = rec.get("snapshot", [])
        log = rec.get("kernel_log") or ""
        # whole lines only: the next scenario's header must start a line (junit.kernel_logs splits on it)
        self._log.write(f"=== {key} ===\n{log}" + ("" if not log or log.endswith("\n") else "\n"))
        self._log.flush()
        self._verdicts.write(json.dumps(row, default=str) + "\n")
        self._verdicts.flush()
        os.fsync(self._verdicts.fileno())
        self.rows.append(row)
        return row

    def close(self, status: str = "complete") -> None:
        """Write the run's files; the rows handed out by :meth:`add` now name the rule variants that
        fit the whole run (:func:`~harness.core.variants.explain_rows`, as :func:`load_run` does)."""
        for row, explained in zip(self.rows, explain_rows(self.rows), strict=True):
            row.update(explained)
        try:
            atomic_write(os.path.join(self.dir, "events.json"), json.dumps(self.events, indent=1, default=str))
            atomic_write(os.path.join(self.dir, "snapshots.json"), json.dumps(self.snapshots, indent=1, default=str))
            counts: dict[str, int] = {}
            for r in self.rows:
                counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
            summary = {
                "run_id": self.run_id,
                "status": status,
                "scenarios": len(self.rows),
                "verdicts": counts,
                "as_expected": sum(1 for r in self.rows if r.get("as_expected") is True),
                "not_as_expected": sum(1 for r in self.rows if r.get("as_expected") is False),
                "skipped": sum(1 for r in self.rows if r.get("as_expected") is None),
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            atomic_write(os.path.join(self.dir, "summary.json"), json.dumps(summary, indent=1))
        finally:
            self._verdicts.close()
            self._log.close()
            try:
                os.unlink(os.path.join(self.dir, "RUNNING"))
            except FileNotFoundError:
                pass


def run_status(run_dir: str) -> str:
    """complete | interrupted | running | killed (partial, its harness is gone)."""
    summ = os.path.join(run_dir, "summary.json")
    if os.path.exists(summ):
        try:
            with open(summ) as f:
                return json.load(f).get("status", "complete")
        except (OSError, ValueError):
            return "killed"
    try:
        with open(os.path.join(run_dir, "RUNNING")) as f:
            pid = int(f.read().strip() or 0)
        os.kill(pid, 0)
        return "running"
    except (OSError, ValueError):
        return "killed"


def load_run(run_dir: str) -> tuple[dict[str, Any], list[dict[str, Any]], str]:
    """(env, verdict rows, status) of a run folder; a torn last line of verdicts.jsonl is ignored; each
    row's reason names the rule variants that fit the run (:func:`~harness.core.variants.explain_rows`)."""
    with open(os.path.join(run_dir, "env.json")) as f:
        env = json.load(f)
    rows = []
    try:
        with open(os.path.join(run_dir, "verdicts.jsonl"), encoding="utf-8") as f:
            for line in f:
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    break
    except FileNotFoundError:
        pass
    return env, explain_rows(rows), run_status(run_dir)
