"""Real boots of a Debian kernel in QEMU (marked ``vm``; skipped without QEMU or root).

Each test starts its own guest (a cold boot takes 2-3 s under TCG; later guests of the same shape
resume from its boot snapshot in ~0.2 s) and checks afterwards that no QEMU process and no temp dir
were left behind.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from conftest import unavailable

pytestmark = pytest.mark.vm

KERNEL = os.environ.get("OOMH_TEST_KERNEL", "6.12")


def _skip_reason() -> str | None:
    """What the machine lacks for VM tests (QEMU, root), or None.  Everything else is the harness's."""
    if shutil.which("qemu-system-x86_64") is None:
        return "qemu-system-x86_64 not installed (apt-get install qemu-system-x86; `make setup` does)"
    if os.geteuid() != 0:
        return "VM tests need root (dpkg -x of kernel packages, device nodes)"
    return None


@pytest.fixture(scope="module")
def kernel():
    reason = _skip_reason()
    if reason:
        unavailable("vm", reason)
    from vm.image import build_initrd
    from vm.kernels import get_kernel

    # a failed download, dpkg -x or initrd build is the harness's failure: it fails the test, with its message
    k = get_kernel(KERNEL)
    build_initrd(k)
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
        assert time.monotonic() - t0 < 60  # a hang guard only: the figure is bench/bench_vm_boot.py's
        assert vm.exec(["true"], 10).ok  # the guest is still usable


def test_hung_agent_is_detected_within_bound(kernel, leak_check):
    from vm.machine import GuestHung, GuestVM

    with GuestVM(kernel, accel="tcg", hang_grace=3) as vm:
        leak_check(vm)
        t0 = time.monotonic()
        with pytest.raises(GuestHung) as ei:
            vm.exec(["sh", "-c", "kill -STOP $PPID"], timeout=2)  # freezes the agent itself
        took = time.monotonic() - t0
        # hang_grace=3 s: never before the command's own 2 s bound; the upper bound only catches a hang
        assert 2 <= took < 120, took
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


# --- boot snapshots (vm.bootstate) ---------------------------------------------------------------------


@pytest.fixture
def private_snapshots(tmp_path, monkeypatch):
    """Snapshots of this test only (the user's cache is neither used nor touched)."""
    from vm import bootstate

    d = tmp_path / "bootstate"
    monkeypatch.setattr(bootstate, "snapshots_dir", lambda: d)
    return d


def test_first_boot_saves_a_snapshot_and_the_next_vm_resumes_it(kernel, leak_check, private_snapshots):
    from vm import bootstate
    from vm.machine import GuestVM

    shape = {"accel": "tcg", "mem_mb": 384, "numa_nodes": 2, "swap_mb": 32, "snapshot": True}
    with GuestVM(kernel, **shape) as cold:
        leak_check(cold)
        assert cold.resumed_from is None
        key = cold.snapshot_key()
        state = bootstate.lookup(key)
        assert state is not None and state.swap_file is not None, "first boot saved no snapshot"
        assert cold.exec(["uname", "-r"], 30).stdout.strip() == kernel.release  # goes on after the save
    with GuestVM(kernel, **shape) as warm:
        leak_check(warm)
        assert warm.resumed_from == key
        assert warm.ready_info["release"] == kernel.release
        # the state of "agent ready" on the first boot: modules, swap, NUMA, controllers, protections
        assert "/dev/vda" in warm.exec(["cat", "/proc/swaps"], 30).stdout
        assert "node1" in warm.exec(["ls", "/sys/devices/system/node"], 30).stdout.split()
        assert "memory" in warm.exec(["cat", "/sys/fs/cgroup/cgroup.subtree_control"], 30).stdout.split()
        assert warm.exec(["sh", "-c", "cat /proc/$PPID/oom_score_adj"], 30).stdout.strip() == "-1000"
        r = warm.exec(["python3", "-c", "import psutil; print(psutil.swap_memory().total >> 20)"], 60)
        assert r.ok and int(r.stdout) > 0, r.stderr
        # the console reads as one boot: the first boot's messages, a marker, then the new output
        console = warm.console_text()
        assert "@@OOMH-INIT@@" in console and f"resumed from boot snapshot {key}" in console
        warm.exec(["sh", "-c", "echo after-resume > /dev/kmsg"], 10)
        assert "after-resume" in warm.console_text() or "after-resume" in warm.exec(["dmesg"], 30).stdout


