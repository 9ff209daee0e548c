"""Faults, interruptions and bad input, each provoked for real: nothing may be left behind and no
pass may be reported that the harness did not see."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest
from conftest import ROOT, hog_processes, oomh_cgroups, run_cli

from harness.machine.engine import EngineOptions, can_lower_oom_score_adj, has_cap_sys_resource, run_scenario
from harness.machine.scenario import load_scenario
from harness.reporting.results import load_run, run_status

pytestmark = pytest.mark.root
SC = os.path.join(ROOT, "tests", "scenarios")


def _start_run(tmp_path, scenario: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "harness", "run", os.path.join(SC, scenario), "--results",
                             str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_sandbox(before: set[str], timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = set(oomh_cgroups()) - before
        if new and hog_processes():
            return new.pop()
        time.sleep(0.05)
    raise AssertionError("the harness never populated its sandbox")


def _only_run(tmp_path) -> str:
    runs = [d for d in os.listdir(tmp_path) if os.path.isdir(tmp_path / d)]
    assert len(runs) == 1, runs
    return str(tmp_path / runs[0])


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_cleans_up(sig, tmp_path, host, no_debris):
    before = set(oomh_cgroups())
    p = _start_run(tmp_path, "slow-start.toml")
    _wait_for_sandbox(before)
    p.send_signal(sig)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 130, err
    assert "interrupted" in err
    assert set(oomh_cgroups()) == before, "sandbox left behind"
    assert not hog_processes()
    run = _only_run(tmp_path)
    assert run_status(run) == "interrupted"
    assert not os.path.exists(os.path.join(run, "RUNNING"))


def test_sigkill_then_next_run_sweeps(tmp_path, host):
    before = set(oomh_cgroups())
    p = _start_run(tmp_path, "slow-start.toml")
    left = _wait_for_sandbox(before)
    p.kill()
    p.wait(timeout=10)
    # the workloads read commands from the dead harness's pipe: they exit on EOF by themselves
    deadline = time.monotonic() + 10
    while hog_processes() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not hog_processes()
    assert left in oomh_cgroups(), "a SIGKILLed harness cannot clean up; its cgroup is still there"
    run = _only_run(tmp_path)
    assert run_status(run) == "killed"
    env, rows, status = load_run(run)
    assert status == "killed" and rows == []
    # the next run finds the debris, removes it, and says so
    r = run_cli("cleanup")
    assert r.returncode == 0
    assert left in r.stdout
    assert left not in oomh_cgroups()


def test_two_runs_at_once_do_not_interfere(tmp_path, host, no_debris):
    a = subprocess.Popen([sys.executable, "-m", "harness", "run", "single-hog", "larger-of-two", "--results",
                          str(tmp_path / "a")], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    b = subprocess.Popen([sys.executable, "-m", "harness", "run", "near-tie", "shmem-charged", "--results",
                          str(tmp_path / "b")], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    oa, ea = a.communicate(timeout=120)
    ob, eb = b.communicate(timeout=120)
    assert a.returncode == 0, oa + ea
    assert b.returncode == 0, ob + eb


def test_external_sigkill_is_not_a_match(host, no_debris):
    sc = load_scenario(os.path.join(SC, "slow-grower.toml"))
    before = set(oomh_cgroups())
    result: dict = {}
    t = threading.Thread(target=lambda: result.update(run_scenario(sc, EngineOptions()).to_dict()))
    t.start()
    _wait_for_sandbox(before)
    time.sleep(1.0)  # the grower is growing, far from its limit
    for line in hog_processes():
        os.kill(int(line.split()[0]), signal.SIGKILL)
    t.join(60)
    assert result["verdict"] == "error"
    assert result["as_expected"] is False
    assert "without an OOM kill" in result["reason"] or "something else" in result["reason"]


def test_second_victim_is_reported(host, no_debris):
    rec = run_scenario(load_scenario(os.path.join(SC, "two-growers.toml")), EngineOptions()).to_dict()
    assert rec["as_expected"] is False
    assert "second victim" in rec["reason"]
    assert len(rec["kills"]) >= 2


def test_workload_dies_before_trigger(host, no_debris):
    rec = run_scenario(load_scenario(os.path.join(SC, "too-big.toml")), EngineOptions()).to_dict()
    assert rec["verdict"] == "error" and rec["as_expected"] is False
    # the kernel killed it (its kill line is in the log): the reason says so and what to change
    assert rec["reason"].startswith("workload fat was OOM-killed before the trigger"), rec["reason"]
    assert "80 MiB in all" in rec["reason"] and "the sandbox's memory_max of 32 MiB" in rec["reason"]


def test_workload_error_before_trigger_is_quoted(host, no_debris):
    """A hog that fails on its own (here set_mempolicy on a node that does not exist) is an error
    whose reason quotes the hog's exception, not a guess about sizes."""
    rec = run_scenario(load_scenario(os.path.join(SC, "bad-mempolicy.toml")), EngineOptions()).to_dict()
    assert rec["verdict"] == "error" and rec["as_expected"] is False
    assert rec["reason"].startswith("workload lost failed before it was ready (exit 1): "), rec["reason"]
    assert "set_mempolicy failed" in rec["reason"]


