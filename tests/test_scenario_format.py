"""Scenario files: valid ones load, invalid ones are rejected with file:line: reason."""

from __future__ import annotations

import pytest

from harness.machine.scenario import ScenarioError, catalogue, load_scenario, parse_scenario

GOOD = """
name = "t"
[cgroup]
memory_max = "64M"
[[workload]]
name = "a"
size = "8M"
grow = "until-killed"
[expect]
victim = "a"
"""


def test_catalogue_loads():
    names = [s.name for s in catalogue()]
    assert len(names) == len(set(names))
    assert {"single-hog", "global-noswap", "panic-on-oom", "cpuset-node1"} <= set(names)


def test_good():
    sc = parse_scenario(GOOD, "t.toml")
    assert sc.cgroup.memory_max == 64 << 20
    assert sc.workloads[0].grow == "until-killed"


@pytest.mark.parametrize("text,line,words", [
    ("name = \n", 1, "invalid TOML"),
    (GOOD.replace('memory_max = "64M"', 'memory_max = "64Q"'), 4, "bad size"),
    (GOOD.replace('size = "8M"', 'size = "8M"\ncolour = "red"'), 8, "unknown key 'colour'"),
    (GOOD.replace('victim = "a"', 'victim = "zz"'), 10, "not a workload name"),
    (GOOD.replace('[cgroup]\nmemory_max = "64M"\n', '[cgroup]\n'), 3, "needs memory_max"),
    (GOOD.replace('memory_max = "64M"', 'memory_max = "none"'), 4, "only allowed for VM-only"),
    (GOOD.replace('name = "a"\n', 'name = "a"\nkind = "rocks"\n'), 7, "unknown kind"),
    (GOOD.replace('name = "a"\n', 'name = "a"\noom_score_adj = 5000\n'), 7, "outside -1000..1000"),
    # every typed field: a wrong type or range is a file:line error, never a traceback
    (GOOD.replace('name = "a"\n', 'name = "a"\noom_score_adj = "high"\n'), 7, "oom_score_adj must be an integer"),
    (GOOD.replace('name = "a"\n', 'name = "a"\nuid = "nobody"\n'), 7, "uid must be an integer"),
    (GOOD.replace('name = "a"\n', 'name = "a"\ncount = "x"\n'), 7, "count must be an integer"),
    (GOOD.replace('name = "a"\n', 'name = "a"\ncount = 0\n'), 7, "count 0 outside 1..1000"),
    (GOOD.replace('name = "a"\n', 'name = "a"\nthreads = -1\n'), 7, "threads -1 outside"),
    (GOOD.replace('name = "a"\n', 'name = "a"\nchildren = 1.5\n'), 7, "children must be an integer"),
    (GOOD.replace('name = "a"\n', 'name = "a"\nrate_mb_s = "fast"\n'), 7, "rate_mb_s must be a number"),
    (GOOD.replace('name = "a"\n', 'name = "a"\nstart_delay_s = -1\n'), 7, "start_delay_s -1 outside"),
    (GOOD.replace('name = "a"\n', 'name = "a"\ngid = "x"\n'), 7, "gid must be an integer"),
    (GOOD.replace('name = "a"\n', 'name = "a"\nmempolicy = "interleave"\n'), 7, "use bind:NODES"),
    (GOOD.replace('name = "a"\n', 'name = "a"\nmain = "yes"\n'), 7, "main must be true or false"),
    (GOOD.replace('size = "8M"', 'size = -8'), 7, "bad size -8"),
    (GOOD.replace('grow = "until-killed"', 'grow = true'), 8, "bad size True"),
    (GOOD.replace('name = "t"', 'name = "t t"'), 2, "letters, digits"),
    (GOOD.replace('name = "t"', 'name = "t"\ntimeout_s = "10"'), 3, "timeout_s must be a number"),
    (GOOD.replace('name = "t"', 'name = "t"\ntimeout_s = 0'), 3, "timeout_s 0 outside"),
    (GOOD.replace('[cgroup]', '[vm]\nmem_mb = "1G"\n[cgroup]'), 4, "mem_mb must be an integer"),
    (GOOD.replace('[cgroup]', '[vm]\ndisk = 3\n[cgroup]'), 4, "unknown key 'disk' in [vm]"),
    (GOOD.replace('memory_max = "64M"', 'memory_max = "64M"\noom_group = "yes"'), 5, "oom_group must be true"),
    ('bound_is_point = true\n' + GOOD, 1, "bound_is_point must say"),
])
def test_bad(text, line, words):
    with pytest.raises(ScenarioError) as e:
        parse_scenario(text, "bad.toml")
    msg = str(e.value)
    assert msg.startswith(f"bad.toml:{line}:"), msg
    assert words in msg
    assert "\n" not in msg


def test_bound_is_point_marks_the_scenarios_whose_point_is_a_timeout():
    """Timing targets (bench_vm.py: no scenario above 5 s) judge these apart; each says why in its file
    and in its description."""
    bounded = {s.name: s for s in catalogue() if s.bound_is_point}
    assert set(bounded) == {"no-killable-process"}
    sc = bounded["no-killable-process"]
    assert f"{sc.timeout_s:.0f} s bound" in sc.bound_is_point and "bound" in sc.description
    assert parse_scenario(GOOD, "t.toml").bound_is_point is None


def test_unreadable(tmp_path):
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(str(tmp_path / "missing.toml"))
    p = tmp_path / "bin.toml"
    p.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ScenarioError):
        load_scenario(str(p))
