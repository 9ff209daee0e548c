"""The pytest plugin (``harness/pytest_plugin.py``, loaded through the ``pytest11`` entry point), driven
with ``pytester``: every test here runs a user's test file in a separate pytest, as a user would.

One test runs a genuine host OOM through the fixture; the others need no root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    # a subprocess: the plugin is loaded from the installed entry point, as for any user
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs", *args, timeout=600)


def test_plugin_is_registered_through_the_entry_point() -> None:
    from importlib.metadata import entry_points

    eps = [ep for ep in entry_points(group="pytest11") if ep.value == "harness.pytest_plugin"]
    assert eps, "no pytest11 entry point for harness.pytest_plugin: pip install -e . again"


def test_options_and_markers_are_there(pytester: pytest.Pytester) -> None:
    r = _run(pytester, "--help")
    r.stdout.fnmatch_lines(["*--oom-backend=*", "*--oom-kernel*", "*--oom-results*"])
    r = _run(pytester, "--markers")
    r.stdout.fnmatch_lines(["*needs_root*", "*needs_qemu*", "*needs_docker*"])


def test_oom_kernel_parametrises_the_tests_that_use_oom_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_uses(oom_run, oom_kernel):
            assert callable(oom_run)
            print("KERNEL", oom_kernel)

        def test_does_not_use():
            pass
        """
    )
    r = _run(pytester, "--collect-only", "-q", "--oom-kernel", "host", "--oom-kernel", "6.12")
    r.stdout.fnmatch_lines(["*test_uses?kernel=host?*", "*test_uses?kernel=6.12?*", "*test_does_not_use*"])
    assert "test_does_not_use[" not in r.stdout.str()
    r = _run(pytester, "--collect-only", "-q")
    r.stdout.fnmatch_lines(["*test_uses", "*test_does_not_use"])


def test_markers_skip_with_the_reason(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.needs_qemu
        def test_vm():
            pass
        """
    )
    env_path = os.environ.get("PATH", "")
    try:  # no QEMU on PATH: skipped, saying so (as root) or saying root is missing
        os.environ["PATH"] = str(pytester.path)
        r = pytester.runpytest_subprocess("-rs", timeout=300)
    finally:
        os.environ["PATH"] = env_path
    r.assert_outcomes(skipped=1)
    assert "needs_qemu:" in r.stdout.str()
    assert ("qemu-system-x86_64 not installed" in r.stdout.str()) or ("not root" in r.stdout.str())


def test_scenarios_in_every_form_are_understood(tmp_path: Path) -> None:
    from harness.machine.scenario import Scenario, resolve
    from harness.pytest_plugin import _scenario

    toml = """
name = "mine"
[cgroup]
memory_max = "64M"
swap_max = "0"
[[workload]]
name = "hog"
size = "8M"
grow = "until-killed"
[expect]
victim = "hog"
"""
    p = tmp_path / "mine.toml"
    p.write_text(toml)
    import tomllib

    forms = [_scenario("single-hog"), _scenario(str(p)), _scenario(p), _scenario(toml),
             _scenario(tomllib.loads(toml)), _scenario(resolve(["single-hog"], None)[0])]
    assert all(isinstance(s, Scenario) for s in forms)
    assert [s.name for s in forms] == ["single-hog", "mine", "mine", "mine", "mine", "single-hog"]
    assert forms[4].workloads[0].grow is not None
    from harness.machine.scenario import ScenarioError

    with pytest.raises(ScenarioError, match="expect.victim 'nobody' is not a workload name"):
        _scenario({**tomllib.loads(toml), "expect": {"victim": "nobody"}})
    with pytest.raises(TypeError):
        _scenario(42)


def test_oom_run_skips_when_it_cannot_run_here(pytester: pytest.Pytester) -> None:
    """A VM-only scenario on the host backend, and the VM backend without QEMU: skipped, with why."""
    pytester.makepyfile(
        """
        def test_vm_only_on_host(oom_run):
            oom_run("panic-on-oom", backend="host")

        def test_vm_without_qemu(oom_run):
            oom_run("single-hog", backend="vm", kernel="6.12")
        """
    )
    env_path = os.environ.get("PATH", "")
    try:
        os.environ["PATH"] = str(pytester.path)
        r = pytester.runpytest_subprocess("-rs", timeout=300)
    finally:
        os.environ["PATH"] = env_path
    r.assert_outcomes(skipped=2)
    out = r.stdout.str()
    assert "does not run on the host backend" in out
    assert "oom_run on vm:" in out


@pytest.mark.root
def test_a_real_host_oom_through_the_fixture(pytester: pytest.Pytester, host: None, no_debris: None) -> None:
    results = pytester.path / "results"
    pytester.makepyfile(
        """
        def test_single_hog(oom_run):
            r = oom_run("single-hog")
            assert r.verdict == "match", r.reason
            assert r.as_expected is True
            assert r.victims == ["hog"] and r.victim == "hog"
            assert r.predicted == "hog"
            assert "invoked oom-killer" in r.report and "Killed process" in r.report
            assert r.kernel_label == "host" and r.events and r.events[0]["verdict"] == "match"
            print("RESULT", r.verdict, r.victims, r.results_dir)

        def test_my_own_scenario(oom_run):
            r = oom_run({
                "name": "two-hogs",
                "cgroup": {"memory_max": "64M", "swap_max": "0"},
                "workload": [
                    {"name": "small", "size": "8M"},
                    {"name": "big", "size": "24M", "grow": "until-killed"},
                ],
                "expect": {"victim": "big"},
            })
            assert r.victims[0] == "big" and r.as_expected, r.reason
        """
    )
    r = _run(pytester, "-s", "--oom-results", str(results))
    r.assert_outcomes(passed=2)
    assert "RESULT match ['hog'] " + str(results) in r.stdout.str()
    runs = sorted(results.iterdir())
    assert len(runs) == 2 and all((d / "summary.json").is_file() for d in runs)


def test_from_a_fresh_virtualenv(tmp_path: Path) -> None:
    """``pip install <checkout>`` plus pytest, nothing else: the plugin loads and collects.  Slow (a
    full install), so only when OOM_HARNESS_FRESH_VENV=1 (the README says how it was checked)."""
    if os.environ.get("OOM_HARNESS_FRESH_VENV") != "1":
        pytest.skip("set OOM_HARNESS_FRESH_VENV=1 to build a fresh virtualenv and install the checkout into it")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, str(ROOT), "pytest"], check=True, timeout=900)
    (tmp_path / "test_mine.py").write_text("def test_x(oom_run):\n    assert callable(oom_run)\n")
    r = subprocess.run([str(venv / "bin" / "python"), "-m", "pytest", "-q", str(tmp_path / "test_mine.py"),
                        "--oom-kernel", "host"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 passed" in r.stdout
    assert shutil.which("python", path=str(venv / "bin"))
