"""Name the selection rule a kernel changed: re-run the model under small rule variants.

When a kernel's victim (or its ``/proc/PID/oom_score`` values) disagrees with the reference model,
"unexplained" is true but useless to a kernel developer who just changed ``mm/oom_kill.c``.  This
module re-runs the analysis under a small set of *rule variants* and says which of them are
consistent with every observation of a run: "consistent with: oom_score_adj not applied; 3 of 3
scenarios".  A variant is a transformation of the model's *inputs* (the report's task table, the
swap total the report printed, the era): the model itself is not touched, so a variant is exactly
"the stock rule, fed what the changed kernel effectively looked at".

Observations per scenario: every OOM report with a selected victim (does the variant's choice
equal the kernel's?) and every pre-trigger ``/proc/PID/oom_score`` (does the variant's score equal
the kernel's, within 1?).  A variant that cannot decide an observation (an ``undecidable``
analysis) does not count for or against it.  ``distinct`` counts the observations on which a
variant's prediction differs from the stock rules' at all: a variant with none was not told apart
from the stock rules by the run (e.g. ``memcg-global-totalpages`` in a run whose memcg OOMs have
no ``oom_score_adj``: totalpages moves every task's points alike and only scales the adj term).

Stdlib only (it runs in the guest with the engine); imports only model, eras, events, analysis.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from .analysis import Context, analyze_all
from .eras import ERAS, Era, infer_era
from .events import OomEvent, TaskRow
from .model import OOM_SCORE_ADJ_MIN, Task, oom_score

RowFn = Callable[[list[TaskRow]], list[TaskRow]]
TaskFn = Callable[[Task], Task]


@dataclass(frozen=True)
class Variant:
    """One alternative rule.  ``rows``/``task`` transform the inputs (report rows / snapshot tasks),
    ``no_swap`` drops swap from totalpages, ``era`` runs another era's rules, ``global_totalpages``
    gives a memcg OOM the whole machine's totalpages (RAM + swap) instead of the memcg's limit."""

    name: str
    rule: str
    rows: RowFn | None = None
    task: TaskFn | None = None
    no_swap: bool = False
    era: str | None = None
    global_totalpages: bool = False


def _adj(f: Callable[[int], int]) -> tuple[RowFn, TaskFn]:
    def keep_min(a: int) -> int:
        return a if a == OOM_SCORE_ADJ_MIN else f(a)

    return (lambda rows: [replace(r, oom_score_adj=keep_min(r.oom_score_adj)) for r in rows],
            lambda t: replace(t, oom_score_adj=keep_min(t.oom_score_adj)))


_IGN_R, _IGN_T = _adj(lambda a: 0)
_POS_R, _POS_T = _adj(lambda a: min(a, 0))
_NEG_R, _NEG_T = _adj(lambda a: max(a, 0))


def _no_swap_rows(rows: list[TaskRow]) -> list[TaskRow]:
    return [replace(r, swapents=0 if r.swapents is not None else None) for r in rows]


def _no_pt_rows(rows: list[TaskRow]) -> list[TaskRow]:
    return [replace(r, nr_ptes=0 if r.nr_ptes is not None else None, nr_pmds=0 if r.nr_pmds is not None else None,
                    pgtables_bytes=0 if r.pgtables_bytes is not None else None) for r in rows]


#: The fixed variants (the neighbouring eras are added per event).
VARIANTS: tuple[Variant, ...] = (
    Variant("adj-ignored", "oom_score_adj not applied", _IGN_R, _IGN_T),
    Variant("adj-positive-clamped", "positive oom_score_adj clamped to 0", _POS_R, _POS_T),
    Variant("adj-negative-clamped", "negative oom_score_adj (above -1000) clamped to 0", _NEG_R, _NEG_T),
    Variant("ties-reversed", "ties go to the other end of the scan (first task instead of last, or the reverse)",
            lambda rows: list(reversed(rows))),
    Variant("swap-not-counted", "a task's swap entries not counted", _no_swap_rows,
            lambda t: replace(t, swapents=0)),
    Variant("pgtables-not-counted", "page tables not counted", _no_pt_rows,
            lambda t: replace(t, nr_ptes=0, nr_pmds=0, pgtables_bytes=0)),
    Variant("totalpages-no-swap", "totalpages without swap (RAM only; the memcg limit without swap)", no_swap=True),
    # Told apart from the stock rules only by a memcg OOM whose tasks' oom_score_adj differ (totalpages
    # scales the adj term alone), or by a printed score (<= 5.0: points * 1000 / totalpages);
    # /proc/PID/oom_score uses the machine's totalpages under both rules, so it never tells them apart.
    Variant("memcg-global-totalpages", "a memcg OOM's totalpages from the whole machine (RAM + swap), "
            "not the memcg limit", global_totalpages=True),
)


def _era(label: str) -> Era | None:
    return next((e for e in ERAS if e.label == label), None)


def era_variants(era: Era) -> list[Variant]:
    """The rules of the eras either side of ``era``."""
    i = ERAS.index(era)
    return [Variant(f"era-{ERAS[j].label}", f"the {ERAS[j].label} era's rules", era=ERAS[j].label)
            for j in (i - 1, i + 1) if 0 <= j < len(ERAS)]


def _machine_memcg(ev: OomEvent, ctx: Context) -> OomEvent | None:
    """A memcg OOM as a kernel sees it that takes totalpages from the whole machine: its limit
    becomes RAM + swap (the swap terms zeroed so that mem_cgroup_get_max() is exactly that), its
    usage stays at the limit if it was (the second-kill rule reads it).  None when the machine's
    RAM or swap total is unknown (a memcg report prints neither)."""
    mc = ev.memcg
    if ev.kind != "memcg" or mc is None or mc.limit_kb is None:
        return ev
    swap_kb = ev.meminfo.total_swap_kb if ev.meminfo and ev.meminfo.total_swap_kb is not None else None
    pkb = (ctx.page_size or 4096) // 1024
    if swap_kb is None and ctx.total_swap_pages is not None:
        swap_kb = ctx.total_swap_pages * pkb
    if ctx.totalram_pages is None or swap_kb is None:
        return None
    total = ctx.totalram_pages * pkb + swap_kb
    at_limit = mc.usage_kb is not None and mc.usage_kb >= mc.limit_kb
    return replace(ev, memcg=replace(mc, limit_kb=total, memsw_limit_kb=total, swap_limit_kb=0,
                                     usage_kb=total if at_limit else mc.usage_kb))


def _transform(ev: OomEvent, v: Variant, ctx: Context) -> OomEvent | None:
    ev2 = replace(ev, table=v.rows(list(ev.table))) if v.rows and ev.table else ev
    if v.no_swap and ev2.meminfo is not None and ev2.meminfo.total_swap_kb:
        ev2 = replace(ev2, meminfo=replace(ev2.meminfo, total_swap_kb=0))
    if v.global_totalpages:
        return _machine_memcg(ev2, ctx)
    return ev2


def _decided(a: Any) -> bool:
    return a.observed is not None and a.verdict in ("match", "mismatch")


def _pid(a: Any) -> Any:
    return (a.predicted or {}).get("pid")


def event_observations(events: Sequence[OomEvent], ctx: Context | None, variants: Iterable[Variant],
                       distinct: dict[str, int] | None = None) -> dict[str, list[bool]]:
    """Per variant (``model`` = the stock rules): for every event whose stock analysis has a victim,
    whether the variant's predicted victim is the kernel's (undecided ones left out).  ``distinct``,
    when given, gets per variant the number of those events whose predicted victim differs from
    the stock rules' (a variant that cannot be evaluated at all is left out of both)."""
    ctx = ctx or Context()
    base = analyze_all(events, ctx)
    keep = [i for i, a in enumerate(base) if _decided(a)]
    out: dict[str, list[bool]] = {"model": [base[i].verdict == "match" for i in keep]}
    for v in variants:
        vctx = replace(ctx, era=v.era) if v.era else ctx
        if v.no_swap:
            vctx = replace(vctx, total_swap_pages=0)
        moved = [_transform(ev, v, ctx) for ev in events]
        if any(ev is None for ev in moved):
            continue  # this run lacks what the variant needs (the machine's RAM, say)
        alt = analyze_all([ev for ev in moved if ev is not None], vctx)
        out[v.name] = [alt[i].verdict == "match" for i in keep if _decided(alt[i])]
        if distinct is not None:
            distinct[v.name] = sum(1 for i in keep if _decided(alt[i]) and _pid(alt[i]) != _pid(base[i]))
    return out


