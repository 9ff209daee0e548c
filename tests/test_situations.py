"""Kill counting and the situations' judging, without a kernel (fixtures of counters and records)."""

from __future__ import annotations

import os
import subprocess
import sys

from harness.machine import situations
from harness.machine.counters import kill_count, read_counters
from harness.machine.scenario import catalogue, parse_scenario
from harness.reporting.report import kill_count_cell

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _counters(oom_kill: int, oom: int, vmstat: int, group: int = 0) -> dict:
    return {"vmstat_oom_kill": vmstat, "cgroups": {"": {"oom": oom, "oom_kill": oom_kill, "oom_group_kill": group}}}


def test_kill_count_agrees_when_counters_match_the_log():
    kc = kill_count(_counters(0, 0, 7), _counters(2, 3, 9), 2, 2, machine_private=True, log_reports=2)
    assert kc["agree"] and kc["memcg_oom_kill"] == 2 and kc["vmstat_oom_kill"] == 2
    assert kc["notes"] == ["the cgroup counted 3 OOM invocation(s), the log holds 2 report(s)"]
    assert kill_count_cell(kc) == "2"


def test_kill_count_shows_a_kill_without_a_line():
    kc = kill_count(_counters(0, 0, 0), _counters(2, 2, 2), 1, 2, machine_private=True, log_reports=1, kmsg_gaps=1)
    assert not kc["agree"]
    assert "the cgroup counted 2 kill(s), the log shows 1 Killed line(s)" in kc["differences"]
    assert any("gap" in n for n in kc["notes"])
    assert kill_count_cell(kc) == "log 1 ≠ memcg 2 ≠ vmstat 2"


def test_vmstat_is_not_compared_on_a_shared_host():
    kc = kill_count(_counters(0, 0, 10), _counters(1, 1, 15), 1, 2, machine_private=False, log_reports=1)
    assert kc["agree"] and kc["vmstat_oom_kill"] == 5 and not kc["vmstat_compared"]


