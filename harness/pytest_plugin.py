"""pytest plugin: write your own OOM-killer tests (registered through the ``pytest11`` entry point).

Installing oom-harness is enough for pytest to load it.  It gives:

* the fixture ``oom_run``: ``oom_run(scenario, backend=None, kernel=None)`` runs one scenario for
  real and returns an :class:`OomResult` (``.verdict``, ``.as_expected``, ``.victims``,
  ``.predicted``, ``.reason``, ``.report`` — the raw kernel log — and the whole ``.record``).
  *scenario* is a catalogue name (``"single-hog"``), the path of a ``.toml`` file, TOML text, a
  ``dict`` shaped like a scenario file, or a :class:`~harness.machine.scenario.Scenario`;
* ``--oom-backend host|vm|docker`` (default host) and ``--oom-kernel K`` (repeatable: every test
  that uses ``oom_run`` runs once per kernel; ``host`` means this machine, any other label a QEMU
  guest booting that kernel, see ``oom-harness kernels``); ``--oom-results DIR`` also records
  every run there, as ``oom-harness run`` does (so ``oom-harness report DIR`` compares them);
* markers ``needs_root``, ``needs_qemu``, ``needs_docker``: the test is skipped, with the reason,
  when this machine lacks it.  ``oom_run`` itself skips (with the reason) when the backend cannot
  run here (not root, no memory cgroup, no QEMU, no Docker engine), and when the scenario cannot be
  expressed on this machine (``skipped`` verdict, e.g. it needs cgroup v2).

Host-side only; importing it costs nothing until a test uses the fixture.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

__all__ = ["OomResult", "oom_run", "oom_kernel"]

BACKENDS = ("host", "vm", "docker")
MARKERS = {
    "needs_root": "needs root (memory cgroups, /dev/kmsg): skipped with the reason otherwise",
    "needs_qemu": "needs root and qemu-system-x86_64 (VM backend): skipped with the reason otherwise",
    "needs_docker": "needs a Docker engine (or dockerd and root): skipped with the reason otherwise",
}


@dataclass
class OomResult:
    """What one scenario run established (the verdict row, plus the kernel's own text)."""

    scenario: str
    backend: str
    kernel: str  #: the kernel release it ran on
    kernel_label: str  #: host, 6.12, docker ...
    verdict: str  #: match, mismatch, no-victim, undecidable, no-oom, error, skipped
    as_expected: bool | None  #: the outcome against the scenario's [expect]; None when skipped
    outcome: str  #: kill, group-kill, no-victim, no-oom, panic, error, skipped
    victims: list[str]  #: workloads the kernel killed, in order (a second kill is a second entry)
    predicted: str | None  #: the workload the model says the kernel should kill
    reason: str  #: why, in words (the verdict's explanation)
    report: str  #: the raw kernel log the scenario read: its OOM report(s)
    record: dict[str, Any] = field(repr=False, default_factory=dict)  #: the whole verdict record
    results_dir: str | None = None  #: the run folder, with --oom-results

    @property
    def victim(self) -> str | None:
        """The first victim (the kernel's choice), or None."""
        return self.victims[0] if self.victims else None

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every parsed OOM event with the model's analysis (the ``parse --json`` objects)."""
        return list(self.record.get("events") or [])


# ---------------------------------------------------------------------------------------- options


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("oom-harness", "oom-harness: genuine OOM kills checked against a model of the kernel")
    g.addoption("--oom-backend", choices=BACKENDS, default=None,
                help="where oom_run runs scenarios by default: host (default), vm or docker")
    g.addoption("--oom-kernel", action="append", default=[], metavar="K",
                help="run every test that uses oom_run on kernel K (repeatable): host, or a VM kernel "
                     "(5.10, 6.1, 6.12, 7.2, a Debian release, a bzImage path)")
    g.addoption("--oom-results", default=None, metavar="DIR",
                help="also record every oom_run in DIR/<run-id>/ (then: oom-harness report DIR)")
    g.addoption("--oom-accel", choices=["auto", "kvm", "tcg"], default="auto", help="QEMU accelerator")


def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    kernels = metafunc.config.getoption("oom_kernel", default=[]) or []
    if kernels and "oom_kernel" in metafunc.fixturenames:
        metafunc.parametrize("oom_kernel", list(dict.fromkeys(kernels)), ids=lambda k: f"kernel={k}")


def pytest_runtest_setup(item: pytest.Item) -> None:
    for name, check in (("needs_root", _root_problem), ("needs_qemu", _qemu_problem),
                        ("needs_docker", _docker_problem)):
        if item.get_closest_marker(name) is not None:
            why = check()
            if why:
                pytest.skip(f"{name}: {why}")


# ---------------------------------------------------------------------------------------- checks


def _root_problem() -> str | None:
    if os.geteuid() != 0:
        return "not root (memory cgroups and /dev/kmsg need it)"
    return None


def _host_problem() -> str | None:
    why = _root_problem()
    if why:
        return why
    from harness.machine.sandbox import detect_layout

    try:
        detect_layout()
    except Exception as e:  # noqa: BLE001 - any reason is a reason to skip, printed
        return f"no usable memory cgroup: {e}"
    if not os.access("/dev/kmsg", os.R_OK):
        return "cannot read /dev/kmsg"
    return None


def _qemu_problem() -> str | None:
    why = _root_problem()
    if why:
        return why
    if shutil.which("qemu-system-x86_64") is None:
        return "qemu-system-x86_64 not installed (apt-get install qemu-system-x86)"
    return None


def _docker_problem() -> str | None:
    host = os.environ.get("DOCKER_HOST", "")
    if host.startswith(("tcp://", "ssh://")):
        return None
    sock = host[len("unix://"):] if host.startswith("unix://") else "/var/run/docker.sock"
    if os.path.exists(sock) and os.access(sock, os.R_OK | os.W_OK):
        return None
    if shutil.which("dockerd") is None and not os.access("/usr/sbin/dockerd", os.X_OK):
        return "no Docker engine answers and dockerd is not installed (apt-get install docker.io)"
    if os.geteuid() != 0:
        return "no Docker engine socket, and a throw-away dockerd needs root"
    return None


PROBLEMS: dict[str, Callable[[], str | None]] = {"host": _host_problem, "vm": _qemu_problem,
                                                 "docker": _docker_problem}


# ---------------------------------------------------------------------------------------- running


def _scenario(spec: Any) -> Any:
    from harness.machine.scenario import Scenario, load_scenario, parse_scenario, resolve, scenario_from_dict

    if isinstance(spec, Scenario):
        return spec
    if isinstance(spec, dict):
        return scenario_from_dict(spec, "<dict>")
    if isinstance(spec, os.PathLike):
        return load_scenario(os.fspath(spec))
    if isinstance(spec, str):
        if "\n" in spec or "[cgroup]" in spec:
            return parse_scenario(spec, "<string>")
        return resolve([spec], None)[0]
    raise TypeError(f"oom_run: a scenario is a catalogue name, a .toml path, TOML text, a dict or a Scenario, "
                    f"not {type(spec).__name__}")


_recorded = 0


class _Quiet:
    def start(self, name: str) -> None:
        pass


def _result(rec: dict[str, Any], label: str, where: str | None) -> OomResult:
    def wl(v: Any) -> str | None:
        if not isinstance(v, dict):
            return None
        return v.get("workload") or v.get("name")

    victims = [w for k in rec.get("kills") or [] if (w := wl(k))]
    if not victims and wl(rec.get("observed_victim")):
        victims = [wl(rec.get("observed_victim"))]  # type: ignore[list-item]
    return OomResult(
        scenario=str(rec.get("scenario")),
        backend=str(rec.get("backend")),
        kernel=str(rec.get("kernel")),
        kernel_label=str(rec.get("kernel_label") or label),
        verdict=str(rec.get("verdict")),
        as_expected=rec.get("as_expected"),
        outcome=str(rec.get("outcome")),
        victims=victims,
        predicted=wl(rec.get("predicted_victim")),
        reason=str(rec.get("reason") or ""),
        report=str(rec.get("kernel_log") or ""),
        record=rec,
        results_dir=where,
    )


def run_scenario_here(scenario: Any, backend: str = "host", kernel: str | None = None, *, accel: str = "auto",
                      results: str | None = None, skip_unsupported: bool = True) -> OomResult:
    """Run *scenario* once on *backend* (and *kernel*, for the VM backend); what ``oom_run`` calls."""
    from harness.backends.registry import make_runner
    from harness.errors import HarnessError
    from harness.machine.liveness import hold_liveness_lock

    if backend not in BACKENDS:
        raise ValueError(f"oom_run: backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    sc = _scenario(scenario)
    if backend not in sc.backends:
        pytest.skip(f"scenario {sc.name} does not run on the {backend} backend (it runs on {', '.join(sc.backends)})")
    why = PROBLEMS[backend]()
    if why:
        pytest.skip(f"oom_run on {backend}: {why}")
    hold_liveness_lock()  # our sandboxes are not debris to another harness's sweep
    try:
        runner = make_runner(backend, kernel, accel=accel)
    except HarnessError as e:  # the environment cannot run this backend: say why
        pytest.skip(f"oom_run on {backend}{' ' + kernel if kernel else ''}: {e}")
    label = runner.label
    where = None
    try:
        if results:
            from harness.reporting.results import RunRecorder

            global _recorded
            _recorded += 1  # several runs of one process in one second each get their own folder
            run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{backend}-{label}-{os.getpid()}-{_recorded}"
            recorder = RunRecorder(results, backend=backend, kernel_label=label, env=runner.env(), run_id=run_id)
            where = recorder.dir
        status = "interrupted"
        try:
            (_sc, record), *_ = list(runner.run([sc], _Quiet()))
            rec = record.to_dict()
            if results:
                recorder.add(record)
            status = "complete"
        finally:
            if results:
                recorder.close(status)
    finally:
        runner.close()
    res = _result(rec, label, where)
    if skip_unsupported and res.verdict == "skipped":
        pytest.skip(f"{res.scenario} on {res.kernel_label}: {res.reason}")
    return res


@pytest.fixture
def oom_kernel() -> str | None:
    """The kernel this test runs on (parametrised by ``--oom-kernel``; None: the backend's default)."""
    return None


@pytest.fixture
def oom_run(request: pytest.FixtureRequest, oom_kernel: str | None) -> Iterator[Callable[..., OomResult]]:
    """``oom_run(scenario, backend=None, kernel=None, skip_unsupported=True) -> OomResult``: run a
    scenario for real, here.  Defaults come from ``--oom-backend`` / ``--oom-kernel``; a kernel
    other than ``host`` means the VM backend."""
    cfg = request.config
    results = cfg.getoption("oom_results", default=None)
    if results:
        results = str(Path(str(results)).resolve())
        os.makedirs(results, exist_ok=True)

    def run(scenario: Any, backend: str | None = None, kernel: str | None = None, *,
            skip_unsupported: bool = True) -> OomResult:
        k = kernel if kernel is not None else oom_kernel
        b = backend or ("host" if k == "host" else "vm" if k else None) or cfg.getoption("oom_backend") or "host"
        if b == "host":
            k = None
        return run_scenario_here(scenario, b, k, accel=cfg.getoption("oom_accel", default="auto"),
                                 results=results, skip_unsupported=skip_unsupported)

    yield run
