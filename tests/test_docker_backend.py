"""The Docker backend, for real: genuine memcg OOM kills of processes inside containers.

Uses the engine that answers (``DOCKER_HOST`` / the default socket) or starts a throw-away
``dockerd`` (root, ``apt-get install docker.io``); skipped with the reason when neither is
possible.  Every test checks that no container, daemon, cgroup or temp dir is left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time

import pytest
from conftest import ROOT, _host_problem, record_kills, run_cli, unavailable

from harness.backends.docker.crosscheck import cross_check
from harness.backends.docker.daemon import DAEMON_DIR_PREFIX, sweep_stale
from harness.backends.docker.launcher import DockerLauncher
from harness.backends.docker.scrub import cgroup_mounts, pids_mentioning
from harness.errors import HarnessError
from harness.machine.engine import can_lower_oom_score_adj
from harness.machine.record import ScenarioRecord
from harness.machine.scenario import resolve

# The DockerRunner errors that mean "no Docker engine here, and none can be started" (the missing
# environment, harness.docker_backend.DockerEngine / docker_cli / ThrowawayDaemon.start); every other
# HarnessError (image import, container start, cgroup lookup, clean-up) is the harness failing.
NO_ENGINE = ("no Docker engine answers", "no docker CLI", "dockerd exited at start", "dockerd did not answer")


def _no_engine(msg: str) -> bool:
    return msg.startswith(NO_ENGINE)


GLOBAL = ("/etc/docker/key.json", "/run/containerd", "/var/lib/docker", "/var/lib/containerd", "/run/docker")


class _Prog:
    def start(self, name: str) -> None:
        pass


def _own() -> str:
    from harness.machine.sandbox import detect_layout

    return detect_layout().own


def _debris(pid: int) -> list[str]:
    """Everything a harness process *pid* may have left: cgroups, daemon dirs, daemon processes."""
    left = []
    own = _own()
    for mount in cgroup_mounts():
        p = os.path.join(mount, own.lstrip("/"), f"oomh-{pid}-docker")
        if os.path.exists(p):
            left.append(p)
    tmp = tempfile.gettempdir()
    for n in os.listdir(tmp):
        if n.startswith(f"{DAEMON_DIR_PREFIX}{pid}-"):
            left.append(os.path.join(tmp, n))
            left += [f"process {q}" for q in pids_mentioning(os.path.join(tmp, n))]
    for q in pids_mentioning(f"{DAEMON_DIR_PREFIX}{pid}-"):
        left.append(f"process {q}")
    with open("/proc/self/mountinfo") as f:
        left += ["mount " + ln.split()[4] for ln in f if f"{DAEMON_DIR_PREFIX}{pid}-" in ln]
    return sorted(set(left))


@pytest.fixture(scope="module")
def docker_runner():
    why = _host_problem()
    if why:
        unavailable("docker", why)
    from harness.backends.docker.runner import DockerRunner

    before = {p: os.path.lexists(p) for p in GLOBAL}
    try:
        runner = DockerRunner()
    except HarnessError as e:
        if not _no_engine(str(e)):
            raise  # e.g. "docker import of the harness image failed": the harness's failure, not the machine's
        unavailable("docker", f"no Docker engine: {e}")
    try:
        yield runner
    finally:
        runner.close()
    assert not _debris(os.getpid()), _debris(os.getpid())
    if runner.engine.daemon is not None:
        created = [p for p, existed in before.items() if not existed and os.path.lexists(p)]
        assert not created, f"the throw-away dockerd left {created}"


@pytest.mark.docker
@pytest.mark.parametrize("name", ["single-hog", "larger-of-two", "adj-positive"])
def test_oom_kill_in_container(docker_runner, name):
    (sc,) = resolve([name], "docker")
    ((_, record),) = list(docker_runner.run([sc], _Prog()))
    rec = record.to_dict()
    assert rec["as_expected"] is True, f"{rec['verdict']}: {rec['reason']}"
    assert rec["verdict"] == "match"
    assert rec["observed_victim"]["workload"] == sc.expect_victim
    # the three signals agree: kernel report for the container's memcg, Docker, the harness
    assert rec["signals"] == {"kernel_log": True, "docker_oomkilled": True, "harness": True}
    assert rec["docker"]["OOMKilled"] is True
    assert rec["docker"]["exec_exit_codes"][sc.expect_victim] == 137
    assert f"oom_memcg={rec['cgroup']}" in rec["kernel_log"]
    assert rec["oom_kill_counter"] >= 1
    assert rec["oom_score_check"]["checked"] >= 1 and rec["oom_score_check"]["agree"], rec["oom_score_check"]
    # the container is gone, and so is its cgroup
    assert not os.path.exists(os.path.join("/sys/fs/cgroup/memory", rec["cgroup"].lstrip("/")))
    assert not docker_runner.engine.client.containers.list(all=True, filters={"id": rec["docker"]["container"]})
    record_kills("docker", rec.get("kernel") or "host", rec)


@pytest.mark.docker
def test_page_cache_no_oom_in_container(docker_runner):
    (sc,) = resolve(["page-cache-no-oom"], "docker")
    ((_, record),) = list(docker_runner.run([sc], _Prog()))
    rec = record.to_dict()
    assert rec["as_expected"] is True, rec["reason"]
    assert rec["signals"] == {"kernel_log": False, "docker_oomkilled": False, "harness": False}


@pytest.mark.docker
def test_container_init_is_the_victim(docker_runner):
    """The main workload is the container's pid 1 (no docker-init); the kernel OOM-kills it all the
    same (only the global init is exempt), and the container ends with it: exit 137, OOMKilled."""
    (sc,) = resolve(["container-init-victim"], "docker")
    ((_, record),) = list(docker_runner.run([sc], _Prog()))
    rec = record.to_dict()
    assert rec["as_expected"] is True, f"{rec['verdict']}: {rec['reason']}"
    assert rec["verdict"] == "match"
    assert rec["observed_victim"]["workload"] == "main"
    assert rec["signals"] == {"kernel_log": True, "docker_oomkilled": True, "harness": True}
    d = rec["docker"]
    assert d["main"] == "main" and d["docker_init"] is False
    assert d["OOMKilled"] is True and d["ExitCode"] == 137
    assert d["exec_exit_codes"]["main"] == 137  # `docker start -ai` exits with the container
    # the exec'd grower is killed with the container's pid namespace (the pid-1 hog's exit sends the
    # SIGKILL before it is a zombie), not by the OOM killer; if the grower had reported `grown` and
    # the main's death was not yet seen, the engine did not count it as dead: nothing to explain
    assert d["exec_exit_codes"]["grower"] == 137
    assert set(rec.get("explained_deaths") or {}) <= {"grower"}, rec["reason"]
    assert [k["workload"] for k in rec["kills"]] == ["main"]
    assert not os.path.exists(os.path.join("/sys/fs/cgroup/memory", rec["cgroup"].lstrip("/")))
    assert not docker_runner.engine.client.containers.list(all=True, filters={"id": d["container"]})
    record_kills("docker", rec.get("kernel") or "host", rec)


@pytest.mark.docker
def test_container_main_protected(docker_runner):
    (sc,) = resolve(["container-main-protected"], "docker")
    ((_, record),) = list(docker_runner.run([sc], _Prog()))
    rec = record.to_dict()
    if not can_lower_oom_score_adj():
        assert rec["verdict"] == "skipped"
        assert "CAP_SYS_RESOURCE" in rec["reason"] and "--backend vm" in rec["reason"]
        assert "docker" not in rec  # skipped before any container was made
        pytest.skip(rec["reason"])  # this host's privileges cannot express it: a skip, with its reason
    assert rec["as_expected"] is True, f"{rec['verdict']}: {rec['reason']}"
    assert rec["observed_victim"]["workload"] == "grower"
    assert rec["docker"]["OOMKilled"] is True and rec["docker"]["exec_exit_codes"]["grower"] == 137
    assert rec["docker"]["ExitCode"] == 0  # the protected main lived on, and exited when told to
    record_kills("docker", rec.get("kernel") or "host", rec)


def test_container_end_explains_exec_deaths():
    """The launcher tells the engine which deaths follow from the main process's OOM kill."""
    (sc,) = resolve(["container-init-victim"], "docker")
    launcher = DockerLauncher.__new__(DockerLauncher)
    assert set(launcher.deaths_explained(sc, {"main"}, ["grower"])) == {"grower"}
    # not when the victim was another workload: then a death is unexplained
    assert launcher.deaths_explained(sc, {"grower"}, ["main"]) == {}
    # not for a scenario without a main workload
    (plain,) = resolve(["larger-of-two"], "docker")
    assert launcher.deaths_explained(plain, {"big"}, ["grower"]) == {}


