"""`oom-harness predict` on a live memory cgroup: provoking nothing, rank its tasks as the OOM
killer would, beside the kernel's own /proc/PID/oom_score."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import run_cli

from harness.cli.predict import predict
from harness.machine.engine import HOG, _hog_python, _preexec
from harness.machine.sandbox import Sandbox
from harness.machine.scenario import spec_argv

pytestmark = pytest.mark.root


def _hog(sb: Sandbox, name: str, mb: int, adj: int = 0) -> subprocess.Popen:
    spec = {"kind": "anon", "size": mb << 20, "comm": name}
    p = subprocess.Popen([_hog_python(), "-I", "-S", HOG, *spec_argv(spec)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, preexec_fn=_preexec(sb.procs_file(), adj, 0, None))
    assert p.stdout.readline().startswith(b"ready")
    return p


def test_predict_live_cgroup(host, no_debris):
    sb = Sandbox.create("predict", memory_max=256 << 20)
    procs = []
    try:
        procs = [_hog(sb, "small", 8), _hog(sb, "big", 40), _hog(sb, "mid", 20, adj=30)]
        doc = predict(sb.rel)
        assert doc["tasks"] == 3
        # big (40 MiB + interpreter) beats mid (20 MiB + 30 x 65 = 1950 pages of adj) and small
        assert doc["next_victim"]["name"] == "big"
        ranked = [c["name"] for c in doc["candidates"]]
        assert ranked == ["big", "mid", "small"]
        for c in doc["candidates"]:
            assert abs(c["oom_score_model"] - c["oom_score_kernel"]) <= 1, c
        assert doc["totalpages"] == (256 << 20) // 4096
        r = run_cli("predict", "--cgroup", sb.rel, "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["next_victim"]["name"] == "big"
        assert all(p.poll() is None for p in procs), "predict must provoke nothing"
    finally:
        sb.destroy()
        for p in procs:
            p.wait(timeout=5)


def test_predict_unknown_cgroup():
    r = run_cli("predict", "--cgroup", "/no/such/cgroup")
    assert r.returncode == 2 and r.stderr.startswith("oom-harness: error:")
