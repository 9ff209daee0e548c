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
])
def test_bad(text, line, words):
    with pytest.raises(ScenarioError) as e:
        parse_scenario(text, "bad.toml")
    msg = str(e.value)
    assert msg.startswith(f"bad.toml:{line}:"), msg
    assert words in msg
    assert "\n" not in msg


def test_unreadable(tmp_path):
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(str(tmp_path / "missing.toml"))
    p = tmp_path / "bin.toml"
    p.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ScenarioError):
        load_scenario(str(p))
