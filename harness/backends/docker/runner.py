"""The Docker backend's runner: the engine, the image and the launcher around the shared scenario engine."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Iterator
from typing import Any

from harness.errors import HarnessError
from harness.machine.engine import EngineOptions, protect_self, run_scenario
from harness.machine.record import ScenarioRecord
from harness.machine.scenario import Scenario, spec_argv

from ..base import ProgressSink
from . import LABEL, progress
from .crosscheck import cross_check
from .daemon import DockerEngine, sweep_stale
from .image import HOG_IN_IMAGE, PYTHON_IN_IMAGE, build_image
from .launcher import DockerLauncher


class DockerRunner:
    """Runs scenarios in containers of a Docker engine (an existing one, or a throw-away dockerd)."""

    label = "docker"

    def __init__(self) -> None:
        removed = sweep_stale()
        if removed:
            progress(f"removed {len(removed)} item(s) left by a killed run: " + ", ".join(removed))
        self.protected = protect_self()
        self.engine = DockerEngine()
        try:
            t0 = time.monotonic()
            self.image = build_image(self.engine.client)
            self.image_s = round(time.monotonic() - t0, 2)
            self._warm_up()
            self._env = self.engine.info()
        except BaseException:
            self.engine.close()
            raise

    def _warm_up(self) -> None:
        """Run the image's python once without a memory limit, so its page cache is charged to the
        daemon's parent cgroup and not to the first scenario's container (see engine.warm_up)."""
        try:
            self.engine.client.containers.run(
                self.image,
                [PYTHON_IN_IMAGE, "-I", "-S", HOG_IN_IMAGE, *spec_argv({"kind": "anon", "size": 0})],
                network_mode="none",
                remove=True,
                labels={LABEL: "1", f"{LABEL}.pid": str(os.getpid())},
            )
        except Exception as e:  # noqa: BLE001
            raise HarnessError(f"the harness image does not run: {str(e).splitlines()[0][:300]}") from None

    def env(self) -> dict[str, Any]:
        return {
            "kernel": platform.release(),
            "self_protected": self.protected,
            "image": self.image,
            "image_build_s": self.image_s,
            **self._env,
        }

    def run(self, scenarios: list[Scenario], prog: ProgressSink) -> Iterator[tuple[Scenario, ScenarioRecord]]:
        for sc in scenarios:
            prog.start(sc.name)
            launcher = DockerLauncher(self.engine, self.image)
            try:
                rec = run_scenario(sc, EngineOptions(backend="docker"), launcher)
                rec.kernel_label = "docker"
                cross_check(rec, launcher.inspected)
                if rec.verdict == "error":
                    err = launcher.exec_stderr()
                    if err:
                        rec.docker = {**(rec.docker or {}), "exec_stderr": err}
            finally:
                launcher.close()
            yield sc, rec

    def close(self) -> None:
        problems = self.engine.close()
        if problems:
            raise HarnessError("docker clean-up incomplete: " + "; ".join(problems))
