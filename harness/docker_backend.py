"""The Docker backend: the same scenarios, with a container's memory cgroup as the sandbox.

What it adds to the shared engine (:mod:`harness.engine`) is only *where* things run:

* **Engine.**  An engine that already answers (``DOCKER_HOST`` or the default socket) is used as
  it is.  Otherwise, when root and ``dockerd`` is installed, a throw-away ``dockerd`` is started
  with all of its state in a private temp dir, its containers' cgroups below the harness's own
  memory cgroup (``--cgroup-parent=<own>/oomh-<pid>-docker``, cgroupfs driver), no networking
  and no iptables; it is stopped afterwards (SIGTERM, wait, SIGKILL), and its temp dir, its
  mounts and every cgroup it made, in every hierarchy (runc makes the parent in all of them),
  are removed.  A harness killed with SIGKILL takes its dockerd with it (``PR_SET_PDEATHSIG``);
  the next run (or ``oom-harness cleanup``) removes what is left (:func:`sweep_stale`).
* **Image.**  Built here, without a registry: the host's Python interpreter and stdlib (with
  their shared libraries), coreutils ``sleep``, and ``/opt/oom-harness/{harness,workloads}``
  from this checkout, ``docker import``ed as ``oom-harness:<hash of its inputs>``.  A throw-away
  daemon's data root is deleted with it, so there the image is built once per daemon (about a
  second); an existing engine keeps it (older ``oom-harness:*`` tags are removed).
* **Sandbox.**  One container per scenario (``--network none``, ``--memory`` = ``memory_max``,
  ``--memory-swap`` = ``memory_max + swap_max``, command ``sleep infinity``); the sandbox is the
  container's memory cgroup on the host (read from ``/proc/<init pid>/cgroup``).  Workloads start
  with ``docker exec -i -u UID:GID <ctr> python3 -I -S /opt/oom-harness/workloads/hog.py SPEC``;
  the pids they report (container pid namespace) are mapped to host pids through ``NSpid:``.
  Nested cgroups (``[[cgroup.children]]``) cannot be made inside a container.
* **Main process.**  A workload with ``main = true`` is the container's command instead of
  ``sleep`` (no docker-init: the hog is pid 1 of the pid namespace, ``--oom-score-adj`` its adj),
  started in :meth:`DockerLauncher.sandbox` with ``docker start -ai``, whose pipes are the
  workload's.  The kernel OOM-kills a namespace's init like any task (only the global init is
  exempt); the container then ends, and the kernel kills its exec'd workloads with it
  (the launcher's ``deaths_explained`` tells the engine so).

The runner cross-checks three signals for each scenario: the kernel log (an OOM report whose
``oom_memcg=`` is the container's cgroup), Docker's ``State.OOMKilled`` and the harness's own
outcome (parsed report + model).  ``State.OOMKilled`` is Docker's record of an OOM event in the
container's cgroup (containerd watches ``memory.oom_control``), not of its main process dying:
the workloads are ``exec``'d, so the container's ``sleep`` lives on and ``State.ExitCode`` stays
0; the victim's exit status (137) is in its exec's ``ExitCode``, recorded per workload.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from .engine import EngineOptions, Launcher, protect_self, run_scenario
from .errors import HarnessError
from .sandbox import PREFIX, Sandbox, detect_layout, harness_alive, kill_cgroup_tree
from .scenario import Scenario, Workload

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROJECT_IN_IMAGE = "/opt/oom-harness"
HOG_IN_IMAGE = PROJECT_IN_IMAGE + "/workloads/hog.py"
PYTHON_IN_IMAGE = "/usr/bin/python3"
REPO = "oom-harness"
LABEL = "oom-harness"
DAEMON_DIR_PREFIX = "oomh-dockerd-"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0

#: Parts of the stdlib the hog never needs (and that pull in big shared libraries).
STDLIB_DROP = {
    "test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data", "venv",
    "distutils", "turtle.py", "pydoc.py", "sqlite3", "dbm", "curses", "site-packages", "dist-packages",
}  # fmt: skip
DYNLOAD_DROP = (
    "_test", "_xxtest", "_ctypes_test", "xxlimited", "_xxsubinterpreters", "ossaudiodev", "_ssl",
    "_hashlib", "_sqlite3", "_curses", "_dbm", "_gdbm", "readline", "_tkinter", "nis",
)  # fmt: skip

__all__ = ["DockerRunner", "DockerLauncher", "DockerEngine", "sweep_stale", "build_image"]


def _progress(msg: str) -> None:
    print(f"[docker] {msg}", file=sys.stderr, flush=True)


def docker_cli() -> str:
    """The CLI that matches the daemon Debian ships (20.10); any ``docker`` on PATH otherwise."""
    if os.access("/usr/bin/docker", os.X_OK):
        return "/usr/bin/docker"
    found = shutil.which("docker")
    if not found:
        raise HarnessError("no docker CLI: apt-get install docker.io")
    return found


# --- cgroups of a throw-away daemon ---------------------------------------------------------------


def _cgroup_mounts() -> list[str]:
    """Mount points of every cgroup hierarchy (v1 and v2) visible here."""
    out = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                fstype = right.split(" ", 1)[0]
                if fstype in ("cgroup", "cgroup2"):
                    out.append(left.split()[4].replace("\\040", " "))
    except OSError:
        pass
    return sorted(set(out))


def _remove_cgroup_dirs(rel: str, created: dict[str, list[str]] | None = None) -> list[str]:
    """Remove ``<mount>/<rel>`` (and everything below, killing what still runs there) in every
    hierarchy, then the ancestors listed in *created* (made by runc, not there before).

    Returns what could not be removed.
    """
    left = []
    for mount in _cgroup_mounts():
        path = os.path.join(mount, rel.lstrip("/"))
        try:
            kill_cgroup_tree(path, timeout=5.0)
        except HarnessError as e:
            left.append(str(e))
        for anc in (created or {}).get(mount, []):
            try:
                os.rmdir(anc)
            except FileNotFoundError:
                pass
            except OSError as e:
                left.append(f"{anc}: {e.strerror}")
    return left


def _missing_ancestors(rel: str) -> dict[str, list[str]]:
    """Per hierarchy, the ancestors of *rel* that do not exist yet (deepest first)."""
    parts = [p for p in rel.strip("/").split("/") if p][:-1]
    out: dict[str, list[str]] = {}
    for mount in _cgroup_mounts():
        miss = []
        for i in range(1, len(parts) + 1):
            d = os.path.join(mount, *parts[:i])
            if not os.path.isdir(d):
                miss.append(d)
        out[mount] = list(reversed(miss))
    return out


# --- processes and mounts of a throw-away daemon ----------------------------------------------------


def _pids_mentioning(needle: str) -> list[int]:
    """Processes whose command line contains *needle* (our private daemon dir)."""
    out = []
    b = needle.encode()
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                if b in f.read():
                    out.append(int(d))
        except OSError:
            pass
    return out


def _kill_all(pids: list[int], sig: int) -> None:
    for p in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p, sig)


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if _pid_alive(p)]
        if alive:
            time.sleep(0.05)
    return [p for p in alive if _pid_alive(p)]


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][:1] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _unmount_below(root: str) -> list[str]:
    """Lazily unmount everything mounted at or below *root* (deepest first); returns failures."""
    mps = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                mp = line.split()[4].replace("\\040", " ")
                if mp == root or mp.startswith(root.rstrip("/") + "/"):
                    mps.append(mp)
    except OSError:
        return []
    libc = ctypes.CDLL(None, use_errno=True)
    bad = []
    for mp in sorted(set(mps), key=len, reverse=True):
        if libc.umount2(mp.encode(), 2) != 0:  # MNT_DETACH
            err = ctypes.get_errno()
            if err not in (errno.EINVAL, errno.ENOENT):
                bad.append(f"{mp}: {os.strerror(err)}")
    return bad


#: Places outside its own dirs where dockerd/containerd write even when told otherwise (the shims'
#: sockets live in /run/containerd/s); whatever of these a throw-away daemon created is removed.
GLOBAL_PATHS = (
    "/etc/docker/key.json", "/run/containerd/s", "/run/containerd", "/run/docker", "/var/lib/docker",
    "/var/lib/containerd", "/run/docker.sock", "/etc/docker",
)  # fmt: skip


def _remove_new_global_paths(before: dict[str, bool]) -> list[str]:
    """Remove the GLOBAL_PATHS that did not exist before: files, and directories once empty."""
    bad = []
    for p, existed in before.items():
        if existed or not os.path.lexists(p):
            continue
        try:
            if os.path.isdir(p) and not os.path.islink(p):
                for d, _, files in os.walk(p, topdown=False):
                    if not files:
                        with contextlib.suppress(OSError):
                            os.rmdir(d)
                if os.path.exists(p):
                    _progress(f"note: {p} holds files of another engine; left in place")
            else:
                os.unlink(p)
        except OSError as e:
            bad.append(f"{p}: {e.strerror}")
    return bad


def _set_pdeathsig() -> None:
    """In the child: get SIGTERM when the harness dies, so a SIGKILLed run does not leak dockerd."""
    ctypes.CDLL(None).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    os.setsid()


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
        self.created = _missing_ancestors(os.path.join(self.cgroup_parent, "x"))
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
        _progress(f"starting a throw-away dockerd in {self.dir}")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=_set_pdeathsig,
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
                _progress(f"waiting for dockerd ({now - t0:.0f}s)")
                told = now
            time.sleep(0.1)
        _progress(f"dockerd up in {time.monotonic() - t0:.1f}s")

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
        ours = _pids_mentioning(self.dir)  # dockerd, containerd, shims (all name our dir)
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
        ours = sorted(set(ours) | set(_pids_mentioning(self.dir)))
        left = _wait_gone(ours, 5.0)
        if left:
            _kill_all(left, signal.SIGKILL)
            _wait_gone(left, 5.0)
        self.problems += _remove_cgroup_dirs(self.cgroup_parent, self.created)
        self.problems += _unmount_below(self.dir)
        self.problems += _remove_new_global_paths(self.global_before)
        shutil.rmtree(self.dir, ignore_errors=True)
        if os.path.exists(self.dir):
            self.problems.append(f"could not delete {self.dir}")
        self.dir = ""
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        if self.problems:
            _progress("clean-up problems: " + "; ".join(self.problems))


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
        pids = _pids_mentioning(d)
        _kill_all(pids, signal.SIGTERM)
        _kill_all(_wait_gone(pids, 15.0), signal.SIGKILL)
        _wait_gone(pids, 5.0)
        state: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError), open(os.path.join(d, "state.json")) as f:
            state = json.load(f)
        if state.get("cgroup_parent"):
            _remove_cgroup_dirs(state["cgroup_parent"], state.get("created"))
        _unmount_below(d)
        _remove_new_global_paths(state.get("global") or {})
        shutil.rmtree(d, ignore_errors=True)
        removed.append(d)
    try:
        own = detect_layout().own
    except HarnessError:
        return removed
    for mount in _cgroup_mounts():  # parents of daemons whose state.json was lost
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


# --- the engine ------------------------------------------------------------------------------------


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


# --- the image -------------------------------------------------------------------------------------


def _ldd(path: str) -> list[str]:
    """Absolute paths of the shared libraries *path* needs (and the loader)."""
    p = subprocess.run(["ldd", path], capture_output=True, text=True, check=False)
    out = []
    for line in p.stdout.splitlines():
        m = re.search(r"=>\s*(/\S+)", line) or re.match(r"\s*(/\S+)\s+\(", line)
        if m:
            out.append(m.group(1))
    return out


def _project_files() -> list[tuple[str, str]]:
    out = []
    for top in ("harness", "workloads"):
        src = os.path.join(CHECKOUT, top)
        for dirpath, dirnames, filenames in os.walk(src):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and not d.startswith("."))
            for f in sorted(filenames):
                if f.endswith((".pyc", ".pyo")) or f.startswith("."):
                    continue
                p = os.path.join(dirpath, f)
                out.append((os.path.relpath(p, CHECKOUT), p))
    return out


def _image_inputs() -> tuple[str, str, str, list[tuple[str, str]]]:
    """(python binary, its stdlib dir, sleep binary, project files)."""
    py = os.path.realpath("/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable)
    ver = subprocess.run(
        [py, "-I", "-S", "-c", "import sys, sysconfig; print(sysconfig.get_paths()['stdlib'])"],
        capture_output=True,
        text=True,
        check=False,
    )
    stdlib = ver.stdout.strip()
    if ver.returncode != 0 or not os.path.isdir(stdlib):
        raise HarnessError(f"cannot find the stdlib of {py} for the image")
    sleep = shutil.which("sleep") or "/bin/sleep"
    return py, stdlib, os.path.realpath(sleep), _project_files()


def image_tag() -> str:
    """``oom-harness:<hash>`` of everything that goes into the image (incl. this builder)."""
    py, stdlib, sleep, files = _image_inputs()
    h = hashlib.sha256()
    for p in (py, sleep, os.path.abspath(__file__)):
        with open(p, "rb") as f:
            h.update(f.read())
    h.update(stdlib.encode())
    with contextlib.suppress(OSError):
        h.update(str(os.stat(stdlib).st_mtime_ns).encode())
    for rel, p in files:
        h.update(rel.encode() + b"\0")
        with open(p, "rb") as f:
            h.update(f.read())
    return f"{REPO}:{h.hexdigest()[:16]}"


def _write_rootfs_tar(out: str) -> None:
    py, stdlib, sleep, files = _image_inputs()
    pyname = os.path.basename(py)
    seen: set[str] = set()

    def norm(ti: tarfile.TarInfo) -> tarfile.TarInfo:
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = "root"
        return ti

    with tarfile.open(out, "w") as tar:

        def add_dir(arc: str, mode: int = 0o755) -> None:
            parts = arc.strip("/").split("/")
            for i in range(1, len(parts) + 1):
                a = "/".join(parts[:i])
                if a and a not in seen:
                    seen.add(a)
                    ti = tarfile.TarInfo(a)
                    ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, mode if i == len(parts) else 0o755, 0
                    tar.addfile(norm(ti))

        def add_file(src: str, arc: str) -> None:
            arc = arc.lstrip("/")
            if arc in seen:
                return
            add_dir(os.path.dirname(arc))
            seen.add(arc)
            ti = tar.gettarinfo(src, arc)
            if ti.issym() or ti.islnk():
                ti = tar.gettarinfo(os.path.realpath(src), arc)
            with open(os.path.realpath(src), "rb") as f:
                tar.addfile(norm(ti), f)

        def add_text(arc: str, text: str, mode: int = 0o644) -> None:
            add_dir(os.path.dirname(arc))
            data = text.encode()
            ti = tarfile.TarInfo(arc)
            ti.size, ti.mode, ti.mtime = len(data), mode, 0
            tar.addfile(norm(ti), io.BytesIO(data))
            seen.add(arc)

        def add_link(arc: str, target: str) -> None:
            add_dir(os.path.dirname(arc))
            ti = tarfile.TarInfo(arc)
            ti.type, ti.linkname, ti.mode = tarfile.SYMTYPE, target, 0o777
            tar.addfile(norm(ti))
            seen.add(arc)

        for d in ("proc", "sys", "dev", "etc", "root", "run"):
            add_dir(d)
        add_dir("tmp", 0o1777)
        add_text("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
        add_text("etc/group", "root:x:0:\nnogroup:x:65534:\n")
        # interpreter, sleep, and the libraries of both and of the extension modules kept
        add_file(py, f"usr/bin/{pyname}")
        if pyname != "python3":
            add_link("usr/bin/python3", pyname)
        add_file(sleep, "bin/sleep")
        add_link("usr/bin/sleep", "/bin/sleep")
        libs = set(_ldd(py)) | set(_ldd(sleep))
        for dirpath, dirnames, filenames in os.walk(stdlib):
            rel = os.path.relpath(dirpath, stdlib)
            top = rel.split(os.sep)[0]
            dirnames[:] = sorted(
                d for d in dirnames if not (rel == "." and d in STDLIB_DROP) and d not in ("test", "tests")
            )
            if rel == "." or top not in STDLIB_DROP:
                for f in sorted(filenames):
                    if rel == "." and f in STDLIB_DROP:
                        continue
                    if top == "lib-dynload" and f.startswith(DYNLOAD_DROP):
                        continue
                    src = os.path.join(dirpath, f)
                    if os.path.isfile(src):
                        add_file(src, os.path.join(stdlib, rel, f) if rel != "." else os.path.join(stdlib, f))
                        if f.endswith(".so"):
                            libs |= set(_ldd(src))
        for lib in sorted(libs):
            add_file(lib, lib)
            real = os.path.realpath(lib)
            if real != lib:
                add_file(real, real)
        for rel, p in files:
            add_file(p, os.path.join(PROJECT_IN_IMAGE, rel))


def build_image(client: Any) -> str:
    """The image tag, importing the image unless this engine has it already."""
    tag = image_tag()
    with contextlib.suppress(Exception):
        client.images.get(tag)
        return tag
    t0 = time.monotonic()
    _progress(f"building image {tag}")
    with tempfile.TemporaryDirectory(prefix="oomh-image-") as work:
        tar = os.path.join(work, "rootfs.tar")
        _write_rootfs_tar(tar)
        repo, _, t = tag.partition(":")
        try:
            client.api.import_image_from_file(tar, repository=repo, tag=t, changes=[f"LABEL {LABEL}=1"])
            client.images.get(tag)
        except Exception as e:  # noqa: BLE001
            raise HarnessError(f"docker import of the harness image failed: {e}") from None
        size = os.path.getsize(tar)
    _progress(f"image {tag}: {size >> 20} MB in {time.monotonic() - t0:.1f}s")
    with contextlib.suppress(Exception):  # older builds of ours
        for img in client.images.list(name=REPO):
            if tag not in img.tags:
                client.images.remove(img.id, force=True)
    return tag


# --- the launcher ----------------------------------------------------------------------------------


def _nspid_map(host_pids: list[int]) -> dict[int, int]:
    """{pid in the innermost namespace: host pid} from ``/proc/<pid>/status`` ``NSpid:``."""
    out = {}
    for hp in host_pids:
        try:
            with open(f"/proc/{hp}/status") as f:
                for line in f:
                    if line.startswith("NSpid:"):
                        ns = line.split()[1:]
                        if ns:
                            out[int(ns[-1])] = hp
                        break
        except (OSError, ValueError):
            pass
    return out


class DockerLauncher(Launcher):
    """One container per scenario; workloads are ``docker exec``'d into it."""

    name = "docker"
    hog = HOG_IN_IMAGE

    def __init__(self, engine: DockerEngine, image: str) -> None:
        self.engine = engine
        self.image = image
        self.container: Any = None
        self.inspected: dict[str, Any] | None = None  # docker's view, taken just before removal
        self.execs: dict[str, subprocess.Popen[bytes]] = {}  # workload -> its `docker exec` client
        self.main: Workload | None = None  # the workload that is the container's main process
        self.main_spec: dict[str, Any] | None = None
        self.main_proc: subprocess.Popen[bytes] | None = None  # its `docker start -ai` client
        self.stderr_dir = tempfile.mkdtemp(prefix="oomh-exec-")
        self._n = 0

    def sandbox(self, sc: Scenario, opts: EngineOptions) -> tuple[Sandbox, dict[str, Sandbox]]:
        cg = sc.cgroup
        if cg.children:
            raise HarnessError(f"{sc.name}: nested cgroups cannot be made inside a container (run it on the host)")
        if cg.oom_group or cg.memory_high is not None or cg.cpuset_mems is not None:
            raise HarnessError(f"{sc.name}: memory.oom.group / memory.high / cpuset are not Docker options")
        if cg.memory_max is None:
            raise HarnessError(f"{sc.name}: a Docker scenario needs a memory limit")
        self._n += 1
        self.inspected = None
        self.execs = {}
        name = f"{PREFIX}{os.getpid()}-{re.sub(r'[^A-Za-z0-9_.-]', '_', sc.name)[:40]}-{self._n}"
        main = next((w for w in sc.workloads if w.main), None)
        self.main = main
        self.main_spec = None
        self.main_proc = None
        kw: dict[str, Any] = {
            "name": name,
            "command": ["/bin/sleep", "infinity"],
            "network_mode": "none",
            "mem_limit": cg.memory_max,
            "memswap_limit": -1 if cg.swap_max is None else cg.memory_max + cg.swap_max,
            "labels": {LABEL: "1", f"{LABEL}.pid": str(os.getpid()), f"{LABEL}.scenario": sc.name},
            "pids_limit": 4096,
            "init": True,  # docker-init (tini) as pid 1: `docker stop` then ends it with 143, not 137
        }
        if any(w.oom_score_adj < 0 for w in sc.workloads):
            # the hogs set their own oom_score_adj; lowering it needs CAP_SYS_RESOURCE in the container
            kw["cap_add"] = ["SYS_RESOURCE"]
        try:
            if main is None:
                self.container = self.engine.client.containers.run(self.image, detach=True, **kw)
            else:
                self._start_main(main, kw)
        except HarnessError:
            self._remove()
            raise
        except Exception as e:  # noqa: BLE001
            self._remove()
            raise HarnessError(f"cannot start the container: {str(e).splitlines()[0][:300]}") from None
        try:
            self.container.reload()
            pid = int(self.container.attrs["State"]["Pid"])
            layout = detect_layout()
            rel = self._memcg_of(pid, layout.version)
            sb = Sandbox(layout, rel)
            if not os.path.isdir(sb.path):
                raise HarnessError(
                    f"the container's memory cgroup {sb.path} is not visible here (is the engine on another "
                    "machine, or rootless?)"
                )
        except BaseException:
            self._remove()
            raise
        return sb, {"": sb}

    @staticmethod
    def _memcg_of(pid: int, version: int) -> str:
        try:
            with open(f"/proc/{pid}/cgroup") as f:
                lines = f.read().splitlines()
        except OSError as e:
            raise HarnessError(f"cannot read the container's cgroup (/proc/{pid}/cgroup): {e.strerror}") from None
        for line in lines:
            hid, ctrls, path = (line.split(":", 2) + ["", ""])[:3]
            if (version == 2 and hid == "0" and ctrls == "") or (version == 1 and "memory" in ctrls.split(",")):
                return path
        raise HarnessError(f"no memory cgroup for the container's init (pid {pid})")

    @staticmethod
    def _main_spec(wl: Workload) -> dict[str, Any]:
        """The spec the engine will hand to :meth:`popen` for *wl* (``engine._start``), known here
        before the engine asks, because the container's command is fixed when it is created."""
        spec = wl.spec()
        spec["comm"] = wl.name
        spec["oom_score_adj"] = wl.oom_score_adj
        if wl.kind == "file":
            spec["path"] = f"/tmp/{wl.name}.data"
        return spec

    def _start_main(self, wl: Workload, kw: dict[str, Any]) -> None:
        """Create the container with the hog of *wl* as its main process (pid 1 of its pid
        namespace: no docker-init), then ``docker start -ai`` it: that client's pipes are the
        workload's stdin/stdout, its exit status the container's."""
        self.main_spec = self._main_spec(wl)
        gid = wl.gid if wl.gid is not None else wl.uid
        kw = dict(kw)
        kw.update(
            command=[PYTHON_IN_IMAGE, "-I", "-S", self.hog, json.dumps(self.main_spec)],
            init=False,
            stdin_open=True,  # also AttachStdin and StdinOnce: stdin closes when the client detaches
            user=f"{wl.uid}:{gid}",
            working_dir="/tmp",
        )
        if wl.oom_score_adj:
            kw["oom_score_adj"] = wl.oom_score_adj  # set by runc before the hog runs
        self.container = self.engine.client.containers.create(self.image, **kw)
        with open(os.path.join(self.stderr_dir, f"{self._n}-{wl.name}.err"), "wb") as err:
            self.main_proc = subprocess.Popen(
                [docker_cli(), "start", "-ai", self.container.id],  # attaches before it starts
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                env=self.engine.cli_env,
                close_fds=True,
            )
        self.execs[wl.name] = self.main_proc
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            st = self.engine.client.api.inspect_container(self.container.id).get("State", {})
            if st.get("Running") and st.get("Pid"):
                return
            if self.main_proc.poll() is not None or st.get("Status") in ("exited", "dead"):
                raise HarnessError(
                    f"the container's main process {wl.name} exited at start (exit {st.get('ExitCode')}, "
                    f"OOMKilled={st.get('OOMKilled')}): {st.get('Error') or self.exec_stderr() or 'no error'}"
                )
            if time.monotonic() > deadline:
                raise HarnessError(f"the container did not start within {START_TIMEOUT_S:.0f}s")
            time.sleep(0.02)

    def popen(self, wl: Workload, spec: dict[str, Any], sb: Sandbox, opts: EngineOptions) -> subprocess.Popen[bytes]:
        spec = dict(spec)
        if "path" in spec:  # the host's temp dir does not exist in the container: use its own /tmp
            spec["path"] = "/tmp/" + os.path.basename(spec["path"])
        if self.main is not None and wl.name == self.main.name and self.main_proc is not None:
            if spec != self.main_spec:
                raise HarnessError(
                    f"{wl.name}: the engine's spec {spec} is not the one the container was created with "
                    f"{self.main_spec} (engine._start changed: update DockerLauncher._main_spec)"
                )
            return self.main_proc
        gid = wl.gid if wl.gid is not None else wl.uid
        cmd = [
            docker_cli(), "exec", "-i", "-u", f"{wl.uid}:{gid}", "-w", "/tmp", self.container.id,
            PYTHON_IN_IMAGE, "-I", "-S", self.hog, json.dumps(spec),
        ]  # fmt: skip
        with open(os.path.join(self.stderr_dir, f"{self._n}-{wl.name}.err"), "wb") as err:
            p = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                env=self.engine.cli_env,
                close_fds=True,
            )
        self.execs[wl.name] = p
        return p

    def host_pids(self, reported: list[int], sb: Sandbox) -> list[int]:
        deadline = time.monotonic() + 2.0
        while True:
            m = _nspid_map(sb.pids())
            if all(p in m for p in reported) or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        missing = [p for p in reported if p not in m]
        if missing:
            raise HarnessError(f"container pids {missing} not found in {sb.path}")
        return [m[p] for p in reported]

    def deaths_explained(self, sc: Scenario, killed: set[str], dead: list[str]) -> dict[str, str]:
        """When the container's main process was the OOM victim the container ends with it: the
        kernel SIGKILLs the rest of its pid namespace (``zap_pid_ns_processes``), so every exec'd
        workload dies too, with no OOM kill of its own in the log."""
        main = next((w.name for w in sc.workloads if w.main), None)
        if main is None or main not in killed:
            return {}
        why = (f"the container's main process {main} was the OOM victim, and the kernel kills the rest of its "
               "pid namespace")
        return {w: why for w in dead if w != main}

    def release(self, root: Sandbox) -> None:
        if self.container is None:
            root.destroy()
            return
        try:
            self.inspected = self._inspect()
        finally:
            self._remove()
            root.destroy()  # normally gone with the container; kills and removes anything left

    def _inspect(self) -> dict[str, Any]:
        """Docker's view of the scenario: while the container runs, then after ``docker stop``.

        ``State.OOMKilled`` is only updated when the container's main process exits (containerd
        reports the cgroup's OOM event with the exit), so the container is stopped first.
        """
        api = self.engine.client.api
        cid = self.container.id
        running = api.inspect_container(cid).get("State", {})
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and any(p.poll() is None for p in self.execs.values()):
            time.sleep(0.02)  # the engine has just told the workloads to exit
        execs = {name: p.poll() for name, p in self.execs.items()}
        with contextlib.suppress(Exception):
            self.container.stop(timeout=5)
        with contextlib.suppress(Exception):
            self.container.wait(timeout=10)
        info = api.inspect_container(cid)
        st = info.get("State", {})
        return {
            "OOMKilled": st.get("OOMKilled"),
            "ExitCode": st.get("ExitCode"),
            "container": cid,
            "while_running": {"OOMKilled": running.get("OOMKilled"), "Status": running.get("Status")},
            "exec_exit_codes": execs,  # `docker exec` exit status per workload (137: SIGKILL)
            "main": self.main.name if self.main is not None else None,  # the workload that was pid 1
            "docker_init": bool((info.get("HostConfig") or {}).get("Init")),
        }

    def _remove(self) -> None:
        c, self.container = self.container, None
        if c is not None:
            try:
                c.remove(force=True)
            except Exception as e:  # noqa: BLE001
                if "No such container" not in str(e):
                    raise HarnessError(f"cannot remove container {c.id[:12]}: {str(e)[:200]}") from None

    def exec_stderr(self) -> str:
        out = []
        with contextlib.suppress(OSError):
            for n in sorted(os.listdir(self.stderr_dir)):
                if n.startswith(f"{self._n}-"):
                    with open(os.path.join(self.stderr_dir, n), errors="replace") as f:
                        t = f.read().strip()
                    if t:
                        out.append(f"{n.split('-', 1)[1][:-4]}: {t[-300:]}")
        return "; ".join(out)

    def close(self) -> None:
        self._remove()
        p, self.main_proc = self.main_proc, None
        if p is not None:  # normally reaped by the engine; not when sandbox() failed
            with contextlib.suppress(Exception):
                p.kill()
                p.wait(timeout=5)
            for f in (p.stdin, p.stdout):
                with contextlib.suppress(Exception):
                    f.close()  # type: ignore[union-attr]
        shutil.rmtree(self.stderr_dir, ignore_errors=True)


