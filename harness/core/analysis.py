"""Judge one parsed OOM report: which task the model says the kernel should have killed, and why
the kernel's choice agrees or not.

This is the only place that joins the parser's :class:`~harness.core.events.OomEvent` with the
model.  It derives ``totalpages`` from what the report printed (plus optional facts about the
machine in :class:`Context` that reports do not print, such as total swap for memcg OOMs), runs
the model in the era :func:`harness.core.eras.infer_era` picks, and gives one of four verdicts:

* ``match`` - the model's victim is the kernel's;
* ``mismatch`` - it is not, with the cause (a tie, another era's rule, an earlier victim still
  in the table, counters that moved between selection and the dump, ...);
* ``no-victim`` - the kernel killed nobody (panic_on_oom, nothing killable, victim exiting);
* ``undecidable`` - the report lacks what the decision needs; never a guess dressed as a verdict.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from .eras import ERAS, Era, EraChoice, infer_era
from .events import OomEvent, TaskRow
from .model import Selection, Task, _pagetable_pages, oom_badness, oom_score, select_bad_process, totalpages_memcg
from .parser import FOREIGN_COLUMNS

__all__ = ["Context", "Analysis", "analyze", "analyze_all", "EVENT_KEYS"]

# Keys every event of `parse --json` carries (schema 1, documented in the README; kept stable).
EVENT_KEYS = frozenset({"complete", "kind", "kernel", "era", "observed_victim", "predicted_victim", "verdict",
                        "reason", "candidates"})


@dataclass(slots=True)
class Context:
    """Facts about the machine that a report may not print; all optional."""

    total_swap_pages: int | None = None
    totalram_pages: int | None = None
    swappiness: int | None = None
    cgroup_v2: bool | None = None
    page_size: int | None = None
    era: str | None = None  # force an era (label or kernel version)
    cap_sys_admin_pids: frozenset[int] | None = None  # known CAP_SYS_ADMIN holders (root-bonus eras)


@dataclass(slots=True)
class Analysis:
    event: OomEvent
    era: Era
    era_evidence: str
    verdict: str
    reason: str
    totalpages: int | None
    totalpages_note: str
    observed: dict[str, Any] | None
    predicted: dict[str, Any] | None
    candidates: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    score: dict[str, Any] = field(default_factory=dict)  # see score_check()

    def to_dict(self) -> dict[str, Any]:
        ev = self.event
        return {
            "index": ev.index,
            "complete": ev.complete,
            "missing": list(ev.missing),
            "kind": ev.kind,
            "kernel": ev.kernel_version,
            "era": self.era.label,
            "era_evidence": self.era_evidence,
            "first_line": ev.first_line,
            "last_line": ev.last_line,
            "timestamp": ev.ts,
            "trigger": None
            if ev.trigger is None
            else {
                "comm": ev.trigger.comm,
                "gfp_mask": ev.trigger.gfp_mask,
                "gfp_flags": ev.trigger.gfp_flags,
                "order": ev.trigger.order,
                "oom_score_adj": ev.trigger.oom_score_adj,
                "pid": ev.current_pid,
            },
            "constraint": ev.summary.constraint if ev.summary else None,
            "oom_memcg": (ev.summary.oom_memcg if ev.summary else None) or (ev.memcg.limit_of if ev.memcg else None),
            "totalpages": self.totalpages,
            "totalpages_note": self.totalpages_note,
            "observed_victim": self.observed,
            "predicted_victim": self.predicted,
            "verdict": self.verdict,
            "reason": self.reason,
            "notes": list(self.notes),
            "candidates": self.candidates,
            "printed_score": self.score.get("printed_score"),
            "model_score": self.score.get("model_score"),
            "model_score_range": self.score.get("model_score_range"),
            "score_check": self.score.get("score_check", "unchecked"),
            "score_note": self.score.get("score_note", ""),
            "kills": [
                {
                    "pid": k.pid,
                    "name": k.name,
                    "message": k.message,
                    "group": k.group,
                    "shared_mm": k.shared_mm,
                    "anon_rss_kb": k.anon_rss_kb,
                    "file_rss_kb": k.file_rss_kb,
                    "shmem_rss_kb": k.shmem_rss_kb,
                    "oom_score_adj": k.oom_score_adj,
                }
                for k in ev.kills
            ],
            "group_kill_memcg": ev.group_memcg,
            "reaped": [{"pid": r.pid, "name": r.name, "reaped": r.reaped} for r in ev.reaper],
            "panic": ev.panic,
            "table_layout": ev.table_layout,
            "format": sorted(ev.features),
            "repairs": {
                "lines_rejoined": ev.repairs.lines_rejoined,
                "foreign_lines_skipped": ev.repairs.foreign_lines_skipped,
                "prefixes_stripped": dict(sorted(ev.repairs.prefixes_stripped.items())),
                "ambiguous_joins": list(ev.repairs.ambiguous_joins),
                "unrecognised": list(ev.repairs.unrecognised),
            },
        }


def _page_kb(ev: OomEvent, ctx: Context) -> int:
    if ctx.page_size:
        return ctx.page_size // 1024
    if ev.meminfo and ev.meminfo.page_size_kb:
        return ev.meminfo.page_size_kb
    return 4


def _nodes(spec: str | None) -> set[int] | None:
    """Parse a node list like ``0-1,3``; ``None`` for ``(null)`` or garbage."""
    if not spec or spec == "(null)":
        return None
    out: set[int] = set()
    try:
        for part in spec.split(","):
            if "-" in part:
                a, b = part.split("-", 1)
                out.update(range(int(a), int(b) + 1))
            elif part:
                out.add(int(part))
    except ValueError:
        return None
    return out


def derive_totalpages(ev: OomEvent, era: Era, ctx: Context) -> tuple[int | None, int | None, str]:
    """Return (low, high, how) bounds of ``oc->totalpages`` from the report and *ctx*.

    low == high means exact.  ``None`` bounds mean unknown.
    """
    pkb = _page_kb(ev, ctx)
    kind = ev.kind
    mi = ev.meminfo
    swap_pages: int | None = None
    if mi is not None and mi.total_swap_kb is not None:
        swap_pages = mi.total_swap_kb // pkb
    elif ctx.total_swap_pages is not None:
        swap_pages = ctx.total_swap_pages
    if kind == "memcg":
        mc = ev.memcg
        if mc is None or mc.limit_kb is None:
            return None, None, "memcg limit not in the report"
        mem = mc.limit_kb // pkb
        v2 = ctx.cgroup_v2 if ctx.cgroup_v2 is not None else (mc.swap_limit_kb is not None)
        memsw = mc.memsw_limit_kb // pkb if mc.memsw_limit_kb is not None else None
        smax = mc.swap_limit_kb // pkb if mc.swap_limit_kb is not None else None
        swappiness = ctx.swappiness if ctx.swappiness is not None else 60

        def calc(swap: int) -> int:
            return totalpages_memcg(
                era,
                limit=mem,
                total_swap_pages=swap,
                swappiness=swappiness,
                memsw_limit=memsw,
                swap_max=smax,
                cgroup_v2=v2,
                page_size=pkb * 1024,
            )

        if swap_pages is not None:
            t = calc(swap_pages)
            return (
                t,
                t,
                f"memcg limit {mc.limit_kb}kB" + (f" + swap term (total swap {swap_pages} pages)" if t != mem else ""),
            )
        lo, hi = calc(0), calc(1 << 40)
        if lo == hi:
            return lo, hi, f"memcg limit {mc.limit_kb}kB (swap cannot add: its limit is 0)"
        return (
            lo,
            (None if hi >= (1 << 40) else hi),
            (f"memcg limit {mc.limit_kb}kB; swap term unknown (the report does not print total swap)"),
        )
    if kind in ("cpuset", "mempolicy"):
        allowed = _nodes(
            ev.summary.nodemask
            if (ev.summary and kind == "mempolicy")
            else (ev.summary.mems_allowed if ev.summary else ev.mems_allowed)
        )
        if mi is None or not mi.zone_present_kb or allowed is None or swap_pages is None:
            return None, None, "node sizes or swap not in the report"
        present = sum(kb for key, kb in mi.zone_present_kb.items() if int(key.split("/")[0]) in allowed)
        t = swap_pages + present // pkb
        # zones above the allocation's gfp zone are not printed (6.1+): a lower bound then
        return t, t, f"swap {swap_pages} + present pages of nodes {sorted(allowed)}"
    # global
    if ctx.totalram_pages is not None and swap_pages is not None:
        t = ctx.totalram_pages + swap_pages
        return t, t, "totalram (from the machine) + total swap"
    if mi is not None and mi.pages_ram is not None and swap_pages is not None:
        ram = mi.pages_ram - (mi.pages_reserved or 0)
        t = ram + swap_pages
        note = "pages RAM - pages reserved + Total swap"
        if not era.at_least(4, 0):
            note += " (approximate before 4.0: show_mem counted reserved pages differently)"
        return t, t, note
    return None, None, "Mem-Info totals not in the report"


def _task(row: TaskRow, era: Era, ctx: Context, previous_victims: set[int]) -> Task:
    cap = False
    if era.root_bonus is not None:
        cap = (row.pid in ctx.cap_sys_admin_pids) if ctx.cap_sys_admin_pids is not None else row.uid == 0
    victim = row.pid in previous_victims or row.tgid in previous_victims
    return Task(
        pid=row.pid,
        name=row.name,
        rss=row.rss,
        swapents=row.swapents or 0,
        nr_ptes=row.nr_ptes or 0,
        nr_pmds=row.nr_pmds or 0,
        pgtables_bytes=row.pgtables_bytes or 0,
        oom_score_adj=row.oom_score_adj,
        tgid=row.tgid,
        uid=row.uid,
        cap_sys_admin=cap,
        oom_victim=victim,
        mm_oom_skip=victim,
    )


def _who(pid: int | None, name: str | None) -> dict[str, Any] | None:
    return None if pid is None else {"pid": pid, "name": name}


def _observed(ev: OomEvent) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(selected, killed).  <=5.0 the selected task may differ from the killed child."""
    k = ev.first_kill
    killed = _who(k.pid, k.name) if k else None
    if ev.select is not None:
        return _who(ev.select.pid, ev.select.name), killed
    if ev.summary is not None and ev.summary.pid is not None:
        return _who(ev.summary.pid, ev.summary.task), killed
    return killed, killed


