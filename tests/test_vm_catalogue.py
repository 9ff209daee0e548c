"""The VM catalogue for real in QEMU on the default kernel (6.12; OOMH_TEST_KERNEL overrides),
plus guest-side reliability: the kernel-log gap detector and the protected init/agent.

`make test-in-vm` runs the same catalogue through the CLI; this is its pytest form.
"""

from __future__ import annotations

import json
import os
import sys

import pytest
from conftest import record_kills, unavailable
from test_vm_boot import KERNEL, _skip_reason

pytestmark = [pytest.mark.vm, pytest.mark.slow]


@pytest.fixture(scope="module")
def catalogue_run():
    reason = _skip_reason()
    if reason:
        unavailable("vm", reason)
    from harness.backends.vm import VmRunner
    from harness.machine.scenario import catalogue

    class Quiet:
        def start(self, name: str) -> None:
            print(f"  vm: {name}", file=sys.stderr)

    runner = VmRunner(KERNEL, accel="auto")
    scs = catalogue("vm")
    recs = {sc.name: rec.to_dict() for sc, rec in runner.run(scs, Quiet())}
    return scs, recs


def _names():
    from harness.machine.scenario import catalogue

    return [s.name for s in catalogue("vm")]


@pytest.mark.parametrize("name", _names())
def test_vm_scenario(catalogue_run, name):
    scs, recs = catalogue_run
    rec = recs[name]
    # The harness shapes this guest (NUMA nodes, swap, cgroup v2, root with every capability): a
    # scenario it skips there is a VM-runner bug, never a missing environment -- except what the
    # guest KERNEL's build lacks (Debian's cloud kernel has no CONFIG_ZSWAP), which no shape can add.
    if rec.get("verdict") == "skipped" and "is built without" in (rec.get("reason") or ""):
        pytest.skip(f"{name}: {rec['reason']}")
    assert rec.get("verdict") != "skipped", f"skipped in a guest the harness shaped: {rec.get('reason')}"
    assert rec["as_expected"] is True, f"{rec['verdict']}: {rec['reason']}\n{rec.get('console_tail', '')}"
    sc = next(s for s in scs if s.name == name)
    if sc.expect_outcome == "kill":
        assert rec["verdict"] == "match"
        assert rec["events"] and rec["events"][0]["complete"], rec["events"][:1]
    if sc.expect_outcome == "panic":
        assert "panic_on_oom" in rec["reason"] or "deadlocked" in rec["reason"]
    if sc.expect_outcome != "panic":
        # kill counting: the kernel's counters against the log's Killed lines, shown when they differ
        kc = rec["kill_count"]
        assert kc["agree"], kc["differences"]
        assert kc["memcg_oom_kill"] == kc["log"] == len(rec.get("kills") or [])
    if name == "cpuset-node1":
        assert rec["events"][0]["constraint"] == "CONSTRAINT_CPUSET"
    if name == "mempolicy-bind":
        assert rec["events"][0]["constraint"] == "CONSTRAINT_MEMORY_POLICY"
    if name in ("global-noswap", "global-swap", "allocating-task"):
        assert rec["events"][0]["kind"] == "global"
    if name == "oom-group":
        assert rec["outcome"] == "group-kill"
    if name == "oom-group-middle":
        assert rec["predicted_victims"] == rec["killed_workloads"] == ["a1", "b1", "grower"]
        assert rec["survivors"] == ["bprot"] and rec["kill_count"]["memcg_oom_group_kill"] in (1, None)
    if name == "oom-group-middle-child":
        assert rec["predicted_victims"] == rec["killed_workloads"] == ["a1"] and rec["predicted_group"] is None
    if name == "no-killable-process":
        assert rec["outcome"] == "no-victim" and rec["kill_count"]["log"] == 0
        assert rec["kill_count"]["memcg_oom"] >= 1 and rec["allocating_task"]["grower"]
    if name == "tmpfs-survives-kill":
        assert rec["unfreed"]["shmem_after_kill"] >= rec["unfreed"]["tmpfs_written"] * 9 // 10
    if name == "hugetlb-not-counted":
        holder = next(s for s in rec["snapshot"] if s["workload"] == "hugetlb")
        assert holder["hugetlb_kb"] >= 160 * 1024 and holder["rss"] * 4 < 32 * 1024
    if name == "memory-high-throttle":
        assert rec["outcome"] == "throttled" and rec["throttle"]["high_events"]
    if name == "sysrq-manual-oom":
        assert rec["events"][0]["trigger"]["order"] == -1
    if sc.expect_outcome in ("kill", "group-kill"):
        # the guest kernel's /proc/PID/oom_score before the trigger equals the model's, task by task
        assert rec["oom_score_check"]["checked"] >= 1 and rec["oom_score_check"]["agree"], rec["oom_score_check"]
    record_kills("vm", KERNEL, rec)


