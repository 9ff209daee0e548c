"""``oom-harness watch`` survives a real ``/dev/kmsg`` overrun (EPIPE), inside a QEMU guest.

Never on the host: flooding the host's ring buffer would destroy its log.  In a guest booting
Debian's kernel (6.12; OOMH_TEST_KERNEL overrides), ``watch --json`` is started on the guest's
``/dev/kmsg`` and stopped (SIGSTOP: its reader stalls); the guest's ring buffer is then flooded
with more records than it holds, through ``/dev/kmsg`` itself, and a genuine memcg OOM kill is
provoked; watch is resumed.  It must report the gap with the number of records lost, and still
explain the OOM kill, then exit 0 on SIGTERM.

The guest image ships only the machine side (``harness.machine.payload.SHIPPED``: the CLI is
host-only, and shipping it would change the image and its boot snapshots with every CLI edit), so
the test copies ``harness/cli/watch.py`` and ``harness/reporting/render.py`` from this checkout into
the running guest and runs the watch sub-command from them: ``cmd_watch`` with its argument parser,
as ``oom-harness watch`` runs it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import record_kills, unavailable
from test_vm_boot import KERNEL, _skip_reason

pytestmark = pytest.mark.vm

ROOT = Path(__file__).resolve().parent.parent
CLI_FILES = ("harness/cli/__init__.py", "harness/cli/watch.py", "harness/reporting/__init__.py",
             "harness/reporting/render.py")

#: Records written to the guest's /dev/kmsg: ~3.4 MB of text, many times a Debian kernel's ring buffer.
FLOOD = 20_000

GUEST = r"""
import json, os, signal, subprocess, sys, time

WATCH = ("import argparse, sys\n"
         "from harness.cli import watch\n"
         "p = argparse.ArgumentParser(prog='oom-harness')\n"
         "watch.register(p.add_subparsers())\n"
         "a = p.parse_args(sys.argv[1:])\n"
         "sys.exit(a.func(a))\n")
watch = subprocess.Popen([sys.executable, "-c", WATCH, "watch", "--json", "--settle", "0.5"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
ready = watch.stderr.readline()
os.kill(watch.pid, signal.SIGSTOP)  # the reader stalls from here on

t0 = time.monotonic()
pad = "x" * 150
devkmsg = open("/proc/sys/kernel/printk_devkmsg").read().strip()
for i in range(FLOOD):  # level 7 (debug): into the ring buffer, not onto the serial console
    # writes are ratelimited per open file (10 per 5 s) unless printk_devkmsg is "on" (the command line
    # may lock it): a fresh open every 10 records
    if i % 10 == 0:
        if i:
            os.close(fd)
        fd = os.open("/dev/kmsg", os.O_WRONLY)
    os.write(fd, f"<7>oomh-flood {i:06d} {pad}\n".encode())
os.close(fd)
flood_s = time.monotonic() - t0

# what the ring buffer still holds now: its capacity, in records
held = 0
rfd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
while True:
    try:
        if not os.read(rfd, 8192):
            break
        held += 1
    except BlockingIOError:
        break
    except BrokenPipeError:
        continue
os.close(rfd)

# a genuine memcg OOM: a hog in a 32 MiB cgroup v2 memory limit, no swap
cg = "/sys/fs/cgroup/oomh-watch-epipe"
os.makedirs(cg, exist_ok=True)
with open(cg + "/memory.max", "w") as f:
    f.write(str(32 << 20))
if os.path.exists(cg + "/memory.swap.max"):
    with open(cg + "/memory.swap.max", "w") as f:
        f.write("0")

def enter():
    with open(cg + "/cgroup.procs", "w") as f:
        f.write(str(os.getpid()))

hog = subprocess.Popen([sys.executable, "-c", "b = []\nwhile True:\n    b.append(b'x' * (1 << 20))"],
                       preexec_fn=enter)
rc = hog.wait(timeout=180)
with open(cg + "/memory.events") as f:
    events = dict(line.split() for line in f)

os.kill(watch.pid, signal.SIGCONT)  # the reader goes on
out = []
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    line = watch.stdout.readline()
    if not line:
        break
    out.append(json.loads(line))
    if out[-1].get("type") == "oom":
        break
time.sleep(1.0)
watch.send_signal(signal.SIGTERM)
rest, err = watch.communicate(timeout=60)
out += [json.loads(x) for x in rest.splitlines() if x.strip()]
os.rmdir(cg)
print(json.dumps({"devkmsg": devkmsg, "ready": ready, "flood": FLOOD, "flood_s": flood_s, "held": held,
                  "hog_pid": hog.pid, "hog_rc": rc, "oom_kill": int(events.get("oom_kill", 0)), "out": out,
                  "watch_rc": watch.returncode, "watch_err": err}))
"""


@pytest.fixture(scope="module")
def kernel():  # noqa: ANN201 - a vm.kernels.Kernel
    reason = _skip_reason()
    if reason:
        unavailable("vm", reason)
    from vm.image import build_initrd
    from vm.kernels import get_kernel

    k = get_kernel(KERNEL)
    build_initrd(k)
    return k


def test_watch_reports_a_real_kmsg_overrun_and_still_explains_the_oom(kernel) -> None:  # noqa: ANN001
    from vm.image import GUEST_PROJECT
    from vm.machine import GuestVM

    with GuestVM(kernel, accel="auto") as vm:
        for rel in CLI_FILES:  # the host-only watch command, from this checkout, next to the shipped harness
            vm.write_file(f"{GUEST_PROJECT}/{rel}", (ROOT / rel).read_bytes())
        r = vm.python(GUEST.replace("FLOOD", str(FLOOD)), 600)
        assert r.ok, r.stdout + r.stderr + vm.console_tail()
    res = json.loads(r.stdout.strip().splitlines()[-1])
    print(f"guest {kernel.release}: {FLOOD} records written in {res['flood_s']:.1f}s (printk_devkmsg "
          f"{res['devkmsg']}); the ring buffer then held {res['held']} records")
    assert "watching /dev/kmsg" in res["ready"], res["ready"]
    assert res["hog_rc"] == -9 and res["oom_kill"] == 1, res  # a genuine memcg OOM kill
    assert res["held"] < FLOOD, "the flood did not overrun the ring buffer"
    out = res["out"]
    gaps = [o for o in out if o["type"] == "gap"]
    ooms = [o for o in out if o["type"] == "oom"]
    assert [o["type"] for o in out] == ["gap", "oom"], out
    (gap,) = gaps
    assert gap["reason"].startswith("kmsg overrun"), gap
    # the records the stalled reader lost: the flood less what the ring still held of it when it woke up
    lost = gap["lost_records"]
    print(f"watch: {gap['reason']}; {lost} record(s) lost")
    assert isinstance(lost, int) and FLOOD - res["held"] <= lost <= FLOOD, (lost, res["held"])
    (oom,) = ooms
    assert oom["kind"] == "memcg" and oom["complete"], oom
    assert oom["observed_victim"]["pid"] == res["hog_pid"], oom["observed_victim"]
    assert oom["verdict"] == "match", oom["reason"]
    assert (oom.get("oom_memcg") or "").endswith("oomh-watch-epipe"), oom.get("oom_memcg")
    assert res["watch_rc"] == 0 and "1 OOM event(s), 1 gap(s)" in res["watch_err"], res["watch_err"]
    record_kills("vm", kernel.series, {"kills": [{"pid": res["hog_pid"]}]})