def _find(rows: list[Task], pid: int) -> Task | None:
    for t in rows:
        if t.pid == pid:
            return t
    for t in rows:
        if t.tgid == pid:
            return t
    return None


def _select(tasks: list[Task], tp: int, era: Era, pkb: int) -> Selection:
    return select_bad_process(tasks, tp, era, page_size=pkb * 1024)


def analyze(ev: OomEvent, ctx: Context | None = None, previous_victims: Iterable[int] = (),
            previous: OomEvent | None = None) -> Analysis:
    """Predict the victim of *ev* and judge the kernel's choice.

    *previous* is the event before it in the same log: a report that follows a kill within a
    second, no longer lists that victim and still finds the memcg at its limit is a second kill
    before the victim's memory was freed, and gets a note saying why the kernel did not wait.
    """
    ctx = ctx or Context()
    choice: EraChoice = infer_era(ev.kernel_version, ev.features, ctx.era)
    era = choice.era
    prev = set(previous_victims)
    pkb = _page_kb(ev, ctx)
    lo, hi, tp_note = derive_totalpages(ev, era, ctx)
    selected, killed = _observed(ev)
    notes: list[str] = []
    if choice.suspect_version:
        notes.append("kernel version contradicts the report format (vendor back-port?)")
    if ev.memcg is not None and (ev.memcg.min_protection_kb or ev.memcg.low_protection_kb):
        # 6.19+ prints the OOM memcg's protection; oom_badness() has no protection term (6.12 and 7.2 mm/oom_kill.c)
        notes.append(f"memory.min/low protection ({ev.memcg.min_protection_kb} kB / {ev.memcg.low_protection_kb} kB) "
                     "shields memory from reclaim only: victim selection ignores it, and so does the model")
    if previous is not None:
        note = _second_kill_note(ev, previous, era)
        if note:
            notes.append(note)

    def result(
        verdict: str,
        reason: str,
        predicted: dict[str, Any] | None = None,
        cands: list[dict[str, Any]] | None = None,
        tp: int | None = None,
    ) -> Analysis:
        return Analysis(
            ev,
            era,
            choice.evidence,
            verdict,
            reason,
            tp if tp is not None else lo,
            tp_note,
            selected,
            predicted,
            cands or [],
            notes,
            score,
        )

    # (tp_note and lo may be refined below; result() reads them when called)
    score: dict[str, Any] = score_check(ev, era, None, None, lo, hi, pkb, tp_note, "no task table in the report")

    if not ev.table:
        if ev.allocating_task_kill:
            return result(
                "match" if killed and ev.current_pid in (None, killed["pid"]) else "mismatch",
                "vm.oom_kill_allocating_task=1: the allocating task is killed without scoring",
                _who(ev.current_pid, ev.trigger.comm if ev.trigger else None),
            )
        if ev.panic or ev.no_killable:
            return result("no-victim", _no_victim_reason(ev))
        if ev.trigger is None and ev.kills and ev.summary is None and ev.memcg is None and ev.meminfo is None:
            return result(
                "undecidable",
                "only the kill line was printed: the kernel suppressed the report "
                "(OOM report ratelimit: at most 10 reports per 5 s), or the log lost its start",
            )
        return result("undecidable", "no task table in the report (vm.oom_dump_tasks=0, or it was cut off)")
    # Scoring needs totalpages only through the oom_score_adj term (and the 0..1000 scale).
    tp_known = lo is not None
    tp = lo if lo is not None else 1_000_000_000  # placeholder that keeps ordering for adj=0 rows
    tasks = [_task(r, era, ctx, prev) for r in ev.table]
    # The kernel's printed score against the model's, from the report alone (never from the score).
    score = _score_in(ev, era, ctx, prev, selected, killed, pkb)
    if score["score_check"] == "disagree" and choice.alternatives:
        # A vendor kernel's back-ports do not always show in the report's format (RHEL 6's "2.6.32"
        # counts nr_ptes like 2.6.39 in some builds and not in others): say which eras fit.
        fits = [a.label for a in choice.alternatives
                if _score_in(ev, a, ctx, prev, selected, killed, pkb)["score_check"] == "agree"]
        if fits:
            score["score_check"] = "other-era"
            score["score_note"] += (f"; the printed score fits era {' / '.join(fits)}, not {era.label}: this "
                                    f"kernel ({choice.version or 'version unknown'}) has a change its report "
                                    "format does not show (a back-port?)")
    sel = _select(tasks, tp, era, pkb)
    cands = _candidates(sel, tp, era, pkb, _global_totalpages(ev, lo, ctx, pkb))
    predicted = _who(sel.chosen.pid, sel.chosen.name) if sel.chosen else None

    if ev.allocating_task_kill:
        want = _who(ev.current_pid, ev.trigger.comm if ev.trigger else None)
        if want is None and killed is not None:
            # An excerpt without the header: the kill line's own "(oom_kill_allocating_task)" says
            # the victim is current (mm/oom_kill.c out_of_memory() sets oc->chosen = current).
            want = dict(killed)
            notes.append("allocating task taken from the kill line (the report's header is not in the log)")
        ok = killed is not None and want is not None and killed["pid"] == want["pid"]
        return result(
            "match" if ok else "mismatch",
            "vm.oom_kill_allocating_task=1: the allocating task is killed without scoring"
            + ("" if ok else f"; killed {killed} instead of the allocating task {want}"),
            want,
            cands,
        )
    # a group kill can follow a skipped victim (its mm was gone): the group's kills count
    skipped = ev.victim_exiting and not any(k.group for k in ev.kills)
    if ev.panic or ev.no_killable or skipped or selected is None:
        if ev.panic or ev.no_killable or skipped:
            return result("no-victim", _no_victim_reason(ev), predicted, cands)
        return result("undecidable", "the report ends before the kill line: " + "; ".join(ev.missing), predicted, cands)
    if not ev.table_complete:
        return result("undecidable", "task table incomplete: " + "; ".join(ev.missing), predicted, cands)
    if sel.aborted_by is not None:
        notes.append(f"an earlier victim ({sel.aborted_by.pid}) is still in the table")

    sel_pid = selected["pid"]
    obs_task = _find(tasks, sel_pid)
    if obs_task is None and killed is not None and ev.select is not None and killed["pid"] != sel_pid:
        k_task = _find(tasks, killed["pid"])
        if k_task is not None and k_task.name == ev.select.name:
            # Pre-5.3 memcg OOMs scan threads: "Kill process <tid>" names a thread of a listed process.
            obs_task = k_task
            notes.append(f"the select line names thread {sel_pid} of process {k_task.pid} (thread scan)")
    if obs_task is None and ev.trigger is None:
        return result(
            "undecidable",
            f"victim {sel_pid} ({selected['name']}) is not in the task table, and the "
            "report's beginning is lost, so the table may be partial",
            predicted,
            cands,
        )

    # The printed score (<=5.0) pins down totalpages when the report does not.
    if (not tp_known or hi != lo) and ev.select is not None and obs_task is not None:
        # (no bound at all when the report printed no memory totals: search every plausible size)
        top = hi if (hi is not None or tp_known) else TP_MAX
        solved = _solve_totalpages(obs_task, ev.select.score, era, lo or 1, top, pkb)
        if solved is None and era.root_bonus is not None and obs_task.cap_sys_admin:
            # The uid-0 guess for CAP_SYS_ADMIN may be wrong (containers drop it): ask the score.
            no_caps = [replace(t, cap_sys_admin=False) for t in tasks]
            obs2 = _find(no_caps, obs_task.pid)
            solved = _solve_totalpages(obs2, ev.select.score, era, lo or 1, top, pkb) if obs2 else None
            if solved is not None:
                tasks, obs_task = no_caps, obs2
                notes.append("the printed score fits only without CAP_SYS_ADMIN: no root bonus applied")
        if solved is not None:
            lo, hi = solved
            tp_known, tp = True, lo
            tp_note += f"; {lo}..{hi} from the printed score {ev.select.score}"
            sel = _select(tasks, tp, era, pkb)
            cands = _candidates(sel, tp, era, pkb, _global_totalpages(ev, lo, ctx, pkb))
            predicted = _who(sel.chosen.pid, sel.chosen.name) if sel.chosen else None

    # Uncertain totalpages: does the answer depend on it?
    if not tp_known or hi != lo:
        if not _choice_independent_of_totalpages(tasks, lo if tp_known else None, hi, era, pkb):
            return result(
                "undecidable",
                f"totalpages unknown ({tp_note}) and oom_score_adj values make it matter",
                predicted,
                cands,
            )
        notes.append(f"totalpages not exact ({tp_note}); it does not change the ranking")

    child_note = ""
    if killed and killed["pid"] != sel_pid and not (obs_task is not None and obs_task.pid == killed["pid"]):
        child_note = (
            f"; the kernel then sacrificed child {killed['pid']} ({killed['name']})"
            if (era.sacrifice_child or ev.select)
            else ""
        )
    if sel.chosen is not None and (sel.chosen.pid == sel_pid or (obs_task is not None and obs_task is sel.chosen)):
        why = f"highest points ({sel.points}) of {sum(1 for c in sel.ranked if c.points is not None)} eligible"
        if sel.tied_with:
            rule = "last scanned wins (5.3+)" if era.ties_to_last else "first scanned wins"
            why += f"; tied with {', '.join(str(t.pid) for t in sel.tied_with)}, {rule}"
        return result("match", why + child_note, predicted, cands)

    # --- mismatch: find the cause ------------------------------------------------------------
    impossible = _impossible_score(ev, tasks, era, tp, pkb) if (tp_known and lo == hi) else None
    foreign = _foreign_columns(ev)
    if foreign and not impossible:
        impossible = (
            f"patched kernel: its task table has column(s) no mainline kernel prints ({', '.join(foreign)}), so "
            "its selection need not follow mainline's oom_badness()"
        )
    reason = impossible or _explain(ev, sel, tasks, obs_task, selected, era, choice, tp, pkb, prev)
    if reason.startswith("unexplained") and ev.trigger is None and era.at_least(4, 7) and sel.chosen is not None:
        # The log before the table is lost: it may hold an earlier kill of the model's top task, which
        # is then skipped once reaped (4.7+: oom_evaluate_task() skips a victim whose mm has
        # MMF_OOM_SKIP), so the kernel's next choice is no evidence against the model.
        return result(
            "undecidable",
            f"the model's top task {sel.chosen.pid} ({sel.chosen.name}) is not the kernel's, and the report's "
            "beginning is lost: an earlier kill of it (reaped, MMF_OOM_SKIP) would explain the choice",
            predicted,
            cands,
        )
    return result("mismatch", reason + child_note, predicted, cands)


