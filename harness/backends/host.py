"""The host backend: scenarios on this machine's kernel, each in a memory cgroup below our own."""

from __future__ import annotations

import platform
from collections.abc import Iterator
from typing import Any

from harness.machine.engine import EngineOptions, protect_self, run_scenario
from harness.machine.record import ScenarioRecord
from harness.machine.sandbox import detect_layout
from harness.machine.scenario import Scenario

from .base import ProgressSink


class HostRunner:
    """Runs scenarios on this machine's kernel through the shared engine."""

    label = "host"

    def __init__(self) -> None:
        self.layout = detect_layout()
        self.protected = protect_self()

    def env(self) -> dict[str, Any]:
        return {
            "kernel": platform.release(),
            "cgroup_version": self.layout.version,
            "own_cgroup": self.layout.own,
            "self_protected": self.protected,
        }

    def run(self, scenarios: list[Scenario], prog: ProgressSink) -> Iterator[tuple[Scenario, ScenarioRecord]]:
        for sc in scenarios:
            prog.start(sc.name)
            rec = run_scenario(sc, EngineOptions(backend="host"))
            rec.kernel_label = "host"
            yield sc, rec

    def close(self) -> None:
        pass
