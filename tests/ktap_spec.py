"""An independent KTAP version 1 conformance checker, written from the kernel's specification
(``Documentation/dev-tools/ktap.rst``), for the tests of ``run --format ktap``.

It reads a document into a tree of tests and lists every rule of the specification the text breaks:

* the output begins with a version line (``KTAP version 1``; ``TAP version 13/14`` accepted);
* a plan ``1..N`` follows a version line, and then exactly N results come at that level;
* result lines are ``<ok|not ok> <number> [<description>][ # [<directive>] [<diagnostic data>]]``,
  numbered from 1 and increasing by 1 per level; the description holds no ``#``;
* directives SKIP, TODO, XFAIL, TIMEOUT, ERROR; TIMEOUT and ERROR only on ``not ok``;
* diagnostic lines are ``# <text>``;
* a nested test is an indented (two spaces per level) version line, plan and results, closed by
  the parent's own result line at the parent's indentation; a parent with a failed subtest fails.

``strict=True`` also rejects "unknown lines" (legal in KTAP, but a generator has no business
printing them) and a missing plan.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

VERSION = re.compile(r"^(KTAP version 1|TAP version 1[34])$")
PLAN = re.compile(r"^1\.\.(\d+)$")
# "<result> <number> [<description>][ # [<directive>] [<diagnostic data>]]": the description holds no "#",
# and the directive part is introduced by " # " (space, hash, space), as the grammar line writes it
RESULT = re.compile(r"^(ok|not ok) ([0-9]+)(?: ([^#]*?))?(?: # ?(.*))?$")
DIRECTIVE = re.compile(r"^(SKIP|TODO|XFAIL|TIMEOUT|ERROR)\b\s*(.*)$")
DIAG = re.compile(r"^#( .*)?$")


@dataclass
class Test:
    name: str = ""
    ok: bool | None = None
    number: int = 0
    directive: str | None = None
    data: str = ""
    diagnostics: list[str] = field(default_factory=list)
    plan: int | None = None
    subtests: list[Test] = field(default_factory=list)


@dataclass
class Checked:
    root: Test
    errors: list[str]

    @property
    def tests(self) -> list[Test]:
        return self.root.subtests


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def check(text: str, strict: bool = True) -> Checked:
    """Parse *text* as KTAP; ``errors`` is empty when it conforms."""
    errors: list[str] = []
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    root = Test(name="<document>")
    # stack of (test collecting subtests, its indentation in spaces)
    stack: list[tuple[Test, int]] = []
    pending_diag: list[str] = []
    started = False
    for no, raw in enumerate(lines, 1):
        if "\t" in raw[: _indent(raw) + 1] and raw.strip():
            errors.append(f"line {no}: indented with a tab (the spec indents with two spaces)")
        ind = _indent(raw)
        line = raw[ind:]
        if not started:
            if VERSION.match(line) and ind == 0:
                started = True
                stack.append((root, 0))
                continue
            errors.append(f"line {no}: the document must begin with a version line, got {raw!r}")
            return Checked(root, errors)
        if VERSION.match(line):
            parent, pind = stack[-1]
            if ind != pind + 2:
                errors.append(f"line {no}: a nested version line must be indented two spaces more than its parent "
                              f"({pind + 2}), found {ind}")
            stack.append((Test(), ind))
            continue
        m = PLAN.match(line)
        if m:
            cur, cind = stack[-1]
            if ind != cind:
                errors.append(f"line {no}: plan at indentation {ind}, its tests are at {cind}")
            if cur.plan is not None:
                errors.append(f"line {no}: a second plan at the same level")
            if cur.subtests:
                errors.append(f"line {no}: the plan must follow the version line, before any result")
            cur.plan = int(m.group(1))
            cur.diagnostics += pending_diag  # diagnostics between version and plan describe the level
            pending_diag = []
            continue
        m = RESULT.match(line)
        if m:
            # a result at a shallower indentation closes the nested levels above it
            while len(stack) > 1 and ind < stack[-1][1]:
                done, dind = stack.pop()
                _close(done, dind, errors, no, strict)
                parent, pind = stack[-1]
                if ind == pind:
                    done_result = _result(m, no, errors)
                    done_result.subtests, done_result.plan = done.subtests, done.plan
                    done_result.diagnostics = pending_diag + done_result.diagnostics
                    pending_diag = []
                    _append(parent, done_result, no, errors)
                    if any(s.ok is False and s.directive not in ("SKIP", "TODO", "XFAIL") for s in done.subtests) \
                            and done_result.ok:
                        errors.append(f"line {no}: test {done_result.name!r} is ok but a subtest failed")
                    break
            else:
                cur, cind = stack[-1]
                if ind != cind:
                    errors.append(f"line {no}: result at indentation {ind}, expected {cind}")
                t = _result(m, no, errors)
                t.diagnostics, pending_diag = pending_diag, []
                _append(cur, t, no, errors)
            continue
        if DIAG.match(line):
            pending_diag.append(line[2:] if len(line) > 1 else "")
            continue
        if line.startswith("#"):
            errors.append(f"line {no}: a diagnostic line is '# ' then text: {raw!r}")
            continue
        if strict:
            errors.append(f"line {no}: unknown line {raw!r} (allowed by KTAP, but not from a generator)")
    if not started:
        errors.append("empty document: no version line")
        return Checked(root, errors)
    while len(stack) > 1:
        done, dind = stack.pop()
        errors.append(f"end of document: a nested test at indentation {dind} has no result line of its parent")
    _close(root, 0, errors, len(lines), strict)
    return Checked(root, errors)


def _result(m: re.Match[str], no: int, errors: list[str]) -> Test:
    t = Test(name=(m.group(3) or "").strip(), ok=m.group(1) == "ok", number=int(m.group(2)))
    rest = m.group(4)
    if rest is not None:
        d = DIRECTIVE.match(rest)
        if d:
            t.directive, t.data = d.group(1), d.group(2)
            if t.directive in ("TIMEOUT", "ERROR") and t.ok:
                errors.append(f"line {no}: {t.directive} must be on a 'not ok' result")
        else:
            t.data = rest
    return t


def _append(parent: Test, t: Test, no: int, errors: list[str]) -> None:
    want = len(parent.subtests) + 1
    if t.number != want:
        errors.append(f"line {no}: test number {t.number}, expected {want} (numbers start at 1 and go up by 1)")
    parent.subtests.append(t)


def _close(t: Test, ind: int, errors: list[str], no: int, strict: bool) -> None:
    if t.plan is None:
        if strict:
            errors.append(f"line {no}: no plan at indentation {ind}")
    elif t.plan != len(t.subtests):
        errors.append(f"line {no}: plan 1..{t.plan} but {len(t.subtests)} result(s) at indentation {ind}")
