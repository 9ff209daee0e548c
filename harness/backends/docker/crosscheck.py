"""The three signals of a Docker OOM, cross-checked: the kernel log, Docker's ``State.OOMKilled``, the verdict."""

from __future__ import annotations

import re
from typing import Any

from harness.machine.record import ScenarioRecord

_MEMCG_RE = re.compile(r"oom_memcg=([^,\s]+)")


def cross_check(rec: ScenarioRecord, docker_view: dict[str, Any] | None) -> None:
    """Add ``rec.docker`` and demand that kernel log, ``State.OOMKilled`` and the model agree."""
    if docker_view is None:
        return
    rec.docker = docker_view
    if rec.verdict in ("skipped", "error"):
        return
    rel = rec.cgroup or ""
    log_memcgs = _MEMCG_RE.findall(rec.kernel_log or "")
    kernel = any(m == rel or m.startswith(rel.rstrip("/") + "/") for m in log_memcgs) if rel else False
    docker = bool(docker_view.get("OOMKilled"))
    harness = rec.outcome in ("kill", "group-kill")
    rec.signals = {"kernel_log": kernel, "docker_oomkilled": docker, "harness": harness}
    if kernel == docker == harness:
        return
    words = {True: "an OOM kill", False: "no OOM kill"}
    why = (
        f"signals disagree: kernel log {words[kernel]} in {rel}, Docker State.OOMKilled={docker}, "
        f"harness outcome {rec.outcome} (verdict {rec.verdict})"
    )
    rec.fail(why)
