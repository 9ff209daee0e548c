"""The Docker engine the backend talks to: an existing one, or a throw-away ``dockerd`` of our own.

The throw-away daemon keeps all of its state in one private temp dir and its containers' cgroups below
the harness's own memory cgroup; :func:`sweep_stale` removes what a killed harness's daemon left.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Any

from harness.errors import HarnessError
from harness.machine.liveness import harness_alive
from harness.machine.sandbox import PREFIX, detect_layout, kill_cgroup_tree

from . import LABEL, progress
from .scrub import (
    GLOBAL_PATHS,
    cgroup_mounts,
    kill_all,
    missing_ancestors,
    pids_mentioning,
    remove_cgroup_dirs,
    remove_new_global_paths,
    set_pdeathsig,
    unmount_below,
    wait_gone,
)

DAEMON_DIR_PREFIX = "oomh-dockerd-"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0

def docker_cli() -> str:
    """The CLI that matches the daemon Debian ships (20.10); any ``docker`` on PATH otherwise."""
    if os.access("/usr/bin/docker", os.X_OK):
        return "/usr/bin/docker"
    found = shutil.which("docker")
    if not found:
        raise HarnessError("no docker CLI: apt-get install docker.io")
    return found


class ThrowawayDaemon:
    """A private ``dockerd`` (+ its containerd), everything under one temp dir, gone on :meth:`stop`."""

    def __init__(self, dockerd: str) -> None:
        self.dockerd = dockerd
        self.layout = detect_layout()
        self.cgroup_parent = os.path.join(self.layout.own, f"{PREFIX}{os.getpid()}-docker")
        self.dir = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self.created: dict[str, list[str]] = {}
        self.global_before: dict[str, bool] = {}
        self.problems: list[str] = []
        self._lock: io.TextIOWrapper | None = None

    @property
    def sock(self) -> str:
        return os.path.join(self.dir, "docker.sock")

    @property
    def log(self) -> str:
        return os.path.join(self.dir, "dockerd.log")

    def start(self) -> None:
        self.dir = tempfile.mkdtemp(prefix=f"{DAEMON_DIR_PREFIX}{os.getpid()}-")
        os.chmod(self.dir, 0o700)
        # held for as long as this process lives: how sweep_stale tells a live daemon from debris
        self._lock = open(os.path.join(self.dir, "lock"), "w")  # noqa: SIM115
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        for d in ("root", "exec", "cli"):
            os.mkdir(os.path.join(self.dir, d), 0o700)
        with open(os.path.join(self.dir, "daemon.json"), "w") as f:
            # never the host's /etc/docker/daemon.json; and the trust key not in /etc/docker
            json.dump({"deprecated-key-path": os.path.join(self.dir, "key.json")}, f)
        self.global_before = {p: os.path.lexists(p) for p in GLOBAL_PATHS}
        self.created = missing_ancestors(os.path.join(self.cgroup_parent, "x"))
        with open(os.path.join(self.dir, "state.json"), "w") as f:  # for sweep_stale after a SIGKILL
            json.dump({"cgroup_parent": self.cgroup_parent, "created": self.created, "global": self.global_before}, f)
        cmd = [
            self.dockerd,
            "--config-file", os.path.join(self.dir, "daemon.json"),
            "--exec-opt", "native.cgroupdriver=cgroupfs",
            f"--cgroup-parent={self.cgroup_parent}",
            "--iptables=false", "--ip6tables=false", "--bridge=none", "--ip-masq=false",
            "--userland-proxy=false",
            "--data-root", os.path.join(self.dir, "root"),
            "--exec-root", os.path.join(self.dir, "exec"),
            "--pidfile", os.path.join(self.dir, "dockerd.pid"),
            "-H", f"unix://{self.sock}",
            "--storage-driver", "overlay2",
        ]  # fmt: skip
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": self.dir, "DOCKER_CONFIG": self._cli_dir()}
        progress(f"starting a throw-away dockerd in {self.dir}")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=set_pdeathsig,
                close_fds=True,
            )
        t0 = time.monotonic()
        told = t0
        import docker

        while True:
            if self.proc.poll() is not None:
                raise HarnessError(f"dockerd exited at start (code {self.proc.returncode}): {self._log_tail()}")
            if os.path.exists(self.sock):
                try:
                    c = docker.DockerClient(base_url=f"unix://{self.sock}", version="auto", timeout=5)
                    c.ping()
                    c.close()
                    break
                except Exception:  # noqa: BLE001 - not up yet
                    pass
            now = time.monotonic()
            if now - t0 > START_TIMEOUT_S:
                raise HarnessError(f"dockerd did not answer within {START_TIMEOUT_S:.0f}s: {self._log_tail()}")
            if now - told > 5:
                progress(f"waiting for dockerd ({now - t0:.0f}s)")
                told = now
            time.sleep(0.1)
        progress(f"dockerd up in {time.monotonic() - t0:.1f}s")

    def _cli_dir(self) -> str:
        return os.path.join(self.dir, "cli")

    def _log_tail(self) -> str:
        try:
            with open(self.log, errors="replace") as f:
                lines = [ln.strip() for ln in f if "level=error" in ln or "level=fatal" in ln or "failed" in ln]
            return (lines[-1] if lines else "no error in its log")[-300:]
        except OSError:
            return "no log"

    def stop(self) -> None:
        """Stop dockerd and containerd, kill what is left, unmount, delete, remove the cgroups."""
        if not self.dir:
            return
        ours = pids_mentioning(self.dir)  # dockerd, containerd, shims (all name our dir)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.problems.append(f"dockerd did not stop within {STOP_TIMEOUT_S:.0f}s; killed")
                self.proc.kill()
                self.proc.wait(5)
        elif self.proc is not None:
            self.proc.wait()
        ours = sorted(set(ours) | set(pids_mentioning(self.dir)))
        left = wait_gone(ours, 5.0)
        if left:
            kill_all(left, signal.SIGKILL)
            wait_gone(left, 5.0)
        self.problems += remove_cgroup_dirs(self.cgroup_parent, self.created)
        self.problems += unmount_below(self.dir)
        self.problems += remove_new_global_paths(self.global_before)
        shutil.rmtree(self.dir, ignore_errors=True)
        if os.path.exists(self.dir):
            self.problems.append(f"could not delete {self.dir}")
        self.dir = ""
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        if self.problems:
            progress("clean-up problems: " + "; ".join(self.problems))


def sweep_stale() -> list[str]:
    """Remove what a killed harness's throw-away dockerd left: processes, mounts, its dir, the
    cgroups it made in every hierarchy and the global paths it created (from its ``state.json``)."""
    removed: list[str] = []
    tmp = tempfile.gettempdir()
    try:
        names = os.listdir(tmp)
    except OSError:
        return removed
    for n in names:
        m = re.match(re.escape(DAEMON_DIR_PREFIX) + r"(\d+)-", n)
        d = os.path.join(tmp, n)
        if not m or int(m.group(1)) == os.getpid() or not _lock_is_free(d):
            continue
        pids = pids_mentioning(d)
        kill_all(pids, signal.SIGTERM)
        kill_all(wait_gone(pids, 15.0), signal.SIGKILL)
        wait_gone(pids, 5.0)
        state: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError), open(os.path.join(d, "state.json")) as f:
            state = json.load(f)
        if state.get("cgroup_parent"):
            remove_cgroup_dirs(state["cgroup_parent"], state.get("created"))
        unmount_below(d)
        remove_new_global_paths(state.get("global") or {})
        shutil.rmtree(d, ignore_errors=True)
        removed.append(d)
    try:
        own = detect_layout().own
    except HarnessError:
        return removed
    for mount in cgroup_mounts():  # parents of daemons whose state.json was lost
        base = os.path.join(mount, own.lstrip("/"))
        with contextlib.suppress(OSError):
            for n in os.listdir(base):
                m = re.fullmatch(re.escape(PREFIX) + r"(\d+)-docker", n)
                if m and not harness_alive(int(m.group(1))) and not _daemon_dirs_of(int(m.group(1))):
                    with contextlib.suppress(HarnessError):
                        kill_cgroup_tree(os.path.join(base, n))
                        removed.append(os.path.join(base, n))
    return removed


def _lock_is_free(d: str) -> bool:
    """True when no live process holds the daemon dir's lock (its harness is gone)."""
    try:
        with open(os.path.join(d, "lock"), "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
    except BlockingIOError:
        return False
    except OSError:
        return True  # no lock file: a half-created dir of a harness killed at once


def _daemon_dirs_of(pid: int) -> list[str]:
    tmp = tempfile.gettempdir()
    with contextlib.suppress(OSError):
        return [n for n in os.listdir(tmp) if n.startswith(f"{DAEMON_DIR_PREFIX}{pid}-")]
    return []




class DockerEngine:
    """A Docker engine to use: the one that answers already, or a throw-away one of our own."""

    def __init__(self) -> None:
        import docker

        self.daemon: ThrowawayDaemon | None = None
        self.client: Any = None
        self.cli_env = dict(os.environ)
        try:
            c = docker.from_env(version="auto", timeout=10)
            c.ping()
            self.client = c
            self.where = os.environ.get("DOCKER_HOST", "the default socket")
            return
        except Exception as e:  # noqa: BLE001 - no engine answers: try our own
            why = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        dockerd = shutil.which("dockerd") or next(
            (p for p in ("/usr/sbin/dockerd", "/usr/bin/dockerd") if os.access(p, os.X_OK)), None
        )
        if dockerd is None:
            raise HarnessError(
                f"no Docker engine answers ({why}) and dockerd is not installed: apt-get install docker.io"
            )
        if os.geteuid() != 0:
            raise HarnessError(f"no Docker engine answers ({why}) and a throw-away dockerd needs root")
        docker_cli()  # fail early, before starting anything
        self.daemon = ThrowawayDaemon(dockerd)
        self.daemon.start()
        try:
            self.client = docker.DockerClient(base_url=f"unix://{self.daemon.sock}", version="auto", timeout=60)
        except BaseException:
            self.daemon.stop()
            raise
        self.where = f"throw-away dockerd ({self.daemon.dir})"
        self.cli_env = {
            **os.environ,
            "DOCKER_HOST": f"unix://{self.daemon.sock}",
            "DOCKER_CONFIG": self.daemon._cli_dir(),
        }
        self.cli_env.pop("DOCKER_CONTEXT", None)

    def info(self) -> dict[str, Any]:
        v = self.client.version()
        i = self.client.info()
        return {
            "docker_version": v.get("Version"),
            "api_version": v.get("ApiVersion"),
            "storage_driver": i.get("Driver"),
            "cgroup_driver": i.get("CgroupDriver"),
            "cgroup_version": i.get("CgroupVersion"),
            "engine": self.where,
            "throwaway_daemon": self.daemon is not None,
            "cgroup_parent": self.daemon.cgroup_parent if self.daemon else None,
        }

    def close(self) -> list[str]:
        with contextlib.suppress(Exception):
            if self.client is not None:
                for c in self.client.containers.list(all=True, filters={"label": f"{LABEL}.pid={os.getpid()}"}):
                    c.remove(force=True)
        with contextlib.suppress(Exception):
            if self.client is not None:
                self.client.close()
        self.client = None
        if self.daemon is not None:
            self.daemon.stop()
            return self.daemon.problems
        return []
