"""Real OOM reports exactly as published (quoted, wrapped, interleaved, cut short): tests/fixtures/pastes.

Each fixture is evidence and is never edited; its ``index.json`` entry says what the kernel's own
lines prove (victim, selected task, printed score, complete or not) and which verdict the model
must give (``expect_verdict``, and the class of its reason, ``expect_reason``, see
:mod:`harness.core.reasons`).  Entries with ``xfail`` need a stage that is not on this branch yet
(the paste-repair stage of branch ``repair``, or a parser change described there); they are
strict xfails, so when that stage lands they XPASS, fail, and the marker has to be removed.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from harness.core.reasons import REASON_CLASSES

ROOT = Path(__file__).resolve().parent.parent
PASTES = ROOT / "tests" / "fixtures" / "pastes"
ENTRIES = json.loads((PASTES / "index.json").read_text())
INDEX = {e["file"]: e for e in ENTRIES}
VERDICTS = {"match", "mismatch", "undecidable", "no-victim"}

_spec = importlib.util.spec_from_file_location("eval_pastes", ROOT / "bench" / "eval_pastes.py")
assert _spec is not None and _spec.loader is not None
ev_mod = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("eval_pastes", ev_mod)  # dataclasses look their module up
_spec.loader.exec_module(ev_mod)


def test_index_covers_every_paste() -> None:
    assert {p.name for p in PASTES.glob("*.log")} == set(INDEX)
    assert len(ENTRIES) == len(INDEX) == 53


def test_index_entries_are_well_formed() -> None:
    public = json.loads((ROOT / "tests" / "fixtures" / "public" / "index.json").read_text())
    # one index format: the public keys (less the public index's own exact expectations), plus the
    # expectation keys
    common = set(public[0]) - {"elided", "main_event", "parser_gaps", "expect", "expect_why"}
    for e in ENTRIES:
        assert common <= set(e), e["file"]
        assert e["expect_verdict"] in VERDICTS, e["file"]
        assert e["expect_reason"] is None or e["expect_reason"] in REASON_CLASSES, e["file"]
        if e["complete"] and e["expect_verdict"] != "mismatch":
            assert e["expect_verdict"] == "match", e["file"]


@pytest.mark.parametrize("name", sorted(INDEX))
def test_paste_parses_without_exception(name: str) -> None:
    docs = ev_mod.analyze_path(str(PASTES / name))
    for d in docs:
        assert d["verdict"] in VERDICTS
        assert d["reason"]


def _params() -> list[object]:
    out: list[object] = []
    for name in sorted(INDEX):
        why = INDEX[name]["xfail"]
        marks = [pytest.mark.xfail(strict=True, reason=why)] if why else []
        out.append(pytest.param(name, marks=marks, id=name))
    return out


@pytest.mark.parametrize("name", _params())
def test_paste_victim_and_verdict(name: str) -> None:
    entry = dict(INDEX[name])
    docs = ev_mod.analyze_path(str(PASTES / name))
    j = ev_mod.judge(entry, docs)
    want = entry["selected_pid"] or entry["victim_pid"]
    if want is not None:
        assert j.victim_found, j.cause
    else:
        assert docs, "no OOM event found"
    assert j.right, j.cause
