"""``compare -j N``: kernels run at once, the report in the order asked for, progress per kernel.

The runners here are stand-ins (they sleep instead of booting QEMU) so the scheduling is tested
exactly and fast; the records they yield go through the real RunRecorder and report.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pandas")

from harness.cli import compare  # noqa: E402
from harness.machine.record import ScenarioRecord  # noqa: E402
from harness.machine.scenario import Scenario, resolve  # noqa: E402

#: seconds per scenario for each kernel: 6.1 is the fastest, so it finishes first
PACE = {"host": 0.15, "5.10": 0.3, "6.1": 0.05, "6.12": 0.2}


class FakeRunner:
    running: dict[str, int] = {}
    peak = 0
    lock = threading.Lock()
    order: list[str] = []
    span: list[float] = []  # first start, last end

    def __init__(self, label: str) -> None:
        self.label = label

    def env(self) -> dict[str, Any]:
        return {"kernel": f"{self.label}.0-fake", "cgroup_version": 2}

    def run(self, scenarios: list[Scenario], prog: Any) -> Iterator[tuple[Scenario, ScenarioRecord]]:
        cls = FakeRunner
        with cls.lock:
            cls.running[self.label] = cls.running.get(self.label, 0) + 1
            assert cls.running.get("host", 0) <= 1, "host scenarios in parallel with each other"
            cls.peak = max(cls.peak, sum(cls.running.values()))
            cls.span = [min(cls.span[:1] or [time.monotonic()]), *cls.span[1:]]
        try:
            for sc in scenarios:
                prog.start(sc.name)
                time.sleep(PACE[self.label])
                yield sc, ScenarioRecord(scenario=sc.name, backend="host" if self.label == "host" else "vm",
                                         kernel=f"{self.label}.0-fake", verdict="match", as_expected=True,
                                         outcome="kill", reason="highest points", kernel_label=self.label,
                                         observed_victim={"pid": 1, "name": "hog", "workload": "hog"},
                                         duration_s=PACE[self.label])
        finally:
            with cls.lock:
                cls.running[self.label] -= 1
                cls.order.append(self.label)
                cls.span = [cls.span[0], time.monotonic()]

    def close(self) -> None:
        pass


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> type[FakeRunner]:
    FakeRunner.running, FakeRunner.peak, FakeRunner.order, FakeRunner.span = {}, 0, [], []
    monkeypatch.setattr(compare, "make_runner", lambda backend, kernel=None, **kw: FakeRunner(kernel or "host"))
    return FakeRunner


def _args(tmp_path: Path, jobs: int) -> argparse.Namespace:
    return argparse.Namespace(jobs=jobs, repeat=1, results=str(tmp_path / "results"), accel="auto",
                              cold_boot=False, plot_scenario=None, junit=str(tmp_path / "junit.xml"))


def test_kernels_run_at_once_and_report_in_the_order_asked(fake: type[FakeRunner], tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    scenarios = resolve(["single-hog", "larger-of-two", "near-tie"], None)
    per = {k: scenarios for k in ("host", "5.10", "6.1", "6.12")}
    rc = compare._compare_parallel(per, _args(tmp_path, 3), [], str(tmp_path / "out"), ["md"])
    took = fake.span[1] - fake.span[0]
    assert rc == 0
    serial = sum(3 * p for p in PACE.values())
    assert fake.peak == 3 and took < serial * 0.8, (fake.peak, took, serial)
    assert fake.order[0] == "6.1"  # finished first ...
    out = capsys.readouterr()
    md = out.out
    assert md.startswith("# OOM killer: kernel comparison")
    assert "| scenario | host | 5.10 | 6.1 | 6.12 |" in md  # ... reported in the --kernels order
    # progress: one line per scenario, each carrying its kernel, no terminal control codes
    lines = [ln for ln in out.err.splitlines() if ln.startswith("[")]
    assert len(lines) == 12 and "\x1b" not in out.err
    for k in PACE:
        assert sum(f"] ok   {k}: " in ln for ln in lines) == 3, k
        assert f"== {k}: 3 scenario(s)" in out.err and f"== {k}: done" in out.err
    runs = sorted(p.name for p in (tmp_path / "results").iterdir())
    assert len(runs) == 4 and len(set(runs)) == 4
    assert (tmp_path / "junit.xml").read_text().count("<testsuite ") == 4


def test_interrupt_stops_each_kernel_after_its_scenario(fake: type[FakeRunner], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    scenarios = resolve(["single-hog", "larger-of-two", "near-tie"], None)
    per = {k: scenarios for k in ("host", "5.10", "6.1", "6.12")}
    real_wait = compare.wait
    calls = {"n": 0}

    def wait_then_ctrl_c(*a: Any, **kw: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            time.sleep(0.1)  # every started kernel is inside its first scenario
            raise KeyboardInterrupt
        return real_wait(*a, **kw)

    monkeypatch.setattr(compare, "wait", wait_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        compare._compare_parallel(per, _args(tmp_path, 2), [], str(tmp_path / "out"), ["md"])
    runs = sorted((tmp_path / "results").iterdir())
    assert len(runs) == 2  # the two that had started; the others never started
    for d in runs:
        assert '"status": "interrupted"' in (d / "summary.json").read_text()
        assert len((d / "verdicts.jsonl").read_text().splitlines()) == 1
    md = (tmp_path / "out" / "comparison.md").read_text()
    assert "compare was interrupted" in md and "not run (interrupted before it started)" in md


def test_jobs_must_be_positive() -> None:
    from harness.cli.main import main

    assert main(["compare", "--kernels", "host", "-j", "0"]) == 2
