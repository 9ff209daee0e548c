"""The parser against hand-made reports of every era, real public reports, and broken logs."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from harness.core.analysis import analyze_all
from harness.core.logformat import normalize
from harness.core.parser import LogReadError, parse_file, parse_lines, parse_stream, parse_text

FIX = Path(__file__).parent / "fixtures"
SYN = FIX / "synthetic"
PUB = FIX / "public"
HOST = FIX / "host" / "6.18-memcg-v1-probe.log"
INDEX = {d["file"]: d for d in json.loads((PUB / "index.json").read_text())}


def one(name: str):
    evs = parse_text((SYN / name).read_text())
    assert len(evs) == 1, [e.missing for e in evs]
    return evs[0]


def messages(path: Path) -> list[str]:
    """The bare kernel messages of a fixture (envelopes removed)."""
    out = []
    for raw in path.read_text().splitlines():
        ll = normalize(raw)
        if ll is not None:
            out.append(ll.text)
    return out


def core(ev) -> dict:
    """The parts of an event that must not depend on the envelope or line numbers."""
    d = ev.to_dict()
    for k in ("index", "first_line", "last_line", "ts", "caller", "host"):
        d.pop(k)
    for k in d["kills"]:
        k.pop("ts")
    return d


# --- synthetic reports, one per era ---------------------------------------------------------------


def test_2636_sacrifice_child() -> None:
    ev = one("2.6.36-global-sacrifice-child.log")
    assert ev.complete and ev.missing == []
    t = ev.trigger
    assert (t.comm, t.gfp_mask, t.gfp_flags, t.order, t.oom_adj, t.oom_score_adj) == ("hog", 0x201DA, None, 0, 0, 0)
    assert (ev.cpuset, ev.mems_allowed) == ("/", "0")
    assert (ev.kernel_version, ev.current_pid) == ("2.6.36", 2400)
    assert ev.table_layout == "2.6.36-3.5 (cpu oom_adj)"
    assert [r.pid for r in ev.table] == [1200, 2300, 2400, 2401, 2500]
    web = ev.table[-1]
    assert (web.name, web.rss, web.cpu, web.oom_adj, web.swapents, web.nr_ptes) == (
        "Web Content",
        30000,
        1,
        0,
        None,
        None,
    )
    mi = ev.meminfo
    assert (mi.pages_ram, mi.pages_reserved, mi.total_swap_kb, mi.free_swap_kb, mi.page_size_kb) == (
        262144,
        6144,
        0,
        0,
        4,
    )
    assert (ev.select.pid, ev.select.name, ev.select.score, ev.select.message) == (2400, "hog", 781, "Out of memory")
    k = ev.first_kill
    assert (k.pid, k.name, k.message, k.total_vm_kb, k.anon_rss_kb, k.file_rss_kb, k.shmem_rss_kb) == (
        2401,
        "hog-worker",
        None,
        52000,
        47800,
        200,
        None,
    )
    assert ev.kind == "global"
    for f in (
        "header:oom_adj",
        "header:gfp_plain",
        "cpuset_line",
        "table:2.6.36-3.5",
        "select_line",
        "killed:unprefixed",
    ):
        assert f in ev.features
    assert "swap_cache_stats" in ev.features


def test_34_memcg_v1_with_global_meminfo() -> None:
    ev = one("3.4-memcg-v1-memsw.log")
    assert ev.complete and ev.kind == "memcg"
    mc = ev.memcg
    assert (mc.task_in, mc.limit_of) == ("/grp", "/grp")
    assert (mc.usage_kb, mc.limit_kb, mc.failcnt, mc.memsw_usage_kb, mc.memsw_limit_kb) == (
        102400,
        102400,
        12,
        110000,
        204800,
    )
    assert ev.meminfo.total_swap_kb == 1048576
    assert [r.name for r in ev.table] == ["worker a", "[bracket]", "sshd"]
    assert ev.trigger.comm == "worker a" and ev.current_pid == 3001
    assert (ev.select.pid, ev.select.score, ev.select.message) == (3001, 390, "Memory cgroup out of memory")
    assert "memcg:task_in" in ev.features


def test_310_nr_ptes_table() -> None:
    ev = one("3.10-global-nr_ptes-root-minus30.log")
    assert ev.complete
    assert ev.trigger.oom_adj is None and ev.trigger.oom_score_adj == 0
    assert ev.table_layout == "3.6-3.19 (nr_ptes)"
    mysqld = ev.table[1]
    assert (mysqld.pid, mysqld.uid, mysqld.rss, mysqld.nr_ptes, mysqld.swapents, mysqld.nr_pmds) == (
        900,
        0,
        230000,
        600,
        50000,
        None,
    )
    assert ev.table[3].name == "Web Content"
    assert (ev.meminfo.pages_ram, ev.meminfo.pages_reserved, ev.meminfo.total_swap_kb) == (1048576, 24576, 2097152)
    assert ev.kernel_version == "3.10.0" and ev.current_pid == 1500


def test_44_memcg_oneline_stats_nr_pmds() -> None:
    ev = one("4.4-memcg-v1-nr_pmds-oneline-stats.log")
    assert ev.complete
    assert ev.trigger.oom_score_adj == 500 and ev.trigger.gfp_flags is None
    mc = ev.memcg
    assert (mc.limit_kb, mc.memsw_limit_kb, mc.kmem_usage_kb, mc.stats_path) == (262144, 262144, 0, "/app")
    assert mc.stats["rss"] == 261120 and mc.stats["active_file"] == 512
    assert "memcg:stats_oneline" in ev.features
    assert ev.table_layout == "4.0-4.14 (nr_ptes nr_pmds)"
    helper = ev.table[1]
    assert (helper.name, helper.nr_ptes, helper.nr_pmds, helper.oom_score_adj) == ("app helper", 40, 2, 500)
    assert ev.table[2].oom_score_adj == -1000
    assert ev.kernel_version == "4.4.0"


def test_415_pgtables_reaper() -> None:
    ev = one("4.15-global-pgtables-root-3pct-reaper.log")
    assert ev.complete
    t = ev.trigger
    assert (t.gfp_mask, t.gfp_flags, t.nodemask) == (0x14280CA, "GFP_HIGHUSER_MOVABLE|__GFP_ZERO", "(null)")
    assert "header:nodemask" in ev.features and "header:gfp_symbolic" in ev.features
    assert ev.table_layout == "4.15-4.18 (pgtables_bytes)"
    assert ev.table[2].name == "php-fpm: pool w" and ev.table[2].pgtables_bytes == 40960
    assert ev.meminfo.zone_present_kb == {"0/DMA": 15992} and ev.meminfo.zone_managed_kb == {"0/DMA": 15908}
    k = ev.first_kill
    assert (k.pid, k.shmem_rss_kb, k.uid) == (800, 0, None)
    assert [(r.pid, r.name, r.reaped, r.anon_rss_kb) for r in ev.reaper] == [(800, "node", True, 0)]
    assert "reaper" in ev.features


def test_419_tasks_state_and_several_stats_lines() -> None:
    ev = one("4.19-memcg-v1-tasks-state-adj969.log")
    assert ev.complete
    assert ev.table_layout == "4.19-6.7 (pgtables_bytes)"
    assert "table:tasks_state" in ev.features
    assert [r.pid for r in ev.table] == [6001, 6002, 6003]
    mc = ev.memcg
    # the first stats line is the OOMing memcg's; its numbers are kept
    assert mc.stats_path == "/kubepods/burstable/pod1" and mc.stats["rss"] == 0
    assert mc.memsw_limit_kb == 9007199254740988
    assert (mc.task_in, mc.limit_of) == ("/kubepods/burstable/pod1/c2", "/kubepods/burstable/pod1")
    assert ev.select.score == 1884


def test_50_summary_and_select() -> None:
    ev = one("5.0-global-summary-sacrifice-child.log")
    assert ev.complete
    s = ev.summary
    assert (s.constraint, s.nodemask, s.cpuset, s.mems_allowed, s.global_oom, s.task_memcg) == (
        "CONSTRAINT_NONE",
        "(null)",
        "/",
        "0",
        True,
        "/user.slice",
    )
    assert (s.task, s.pid, s.uid) == ("make", 7001, 1000)
    assert ev.select.pid == 7001 and ev.first_kill.pid == 7002 and ev.first_kill.message is None
    assert ev.cpuset is None and ev.trigger.nodemask is None
    assert ev.kind == "global"


def test_53_v2_swap_multiline_stats() -> None:
    ev = one("5.3-memcg-v2-swap-multiline-tie-last.log")
    assert ev.complete and ev.kind == "memcg"
    mc = ev.memcg
    assert (mc.swap_usage_kb, mc.swap_limit_kb, mc.memsw_limit_kb) == (0, 0, None)
    assert mc.stats_path == "/web.slice"
    assert mc.stats["anon"] == 264241152 and mc.stats["pgfault"] == 66000 and len(mc.stats) == 17
    assert "memcg:stats_multiline" in ev.features and "memcg:swap_v2" in ev.features
    k = ev.first_kill
    assert (k.pid, k.message, k.uid, k.pgtables_kb, k.oom_score_adj) == (
        8003,
        "Memory cgroup out of memory",
        None,
        None,
        None,
    )
    assert "killed:prefixed" in ev.features and "killed:uid_pgtables" not in ev.features
    assert ev.summary.oom_memcg == "/web.slice"


def test_61_uid_pgtables_suffix() -> None:
    ev = one("6.1-memcg-v2-k8s-adj-998.log")
    k = ev.first_kill
    assert (k.pid, k.uid, k.pgtables_kb, k.oom_score_adj) == (9002, 0, 800, -998)
    assert "killed:uid_pgtables" in ev.features
    assert ev.kernel_version == "6.1.0-18-amd64"
    assert ev.table[0].uid == 65535


def test_68_oom_group_reaper_and_caller_ids() -> None:
    ev = one("6.8-memcg-v2-oom-group-reaper.log")
    assert ev.complete
    assert ev.caller == "T10001"
    assert ev.table_layout == "6.8+ (rss_anon rss_file rss_shmem)"
    wc = ev.table[0]
    assert (wc.name, wc.rss, wc.rss_anon, wc.rss_file, wc.rss_shmem, wc.pgtables_bytes) == (
        "Web Content",
        60000,
        59000,
        900,
        100,
        409600,
    )
    assert [r.name for r in ev.table] == ["Web Content", "(sd-pam)", "runc:[2:INIT]"]
    assert ev.group_memcg == "/app.slice/app.service"
    assert [(k.pid, k.group) for k in ev.kills] == [(10001, False), (10001, True), (10002, True), (10003, True)]
    assert ev.first_kill.pid == 10001
    assert [(r.pid, r.reaped, r.shmem_rss_kb) for r in ev.reaper] == [(10001, True, 400), (10003, True, 0)]
    assert "oom_group" in ev.features


def test_612_panic_on_oom() -> None:
    evs = parse_text((SYN / "6.12-global-panic-on-oom.log").read_text())
    assert len(evs) == 1  # the panic's "---[ end Kernel panic" line is no new report
    ev = evs[0]
    assert ev.complete and ev.kills == [] and ev.summary is None
    assert ev.panic == "Kernel panic - not syncing: Out of memory: system-wide panic_on_oom is enabled"
    assert "panic_on_oom" in ev.features
    assert "dump_stack:uid" in ev.features and "swap_cache_stats" not in ev.features
    assert ev.table[0].oom_score_adj == -250


def test_66_allocating_task() -> None:
    ev = one("6.6-global-oom-kill-allocating-task.log")
    assert ev.allocating_task_kill
    assert ev.first_kill.message == "Out of memory (oom_kill_allocating_task)"
    assert ev.current_pid == 11002


@pytest.mark.parametrize(
    ("name", "constraint", "kind"),
    [
        ("5.10-cpuset-two-nodes.log", "CONSTRAINT_CPUSET", "cpuset"),
        ("5.10-mempolicy-two-nodes.log", "CONSTRAINT_MEMORY_POLICY", "mempolicy"),
    ],
)
def test_numa_constrained(name: str, constraint: str, kind: str) -> None:
    ev = one(name)
    assert ev.complete and ev.kind == kind and ev.summary.constraint == constraint
    assert ev.meminfo.zone_present_kb == {"0/DMA": 15992, "0/DMA32": 3129212, "0/Normal": 1048576, "1/Normal": 4194304}
    assert ev.meminfo.zone_managed_kb["1/Normal"] == 4100000
    if kind == "mempolicy":
        assert (ev.summary.nodemask, ev.summary.mems_allowed) == ("0", "0-1")
    else:
        assert (ev.summary.cpuset, ev.summary.mems_allowed) == ("batch", "1")


def test_70_percent_d() -> None:
    ev = one("7.0-global-adj-percent-d.log")
    assert ev.trigger.oom_score_adj == 300 and ev.first_kill.oom_score_adj == 300
    assert ev.kernel_version == "7.0.0" and ev.current_pid == 14002
    assert ev.table[2].oom_score_adj == -900


def test_every_synthetic_report_is_complete() -> None:
    files = sorted(SYN.glob("*.log"))
    assert len(files) >= 15
    for f in files:
        evs = parse_text(f.read_text())
        assert len(evs) == 1, f.name
        assert evs[0].complete, (f.name, evs[0].missing)
        assert evs[0].trigger is not None and evs[0].table, f.name


# --- the host report and the public reports -----------------------------------------------------


def test_host_report() -> None:
    evs = list(parse_file(str(HOST)))
    assert len(evs) == 1
    ev = evs[0]
    assert ev.complete and ev.kind == "memcg"
    assert ev.kernel_version == "6.18.44-fc-v657" and ev.current_pid == 1913
    assert (ev.memcg.limit_kb, ev.memcg.memsw_limit_kb) == (65536, 65536)
    assert ev.memcg.stats["hierarchical_memory_limit"] == 67108864
    assert [(r.pid, r.rss, r.rss_shmem, r.pgtables_bytes) for r in ev.table] == [(1913, 17788, 15488, 188416)]
    assert ev.summary.oom_memcg.endswith("/probe1")
    k = ev.first_kill
    assert (k.pid, k.name, k.shmem_rss_kb, k.pgtables_kb) == (1913, "python3", 61952, 184)


PUBLIC = sorted(p.name for p in PUB.glob("*.log"))


def test_index_covers_every_public_file() -> None:
    assert set(PUBLIC) == set(INDEX)


# A line an author put in place of what was left out: "...", "[ ... ]", "[...]", "(...snipped...)",
# ".......(call trace)", "     :" (after any timestamp/prefix the poster kept).
ELISION = re.compile(r"^\s*(\[[^]]*\]\s*)?(\.{3,}|\[ ?\.\.\. ?\]|\(\.\.\.snipped\.\.\.\)|\.+\(call trace\)|:)\s*$")


@pytest.mark.parametrize("name", PUBLIC)
def test_public_report(name: str) -> None:
    """The parser against index.json's metadata, both ways: what the kernel printed is found, and what
    the metadata says is absent is absent."""
    meta = INDEX[name]
    evs = list(parse_file(str(PUB / name)))
    assert evs, name
    for e in evs:
        assert e.complete == (not e.missing)
    # "complete" in the index means the report as posted is whole: then the parser must say so of the
    # main report; a partial post (cut, grep-filtered, elided) is never whole, whatever the parser says
    main = evs[meta["main_event"]]
    text = (PUB / name).read_text()
    marked = [i for i, ln in enumerate(text.splitlines(), 1) if ELISION.match(ln)]
    if meta["complete"]:
        assert main.complete, main.missing
        # nothing was left out of the main report itself (an elided NEXT report may follow it)
        assert not [i for i in marked if main.first_line <= i <= main.last_line], (main.first_line, marked)
    # elision lines in the text <=> the index names what was elided
    assert bool(marked) == bool(meta["elided"]), (marked[:3], meta["elided"])
    # the victim: the first Killed line of the main report, or none at all when none was posted
    assert (main.first_kill.pid if main.first_kill else None) == meta["victim_pid"]
    assert (main.first_kill.name if main.first_kill else None) == meta["victim_name"]
    # the selected task: the Kill/select line of the main report, or none when the report has none
    parsed_sel = main.select.pid if main.select else None
    if "selected_pid" in meta["parser_gaps"]:
        # a known parser gap (the index says why); when the parser learns the line, drop the gap
        assert parsed_sel != meta["selected_pid"], "the parser now reads this line: remove the parser_gaps entry"
    else:
        assert parsed_sel == meta["selected_pid"]
    if meta["kind"] in ("memcg", "global") and main.complete:
        assert main.kind == meta["kind"]
    assert set(meta["parser_gaps"]) <= {"selected_pid"}


def test_public_rhel6_unprefixed_uid_killed_line() -> None:
    ev = next(e for e in parse_file(str(PUB / "2.6.32-rhel6-aliyun-java-global-noswap-syslog.log")) if e.kills)
    k = ev.first_kill
    # RHEL 6 prints the uid INSIDE the line: "Killed process 31995, UID 500, (java) total-vm:..."
    assert (k.pid, k.name, k.uid) == (31995, "java", 500)
    assert len(ev.table) == 42 and ev.table_layout.startswith("2.6.36-3.5")


def test_public_thread_named_in_select_line() -> None:
    ev = parse_text((PUB / "3.10-vendor-el7-k8s-memcg-v1-backported-oomkill-line-syslog.log").read_text())[0]
    assert ev.select.pid == 12800 and ev.first_kill.pid == 12788
    assert "runc:[2:INIT]" in {r.name for r in ev.table}


def test_public_dmesg_T_thursday_report_is_found() -> None:
    # "[Thu Apr  1 ...]" timestamps and indented memory.stat continuation lines
    evs = parse_text((PUB / "5.x-kind-uwsgi-memcg-v2-dmesg-T-memorystat-continuation-partial.log").read_text())
    assert len(evs) == 1
    ev = evs[0]
    assert len(ev.table) == 6 and ev.summary.pid == 11638
    assert not ev.complete and "kill line" in ev.missing


def test_public_oom_group_kills_victim_twice() -> None:
    ev = parse_text((PUB / "6.8plus-k8s-memcg-v2-oom-group-grep-filtered-partial.log").read_text())[0]
    assert [(k.pid, k.group) for k in ev.kills] == [(22609, False), (22609, True)]
    assert ev.group_memcg.endswith(".scope")


# --- several reports, interleaving, cuts ---------------------------------------------------------


def test_several_events_in_one_log_in_order() -> None:
    names = [
        "3.10-global-nr_ptes-root-minus30.log",
        "6.1-memcg-v2-k8s-adj-998.log",
        "4.4-memcg-v1-nr_pmds-oneline-stats.log",
    ]
    text = "".join((SYN / n).read_text() + "[ 9999.000000] unrelated noise\n" for n in names)
    evs = parse_text(text)
    assert [e.index for e in evs] == [0, 1, 2]
    assert [e.first_kill.pid for e in evs] == [1500, 9002, 5002]
    assert all(e.complete for e in evs)
    assert evs[0].last_line < evs[1].first_line < evs[2].first_line


def _with_caller(name: str, caller: str) -> list[str]:
    return [f"[  100.{i:06d}] [{caller:>6}] {m}" for i, m in enumerate(messages(SYN / name))]


def test_interleaved_reports_from_two_callers_are_kept_apart() -> None:
    a = _with_caller("5.3-memcg-v2-swap-multiline-tie-last.log", "T1")
    b = _with_caller("7.0-global-adj-percent-d.log", "T2")
    mixed = []
    for i in range(max(len(a), len(b))):
        mixed += a[i : i + 1] + b[i : i + 1]
    evs = parse_text("\n".join(mixed) + "\n")
    assert len(evs) == 2
    by = {e.caller: e for e in evs}
    assert set(by) == {"T1", "T2"}
    assert by["T1"].complete and by["T2"].complete
    assert [r.pid for r in by["T1"].table] == [8001, 8002, 8003]
    assert [r.pid for r in by["T2"].table] == [14001, 14002, 14003]
    assert by["T1"].first_kill.pid == 8003 and by["T2"].first_kill.pid == 14002
    assert by["T1"].memcg.stats["anon"] == 264241152 and by["T2"].memcg is None
    ref_a = parse_text((SYN / "5.3-memcg-v2-swap-multiline-tie-last.log").read_text())[0]
    ref_b = parse_text((SYN / "7.0-global-adj-percent-d.log").read_text())[0]
    assert core(by["T1"]) == core(ref_a) and core(by["T2"]) == core(ref_b)


def test_report_cut_in_the_middle_of_the_table() -> None:
    lines = (SYN / "7.0-global-adj-percent-d.log").read_text().splitlines()
    cut = next(i for i, line in enumerate(lines) if "14002]" in line) + 1  # log ends after two rows
    evs = parse_text("\n".join(lines[:cut]) + "\n")
    assert len(evs) == 1
    ev = evs[0]
    assert not ev.complete
    assert "end of task table" in ev.missing and "kill line" in ev.missing
    assert [r.pid for r in ev.table] == [14001, 14002] and not ev.table_complete


def test_report_cut_mid_line_in_the_table() -> None:
    text = (SYN / "4.15-global-pgtables-root-3pct-reaper.log").read_text()
    pos = text.index("php-fpm")
    ev = parse_text(text[: pos - 20])[0]
    assert not ev.complete and "kill line" in ev.missing


def test_ring_buffer_wrap_report_starts_mid_table() -> None:
    lines = (SYN / "6.1-memcg-v2-k8s-adj-998.log").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if "9002]" in line)  # header, memcg block, table head lost
    evs = parse_text("\n".join(lines[start:]) + "\n")
    assert len(evs) == 1
    ev = evs[0]
    assert not ev.complete
    assert "header line (`invoked oom-killer`)" in ev.missing
    assert ev.table_layout.endswith("(header lost)")
    assert [r.pid for r in ev.table] == [9002] and ev.table[0].oom_score_adj == -998
    assert ev.first_kill.pid == 9002


def test_kmsg_sequence_gap_is_flagged() -> None:
    msgs = messages(SYN / "5.0-global-summary-sacrifice-child.log")
    recs = []
    seq = 500
    for i, m in enumerate(msgs):
        seq += 40 if i == 8 else 1  # 39 records lost inside the report
        recs.append(normalize(f"4,{seq},{1000 + i},-;{m}", i + 1))
    evs = list(parse_lines(r for r in recs if r is not None))
    assert len(evs) == 1
    assert not evs[0].complete
    assert "lines lost (kmsg sequence gap)" in evs[0].missing


def test_kmsg_without_gap_is_complete() -> None:
    msgs = messages(SYN / "5.0-global-summary-sacrifice-child.log")
    recs = [normalize(f"4,{700 + i},{1000 + i},-,caller=T7002;{m}", i + 1) for i, m in enumerate(msgs)]
    evs = list(parse_lines(recs))
    assert len(evs) == 1 and evs[0].complete and evs[0].caller == "T7002"


ENVELOPES = {
    "bare": lambda i, m: m,
    "dmesg": lambda i, m: f"[{10 + i / 1000:12.6f}] {m}",
    "dmesg-caller": lambda i, m: f"[{10 + i / 1000:12.6f}] [  T4242] {m}",
    "console": lambda i, m: f"[{10 + i / 1000:12.6f}][  T4242] {m}",
    "caller-only": lambda i, m: f"[    C3] {m}",
    "kmsg": lambda i, m: f"4,{100 + i},{10_000_000 + i},-;{m}",
    "kmsg-caller": lambda i, m: f"4,{100 + i},{10_000_000 + i},-,caller=T4242;{m}",
    "dmesg-T": lambda i, m: f"[Thu Nov 26 10:11:{i % 60:02d} 2026] {m}",
    "dmesg-T-fr": lambda i, m: f"[jeu. 26 nov. 10:11:{i % 60:02d} 2026] {m}",
    "dmesg-T-ja": lambda i, m: f"[木 11月 26 10:11:{i % 60:02d} 2026] {m}",
    "iso": lambda i, m: f"2026-11-26T10:11:{i % 60:02d},123456+01:00 {m}",
    "syslog": lambda i, m: f"Nov 26 10:11:{i % 60:02d} web-01 kernel: [{10 + i / 1000:12.6f}] {m}",
    "journal-iso": lambda i, m: f"2026-11-26T10:11:{i % 60:02d}.123456+0100 db.example.org kernel: {m}",
    "level": lambda i, m: f"<4>[{10 + i / 1000:12.6f}] {m}",
    "serial": lambda i, m: (f"hog: step {i}" if i % 3 == 0 else "") + f"[{10 + i / 1000:12.6f}] {m}",
}
ENVELOPE_FIXTURES = [
    "6.12-global-panic-on-oom.log",
    "6.8-memcg-v2-oom-group-reaper.log",
    "4.19-memcg-v1-tasks-state-adj969.log",
]


@pytest.mark.parametrize("name", ENVELOPE_FIXTURES)
@pytest.mark.parametrize("env", sorted(ENVELOPES))
def test_same_report_in_every_envelope(name: str, env: str) -> None:
    msgs = messages(SYN / name)
    ref = [core(e) for e in parse_text("\n".join(msgs) + "\n")]
    wrapped = "\n".join(ENVELOPES[env](i, m) for i, m in enumerate(msgs)) + "\n"
    got = [core(e) for e in parse_text(wrapped)]
    assert got == ref


@pytest.mark.parametrize("name", sorted(p.name for p in SYN.glob("*.log")))
def test_chunked_stream_equals_whole_text(name: str) -> None:
    text = (SYN / name).read_text()
    rnd = random.Random(name)
    chunks, pos = [], 0
    while pos < len(text):
        n = rnd.randint(1, 200)
        chunks.append(text[pos : pos + n])
        pos += n
    assert [e.to_dict() for e in parse_stream(chunks)] == [e.to_dict() for e in parse_text(text)]


def test_keep_lines() -> None:
    text = (SYN / "5.0-global-summary-sacrifice-child.log").read_text()
    assert parse_text(text)[0].lines[0].startswith("cc1plus invoked oom-killer")
    assert parse_text(text, keep_lines=False)[0].lines == []


# --- garbage and errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n\n\n",
        "hello world\n",
        "\x00\x01\x02\xff garbage \ud7ff\n" * 50,
        "[ 1.000000] usb 1-1: new high-speed USB device\n" * 100,
        "no newline at the end",
        "[[[[[[[\n]]]]]]\n[  pid  ]\n",
    ],
)
def test_garbage_gives_no_events(text: str) -> None:
    assert parse_text(text) == []


def test_garbage_with_oom_words_does_not_raise() -> None:
    text = "x invoked oom-killer: gfp_mask=zz\nKilled process\nKill process (x)\n[ 12] 1 2 3\noom-kill:\n,,,=\n"
    for ev in parse_text(text):
        assert not ev.complete


def test_parse_file_missing_raises_one_line_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.log"
    with pytest.raises(LogReadError) as ei:
        list(parse_file(str(missing)))
    msg = str(ei.value)
    assert "\n" not in msg and str(missing) in msg


def test_parse_file_on_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(LogReadError):
        list(parse_file(str(tmp_path)))


def test_parse_file_invalid_utf8(tmp_path: Path) -> None:
    p = tmp_path / "bin.log"
    p.write_bytes(b"\xff\xfe\x80" + (SYN / "7.0-global-adj-percent-d.log").read_bytes() + b"\xc3\x28\n")
    evs = list(parse_file(str(p)))
    assert len(evs) == 1 and evs[0].first_kill.pid == 14002


def test_ratelimited_kills_after_a_report_are_their_own_events():
    """Past the kernel's report ratelimit only "Killed process" lines are printed.  Following a
    complete report they are later OOMs (header suppressed), not oom.group members of that one."""
    host = (FIX / "host" / "6.18-memcg-v1-probe.log").read_text()
    later = ("[  100.000001] Memory cgroup out of memory: Killed process 4242 (big) total-vm:46796kB, "
             "anon-rss:35456kB, file-rss:6080kB, shmem-rss:0kB, UID:0 pgtables:132kB oom_score_adj:0\n")
    events = parse_text(host + later)
    assert len(events) == 2
    assert [k.pid for k in events[0].kills] == [1913]
    assert [k.pid for k in events[1].kills] == [4242] and not events[1].kills[0].group
    assert events[1].trigger is None and not events[1].complete
    d = analyze_all(events)[1].to_dict()
    assert d["verdict"] == "undecidable" and "suppressed" in d["reason"]


def test_pre_2636_headers_start_an_event() -> None:
    """mm/oom_kill.c out_of_memory(): up to 2.6.18 "oom-killer: gfp_mask=0x%x, order=%d" (no comm),
    2.6.19-2.6.35 "%s invoked oom-killer: gfp_mask=0x%x, order=%d, oomkilladj=%d"."""
    bare = parse_text("Nov  2 11:52:12 slesk kernel: oom-killer: gfp_mask=0x201d2, order=0\n")
    assert len(bare) == 1 and bare[0].trigger is not None
    t = bare[0].trigger
    assert (t.comm, t.gfp_mask, t.order, t.oom_adj) == (None, 0x201D2, 0, None)
    assert "header:bare" in bare[0].features
    named = parse_text("[ 12.5] rtorrent invoked oom-killer: gfp_mask=0x201da, order=0, oomkilladj=-17\n")
    t = named[0].trigger
    assert t is not None and (t.comm, t.gfp_mask, t.order, t.oom_adj) == ("rtorrent", 0x201DA, 0, -17)
    # a line that only mentions it is no header
    assert parse_text("[ 1.0] foo: oom-killer: gfp_mask=0x201d2, order=0, oomkilladj=0 extra\n") == []


def test_per_arch_show_mem_forms_feed_meminfo() -> None:
    """arch/arm/mm/init.c (and arch/i386/mm/pgtable.c) show_mem() of 2.6/3.x: "Mem-info:",
    "%d pages of RAM", "%d pages of HIGHMEM", "%d reserved pages"."""
    text = (
        "[ 1.0] a.out invoked oom-killer: gfp_mask=0x201da, order=0, oom_score_adj=0\n"
        "[ 1.1] Mem-info:\n"
        "[ 1.2] Normal per-cpu:\n"
        "[ 1.3] 65536 pages of RAM\n"
        "[ 1.4] 512 pages of HIGHMEM\n"
        "[ 1.5] 2170 reserved pages\n"
        "[ 1.6] Total swap = 0kB\n"
    )
    mi = parse_text(text)[0].meminfo
    assert mi is not None
    assert (mi.pages_ram, mi.pages_highmem, mi.pages_reserved, mi.total_swap_kb) == (65536, 512, 2170, 0)