# An upper bound for totalpages when a report prints no memory totals: 2^40 pages (4 PiB of 4 KiB
# pages) is more RAM + swap than any machine has.
TP_MAX = 1 << 40


def _choice_independent_of_totalpages(tasks: list[Task], lo: int | None, hi: int | None, era: Era, pkb: int) -> bool:
    """Does every ``totalpages`` in [lo, hi] (unknown bounds: 1 and :data:`TP_MAX`) select the same task?

    ``oom_badness()`` depends on totalpages in one way per era (mm/oom_kill.c):

    * 3.5+ ("mm, oom: normalize oom scores to oom_score_adj scale only for userspace", v3.5):
      ``points = rss + swap + pgtables; [adj -= 30 if CAP_SYS_ADMIN, until 3.13]; adj *= totalpages /
      1000; points += adj`` (oom_badness(), "/* Normalize to oom_score_adj units */", the same lines
      from v3.5 to v6.18) -- so the difference between two tasks is affine in ``totalpages / 1000``;
    * 2.6.36-3.4 (a63d83f427fb): ``points = (rss + swap [+ nr_ptes]) * 1000 / totalpages [- 30] + adj``
      -- the difference is affine in ``1 / totalpages``.

    A difference that favours the same task at both ends of the interval favours it throughout, so
    checking the two ends decides (a tie at an end is broken by scan order, which does not depend on
    totalpages) -- unless a clamp is involved at an end (eligible scores below 1 become 1 before 5.9;
    the 0..1000 scale's ceiling), which is taken as dependence.  (On the 0..1000 scale integer
    division can still create a tie inside the interval; scan order breaks it.)
    """
    ends = (max(lo or 1, 1), hi if hi is not None else TP_MAX)
    chosen: int | None = None
    for tp in ends:
        s = _select(tasks, tp, era, pkb)
        if s.chosen is None or s.points is None:
            return False
        if chosen is not None and s.chosen.pid != chosen:
            return False
        chosen = s.chosen.pid
        if (not era.signed and s.points <= 1) or (era.thousand_scale and s.points >= 1000):
            return False
    return True


