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
KINDS_VM = KINDS_HOST + ["anon", "shmem"]


def one_scenario(rng: random.Random, i: int, backend: str) -> str:
    """The TOML text of one random scenario (always valid; an OOM is certain: the grower never stops)."""
    limit = rng.choice([48, 64, 96, 128])
    n = rng.randint(1, 4)
    budget = int(limit * rng.uniform(0.35, 0.75))
    sizes = sorted((rng.randint(2, max(3, budget // n)) for _ in range(n)), reverse=True)
    lines = [f'name = "random-{i:03d}"', 'description = "random scenario (scripts/explore_scenarios.py)"',
             f'backends = ["{backend}"]', "timeout_s = 60", "", "[cgroup]", f'memory_max = "{limit}M"', ""]
    names = []
    for j, size in enumerate(sizes):
        kind = rng.choice(KINDS_HOST if backend == "host" else KINDS_VM)
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
            lo = 0 if backend == "host" else -999
            lines.append(f"oom_score_adj = {rng.randint(lo, 1000)}")
        if rng.random() < 0.3:
            lines.append("uid = 65534")
        lines.append("")
    lines += ["[[workload]]", 'name = "grower"', f'size = "{rng.randint(1, 6)}M"', 'grow = "until-killed"']
    if rng.random() < 0.3:
        lines.append(f"oom_score_adj = {rng.randint(0, 1000)}")
    names.append("grower")
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