def score_observations(tasks: Sequence[tuple[Task, int | None]], era_label: str | None, totalpages: int | None,
                       variants: Iterable[Variant], page_size: int = 4096,
                       distinct: dict[str, int] | None = None) -> dict[str, list[bool]]:
    """Per variant: for every task with a kernel ``oom_score``, whether the variant's equals it (±1);
    ``distinct`` as in :func:`event_observations` (scores that differ from the stock rules' by more than 1)."""
    era = _era(era_label) if era_label else None
    if era is None or not totalpages:
        return {}
    have = [(t, k) for t, k in tasks if k is not None]

    def scores(fn: TaskFn | None, e: Era) -> list[int]:
        return [oom_score(fn(t) if fn else t, totalpages, e, page_size) for t, _k in have]

    stock = scores(None, era)
    out = {"model": [abs(s - k) <= 1 for s, (_t, k) in zip(stock, have, strict=True)]}
    for v in variants:
        if v.no_swap or v.global_totalpages:
            continue  # oom_score's totalpages is the machine's under both rules; these are about the OOM's
        e = _era(v.era) if v.era else era
        if e is not None:
            mine = scores(v.task, e)
            out[v.name] = [abs(s - k) <= 1 for s, (_t, k) in zip(mine, have, strict=True)]
            if distinct is not None:
                moved = sum(abs(a - b) > 1 for a, b in zip(mine, stock, strict=True))
                distinct[v.name] = distinct.get(v.name, 0) + moved
    return out


