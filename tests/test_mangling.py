"""Every genuine report the project has, pasted the ways people paste it, still gives its verdict.

The reports are the VM guests' (5.10, 6.1, 6.12, 7.2: tests/fixtures/vm) and this machine's
(tests/fixtures/host), turned into plain ``dmesg`` text.  Each is mangled by one repair class
(:mod:`mangle`: mail and fixed-width wrapping, quoting, interleaved foreign lines, an excerpt
starting mid-report, prefix variants) and by combinations, and must give the same events,
observed victim, predicted victim and verdict as the clean text; the event must say what was
repaired.  Hypothesis draws wrap widths (40-120), interleave rates and where an excerpt starts.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from functools import partial
from pathlib import Path

import mangle as M
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.core.analysis import analyze_all
from harness.core.parser import parse_text

FIX = Path(__file__).parent / "fixtures"
FILES = sorted((FIX / "vm").glob("*.log")) + sorted((FIX / "host").glob("*.log"))
assert len(FILES) >= 20
CLEAN = {p.name: M.dmesg_lines(p) for p in FILES}
NAMES = sorted(CLEAN)

Verdicts = list[tuple[object, object, str]]


def verdicts(lines: list[str]) -> tuple[Verdicts, list]:
    """(observed victim, predicted victim, verdict) per event, and the events."""
    events = parse_text("\n".join(lines) + "\n", keep_lines=False)
    docs = [a.to_dict() for a in analyze_all(events)]
    return [(d["observed_victim"], d["predicted_victim"], d["verdict"]) for d in docs], events


REF = {name: verdicts(lines)[0] for name, lines in CLEAN.items()}


def test_clean_reports_need_no_repair() -> None:
    """No false repairs: the clean text of every report is read as it is."""
    for name, lines in CLEAN.items():
        got, events = verdicts(lines)
        assert got == REF[name]
        assert events and all(not e.repairs.any() for e in events), name


def check(name: str, mangled: list[str], *, repaired: str | None = None) -> None:
    got, events = verdicts(mangled)
    assert got == REF[name], name
    if repaired == "rejoined":
        assert sum(e.repairs.lines_rejoined for e in events) > 0
    elif repaired == "foreign":
        assert sum(e.repairs.foreign_lines_skipped for e in events) > 0
    elif repaired is not None:
        assert any(repaired in e.repairs.prefixes_stripped for e in events), [e.repairs for e in events]


def _rng(name: str) -> random.Random:
    return random.Random(name)


def _envelope(lines: list[str], name: str, kind: str) -> list[str]:
    return M.envelope(lines, kind)


# name -> (mangler, what the events must say was repaired)
CLASSES: dict[str, tuple[Callable[[list[str], str], list[str]], str | None]] = {
    "mail-72": (lambda ls, n: M.mail_wrap(ls, 72), "rejoined"),
    "mail-60": (lambda ls, n: M.mail_wrap(ls, 60), "rejoined"),
    "mail-100": (lambda ls, n: M.mail_wrap(ls, 100), "rejoined"),
    "fixed-80": (lambda ls, n: M.hard_wrap(ls, 80), "rejoined"),
    "fixed-64": (lambda ls, n: M.hard_wrap(ls, 64), "rejoined"),
    "fixed-120": (lambda ls, n: M.hard_wrap(ls, 120), "rejoined"),
    "interleave-every-5th": (lambda ls, n: M.interleave(ls, _rng(n), every=5), "foreign"),
    "interleave-every-2nd": (lambda ls, n: M.interleave(ls, _rng(n), every=2), "foreign"),
    "quote-then-mail-72": (lambda ls, n: M.mail_wrap(M.quote(ls), 72), "quote"),
    "mail-72-then-quote": (lambda ls, n: M.quote(M.mail_wrap(ls, 72)), "quote"),
    "quote-then-fixed-80": (lambda ls, n: M.hard_wrap(M.quote(ls), 80), "quote"),
    "mail-then-interleave": (lambda ls, n: M.interleave(M.mail_wrap(ls, 72), _rng(n), every=5), "foreign"),
    "fixed-then-interleave": (lambda ls, n: M.interleave(M.hard_wrap(ls, 80), _rng(n), every=5), "foreign"),
    "interleave-then-fixed": (lambda ls, n: M.hard_wrap(M.interleave(ls, _rng(n), every=5), 80), "rejoined"),
    "indent-then-mail": (lambda ls, n: M.mail_wrap(M.envelope(ls, "indent"), 76), "rejoined"),
    "syslog-then-mail": (lambda ls, n: M.mail_wrap(M.envelope(ls, "syslog"), 90), "rejoined"),
    "crlf-fixed-80": (lambda ls, n: M.envelope(M.hard_wrap(ls, 80), "crlf"), "cr"),
    "html-quote-mail": (lambda ls, n: M.envelope(M.quote(M.mail_wrap(ls, 72)), "html"), "quote"),
    "blank-lines": (lambda ls, n: M.envelope(ls, "blank"), None),
    "quoted-printable": (lambda ls, n: M.quoted_printable(ls), "quoted-printable"),
    "quote-then-quoted-printable": (lambda ls, n: M.quoted_printable(M.quote(ls)), "quoted-printable"),
    "run-together": (lambda ls, n: M.run_together(ls), "run-together"),
    "run-together-collapsed": (lambda ls, n: M.run_together(ls, collapse=True), "run-together"),
    "print-wrap-arrows": (lambda ls, n: M.print_wrap(ls, 60), "wrap-marker"),
    "syslog-then-print-wrap": (lambda ls, n: M.print_wrap(M.envelope(ls, "syslog"), 80), "wrap-marker"),
    **{f"envelope-{k}": (partial(_envelope, kind=k), None) for k in M.ENVELOPES},
}


@pytest.mark.parametrize("cls", sorted(CLASSES))
@pytest.mark.parametrize("name", NAMES)
def test_mangled_report_same_verdict(name: str, cls: str) -> None:
    mangler, repaired = CLASSES[cls]
    check(name, mangler(CLEAN[name], name), repaired=repaired)


@pytest.mark.parametrize("name", NAMES)
def test_excerpt_from_the_memcg_block_or_mem_info(name: str) -> None:
    """Starting after the header (at ``memory: usage``/``Task in``, or ``Mem-Info:``/``Tasks state``
    for a global OOM): the memcg block still belongs to the event, so limit, totalpages and the
    constraint are known and the verdict is the clean one."""
    got, events = verdicts(M.mid_report(CLEAN[name], ("memory: usage", "Task in ", "Tasks state")))
    assert got == REF[name]
    assert "header line (`invoked oom-killer`)" in events[0].missing


@pytest.mark.parametrize("name", NAMES)
def test_excerpt_from_the_table(name: str) -> None:
    """Starting at the table: the same victim, and the same prediction and verdict unless what is
    gone (the memcg limit) is what the decision needs - then it says so instead of guessing."""
    mangled = M.mid_report(CLEAN[name], ("[  pid  ]", "[ pid ]"))
    events = parse_text("\n".join(mangled) + "\n", keep_lines=False)
    docs = [a.to_dict() for a in analyze_all(events)]
    assert [d["observed_victim"] for d in docs] == [r[0] for r in REF[name]]
    for d, ref in zip(docs, REF[name], strict=True):
        if (d["predicted_victim"], d["verdict"]) != ref[1:]:
            assert d["verdict"] == "undecidable" and "totalpages unknown" in d["reason"], d["reason"]


# --- hypothesis: widths, cut kinds, quoting order, interleave rates -------------------------------

# derandomize: the same examples on every run, so a green CI means the same thing each time.  Random
# exploration (HYPOTHESIS_RANDOM=1) still finds rare misses (about 1 in 300 mixed pastes: a foreign
# line glued onto a wrapped task name), listed in the README's "Pasted reports" as known limits.
SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=not os.environ.get("HYPOTHESIS_RANDOM"),
)


@st.composite
def pasted(draw: st.DrawFn) -> tuple[str, list[str]]:
    name = draw(st.sampled_from(NAMES))
    lines = list(CLEAN[name])
    rng = random.Random(draw(st.integers(0, 2**16)))
    if draw(st.booleans()):
        lines = M.envelope(lines, draw(st.sampled_from(["level", "syslog", "indent", "html"])))
    quote = draw(st.sampled_from(["none", "before", "after"]))
    if quote == "before":
        lines = M.quote(lines)
    # foreign lines in the kernel log (then wrapped with it), or added to the paste after wrapping
    interleave = draw(st.sampled_from(["none", "before", "after"]))
    rate = draw(st.floats(0.0, 0.25))
    if interleave == "before":
        lines = M.interleave(lines, rng, rate=rate)
    width = draw(st.integers(40, 120))
    lines = M.mail_wrap(lines, width) if draw(st.booleans()) else M.hard_wrap(lines, width)
    if quote == "after":
        lines = M.quote(lines)
    if interleave == "after":
        lines = M.interleave(lines, rng, rate=rate)
    if draw(st.booleans()):
        lines = M.envelope(lines, "crlf")
    return name, lines


@SETTINGS
@given(pasted())
def test_any_paste_same_verdict(case: tuple[str, list[str]]) -> None:
    name, lines = case
    check(name, lines)


@SETTINGS
@given(st.sampled_from(NAMES), st.integers(40, 120), st.booleans())
def test_wrap_width_sweep(name: str, width: int, mail: bool) -> None:
    lines = M.mail_wrap(CLEAN[name], width) if mail else M.hard_wrap(CLEAN[name], width)
    check(name, lines, repaired="rejoined")
