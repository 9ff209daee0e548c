"""Declarative scenario files (TOML): limits, workloads, trigger, and the expected outcome.

Example::

    name = "two-hogs-larger-dies"
    description = "Two anonymous hogs; the larger one is the victim."
    backends = ["host", "vm", "docker"]

    [cgroup]
    memory_max = "64M"        # always required on the host ("none" only for whole-VM OOMs)
    swap_max = "0"

    [[workload]]
    name = "big"
    kind = "anon"
    size = "34M"

    [[workload]]
    name = "small"
    size = "12M"
    grow = "until-killed"     # the trigger: grows after the snapshot

    [expect]
    outcome = "kill"          # kill | no-oom | group-kill | panic
    victim = "big"

Every problem is reported as ``file:line: reason`` (the line of the offending key when it can be
found), and nothing runs until the whole file is valid.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.errors import HarnessError

from .sandbox import parse_size

#: cache: clean page cache read from the VM's block device (the swap disk: the guest has no disk filesystem)
KINDS = {"anon", "shmem", "file", "mlock", "thp", "threads", "fork", "many", "tmpfs", "hugetlb", "cache"}
#: no-victim: an OOM happened and the kernel killed nobody (nothing killable); throttled: memory.high
#: slowed the growers, memory.events "high" grew, nothing was killed.
OUTCOMES = {"kill", "no-oom", "group-kill", "panic", "no-victim", "throttled"}
BACKENDS = {"host", "vm", "docker"}

__all__ = ["Scenario", "Workload", "CgroupSpec", "load_scenario", "ScenarioError", "catalogue", "KINDS"]


class ScenarioError(HarnessError):
    """A scenario file is invalid; the message is ``file:line: reason``."""


@dataclass
class CgroupSpec:
    name: str = ""
    memory_max: int | None = None
    swap_max: int | None = 0
    memory_high: int | None = None
    oom_group: bool = False
    memory_min: int | None = None  # cgroup v2 memory.min / memory.low (reclaim protection)
    memory_low: int | None = None
    cpuset_mems: str | None = None  # VM only (cgroup v2 cpuset)
    children: list[CgroupSpec] = field(default_factory=list)


@dataclass
class Workload:
    name: str
    kind: str = "anon"
    size: int = 0
    grow: int | str | None = None  # bytes, or "until-killed"
    rate_mb_s: float = 0.0
    oom_score_adj: int = 0
    uid: int = 0
    gid: int | None = None
    threads: int = 0
    children: int = 0
    child_size: int = 0
    cgroup: str = ""  # name of a child cgroup; "" = the scenario's cgroup
    mempolicy: str | None = None  # "bind:1" (VM, NUMA)
    start_delay_s: float = 0.0
    main: bool = False  # docker: the container's main process (elsewhere: an ordinary workload)

    def spec(self) -> dict[str, Any]:
        """What workloads/hog.py receives."""
        d: dict[str, Any] = {"kind": self.kind, "size": self.size}
        if self.grow is not None:
            d["grow"] = self.grow
        if self.rate_mb_s:
            d["rate_mb_s"] = self.rate_mb_s
        if self.threads:
            d["threads"] = self.threads
        if self.children:
            d["children"] = self.children
            d["child_size"] = self.child_size
        if self.mempolicy:
            d["mempolicy"] = self.mempolicy
        return d


def spec_argv(spec: Mapping[str, Any]) -> list[str]:
    """A workload spec as workloads/hog.py reads it: one ``key=value`` word per set field.

    Not JSON on purpose: the hog would have to import json (and re), ~0.1 s of every hog's start
    under TCG; each value is a number or a plain string (a kind, a path, a name, ``until-killed``).
    """
    words = []
    for key, value in spec.items():
        if value is None:
            continue
        text = str(value)
        if "\n" in text or "=" in key:
            raise ValueError(f"workload spec {key}={text!r} cannot be passed to the hog")
        words.append(f"{key}={text}")
    return words


@dataclass
class Scenario:
    name: str
    path: str
    description: str = ""
    backends: list[str] = field(default_factory=lambda: ["host", "vm"])
    cgroup: CgroupSpec = field(default_factory=CgroupSpec)
    workloads: list[Workload] = field(default_factory=list)
    expect_outcome: str = "kill"
    expect_victim: str | list[str] | None = None
    timeout_s: float = 15.0
    vm: dict[str, Any] = field(default_factory=dict)  # swap_mb, numa_nodes, mem_mb, sysctl
    sysctl: dict[str, str] = field(default_factory=dict)
    flaky: str | None = None  # declared reason, if the kernel's choice is legitimately unstable
    second_victim_ok: str | None = None  # declared reason why a second kill may legitimately follow
    requires: list[str] = field(default_factory=list)  # cgroup2 | numa | swap | zswap
    trigger: str = "grow"  # grow: the growers are the trigger; sysrq-f: echo f > /proc/sysrq-trigger (VM)
    #: Why this scenario's point is its timeout (the kernel does nothing, the harness stops it at the bound):
    #: such a scenario takes at least ``timeout_s`` by design, and timing targets judge it apart.
    bound_is_point: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def growers(self) -> list[Workload]:
        return [w for w in self.workloads if w.grow is not None]

    @property
    def needs_vm(self) -> bool:
        return "host" not in self.backends

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, "raw": self.raw}


class _Ctx:
    def __init__(self, path: str, text: str) -> None:
        self.path, self.text = path, text

    def fail(self, reason: str, key: str | None = None, section: str | None = None) -> ScenarioError:
        return ScenarioError(f"{self.path}:{self.line_of(key, section)}: {reason}")

    def line_of(self, key: str | None, section: str | None = None) -> int:
        lines = self.text.splitlines()
        start = 0
        if section:
            for i, ln in enumerate(lines):
                if re.match(r"\s*\[+\s*" + re.escape(section) + r"\s*\]+", ln):
                    start = i
                    break
        if key:
            for i in range(start, len(lines)):
                if re.match(r"\s*" + re.escape(key) + r"\s*=", lines[i]):
                    return i + 1
        return start + 1


_TOP = {
    "name",
    "description",
    "backends",
    "cgroup",
    "workload",
    "expect",
    "timeout_s",
    "vm",
    "sysctl",
    "flaky",
    "requires",
    "trigger",
    "bound_is_point",
}
TRIGGERS = {"grow", "sysrq-f"}
REQUIREMENTS = {"cgroup2", "numa", "swap", "zswap"}
_CG = {"memory_max", "swap_max", "memory_high", "memory_min", "memory_low", "oom_group", "cpuset_mems", "children",
       "name"}
_WL = {
    "name",
    "kind",
    "size",
    "grow",
    "rate_mb_s",
    "oom_score_adj",
    "uid",
    "gid",
    "threads",
    "children",
    "child_size",
    "cgroup",
    "mempolicy",
    "count",
    "start_delay_s",
    "main",
}


def _size(c: _Ctx, v: Any, key: str, section: str | None) -> int | None:
    if isinstance(v, bool) or (isinstance(v, int) and v < 0) or not isinstance(v, (int, str, type(None))):
        raise c.fail(f"bad size {v!r} for {key}: use bytes or a number with K/M/G (e.g. 64M)", key, section)
    try:
        return parse_size(v)
    except ValueError as e:
        raise c.fail(str(e), key, section) from None


def _int(c: _Ctx, d: dict[str, Any], key: str, section: str | None, default: int, lo: int, hi: int) -> int:
    """An integer field within [lo, hi] (TOML gives ints; a string or a float is a mistake to name)."""
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int):
        raise c.fail(f"{key} must be an integer, not {v!r}", key, section)
    if not lo <= v <= hi:
        raise c.fail(f"{key} {v} outside {lo}..{hi}", key, section)
    return v


def _num(c: _Ctx, d: dict[str, Any], key: str, section: str | None, default: float, lo: float, hi: float) -> float:
    """A number field (int or float) within [lo, hi]."""
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise c.fail(f"{key} must be a number, not {v!r}", key, section)
    if not lo <= v <= hi:
        raise c.fail(f"{key} {v} outside {lo}..{hi}", key, section)
    return float(v)


def _str(c: _Ctx, d: dict[str, Any], key: str, section: str | None, default: str | None = None) -> str | None:
    v = d.get(key, default)
    if v is not None and not isinstance(v, str):
        raise c.fail(f"{key} must be a string, not {v!r}", key, section)
    return v


def _bool(c: _Ctx, d: dict[str, Any], key: str, section: str | None) -> bool:
    v = d.get(key, False)
    if not isinstance(v, bool):
        raise c.fail(f"{key} must be true or false, not {v!r}", key, section)
    return v


_MEMPOLICY = re.compile(r"bind:\d+(?:-\d+)?(?:,\d+(?:-\d+)?)*")


def _cgroup(c: _Ctx, d: dict[str, Any], section: str, top: bool) -> CgroupSpec:
    for k in d:
        if k not in _CG:
            raise c.fail(f"unknown key {k!r} in [{section}] (allowed: {', '.join(sorted(_CG))})", k, section)
    spec = CgroupSpec(name=_str(c, d, "name", section, "") or "")
    if top and "memory_max" not in d:
        raise c.fail(
            "[cgroup] needs memory_max (a host workload never runs without a limit; "
            '"none" is allowed only for whole-VM scenarios)',
            None,
            section,
        )
    spec.memory_max = _size(c, d.get("memory_max"), "memory_max", section)
    spec.swap_max = _size(c, d.get("swap_max", 0 if top else None), "swap_max", section)
    spec.memory_high = _size(c, d.get("memory_high"), "memory_high", section)
    spec.memory_min = _size(c, d.get("memory_min"), "memory_min", section)
    spec.memory_low = _size(c, d.get("memory_low"), "memory_low", section)
    spec.oom_group = _bool(c, d, "oom_group", section)
    spec.cpuset_mems = _str(c, d, "cpuset_mems", section)
    if not isinstance(d.get("children", []), list):
        raise c.fail("children must be a list of [[cgroup.children]] tables", "children", section)
    for ch in d.get("children", []):
        if not isinstance(ch, dict) or not ch.get("name"):
            raise c.fail("every [[cgroup.children]] needs a name", "children", section)
        spec.children.append(_cgroup(c, ch, "cgroup.children", False))
    return spec


def _workloads(c: _Ctx, items: list[Any], cg_names: set[str]) -> list[Workload]:
    out: list[Workload] = []
    names: set[str] = set()
    for d in items:
        if not isinstance(d, dict):
            raise c.fail("[[workload]] entries must be tables", None, "workload")
        for k in d:
            if k not in _WL:
                raise c.fail(f"unknown key {k!r} in [[workload]] (allowed: {', '.join(sorted(_WL))})", k, "workload")
        name = d.get("name")
        if not name or not isinstance(name, str):
            raise c.fail("every [[workload]] needs a name", None, "workload")
        count = _int(c, d, "count", "workload", 1, 1, 1000)
        kind = d.get("kind", "anon")
        if kind not in KINDS:
            raise c.fail(
                f"workload {name}: unknown kind {kind!r} (one of {', '.join(sorted(KINDS))})", "kind", "workload"
            )
        grow = d.get("grow")
        if grow is not None and grow != "until-killed":
            grow = _size(c, grow, "grow", "workload")
        adj = d.get("oom_score_adj", 0)
        if isinstance(adj, int) and not isinstance(adj, bool) and not -1000 <= adj <= 1000:
            raise c.fail(f"workload {name}: oom_score_adj {adj} outside -1000..1000", "oom_score_adj", "workload")
        adj = _int(c, d, "oom_score_adj", "workload", 0, -1000, 1000)
        uid = _int(c, d, "uid", "workload", 0, 0, 2**31 - 2)
        gid = d.get("gid")
        if gid is not None:
            gid = _int(c, d, "gid", "workload", 0, 0, 2**31 - 2)
        threads = _int(c, d, "threads", "workload", 4 if kind == "threads" else 0, 0, 1024)
        children = _int(c, d, "children", "workload", 0, 0, 4096)
        rate = _num(c, d, "rate_mb_s", "workload", 0, 0, 1e6)
        delay = _num(c, d, "start_delay_s", "workload", 0, 0, 3600)
        mempolicy = _str(c, d, "mempolicy", "workload")
        if mempolicy is not None and not _MEMPOLICY.fullmatch(mempolicy):
            raise c.fail(f"workload {name}: mempolicy {mempolicy!r}: use bind:NODES (e.g. bind:1 or bind:0-1)",
                         "mempolicy", "workload")
        main = _bool(c, d, "main", "workload")
        cg = _str(c, d, "cgroup", "workload", "") or ""
        if cg and cg not in cg_names:
            raise c.fail(f"workload {name}: no child cgroup named {cg!r}", "cgroup", "workload")
        for i in range(count):
            wname = name if count == 1 else f"{name}{i}"
            if wname in names:
                raise c.fail(f"duplicate workload name {wname!r}", "name", "workload")
            names.add(wname)
            out.append(
                Workload(
                    name=wname,
                    kind=kind,
                    size=_size(c, d.get("size", 0), "size", "workload") or 0,
                    grow=grow,
                    rate_mb_s=rate,
                    oom_score_adj=adj,
                    uid=uid,
                    gid=gid,
                    threads=threads,
                    children=children,
                    child_size=_size(c, d.get("child_size", 0), "child_size", "workload") or 0,
                    cgroup=cg,
                    mempolicy=mempolicy,
                    start_delay_s=delay,
                    main=main,
                )
            )
    return out


#: [vm] keys and their bounds (what vm/machine.py can boot on this kind of host)
_VM = {"mem_mb": (64, 16384), "numa_nodes": (1, 2), "swap_mb": (0, 16384), "smp": (1, 8)}


def _all_cg_names(spec: CgroupSpec) -> set[str]:
    out = set()
    for ch in spec.children:
        out.add(ch.name)
        out |= _all_cg_names(ch)
    return out


def parse_scenario(text: str, path: str = "<string>") -> Scenario:
    try:
        d = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"at line (\d+)", str(e))
        raise ScenarioError(f"{path}:{m.group(1) if m else 1}: invalid TOML: {str(e).split(' (at line')[0]}") from None
    return scenario_from_dict(d, path, text)


def scenario_from_dict(d: dict[str, Any], path: str = "<dict>", text: str = "") -> Scenario:
    """A scenario from the data a TOML file holds (``tomllib.loads``' result), validated the same way;
    error messages point into *text* when it is given."""
    c = _Ctx(path, text)
    if not isinstance(d, dict):
        raise ScenarioError(f"{path}: a scenario is a table (dict), not {type(d).__name__}")
    for k in d:
        if k not in _TOP:
            raise c.fail(f"unknown key {k!r} (allowed: {', '.join(sorted(_TOP))})", k)
    name = _str(c, d, "name", None) or os.path.splitext(os.path.basename(path))[0]
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}", name):
        raise c.fail(f"name {name!r}: letters, digits and _ . + - only (it names cgroups and result files)", "name")
    timeout_s = _num(c, d, "timeout_s", None, 15, 0.5, 3600)
    for table in ("vm", "sysctl"):
        if not isinstance(d.get(table, {}), dict):
            raise c.fail(f"[{table}] must be a table", table)
    vm = d.get("vm", {})
    for k in vm:
        if k not in _VM:
            raise c.fail(f"unknown key {k!r} in [vm] (allowed: {', '.join(sorted(_VM))})", k, "vm")
        _int(c, vm, k, "vm", 0, *_VM[k])
    backends = d.get("backends", ["host", "vm"])
    if not isinstance(backends, list) or not set(backends) <= BACKENDS:
        raise c.fail(f"backends must be a list drawn from {sorted(BACKENDS)}", "backends")
    if "cgroup" not in d:
        raise c.fail("missing [cgroup] table (every scenario needs a memory limit)")
    cg = _cgroup(c, d["cgroup"], "cgroup", True)
    if cg.memory_max is None and "host" in backends:
        raise c.fail(
            'memory_max = "none" is only allowed for VM-only scenarios (backends = ["vm"])', "memory_max", "cgroup"
        )
    wl = _workloads(c, d.get("workload", []), _all_cg_names(cg))
    if not wl:
        raise c.fail("no [[workload]] defined")
    requires = d.get("requires", [])
    if not isinstance(requires, list) or not set(requires) <= REQUIREMENTS:
        raise c.fail(f"requires must be a list drawn from {sorted(REQUIREMENTS)}", "requires")
    exp = d.get("expect", {})
    for k in exp:
        if k not in ("outcome", "victim", "second_victim_ok"):
            raise c.fail(f"unknown key {k!r} in [expect] (allowed: outcome, victim, second_victim_ok)", k, "expect")
    outcome = exp.get("outcome", "kill")
    if outcome not in OUTCOMES:
        raise c.fail(f"expect.outcome must be one of {sorted(OUTCOMES)}", "outcome", "expect")
    victim = exp.get("victim")
    names = {w.name for w in wl}
    for v in [victim] if isinstance(victim, str) else (victim or []):
        if v not in names and v != "*":
            raise c.fail(f"expect.victim {v!r} is not a workload name", "victim", "expect")
    if outcome in ("kill", "group-kill") and victim is None:
        raise c.fail("expect.victim is required when outcome is kill or group-kill", None, "expect")
    if sum(1 for w in wl if w.main) > 1:
        raise c.fail("at most one workload can be the container's main process (main = true)", "main", "workload")
    if outcome == "no-victim" and victim is not None:
        raise c.fail("expect.victim makes no sense when outcome is no-victim (the kernel kills nobody)", "victim",
                     "expect")
    trigger = d.get("trigger", "grow")
    if trigger not in TRIGGERS:
        raise c.fail(f"trigger must be one of {sorted(TRIGGERS)}", "trigger")
    if trigger == "sysrq-f" and "host" in backends:
        raise c.fail('trigger = "sysrq-f" OOM-kills on the whole machine: only for backends = ["vm"]', "trigger")
    bound = d.get("bound_is_point")
    if bound is not None and (not isinstance(bound, str) or not bound.strip()):
        raise c.fail("bound_is_point must say, as a string, why the scenario's point is its timeout",
                     "bound_is_point")
    if not any(w.grow is not None for w in wl) and outcome != "no-oom" and trigger == "grow":
        raise c.fail('no workload grows: give the trigger workload grow = "until-killed" or a size', None, "workload")
    return Scenario(
        name=name,
        path=path,
        description=d.get("description", ""),
        backends=backends,
        cgroup=cg,
        workloads=wl,
        expect_outcome=outcome,
        expect_victim=victim,
        timeout_s=timeout_s,
        vm=dict(d.get("vm", {})),
        sysctl={k: str(v) for k, v in d.get("sysctl", {}).items()},
        flaky=d.get("flaky"),
        requires=requires,
        second_victim_ok=exp.get("second_victim_ok"),
        trigger=trigger,
        bound_is_point=bound,
        raw=d,
    )


def load_scenario(path: str) -> Scenario:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ScenarioError(f"{path}: cannot read: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ScenarioError(f"{path}:1: not UTF-8 text") from None
    return parse_scenario(text, path)


CATALOGUE_DIR = os.path.join(os.path.dirname(__file__), "catalogue")


def catalogue(backend: str | None = None) -> list[Scenario]:
    """Every scenario shipped with the harness (``harness/catalogue/<group>/*.toml``)."""
    out = []
    for group in sorted(os.listdir(CATALOGUE_DIR)):
        gdir = os.path.join(CATALOGUE_DIR, group)
        if not os.path.isdir(gdir):
            continue
        for fn in sorted(os.listdir(gdir)):
            if fn.endswith(".toml"):
                sc = load_scenario(os.path.join(gdir, fn))
                if backend is None or backend in sc.backends:
                    out.append(sc)
    return out


def resolve(names: list[str], backend: str | None) -> list[Scenario]:
    """Scenario names from the catalogue, or paths to scenario files."""
    if not names:
        return catalogue(backend)
    allsc = {s.name: s for s in catalogue()}
    out = []
    for n in names:
        if os.path.exists(n) or n.endswith(".toml"):
            out.append(load_scenario(n))
        elif n in allsc:
            out.append(allsc[n])
        else:
            raise HarnessError(f"unknown scenario {n!r}: see `oom-harness list`, or give a .toml path")
    return out
