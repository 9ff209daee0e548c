"""The cgroup sandbox on the real cgroup tree: limits, nesting, teardown, stale sweep, refusal."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from harness.errors import HarnessError
from harness.machine.sandbox import PREFIX, Sandbox, detect_layout, parse_size, sweep_stale

pytestmark = pytest.mark.root


def test_parse_size():
    assert parse_size("64M") == 64 << 20
    assert parse_size("1.5G") == 3 << 29
    assert parse_size("max") is None
    with pytest.raises(ValueError):
        parse_size("lots")


def test_refuses_unlimited(host):
    with pytest.raises(HarnessError, match="without a memory limit"):
        Sandbox.create("nolimit", memory_max=None)


def test_limits_nesting_and_teardown(host, no_debris):
    sb = Sandbox.create("unit", memory_max=64 << 20)
    try:
        fname = "memory.max" if sb.layout.version == 2 else "memory.limit_in_bytes"
        with open(os.path.join(sb.path, fname)) as f:
            assert int(f.read()) == 64 << 20
        child = sb.child("inner")
        p = subprocess.Popen(["sleep", "60"])
        with open(child.procs_file(), "w") as f:
            f.write(str(p.pid))
        assert p.pid in sb.pids()
    finally:
        sb.destroy()
    assert not os.path.exists(sb.path)
    assert p.wait(timeout=5) == -9  # every process inside was killed


def test_sweep_removes_cgroups_of_dead_harness(host, no_debris):
    lay = detect_layout()
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = os.path.join(lay.own_dir, f"{PREFIX}{dead.pid}-left-behind")
    os.mkdir(stale)
    # a live harness's cgroup (ours) must survive the sweep
    mine = Sandbox.create("alive", memory_max=32 << 20)
    try:
        removed = sweep_stale(lay)
        assert stale in removed
        assert not os.path.exists(stale)
        assert os.path.exists(mine.path)
    finally:
        mine.destroy()
    time.sleep(0)
