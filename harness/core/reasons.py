"""The class of a verdict's reason: a short stable name for *why* a report got its verdict.

The analysis explains every verdict in a sentence (:mod:`harness.core.analysis`); fixtures and the
paste evaluation (``bench/eval_pastes.py``) need to say which *kind* of explanation they expect
without depending on the wording.  :func:`reason_class` maps a (verdict, reason) pair to one of:

* ``match``: ``match``;
* undecidable: ``no-table`` (no task table; also "only the kill line was printed"),
  ``no-kill-line`` (the report ends before the kill), ``table-incomplete``,
  ``victim-not-in-table``, ``totalpages-unknown``, ``earlier-kill-lost``;
* mismatch: ``impossible-score``, ``patched-kernel``, ``era``, ``tie``, ``near-tie``, ``root-bonus``,
  ``earlier-victim``, ``not-in-table``, ``ineligible``, ``no-eligible``, ``allocating-task``,
  ``rule-variant`` (a run's rows name the rule variant that fits: :func:`harness.core.variants.explain_rows`),
  ``unexplained``;
* no-victim: ``panic_on_oom``, ``no-killable``, ``exiting``, ``panic``;
* ``other`` when no rule knows the sentence (a new explanation: add a rule here).
"""

from __future__ import annotations

__all__ = ["reason_class", "REASON_CLASSES"]

# (verdict, substring of the reason, class), first match wins
_RULES: tuple[tuple[str, str, str], ...] = (
    ("undecidable", "no task table", "no-table"),
    ("undecidable", "only the kill line", "no-table"),
    ("undecidable", "ends before the kill line", "no-kill-line"),
    ("undecidable", "task table incomplete", "table-incomplete"),
    ("undecidable", "not in the task table", "victim-not-in-table"),
    ("undecidable", "totalpages unknown", "totalpages-unknown"),
    ("undecidable", "beginning is lost: an earlier kill", "earlier-kill-lost"),
    ("mismatch", "impossible", "impossible-score"),
    ("mismatch", "patched kernel", "patched-kernel"),
    ("mismatch", "era mismatch", "era"),
    ("mismatch", "near tie", "near-tie"),
    ("mismatch", "tie:", "tie"),
    ("mismatch", "root bonus", "root-bonus"),
    ("mismatch", "earlier OOM event", "earlier-victim"),
    ("mismatch", "not in the task table", "not-in-table"),
    ("mismatch", "is ineligible in the model", "ineligible"),
    ("mismatch", "finds no eligible task", "no-eligible"),
    ("mismatch", "oom_kill_allocating_task", "allocating-task"),
    ("mismatch", "consistent with:", "rule-variant"),
    ("mismatch", "unexplained", "unexplained"),
    ("no-victim", "panic_on_oom", "panic_on_oom"),
    ("no-victim", "no killable", "no-killable"),
    ("no-victim", "already exiting", "exiting"),
    ("no-victim", "panic", "panic"),
)

REASON_CLASSES = frozenset({"match", "other"} | {c for _, _, c in _RULES})


def reason_class(verdict: str, reason: str) -> str:
    """``("undecidable", "no task table in the report ...")`` -> ``"no-table"``."""
    if verdict == "match":
        return "match"
    for v, needle, cls in _RULES:
        if v == verdict and needle in reason:
            return cls
    return "other"
