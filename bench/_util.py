"""Shared helpers for the parser and model benchmarks: a realistic kernel-log generator, timing,
result tables and JSON output.

The generator is deterministic (seeded) so two commits are measured on byte-identical logs.
Its OOM reports are built from two real reports: a cgroup-v1 memcg OOM captured on the
benchmark machine (6.18, ``dmesg``) and the 6.11 global OOM in
``tests/fixtures/public/6.11-stress-ng-global-noswap-adj1000-dmesg.log``; their task tables are
grown to a random size and every report gets its own pids.  Everything else is kernel noise of
the kinds a busy host logs (usb, ext4, audit, net/firewall, systemd-journald, segfaults, hung
tasks, WARNING call traces, sysrq Mem-Info dumps that are *not* OOM reports).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MB = 1_000_000  # benchmark sizes and MB/s use decimal megabytes
MIB = 1 << 20

# --------------------------------------------------------------------------------------------
# OOM report templates (messages only; the envelope - timestamp etc. - is added per line)
# --------------------------------------------------------------------------------------------

# The real report from this machine (6.18.44, cgroup v1 memcg OOM), `dmesg` lines 347-439.
_MEMCG_HEAD = """\
{comm} invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0
CPU: 1 UID: 0 PID: {pid} Comm: {comm} Not tainted 6.18.44-fc-v657 #1 PREEMPT(none)
Call Trace:
 <TASK>
 dump_stack_lvl+0x57/0x80
 dump_header+0x43/0x1c0
 oom_kill_process.cold+0x8/0x8a
 out_of_memory+0x214/0x500
 mem_cgroup_out_of_memory+0xc0/0x110
 try_charge_memcg+0x422/0x6f0
 charge_memcg+0x2f/0x90
 __mem_cgroup_charge+0x2c/0x90
 shmem_alloc_and_add_folio+0x1d4/0x480
 ? filemap_get_entry+0xf0/0x1a0
 ? srso_return_thunk+0x5/0x5f
 shmem_get_folio_gfp+0x255/0x5f0
 shmem_fault+0x7b/0x390
 ? balance_dirty_pages_ratelimited_flags+0x1d/0x390
 __do_fault+0x34/0xd0
 do_fault+0xcc/0x660
 ? srso_return_thunk+0x5/0x5f
 ? ___pte_offset_map+0x17/0x100
 __handle_mm_fault+0x7fc/0xf40
 handle_mm_fault+0xd0/0x310
 exc_page_fault+0x176/0x770
 asm_exc_page_fault+0x22/0x30
RIP: 0033:0x7fdf2b98c0ba
Code: 00 00 48 c7 c1 ff ff ff ff c4 e2 e8 f5 c9 c4 e1 fb 92 c9 62 e1 7f 49 7f 00 c3 66 0f 1f 44 00 00 40 0f b6 c6 48 \
89 d1 48 89 fa <f3> aa 48 89 d0 c3 48 3b 15 09 53 06 00 77 e7 62 e1 fe 48 7f 07 62
RSP: 002b:00007fff5f6b1a48 EFLAGS: 00010206
RAX: 0000000000000001 RBX: 00007fff5f6b1bf8 RCX: 000000000277c000
RDX: 00007fdf2508c000 RSI: 0000000000000001 RDI: 00007fdf28d10000
RBP: 00007fff5f6b1a50 R08: 00000ffbe57ea889 R09: 00007fdf2bf5cb78
R10: 0000000000000000 R11: 00007fdf2b98c040 R12: 00007fff5f6b1c18
R13: 00007fff5f6b1d00 R14: 0000000000000001 R15: 0000000000000000
 </TASK>
