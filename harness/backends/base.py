"""What every backend is to the commands: a :class:`Runner` (made by :func:`.registry.make_runner`).

Why a protocol and not a base class: the three runners share no code (the shared code is the
scenario engine they all call), only this shape, which ``run`` and ``compare`` rely on.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from harness.machine.record import ScenarioRecord
from harness.machine.scenario import Scenario


class ProgressSink(Protocol):
    """Told when a scenario starts (the runner knows; the caller only sees records come back)."""

    def start(self, name: str) -> None: ...


class Runner(Protocol):
    """Runs scenarios on one kernel, one verdict record per scenario, and cleans up on :meth:`close`."""

    #: The kernel label the records carry ("host", "6.12", "docker", "custom").
    label: str

    def env(self) -> dict[str, Any]:
        """What the results folder records about where the scenarios ran (kernel, cgroup version, ...)."""
        ...

    def run(self, scenarios: list[Scenario], prog: ProgressSink) -> Iterator[tuple[Scenario, ScenarioRecord]]:
        """Run *scenarios* in order, yielding ``(scenario, record)`` as each finishes."""
        ...

    def close(self) -> None:
        """Release what the runner holds (VMs, containers, daemons); safe to call more than once."""
        ...
