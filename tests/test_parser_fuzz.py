"""Mutated and truncated real reports never crash the parser or the analysis.

The last tests break the parser on purpose and check that every fuzz test here then fails: a
"never crashes" test that cannot fail proves nothing (issue 17).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.core import parser as parser_mod
from harness.core.analysis import analyze_all
from harness.core.parser import ParserBug, parse_text

FIX = Path(__file__).parent / "fixtures"
REPORTS = [p.read_text() for p in sorted(FIX.glob("*/*.log"))]
assert len(REPORTS) >= 40

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check(text: str) -> None:
    events = parse_text(text)
    for ev in events:
        json.dumps(ev.to_dict())
        assert ev.complete == (not ev.missing)
    for a in analyze_all(events):
        d = a.to_dict()
        json.dumps(d)
        assert d["verdict"] in {"match", "mismatch", "undecidable", "no-victim"}


junk = st.one_of(
    st.text(max_size=40),
    st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
    st.sampled_from(
        ["[", "]", "[  pid  ]", "oom-kill:", "Killed process ", "(", ")", ",", "kB", "-", "\x00", "\u202e", "😀", "\n"]
    ),
)


@st.composite
def mutated(draw) -> str:
    lines = draw(st.sampled_from(REPORTS)).splitlines()
    for _ in range(draw(st.integers(0, 6))):
        if not lines:
            break
        op = draw(st.sampled_from(["drop", "dup", "swap", "inject", "garble", "caller"]))
        i = draw(st.integers(0, len(lines) - 1))
        if op == "drop":
            del lines[i]
        elif op == "dup":
            lines.insert(i, lines[i])
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "inject":
            lines.insert(i, draw(junk))
        elif op == "garble":
            pos = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:pos] + draw(junk) + lines[i][pos:]
        else:
            caller = draw(st.sampled_from(["T1", "T2", "C0", "T99999"]))
            lines[i] = f"[  {i}.000000] [{caller:>6}] " + lines[i]
    return "\n".join(lines)


@SETTINGS
@given(mutated())
def test_mutated_reports(text: str) -> None:
    check(text)


@SETTINGS
@given(st.sampled_from(REPORTS), st.floats(0, 1), st.floats(0, 1))
def test_truncated_reports(text: str, a: float, b: float) -> None:
    data = text.encode()
    lo, hi = sorted((int(a * len(data)), int(b * len(data))))
    check(data[lo:hi].decode("utf-8", errors="replace"))
    check(data[:hi].decode("utf-8", errors="replace"))


@SETTINGS
@given(st.sampled_from(REPORTS), st.sampled_from(REPORTS), st.randoms(use_true_random=False))
def test_two_reports_interleaved_with_random_callers(t1: str, t2: str, rnd) -> None:
    a = [f"[  1.000000] [{'T' + str(rnd.randint(1, 3)):>6}] {x}" for x in t1.splitlines()]
    b = [f"[  2.000000] [{'T' + str(rnd.randint(1, 3)):>6}] {x}" for x in t2.splitlines()]
    out = []
    while a or b:
        src = a if (a and (not b or rnd.random() < 0.5)) else b
        out.append(src.pop(0))
    check("\n".join(out))


@settings(max_examples=100, deadline=None)
@given(st.one_of(st.text(max_size=2000), st.lists(junk, max_size=80).map("".join)))
def test_random_text(text: str) -> None:
    check(text)


# --- the tests above can fail -------------------------------------------------------------------

FUZZ_TESTS: list[Callable[[], None]] = [
    test_mutated_reports,
    test_truncated_reports,
    test_two_reports_interleaved_with_random_callers,
    test_random_text,
]


def _broken_feed(self: object, ll: object) -> None:
    raise ZeroDivisionError("deliberately broken parser")


@pytest.mark.parametrize("fuzz_test", FUZZ_TESTS, ids=lambda f: f.__name__)
def test_fuzz_test_fails_when_the_parser_is_broken(fuzz_test: Callable[[], None], monkeypatch) -> None:
    monkeypatch.setattr(parser_mod._Parser, "_feed", _broken_feed)
    with pytest.raises(ParserBug, match="deliberately broken parser"):
        fuzz_test()


def test_a_bug_in_one_line_handler_surfaces_with_its_line(monkeypatch) -> None:
    """Only table rows break: the error names the first row's line instead of losing the table."""

    def broken_row(self: object, b: object, text: str) -> bool:
        raise KeyError("row")

    monkeypatch.setattr(parser_mod._Parser, "_row", broken_row)
    text = (FIX / "synthetic" / "3.10-global-nr_ptes-root-minus30.log").read_text()
    first_row = next(i for i, line in enumerate(text.splitlines(), 1) if re.match(r"\[[ \d.]+\] \[\s*\d+\]", line))
    with pytest.raises(ParserBug) as exc:
        parse_text(text)
    assert exc.value.lineno == first_row
    assert isinstance(exc.value.__cause__, KeyError)
