"""Plain-text rendering of analyses and tables for the terminal (no third-party dependencies)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[bool] | None = None) -> str:
    """Align *rows* under *headers*; numbers right-aligned unless *right* says otherwise."""
    cells = [[("-" if v is None else str(v)) for v in r] for r in rows]
    widths = [len(h) for h in headers]
    for r in cells:
        for i, v in enumerate(r):
            widths[i] = max(widths[i], len(v))
    if right is None:
        right = [all(_numeric(r[i]) for r in cells) and bool(cells) for i in range(len(headers))]

    def fmt(vals: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if right[i] else v.ljust(w) for i, (v, w) in enumerate(zip(vals, widths, strict=False))
        ).rstrip()

    out = [fmt(list(headers)), fmt(["-" * w for w in widths])]
    out.extend(fmt(r) for r in cells)
    return "\n".join(out)


def _numeric(s: str) -> bool:
    return s == "-" or s.lstrip("-").replace(".", "", 1).isdigit()


def analysis_text(d: dict[str, Any], source: str = "", max_rows: int = 15) -> str:
    """Human summary of one ``Analysis.to_dict()``."""
    lines = []
    state = "complete" if d["complete"] else "INCOMPLETE (missing: " + "; ".join(d["missing"]) + ")"
    where = f"{source}:" if source else "lines "
    ts = f", t={d['timestamp']:.3f}s" if d.get("timestamp") is not None else ""
    lines.append(
        f"Event {d['index'] + 1} ({where}{d['first_line']}-{d['last_line']}{ts}): {d['kind']} OOM, "
        f"kernel {d['kernel'] or 'unknown'}, era {d['era']} - {state}"
    )
    lines.append(f"  era evidence: {d['era_evidence']}")
    t = d.get("trigger")
    if t:
        flags = f"({t['gfp_flags']})" if t.get("gfp_flags") else ""
        gfp = f"{t['gfp_mask']:#x}" if t.get("gfp_mask") is not None else "?"
        comm = t["comm"] if t["comm"] is not None else "(comm not printed)"  # 2.6.x before 2.6.19
        lines.append(f"  trigger: {comm} (pid {t.get('pid') or '?'}) gfp_mask={gfp}{flags} order={t['order']}")
    if d.get("constraint") or d.get("oom_memcg"):
        lines.append(f"  constraint: {d.get('constraint') or '-'}  oom_memcg: {d.get('oom_memcg') or '-'}")
    lines.append(
        f"  totalpages: {d['totalpages'] if d['totalpages'] is not None else 'unknown'} ({d['totalpages_note']})"
    )
    cands = d.get("candidates") or []
    if cands:
        body = candidate_table(
            cands[:max_rows], [("pgtbl", "pagetables"), ("adj", "oom_score_adj"), ("oom_score", "oom_score")]
        )
        lines.extend("  " + x for x in body.splitlines())
        if len(cands) > max_rows:
            lines.append(f"  ... {len(cands) - max_rows} more")
    for k in d.get("kills") or []:
        tag = " (oom.group)" if k["group"] else (" (shares mm)" if k["shared_mm"] else "")
        lines.append(f"  killed: {k['pid']} ({k['name']}){tag}")
    p, o = d.get("predicted_victim"), d.get("observed_victim")
    lines.append(f"  predicted: {_who(p)}   observed: {_who(o)}   verdict: {d['verdict'].upper()}")
    lines.append(f"  reason: {d['reason']}")
    for n in d.get("notes") or []:
        lines.append(f"  note: {n}")
    lines.extend(_repairs_text(d.get("repairs") or {}))
    return "\n".join(lines)


def _repairs_text(r: dict[str, Any]) -> list[str]:
    """What the repair stage undid to read this report (nothing for a log as the kernel wrote it)."""
    parts = []
    if r.get("lines_rejoined"):
        parts.append(f"{r['lines_rejoined']} wrapped line piece(s) rejoined")
    if r.get("foreign_lines_skipped"):
        parts.append(f"{r['foreign_lines_skipped']} foreign line(s) inside the report skipped")
    stripped = r.get("prefixes_stripped") or {}
    if stripped:
        parts.append("prefixes stripped (" + ", ".join(f"{k} {v}" for k, v in stripped.items()) + ")")
    out = [f"  repaired: {'; '.join(parts)}"] if parts else []
    for a in r.get("ambiguous_joins") or []:
        out.append(f"  ambiguous join (taken the likelier way): {a}")
    for u in r.get("unrecognised") or []:
        out.append(f"  not recognised: {u}")
    return out


def candidate_table(cands: list[dict[str, Any]], tail: list[tuple[str, str]]) -> str:
    """The ranked-candidates table (``parse`` and ``predict`` print it): rank, pid, name, points
    ("inelig." for an ineligible task), rss, swap, then the ``(header, key)`` columns of ``tail``."""
    rows = [
        [c["rank"] or "-", c["pid"], c["name"], c["points"] if c["eligible"] else "inelig.", c["rss"], c["swapents"]]
        + [c[key] for _, key in tail]
        for c in cands
    ]
    return table(["rank", "pid", "name", "points", "rss", "swap", *(h for h, _ in tail)], rows)


def _who(w: dict[str, Any] | None) -> str:
    return "-" if not w else f"{w['pid']} ({w['name']})"