# --- the runner ------------------------------------------------------------------------------------

_MEMCG_RE = re.compile(r"oom_memcg=([^,\s]+)")


def cross_check(rec: dict[str, Any], docker_view: dict[str, Any] | None) -> None:
    """Add ``rec["docker"]`` and demand that kernel log, ``State.OOMKilled`` and the model agree."""
    if docker_view is None:
        return
    rec["docker"] = docker_view
    if rec.get("verdict") in ("skipped", "error"):
        return
    rel = rec.get("cgroup") or ""
    log_memcgs = _MEMCG_RE.findall(rec.get("kernel_log") or "")
    kernel = any(m == rel or m.startswith(rel.rstrip("/") + "/") for m in log_memcgs) if rel else False
    docker = bool(docker_view.get("OOMKilled"))
    harness = rec.get("outcome") in ("kill", "group-kill")
    rec["signals"] = {"kernel_log": kernel, "docker_oomkilled": docker, "harness": harness}
    if kernel == docker == harness:
        return
    words = {True: "an OOM kill", False: "no OOM kill"}
    why = (
        f"signals disagree: kernel log {words[kernel]} in {rel}, Docker State.OOMKilled={docker}, "
        f"harness outcome {rec.get('outcome')} (verdict {rec.get('verdict')})"
    )
    rec["as_expected"] = False
    rec["reason"] = why + ("; " + rec["reason"] if rec.get("reason") else "")