def check_scenario(events: Sequence[OomEvent], ctx: Context | None,
                   snapshot: Sequence[tuple[Task, int | None]] = (), score_era: str | None = None,
                   score_totalpages: int | None = None, page_size: int = 4096) -> dict[str, Any]:
    """The variant observations of one scenario: ``{"rules": {name: rule}, "agree": {name: [n_ok, n]},
    "victims": [n_ok, n], "distinct": {name: n}}`` where ``model`` is the stock rules, ``victims``
    counts the stock model's agreement on the victims alone and ``distinct`` the observations on
    which a variant predicts otherwise than the stock rules.  Stored in the scenario's record (``variants``)."""
    variants = list(VARIANTS)
    eras = [infer_era(ev.kernel_version, ev.features, ctx.era if ctx else None).era for ev in events]
    if eras:
        variants += era_variants(eras[0])
    distinct: dict[str, int] = {}
    obs = event_observations(events, ctx, variants, distinct)
    victims = list(obs["model"])  # the victims alone (the oom_score observations are added below)
    for k, v in score_observations(snapshot, score_era, score_totalpages, variants, page_size, distinct).items():
        obs.setdefault(k, []).extend(v)
    return {"rules": {v.name: v.rule for v in variants},
            "victims": [sum(victims), len(victims)],
            "agree": {k: [sum(v), len(v)] for k, v in obs.items()},
            "distinct": distinct}


def _victims(c: dict[str, Any]) -> list[int]:
    return list(c.get("victims") or c["agree"]["model"])


def _indistinguishable(scen: Sequence[tuple[str, dict[str, Any]]], rules: dict[str, str]) -> list[str]:
    """Variants that no observation of the run told apart from the stock rules (records written before
    ``distinct`` existed say nothing either way)."""
    told: dict[str, int] = {}
    for _s, c in scen:
        for name, n in (c.get("distinct") or {}).items():
            told[name] = told.get(name, 0) + int(n)
    return [name for name in rules if name in told and told[name] == 0]


