"""Repeatability and soak on the host: the catalogue run again and again gives the same verdicts,
and 200+ genuine OOM scenarios leave the machine as they found it."""

from __future__ import annotations

import os

import pytest
from conftest import hog_processes, oomh_cgroups

from harness.machine.engine import EngineOptions, run_scenario
from harness.machine.scenario import catalogue
from harness.machine.snapshot import meminfo

pytestmark = [pytest.mark.root, pytest.mark.slow]

ROUNDS = int(os.environ.get("OOMH_SOAK_ROUNDS", "15"))  # 15 rounds x 14 scenarios = 210 runs


def test_repeat_and_soak(host):
    scs = catalogue("host")
    fds_before = None  # taken after round 0: one-time fds (the liveness lock) are not leaks
    avail_before = meminfo()["MemAvailable"]
    cg_before = set(oomh_cgroups())
    first: dict[str, tuple] = {}
    runs = 0
    for rnd in range(ROUNDS):
        for sc in scs:
            rec = run_scenario(sc, EngineOptions()).to_dict()
            runs += 1
            key = (rec["verdict"], rec["as_expected"], (rec.get("observed_victim") or {}).get("workload"))
            if rnd == 0:
                first[sc.name] = key
            else:
                assert key == first[sc.name], f"round {rnd}: {sc.name} gave {key}, round 0 gave {first[sc.name]}"
            assert rec["as_expected"] in (True, None), f"{sc.name}: {rec['reason']}"
        if rnd == 0:
            fds_before = len(os.listdir("/proc/self/fd"))
            avail_before = meminfo()["MemAvailable"]
    assert runs >= 200 or ROUNDS < 15
    # the machine as it was found
    assert set(oomh_cgroups()) == cg_before
    assert not hog_processes()
    assert fds_before is not None and len(os.listdir("/proc/self/fd")) <= fds_before
    avail_after = meminfo()["MemAvailable"]
    # kB; a leaked sandbox would pin 64+ MiB per scenario (>10 GiB over the soak): 512 MiB is noise
    assert avail_after > avail_before - 512 * 1024, (avail_before, avail_after)
