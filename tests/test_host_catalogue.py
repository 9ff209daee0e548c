"""The whole host catalogue, for real: genuine memcg OOM kills on this machine's kernel.

Every scenario must give the expected outcome with the model agreeing with the kernel, or be
skipped with the reason this host cannot run it (e.g. cgroup v1 has no memory.oom.group).
"""

from __future__ import annotations

import platform

import pytest
from conftest import record_kills

from harness.machine.engine import EngineOptions, run_scenario
from harness.machine.scenario import catalogue

pytestmark = pytest.mark.root

HOST = catalogue("host")


@pytest.mark.parametrize("sc", HOST, ids=[s.name for s in HOST])
def test_scenario(sc, host, no_debris):
    rec = run_scenario(sc, EngineOptions(backend="host")).to_dict()
    if rec["verdict"] == "skipped":
        # only what this host's kernel or privileges cannot express (cgroup v1 has no memory.oom.group,
        # a root without CAP_SYS_RESOURCE cannot set a negative oom_score_adj): the engine says which
        pytest.skip(f"{sc.name}: {rec['reason']}")
    assert rec["as_expected"] is True, f"{rec['verdict']}: {rec['reason']}"
    if sc.expect_outcome == "kill":
        # a genuine kill, parsed from the real kernel log, predicted by the model
        assert rec["verdict"] == "match"
        assert rec["observed_victim"]["workload"] == sc.expect_victim
        assert rec["oom_kill_counter"] >= 1, "the memcg's own oom_kill counter must agree"
        ev = rec["events"][0]
        assert ev["complete"], ev["missing"]
        # the kernel's /proc/PID/oom_score before the trigger equals the model's
        assert rec["oom_score_check"]["agree"], rec["oom_score_check"]
        assert rec["oom_score_check"]["checked"] >= 1
    elif sc.expect_outcome == "no-oom":
        assert rec["verdict"] == "no-oom" and not rec["events"]
    record_kills("host", platform.release(), rec)


def test_catalogue_is_big_enough():
    assert len(HOST) >= 12