@pytest.mark.docker
@pytest.mark.slow
def test_cli_run_backend_docker(tmp_path):
    why = _host_problem()
    if why:
        unavailable("docker", why)
    p = run_cli("run", "--backend", "docker", "single-hog", "--results", str(tmp_path), "--json", timeout=240)
    last = (p.stderr.strip().splitlines() or [""])[-1].removeprefix("oom-harness: error: ")
    if p.returncode == 2 and _no_engine(last):
        unavailable("docker", last)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert '"as_expected": true' in p.stdout


@pytest.mark.docker
@pytest.mark.slow
def test_sigkilled_harness_leaves_nothing_after_sweep():
    """A harness killed with SIGKILL: its dockerd follows (PDEATHSIG), sweep_stale removes the rest."""
    why = _host_problem()
    if why:
        unavailable("docker", why)
    code = (
        "import sys, time\n"
        "from harness.backends.docker.runner import DockerRunner\n"
        "from harness.errors import HarnessError\n"
        "try:\n    r = DockerRunner()\n"
        "except HarnessError as e:\n    print('NOENGINE', e, flush=True); sys.exit(0)\n"
        "if r.engine.daemon is None:\n    print('EXISTING', flush=True); sys.exit(0)\n"
        "r.engine.client.containers.run(r.image, ['/bin/sleep', 'infinity'], detach=True, network_mode='none')\n"
        "print('READY', flush=True)\ntime.sleep(300)\n"
    )
    p = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        if line.startswith("NOENGINE"):
            msg = line.removeprefix("NOENGINE").strip()
            assert _no_engine(msg), msg  # any other DockerRunner error is the harness's
            unavailable("docker", msg)
        if line.startswith("EXISTING"):
            # nothing to test: this needs the throw-away dockerd, and an engine answered already
            pytest.skip("an existing Docker engine answers: no throw-away dockerd to SIGKILL")
        assert line.startswith("READY"), line
        assert _debris(p.pid), "the daemon should be running"
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and pids_mentioning(f"{DAEMON_DIR_PREFIX}{p.pid}-"):
        time.sleep(0.2)
    assert not pids_mentioning(f"{DAEMON_DIR_PREFIX}{p.pid}-"), "dockerd outlived its harness"
    removed = sweep_stale()
    assert any(f"{DAEMON_DIR_PREFIX}{p.pid}-" in r for r in removed), removed
    assert not _debris(p.pid), _debris(p.pid)


