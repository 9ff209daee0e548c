"""KTAP (``run --format ktap``) and JUnit XML (``--junit``): conformance to the KTAP spec and the JUnit XSD.

KTAP is checked by ``tests/ktap_spec.py``, a checker written from the kernel's
``Documentation/dev-tools/ktap.rst`` (and first tried on the spec's own examples, below), and by
the kernel's own KTAP reader, ``tools/testing/kunit/kunit_parser.py`` of Debian's 6.12 source
tree (imported from the tree in the cache, fetched with the harness's ``kernel-source`` when
missing, skipped with the reason when it cannot be had); JUnit against ``tests/data/junit.xsd``
with ``xmlschema``.  Saved runs are made with the harness's own
:class:`RunRecorder`, exactly as ``oom-harness run`` leaves them.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from conftest import record_kills
from ktap_spec import check

from harness.machine.record import ScenarioRecord
from harness.reporting.junit import junit_xml, kernel_logs
from harness.reporting.ktap import ktap, ktap_runs
from harness.reporting.results import RunRecorder

ROOT = Path(__file__).parent.parent
XSD = Path(__file__).parent / "data" / "junit.xsd"

# -------------------------------------------------------------------------------------- the checker

SPEC_NESTED = """KTAP version 1
1..1
  KTAP version 1
  1..2
  ok 1 test_1
  not ok 2 test_2
# example failed
not ok 1 example
"""

SPEC_DEEP = """KTAP version 1
1..2
  KTAP version 1
  1..2
    KTAP version 1
    1..2
    not ok 1 test_1
    ok 2 test_2
  not ok 1 test_3
  ok 2 test_4 # SKIP
not ok 1 example_test_1
ok 2 example_test_2
"""

SPEC_FULL = """KTAP version 1
1..1
  KTAP version 1
  1..3
    KTAP version 1
    1..1
    # test_1: initializing test_1
    ok 1 test_1
  ok 1 example_test_1
    KTAP version 1
    1..2
    ok 1 test_1 # SKIP test_1 skipped
    ok 2 test_2
  ok 2 example_test_2
    KTAP version 1
    1..3
    ok 1 test_1
    # test_2: FAIL
    not ok 2 test_2
    ok 3 test_3 # SKIP test_3 skipped
  not ok 3 example_test_3