class DockerRunner:
    """Runs scenarios in containers of a Docker engine (an existing one, or a throw-away dockerd)."""

    label = "docker"

    def __init__(self) -> None:
        removed = sweep_stale()
        if removed:
            _progress(f"removed {len(removed)} item(s) left by a killed run: " + ", ".join(removed))
        self.protected = protect_self()
        self.engine = DockerEngine()
        try:
            t0 = time.monotonic()
            self.image = build_image(self.engine.client)
            self.image_s = round(time.monotonic() - t0, 2)
            self._warm_up()
            self._env = self.engine.info()
        except BaseException:
            self.engine.close()
            raise

    def _warm_up(self) -> None:
        """Run the image's python once without a memory limit, so its page cache is charged to the
        daemon's parent cgroup and not to the first scenario's container (see engine.warm_up)."""
        spec = json.dumps({"kind": "anon", "size": 0})
        try:
            self.engine.client.containers.run(
                self.image,
                [PYTHON_IN_IMAGE, "-I", "-S", HOG_IN_IMAGE, spec],
                network_mode="none",
                remove=True,
                labels={LABEL: "1", f"{LABEL}.pid": str(os.getpid())},
            )
        except Exception as e:  # noqa: BLE001
            raise HarnessError(f"the harness image does not run: {str(e).splitlines()[0][:300]}") from None

    def env(self) -> dict[str, Any]:
        import platform

        return {
            "kernel": platform.release(),
            "self_protected": self.protected,
            "image": self.image,
            "image_build_s": self.image_s,
            **self._env,
        }

    def run(self, scenarios: list[Scenario], prog: Any) -> Iterator[tuple[Scenario, dict[str, Any]]]:
        for sc in scenarios:
            prog.start(sc.name)
            launcher = DockerLauncher(self.engine, self.image)
            try:
                rec = run_scenario(sc, EngineOptions(backend="docker"), launcher)
                rec["kernel_label"] = "docker"
                cross_check(rec, launcher.inspected)
                if rec.get("verdict") == "error":
                    err = launcher.exec_stderr()
                    if err:
                        rec.setdefault("docker", {})["exec_stderr"] = err
            finally:
                launcher.close()
            yield sc, rec

    def close(self) -> None:
        problems = self.engine.close()
        if problems:
            raise HarnessError("docker clean-up incomplete: " + "; ".join(problems))