memory: usage 65536kB, limit 65536kB, failcnt 0
memory+swap: usage 65536kB, limit 65536kB, failcnt 0
kmem: usage 368kB, limit 9007199254740988kB, failcnt 0
Memory cgroup stats for /process_api/{cg}/probe1:"""

_MEMCG_STATS = """\
cache 63463424
rss 3178496
rss_huge 0
shmem 63455232
mapped_file 63455232
dirty 0
writeback 0
workingset_refault_anon 0
workingset_refault_file 0
swap 0
swapcached 0
pgpgin 19479
pgpgout 3187
pgfault 23870
pgmajfault 1
inactive_anon 66629632
active_anon 4096
inactive_file 4096
active_file 4096
unevictable 0
hierarchical_memory_limit 67108864
hierarchical_memsw_limit 67108864"""

_MEMCG_TAIL = """\
oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/process_api/{cg}/probe1,\
task_memcg=/process_api/{cg}/probe1,task={comm},pid={pid},uid=0
Memory cgroup out of memory: Killed process {pid} ({comm}) total-vm:{vm_kb}kB, anon-rss:{anon_kb}kB, \
file-rss:6128kB, shmem-rss:61952kB, UID:0 pgtables:184kB oom_score_adj:0"""

# tests/fixtures/public/6.11-stress-ng-global-noswap-adj1000-dmesg.log (global OOM with Mem-Info).
_GLOBAL_HEAD = """\
{comm} invoked oom-killer: gfp_mask=0x440dc0(GFP_KERNEL_ACCOUNT|__GFP_COMP|__GFP_ZERO), order=0, oom_score_adj=1000
CPU: 1 UID: 0 PID: {pid} Comm: {comm} Not tainted 6.11.0-10669-g11a299a7933e-dirty #15
Hardware name: QEMU Standard PC (Q35 + ICH9, 2009), BIOS Arch Linux 1.16.3-1-1 04/01/2014
Call Trace:
 <TASK>
 dump_stack_lvl+0x3f/0xb0
 dump_header+0x48/0x190
 oom_kill_process+0x255/0x350
 out_of_memory+0x3cc/0x590
 __alloc_pages_may_oom+0xf4/0x1b0
 __alloc_pages_slowpath+0x44e/0x640
 __alloc_pages_noprof+0x27d/0x330
 alloc_pages_mpol_noprof+0xa8/0x140
 pte_alloc_one+0x2f/0xd0
 __pte_alloc+0x2e/0x170
 do_pte_missing+0xa5c/0xcb0
 handle_mm_fault+0x3e9/0x710
 do_user_addr_fault+0x1f7/0x770
 ? sched_clock_cpu+0x10/0x190
 exc_page_fault+0x5c/0xe0
 asm_exc_page_fault+0x26/0x30
RIP: 0033:0x56095b546735
Code: 99 00 41 54 49 89 fa 55 48 89 cd 48 01 fa 53 4c 8b 59 10 4c 39 ca 0f 83 01 01 00 00 31 c9 0f 1f 80 00 00 00 00 \
89 cf 83 c1 01 <40> 88 3a 48 8b 3d 61 ea 99 00 48 01 fa 4c 39 ca 72 e9 48 89 f0 31
RSP: 002b:00007fff6c0c9f80 EFLAGS: 00010202
RAX: 0000000000000010 RBX: 00007f1bc2cb4000 RCX: 00000000079c5301
RDX: 00007f1da9e00000 RSI: 0000000280000000 RDI: 00000000079c5300
RBP: 00007f1e43cf23a8 R08: 0000000000000000 R09: 00007f1e42cb4000
R10: 00007f1bc2cb4000 R11: 0000000000000000 R12: 0000000280000000
R13: 0000000000000000 R14: 0000000000001000 R15: 00007fff6c0ca0e0
 </TASK>"""

_MEMINFO = """\
Mem-Info:
active_anon:1999425 inactive_anon:0 isolated_anon:0
 active_file:0 inactive_file:0 isolated_file:0
 unevictable:4653 dirty:0 writeback:0
 slab_reclaimable:878 slab_unreclaimable:5771
 mapped:4760 shmem:4157 pagetables:4009
 sec_pagetables:0 bounce:0
 kernel_misc_reclaimable:0
 free:1097 free_pcp:8616 free_cma:0