def test_mlock_under_another_uid(host, no_debris):
    """uid 65534 locking more than RLIMIT_MEMLOCK: with CAP_SYS_RESOURCE the harness lifts the
    limit and the scenario runs; without it, a skip that names the capability (never an error)."""
    rec = run_scenario(load_scenario(os.path.join(SC, "mlock-other-uid.toml")), EngineOptions()).to_dict()
    if has_cap_sys_resource():
        assert rec["verdict"] == "match" and rec["as_expected"] is True, rec["reason"]
    else:
        assert rec["verdict"] == "skipped", rec["reason"]
        assert "CAP_SYS_RESOURCE to let uid 65534 mlock locked's memory" in rec["reason"]


def test_expected_kill_that_never_comes(host, no_debris):
    rec = run_scenario(load_scenario(os.path.join(SC, "never-reaches.toml")), EngineOptions()).to_dict()
    assert rec["verdict"] == "no-oom" and rec["as_expected"] is False


def test_limit_larger_than_host_can_spare_is_refused(tmp_path, host, no_debris):
    r = run_cli("run", os.path.join(SC, "host-too-large.toml"), "--results", str(tmp_path))
    assert r.returncode == 2
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("oom-harness: error:") and "can spare" in err[0]


def test_self_protection_recorded(tmp_path, host, no_debris):
    r = run_cli("run", "single-hog", "--results", str(tmp_path))
    assert r.returncode == 0, r.stderr
    env, rows, status = load_run(_only_run(tmp_path))
    assert status == "complete"
    # -1000 needs CAP_SYS_RESOURCE; where it is missing the run says so (memcg OOMs cannot pick the
    # harness anyway: it is outside the sandbox)
    # the harness protects itself exactly when its privileges allow it (same uid and capabilities as here)
    assert env["self_protected"] is can_lower_oom_score_adj()
    # and protect_self() does what it reports, in a process of its own (never this pytest process)
    r = subprocess.run([sys.executable, "-c", "from harness.machine.engine import protect_self; ok = protect_self(); "
                        "print(ok, open('/proc/self/oom_score_adj').read().strip())"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    ok, adj = r.stdout.split()
    if env["self_protected"]:
        assert (ok, adj) == ("True", "-1000"), r.stdout + r.stderr
    else:
        assert ok == "False", r.stdout + r.stderr


# --- bad input: one line, exit 2, nothing left ---------------------------------------------------

def _one_line_error(r: subprocess.CompletedProcess, words: str) -> None:
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    errors = [ln for ln in lines if "error" in ln.lower()]
    assert len(errors) == 1 and errors[0] == lines[-1], r.stderr  # progress lines may precede it
    assert lines[-1].startswith("oom-harness: error:") and words in lines[-1], lines[-1]
    assert "Traceback" not in r.stderr


def test_bad_scenario_file(tmp_path, no_debris):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[cgroup]\nmemory_max = "64M"\n[[workload]]\nname = "a"\nsize = "lots"\n')
    _one_line_error(run_cli("run", str(bad), "--results", str(tmp_path)), "bad.toml:6:")


def test_unknown_scenario(tmp_path):
    _one_line_error(run_cli("run", "no-such-scenario", "--results", str(tmp_path)), "unknown scenario")


def test_unknown_kernel(tmp_path):
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 not installed")
    _one_line_error(run_cli("run", "--backend", "vm", "--kernel", "9.99", "single-hog", "--results", str(tmp_path)),
                    "9.99")


def test_missing_qemu(tmp_path):
    env = {**os.environ, "PATH": "/nonexistent"}
    _one_line_error(run_cli("run", "--backend", "vm", "single-hog", "--results", str(tmp_path), env=env),
                    "qemu-system-x86_64 not found")


def test_not_root(tmp_path):
    if os.geteuid() != 0 or shutil.which("setpriv") is None or not os.path.exists("/usr/bin/python3"):
        pytest.skip("needs root, setpriv and /usr/bin/python3 to drop privileges")
    os.chmod(tmp_path, 0o777)
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-m",
                        "harness", "run", "single-hog", "--results", str(tmp_path)], cwd=ROOT, capture_output=True,
                       text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    _one_line_error(r, "needs root")


def test_no_memory_controller(tmp_path):
    from harness.errors import HarnessError
    from harness.machine.sandbox import detect_layout

    fake = tmp_path / "cgroup"
    fake.write_text("1:cpu:/\n2:pids:/\n")
    with pytest.raises(HarnessError, match="no cgroup memory controller"):
        detect_layout(str(fake))


def test_torn_results_line_is_ignored(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    (run / "env.json").write_text(json.dumps({"run_id": "r"}))
    (run / "verdicts.jsonl").write_text(json.dumps({"scenario": "a", "verdict": "match"}) + '\n{"scenario": "b", "ver')
    (run / "RUNNING").write_text("999999")
    env, rows, status = load_run(str(run))
    assert [r["scenario"] for r in rows] == ["a"]
    assert status == "killed"
