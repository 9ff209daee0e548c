"""`python -m harness parse` as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from harness.core.analysis import EVENT_KEYS

FIX = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).parent.parent
REQUIRED = EVENT_KEYS


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness", "parse", *args],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_parse_human_summary() -> None:
    r = run(str(FIX / "host" / "6.18-memcg-v1-probe.log"))
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert "1913" in r.stdout and "python3" in r.stdout
    assert "match" in r.stdout
    assert "1 event(s): 1 match" in r.stdout


def test_parse_several_files() -> None:
    files = [
        str(FIX / "synthetic" / n) for n in ("6.12-global-panic-on-oom.log", "5.3-memcg-v2-swap-multiline-tie-last.log")
    ]
    r = run(*files)
    assert r.returncode == 0, r.stderr
    assert "2 event(s): 1 match, 1 no-victim" in r.stdout


def test_parse_json_schema() -> None:
    path = FIX / "synthetic" / "6.8-memcg-v2-oom-group-reaper.log"
    r = run("--json", str(path))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["schema"] == 1 and doc["tool"].startswith("oom-harness ")
    (ev,) = doc["events"]
    assert set(ev) >= REQUIRED
    assert ev["source"] == str(path)
    assert ev["verdict"] == "match" and ev["observed_victim"] == {"pid": 10001, "name": "Web Content"}
    assert ev["era"] == "5.10-6.19" and ev["kind"] == "memcg" and ev["complete"] is True
    assert [c["pid"] for c in ev["candidates"]] == [10001, 10003, 10002]


def test_parse_stdin() -> None:
    text = (FIX / "synthetic" / "7.0-global-adj-percent-d.log").read_text()
    r = run("--json", "-", stdin=text)
    assert r.returncode == 0, r.stderr
    (ev,) = json.loads(r.stdout)["events"]
    assert ev["predicted_victim"]["pid"] == 14002 and ev["source"] == "-"


def test_parse_era_and_swap_options() -> None:
    path = str(FIX / "synthetic" / "4.19-memcg-v1-tasks-state-adj969.log")
    r = run("--json", "--era", "6.1", "--total-swap-kb", "0", path)
    assert r.returncode == 0, r.stderr
    (ev,) = json.loads(r.stdout)["events"]
    assert ev["era"] == "5.10-6.19" and ev["era_evidence"].startswith("forced")
    assert ev["totalpages"] == 131072


def test_missing_file_one_line_error(tmp_path: Path) -> None:
    r = run(str(tmp_path / "missing.log"))
    assert r.returncode == 2
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("oom-harness: error:")
    assert "missing.log" in lines[0] and "Traceback" not in r.stderr
    assert r.stdout == ""


def test_garbage_no_report(tmp_path: Path) -> None:
    p = tmp_path / "garbage.log"
    p.write_bytes(b"\x00\xff hello\n[    1.000000] usb 1-1: new device\nnot a kernel log at all\n")
    r = run(str(p))
    assert r.returncode == 0, r.stderr
    assert "no OOM-killer report found" in r.stdout


def test_garbage_json_has_no_events(tmp_path: Path) -> None:
    p = tmp_path / "empty.log"
    p.write_text("")
    r = run("--json", str(p))
    assert r.returncode == 0
    assert json.loads(r.stdout)["events"] == []


def test_parser_bug_is_one_line_exit_2(monkeypatch, capsys) -> None:
    """A parser bug is not swallowed: ``parse`` names the file and line, exits 2, no traceback."""
    from harness.cli.main import main
    from harness.core import parser as parser_mod

    def broken(self: object, ll: object) -> None:
        raise ValueError("boom")

    monkeypatch.setattr(parser_mod._Parser, "_feed", broken)
    log = FIX / "synthetic" / "3.4-memcg-v1-memsw.log"
    assert main(["parse", str(log)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "internal error on line 1: ValueError: boom" in err and str(log) in err