def summarize(checks: Sequence[tuple[str, dict[str, Any] | None]]) -> dict[str, Any]:
    """Across the scenarios of a run: which variants are consistent with every observation.

    ``checks`` are ``(scenario, check_scenario(...))``.  Returns ``{"model_ok", "scenarios",
    "unexplained", "victims_differ", "consistent": [{variant, rule, scenarios}], "best", "text",
    "indistinguishable"}`` (``indistinguishable``: variants no observation told apart from the stock rules);
    ``text`` is empty when the stock model explains every observation (victims and oom_score values).
    """
    scen = [(s, c) for s, c in checks if c and c.get("agree", {}).get("model", [0, 0])[1] > 0]
    rules: dict[str, str] = {}
    for _s, c in scen:
        rules.update(c["rules"])
    # Tried when the kernel's choice or its oom_score values disagree with the model (a rule change
    # can leave every victim alone and still move /proc/PID/oom_score: swap not counted, say).
    bad = [s for s, c in scen if c["agree"]["model"][0] != c["agree"]["model"][1]]
    victims_differ = [s for s, c in scen if _victims(c)[0] != _victims(c)[1]]
    model_ok = not bad
    res: dict[str, Any] = {"model_ok": model_ok, "scenarios": len(scen), "unexplained": bad,
                           "victims_differ": victims_differ, "consistent": [], "text": "",
                           "indistinguishable": _indistinguishable(scen, rules)}
    if model_ok or not scen:
        return res
    score: list[tuple[str, int, int]] = []
    for name in rules:
        ok = n = 0
        for _s, c in scen:
            a = c["agree"].get(name)
            if not a or a[1] == 0:
                continue
            n += 1
            ok += a[0] == a[1]
        if n:
            score.append((name, ok, n))
    full = [(name, ok, n) for name, ok, n in score if ok == n]
    res["consistent"] = [{"variant": name, "rule": rules[name], "scenarios": n} for name, _ok, n in full]
    if full:
        res["text"] = "consistent with: " + "; ".join(f"{rules[name]} ({name}); {ok} of {n} scenarios"
                                                      for name, ok, n in full)
    else:
        best = max(score, key=lambda x: (x[1] / x[2], x[2]), default=None)
        res["text"] = (f"no single rule variant is consistent with every observation ({len(bad)} scenario(s) "
                       f"the model does not explain: {', '.join(bad)}"
                       + ("" if victims_differ else "; only oom_score values differ: counters can move between "
                          "two reads") + ")"
                       + (f"; closest: {rules[best[0]]} ({best[1]} of {best[2]} scenarios)" if best else ""))
        if best:
            res["best"] = {"variant": best[0], "rule": rules[best[0]], "ok": best[1], "of": best[2]}
    return res


def _not_explained(check: Any) -> bool:
    """Does this scenario's check show the stock rules disagreeing with an observation?"""
    if not isinstance(check, dict):
        return False
    a = check.get("agree", {}).get("model", [0, 0])
    return bool(a[1]) and a[0] != a[1]


def explain_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The verdict rows of one run, each row the stock rules do not explain naming the rule variants
    consistent with the *whole run* in its ``reason`` (and listing them in ``rule_variants``).

    Why a separate step: a scenario's record is written when the scenario ends, but "consistent with
    every observation of the run" is known only once the run has ended; so the results layer applies
    this to a run's rows as it closes or reads them, and every view of a row (the run's table, KTAP,
    JUnit, the report) reads the same sentence.  "unexplained: the model picks X but the kernel chose
    Y" becomes "consistent with: oom_score_adj not applied (adj-ignored; 3 of 3 scenarios); the model
    picks X but the kernel chose Y".  Rows are copied, never changed; applying it twice changes nothing.
    """
    res = summarize([(r.get("scenario", "?"), r.get("variants")) for r in rows if isinstance(r.get("variants"), dict)])
    if res["model_ok"] or not res["scenarios"]:
        return [dict(r) for r in rows]
    if res["consistent"]:
        label = "consistent with: " + " or ".join(
            f"{c['rule']} ({c['variant']}; {c['scenarios']} of {c['scenarios']} scenarios)" for c in res["consistent"])
        names = [c["variant"] for c in res["consistent"]]
    else:
        best = res.get("best")
        label = ("no single rule variant is consistent with every observation of the run"
                 + (f" (closest: {best['rule']}, {best['ok']} of {best['of']} scenarios)" if best else ""))
        names = []
    out = []
    for r in rows:
        r2 = dict(r)
        reason = str(r2.get("reason") or "")
        if _not_explained(r2.get("variants")) and label not in reason:
            if names:
                rest = reason.replace("unexplained: ", "", 1)
                r2["reason"] = f"{label}; {rest}" if rest else label
            else:
                r2["reason"] = f"{reason}; {label}" if reason else label
            r2["rule_variants"] = names
        out.append(r2)
    return out
