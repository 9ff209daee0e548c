"""``GuestVM``: one QEMU guest running a stock kernel, driven through the in-guest agent.

The recipe (see docs/vm-feasibility): ``-M pc -nodefaults -display none -no-reboot``, PVH boot of the
uncompressed vmlinux, an uncompressed initramfs, ``console=ttyS0 quiet panic=-1``.  ``panic=-1``
plus ``-no-reboot`` turns a guest panic into a QEMU exit, which is how panics are detected
(together with "Kernel panic" on the console).  The agent talks over virtio-serial because the
emulated 16550 UART stalls under TCG; the kernel console goes to a file the host can read.

A VM whose shape booted before resumes from that boot's snapshot instead of booting again
(:mod:`vm.bootstate`; ~0.15 s instead of ~2 s under TCG); ``snapshot=False`` always boots.

Nothing outlives the object: QEMU runs in its own session with a parent-death signal, and
``close()`` (called by ``__exit__``, by a finalizer, and on KeyboardInterrupt) kills it and
removes the private temp dir.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.machine.liveness import hold_liveness_lock
from vm import bootstate
from vm.kernels import Kernel
from vm.paths import cache_root, progress

HEADER = struct.Struct(">Q")
BASE_CMDLINE = "console=ttyS0 quiet panic=-1"
#: RDRAND lets the guest's CRNG initialise at once (0.05 s instead of ~1.3 s after /init on 6.x):
#: without it the first getrandom() of any program (python's hash seed) blocks during boot.
TCG_CPU = "qemu64,+rdrand"
#: Bound on a resumed guest's first answer (it answers in ~0.1 s; a bad snapshot never does).
RESUME_TIMEOUT = 20.0
#: Bound on importing the ``preload`` modules into a freshly booted agent (~1 s under TCG).
PRELOAD_TIMEOUT = 120.0
PANIC_RE = re.compile(r"Kernel panic - not syncing|---\[ end Kernel panic")


class GuestError(RuntimeError):
    """The guest failed; ``console_tail`` holds the last kernel console lines for the report."""

    def __init__(self, msg: str, console_tail: str = "") -> None:
        super().__init__(msg)
        self.console_tail = console_tail

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base}\n--- console tail ---\n{self.console_tail}" if self.console_tail else base


class GuestBootTimeout(GuestError):
    """The agent did not report ready within ``timeout_boot``."""


class GuestPanic(GuestError):
    """The guest kernel panicked (console says so, and/or QEMU exited)."""


class GuestHung(GuestError):
    """The agent stopped answering (no reply within the command's timeout plus a grace period)."""


@dataclass(frozen=True)
class ExecResult:
    """Outcome of one command run by the agent; ``timed_out`` means the agent killed it at its timeout."""

    rc: int
    stdout: str
    stderr: str
    timed_out: bool
    seconds: float

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.timed_out


def qemu_binary() -> str | None:
    """Path of ``qemu-system-x86_64`` or None."""
    return shutil.which("qemu-system-x86_64")


def qemu_version() -> str:
    """``7.2.22`` style version of the QEMU binary (part of the KVM probe's cache key)."""
    q = qemu_binary()
    if not q:
        return "none"
    out = subprocess.run([q, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"version (\S+)", out)
    return m.group(1) if m else "unknown"


def _die_with_parent() -> None:
    """In the QEMU child: get SIGKILL when the host Python dies, so no guest outlives a crash."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


# --- accelerator choice ------------------------------------------------------------------------------


def bare_qemu_cmd(kernel: Kernel, initrd: Path, *, accel: str, mem_mb: int, serial: str) -> list[str]:
    """The plainest boot of *kernel* (one vCPU, no devices but the serial console): the KVM probe's
    and the boot benchmark's baseline."""
    cmd = [qemu_binary() or "qemu-system-x86_64", "-M", "pc", "-accel", accel]
    if accel == "tcg":
        cmd += ["-cpu", TCG_CPU]
    return cmd + ["-m", str(mem_mb), "-smp", "1", "-nodefaults", "-display", "none", "-no-reboot",
                  "-serial", serial, "-kernel", str(kernel.image), "-initrd", str(initrd), "-append", BASE_CMDLINE]


def _probe_kvm(kernel: Kernel, bound: float = 8.0) -> tuple[bool, str]:
    """Boot ``kernel`` with a busybox initramfs under KVM; True if /init's marker shows in ``bound`` s."""
    from vm.image import minimal_initrd

    marker = "@@KVMPROBE@@"
    initrd = minimal_initrd(marker)
    with tempfile.TemporaryDirectory(prefix="oomh-kvmprobe-") as td:
        con = Path(td) / "console.log"
        cmd = bare_qemu_cmd(kernel, initrd, accel="kvm", mem_mb=256, serial=f"file:{con}")
        p = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True, preexec_fn=_die_with_parent
        )
        end = time.monotonic() + bound
        ok = False
        try:
            while time.monotonic() < end:
                if con.exists() and marker in con.read_text(errors="replace"):
                    ok = True
                    break
                if p.poll() is not None:
                    break
                time.sleep(0.1)
        finally:
            p.kill()
            _, err = p.communicate()
        last = [ln for ln in err.decode(errors="replace").splitlines() if "warning" not in ln][-1:]
        why = "ok" if ok else f"no /init marker within {bound:.0f}s" + (f": {last[0]}" if last else "")
        return ok, why


_told_tcg = False


def choose_accel(kernel: Kernel, accel: str = "auto") -> str:
    """``"tcg"`` or ``"kvm"``.  "auto" probes KVM once per host kernel + QEMU version (cached)."""
    if accel in ("tcg", "kvm"):
        return accel
    if accel != "auto":
        raise ValueError(f"accel must be auto, tcg or kvm, not {accel!r}")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    key = f"{os.uname().release}|qemu-{qemu_version()}"
    store = cache_root() / "accel-probe.json"
    known: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        known = json.loads(store.read_text())
    if key not in known:
        progress("probing KVM once for this host (bounded) ...")
        ok, why = _probe_kvm(kernel)
        known[key] = {"accel": "kvm" if ok else "tcg", "why": why, "when": time.time()}
        tmp = store.with_suffix(".tmp")
        tmp.write_text(json.dumps(known, indent=1))
        os.replace(tmp, store)
    entry = known[key]
    global _told_tcg
    if entry["accel"] == "tcg" and not _told_tcg:
        progress(f"KVM not usable on this host ({entry['why'][:120]}); using TCG")
        _told_tcg = True
    return str(entry["accel"])


# --- the VM ------------------------------------------------------------------------------------------


def _ram_root(mem_mb: int) -> str:
    """Where a machine that will be saved keeps its RAM files: tmpfs (memory, as anonymous RAM is),
    not a disk-backed /tmp that would write guest RAM back to disk -- unless /dev/shm is too small
    for the whole guest (a container's is 64 MiB by default: QEMU would die of SIGBUS mid-run)."""
    with contextlib.suppress(OSError):
        st = os.statvfs("/dev/shm")
        if os.access("/dev/shm", os.W_OK) and st.f_bavail * st.f_frsize >= (mem_mb + 64) << 20:
            return "/dev/shm"
    return tempfile.gettempdir()


def _cleanup(proc: subprocess.Popen | None, tmpdir: str | None, ram_dir: str | None = None) -> None:
    """Kill QEMU and remove its temp dir and RAM files (also run by the finalizer if ``close`` was never called)."""
    if proc is not None and proc.poll() is None:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            proc.kill()
        with contextlib.suppress(Exception):
            proc.wait(timeout=10)
    if tmpdir:
        shutil.rmtree(tmpdir, ignore_errors=True)
    if ram_dir:
        shutil.rmtree(ram_dir, ignore_errors=True)


class GuestVM:
    """A running guest; use as a context manager.

    ``exec`` runs a command in the guest (PYTHONPATH=/opt/oom-harness, where the project's
    ``harness/``, ``workloads/`` and ``vm/guest/`` are copied).  Errors are raised as
    :class:`GuestBootTimeout`, :class:`GuestPanic` or :class:`GuestHung`, carrying the console tail.
    """

    def __init__(
        self,
        kernel: Kernel,
        *,
        mem_mb: int = 512,
        smp: int = 1,
        numa_nodes: int = 1,
        swap_mb: int = 0,
        cmdline_extra: str = "",
        timeout_boot: float = 60.0,
        accel: str = "auto",
        sources: list[Path] | None = None,
        initrd: Path | None = None,
        hang_grace: float = 10.0,
        cpu: str | None = None,
        snapshot: bool | None = None,
        preload: tuple[str, ...] = (),
    ) -> None:
        """See the class docstring; ``cpu`` overrides the ``-cpu`` model (default :data:`TCG_CPU` under TCG);
        ``snapshot`` resumes from (or, on a first boot, saves) a boot snapshot (:mod:`vm.bootstate`):
        None means yes unless ``OOM_HARNESS_VM_SNAPSHOT=0``; ``preload``: Python modules the agent imports
        right after booting (so, with snapshots, once per shape) for :meth:`run_module` to fork from."""
        if numa_nodes not in (1, 2):
            raise ValueError("numa_nodes must be 1 or 2")
        if smp < 1 or mem_mb < 64:
            raise ValueError("need smp >= 1 and mem_mb >= 64")
        self.kernel = kernel
        self.mem_mb = mem_mb
        self.smp = smp
        self.numa_nodes = numa_nodes
        self.swap_mb = swap_mb
        self.cmdline_extra = cmdline_extra
        self.timeout_boot = timeout_boot
        self.accel = accel
        self.sources = sources
        self.initrd = initrd
        self.hang_grace = hang_grace
        self.cpu = cpu
        self.snapshot = bootstate.enabled() if snapshot is None else snapshot
        self.preload = tuple(preload)
        self.accel_used: str | None = None
        #: Seconds from starting QEMU to the agent answering (a cold boot, or a resume).
        self.boot_seconds: float | None = None
        #: The snapshot this VM resumed from, if any; seconds spent saving one (first boot of a shape).
        self.resumed_from: str | None = None
        self.snapshot_save_seconds: float | None = None
        self.ready_info: dict[str, Any] = {}
        self.tmpdir: str | None = None
        self._ram_dir: str | None = None  # RAM files of a machine that will be saved (see qemu_args)
        self.proc: subprocess.Popen | None = None
        self._sock: socket.socket | None = None
        self._buf = bytearray()
        self._dead: GuestError | None = None
        self._finalizer: weakref.finalize | None = None

    # -- lifecycle ----------------------------------------------------------------------------------

    def __enter__(self) -> GuestVM:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ram_backends(self) -> list[tuple[str, int]]:
        """``(memory backend id, MiB)`` of guest RAM: one block, or one per NUMA node."""
        if self.numa_nodes == 2:
            m0 = self.mem_mb // 2
            return [("m0", m0), ("m1", self.mem_mb - m0)]
        return [("ram0", self.mem_mb)]

    def qemu_args(
        self, initrd: Path, console: Path, agent_sock: Path, swap_img: Path | None, console_append: bool = False,
        ram_dir: Path | None = None, ram_share: bool = True,
    ) -> list[str]:
        """The QEMU command line for this machine (exposed for the benchmark and for debugging).

        ``ram_dir``: guest RAM in files there, one per :meth:`ram_backends` (boot snapshots:
        ``share=on`` while a machine that will be saved runs, ``share=off``, i.e. a private
        copy-on-write mapping, when one resumes from the saved files); None: anonymous memory."""
        accel = self.accel_used or "tcg"
        accel_opt = "tcg,thread=single" if accel == "tcg" and self.smp > 1 else accel
        cmdline = BASE_CMDLINE
        if swap_img is not None:
            cmdline += " oomh.swap=1"
        if self.cmdline_extra:
            cmdline += " " + self.cmdline_extra
        args = [
            qemu_binary() or "qemu-system-x86_64",
            "-M",
            "pc",
            "-accel",
            accel_opt,
            "-m",
            str(self.mem_mb),
            "-smp",
            str(self.smp),
            "-nodefaults",
            "-display",
            "none",
            "-no-reboot",
            "-chardev",
            f"file,id=con,path={console}" + (",append=on" if console_append else ""),
            "-serial",
            "chardev:con",
            "-kernel",
            str(self.kernel.image),
            "-initrd",
            str(initrd),
            "-append",
            cmdline,
            "-chardev",
            f"socket,id=ag,path={agent_sock}",
            "-device",
            "virtio-serial-pci",
            "-device",
            "virtserialport,chardev=ag,name=agent",
        ]
        cpu = self.cpu or (TCG_CPU if accel == "tcg" else None)
        if cpu:
            args += ["-cpu", cpu]
        if ram_dir is not None:
            for bid, mb in self.ram_backends():
                args += ["-object", f"memory-backend-file,id={bid},size={mb}M,mem-path={ram_dir / bid},"
                                    f"share={'on' if ram_share else 'off'}"]
            if self.numa_nodes == 1:
                args += ["-machine", "memory-backend=ram0"]
        elif self.numa_nodes == 2:
            for bid, mb in self.ram_backends():
                args += ["-object", f"memory-backend-ram,id={bid},size={mb}M"]
        if self.numa_nodes == 2:
            if self.smp == 1:
                args += ["-numa", "node,nodeid=0,cpus=0,memdev=m0", "-numa", "node,nodeid=1,memdev=m1"]
            else:
                half = self.smp // 2
                c0 = f"0-{half - 1}" if half > 1 else "0"
                c1 = f"{half}-{self.smp - 1}" if self.smp - half > 1 else str(half)
                args += ["-numa", f"node,nodeid=0,cpus={c0},memdev=m0", "-numa", f"node,nodeid=1,cpus={c1},memdev=m1"]
        if swap_img is not None:
            args += [
                "-drive",
                f"if=none,id=swap,file={swap_img},format=raw,cache=unsafe",
                "-device",
                "virtio-blk-pci,drive=swap",
            ]
        return args

    def start(self) -> None:
        """Start the guest and wait (bounded by ``timeout_boot``) until its agent answers.

        With snapshots on: resume from the boot snapshot of this exact machine if there is one
        (falling back to a cold boot, and deleting it, if it does not resume), else boot cold and
        save one for the next VM of the same shape.
        """
        if qemu_binary() is None:
            raise GuestError("qemu-system-x86_64 not found (apt-get install qemu-system-x86)")
        if self.initrd is None:
            from vm.image import build_initrd

            self.initrd = build_initrd(self.kernel, self.sources)
        self.accel_used = choose_accel(self.kernel, self.accel)
        key = self.snapshot_key() if self.snapshot else None
        state = bootstate.lookup(key) if key else None
        if state is not None:
            try:
                self._launch(state)
                state.touch()
                return
            except GuestError as e:
                progress(f"boot snapshot {state.key[:12]} did not resume ({str(e).splitlines()[0]}); booting cold")
                state.discard()
                self._reset()
        self._launch(None)
        if self.preload:
            self.request({"op": "preload", "modules": list(self.preload)}, PRELOAD_TIMEOUT)
        if key:
            self._save_snapshot(key)

    def snapshot_key(self) -> str:
        """Key of the state this machine's boot reaches (see :func:`vm.bootstate.state_key`)."""
        assert self.initrd is not None and self.accel_used is not None, "the key of a VM being started"
        swap = Path("@swap@") if self.swap_mb > 0 else None
        args = self.qemu_args(self.initrd, Path("@console@"), Path("@agent@"), swap)
        args += [f"@swap_mb={self.swap_mb}", f"@preload={','.join(self.preload)}",
                 f"@ram={','.join(f'{b}:{mb}' for b, mb in self.ram_backends())}"]
        if self.kernel.build_id:  # a rebuilt kernel never resumes the snapshot of an earlier build
            args.append(f"@build_id={self.kernel.build_id}")
        return bootstate.state_key(args, [Path(self.kernel.image), self.initrd], qemu_version())

    def _reset(self) -> None:
        """Forget a failed start (QEMU killed, temp dir removed) so that another can follow."""
        self.close()
        self.proc, self.tmpdir, self._dead, self.resumed_from, self._ram_dir = None, None, None, None, None
        self._buf.clear()

    def _launch(self, resume: bootstate.BootState | None) -> None:
        """Start QEMU (booting, or resuming ``resume``) and wait for the agent."""
        assert self.initrd is not None
        # the temp dir is named by our pid: hold the lock that tells another harness's sweep we are alive
        # (a script or benchmark using GuestVM directly would otherwise lose it mid-run)
        hold_liveness_lock()
        self.tmpdir = tempfile.mkdtemp(prefix=f"oomh-vm-{os.getpid()}-")
        td = Path(self.tmpdir)
        self._finalizer = weakref.finalize(self, _cleanup, None, self.tmpdir)
        swap_img = None
        if self.swap_mb > 0:
            swap_img = td / "swap.img"
            if resume is not None and resume.swap_file is not None:
                bootstate.copy_sparse(resume.swap_file, swap_img)  # the swap header the guest wrote
            else:
                with open(swap_img, "wb") as f:
                    f.truncate(self.swap_mb << 20)  # sparse: costs no disk until the guest swaps
        agent_sock = td / "agent.sock"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(agent_sock))
        listener.listen(1)
        console = td / "console.log"
        ram_dir: Path | None = None
        monitor: socket.socket | None = None
        if resume is not None:
            ram_dir = resume.path  # mapped copy-on-write: the saved files are never written
        elif self.snapshot:  # this boot will be saved: its RAM must be in files to copy
            self._ram_dir = tempfile.mkdtemp(prefix=f"oomh-vm-{os.getpid()}-", dir=_ram_root(self.mem_mb))
            ram_dir = Path(self._ram_dir)
            self._finalizer.detach()
            self._finalizer = weakref.finalize(self, _cleanup, None, self.tmpdir, self._ram_dir)
        args = self.qemu_args(self.initrd, console, agent_sock, swap_img, console_append=resume is not None,
                              ram_dir=ram_dir, ram_share=resume is None)
        stream_fd: int | None = None
        if resume is not None:
            # The console reads as one boot: the snapshot's boot messages, a marker, then what follows.
            console.write_text(resume.console() + f"\n[oom-harness] resumed from boot snapshot {resume.key}\n")
            stream_fd = resume.open_stream()
            # the stream is started from the monitor, after the capability the save used (no -global for it in 7.2)
            monitor = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            monitor.bind(str(td / "mon.sock"))
            monitor.listen(1)
            args += ["-incoming", "defer", "-chardev", f"socket,id=mon,path={td / 'mon.sock'}",
                     "-mon", "chardev=mon,mode=control"]
        elif self.snapshot:
            args += ["-qmp", f"unix:{td / 'qmp.sock'},server=on,wait=off"]
        (td / "qemu.cmd").write_text(" ".join(args) + "\n")
        t0 = time.monotonic()
        try:
            with open(td / "qemu.log", "wb") as log:
                self.proc = subprocess.Popen(
                    args,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=_die_with_parent,
                    pass_fds=() if stream_fd is None else (stream_fd,),
                )
        except BaseException:
            if monitor is not None:
                monitor.close()
            raise
        finally:
            if stream_fd is not None:
                os.close(stream_fd)  # QEMU has its own copy
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _cleanup, self.proc, self.tmpdir, self._ram_dir)
        deadline = t0 + self.timeout_boot
        if monitor is not None:
            assert stream_fd is not None
            try:
                self._start_incoming(monitor, stream_fd, min(t0 + RESUME_TIMEOUT, deadline))
            finally:
                monitor.close()
        try:
            listener.settimeout(0.05)
            while self._sock is None:
                try:
                    self._sock, _ = listener.accept()
                except TimeoutError:
                    self._check_alive("before connecting the agent channel")
                    if time.monotonic() > deadline:
                        msg = f"QEMU did not connect within {self.timeout_boot:.0f}s"
                        raise self._fail(GuestBootTimeout, msg) from None
        finally:
            listener.close()
        if resume is not None:
            # The agent sent its ready frame on the first boot; a ping proves this one runs.
            uptime = self.ping(min(self.timeout_boot, RESUME_TIMEOUT))
            self.ready_info = {**resume.ready_info(), "uptime": uptime, "resumed_from": resume.key}
            self.resumed_from = resume.key
        else:
            frame = self._recv(deadline, boot=True)
            if frame.get("op") != "ready":
                raise self._fail(GuestError, f"unexpected first frame from the agent: {frame!r}")
            self.ready_info = frame
        self.boot_seconds = time.monotonic() - t0

    def _start_incoming(self, listener: socket.socket, fd: int, deadline: float) -> None:
        """Start loading the snapshot's stream (QEMU's inherited ``fd``) through the monitor QEMU
        connects to ``listener``: three QMP commands, no QMP library (its import costs more than the
        exchange)."""
        listener.settimeout(0.05)
        conn: socket.socket | None = None
        while conn is None:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                self._check_alive("before connecting the monitor")
                if time.monotonic() > deadline:
                    raise self._fail(GuestError, "QEMU did not connect its monitor") from None
        with conn:
            conn.settimeout(max(deadline - time.monotonic(), 0.1))
            f = conn.makefile("rwb")
            try:
                f.readline()  # the greeting
                for cmd in ({"execute": "qmp_capabilities"},
                            {"execute": "migrate-set-capabilities", "arguments": {"capabilities": [
                                {"capability": "x-ignore-shared", "state": True}]}},
                            {"execute": "migrate-incoming", "arguments": {"uri": f"fd:{fd}"}}):
                    f.write(json.dumps(cmd).encode() + b"\n")
                    f.flush()
                    while True:
                        line = f.readline()
                        if not line:
                            raise OSError("monitor closed")
                        reply = json.loads(line)
                        if "return" in reply or "error" in reply:
                            break  # events ({"event": ...}) are skipped
                    if "error" in reply:
                        raise self._fail(GuestError, f"QEMU refused {cmd['execute']}: {reply['error']}")
            except (OSError, ValueError) as e:
                self._check_alive("while starting the snapshot's stream")
                raise self._fail(GuestError, f"monitor: {e}") from None
            finally:
                f.close()

    def _save_snapshot(self, key: str) -> None:
        """Save this freshly booted machine for later VMs of the same shape (failure only costs speed)."""
        assert self.tmpdir is not None
        td = Path(self.tmpdir)
        t0 = time.monotonic()
        meta = {"kernel": self.kernel.release, "mem_mb": self.mem_mb, "smp": self.smp, "numa_nodes": self.numa_nodes,
                "swap_mb": self.swap_mb, "cmdline_extra": self.cmdline_extra, "accel": self.accel_used,
                "boot_seconds": self.boot_seconds}
        try:
            assert self._ram_dir is not None
            bootstate.save(td / "qmp.sock", key, console=self.console_text(), ready=self.ready_info,
                           swap_img=td / "swap.img" if self.swap_mb > 0 else None, meta=meta,
                           ram_files=[Path(self._ram_dir) / b for b, _mb in self.ram_backends()])
        except bootstate.SnapshotError as e:
            progress(f"could not save a boot snapshot ({e}); VMs of this shape will boot cold")
            return
        self.ping(RESUME_TIMEOUT)  # the machine must go on after the save
        self.snapshot_save_seconds = time.monotonic() - t0
        progress(f"saved boot snapshot {key[:12]} in {self.snapshot_save_seconds:.2f}s "
                 f"(boot {self.boot_seconds:.2f}s); later VMs of this shape resume from it")

    def close(self) -> None:
        """Kill QEMU and delete the temp dir.  Safe to call more than once."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
        if self._finalizer is not None:
            self._finalizer()  # runs _cleanup once
            self._finalizer = None
        elif self.tmpdir:
            _cleanup(self.proc, self.tmpdir, self._ram_dir)

    # -- console ------------------------------------------------------------------------------------

    def console_text(self) -> str:
        """Everything the guest kernel (and /init) printed so far."""
        if not self.tmpdir:
            return ""
        p = Path(self.tmpdir) / "console.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def console_tail(self, n: int = 40) -> str:
        """The last ``n`` console lines."""
        return "\n".join(self.console_text().splitlines()[-n:])

    def qemu_log(self) -> str:
        """QEMU's own stdout/stderr (errors such as a bad option end up here)."""
        p = Path(self.tmpdir or "/nonexistent") / "qemu.log"
        return p.read_text(errors="replace") if p.exists() else ""

    # -- failure classification --------------------------------------------------------------------

    def _fail(self, cls: type[GuestError], msg: str) -> GuestError:
        """Build the error to raise; a panic on the console wins over a timeout or hang."""
        text = self.console_text()
        if cls is not GuestPanic and PANIC_RE.search(text):
            cls, msg = GuestPanic, f"guest kernel panicked ({msg})"
        lines = text.splitlines()
        start = len(lines) - 40
        if cls is GuestPanic:  # the panic's own line, even when its backtrace is longer than the tail
            start = min(start, max((i for i, ln in enumerate(lines) if PANIC_RE.search(ln)), default=start))
        err = cls(msg, "\n".join(lines[max(start, 0):]))
        self._dead = err
        return err

    def _check_alive(self, when: str) -> None:
        if self.proc is None:
            raise GuestError("VM not started")
        rc = self.proc.poll()
        if rc is None:
            return
        if PANIC_RE.search(self.console_text()):
            raise self._fail(GuestPanic, f"guest kernel panicked {when} (QEMU exited rc={rc})")
        extra = self.qemu_log().strip().splitlines()[-1:] or [""]
        raise self._fail(GuestError, f"QEMU exited rc={rc} {when} {extra[0]}".strip())

    # -- framing ------------------------------------------------------------------------------------

    def _recv(self, deadline: float, boot: bool = False) -> dict[str, Any]:
        """Read one frame before ``deadline`` (monotonic), watching QEMU while waiting."""
        assert self._sock is not None
        while True:
            if len(self._buf) >= HEADER.size:
                (n,) = HEADER.unpack_from(self._buf)
                if len(self._buf) >= HEADER.size + n:
                    data = bytes(self._buf[HEADER.size : HEADER.size + n])
                    del self._buf[: HEADER.size + n]
                    return json.loads(data)
            left = deadline - time.monotonic()
            if left <= 0:
                if boot:
                    raise self._fail(GuestBootTimeout, f"agent not ready within {self.timeout_boot:.0f}s")
                raise self._fail(GuestHung, "agent did not answer in time (guest hung?)")
            r, _, _ = select.select([self._sock], [], [], min(left, 0.2))
            if r:
                try:
                    chunk = self._sock.recv(1 << 20)
                except OSError:  # reset: QEMU died under us (e.g. it refused a snapshot and exited)
                    chunk = b""
                if not chunk:
                    time.sleep(0.05)  # QEMU closes the socket when it exits; let it finish exiting
                    self._check_alive("while waiting for the agent")
                    raise self._fail(GuestError, "agent channel closed")
                self._buf += chunk
            else:
                self._check_alive("while waiting for the agent" if not boot else "during boot")

    def request(self, req: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send one request and wait up to ``timeout`` seconds for its reply."""
        if self._dead is not None:
            raise type(self._dead)(f"guest already failed: {self._dead.args[0]}", self._dead.console_tail)
        if self._sock is None:
            raise GuestError("VM not started")
        data = json.dumps(req).encode()
        try:
            self._sock.sendall(HEADER.pack(len(data)) + data)
        except OSError:
            self._check_alive("while sending a request")
            raise self._fail(GuestError, "agent channel broken") from None
        reply = self._recv(time.monotonic() + timeout)
        if "error" in reply:
            raise GuestError(f"agent: {reply['error']}")
        return reply

    # -- agent operations ---------------------------------------------------------------------------

    def exec(
        self,
        argv: list[str],
        timeout: float = 60.0,
        *,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        stdin: str | None = None,
        oom_score_adj: int = 0,
        module: str | None = None,
    ) -> ExecResult:
        """Run ``argv`` in the guest.  The agent kills it after ``timeout`` s (``timed_out=True``);
        no answer within ``timeout + hang_grace`` raises :class:`GuestHung`, a crash :class:`GuestPanic`.
        With ``module``, ``argv`` are its arguments: see :meth:`run_module`."""
        req: dict[str, Any] = {"op": "exec", "argv": list(argv), "timeout": timeout, "oom_score_adj": oom_score_adj}
        if module is not None:
            req["module"] = module
        if env:
            req["env"] = env
        if cwd:
            req["cwd"] = cwd
        if stdin is not None:
            req["stdin"] = stdin
        r = self.request(req, timeout + self.hang_grace)
        return ExecResult(int(r["rc"]), r["stdout"], r["stderr"], bool(r["timed_out"]), float(r["seconds"]))

    def run_module(self, module: str, args: list[str], timeout: float = 60.0, **kw: Any) -> ExecResult:
        """Like ``exec(["python3", "-m", module, *args])``, but forked from the agent's interpreter, in
        which the ``preload`` modules are already imported: no interpreter start and, for a preloaded
        module, no imports (~1 s per call under TCG otherwise; a module not preloaded is imported in
        the child).  Same session, timeout and OOM-score rules; ``kw`` as for :meth:`exec`."""
        return self.exec(args, timeout, module=module, **kw)

    def python(self, code: str, timeout: float = 60.0, **kw: Any) -> ExecResult:
        """Run ``python3 -c code`` in the guest (the project is importable)."""
        return self.exec(["python3", "-c", code], timeout, **kw)

    def ping(self, timeout: float = 10.0) -> float:
        """Round-trip check; returns the guest uptime."""
        return float(self.request({"op": "ping"}, timeout)["uptime"])

    def write_file(self, path: str, data: bytes, mode: int | None = None, timeout: float = 30.0) -> None:
        """Create or replace a file in the guest."""
        req: dict[str, Any] = {"op": "write_file", "path": path, "data_b64": base64.b64encode(data).decode()}
        if mode is not None:
            req["mode"] = mode
        self.request(req, timeout)

    def read_file(self, path: str, timeout: float = 30.0) -> bytes:
        """Read a file from the guest."""
        return base64.b64decode(self.request({"op": "read_file", "path": path}, timeout)["data_b64"])

    def wait_for_exit(self, timeout: float) -> str:
        """Wait for QEMU to exit (e.g. after an expected ``panic_on_oom``); returns the console text.

        Raises :class:`GuestHung` if the guest is still running after ``timeout`` s.
        """
        if self.proc is None:
            raise GuestError("VM not started")
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise self._fail(GuestHung, f"guest still running after {timeout:.0f}s") from None
        self._dead = GuestError("guest has exited", "")
        return self.console_text()

    def poweroff(self, timeout: float = 15.0) -> None:
        """Ask the guest to power off and wait for QEMU to exit."""
        with contextlib.suppress(GuestError):
            self.request({"op": "poweroff"}, timeout)
        self.wait_for_exit(timeout)

    @property
    def panicked(self) -> bool:
        """True if the console shows a kernel panic."""
        return bool(PANIC_RE.search(self.console_text()))


def shell(kernel: Kernel, argv: list[str], timeout: float = 120.0, **vm_kw: Any) -> int:
    """Boot, run one command, print its output, shut down (used by ``python -m vm shell``)."""
    with GuestVM(kernel, **vm_kw) as vm:
        how = f"resumed from boot snapshot {vm.resumed_from[:12]}" if vm.resumed_from else "booted"
        progress(
            f"agent ready after {vm.boot_seconds:.2f}s ({how}, {vm.accel_used}, guest uptime "
            f"{vm.ready_info.get('uptime')}s, {vm.ready_info.get('release')})"
        )
        r = vm.exec(argv, timeout)
        sys.stdout.write(r.stdout)
        sys.stderr.write(r.stderr)
        if r.timed_out:
            progress(f"command timed out after {timeout}s")
        return r.rc if not r.timed_out else 124
