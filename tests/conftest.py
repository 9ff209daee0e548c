"""Shared fixtures: real-system prerequisites (skipped with the reason printed) and debris checks."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _host_problem() -> str | None:
    if os.geteuid() != 0:
        return "needs root (cgroups, /dev/kmsg)"
    try:
        from harness.machine.sandbox import detect_layout

        detect_layout()
    except Exception as e:  # noqa: BLE001
        return f"no usable memory cgroup: {e}"
    if not os.access("/dev/kmsg", os.R_OK):
        return "cannot read /dev/kmsg"
    return None


@pytest.fixture
def host() -> None:
    """Skip (with the reason) unless genuine memcg OOMs can be provoked here."""
    why = _host_problem()
    if why:
        pytest.skip(why)


def oomh_cgroups() -> list[str]:
    from harness.machine.sandbox import PREFIX, detect_layout

    try:
        lay = detect_layout()
    except Exception:  # noqa: BLE001
        return []
    try:
        return [n for n in os.listdir(lay.own_dir) if n.startswith(PREFIX)]
    except OSError:
        return []


def _another_live_harness(cgroup_name: str) -> bool:
    """``oomh-<pid>-...`` of a different harness that is still running is not our debris."""
    try:
        pid = int(cgroup_name.split("-")[1])
    except (IndexError, ValueError):
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def hog_processes() -> list[str]:
    """Workload processes started from THIS checkout (another harness may run at the same time)."""
    hog = os.path.join(ROOT, "workloads", "hog.py")
    out = subprocess.run(["pgrep", "-af", hog], capture_output=True, text=True).stdout
    return [ln for ln in out.splitlines() if "pgrep" not in ln and hog in ln]


@pytest.fixture
def no_debris():
    """Assert the test left no sandbox cgroup and no workload process behind."""
    before = set(oomh_cgroups())
    yield
    left = {n for n in set(oomh_cgroups()) - before if not _another_live_harness(n)}
    assert not left, f"cgroups left behind: {left}"
    assert not hog_processes(), f"workload processes left behind: {hog_processes()}"


def run_cli(*args: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, **kw)
