"""The verdict record of one scenario run: one typed record, built by the engine, serialised here.

Why one type: the record crosses three boundaries (the guest prints it for the VM runner, the
Docker runner adds its cross-check, the results folder stores it) and was a free-form dict built
in five places, so a key misspelt in one of them was silently a different key.  Every field is
declared here; :meth:`ScenarioRecord.to_dict` is the one serialisation and
:meth:`ScenarioRecord.from_dict` the one way back, and the JSON keeps the shape documented in the
README ("Results"): a field that was never set is left out; one set to ``None`` is written as null.
Standard library only: the record is built inside guests too.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["Verdict", "Outcome", "ScenarioRecord", "UNSET"]


class Verdict(StrEnum):
    """The model's verdict on the kernel's choice (the first four), or why there is none."""

    MATCH = "match"  # the kernel killed the task the model predicts
    MISMATCH = "mismatch"  # it did not, and the reason says why
    NO_VICTIM = "no-victim"  # an OOM with nothing killed (no eligible task, panic_on_oom)
    UNDECIDABLE = "undecidable"  # the report lacks what the decision needs
    NO_OOM = "no-oom"  # no OOM kill happened at all
    ERROR = "error"  # the run itself failed (a workload died otherwise, the guest was lost, ...)
    SKIPPED = "skipped"  # this machine cannot express the scenario


class Outcome(StrEnum):
    """What the kernel did, whatever the model thinks of it."""

    KILL = "kill"
    GROUP_KILL = "group-kill"
    NO_VICTIM = "no-victim"
    NO_OOM = "no-oom"
    THROTTLED = "throttled"  # memory.high slowed the growers; nothing was killed
    PANIC = "panic"
    ERROR = "error"
    SKIPPED = "skipped"


class _Unset:
    """Marks a field that was never set (left out of the JSON), as opposed to one set to None."""

    _instance: _Unset | None = None

    def __new__(cls) -> _Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Any = _Unset()


def _unset() -> Any:
    return field(default=UNSET)


@dataclass
class ScenarioRecord:
    """Everything one scenario run established, in the order the README lists it."""

    scenario: str
    backend: str
    kernel: str
    verdict: Verdict = Verdict.ERROR
    as_expected: bool | None = False
    outcome: Outcome = Outcome.ERROR
    reason: str = ""
    kernel_label: str = _unset()
    expected: dict[str, Any] = _unset()
    started: float = _unset()
    cgroup_version: int = _unset()
    cgroup: str = _unset()
    # what the kernel did and what the model says of it
    events: list[dict[str, Any]] = _unset()
    kills: list[dict[str, Any]] = _unset()
    snapshot: list[dict[str, Any]] = _unset()
    oom_kill_counter: int = _unset()
    oom_score_check: dict[str, Any] = _unset()
    variants: dict[str, Any] = _unset()  # which selection-rule variants fit (harness.core.variants)
    explained_deaths: dict[str, str] = _unset()
    report_suppressed: bool = _unset()
    observed_victim: dict[str, Any] | None = _unset()
    predicted_victim: dict[str, Any] | None = _unset()
    victim_points: int | None = _unset()
    runner_up: dict[str, Any] | None = _unset()
    report_format: str = _unset()
    second_victims: list[str] = _unset()
    second_kill_cause: str = _unset()
    time_to_kill_s: float | None = _unset()
    retried: str = _unset()
    ratelimit_wait_s: float = _unset()
    # kill counting and the situations (harness/machine/counters.py, situations.py)
    kill_count: dict[str, Any] = _unset()
    memory_state: dict[str, Any] = _unset()
    throttle: dict[str, Any] = _unset()
    allocating_task: dict[str, str] = _unset()
    unfreed: dict[str, Any] = _unset()
    predicted_victims: list[str] = _unset()
    predicted_group: str | None = _unset()
    killed_workloads: list[str] = _unset()
    survivors: list[str] = _unset()
    protection: dict[str, Any] = _unset()
    zswap: dict[str, Any] = _unset()
    # the run
    kernel_log: str = _unset()
    kmsg_gaps: int = _unset()
    timings: dict[str, float] = _unset()
    duration_s: float = _unset()
    cleanup_error: str = _unset()
    # backend-specific
    vm: dict[str, Any] = _unset()
    console_tail: str = _unset()
    guest_lost: bool = _unset()
    docker: dict[str, Any] = _unset()
    signals: dict[str, bool] = _unset()

    def set_verdict(self, verdict: str, outcome: str, as_expected: bool | None, reason: str) -> None:
        """Settle the verdict (the enums reject a value that is not one of theirs)."""
        self.verdict = Verdict(verdict)
        self.outcome = Outcome(outcome)
        self.as_expected = as_expected
        self.reason = reason

    def fail(self, why: str) -> None:
        """Another signal contradicts the verdict: not as expected, *why* first in the reason."""
        self.as_expected = False
        self.reason = why + ("; " + self.reason if self.reason else "")

    def update(self, values: dict[str, Any]) -> None:
        """Set several fields at once; an unknown key is a bug, and raises."""
        for k, v in values.items():
            if k not in _FIELDS:
                raise KeyError(f"ScenarioRecord has no field {k!r}")
            setattr(self, k, v)
        self.verdict, self.outcome = Verdict(self.verdict), Outcome(self.outcome)

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready data: fields never set are left out, enums become strings."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v is UNSET:
                continue
            out[f.name] = v.value if isinstance(v, StrEnum) else v
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScenarioRecord:
        """Read a record written by :meth:`to_dict` (e.g. by a guest); unknown keys are an error."""
        unknown = set(data) - _FIELDS
        if unknown:
            raise KeyError(f"not a ScenarioRecord field: {', '.join(sorted(unknown))}")
        rec = cls(**data)
        rec.verdict, rec.outcome = Verdict(rec.verdict), Outcome(rec.outcome)
        return rec


_FIELDS = frozenset(f.name for f in dataclasses.fields(ScenarioRecord))