not ok 1 main_test
"""


@pytest.mark.parametrize("doc", [SPEC_NESTED, SPEC_DEEP, SPEC_FULL])
def test_checker_accepts_the_specs_examples(doc: str) -> None:
    c = check(doc)
    assert c.errors == []


def test_checker_reads_the_specs_example_as_the_spec_describes_it() -> None:
    c = check(SPEC_FULL)
    (main,) = c.tests
    assert main.name == "main_test" and main.ok is False
    assert [t.name for t in main.subtests] == ["example_test_1", "example_test_2", "example_test_3"]
    t1 = main.subtests[0].subtests[0]
    assert t1.diagnostics == ["test_1: initializing test_1"]
    skipped = main.subtests[1].subtests[0]
    assert skipped.directive == "SKIP" and skipped.data == "test_1 skipped"
    assert main.subtests[2].subtests[1].diagnostics == ["test_2: FAIL"]


@pytest.mark.parametrize(
    "doc, why",
    [
        ("1..1\nok 1 a\n", "begin with a version line"),
        ("KTAP version 1\n1..2\nok 1 a\nok 3 b\n", "expected 2"),
        ("KTAP version 1\n1..3\nok 1 a\nok 2 b\n", "plan 1..3 but 2"),
        ("KTAP version 1\n1..1\nok 1 a # ERROR boom\n", "ERROR must be on a 'not ok'"),
        ("KTAP version 1\n1..1\nok 1 a\nrandom noise\n", "unknown line"),
        ("KTAP version 1\n1..1\n#no space\nok 1 a\n", "diagnostic line"),
        ("KTAP version 1\n1..1\n   KTAP version 1\n   1..1\n   ok 1 x\nok 1 a\n", "two spaces more"),
        ("KTAP version 1\n1..1\n  KTAP version 1\n  1..1\n  not ok 1 x\nok 1 a\n", "subtest failed"),
        ("KTAP version 1\nok 1 a\n", "no plan"),
        ("KTAP version 1\nok 1 a\n1..1\n", "plan must follow"),
        ("KTAP version 1\n1..1\nok 1 a#b\n", "unknown line"),  # '#' in a description
    ],
)
def test_checker_rejects_what_the_spec_forbids(doc: str, why: str) -> None:
    errors = check(doc).errors
    assert errors and any(why in e for e in errors), errors


# -------------------------------------------------------------------------------------- saved runs


def _row(scenario: str, killed: str | None, predicted: str | None, *, as_expected: bool | None = True,
         verdict: str = "match", reason: str = "highest points of 2 eligible", log: str = "") -> dict[str, Any]:
    def who(n: str | None, pid: int) -> dict[str, Any] | None:
        return {"pid": pid, "name": "python3", "workload": n} if n else None

    return {
        "scenario": scenario, "backend": "host", "kernel": "6.18.0-test",
        "expected": {"outcome": "kill", "victim": "big"},
        "observed_victim": who(killed, 101), "predicted_victim": who(predicted, 102),
        "victim_points": 10400 if killed else None,
        "runner_up": {"pid": 103, "name": "python3", "workload": "small", "points": 6200} if killed else None,
        "outcome": "skipped" if as_expected is None else ("kill" if killed else "error"),
        "verdict": verdict, "as_expected": as_expected, "reason": reason, "duration_s": 0.12,
        "timings": {}, "events": [], "snapshot": [],
        "kernel_log": log,
    }


REPORT = ("[ 91.2] python3 invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0\n"
          "[ 91.3] Memory cgroup out of memory: Killed process 101 (python3) total-vm:80000kB\n")


def _rows() -> list[dict[str, Any]]:
    return [
        _row("larger-of-two", "big", "big", log=REPORT),
        _row("near-tie", "a", "b", as_expected=False, verdict="mismatch",
             reason="the kernel killed a, the scenario expected big; the model picked b (points 8300 vs 8260)",
             log=REPORT.replace("101", "104") + "odd \x01 control \x1b[0m bytes\n"),
        _row("adj-protected", None, None, as_expected=None, verdict="skipped",
             reason="needs CAP_SYS_RESOURCE to set a negative oom_score_adj (this root lacks it; #42)"),
        _row("threads", None, None, as_expected=False, verdict="error",
             reason="workload(s) grower died, but the kernel log has no OOM kill for them"),
        _row("larger-of-two", "big", "big", log="no newline at the end"),
    ]


@pytest.fixture
def two_kernels(tmp_path: Path) -> list[str]:
    dirs = []
    for label, backend in (("host", "host"), ("6.12", "vm")):
        rec = RunRecorder(str(tmp_path), backend=backend, kernel_label=label,
                          env={"kernel": f"{label}-test", "cgroup_version": 2}, run_id=f"run-{label}")
        for r in _rows():
            rec.add(ScenarioRecord.from_dict(dict(r, backend=backend, kernel_label=label)))
        rec.close("complete")
        dirs.append(rec.dir)
    return dirs


# -------------------------------------------------------------------------------------- KTAP


def test_ktap_output_conforms_to_the_spec() -> None:
    rows = [{k: v for k, v in r.items() if k not in ("events", "snapshot", "kernel_log")} for r in _rows()]
    text = ktap(rows, header=["backend host, kernel 6.18.0-test"])
    c = check(text)
    assert c.errors == [], text
    assert text.startswith("KTAP version 1\n")
    assert [t.name for t in c.tests] == ["larger-of-two", "near-tie", "adj-protected", "threads",
                                         "larger-of-two_attempt_2"]
    assert [t.ok for t in c.tests] == [True, False, True, False, True]
    skip = c.tests[2]
    assert skip.directive == "SKIP" and skip.data.startswith("needs CAP_SYS_RESOURCE") and "#42" in skip.data
    err = c.tests[3]
    assert err.directive == "ERROR" and "no OOM kill" in err.data
    # every not-ok is preceded by its diagnostic block: victim, model, points, reason
    for t in (c.tests[1], c.tests[3]):
        keys = [d.split(":")[0] for d in t.diagnostics]
        assert {"victim", "model", "points", "reason"} <= set(keys), t.diagnostics
    mism = dict(d.split(": ", 1) for d in c.tests[1].diagnostics)
    assert mism["victim"] == "a (pid 101)" and mism["model"] == "b (pid 102)"
    assert mism["points"].startswith("victim 10400, runner-up small (pid 103) 6200")
    assert mism["reason"].startswith("the kernel killed a")
    # passing tests carry no diagnostics of their own
    assert c.tests[0].diagnostics == [] and c.tests[4].diagnostics == []


def test_ktap_of_nothing_is_still_a_document() -> None:
    c = check(ktap([]))
    assert c.errors == [] and c.tests == [] and c.root.plan == 0


# -------------------------------------------------------------------------------------- JUnit


def _schema() -> Any:
    xmlschema = pytest.importorskip("xmlschema", reason="pip install xmlschema (in the dev extras)")
    return xmlschema.XMLSchema(str(XSD))


def test_junit_validates_and_has_the_shape(two_kernels: list[str]) -> None:
    schema = _schema()
    text = junit_xml(two_kernels)
    schema.validate(text)
    root = ET.fromstring(text)
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["oom-harness: kernel host", "oom-harness: kernel 6.12"]
    assert root.get("tests") == "10" and root.get("failures") == "2" and root.get("errors") == "2"
    s = suites[1]
    assert (s.get("tests"), s.get("failures"), s.get("errors"), s.get("skipped")) == ("5", "1", "1", "1")
    props = {p.get("name"): p.get("value") for p in s.find("properties")}
    assert props["kernel"] == "6.12-test" and props["backend"] == "vm" and "run-6.12 (complete)" in props["runs"]
    cases = {c.get("name"): c for c in s.findall("testcase")}
    assert set(cases) == {"larger-of-two", "near-tie", "adj-protected", "threads", "larger-of-two [attempt 2]"}
    assert all(c.get("classname") == "oom-harness.6.12" and c.get("time") == "0.120" for c in cases.values())
    fail = cases["near-tie"].find("failure")
    assert fail is not None and fail.get("type") == "mismatch"
    assert fail.get("message") == _rows()[1]["reason"]
    assert "killed: a (pid 101)  model: b (pid 102)" in fail.text
    assert cases["threads"].find("error").get("message").startswith("workload(s) grower died")
    assert cases["adj-protected"].find("skipped").get("message").startswith("needs CAP_SYS_RESOURCE")
    # the kernel's report rides along, control characters made XML-safe
    out = cases["near-tie"].find("system-out").text
    assert "invoked oom-killer" in out and "Killed process 104" in out and "\ufffd" in out
    assert cases["larger-of-two [attempt 2]"].find("system-out").text == "no newline at the end\n"
    assert cases["adj-protected"].find("system-out") is None  # nothing was read from the kernel log


def test_kernel_logs_are_split_per_scenario(two_kernels: list[str]) -> None:
    logs = kernel_logs(two_kernels[0])
    assert list(logs) == ["larger-of-two#0", "near-tie#1", "adj-protected#2", "threads#3", "larger-of-two#4"]
    assert logs["larger-of-two#0"] == REPORT and logs["adj-protected#2"] == ""


def test_the_xsd_means_something(two_kernels: list[str]) -> None:
    schema = _schema()
    good = junit_xml(two_kernels)
    assert schema.is_valid(good)
    for bad in (
        good.replace('<testcase name="near-tie"', "<testcase", 1),  # a testcase needs a name
        good.replace(' failures="1"', "", 1),  # a testsuite needs its counts
        good.replace("<skipped ", "<skip ", 1).replace("</skip>", "</skipped>"),  # unknown element
        good.replace('time="0.600"', 'time="0.6 s"', 1),  # a testsuite's time is seconds, a number
    ):
        assert bad != good
        assert not schema.is_valid(bad)


def test_cli_report_writes_junit_and_ktap(two_kernels: list[str], tmp_path: Path) -> None:
    pytest.importorskip("pandas")
    out = tmp_path / "junit" / "oom.xml"
    kt = tmp_path / "ktap" / "oom.ktap"
    r = subprocess.run([sys.executable, "-m", "harness", "report", *two_kernels, "--out", str(tmp_path / "rep"),
                        "--format", "md", "--junit", str(out), "--ktap", str(kt)], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"wrote JUnit XML {out}" in r.stderr and f"wrote KTAP {kt}" in r.stderr
    _schema().validate(str(out))
    c = check(kt.read_text())
    assert c.errors == [], kt.read_text()
    assert [(t.name, t.ok, len(t.subtests)) for t in c.tests] == [("host", False, 5), ("6.12", False, 5)]
    assert "\n  KTAP version 1\n  # Subtest: 6.12\n" in kt.read_text()


@pytest.mark.root
def test_run_format_ktap_and_junit_for_real(host: None, no_debris: None, tmp_path: Path) -> None:
    """A genuine host OOM: KTAP on stdout (progress on stderr), JUnit with the kernel's report."""
    junit = tmp_path / "oom.xml"
    r = subprocess.run([sys.executable, "-m", "harness", "run", "single-hog", "--format", "ktap", "--junit",
                        str(junit), "--results", str(tmp_path / "results")], cwd=ROOT, capture_output=True,
                       text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stdout + r.stderr
    c = check(r.stdout)
    assert c.errors == [], r.stdout
    assert [(t.name, t.ok) for t in c.tests] == [("single-hog", True)]
    assert "single-hog" in r.stderr  # the progress line
    _schema().validate(str(junit))
    case = ET.parse(junit).getroot().find("testsuite/testcase")
    assert case.get("name") == "single-hog" and case.find("failure") is None
    assert "invoked oom-killer" in case.find("system-out").text


# -------------------------------------------------------------------------------------- kunit.py's own parser

KUNIT_SERIES = "6.12"


def _kunit_tree() -> Path:
    """tools/testing/kunit of a cached kernel source tree; fetched (``kernel-source 6.12``) when none
    is cached; the test skips, saying why, when it cannot be had (no network, no dpkg-deb)."""
    from vm.ksource import SOURCE_SERIES, _cached, fetch_source

    for series in (KUNIT_SERIES, *SOURCE_SERIES):  # 5.10's parser predates kunit_printer.py and this API
        tree = _cached(series)
        if tree is not None and (tree / "tools/testing/kunit/kunit_printer.py").is_file():
            return tree / "tools/testing/kunit"
    try:
        tree = fetch_source(KUNIT_SERIES)
    except Exception as e:  # noqa: BLE001 - any failure to fetch is a missing environment here
        pytest.skip(f"kunit_parser.py: no kernel source tree cached and `oom-harness kernel-source {KUNIT_SERIES}` "
                    f"failed: {e}")
    d = tree / "tools/testing/kunit"
    if not (d / "kunit_printer.py").is_file():
        pytest.fail(f"{tree} has no tools/testing/kunit/kunit_parser.py + kunit_printer.py")
    return d


@pytest.fixture(scope="module")
def kunit() -> ModuleType:
    """The kernel tree's kunit_parser module (imported from the tree, not copied)."""
    d = _kunit_tree()
    sys.path.insert(0, str(d))
    try:
        for m in ("kunit_parser", "kunit_printer"):
            sys.modules.pop(m, None)
        return importlib.import_module("kunit_parser")
    finally:
        sys.path.remove(str(d))


def _kunit_parse(kunit: ModuleType, text: str) -> tuple[Any, str]:
    """kunit_parser.parse_run_tests on *text*; (the main Test, what kunit printed).  kunit_parser
    prints through the module-level ``stdout`` Printer bound to sys.stdout at import: swapped here."""
    out = io.StringIO()
    printer = kunit.stdout
    kunit.stdout = type(printer)(out)
    try:
        main = kunit.parse_run_tests(text.splitlines())
    finally:
        kunit.stdout = printer
    return main, out.getvalue()


def _status(kunit: ModuleType, row: dict[str, Any]) -> Any:
    """The KUnit status a verdict row must read as."""
    if row.get("as_expected") is None or row.get("verdict") == "skipped":
        return kunit.TestStatus.SKIPPED
    return kunit.TestStatus.SUCCESS if row["as_expected"] else kunit.TestStatus.FAILURE


def _assert_kunit_reads(kunit: ModuleType, main: Any, printed: str, rows: list[dict[str, Any]],
                        names: list[str]) -> None:
    assert main.counts.errors == 0, printed
    assert "[ERROR]" not in printed, printed
    assert [t.name for t in main.subtests] == names, printed
    assert [t.status for t in main.subtests] == [_status(kunit, r) for r in rows], printed
    want = [_status(kunit, r) for r in rows]
    TS = kunit.TestStatus
    assert (main.counts.passed, main.counts.failed, main.counts.skipped, main.counts.crashed) == (
        want.count(TS.SUCCESS), want.count(TS.FAILURE), want.count(TS.SKIPPED), 0), printed
    # a failure's diagnostic block is the log kunit shows with it
    for t, r in zip(main.subtests, rows, strict=True):
        if r.get("as_expected") is False:
            assert any(ln.startswith("# reason: ") for ln in t.log), t.log


def test_kunit_parser_reads_every_verdict_kind(kunit: ModuleType) -> None:
    rows = [{k: v for k, v in r.items() if k not in ("events", "snapshot", "kernel_log")} for r in _rows()]
    main, printed = _kunit_parse(kunit, ktap(rows, header=["backend host, kernel 6.18.0-test"]))
    _assert_kunit_reads(kunit, main, printed, rows, ["larger-of-two", "near-tie", "adj-protected", "threads",
                                                     "larger-of-two_attempt_2"])
    assert main.status == kunit.TestStatus.FAILURE
    assert "Ran 5 tests: passed: 2, failed: 2, skipped: 1" in printed


def test_kunit_parser_reads_compare_ktap_one_suite_per_kernel(kunit: ModuleType, two_kernels: list[str]) -> None:
    text = ktap_runs(two_kernels)
    assert check(text).errors == [], text
    main, printed = _kunit_parse(kunit, text)
    assert main.counts.errors == 0 and "[ERROR]" not in printed, printed
    assert [t.name for t in main.subtests] == ["host", "6.12"]
    assert [t.status for t in main.subtests] == [kunit.TestStatus.FAILURE] * 2
    rows = _rows()
    for suite in main.subtests:
        assert [t.status for t in suite.subtests] == [_status(kunit, r) for r in rows]
    assert (main.counts.passed, main.counts.failed, main.counts.skipped) == (4, 4, 2), printed


@pytest.mark.root
def test_kunit_parser_reads_a_real_run(host: None, no_debris: None, tmp_path: Path, kunit: ModuleType) -> None:
    """A real host run: a genuine OOM as expected, one expecting the wrong victim (not ok), one this
    host cannot express (skip); kunit.py's parser sees what the harness decided, without an error."""
    wrong = tmp_path / "expects-the-wrong-victim.toml"
    wrong.write_text((ROOT / "harness/machine/catalogue/host/larger-of-two.toml").read_text()
                     .replace('name = "larger-of-two"', 'name = "expects-the-wrong-victim"')
                     .replace('victim = "big"', 'victim = "small"'))
    unmet = tmp_path / "needs-what-this-host-lacks.toml"
    unmet.write_text((ROOT / "harness/machine/catalogue/host/single-hog.toml").read_text()
                     .replace('name = "single-hog"', 'name = "needs-what-this-host-lacks"')
                     .replace('backends = ["host", "vm", "docker"]',
                              'backends = ["host", "vm", "docker"]\nrequires = ["cgroup2", "numa", "swap", "zswap"]'))
    res = tmp_path / "results"
    r = subprocess.run([sys.executable, "-m", "harness", "run", "single-hog", str(wrong), str(unmet), "--format",
                        "ktap", "--results", str(res)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 1, r.stdout + r.stderr  # one verdict not as expected
    (run,) = [d for d in res.iterdir() if (d / "verdicts.jsonl").is_file()]
    rows = [json.loads(ln) for ln in (run / "verdicts.jsonl").read_text().splitlines()]
    assert [x["verdict"] for x in rows[:2]] == ["match", "match"], [x["reason"] for x in rows]
    assert [x["as_expected"] for x in rows[:2]] == [True, False]
    main, printed = _kunit_parse(kunit, r.stdout)
    _assert_kunit_reads(kunit, main, printed, rows,
                        ["single-hog", "expects-the-wrong-victim", "needs-what-this-host-lacks"])
    if rows[2]["verdict"] == "skipped":  # a host lacking any of cgroup2, numa, swap, zswap (this one lacks all)
        assert main.subtests[2].status == kunit.TestStatus.SKIPPED
    for x in rows:
        record_kills("host", x.get("kernel") or "host", x)
    print(printed)
    # the same run as a compare/report KTAP file: one kernel, its three scenarios
    main2, printed2 = _kunit_parse(kunit, ktap_runs([str(run)]))
    assert main2.counts.errors == 0 and [t.name for t in main2.subtests] == ["host"], printed2
    assert [t.status for t in main2.subtests[0].subtests] == [t.status for t in main.subtests]