def _score_in(ev: OomEvent, era: Era, ctx: Context, prev: set[int], selected: dict[str, Any] | None,
              killed: dict[str, Any] | None, pkb: int) -> dict[str, Any]:
    """:func:`score_check` with everything the era decides (totalpages, root bonus) derived for *era*."""
    lo, hi, note = derive_totalpages(ev, era, ctx)
    t = _selected_task(ev, [_task(r, era, ctx, prev) for r in ev.table], selected, killed)
    row = next((r for r in ev.table if t is not None and r.pid == t.pid), None)
    why = None if t is not None or selected is None else f"the selected task {selected['pid']} is not in the task table"
    return score_check(ev, era, t, row, lo, hi, pkb, note, why)


def _selected_task(ev: OomEvent, tasks: list[Task], selected: dict[str, Any] | None,
                   killed: dict[str, Any] | None) -> Task | None:
    """The table row of the task the kernel selected (a thread's pid names its process pre-5.3)."""
    if selected is None:
        return None
    t = _find(tasks, selected["pid"])
    if t is None and killed is not None and ev.select is not None and killed["pid"] != selected["pid"]:
        k = _find(tasks, killed["pid"])
        if k is not None and k.name == ev.select.name:
            t = k
    return t


# A PTE page maps PAGE_SIZE / 8 pages.  The densest layout of total_vm pages needs ceil(total_vm / 512)
# of them; each VMA can straddle one more table at each end.  The report prints neither the VMAs nor
# nr_ptes before 3.6, so the bound below assumes at most this many extra tables.
_SPARSE_PTE_PAGES = 64


