"""Bad input to ``parse``: a clear one-line answer, bounded memory, never a traceback.

Binary junk, a 1 GB line without a newline (streamed from a generator, and a sparse file through
the CLI, so the test itself allocates nothing of that size), a file made only of wrapped
fragments, a report cut off in the middle of a table row.  Exit codes as documented: 0 when the
input was read, 2 when it could not be.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import mangle as M
import pytest

from harness.core.analysis import analyze_all
from harness.core.logformat import normalize
from harness.core.parser import MAX_LINE, parse_stream, parse_text

FIX = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).parent.parent
GIB = 1 << 30
MIB = 1 << 20


def cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "harness", "parse", *args], cwd=ROOT, input=stdin, capture_output=True, timeout=300
    )


def one_line(r: subprocess.CompletedProcess[bytes]) -> str:
    out = r.stdout.decode().strip()
    assert b"Traceback" not in r.stderr, r.stderr.decode()
    assert out.count("\n") == 0, out
    return out


def test_binary_junk(tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(random.Random(1).randbytes(4 * MIB))
    r = cli(str(junk))
    assert r.returncode == 0
    assert one_line(r) == "no OOM-killer report found"


def test_binary_junk_around_a_real_report_still_finds_it(tmp_path: Path) -> None:
    rnd = random.Random(2)
    report = (FIX / "vm" / "6.12-adj-positive.log").read_bytes()
    f = tmp_path / "mixed.bin"
    f.write_bytes(rnd.randbytes(MIB) + b"\n" + report + rnd.randbytes(MIB))
    r = cli(str(f))
    assert r.returncode == 0 and b"verdict: MATCH" in r.stdout, r.stdout.decode()[-2000:]


def _endless_line(total: int) -> Iterator[str]:
    block = "x" * MIB  # one object, yielded again and again: the test allocates 1 MiB
    for _ in range(total // MIB):
        yield block


def test_gigabyte_line_from_a_generator_is_bounded() -> None:
    tracemalloc.start()
    try:
        events = list(parse_stream(_endless_line(GIB)))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert events == []
    assert peak < 8 * MIB, peak  # a few chunks, never the line


def test_gigabyte_line_then_a_report_is_cut_and_the_report_found() -> None:
    report = (FIX / "vm" / "6.12-adj-positive.log").read_text()

    def chunks() -> Iterator[str]:
        yield from _endless_line(64 * MIB)
        yield "\n" + report

    events = list(parse_stream(chunks()))
    assert [e.first_kill.pid for e in events] == [139]


@pytest.mark.slow
def test_gigabyte_sparse_file_through_the_cli_has_bounded_rss(tmp_path: Path) -> None:
    """The CLI on a 1 GiB file of NULs without a newline: one line, exit 0, peak RSS far below it."""
    big = tmp_path / "sparse.log"
    with open(big, "wb") as f:
        f.truncate(GIB)  # sparse: no disk, no memory
    probe = (
        "import resource, subprocess, sys;"
        f"r = subprocess.run([sys.executable, '-m', 'harness', 'parse', {str(big)!r}], capture_output=True);"
        "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss);"
        "sys.stdout.write(r.stdout.decode())"
    )
    r = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=600)
    head, _, out = r.stdout.partition("\n")
    code, maxrss_kib = map(int, head.split())
    assert code == 0 and out.strip() == "no OOM-killer report found", r.stdout + r.stderr
    assert maxrss_kib < 150 * 1024, maxrss_kib


def test_over_long_line_is_cut_at_max_line() -> None:
    text = "[    1.000000] " + "y" * (3 * MAX_LINE) + "\n"
    assert parse_text(text) == []


def test_file_of_wrapped_fragments_only(tmp_path: Path) -> None:
    """Only the continuation pieces of a wrapped report (every line with an envelope dropped)."""
    lines = M.hard_wrap(M.dmesg_lines(FIX / "vm" / "6.12-adj-positive.log"), 50)
    fragments = [x for x in lines if normalize(x) is not None and not normalize(x).env]  # type: ignore[union-attr]
    f = tmp_path / "fragments.txt"
    f.write_text("\n".join(fragments * 200) + "\n")
    r = cli(str(f))
    assert r.returncode == 0 and b"Traceback" not in r.stderr
    assert r.stdout.strip(), "an answer is printed"


def test_report_cut_off_mid_row() -> None:
    lines = M.dmesg_lines(FIX / "vm" / "6.12-global-noswap.log")
    cut = next(i for i, x in enumerate(lines) if "[    343]" in x)
    text = "\n".join(lines[:cut]) + "\n" + lines[cut][:50]  # no newline at the end either
    events = parse_text(text)
    assert len(events) == 1 and not events[0].complete
    (a,) = analyze_all(events)
    d = a.to_dict()
    assert d["verdict"] == "undecidable" and "kill line" in d["missing"]


def test_report_cut_off_mid_row_cli(tmp_path: Path) -> None:
    lines = M.hard_wrap(M.dmesg_lines(FIX / "vm" / "6.12-global-noswap.log"), 80)
    cut = next(i for i, x in enumerate(lines) if "[    343]" in x)
    f = tmp_path / "cut.txt"
    f.write_text("\n".join(lines[: cut + 1]))
    r = cli(str(f))
    assert r.returncode == 0 and b"INCOMPLETE" in r.stdout and b"Traceback" not in r.stderr


def test_unreadable_file_is_exit_2(tmp_path: Path) -> None:
    d = tmp_path / "dir"
    d.mkdir()
    for target in (str(d), str(tmp_path / "missing.log")):
        r = cli(target)
        assert r.returncode == 2
        err = r.stderr.decode().strip()
        assert err.count("\n") == 0 and "Traceback" not in err


def test_stdin_binary_junk() -> None:
    r = cli("-", stdin=os.urandom(256 * 1024))
    assert r.returncode == 0 and one_line(r) == "no OOM-killer report found"


# --- these tests can fail ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad_input_test",
    [test_gigabyte_line_then_a_report_is_cut_and_the_report_found, test_report_cut_off_mid_row],
    ids=lambda f: f.__name__,
)
def test_bad_input_tests_fail_when_the_parser_is_broken(bad_input_test, monkeypatch) -> None:
    from harness.core import parser as parser_mod

    def broken(self: object, ll: object) -> None:
        raise ZeroDivisionError("deliberately broken parser")

    monkeypatch.setattr(parser_mod._Parser, "_feed", broken)
    with pytest.raises(parser_mod.ParserBug, match="deliberately broken parser"):
        bad_input_test()


def test_repair_stage_bug_surfaces_with_its_line(monkeypatch) -> None:
    """A bug in the repair stage is a ParserBug naming the line, like one in the parser."""
    from harness.core import parser as parser_mod
    from harness.core.repair import Repairer

    def broken(self: object, raw: str, lineno: int) -> list:
        raise IndexError("deliberately broken repair stage")

    monkeypatch.setattr(Repairer, "push", broken)
    with pytest.raises(parser_mod.ParserBug, match="line 1: IndexError"):
        parse_text((FIX / "vm" / "6.12-adj-positive.log").read_text())
