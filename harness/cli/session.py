"""Running a set of scenarios with one runner and recording them: what ``run`` and ``compare`` share.

Progress goes to stderr (one line per scenario, a live counter on a terminal); the verdict rows go
to a new ``results/<run-id>/`` folder as they come; Ctrl-C and SIGTERM close it as "interrupted".
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from harness.backends.base import Runner
from harness.machine.scenario import Scenario
from harness.reporting.results import RunRecorder


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM takes the same clean-up path as Ctrl-C (sandbox removed, VM stopped, results closed)."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


class Progress:
    """One line per scenario on stderr; a live counter when stderr is a terminal."""

    def __init__(self, total: int, label: str, live: bool = True) -> None:
        """*live*: the in-place counter on a terminal (off when several kernels print at once)."""
        self.total, self.label, self.done, self.t0 = total, label, 0, time.monotonic()
        self.tty = live and sys.stderr.isatty()

    def start(self, name: str) -> None:
        if self.tty:
            sys.stderr.write(f"\r[{self.done + 1}/{self.total}] {self.label}: {name} ...\x1b[K")
            sys.stderr.flush()

    def finish(self, row: dict[str, Any]) -> None:
        self.done += 1
        mark = {True: "ok  ", False: "FAIL", None: "skip"}[row.get("as_expected")]
        line = (
            f"[{self.done}/{self.total}] {mark} {self.label}: {row['scenario']:<24} {row['verdict']:<11} "
            f"{row.get('duration_s', 0):6.2f}s  {_victims(row)}"
        )
        sys.stderr.write(("\r" if self.tty else "") + line + ("\x1b[K\n" if self.tty else "\n"))
        sys.stderr.flush()


def _victims(row: dict[str, Any]) -> str:
    o, p = row.get("observed_victim"), row.get("predicted_victim")
    if not o and not p:
        return row.get("reason", "")[:80] if row.get("as_expected") is not True else ""
    return f"killed {(o or {}).get('workload') or (o or {}).get('name')}, model {(p or {}).get('workload') or '-'}"


_ids = itertools.count(1)


def _run_id(backend: str, label: str) -> str:
    """Run ids of parallel runs (one process, same second) told apart by a counter."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{backend}-{label}-{os.getpid()}-{next(_ids)}"


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during :func:`record_run`; ``where`` is the run folder, closed as "interrupted"."""

    def __init__(self, where: str) -> None:
        super().__init__(where)
        self.where = where


def record_run(
    runner: Runner, scenarios: list[Scenario], results: str, backend: str, *,
    cancel: threading.Event | None = None, parallel: bool = False,
) -> tuple[str, list[dict[str, Any]]]:
    """Run *scenarios* with *runner* into a new ``results/<run-id>/`` folder, with progress.

    Ctrl-C and SIGTERM close the record as "interrupted" (the runner cleans up on the way out).
    *parallel*: called from a worker thread of ``compare -j`` (the main thread owns the signals;
    it sets *cancel*, and the run stops after its current scenario, closed as "interrupted").
    Returns the folder and the verdict rows.
    """
    rows: list[dict[str, Any]] = []
    with contextlib.nullcontext() if parallel else sigterm_as_interrupt():
        rec = RunRecorder(results, backend=backend, kernel_label=runner.label, env=runner.env(),
                          run_id=_run_id(backend, runner.label) if parallel else None)
        status = "interrupted"
        try:
            prog = Progress(len(scenarios), runner.label, live=not parallel)
            for _sc, record in runner.run(scenarios, prog):
                rows.append(rec.add(record))
                prog.finish(rows[-1])
                if cancel is not None and cancel.is_set():
                    raise KeyboardInterrupt
            status = "complete"
        except KeyboardInterrupt:
            raise RunInterrupted(rec.dir) from None
        finally:
            rec.close(status)
            runner.close()
    return rec.dir, rows