def score_check(ev: OomEvent, era: Era, t: Task | None, row: TaskRow | None, lo: int | None, hi: int | None,
                pkb: int, tp_note: str, why_not: str | None) -> dict[str, Any]:
    """The kernel's own score for the task it selected against the model's, from the report alone.

    <=5.0 kernels print ``Kill process N (comm) score S``: 2.6.36-3.4 the ``oom_badness()`` value itself
    (0..1000; v3.4 mm/oom_kill.c ``oom_kill_process(..., points, ...)``), 3.5-5.0
    ``chosen_points * 1000 / totalpages`` (v3.5 ``out_of_memory()``; v4.19 ``oom_kill_process()``).
    The model's value never uses the printed score: where ``totalpages`` could only be solved from it,
    ``model_score`` is ``None`` and ``score_note`` says so.  Where the report lacks a counter the era
    counts (2.6.36-3.5 tables print neither ``swapents`` nor ``nr_ptes``), ``model_score_range`` bounds
    it: swap from the swap in use (memcg: memory+swap usage - memory usage), page tables from total_vm.
    ``score_check``: ``agree`` (equal, or inside the range), ``disagree``, or ``unchecked``.
    """
    printed = ev.select.score if ev.select is not None else None
    out: dict[str, Any] = {"printed_score": printed, "model_score": None, "model_score_range": None,
                           "score_check": "unchecked", "score_note": ""}
    if not era.sacrifice_child:
        out["score_note"] = "kernels from 5.1 print no score (bbbe48029720 removed the 'Kill process' line)"
        return out
    if printed is None:
        out["score_note"] = "the report has no 'Kill process ... score' line"
        return out
    if t is None or row is None:
        out["score_note"] = why_not or "the selected task is not in the task table"
        return out
    res = _score_against(out, ev, era, t, row, lo, hi, pkb, tp_note)
    if res["score_check"] == "disagree" and t.cap_sys_admin:
        # CAP_SYS_ADMIN is guessed from uid 0; containers drop it (k3s/kubepods): the other guess
        alt = _score_against(dict(out), ev, era, replace(t, cap_sys_admin=False), row, lo, hi, pkb, tp_note)
        if alt["score_check"] in ("agree", "consistent"):
            alt["score_note"] += "; it fits only without CAP_SYS_ADMIN (uid 0 without the capability: no root bonus)"
            return alt
    return res