def test_v1_counts_every_memcg_of_the_sandbox(tmp_path):
    for d in ("", "a", "a/b"):
        os.makedirs(tmp_path / d, exist_ok=True)
        (tmp_path / d / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 0\n")
    before = read_counters(str(tmp_path), 1)
    (tmp_path / "a" / "b" / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    kc = kill_count(before, read_counters(str(tmp_path), 1), 2, 1, machine_private=False)
    assert kc["memcg_oom_kill"] == 2 and kc["agree"]


def _sc(name: str):
    return next(s for s in catalogue("vm") if s.name == name)


def test_group_victims_of_a_middle_cgroup():
    sc = _sc("oom-group-middle")
    # the limit on P (the sandbox) is hit: P is the group, everyone but -1000 dies
    assert situations.group_victims(sc, "a1", "") == ("", ["a1", "b1", "grower"])
    # had A been the domain, P's oom.group above it would not count
    assert situations.group_victims(sc, "a1", "A") == (None, ["a1"])
    # a global OOM: the domain is the root, P is still the highest group on the way
    assert situations.group_victims(sc, "b1", None) == ("", ["a1", "b1", "grower"])


def test_group_victims_of_a_child_limit():
    sc = _sc("oom-group-middle-child")
    assert situations.group_victims(sc, "a1", "A") == (None, ["a1"])


def test_no_victim_outcome_needs_no_victim_name():
    sc = parse_scenario('name = "x"\nbackends = ["vm"]\n[cgroup]\nmemory_max = "64M"\n[[workload]]\nname = "g"\n'
                        'size = "1M"\ngrow = "2M"\noom_score_adj = -1000\n[expect]\noutcome = "no-victim"\n')
    assert sc.expect_outcome == "no-victim" and sc.expect_victim is None


def test_judge_no_victim_records_the_allocating_task():
    sc = _sc("no-killable-process")
    rec = {"events": [{"verdict": "no-victim", "predicted_victim": None, "kills": []}] * 3, "kills": [],
           "kill_count": {"notes": ["the cgroup counted 9 OOM invocation(s), the log holds 3 report(s)"]}}
    procs = {"big": {"grower": False, "grown": False, "grow_s": None, "alive": True, "returncode": None,
                     "cgroup": ""},
             "grower": {"grower": True, "grown": False, "grow_s": None, "alive": False, "returncode": -9,
                        "cgroup": "", "alive_at_bound": ["grower"]}}
    situations.judge(sc, rec, before={}, after={"": {}}, cgs={}, procs=procs, timed_out=True)
    assert rec["outcome"] == "no-victim" and rec["as_expected"] is True
    assert "still looping" in rec["allocating_task"]["grower"]
    assert "9 OOM invocation" in rec["reason"]


def test_judge_no_victim_when_the_charge_was_forced():
    sc = _sc("no-killable-process")
    rec = {"events": [{"verdict": "no-victim", "predicted_victim": None, "kills": []}], "kills": []}
    procs = {"grower": {"grower": True, "grown": True, "grow_s": 0.5, "alive": True, "returncode": None,
                        "cgroup": ""}}
    after = {"": {"peak": 80 << 20, "max": 64 << 20}}
    situations.judge(sc, rec, before={}, after=after, cgs={}, procs=procs, timed_out=False)
    assert rec["as_expected"] is True
    assert "forced the charge past the limit (memory.peak 80.0 MiB > memory.max 64.0 MiB)" in rec["reason"]


def test_judge_throttled():
    sc = _sc("memory-high-throttle")
    rec = {"events": [], "kills": [], "verdict": "no-oom", "outcome": "no-oom",
           "kill_count": {"events": {"": {"high": 30}, "limited": {"high": 30}, "free": {}}}}
    procs = {"throttled": {"grower": True, "grown": True, "grow_s": 2.0, "alive": True, "returncode": None,
                           "cgroup": "limited"},
             "control": {"grower": True, "grown": True, "grow_s": 0.5, "alive": True, "returncode": None,
                         "cgroup": "free"}}
    situations.judge(sc, rec, before={}, after={}, cgs={}, procs=procs, timed_out=False)
    assert rec["outcome"] == "throttled" and rec["as_expected"] is True
    assert rec["throttle"]["slowdown"] == 4.0
    situations.judge(sc, dict(rec, kill_count={"events": {}}), before={}, after={}, cgs={}, procs=procs,
                     timed_out=True)


def test_judge_unfreed_tmpfs():
    sc = _sc("tmpfs-survives-kill")
    rec = {"events": [{"kills": [{"pid": 5}]}], "verdict": "match", "as_expected": True, "reason": "ok",
           "kills": [{"pid": 5, "workload": "grower", "anon_rss_kb": 16384, "file_rss_kb": 4096, "shmem_rss_kb": 0}]}
    after = {"": {"current": 50 << 20, "shmem": 44 << 20, "max": 64 << 20}}
    situations.judge(sc, rec, before={"": {"current": 60 << 20}}, after=after, cgs={}, procs={}, timed_out=False)
    assert rec["as_expected"] is True
    assert rec["unfreed"]["shmem_after_kill"] == 44 << 20
    assert "kubernetes#128339" in rec["reason"] and "freed ~20 MiB" in rec["reason"]


def test_hog_writes_an_unmapped_tmpfs_file(tmp_path):
    """kind tmpfs: the file is written, the writer's RSS does not hold it."""
    path = tmp_path / "f.tmpfs"
    p = subprocess.run([sys.executable, os.path.join(ROOT, "workloads", "hog.py"),
                        "kind=tmpfs", "size=8388608", f"path={path}", "grow=4194304"],
                       input="go\nexit\n", capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.split("\n")
    assert lines[0].startswith("ready ") and lines[1].startswith("grown ")
    assert float(lines[1].split()[1]) >= 0
    assert path.stat().st_size == 12 << 20


def _reclaim_rec() -> dict:
    return {"events": [], "kills": [], "verdict": "no-oom", "outcome": "no-oom", "as_expected": True,
            "reason": "the workloads reached their sizes without an OOM kill",
            "kill_count": {"events": {"": {"max": 64}, "prot": {}, "unprot": {}}}}


def _state(prot_file: int, unprot_file: int) -> dict:
    return {"": {"current": 79 << 20}, "prot": {"current": 25 << 20, "file": prot_file << 20},
            "unprot": {"current": 50 << 20, "file": unprot_file << 20}}


def test_judge_reclaim_suffices_from_the_unprotected_page_cache():
    sc = _sc("memory-low-reclaim-suffices")
    rec = _reclaim_rec()
    situations.judge(sc, rec, before=_state(17, 26), after=_state(17, 10), cgs={}, procs={}, timed_out=False)
    assert rec["as_expected"] is True, rec["reason"]
    assert rec["protection"]["reclaimed_file"] == {"prot": 0, "unprot": 16 << 20}
    assert "unprot (unprotected): page cache 26.0 MiB -> 10.0 MiB (reclaim took 16.0 MiB)" in rec["reason"]
    assert "memory.max was reached 64 time(s)" in rec["reason"]


def test_judge_reclaim_fails_when_protection_gave_way_or_nothing_was_reclaimed():
    sc = _sc("memory-low-reclaim-suffices")
    rec = _reclaim_rec()
    rec["kill_count"]["events"]["prot"] = {"low": 3}
    situations.judge(sc, rec, before=_state(17, 26), after=_state(8, 10), cgs={}, procs={}, timed_out=False)
    assert rec["as_expected"] is False
    assert "prot lost 9.0 MiB of its page cache" in rec["reason"] and "breached 3 time(s)" in rec["reason"]
    rec = _reclaim_rec()
    situations.judge(sc, rec, before=_state(17, 26), after=_state(17, 25), cgs={}, procs={}, timed_out=False)
    assert rec["as_expected"] is False and "never needed reclaim" in rec["reason"]


def test_cache_workloads_read_disjoint_regions_of_the_swap_disk(tmp_path):
    swaps = tmp_path / "swaps"
    swaps.write_text("Filename\tType\tSize\tUsed\tPriority\n/dev/vda  partition\t131068\t0\t-2\n")
    assert situations.swap_device(str(swaps)) == "/dev/vda"
    swaps.write_text("Filename\tType\tSize\tUsed\tPriority\n")
    try:
        situations.swap_device(str(swaps))
    except OSError as e:
        assert "swap_mb" in str(e)
    else:
        raise AssertionError("no swap partition must be an error")
    regions = situations.cache_regions(_sc("memory-low-reclaim-suffices"), "/dev/vda")
    (_, a), (_, b) = regions["kept"], regions["cached"]
    assert a >= situations.CACHE_GAP and b >= a + (16 << 20) + situations.CACHE_GAP


def test_hog_reads_clean_page_cache(tmp_path):
    """kind cache: reads size bytes (and then grow bytes more) from offset, writes nothing."""
    dev = tmp_path / "disk"
    dev.write_bytes(b"\0" * (16 << 20))
    p = subprocess.run([sys.executable, os.path.join(ROOT, "workloads", "hog.py"),
                        "kind=cache", "size=4194304", f"path={dev}", "offset=4194304", "grow=4194304"],
                       input="go\nexit\n", capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("ready ") and "grown " in p.stdout
    assert dev.stat().st_size == 16 << 20


def test_judge_zswap_needs_pages_in_the_pool():
    sc = _sc("zswap-swapped-victim")
    kill = {"pid": 5, "workload": "swapped", "anon_rss_kb": 1, "file_rss_kb": 0, "shmem_rss_kb": 0}
    rec = {"events": [{"kills": [kill]}], "verdict": "match", "as_expected": True, "reason": "ok", "kills": [kill]}
    before = {"": {"zswapped": None}, "(zswap)": {"stored_pages": 8192, "pool_total_size": 3 << 20}}
    situations.judge(sc, rec, before=before, after={}, cgs={}, procs={}, timed_out=False)
    assert rec["as_expected"] is True and "zswap held 32.0 MiB of swapped pages in a 3.0 MiB pool" in rec["reason"]
    rec = {"events": [{"kills": [kill]}], "verdict": "match", "as_expected": True, "reason": "ok", "kills": [kill]}
    situations.judge(sc, rec, before={"": {"zswapped": 0}}, after={}, cgs={}, procs={}, timed_out=False)
    assert rec["as_expected"] is False and "swap bypassed it" in rec["reason"]