def test_cross_check_disagreement_fails_the_row():
    base = {
        "scenario": "s", "backend": "docker", "kernel": "x",
        "verdict": "match",
        "outcome": "kill",
        "as_expected": True,
        "reason": "highest points",
        "cgroup": "/a/docker/abc",
        "kernel_log": "6,1,2,-;oom-kill:constraint=CONSTRAINT_MEMCG,oom_memcg=/a/docker/abc,task_memcg=/a/docker/abc\n",
    }
    rec = ScenarioRecord.from_dict(base)
    cross_check(rec, {"OOMKilled": False, "ExitCode": 143, "container": "abc"})
    assert rec.as_expected is False
    assert "signals disagree" in rec.reason and rec.signals["docker_oomkilled"] is False
    ok = ScenarioRecord.from_dict(dict(base, as_expected=True, reason="x"))
    cross_check(ok, {"OOMKilled": True, "ExitCode": 143, "container": "abc"})
    assert ok.as_expected is True
    assert ok.signals == {"kernel_log": True, "docker_oomkilled": True, "harness": True}
    other = ScenarioRecord.from_dict(dict(base, as_expected=True, kernel_log="oom_memcg=/a/docker/other\n"))
    cross_check(other, {"OOMKilled": True, "ExitCode": 143, "container": "abc"})
    assert other.as_expected is False and other.signals["kernel_log"] is False