def _score_against(out: dict[str, Any], ev: OomEvent, era: Era, t: Task, row: TaskRow, lo: int | None,
                   hi: int | None, pkb: int, tp_note: str) -> dict[str, Any]:
    printed = out["printed_score"]
    if lo is None or hi != lo:
        out["score_note"] = (f"totalpages is not in the report ({tp_note}): only the printed score could pin it "
                             "down, so the model gives no score of its own")
        if lo is not None:
            fit = _solve_totalpages(t, printed, era, lo, hi, pkb)
            out["score_check"] = "consistent" if fit else "disagree"
            out["score_note"] += (f"; the printed score fits totalpages {fit[0]}..{fit[1]}" if fit else
                                  f"; no totalpages from {lo} to {hi if hi is not None else 'unbounded'} gives it")
        return out
    tp, ps = lo, pkb * 1024

    def units(task: Task) -> int:
        b = oom_badness(task, tp, era, ps) or 0
        return b if era.thousand_scale else b * 1000 // max(tp, 1)

    unknown = []
    low: Task = t
    high: Task | None = t
    if row.swapents is None:
        unknown.append("swapents")
        bound = _swap_in_use_pages(ev, pkb)
        low = replace(low, swapents=0)
        high = None if (bound is None or high is None) else replace(high, swapents=bound)
    pte_unprinted = (era.counts_nr_ptes and row.nr_ptes is None) or (era.counts_pgtables_bytes
                                                                      and row.pgtables_bytes is None)
    if pte_unprinted:
        unknown.append("page tables")
        per = ps // 8
        pt_hi = -(-row.total_vm // per) + _SPARSE_PTE_PAGES
        low = replace(low, nr_ptes=0, pgtables_bytes=0)
        if high is not None:
            high = replace(high, nr_ptes=pt_hi, pgtables_bytes=pt_hi * ps)
    if not unknown:
        v = units(t)
        out.update(model_score=v, model_score_range=[v, v], score_check="agree" if v == printed else "disagree",
                   score_note=f"totalpages {tp} ({tp_note})")
        return out
    rng = [units(low), None if high is None else units(high)]
    out["model_score_range"] = rng
    ok = rng[0] <= printed and (rng[1] is None or printed <= rng[1])
    out["score_check"] = "agree" if ok else "disagree"
    out["score_note"] = (f"the report's table does not print {' or '.join(unknown)}: the model bounds the score "
                         f"(swap by the swap in use, page tables by total_vm / {ps // 8} + {_SPARSE_PTE_PAGES}); "
                         f"totalpages {tp} ({tp_note})")
    return out


def _swap_in_use_pages(ev: OomEvent, pkb: int) -> int | None:
    """Upper bound of one task's swap entries from what the report printed."""
    bounds = []
    mc, mi = ev.memcg, ev.meminfo
    if mc is not None and mc.memsw_usage_kb is not None and mc.usage_kb is not None:
        bounds.append(max(mc.memsw_usage_kb - mc.usage_kb, 0) // pkb)
    if mc is not None and mc.swap_usage_kb is not None:
        bounds.append(mc.swap_usage_kb // pkb)
    if mi is not None and mi.total_swap_kb is not None and mi.free_swap_kb is not None:
        bounds.append(max(mi.total_swap_kb - mi.free_swap_kb, 0) // pkb)
    return min(bounds) if bounds else None


def _solve_totalpages(t: Task, score: int, era: Era, lo: int, hi: int | None, pkb: int) -> tuple[int, int] | None:
    """Find the totalpages values for which the kernel would have printed *score* for task *t*.

    2.6.36-3.4 print the 0..1000 badness itself, 3.5-5.0 print ``points * 1000 / totalpages``.
    Returns the (min, max) of the consistent values within [lo, hi], or None if nothing fits.
    """
    if not era.sacrifice_child:
        return None
    ps = pkb * 1024

    def printed(tp: int) -> int | None:
        b = oom_badness(t, tp, era, ps)
        if b is None:
            return None
        return b if era.thousand_scale else b * 1000 // max(tp, 1)

    top = hi if hi is not None else max(lo, 1) * 4096
    if (not era.thousand_scale and t.oom_score_adj == 0 and not t.oom_origin
            and not (t.cap_sys_admin and era.root_bonus == "minus30")):
        # 3.5-5.0 with adj 0 (and no 3.5-3.13 root bonus, which is adj - 30 and so scales with
        # totalpages / 1000): the points do not depend on totalpages, and the printed
        # floor(points * 1000 / totalpages) == score solves exactly (score 0: any totalpages > points * 1000).
        b = oom_badness(t, max(lo, 1), era, ps)
        if b is None:
            return None
        first = b * 1000 // (score + 1) + 1
        last = b * 1000 // score if score > 0 else (hi if hi is not None else lo + (1 << 40))
        first, last = max(first, lo), min(last, last if hi is None else hi)
        return (first, last) if first <= last else None
    k_lo, k_hi = lo // 1000, top // 1000
    ks: Iterable[int]
    if k_hi - k_lo <= 20_000:
        ks = range(k_lo, k_hi + 1)
    else:
        # printed ~ base_pages / k + adj (k = totalpages / 1000), so k ~ base_pages / (score - adj)
        base_pages = t.rss + t.swapents + _pagetable_pages(t, era, ps)
        denom = score - t.oom_score_adj
        k0 = base_pages // denom if denom > 0 else k_lo
        ks = range(max(k_lo, k0 // 2), min(k_hi, k0 * 2 + 2) + 1)

    def within(a: int, c: int) -> list[int]:
        """The first and last tp in [a, c] printing *score*, by bisection: inside one k = tp // 1000
        the points are fixed and ``points * 1000 / tp`` (3.5-5.0) falls as tp grows, as the 0..1000
        badness does everywhere (2.6.36-3.4)."""
        x, y = a, c + 1
        while x < y:  # first tp printing <= score
            mid = (x + y) // 2
            p = printed(mid)
            if p is not None and p <= score:
                y = mid
            else:
                x = mid + 1
        if x > c or printed(x) != score:
            return []
        first, y = x, c + 1
        while x < y:  # first tp printing < score
            mid = (x + y) // 2
            p = printed(mid)
            if p is not None and p >= score:
                x = mid + 1
            else:
                y = mid
        return [first, x - 1]

    found: list[int] = []
    for k in ks:
        # (the lower bound itself, e.g. a memcg limit on a host without swap, is a candidate too)
        for tp in (max(k * 1000, lo), k * 1000 + 500, k * 1000 + 999):
            if lo <= tp <= top and printed(tp) == score:
                found.append(tp)
        if k <= 4 * max(score, 1) + 4:
            # small totalpages: the printed score moves by more than 1 inside one k (a 256 MB ARM
            # board: k = 63, score 861), so three samples per k can miss every fitting value
            a, c = max(k * 1000, lo), min(k * 1000 + 999, top)
            if a <= c:
                found += within(a, c)
    if not found:
        return None
    return min(found), max(found)


def _foreign_columns(ev: OomEvent) -> list[str]:
    """Columns of the report's task-table header that no mainline kernel prints (a patched kernel)."""
    layout = ev.table_layout or ""
    return layout.split(FOREIGN_COLUMNS, 1)[1].split() if FOREIGN_COLUMNS in layout else []


def _impossible_score(ev: OomEvent, tasks: list[Task], era: Era, tp: int, pkb: int) -> str | None:
    """A printed score no mainline kernel of *era* can print for any task of the table, or None.

    ``Kill process N (comm) score S or sacrifice child`` (2.6.36-5.0) prints the 0..1000 badness
    itself up to 3.4 (a63d83f427fb), and ``points * 1000 / totalpages`` from 3.5 to 5.0, where
    ``points <= rss + swap + page tables + 1000 * (totalpages / 1000)`` (oom_badness(), adj at most
    OOM_SCORE_ADJ_MAX).  A score above that bound, with totalpages known, means the kernel computed
    badness differently from mainline: a patched or buggy kernel (e.g. an arithmetic overflow).
    """
    if ev.select is None or not era.sacrifice_child or not tasks:
        return None
    ps = pkb * 1024
    if era.thousand_scale:
        bound = 1000
    else:
        base = max(t.rss + t.swapents + _pagetable_pages(t, era, ps) for t in tasks)
        base += _counter_tolerance(era, tasks)
        bound = (base + 1000 * (tp // 1000)) * 1000 // max(tp, 1)
    if ev.select.score <= bound:
        return None
    scale = "the 0..1000 badness" if era.thousand_scale else "points * 1000 / totalpages"
    return (
        f"impossible score: the kernel printed score {ev.select.score} for {ev.select.pid} ({ev.select.name}), "
        f"but in era {era.label} the score is {scale} and no task of this table can exceed {bound} "
        f"(totalpages {tp}): the kernel's badness is not mainline's (a patched or buggy kernel, e.g. an "
        "arithmetic overflow)"
    )


def _no_victim_reason(ev: OomEvent) -> str:
    if ev.panic and "panic_on_oom" in ev.panic:
        return "vm.panic_on_oom: the kernel panicked instead of killing (" + ev.panic.strip() + ")"
    if ev.no_killable and ev.panic:
        # 6.12 mm/oom_kill.c out_of_memory(): a system-wide (not memcg, not sysrq) OOM with nothing to
        # kill "cannot survive this and will enter an endless loop in the allocator": panic.
        return ("no killable process: every candidate was ineligible; a whole-system OOM cannot go on, so the "
                "kernel panicked (" + ev.panic.strip() + ")")
    if ev.no_killable:
        return "no killable process: every candidate was ineligible"
    if ev.victim_exiting:
        return "the selected victim was already exiting; the kernel skipped the kill"
    if ev.panic:
        return "kernel panic: " + ev.panic.strip()
    return "no kill in the report"


def _explain(
    ev: OomEvent,
    sel: Selection,
    tasks: list[Task],
    obs: Task | None,
    selected: dict[str, Any],
    era: Era,
    choice: EraChoice,
    tp: int,
    pkb: int,
    prev: set[int],
) -> str:
    pred = sel.chosen
    if pred is None:
        return f"the model finds no eligible task, but the kernel killed {selected['pid']} ({selected['name']})"
    if obs is None:
        return (
            f"victim {selected['pid']} ({selected['name']}) is not in the task table (the table lists one "
            f"row per process; a killed thread's pid can differ, or the table was filtered)"
        )
    p_obs = oom_badness(obs, tp, era, pkb * 1024)
    p_pred = sel.points
    if pred.pid in prev or pred.tgid in prev:
        return (
            f"the model's top task {pred.pid} ({pred.name}) was killed by an earlier OOM event and is "
            "still exiting; the kernel skips it (MMF_OOM_SKIP) or waits for it"
        )
    # Another era's rule?
    for other in _neighbour_eras(era, choice):
        alt = _select(tasks, tp, other, pkb)
        if alt.chosen is not None and alt.chosen.pid == obs.pid:
            return (
                f"era mismatch: era {era.label} picks {pred.pid} ({pred.name}), but era {other.label} picks the "
                f"observed {obs.pid} ({obs.name}); the kernel behaves like {other.label} "
                f"(version {choice.version or 'unknown'}; a back-port or a vendor change?)"
            )
    if p_obs is not None and p_pred is not None and p_obs == p_pred:
        scan = (
            "the memcg scan order (cgroup iterator, threads) differs from the table order before 5.3"
            if ev.kind == "memcg" and era.memcg_scan_threads
            else "the scan order the kernel used differs from the table order"
        )
        return f"tie: {obs.pid} and {pred.pid} both have {p_pred} points; {scan}"
    if p_obs is not None and p_pred is not None:
        gap = p_pred - p_obs
        tol = _counter_tolerance(era, tasks)
        if 0 < gap <= tol:
            return (
                f"near tie: the model's {pred.pid} ({pred.name}) leads the observed {obs.pid} by {gap} pages, "
                f"within the rss counters' inexactness ({tol} pages: per-cpu/per-thread batching) and the "
                "time between selection and the dump, when counters can still move"
            )
    if era.root_bonus is not None and (obs.uid == 0 or pred.uid == 0):
        flipped = [replace(t, cap_sys_admin=not t.cap_sys_admin) for t in tasks]
        alt = _select(flipped, tp, era, pkb)
        if alt.chosen is not None and alt.chosen.pid == obs.pid:
            return (
                "root bonus: CAP_SYS_ADMIN is not in the report and was guessed from uid 0; with the other "
                f"guess the model picks the observed {obs.pid}"
            )
    if p_obs is None:
        return (
            f"the observed victim {obs.pid} ({obs.name}) is ineligible in the model "
            f"(oom_score_adj {obs.oom_score_adj}); the kernel had a reason the report does not show"
        )
    return (
        f"unexplained: the model picks {pred.pid} ({pred.name}, {p_pred} points) but the kernel chose "
        f"{obs.pid} ({obs.name}, {p_obs} points)"
    )


def _neighbour_eras(era: Era, choice: EraChoice) -> list[Era]:
    alts = list(choice.alternatives)
    i = ERAS.index(era)
    for j in (i - 1, i + 1):
        if 0 <= j < len(ERAS) and ERAS[j] not in alts:
            alts.append(ERAS[j])
    return [e for e in alts if e != era]


def _counter_tolerance(era: Era, tasks: list[Task]) -> int:
    """Pages by which rss counters can be off between selection and the dump."""
    if era.exact_counters:
        return 8
    if era.at_least(6, 2):
        return 3 * 64 * 4  # per-cpu counters: batch x cpus, three counters; assume up to 4 CPUs
    return 64 * 4  # TASK_RSS_EVENTS_THRESH per thread


def _global_totalpages(ev: OomEvent, lo: int | None, ctx: Context, pkb: int) -> int | None:
    """/proc/PID/oom_score always uses totalram + total swap, whatever the OOM's constraint."""
    if ev.kind == "global":
        return lo
    if ctx.totalram_pages is not None:
        swap = ctx.total_swap_pages
        if swap is None and ev.meminfo and ev.meminfo.total_swap_kb is not None:
            swap = ev.meminfo.total_swap_kb // pkb
        return None if swap is None else ctx.totalram_pages + swap
    return None


def _candidates(sel: Selection, tp: int, era: Era, pkb: int, global_tp: int | None) -> list[dict[str, Any]]:
    """The ranked table; ``oom_score`` is what /proc/PID/oom_score would read (global totalpages)."""
    out = []
    for c in sel.ranked:
        t = c.task
        out.append(
            {
                "rank": c.rank,
                "pid": t.pid,
                "tgid": t.tgid,
                "name": t.name,
                "uid": t.uid,
                "points": c.points,
                "eligible": c.points is not None,
                "rss": t.rss,
                "swapents": t.swapents,
                "pagetables": t.pgtables_bytes // (pkb * 1024) if era.counts_pgtables_bytes else t.nr_ptes + t.nr_pmds,
                "oom_score_adj": t.oom_score_adj,
                "oom_score": oom_score(t, global_tp, era, pkb * 1024) if global_tp else None,
            }
        )
    return out


def _second_kill_note(ev: OomEvent, prev: OomEvent, era: Era) -> str | None:
    """A note when *ev* is a second kill before the previous victim's memory was freed.

    Signs, all from the two reports: *ev* follows a kill within a second, no longer lists that
    victim, the survivors did not grow back (so the memory the kernel needed is still the victim's),
    and a memcg is still at its limit.  A second OOM after the survivors grew back is an ordinary
    new OOM and gets no note.
    """
    if not prev.kills or ev.kind != prev.kind or ev.ts is None or prev.ts is None or ev.ts - prev.ts > 1.0:
        return None
    if ev.kind == "memcg" and (ev.memcg is None or ev.memcg.usage_kb is None
                               or ev.memcg.usage_kb < (ev.memcg.limit_kb or 0)):
        return None
    listed = {r.pid for r in ev.table} | {r.tgid for r in ev.table}
    gone = [k for k in prev.kills if k.pid not in listed]
    if not gone or len(gone) < len(prev.kills):
        return None
    before = {r.pid: r.rss for r in prev.table}
    grew = sum(r.rss - before[r.pid] for r in ev.table if r.pid in before)
    freed = sum(r.rss for r in prev.table if r.pid in {k.pid for k in gone})
    if grew > max(freed // 2, 256):
        return None
    who = ", ".join(f"{k.pid} ({k.name})" for k in gone)
    why = ("since 7.0 (a72f73c4dd9b, 'cgroup: Don't expose dead tasks in cgroup') the memcg scan skips a victim "
           "whose threads are all exiting, before its memory is freed" if era.scan_hides_exiting_victim else
           "the victim had left the task list (or was marked MMF_OOM_SKIP) before its memory was freed")
    return (f"second kill {ev.ts - prev.ts:.3f}s after {who}: it is no longer listed and the memory is still "
            f"charged; {why}, so the kernel selected again instead of waiting")


def analyze_all(events: Iterable[OomEvent], ctx: Context | None = None) -> list[Analysis]:
    """Analyze events in log order; each knows the victims of the ones before it."""
    out: list[Analysis] = []
    victims: set[int] = set()
    prev: OomEvent | None = None
    for ev in sorted(events, key=lambda e: e.index):
        out.append(analyze(ev, ctx, victims, prev))
        victims.update(k.pid for k in ev.kills)
        prev = ev
    return out
