"""The kernel developer's loop for real: Debian's linux-source-6.12, built, booted, the catalogue run.

* every fragment option lands in the 6.12 .config, the build boots, and the full VM catalogue is
  as expected on it (memcg v2, oom.group, global with and without swap, cpuset and mempolicy on
  the 2-node guest, panic_on_oom);
* a regression demonstration: small patches to mm/oom_kill.c (tests/data/kernel-patches/) that
  change victim selection, each built and compared with the stock build
  (``compare --kernels <stock>,<patched>``): every scenario whose victim changed is a mismatch,
  and the changed rule is named by the rule variants.

Slow (a first build takes minutes on 2 cores; later ones are incremental), root and QEMU; skipped
with the reason printed when the source package cannot be fetched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.core.variants import VARIANTS
from harness.reporting.results import load_run
from vm.kbuild import build_tree, read_config
from vm.kernels import KernelError
from vm.ksource import fetch_source
from vm.paths import cache_root

ROOT = Path(__file__).resolve().parent.parent
PATCHES = ROOT / "tests" / "data" / "kernel-patches"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.vm,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("qemu-system-x86_64") is None,
                       reason="needs root and qemu-system-x86_64"),
]


@pytest.fixture(scope="module")
def tree() -> Path:
    try:
        return fetch_source("6.12")
    except KernelError as e:
        pytest.skip(f"linux-source-6.12 cannot be fetched: {e}")


def _cli(*args: str, results: Path, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    p = subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "OOM_HARNESS_RESULTS": str(results)}, timeout=timeout)
    sys.stderr.write(p.stderr[-3000:])
    return p


def _rows(results: Path) -> dict[str, dict[str, dict]]:
    """kernel label -> scenario -> verdict row (as the harness hands rows out: each mismatch naming the
    rule variants that fit its run), from every run folder under *results*."""
    out: dict[str, dict[str, dict]] = {}
    for v in results.glob("*/verdicts.jsonl"):
        for r in load_run(str(v.parent))[1]:
            out.setdefault(r["kernel_label"], {})[r["scenario"]] = r
    return out


def test_built_612_has_every_option_and_runs_the_vm_catalogue(tree: Path, tmp_path: Path) -> None:
    b = build_tree(tree)
    cfg = read_config(b.build_dir / "out" / ".config")
    for opt in ("CONFIG_PVH", "CONFIG_MEMCG", "CONFIG_SWAP", "CONFIG_NUMA", "CONFIG_CPUSETS",
                "CONFIG_X86_64_ACPI_NUMA", "CONFIG_VIRTIO_CONSOLE", "CONFIG_VIRTIO_BLK", "CONFIG_TRANSPARENT_HUGEPAGE"):
        assert cfg.get(opt) == "y", opt
    p = _cli("run", "--kernel", str(tree), results=tmp_path)
    assert p.returncode == 0, p.stdout[-3000:]
    rows = _rows(tmp_path)[tree.name]
    for name in ("memcg-v2-swap-max", "oom-group", "global-noswap", "global-swap", "cpuset-node1",
                 "mempolicy-bind", "panic-on-oom", "adj-positive", "adj-protected"):
        assert rows[name]["as_expected"] is True, (name, rows[name]["reason"])
    resumed = [r for r in rows.values() if (r.get("vm") or {}).get("resumed_from_snapshot")]
    assert resumed, "no VM resumed from a boot snapshot of the built kernel"


def _patched_tree(stock: Path) -> Path:
    """One hard-linked copy of the stock tree, reused by every patch (so builds after the first are
    incremental); its mm/oom_kill.c is a private file, reset to the stock one before each patch."""
    copy = cache_root() / "regress" / "linux-6.12-regress"
    if not (copy / "Makefile").is_file():
        shutil.rmtree(copy, ignore_errors=True)
        copy.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-al", str(stock), str(copy)], check=True)
    target = copy / "mm" / "oom_kill.c"
    target.unlink()
    shutil.copyfile(stock / "mm" / "oom_kill.c", target)  # a new inode: the stock tree is never written
    return copy


#: patch -> (scenarios to compare, the variant that must be named when a victim changed)
CASES = {
    "oom-adj-ignored": (["adj-positive", "larger-of-two", "near-tie", "memcg-v2-swap-max"], "adj-ignored"),
    "oom-ties-first": (["near-tie", "larger-of-two", "forked-children"], "ties-reversed"),
    "oom-swap-not-counted": (["global-swap", "memcg-v2-swap-max", "larger-of-two"], "swap-not-counted"),
}


@pytest.mark.parametrize("patch", sorted(CASES))
def test_regression_patch_is_caught_and_named(tree: Path, tmp_path: Path, patch: str) -> None:
    scenarios, variant = CASES[patch]
    copy = _patched_tree(tree)
    subprocess.run(["patch", "-p1", "-s", "-d", str(copy), "-i", str(PATCHES / f"{patch}.patch")], check=True)
    p = _cli("compare", "--kernels", f"{tree},{copy}", "--format", "md", *scenarios, results=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    rows = _rows(tmp_path)
    stock, patched = rows[tree.name], rows[copy.name]
    changed = [s for s in scenarios if s in stock and s in patched
               and (stock[s].get("observed_victim") or {}).get("workload")
               != (patched[s].get("observed_victim") or {}).get("workload")]
    for s in scenarios:
        assert stock[s]["verdict"] in ("match", "no-oom"), (s, stock[s]["reason"])
    for s in changed:
        assert patched[s]["verdict"] == "mismatch", (s, patched[s]["reason"])
    runs = [d for d in tmp_path.iterdir() if (d / "env.json").is_file()
            and json.loads((d / "env.json").read_text()).get("kernel_label") == copy.name]
    summary = json.loads((runs[0] / "variants.json").read_text()) if (runs[0] / "variants.json").is_file() else {}
    mism = [s for s in scenarios if patched[s]["verdict"] == "mismatch"]  # e.g. a tie between two "forker"s
    print(f"\n{patch}: victims changed in {changed or 'no scenario'}; mismatch in {mism or 'no scenario'}; "
          f"variants: {summary.get('text') or 'model ok'}")
    if changed or summary.get("text"):  # a victim or an oom_score value moved: the rule must be named
        assert variant in [v["variant"] for v in summary["consistent"]], summary
        assert "rule variants consistent with:" in p.stderr + p.stdout
    rule = next(v.rule for v in VARIANTS if v.name == variant)
    for s in mism:  # ... and each mismatching scenario's own reason names it (the row, KTAP, JUnit, report)
        assert patched[s]["reason"].startswith("consistent with: "), (s, patched[s]["reason"])
        assert f"{rule} ({variant}; " in patched[s]["reason"], (s, patched[s]["reason"])
        assert variant in patched[s]["rule_variants"]
        assert f"{s} on {copy.name}: consistent with: " in p.stdout  # the report's "why" under its differences
        assert f"{rule} ({variant}; " in p.stdout