Node 0 active_anon:7997700kB inactive_anon:0kB active_file:0kB inactive_file:0kB unevictable:18612kB \
isolated(anon):0kB isolated(file):0kB mapped:19040kB dirty:0kB writeback:0kB shmem:16628kB writeback_tmp:0kB \
kernel_stack:2144kB pagetables:16036kB sec_pagetables:0kB all_unreclaimable? no
Node 0 DMA free:32kB boost:0kB min:20kB low:32kB high:44kB reserved_highatomic:0KB active_anon:14296kB \
inactive_anon:0kB active_file:0kB inactive_file:0kB unevictable:0kB writepending:0kB present:15992kB \
managed:15360kB mlocked:0kB bounce:0kB free_pcp:8kB local_pcp:8kB free_cma:0kB
lowmem_reserve[]: 0 1895 7890 0 0
Node 0 DMA32 free:3372kB boost:0kB min:2728kB low:4668kB high:6608kB reserved_highatomic:0KB \
active_anon:1942216kB inactive_anon:0kB active_file:0kB inactive_file:0kB unevictable:0kB writepending:0kB \
present:2080640kB managed:1964520kB mlocked:0kB bounce:0kB free_pcp:14484kB local_pcp:13260kB free_cma:0kB
lowmem_reserve[]: 0 0 5994 0 0
Node 0 Normal free:984kB boost:0kB min:8628kB low:14764kB high:20900kB reserved_highatomic:0KB \
active_anon:6041180kB inactive_anon:0kB active_file:0kB inactive_file:0kB unevictable:18612kB writepending:0kB \
present:6291456kB managed:6138744kB mlocked:12kB bounce:0kB free_pcp:19972kB local_pcp:14156kB free_cma:0kB
lowmem_reserve[]: 0 0 0 0 0
Node 0 DMA: 0*4kB 0*8kB 0*16kB 1*32kB (M) 0*64kB 0*128kB 0*256kB 0*512kB 0*1024kB 0*2048kB 0*4096kB = 32kB
Node 0 DMA32: 1*4kB (M) 1*8kB (M) 1*16kB (U) 0*32kB 0*64kB 1*128kB (U) 1*256kB (M) 1*512kB (M) 0*1024kB \
1*2048kB (U) 0*4096kB = 2972kB
Node 0 Normal: 14*4kB (UE) 7*8kB (UE) 3*16kB (U) 3*32kB (UM) 1*64kB (M) 2*128kB (UM) 0*256kB 0*512kB 0*1024kB \
0*2048kB 0*4096kB = 576kB
Node 0 hugepages_total=0 hugepages_free=0 hugepages_surp=0 hugepages_size=1048576kB
Node 0 hugepages_total=0 hugepages_free=0 hugepages_surp=0 hugepages_size=2048kB
8810 total pagecache pages
0 pages in swap cache
Free swap  = 0kB
Total swap = 0kB
2097022 pages RAM
0 pages HighMem/MovableOnly
67366 pages reserved
0 pages cma reserved
0 pages hwpoisoned"""

_TABLE_HEADER = (
    "[  pid  ]   uid  tgid total_vm      rss rss_anon rss_file rss_shmem pgtables_bytes swapents oom_score_adj name"
)

_GLOBAL_TAIL = """\
oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/,\
task={comm},pid={pid},uid=0
Out of memory: Killed process {pid} ({comm}) total-vm:{vm_kb}kB, anon-rss:{anon_kb}kB, file-rss:564kB, \
shmem-rss:0kB, UID:0 pgtables:15676kB oom_score_adj:1000"""

_COMMS = [
    "systemd",
    "sshd",
    "bash",
    "python3",
    "java",
    "node",
    "postgres",
    "nginx",
    "containerd-shim",
    "kubelet",
    "dockerd",
    "rsyslogd",
    "cron",
    "chrome",
    "mysqld",
    "redis-server",
    "gunicorn",
    "uwsgi",
    "stress-ng-vm",
    "journalctl",
]


def table_row(pid: int, rss: int, adj: int, name: str, uid: int = 0) -> str:
    """One 6.8+ task-table row (rss split into anon/file/shmem)."""
    anon, file = rss * 3 // 4, rss - rss * 3 // 4
    return (
        f"[{pid:7d}] {uid:5d} {pid:5d} {rss * 2 + 431:8d} {rss:8d} {anon:8d} {file:8d} {0:9d} "
        f"{(rss // 512 + 12) * 4096:14d} {0:8d} {adj:13d} {name}"
    )


def task_rows(
    rng: random.Random, n: int, first_pid: int, victim_pid: int, victim_rss: int, victim_adj: int = 0
) -> list[str]:
    """*n* rows of ordinary tasks (smaller than the victim), the victim among them."""
    rows = []
    vpos = rng.randrange(n) if n else 0
    pid = first_pid
    for i in range(n):
        if i == vpos:
            rows.append(table_row(victim_pid, victim_rss, victim_adj, "victim"))
            continue
        pid += rng.randint(1, 40)
        rss = rng.randint(50, max(51, victim_rss // 4))
        adj = rng.choice((0, 0, 0, 0, 0, -1000, -999, 200, 500))
        rows.append(table_row(pid, rss, adj, rng.choice(_COMMS), rng.choice((0, 0, 33, 999, 1000))))
    return rows


def oom_report(rng: random.Random, seq: int, kind: str, rows: int) -> list[str]:
    """The messages of one complete OOM report (``kind`` 'memcg' or 'global') with *rows* task rows."""
    pid = 100_000 + seq * 50
    comm = "victim"
    victim_rss = rng.randint(500_000, 2_000_000)
    ctx = {
        "comm": comm,
        "pid": pid,
        "cg": f"{rng.getrandbits(128):032x}",
        "vm_kb": victim_rss * 8,
        "anon_kb": victim_rss * 3,
    }
    # the global template's allocating task (and victim) runs with oom_score_adj=1000
    table = task_rows(rng, rows, 300, pid, victim_rss, 0 if kind == "memcg" else 1000)
    if kind == "memcg":
        head = _MEMCG_HEAD.format(**ctx).split("\n")
        stats = _MEMCG_STATS.split("\n")
        stats = stats + ["total_" + s for s in stats if not s.startswith("hierarchical")]
        body = head + stats + ["Tasks state (memory values in pages):", _TABLE_HEADER] + table
        return body + _MEMCG_TAIL.format(**ctx).split("\n")
    head = _GLOBAL_HEAD.format(**ctx).split("\n")
    body = head + _MEMINFO.split("\n") + ["Tasks state (memory values in pages):", _TABLE_HEADER] + table
    return body + _GLOBAL_TAIL.format(**ctx).split("\n")


# --------------------------------------------------------------------------------------------
# kernel noise
# --------------------------------------------------------------------------------------------

_MODULES = (
    "Modules linked in: xt_conntrack nf_nat nf_conntrack nf_defrag_ipv6 nf_defrag_ipv4 br_netfilter bridge stp "
    "llc overlay ext4 mbcache jbd2 intel_rapl_msr kvm_intel kvm irqbypass crct10dif_pclmul ghash_clmulni_intel "
    "e1000e xhci_pci xhci_hcd usbcore"
)


def _warning_trace(rng: random.Random) -> list[str]:
    pid = rng.randint(2, 60000)
    cpu = rng.randint(0, 15)
    fn, where = rng.choice(
        [
            ("dev_watchdog", "net/sched/sch_generic.c:525"),
            ("ext4_journal_check_start", "fs/ext4/ext4_jbd2.c:72"),
            ("__alloc_pages", "mm/page_alloc.c:4424"),
            ("usb_hcd_submit_urb", "drivers/usb/core/hcd.c:1530"),
        ]
    )
    frames = [
        f" {rng.choice(['? ', ''])}{f}+0x{rng.randint(16, 900):x}/0x{rng.randint(900, 2000):x}"
        for f in rng.sample(
            [
                "__warn",
                "report_bug",
                "handle_bug",
                "exc_invalid_op",
                "asm_exc_invalid_op",
                "call_timer_fn",
                "run_timer_softirq",
                "__do_softirq",
                "irq_exit_rcu",
                "sysvec_apic_timer_interrupt",
                "process_one_work",
                "worker_thread",
                "kthread",
                "ret_from_fork",
                "ret_from_fork_asm",
                "ext4_dirty_inode",
                "__mark_inode_dirty",
                "generic_update_time",
            ],
            12,
        )
    ]
    return (
        [
            "------------[ cut here ]------------",
            f"WARNING: CPU: {cpu} PID: {pid} at {where} {fn}+0x{rng.randint(16, 900):x}/0x{rng.randint(900, 2000):x}",
            _MODULES,
            f"CPU: {cpu} PID: {pid} Comm: kworker/{cpu}:{rng.randint(0, 3)} Tainted: G        W          "
            "6.1.0-26-amd64 #1  Debian 6.1.112-1",
            "Hardware name: Dell Inc. PowerEdge R640/0H28RR, BIOS 2.19.1 06/04/2023",
            f"RIP: 0010:{fn}+0x{rng.randint(16, 900):x}/0x{rng.randint(900, 2000):x}",
            "Call Trace:",
            " <TASK>",
        ]
        + frames
        + [" </TASK>", f"---[ end trace {rng.getrandbits(64):016x} ]---"]
    )


def _sysrq_meminfo(rng: random.Random) -> list[str]:
    """`echo m > /proc/sysrq-trigger`: a Mem-Info dump with no OOM report around it."""
    return ["sysrq: Show Memory"] + _MEMINFO.split("\n")


def _hung_task(rng: random.Random) -> list[str]:
    pid = rng.randint(100, 60000)
    return [
        f"INFO: task jbd2/sda1-8:{pid} blocked for more than 120 seconds.",
        "      Not tainted 6.1.0-26-amd64 #1 Debian 6.1.112-1",
        '"echo 0 > /proc/sys/kernel/hung_task_timeout_secs" disables this message.',
        f"task:jbd2/sda1-8     state:D stack:0     pid:{pid}   ppid:2      flags:0x00004000",
        "Call Trace:",
        " <TASK>",
        " __schedule+0x34d/0x9e0",
        " schedule+0x5a/0xd0",
        " io_schedule+0x42/0x70",
        " bit_wait_io+0xd/0x60",
        " __wait_on_bit+0x4b/0x140",
        " out_of_line_wait_on_bit+0x91/0xb0",
        " jbd2_journal_commit_transaction+0x1627/0x1b10 [jbd2]",
        " kjournald2+0xa9/0x280 [jbd2]",
        " kthread+0xda/0x100",
        " ret_from_fork+0x22/0x30",
        " </TASK>",
    ]


def _single(rng: random.Random) -> str:  # noqa: C901 - a table of line kinds
    r = rng.random()
    if r < 0.12:
        src = f"192.168.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        return (
            f"[UFW BLOCK] IN=eth0 OUT= MAC=52:54:00:{rng.randint(0, 255):02x}:{rng.randint(0, 255):02x}:"
            f"{rng.randint(0, 255):02x}:fe:ff:ff:ff:ff:ff:08:00 SRC={src} DST=10.0.0.{rng.randint(1, 254)} LEN=40 "
            f"TOS=0x00 PREC=0x00 TTL={rng.randint(30, 250)} ID={rng.randint(0, 65535)} PROTO=TCP "
            f"SPT={rng.randint(1024, 65535)} DPT={rng.choice((22, 23, 80, 443, 3389, 8080))} "
            f"WINDOW={rng.randint(1000, 65535)} RES=0x00 SYN URGP=0"
        )
    if r < 0.24:
        return (
            f"audit: type=1400 audit({rng.randint(1_700_000_000, 1_800_000_000)}.{rng.randint(0, 999):03d}:"
            f'{rng.randint(100, 99999)}): apparmor="DENIED" operation="{rng.choice(("open", "exec", "mknod"))}" '
            f'profile="/usr/sbin/{rng.choice(_COMMS)}" name="/proc/{rng.randint(1, 60000)}/status" '
            f'pid={rng.randint(1, 60000)} comm="{rng.choice(_COMMS)}" requested_mask="r" denied_mask="r" '
            f"fsuid={rng.choice((0, 33, 1000))} ouid=0"
        )
    if r < 0.38:
        dev = f"{rng.randint(1, 4)}-{rng.randint(1, 8)}"
        return rng.choice(
            [
                f"usb {dev}: new high-speed USB device number {rng.randint(2, 120)} using xhci_hcd",
                f"usb {dev}: New USB device found, idVendor=0781, idProduct=5581, bcdDevice= 1.00",
                f"usb {dev}: New USB device strings: Mfr=1, Product=2, SerialNumber=3",
                f"usb {dev}: Product: Ultra",
                f"usb {dev}: USB disconnect, device number {rng.randint(2, 120)}",
                f"usb-storage {dev}:1.0: USB Mass Storage device detected",
                f"scsi host{rng.randint(0, 9)}: usb-storage {dev}:1.0",
            ]
        )
    if r < 0.52:
        dev = rng.choice(("sda1", "sdb2", "nvme0n1p2", "dm-0", "vda1"))
        return rng.choice(
            [
                f"EXT4-fs ({dev}): mounted filesystem {rng.getrandbits(128):032x} r/w with ordered data mode. "
                "Quota mode: none.",
                f"EXT4-fs ({dev}): re-mounted {rng.getrandbits(128):032x} r/w. Quota mode: none.",
                f"EXT4-fs warning (device {dev}): ext4_dx_add_entry:2591: Directory (ino: {rng.randint(1, 10**7)}) "
                "index full, reach max htree level :2",
                f"EXT4-fs ({dev}): error count since last fsck: {rng.randint(1, 40)}",
            ]
        )
    if r < 0.66:
        iface = rng.choice(("eth0", "enp3s0", "wlp2s0", f"veth{rng.getrandbits(28):07x}", "docker0", "cni0"))
        return rng.choice(
            [
                f"e1000e 0000:00:1f.6 {iface}: NIC Link is Up 1000 Mbps Full Duplex, Flow Control: Rx/Tx",
                f"IPv6: ADDRCONF(NETDEV_CHANGE): {iface}: link becomes ready",
                f"docker0: port {rng.randint(1, 30)}({iface}) entered blocking state",
                f"docker0: port {rng.randint(1, 30)}({iface}) entered forwarding state",
                f"device {iface} entered promiscuous mode",
                "nf_conntrack: nf_conntrack: table full, dropping packet",
                f"TCP: request_sock_TCP: Possible SYN flooding on port {rng.randint(1, 65535)}. Sending cookies.",
                f"net_ratelimit: {rng.randint(1, 900)} callbacks suppressed",
            ]
        )
    if r < 0.78:
        return rng.choice(
            [
                f"systemd-journald[{rng.randint(200, 900)}]: Data hash table of /var/log/journal/"
                f"{rng.getrandbits(128):032x}/system.journal has a fill level at 75.0 (8533 of 11377 items, "
                "6553600 file size, 768 bytes per hash table item), suggesting rotation.",
                f"systemd-journald[{rng.randint(200, 900)}]: /var/log/journal/{rng.getrandbits(128):032x}/"
                "system.journal: Journal header limits reached or header out-of-date, rotating.",
                f"systemd-journald[{rng.randint(200, 900)}]: Under memory pressure, flushing caches.",
                f"systemd[1]: Started session-{rng.randint(1, 9999)}.scope - Session {rng.randint(1, 9999)} of "
                "User root.",
            ]
        )
    if r < 0.86:
        c = rng.choice(_COMMS)
        return (
            f"{c}[{rng.randint(100, 60000)}]: segfault at {rng.getrandbits(40):x} ip {rng.getrandbits(47):016x} "
            f"sp {rng.getrandbits(47):016x} error 4 in lib{c}.so.1[{rng.getrandbits(44):x}+{rng.getrandbits(20):x}] "
            f"likely on CPU {rng.randint(0, 15)} (core {rng.randint(0, 7)}, socket 0)"
        )
    if r < 0.93:
        return rng.choice(
            [
                f"perf: interrupt took too long ({rng.randint(2500, 9000)} > {rng.randint(2500, 9000)}), "
                f"lowering kernel.perf_event_max_sample_rate to {rng.randint(10000, 90000)}",
                f"kvm: vcpu {rng.randint(0, 15)}, guest rIP: 0xffffffff{rng.getrandbits(32):08x} "
                "Unhandled WRMSR(0xc0010117) = 0x0",
                f"clocksource: timekeeping watchdog on CPU{rng.randint(0, 15)}: Marking clocksource 'tsc' as "
                "unstable because the skew is too large:",
                "mce: [Hardware Error]: Machine check events logged",
                f"sd {rng.randint(0, 3)}:0:0:0: [sda] Write cache: enabled, read cache: enabled, doesn't support "
                "DPO or FUA",
                f"blk_update_request: I/O error, dev sdb, sector {rng.randint(0, 10**9)} op 0x0:(READ) flags 0x0 "
                "phys_seg 1 prio class 0",
            ]
        )
    return rng.choice(
        [
            f"cgroup: fork rejected by pids controller in /system.slice/{rng.choice(_COMMS)}.service",
            f"bpfilter: Loaded bpfilter_umh pid {rng.randint(100, 60000)}",
            f"process '{rng.choice(_COMMS)}' launched '/bin/sh' with NULL argv: empty string added",
            f"hrtimer: interrupt took {rng.randint(10000, 900000)} ns",
            f"NOHZ tick-stop error: Non-RCU local softirq work is pending, handler #{rng.randint(1, 9):02x}!!!",
        ]
    )


def noise_block(rng: random.Random) -> tuple[list[str], int]:
    """(messages, kmsg level) of one noise event: mostly one line, sometimes a multi-line dump."""
    r = rng.random()
    if r < 0.0015:
        return _warning_trace(rng), 4
    if r < 0.002:
        return _sysrq_meminfo(rng), 6
    if r < 0.0025:
        return _hung_task(rng), 3
    return [_single(rng)], rng.choice((4, 6, 6, 6, 5))


# --------------------------------------------------------------------------------------------
# envelopes
# --------------------------------------------------------------------------------------------

FORMS = ("dmesg", "kmsg", "journal")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class _Envelope:
    """Wraps messages into one log form, with a monotonic clock and kmsg sequence numbers."""

    def __init__(self, form: str, rng: random.Random) -> None:
        self.form = form
        self.rng = rng
        self.usec = 1_000_000
        self.seq = 0
        self.boot = 1_764_000_000  # wall clock of boot for the journal form
        self._stamp_sec = -1
        self._stamp = ""

    def wrap(self, msgs: Sequence[str], level: int, same_time: bool = False) -> str:
        out = []
        for m in msgs:
            if not same_time:
                self.usec += self.rng.randint(1, 4000)
            self.seq += 1
            if self.form == "dmesg":
                s, us = divmod(self.usec, 1_000_000)
                out.append(f"[{s:5d}.{us:06d}] {m}\n")
            elif self.form == "kmsg":
                out.append(f"{level},{self.seq},{self.usec},-;{m}\n")
                if m.startswith("usb ") and self.seq % 3 == 0:
                    out.append(" SUBSYSTEM=usb\n DEVICE=c189:" + str(self.seq % 128) + "\n")
            else:
                sec = self.boot + self.usec // 1_000_000
                if sec != self._stamp_sec:
                    t = time.gmtime(sec)
                    self._stamp = (
                        f"{_MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
                    )
                    self._stamp_sec = sec
                out.append(f"{self._stamp} bench-host kernel: {m}\n")
        return "".join(out)


@dataclass
class GenResult:
    path: Path
    bytes: int
    lines: int
    oom_lines: int
    reports: int
    form: str
    seconds: float
    kinds: dict[str, int] = field(default_factory=dict)


def generate_log(
    path: Path,
    size_bytes: int,
    *,
    form: str = "dmesg",
    oom_fraction: float = 0.01,
    seed: int = 1,
    min_gap: int = 1500,
) -> GenResult:
    """Write a kernel log of about *size_bytes* (not less) to *path*; about *oom_fraction* of its
    lines belong to complete OOM reports, at least *min_gap* noise lines apart."""
    t0 = time.perf_counter()
    rng = random.Random(seed)
    env = _Envelope(form, rng)
    pool = [noise_block(rng) for _ in range(4000)]
    written = lines = oom_lines = reports = gap = 0
    kinds = {"memcg": 0, "global": 0}
    buf: list[str] = []
    buf_len = 0
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        while written + buf_len < size_bytes:
            if gap >= min_gap and oom_lines < oom_fraction * lines:
                kind = "memcg" if reports % 2 == 0 else "global"
                rows = rng.randint(10, 100)
                msgs = oom_report(rng, reports, kind, rows)
                text = env.wrap(msgs, 4, same_time=False)
                if reports % 3 == 0:  # the reaper's line arrives shortly after the kill
                    text += env.wrap(
                        [
                            f"oom_reaper: reaped process {100_000 + reports * 50} (victim), now anon-rss:0kB, "
                            "file-rss:0kB, shmem-rss:0kB"
                        ],
                        6,
                    )
                    msgs.append("")
                reports += 1
                kinds[kind] += 1
                oom_lines += len(msgs)
                lines += len(msgs)
                gap = 0
            else:
                msgs, level = pool[rng.randrange(len(pool))] if rng.random() < 0.7 else noise_block(rng)
                text = env.wrap(msgs, level)
                lines += len(msgs)
                gap += len(msgs)
            buf.append(text)
            buf_len += len(text)
            if buf_len > 4 * MIB:
                f.write("".join(buf))
                written += buf_len
                buf, buf_len = [], 0
        if buf:
            f.write("".join(buf))
            written += buf_len
    return GenResult(path, path.stat().st_size, lines, oom_lines, reports, form, time.perf_counter() - t0, kinds)


# --------------------------------------------------------------------------------------------
# timing, tables, JSON
# --------------------------------------------------------------------------------------------


def time_median(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float], Any]:
    """(median seconds, all samples, last result) of *repeats* calls of *fn*."""
    samples = []
    result = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples), samples, result


@dataclass
class Row:
    name: str
    value: float | None
    unit: str
    target: str = ""  # human-readable target, "" for informational rows
    ok: bool | None = None  # None: informational
    detail: str = ""

    @property
    def status(self) -> str:
        return "INFO" if self.ok is None else ("PASS" if self.ok else "FAIL")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "target": self.target or None,
            "status": self.status,
            "detail": self.detail,
        }


def fmt_value(v: float | None) -> str:
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def print_table(title: str, rows: Iterator[Row] | list[Row]) -> None:
    rows = list(rows)
    w_name = max([len(r.name) for r in rows] + [6])
    w_val = max([len(fmt_value(r.value)) for r in rows] + [5])
    w_unit = max([len(r.unit) for r in rows] + [4])
    w_tgt = max([len(r.target) for r in rows] + [6])
    print(f"\n{title}")
    head = f"{'figure':<{w_name}}  {'value':>{w_val}} {'unit':<{w_unit}}  {'target':<{w_tgt}}  result  detail"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r.name:<{w_name}}  {fmt_value(r.value):>{w_val}} {r.unit:<{w_unit}}  {r.target or '-':<{w_tgt}}  "
            f"{r.status:<6}  {r.detail}"
        )


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def environment() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--", "harness")),
    }


def default_out(name: str) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return ROOT / "results" / "bench" / f"{name}-{stamp}.json"


def write_json(path: Path, name: str, rows: list[Row], params: dict[str, Any], extra: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": name,
        "timestamp": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "environment": environment(),
        "params": params,
        "figures": [r.to_dict() for r in rows],
        "passed": all(r.ok is not False for r in rows),
        **extra,
    }
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return path
