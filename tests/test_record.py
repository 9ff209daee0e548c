"""The verdict record: one type, one serialisation, the documented JSON shape."""

from __future__ import annotations

import json

import pytest

from harness.machine.record import UNSET, Outcome, ScenarioRecord, Verdict


def test_unset_fields_are_left_out_and_none_is_kept() -> None:
    rec = ScenarioRecord(scenario="s", backend="host", kernel="6.18")
    rec.set_verdict("match", "kill", True, "highest points")
    rec.observed_victim = None
    d = rec.to_dict()
    assert d == {"scenario": "s", "backend": "host", "kernel": "6.18", "verdict": "match", "as_expected": True,
                 "outcome": "kill", "reason": "highest points", "observed_victim": None}
    assert isinstance(json.loads(json.dumps(d))["verdict"], str)


def test_round_trip_through_json_as_the_guest_sends_it() -> None:
    rec = ScenarioRecord(scenario="s", backend="vm", kernel="6.12", expected={"outcome": "kill", "victim": "big"})
    rec.update({"verdict": "mismatch", "outcome": "group-kill", "kills": [{"pid": 5}], "time_to_kill_s": None})
    back = ScenarioRecord.from_dict(json.loads(json.dumps(rec.to_dict())))
    assert back == rec
    assert back.verdict is Verdict.MISMATCH and back.outcome is Outcome.GROUP_KILL
    assert back.cgroup is UNSET


def test_unknown_keys_and_values_are_bugs() -> None:
    rec = ScenarioRecord(scenario="s", backend="host", kernel="x")
    with pytest.raises(KeyError):
        rec.update({"verdcit": "match"})
    with pytest.raises(KeyError):
        ScenarioRecord.from_dict({"scenario": "s", "backend": "host", "kernel": "x", "extra": 1})
    with pytest.raises(ValueError):
        rec.set_verdict("matched", "kill", True, "")


def test_fail_keeps_the_first_reason_after_the_new_one() -> None:
    rec = ScenarioRecord(scenario="s", backend="docker", kernel="x")
    rec.set_verdict("match", "kill", True, "model agrees")
    rec.fail("signals disagree")
    assert rec.as_expected is False and rec.reason == "signals disagree; model agrees"
