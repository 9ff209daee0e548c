"""Shared fixtures: real-system prerequisites (skipped with the reason printed) and debris checks."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import NoReturn

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --- a missing environment skips; a harness failure fails --------------------------------------
#
# Only what the machine lacks may skip a test: root, a memory cgroup controller, QEMU, a Docker
# engine.  CI sets OOM_HARNESS_REQUIRE=host,vm,docker (.ci/run): there a missing backend fails too,
# and the run must end with genuine OOM kills of every required backend (pytest_sessionfinish).
BACKENDS = ("host", "vm", "docker")
REQUIRED = frozenset(b.strip() for b in os.environ.get("OOM_HARNESS_REQUIRE", "").split(",") if b.strip())
_unknown = REQUIRED - set(BACKENDS)
if _unknown:
    raise pytest.UsageError(f"OOM_HARNESS_REQUIRE: unknown backend(s) {sorted(_unknown)}; use {','.join(BACKENDS)}")


def unavailable(backend: str, reason: str) -> NoReturn:
    """The environment cannot run *backend*: skip with the reason, or fail where CI requires it."""
    if backend in REQUIRED:
        pytest.fail(f"OOM_HARNESS_REQUIRE includes {backend}, but: {reason}", pytrace=False)
    pytest.skip(reason)


def _host_problem() -> str | None:
    """What this machine lacks for genuine memcg OOMs, or None.  A bug in layout detection raises."""
    if os.geteuid() != 0:
        return "needs root (cgroups, /dev/kmsg)"
    from harness.errors import HarnessError
    from harness.machine.sandbox import detect_layout

    try:
        detect_layout()
    except HarnessError as e:
        # the one environment answer detect_layout() gives; anything else is a harness bug and raises
        if "no cgroup memory controller" not in str(e) and "cannot read" not in str(e):
            raise
        return f"no usable memory cgroup: {e}"
    if not os.access("/dev/kmsg", os.R_OK):
        return "cannot read /dev/kmsg"
    return None


@pytest.fixture
def host() -> None:
    """Skip (with the reason) unless genuine memcg OOMs can be provoked here."""
    why = _host_problem()
    if why:
        unavailable("host", why)


# --- genuine OOM kills, counted ------------------------------------------------------------------

KILLS: dict[tuple[str, str], int] = {}


def record_kills(backend: str, kernel: str, rec: dict) -> int:
    """Count the genuine OOM kills of a scenario record whose checks passed (call after the asserts).

    Every kill the kernel reported for the run counts (a second victim too); a record without a
    kill in the kernel log counts nothing.
    """
    n = len([k for k in rec.get("kills") or [] if k.get("pid")])
    if n:
        KILLS[(backend, kernel)] = KILLS.get((backend, kernel), 0) + n
    return n


def _kills_line() -> str:
    if not KILLS:
        return "genuine OOM kills provoked and checked: 0 (no root/VM/Docker test ran: see the skip reasons)"
    parts = [f"{b} {k}: {n}" for (b, k), n in sorted(KILLS.items())]
    return f"genuine OOM kills provoked and checked: {sum(KILLS.values())} ({', '.join(parts)})"


MARKER = {"host": "root", "vm": "vm", "docker": "docker"}
SELECTED: set[str] = set()  # backends whose tests this session selected


def pytest_collection_modifyitems(session, config, items) -> None:  # noqa: ARG001
    for item in items:
        for b, m in MARKER.items():
            if item.get_closest_marker(m) is not None:
                SELECTED.add(b)


def _missing_required() -> list[str]:
    return sorted(b for b in REQUIRED & SELECTED if not any(n for (bb, _), n in KILLS.items() if bb == b))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # Under OOM_HARNESS_REQUIRE a run that provoked no kill on a required backend is not green,
    # whatever else passed (only when tests of that backend were collected: `-m "not vm"` opts out).
    if REQUIRED and exitstatus == 0 and _missing_required():
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config) -> None:  # noqa: ARG001
    terminalreporter.write_line(_kills_line())
    missing = _missing_required() if REQUIRED else []
    if missing:
        req = ",".join(sorted(REQUIRED))
        terminalreporter.write_line(f"FAILED: OOM_HARNESS_REQUIRE={req}, but no genuine OOM kill on: "
                                    + ", ".join(missing), red=True)


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
