"""Where workloads run on the Docker backend: a container's memory cgroup is the sandbox (see the package doc)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from typing import Any

from harness.errors import HarnessError
from harness.machine.engine import EngineOptions, Launcher
from harness.machine.sandbox import PREFIX, Sandbox, detect_layout
from harness.machine.scenario import Scenario, Workload, spec_argv

from . import LABEL
from .daemon import START_TIMEOUT_S, DockerEngine, docker_cli
from .image import HOG_IN_IMAGE, PYTHON_IN_IMAGE


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
            command=[PYTHON_IN_IMAGE, "-I", "-S", self.hog, *spec_argv(self.main_spec)],
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
            PYTHON_IN_IMAGE, "-I", "-S", self.hog, *spec_argv(spec),
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

    def stderr_tail(self, wl: Workload, popen: subprocess.Popen[bytes]) -> str:
        """The last line the dead workload's ``docker exec`` wrote to stderr (its exception), or ""."""
        try:
            with open(os.path.join(self.stderr_dir, f"{self._n}-{wl.name}.err"), "rb") as f:
                lines = [ln.strip() for ln in f.read().decode("utf-8", "replace").splitlines() if ln.strip()]
        except OSError:
            return ""
        return lines[-1][:300] if lines else ""

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
