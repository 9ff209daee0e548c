#!/usr/bin/env python3
"""Run random (seeded) scenarios for real and report every verdict that is not a plain "match".

The catalogue is hand-made; users write their own scenarios, and a scenario the authors did not
think of is where the model, the engine or a runner can be wrong.  This generates N valid scenario
files (workload kinds, sizes, oom_score_adj, uids, growth, limits drawn at random, within what the
chosen backend can express: the host gets positive oom_score_adj only and cgroup v1-safe kinds),
runs them with ``oom-harness run --backend B`` exactly as a user would, and prints the verdict counts
and, for each scenario whose verdict is not ``match``, its file and reason.  A ``mismatch`` or
``error`` is a finding to explain; ``undecidable`` (a near-tie the kernel's integer rounding decides)
is reported with its reason.  The expected victim written into each file is a placeholder (the
first workload): only the verdict -- the kernel's choice against the model's -- is judged here.

    python scripts/explore_scenarios.py [-n 40] [--seed 1] [--backend host|vm] [--kernel 6.12] [--keep DIR]
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

KINDS_HOST = ["anon", "anon", "anon", "shmem", "threads", "fork", "mlock", "thp"]
KINDS_VM = KINDS_HOST + ["anon", "shmem", "file", "tmpfs"]


def one_scenario(rng: random.Random, i: int, backend: str) -> str:
    """The TOML text of one random scenario (always valid; an OOM is certain: the grower never stops).

    In the VM (cgroup v2, swap, CAP_SYS_RESOURCE) a scenario may also get swap with a swap.max,
    child cgroups (one of them limited: the OOM domain is then the child), memory.oom.group,
    negative oom_score_adj and page-cache or tmpfs workloads."""
    vm = backend == "vm"
    limit = rng.choice([48, 64, 96, 128])
    n = rng.randint(1, 4)
    budget = int(limit * rng.uniform(0.35, 0.75))
    sizes = sorted((rng.randint(2, max(3, budget // n)) for _ in range(n)), reverse=True)
    swap = vm and rng.random() < 0.25
    children = vm and rng.random() < 0.3
    group = vm and rng.random() < 0.2
    lines = [f'name = "random-{i:03d}"', 'description = "random scenario (scripts/explore_scenarios.py)"',
             f'backends = ["{backend}"]', "timeout_s = 60", ""]
    if vm:
        lines += ['requires = ["cgroup2"]', ""]
    if swap:
        lines += ["[vm]", "swap_mb = 128", ""]
    lines += ["[cgroup]", f'memory_max = "{limit}M"']
    if swap:
        lines.append(f'swap_max = "{rng.choice([8, 16, 32])}M"')
    if group:
        lines.append("oom_group = true")
    lines.append("")
    if children:
        lines += ["[[cgroup.children]]", 'name = "A"']
        if rng.random() < 0.5:
            lines.append(f'memory_max = "{int(limit * rng.uniform(0.5, 0.8))}M"')
        lines += ["", "[[cgroup.children]]", 'name = "B"', ""]
    names = []
    kinds = KINDS_VM if vm else KINDS_HOST
    for j, size in enumerate(sizes):
        kind = rng.choice(kinds)
        name = f"w{j}{kind[:3]}"
        names.append(name)
        lines += ["[[workload]]", f'name = "{name}"', f'kind = "{kind}"']
        if kind == "fork":
            kids = rng.randint(1, 3)
            child = rng.randint(1, 4)
            size = max(2, size - kids * child)
            lines += [f"children = {kids}", f'child_size = "{child}M"']
        if kind == "threads":
            lines.append(f"threads = {rng.randint(2, 6)}")
        lines.append(f'size = "{size}M"')
        if rng.random() < 0.4:
            lines.append(f"oom_score_adj = {rng.randint(0 if not vm else -999, 1000)}")
        if rng.random() < 0.3:
            lines.append("uid = 65534")
        if children:
            lines.append(f'cgroup = "{rng.choice(["A", "B"])}"')  # v2: processes only in leaves
        lines.append("")
    lines += ["[[workload]]", 'name = "grower"', f'size = "{rng.randint(1, 6)}M"', 'grow = "until-killed"']
    if rng.random() < 0.3:
        lines.append(f"oom_score_adj = {rng.randint(0, 1000)}")
    if children:
        lines.append('cgroup = "A"')
    names.append("grower")
    if group:
        victims = ", ".join(f'"{n}"' for n in names)
        lines += ["", "[expect]", 'outcome = "group-kill"', f"victim = [{victims}]", ""]
    else:
        lines += ["", "[expect]", 'outcome = "kill"', f'victim = "{names[0]}"', ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=40)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--backend", default="host", choices=["host", "vm"])
    ap.add_argument("--kernel", default="6.12")
    ap.add_argument("--keep", type=Path, help="write the scenarios and results here (default: a temp dir)")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    work = args.keep or Path(tempfile.mkdtemp(prefix="oomh-explore-"))
    (work / "scenarios").mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(args.n):
        f = work / "scenarios" / f"random-{i:03d}.toml"
        f.write_text(one_scenario(rng, i, args.backend))
        files.append(str(f))
    cmd = [sys.executable, "-m", "harness", "run", "--backend", args.backend, "--results", str(work / "results")]
    if args.backend == "vm":
        cmd += ["--kernel", args.kernel]
    print(f"running {args.n} random scenarios (seed {args.seed}) on {args.backend}: {work}", file=sys.stderr)
    subprocess.run(cmd + files, cwd=ROOT, check=False)
    files_out = (work / "results").glob("*/verdicts.jsonl")
    verdicts = [json.loads(ln) for f in files_out for ln in f.read_text().splitlines() if ln]
    counts = collections.Counter(r.get("verdict") for r in verdicts)
    print(f"\nverdicts over {len(verdicts)} scenarios: {dict(counts)}")
    for r in sorted(verdicts, key=lambda r: r["scenario"]):
        if r.get("verdict") != "match":
            print(f"  {r['scenario']}: {r.get('verdict')} — {(r.get('reason') or '')[:300]}")
    return 0 if set(counts) <= {"match", "undecidable"} else 1


if __name__ == "__main__":
    sys.exit(main())
