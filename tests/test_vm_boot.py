"""Real boots of a Debian kernel in QEMU (marked ``vm``; skipped without QEMU or root).

Each test boots its own guest (about 3 s under TCG) and checks afterwards that no QEMU process
and no temp dir were left behind.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.vm

KERNEL = os.environ.get("OOMH_TEST_KERNEL", "6.12")


def _skip_reason() -> str | None:
    if shutil.which("qemu-system-x86_64") is None:
        return "qemu-system-x86_64 not installed (apt-get install qemu-system-x86)"
    if os.geteuid() != 0:
        return "VM tests need root (dpkg -x of kernel packages, device nodes)"
    return None


@pytest.fixture(scope="module")
def kernel():
    reason = _skip_reason()
    if reason:
        print(f"SKIP: {reason}")
        pytest.skip(reason)
    from vm.image import build_initrd
    from vm.kernels import KernelError, get_kernel

    try:
        k = get_kernel(KERNEL)
        build_initrd(k)
    except KernelError as e:
        pytest.skip(f"kernel {KERNEL} unavailable: {e}")
    return k


def _qemu_pids_using(path: str) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes()
        except OSError:
            continue
        if b"qemu-system" in cmd and path.encode() in cmd:
            pids.append(int(d.name))
    return pids


@pytest.fixture
def leak_check():
    """Collects the VMs a test made and asserts each left neither QEMU nor its temp dir behind."""
    vms = []
    yield vms.append
    for vm in vms:
        assert vm.tmpdir and not Path(vm.tmpdir).exists(), f"temp dir {vm.tmpdir} left behind"
        assert not _qemu_pids_using(vm.tmpdir), "qemu process left behind"
        assert vm.proc is not None and vm.proc.poll() is not None


def test_boot_exec_python_and_uname(kernel, leak_check):
    from vm.machine import GuestVM

    with GuestVM(kernel, accel="tcg") as vm:
        leak_check(vm)
        assert vm.boot_seconds is not None and vm.boot_seconds < 60
        assert vm.accel_used == "tcg"
        r = vm.exec(["uname", "-r"], 30)
        assert r.ok and r.stdout.strip() == kernel.release
        r = vm.exec(["python3", "-c", "import json, psutil, sys; print(json.dumps(sys.path[1:2]))"], 60)
        assert r.ok, r.stderr
        assert "/opt/oom-harness" in r.stdout
        ctl = vm.exec(["cat", "/sys/fs/cgroup/cgroup.controllers"], 30).stdout.split()
        assert "memory" in ctl and "cpuset" in ctl
        sub = vm.exec(["cat", "/sys/fs/cgroup/cgroup.subtree_control"], 30).stdout.split()
        assert "memory" in sub and "cpuset" in sub
        # children of the agent are fair OOM victims, the agent itself is protected
        assert vm.exec(["sh", "-c", "cat /proc/self/oom_score_adj"], 30).stdout.strip() == "0"
        assert vm.exec(["sh", "-c", "cat /proc/$PPID/oom_score_adj"], 30).stdout.strip() == "-1000"
        vm.write_file("/tmp/hello", b"\x00\x01data")
        assert vm.read_file("/tmp/hello") == b"\x00\x01data"
        assert vm.ping() > 0
        assert "@@OOMH-INIT@@" in vm.console_text()


def test_command_timeout_is_enforced(kernel, leak_check):
    from vm.machine import GuestVM

    with GuestVM(kernel, accel="tcg") as vm:
        leak_check(vm)
        t0 = time.monotonic()
        r = vm.exec(["sh", "-c", "sleep 100; echo never"], timeout=2)
        assert r.timed_out and "never" not in r.stdout
        assert time.monotonic() - t0 < 8
        assert vm.exec(["true"], 10).ok  # the guest is still usable


def test_hung_agent_is_detected_within_bound(kernel, leak_check):
    from vm.machine import GuestHung, GuestVM

    with GuestVM(kernel, accel="tcg", hang_grace=3) as vm:
        leak_check(vm)
        t0 = time.monotonic()
        with pytest.raises(GuestHung) as ei:
            vm.exec(["sh", "-c", "kill -STOP $PPID"], timeout=2)  # freezes the agent itself
        took = time.monotonic() - t0
        assert 4 < took < 12, took
        assert "@@OOMH-INIT@@" in ei.value.console_tail


def test_panic_is_detected_with_console_tail(kernel, leak_check):
    from vm.machine import GuestPanic, GuestVM

    with GuestVM(kernel, accel="tcg") as vm:
        leak_check(vm)
        with pytest.raises(GuestPanic) as ei:
            vm.exec(["sh", "-c", "echo c > /proc/sysrq-trigger"], timeout=30)
        assert "Kernel panic" in ei.value.console_tail
        assert "sysrq" in ei.value.console_tail.lower()


def test_wait_for_exit_returns_console_of_expected_panic(kernel, leak_check):
    from vm.machine import GuestVM

    with GuestVM(kernel, accel="tcg", cmdline_extra="sysctl.vm.panic_on_oom=1") as vm:
        leak_check(vm)
        assert vm.exec(["cat", "/proc/sys/vm/panic_on_oom"], 30).stdout.strip() == "1"
        vm.exec(["sh", "-c", "(sleep 0.3; echo c > /proc/sysrq-trigger) >/dev/null 2>&1 &"], 10)
        text = vm.wait_for_exit(60)
        assert "Kernel panic" in text
        assert vm.panicked


def test_keyboard_interrupt_cleans_up(kernel, leak_check):
    from vm.machine import GuestVM

    with pytest.raises(KeyboardInterrupt), GuestVM(kernel, accel="tcg") as vm:
        leak_check(vm)
        raise KeyboardInterrupt


def test_numa_and_swap(kernel, leak_check):
    from vm.machine import GuestVM

    with GuestVM(kernel, accel="tcg", mem_mb=512, numa_nodes=2, swap_mb=64) as vm:
        leak_check(vm)
        nodes = vm.exec(["ls", "/sys/devices/system/node"], 30).stdout.split()
        assert "node0" in nodes and "node1" in nodes
        swaps = vm.exec(["cat", "/proc/swaps"], 30).stdout
        assert "/dev/vda" in swaps