def test_snapshot_that_does_not_resume_is_replaced_by_a_cold_boot(kernel, leak_check, private_snapshots, capfd):
    from vm import bootstate
    from vm.machine import GuestVM

    with GuestVM(kernel, accel="tcg", snapshot=True) as first:
        leak_check(first)
        key = first.snapshot_key()
    state = bootstate.lookup(key)
    assert state is not None
    with open(state.state_file, "r+b") as f:  # a damaged stream: QEMU refuses it and exits
        f.seek(0)
        f.write(b"\0" * 64)
    with GuestVM(kernel, accel="tcg", snapshot=True) as vm:
        leak_check(vm)
        assert vm.resumed_from is None
        assert vm.exec(["true"], 10).ok
    assert "did not resume" in capfd.readouterr().err
    again = bootstate.lookup(key)
    assert again is not None, "the cold boot saved a good snapshot again"
    with GuestVM(kernel, accel="tcg", snapshot=True) as vm:
        leak_check(vm)
        assert vm.resumed_from == key


def test_cold_boot_when_snapshots_are_off(kernel, leak_check, private_snapshots, monkeypatch):
    from vm.machine import GuestVM

    monkeypatch.setenv("OOM_HARNESS_VM_SNAPSHOT", "0")
    for _ in range(2):
        with GuestVM(kernel, accel="tcg") as vm:
            leak_check(vm)
            assert vm.resumed_from is None and not vm.snapshot
            assert "-qmp" not in (Path(vm.tmpdir) / "qemu.cmd").read_text()
    assert not private_snapshots.exists() or not any(private_snapshots.iterdir())


def test_run_module_forks_from_the_warm_agent_like_python_dash_m(kernel, leak_check):
    """``run_module`` behaves as ``python3 -m`` would (argv, env, exit code, stderr, OOM score, timeout),
    without starting an interpreter."""
    from vm.machine import GuestVM

    with GuestVM(kernel, accel="tcg", preload=("harness.machine.guest",)) as vm:
        leak_check(vm)
        main = (
            "import os, sys\n"
            "print(sys.argv[1:], os.environ.get('FOO'), open('/proc/self/oom_score_adj').read().strip(),\n"
            "      'harness.machine.engine' in sys.modules, os.getppid() != 1)\n"
            "if sys.argv[1:] == ['boom']:\n"
            "    raise RuntimeError('boom')\n"
            "if sys.argv[1:] == ['pipe']:\n"  # a dead reader: BrokenPipeError, as in python3 -m (no SIGPIPE)
            "    import subprocess; p = subprocess.Popen(['true'], stdin=subprocess.PIPE); p.wait()\n"
            "    try:\n"
            "        p.stdin.write(b'x' * 100000); p.stdin.flush()\n"
            "    except BrokenPipeError:\n"
            "        sys.exit(4)\n"
            "if sys.argv[1:] == ['sleep']:\n"
            "    import time; time.sleep(100)\n"
            "sys.exit(3)\n"
        )
        vm.write_file("/opt/oom-harness/oomh_probe/__init__.py", b"")
        vm.write_file("/opt/oom-harness/oomh_probe/__main__.py", main.encode())
        r = vm.run_module("oomh_probe", ["a", "b"], 30, env={"FOO": "bar"}, oom_score_adj=7)
        assert r.rc == 3 and r.stdout.split() == ["['a',", "'b']", "bar", "7", "True", "True"], r
        r = vm.run_module("oomh_probe", ["boom"], 30)
        assert r.rc == 1 and "RuntimeError: boom" in r.stderr
        r = vm.run_module("oomh_probe", ["pipe"], 30)
        assert r.rc == 4, r
        r = vm.run_module("oomh_probe", ["sleep"], 2)
        assert r.timed_out
        r = vm.run_module("no_such_module_here", [], 30)
        assert r.rc == 1 and "No module named" in r.stderr
        assert vm.exec(["sh", "-c", "cat /proc/$PPID/oom_score_adj"], 30).stdout.strip() == "-1000"  # agent intact