GUEST_GAP = r"""
import json, os
from harness.machine.kmsg import KmsgCursor
with open("/proc/sys/kernel/printk_devkmsg", "w") as f:  # user writes are ratelimited by default
    f.write("on\n")
c = KmsgCursor()
fd = os.open("/dev/kmsg", os.O_WRONLY)
for i in range(4000):           # far more than the ring buffer holds
    os.write(fd, b"oomh-flood %06d ................................................................\n" % i)
os.close(fd)
lines = c.read_new()
print(json.dumps({"gaps": c.gaps, "read": len(lines)}))
"""


@pytest.fixture(scope="module")
def guest():
    reason = _skip_reason()
    if reason:
        unavailable("vm", reason)
    from vm.kernels import get_kernel
    from vm.machine import GuestVM

    with GuestVM(get_kernel(KERNEL)) as vm:
        yield vm


def test_kmsg_gap_is_noticed(guest):
    """A flood that overwrites unread records must be counted as a gap, never silently skipped."""
    r = guest.exec(["python3", "-c", GUEST_GAP], timeout=120)
    assert r.rc == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["gaps"] >= 1, out


def test_guest_init_and_harness_are_protected(guest):
    r = guest.exec(["cat", "/proc/1/oom_score_adj"], timeout=10)
    assert r.stdout.strip() == "-1000"
    r = guest.exec(["python3", "-c", "from harness.machine.engine import protect_self; print(protect_self(), "
                    "open('/proc/self/oom_score_adj').read().strip())"], timeout=30)
    assert r.stdout.split() == ["True", "-1000"], r.stdout + r.stderr


def test_console_flood_is_bounded(guest):
    """A command that floods its output is stopped at its bound and the guest stays usable."""
    r = guest.exec(["sh", "-c", "while :; do echo flooding-the-console; done"], timeout=3)
    assert r.timed_out
    assert guest.exec(["true"], timeout=10).rc == 0


def test_sigkilled_vm_run_leaves_nothing_the_next_run_cannot_remove(tmp_path):
    """SIGKILL the harness mid-VM-run: QEMU dies with it; its temp folder is swept by the next run."""
    import glob
    import signal
    import subprocess
    import time

    reason = _skip_reason()
    if reason:
        unavailable("vm", reason)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = subprocess.Popen([sys.executable, "-m", "harness", "run", "--backend", "vm", "--kernel", KERNEL,
                          "single-hog", "--results", str(tmp_path)], cwd=root, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    pattern = f"/tmp/oomh-vm-{p.pid}-*"
    deadline = time.monotonic() + 120
    while not glob.glob(pattern) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert glob.glob(pattern), "the VM never started"
    p.send_signal(signal.SIGKILL)
    p.wait(10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not subprocess.run(["pgrep", "-f", f"oomh-vm-{p.pid}-"], capture_output=True).stdout:
            break
        time.sleep(0.1)
    assert not subprocess.run(["pgrep", "-f", f"oomh-vm-{p.pid}-"], capture_output=True).stdout, "QEMU survived"
    left = glob.glob(pattern)
    r = subprocess.run([sys.executable, "-m", "harness", "cleanup"], cwd=root, capture_output=True, text=True)
    assert r.returncode == 0
    for d in left:
        assert d in r.stdout and not os.path.exists(d)


#: Scenarios that change the guest and must put it back: hugetlb (vm.nr_hugepages: the pool), zswap (the
#: module parameter zswap.enabled), sysrq (vm.panic_on_oom), tmpfs (a mount), reclaim (memory.low, a disk read).
REUSED = ("hugetlb-not-counted", "zswap-swapped-victim", "sysrq-manual-oom", "tmpfs-survives-kill",
          "memory-low-reclaim-suffices")

LEFTOVERS = r"""
import glob, json, os, sys
def read(p):
    try:
        return open(p).read().strip()
    except OSError:
        return None
mem = dict(l.split(":", 1) for l in open("/proc/meminfo"))
print(json.dumps({
    "sysctl": {p: read(p) for p in json.loads(sys.argv[1])},
    "hugepages_total": mem.get("HugePages_Total", "").strip(),
    "cgroups": sorted(os.path.relpath(d, "/sys/fs/cgroup") for d, _, _ in os.walk("/sys/fs/cgroup")),
    "mounts": [l.split()[1] for l in open("/proc/mounts") if "oomh" in l],
    "tmp": glob.glob("/tmp/oomh-[0-9]*"),
}))
"""


def _zswap_kernel(series: str):
    """*series* if its kernel has zswap, else Debian's generic flavour of the same release (the cloud
    flavour lacks CONFIG_ZSWAP up to 6.12): the zswap scenario must really switch zswap on."""
    from vm.kernels import get_kernel, is_cloud

    k = get_kernel(series)
    cfg = k.image.parent / "config"
    if cfg.is_file() and "CONFIG_ZSWAP=y" in cfg.read_text().split("\n"):
        return k
    if not is_cloud(k.release):
        pytest.skip(f"kernel {k.release} has no CONFIG_ZSWAP and no generic flavour to fall back to")
    return get_kernel(k.release[: -len("-cloud-amd64")] + "-amd64")


@pytest.fixture(scope="module")
def swap_guest():
    """A guest with swap (the zswap and page-cache scenarios need it) of a kernel with zswap."""
    reason = _skip_reason()
    if reason:
        unavailable("vm", reason)
    from harness.backends.vm import GUEST_PRELOAD
    from vm.machine import GuestVM

    with GuestVM(_zswap_kernel(KERNEL), swap_mb=128, preload=GUEST_PRELOAD) as vm:
        yield vm


def test_situations_leave_nothing_in_a_reused_guest(swap_guest):
    """The hugetlb, zswap and sysctl-changing scenarios, one after the other in one guest, each as expected;
    then, in that same guest: nr_hugepages and every sysctl they changed back to the value before (zswap
    off again), no hugepage left in the pool, the same cgroups as before (none left under the root),
    no tmpfs mount and no temp dir."""
    from harness.machine.engine import sysctl_path
    from harness.machine.scenario import catalogue

    scs = [next(s for s in catalogue("vm") if s.name == name) for name in REUSED]
    paths = sorted({sysctl_path(k) for sc in scs for k in sc.sysctl})
    assert {"/proc/sys/vm/nr_hugepages", "/proc/sys/vm/panic_on_oom",
            "/sys/module/zswap/parameters/enabled"} <= set(paths)

    def state() -> dict:
        r = swap_guest.exec(["python3", "-c", LEFTOVERS, json.dumps(paths)], timeout=60)
        return json.loads(r.stdout.strip().splitlines()[-1])

    before = state()
    assert before["sysctl"]["/sys/module/zswap/parameters/enabled"] == "N", before  # off: the scenario turns it on
    recs = {}
    for sc in scs:
        gpath = f"/tmp/{sc.name}.toml"
        with open(sc.path, "rb") as f:
            swap_guest.write_file(gpath, f.read())
        r = swap_guest.run_module("harness.machine.guest", [gpath], timeout=sc.timeout_s + 60, oom_score_adj=-1000)
        line = next((ln for ln in r.stdout.splitlines() if ln.startswith("@@OOMH-RECORD@@ ")), None)
        assert line, r.stderr[-500:]
        recs[sc.name] = rec = json.loads(line.split(" ", 1)[1])
        assert rec["as_expected"] is True, f"{sc.name}: {rec['verdict']}: {rec['reason']}"
        swap_guest.exec(["rm", "-f", gpath], timeout=10)
    # zswap was really on during its scenario: the swapped task's pages sat in the zswap pool
    assert (recs["zswap-swapped-victim"]["memory_state"]["before"][""]["zswapped"] or 0) > 0
    after = state()
    assert after == before, (before, after)
    assert after["hugepages_total"] == "0" and not after["mounts"] and not after["tmp"]
    assert not [c for c in after["cgroups"] if "oomh" in c], after["cgroups"]
