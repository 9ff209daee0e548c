"""Find every OOM-killer report in a kernel log and turn it into :class:`~harness.core.events.OomEvent`.

The formats come from ``mm/oom_kill.c``, ``mm/memcontrol.c``, ``mm/show_mem.c`` and
``lib/dump_stack.c`` of every era from 2.6.36 to 7.x (what each line looked like, and when it
changed, is in :mod:`harness.core.eras`).  The parser is deliberately tolerant:

* it streams: text is read in chunks, and while no report is open a single regular-expression
  search skips the ordinary kernel noise at C speed, so memory does not grow with the log;
* it is layout-agnostic for the task table: the column header names the columns, and a table
  whose header was lost is matched by its column count;
* reports from different tasks are kept apart by the printk caller id (``[  T123]``) when the
  log has one, so interleaved reports from several CPUs do not mix;
* a report may be cut anywhere (log ended, ring buffer wrapped, kmsg sequence gap): the event is
  still returned, with ``complete=False`` and the parts it lacks in ``missing``;
* any input, however broken, gives a (possibly empty) list of events; an exception is a parser
  bug, raised as :class:`ParserBug` with the line it happened on (never swallowed).
"""

from __future__ import annotations

import io
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import IO

from .events import (
    KillRecord,
    MemcgInfo,
    MemInfo,
    OomEvent,
    ReaperLine,
    Repairs,
    SelectLine,
    Summary,
    TaskRow,
    Trigger,
)
from .logformat import LogLine, normalize
from .repair import ELISION as _ELISION
from .repair import ENGAGE, Repairer, qp_chunks

__all__ = ["parse_text", "parse_file", "parse_stream", "parse_lines", "LiveParser", "LogReadError", "ParserBug"]

CHUNK = 1 << 20
# Lines re-read before the line where the scan stopped, for the repair stage.
BACK_UP = 3
# No kernel line comes near this (printk's limit is 1024 bytes); a longer line is cut here.
MAX_LINE = 1 << 16
# How many unrelated lines may follow a kill before its report is considered over (further
# Killed lines of an oom.group kill, or the reaper's line, arrive shortly after the first).
AFTERMATH_LINES = 400
# Closed events are held back this many events so late oom_reaper lines can still be attached.
HOLD_BACK = 8
# A report that has not reached its kill line is closed after this many lines in a row that no
# report grammar knows (a report cut short, then ordinary log): memory and time stay bounded.
STALE_LINES = 400
# At most this many non-standard OOM lines are quoted per event (an instrumented kernel's extras).
MAX_UNRECOGNISED = 10


class LogReadError(Exception):
    """The log could not be read at all (missing file, permission, directory)."""


class ParserBug(Exception):
    """The parser itself failed on line *lineno*: a bug, reported with the line so it can be fixed.

    Raised instead of dropping the report quietly, so tests catch it and ``parse`` can say where.
    """

    def __init__(self, lineno: int, error: BaseException) -> None:
        super().__init__(f"internal error on line {lineno}: {type(error).__name__}: {error}")
        self.lineno = lineno


# --- line patterns (anchored at the start of the bare message) ---------------------------------
_TRIGGER = re.compile(
    r"^(?P<comm>.*?) invoked oom-killer: gfp_mask=(?P<gfp>0x[0-9a-fA-F]+|\d+)(?:\((?P<flags>[^)]*)\))?,"
    r"(?: nodemask=(?P<nodemask>\S*?),)?\s*order=(?P<order>-?\d+),"
    r"(?: oom_adj=(?P<oom_adj>-?\d+),)? oom_score_adj=(?P<adj>-?\d+)"
)
# Before 2.6.36 (mm/oom_kill.c out_of_memory()): up to 2.6.18 printk("oom-killer: gfp_mask=0x%x,
# order=%d\n") - no comm, no "invoked"; from then on "%s invoked oom-killer: gfp_mask=0x%x,
# order=%d, oomkilladj=%d\n" (current->comm, current->oomkilladj).
_TRIGGER_OLD = re.compile(
    r"^(?:(?P<comm>.*?) invoked )?oom-killer: gfp_mask=(?P<gfp>0x[0-9a-fA-F]+|\d+), order=(?P<order>-?\d+)"
    r"(?:, oomkilladj=(?P<adj>-?\d+))?$"
)
_CPUSET = re.compile(r"^(?P<comm>.*?) cpuset=(?P<cpuset>\S*) mems_allowed=(?P<mems>\S*)$")
_DUMP_STACK = re.compile(
    r"^(?:CPU: \d+ (?:UID: \d+ )?PID: (?P<pid>\d+) Comm: .*?|Pid: (?P<pid2>\d+), comm: .*?)"
    r" (?:Not tainted|Tainted: [A-Z ]*?) +(?P<ver>\d+\.\d+[^\s#]*)"
)
_LINUX_VERSION = re.compile(r"^Linux version (\d+\.\d+\S*)")
_TASK_IN = re.compile(r"^Task in (?P<task>\S+) killed as a result of limit of (?P<lim>\S+)")
_LIMIT_REACHED = re.compile(r"^Memory limit reached of cgroup (?P<lim>\S+)")
_MEMCG_COUNTER = re.compile(
    r"^(?P<what>memory|memory\+swap|swap|kmem): usage (?P<usage>\d+)kB, limit (?P<limit>\d+)kB, failcnt (?P<f>\d+)"
)
_MEMCG_STATS = re.compile(r"^Memory cgroup stats for (?P<path>[^:]*):(?P<rest>.*)$")
_STAT_KV = re.compile(r"^([a-z_]+)[: ](\d+)(KB)?$")
_STAT_PAIR = re.compile(r"([a-z_]+):(\d+)KB")
_PROTECTION = re.compile(r"^Memory cgroup min protection (\d+)kB -- low protection (\d+)kB")
# mm/show_mem.c: "%lu pages RAM", "%lu pages HighMem/MovableOnly", "%lu pages reserved", "%lu pages cma
# reserved"; the per-arch show_mem() of 2.6/3.x (arch/arm/mm/init.c, arch/i386/mm/pgtable.c, ...):
# "%d pages of RAM", "%d pages of HIGHMEM", "%d reserved pages".
_PAGES_LINE = re.compile(
    r"^(\d+) (?:pages (?:of )?(RAM|reserved|HighMem(?:/MovableOnly)?|HIGHMEM|cma reserved)|(reserved) pages)$"
)
_SWAP_LINE = re.compile(r"^(Total|Free) swap\s*=\s*(-?\d+)kB")
_ZONE = re.compile(r"^Node (\d+) (\w+) free:\d+kB.*? present:(\d+)kB(?: managed:(\d+)kB)?")
_BUDDY = re.compile(r"^Node \d+ \w+: (?:\d+\*(\d+)kB)")
_TABLE_HEADER = re.compile(r"^\[\s*pid\s*\]\s+(?P<cols>.*?)\s+name\s*$")
_ROW = re.compile(r"^\[\s*(\d+)\]\s")
_SUMMARY = re.compile(r"^oom-kill:(?P<body>.*)$")
_SUMMARY_TAIL = re.compile(r",task=(?P<task>.*),pid=(?P<pid>-?\d+),uid=(?P<uid>-?\d+)\s*$")
_SELECT = re.compile(
    r"^(?:(?P<msg>.+?): )?Kill process (?P<pid>\d+) \((?P<name>.*)\) score (?P<score>-?\d+) or sacrifice child"
)
_KILLED = re.compile(
    r"^(?:(?P<msg>.+?): )?Killed process (?P<pid>\d+),? (?:UID (?P<uid0>\d+), )?\((?P<name>.*)\),?"
    r" (?:total-vm|vsz):(?P<vm>\d+)kB,"
    r" anon-rss:(?P<anon>\d+)kB, file-rss:(?P<file>\d+)kB(?:, shmem-rss:(?P<shmem>\d+)kB)?"
    r"(?:,? UID:(?P<uid>\d+) pgtables:(?P<pgt>\d+)kB oom_score_adj:(?P<adj>-?\d+))?"
)
_KILLED_SHORT = re.compile(r"^(?:(?P<msg>.+?): )?Killed process (?P<pid>\d+),? (?:UID \d+, )?\((?P<name>.*)\)")
_SHARING = re.compile(r"^Kill process (?P<pid>\d+) \((?P<name>.*)\) sharing same memory")
_GROUP = re.compile(r"^Tasks in (?P<cg>.*) are going to be killed due to memory\.oom\.group set")
_REAPED = re.compile(
    r"^oom_reaper: reaped process (?P<pid>\d+) \((?P<name>.*)\), now anon-rss:(?P<anon>\d+)kB,"
    r" file-rss:(?P<file>\d+)kB(?:, shmem-rss:(?P<shmem>\d+)kB)?"
)
_UNREAPED = re.compile(r"^oom_reaper: (?:unable to reap|giving up) pid:\s*(?P<pid>\d+) \((?P<name>.*)\)")
_PANIC_ON_OOM = re.compile(r"Out of memory: (?P<how>compulsory|system-wide) panic_on_oom is enabled")
_NO_KILLABLE = re.compile(r"Out of memory and no killable processes")
_DEADLOCK = re.compile(r"System is deadlocked on memory")
_EXITING = re.compile(r"OOM victim (?P<pid>\d+) \((?P<name>.*)\) is already exiting")
_KERNEL_PANIC = re.compile(r"^Kernel panic - not syncing: (?P<msg>.*)")

# The memcg block's first line (5.0+ "memory: usage", <=4.20 "Task in ... killed as a result of
# limit of"), printed only in an OOM report (mm/memcontrol.c mem_cgroup_print_oom_meminfo /
# mem_cgroup_print_oom_context): an excerpt that starts there is a report whose header is lost.
_MID_START = re.compile(
    r"memory: usage \d+kB, limit \d+kB|Task in \S+ killed as a result of limit|Memory cgroup stats for "
)
# Report lines the parser reads nothing from, by the kernel function that prints them: dump_stack
# (lib/dump_stack.c, arch show_regs), __show_mem (mm/show_mem.c), memcg stat lines
# (memory_stat_format), the cpuset line, panic and reaper lines.  Anything else inside a report is
# a foreign line.
_KNOWN_OTHER = re.compile(
    r"\s*(?:Hardware name: |Call Trace:|Call trace:|</?(?:TASK|IRQ|NMI)>|RIP: |RSP: |R[A-Z0-9]{2}: |Code: |CR2: "
    r"|FS: |CS: |DR\d: |Stack:|Workqueue: |Modules linked in|PKRU: |Backtrace:|CPU: |Pid: |Tainted: |\? "
    r"|\[<[0-9a-f]+>\]"
    r"|[\w.]+\+0x[0-9a-f]+/0x[0-9a-f]+"
    r"|active_anon:|active_file:|inactive_file:|unevictable:|slab_reclaimable:|mapped:|free:|free_pcp:|pagetables:"
    r"|sec_pagetables:|kernel_misc_reclaimable:|Node \d|lowmem_reserve\[\]:|\d+ total pagecache pages|\d+ pages "
    r"|Free swap|Total swap|Swap cache|Mem-Info|\w+ (?:free|per-cpu):|[a-z_]+[ :]\d+(?:KB|kB)?$"
    r"|Tasks state|oom_reaper:|---\[ end |Kernel Offset:|Rebooting in)"
)
# Words that make an unknown line worth quoting: a patched kernel's own OOM lines.
_OOM_WORDS = re.compile(r"(?i)\b(?:oom|kill(?:ed|ing)?|victim|out of memory)\b")

# Lines that can start (or belong to) a report; the idle scanner jumps from one to the next.
_INTERESTING = re.compile(
    # re skips ahead on the set of the alternatives' first characters, so each alternative starts
    # at a character rare in ordinary kernel text ('-', '_', 'k', 'K', 'L', 'y', '['; measured on
    # the benchmark's noise: 3.8 % of characters, against 10 % for "oom-kill", "no killable", ...);
    # a line found is then read in full by the parser, so a false hit costs one line's parse.
    r"-kill|_reaper:|Kill(?:ed)? process|Linux version|\[\s*pid\s*\]|_on_oom|killable processes"
    r"|y: usage \d+kB|k in \S+ killed as|y cgroup stats for "  # the memcg block's first lines (_MID_START)
    r"|\[ *\d+\] +-?\d+ +\d+ +\d+ +\d+ "  # a task-table row: the ring buffer wrapped mid-table
)
# With the repair stage: also the pieces of a report line cut by wrapping.
_ENGAGE = re.compile(_INTERESTING.pattern + ENGAGE)
# Lines that may still belong to a report after its kill line.
_AFTERMATH = re.compile(
    r"Killed process|Kill process|oom_reaper:|invoked oom-killer|Tasks in |OOM victim|panic|deadlocked|no killable"
)
# While every open report is past its kill line, only these lines matter: the scan jumps to them.
# (A superset of _AFTERMATH's lines, each alternative from a rare first character: see _INTERESTING.)
_AFTERMATH_SCAN = re.compile(
    r"Kill(?:ed)? process|_reaper:|-killer|ks in /|M victim|Kernel panic|_on_oom|System is deadlocked"
    r"|killable|" + _INTERESTING.pattern
)
_AFTERMATH_ENGAGE = re.compile(_AFTERMATH_SCAN.pattern + ENGAGE)

# Column count (after pid) -> column names, for rows whose header line was lost.  Seven numeric
# columns fit three layouts (2.6.36-3.5, 3.6-3.19, 4.15-6.7); the modern one is assumed and the
# event's table_layout says "(header lost)" so nobody mistakes it for a certainty.
_HEADERLESS_LAYOUTS: dict[int, list[str]] = {
    7: ["uid", "tgid", "total_vm", "rss", "pgtables_bytes", "swapents", "oom_score_adj"],
    8: ["uid", "tgid", "total_vm", "rss", "nr_ptes", "nr_pmds", "swapents", "oom_score_adj"],
    10: [
        "uid",
        "tgid",
        "total_vm",
        "rss",
        "rss_anon",
        "rss_file",
        "rss_shmem",
        "pgtables_bytes",
        "swapents",
        "oom_score_adj",
    ],
}

_INT_COLUMNS = {
    "uid",
    "tgid",
    "total_vm",
    "rss",
    "rss_anon",
    "rss_file",
    "rss_shmem",
    "nr_ptes",
    "nr_pmds",
    "pgtables_bytes",
    "swapents",
    "cpu",
    "oom_adj",
    "oom_score_adj",
}


# Every column a mainline dump_tasks() header has printed, 2.6.36 to 7.x (mm/oom_kill.c).
MAINLINE_COLUMNS = frozenset(_INT_COLUMNS | {"name"})
# What follows a layout name when the header has columns no mainline kernel prints (a patched
# kernel, e.g. Gang Li's per-node "(01)nrss" of 2022).
FOREIGN_COLUMNS = " + unknown columns: "


def _layout_name(cols: list[str], pid_width: int) -> str:
    foreign = [c for c in cols if c not in MAINLINE_COLUMNS]
    name = _mainline_layout_name(cols, pid_width)
    return name + FOREIGN_COLUMNS + " ".join(foreign) if foreign and not name.startswith("unknown") else name


def _mainline_layout_name(cols: list[str], pid_width: int) -> str:
    if "cpu" in cols:
        return "2.6.36-3.5 (cpu oom_adj)"
    if "rss_anon" in cols:
        return "6.8+ (rss_anon rss_file rss_shmem)"
    if "nr_pmds" in cols:
        return "4.0-4.14 (nr_ptes nr_pmds)"
    if "nr_ptes" in cols:
        return "3.6-3.19 (nr_ptes)"
    if "pgtables_bytes" in cols:
        return "4.19-6.7 (pgtables_bytes)" if pid_width >= 7 else "4.15-4.18 (pgtables_bytes)"
    return "unknown (" + " ".join(cols) + ")"


class _Builder:
    """Accumulates one report's lines into an :class:`OomEvent`."""

    __slots__ = (
        "ev", "section", "table_cols", "killed_at", "lines_since_kill", "done", "foreign", "stale", "elided",
    )  # fmt: skip

    def __init__(self, ev: OomEvent) -> None:
        self.ev = ev
        self.section = ""  # "", "meminfo", "memcg_stats", "table"
        self.table_cols: list[str] | None = None
        self.killed_at = -1
        self.lines_since_kill = 0
        self.done = False
        self.foreign = 0  # unknown lines since the last report line (counted once one follows)
        self.stale = 0  # unknown lines in a row
        self.elided = ""  # the elision line a poster put inside the task table ("…", "--", ...)

    def feature(self, name: str) -> None:
        if name not in self.ev.features:
            self.ev.features.append(name)


class _Parser:
    def __init__(self, keep_lines: bool = True) -> None:
        self.keep_lines = keep_lines
        self.open: dict[str | None, _Builder] = {}
        self.held: deque[OomEvent] = deque()
        self.out: deque[OomEvent] = deque()
        self.count = 0
        self.kernel_version: str | None = None
        self.last_seq: int | None = None

    # -- public ---------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return bool(self.open)

    @property
    def in_aftermath(self) -> bool:
        """Every open report has printed its kill: ordinary lines only count down to closing."""
        return bool(self.open) and all(b.killed_at >= 0 for b in self.open.values())

    def aftermath_left(self) -> int:
        """Lines until the first open report's aftermath runs out."""
        return min(AFTERMATH_LINES + 1 - b.lines_since_kill for b in self.open.values())

    def skip_noise(self, n: int) -> None:
        """*n* lines the aftermath scan jumped over: none of them could belong to a report."""
        for key, b in list(self.open.items()):
            b.lines_since_kill += n
            if b.lines_since_kill > AFTERMATH_LINES:
                self._close(key)
        self.last_seq = None  # unseen records: no sequence-gap verdict across them

    def feed(self, ll: LogLine) -> None:
        # A parser bug must surface (tests fail, ``parse`` says which line), never silently drop
        # the rest of a report: the error is re-raised with the line number, not swallowed.
        try:
            self._feed(ll)
        except Exception as e:
            raise ParserBug(ll.lineno, e) from e

    def finish(self) -> None:
        for key in list(self.open):
            self._close(key)
        while self.held:
            self.out.append(self.held.popleft())

    # -- internals ------------------------------------------------------------------------------
    def _key(self, ll: LogLine) -> str | None:
        """Reports are printed by the allocating task: its caller id keeps it apart from other
        tasks' reports, and the host name keeps one machine's report apart from another's in a
        syslog file that collects several."""
        if ll.host:
            return f"{ll.host}/{ll.caller or ''}"
        return ll.caller or None

    def _new(self, ll: LogLine, key: str | None, trigger: Trigger | None) -> _Builder:
        if key in self.open:
            self._close(key)
        ev = OomEvent(
            index=self.count,
            first_line=ll.lineno,
            last_line=ll.lineno,
            ts=ll.ts,
            caller=ll.caller,
            trigger=trigger,
            kernel_version=self.kernel_version,
            host=ll.host,
        )
        self.count += 1
        b = _Builder(ev)
        self.open[key] = b
        return b

    def _close(self, key: str | None) -> None:
        b = self.open.pop(key, None)
        if b is None:
            return
        _finalize(b)
        self.held.append(b.ev)
        while len(self.held) > HOLD_BACK:
            self.out.append(self.held.popleft())

    def _builder_for(self, ll: LogLine) -> _Builder | None:
        key = self._key(ll)
        b = self.open.get(key)
        if b is None and key is not None and len(self.open) == 1 and None in self.open:
            b = self.open[None]
        if b is None and key is None and len(self.open) == 1:
            b = next(iter(self.open.values()))
        return b

    def _feed(self, ll: LogLine) -> None:
        text = ll.text
        if ll.seq is not None:
            if self.last_seq is not None and ll.seq > self.last_seq + 1:
                for ob in self.open.values():
                    if "lines lost (kmsg sequence gap)" not in ob.ev.missing:
                        ob.ev.missing.append("lines lost (kmsg sequence gap)")
            self.last_seq = ll.seq
        if not text:
            return
        m = _TRIGGER.match(text)
        if m:
            t = Trigger(
                comm=m["comm"],
                gfp_mask=int(m["gfp"], 0),
                gfp_flags=m["flags"],
                order=int(m["order"]),
                oom_score_adj=int(m["adj"]),
                oom_adj=int(m["oom_adj"]) if m["oom_adj"] else None,
                nodemask=m["nodemask"],
            )
            nb = self._new(ll, self._key(ll), t)
            self._line(nb, ll)
            if m["oom_adj"] is not None:
                nb.feature("header:oom_adj")
            if m["flags"] is not None:
                nb.feature("header:gfp_symbolic")
            else:
                nb.feature("header:gfp_plain")
            if m["nodemask"] is not None:
                nb.feature("header:nodemask")
            return
        m = _TRIGGER_OLD.match(text) if "oom-killer: g" in text else None
        if m and (m["comm"] is None) == (m["adj"] is None):
            t = Trigger(
                comm=m["comm"],
                gfp_mask=int(m["gfp"], 0),
                order=int(m["order"]),
                oom_adj=int(m["adj"]) if m["adj"] is not None else None,
            )
            nb = self._new(ll, self._key(ll), t)
            self._line(nb, ll)
            nb.feature("header:oomkilladj" if m["comm"] is not None else "header:bare")
            return
        if text.startswith("---[ end "):
            # panic's closing marker repeats the panic message; it is not a new report
            return
        if text.startswith("Linux version"):
            mv = _LINUX_VERSION.match(text)
            if mv:
                self.kernel_version = mv.group(1)
            return
        b: _Builder | None = self._builder_for(ll)
        if text.startswith("oom_reaper:"):
            self._reaper(text)
            return
        if b is not None and b.killed_at >= 0 and _MID_START.match(text):
            # The memcg block's first line after a kill: the next report, its header lost.
            self._close(self._key_of(b))
            b = None
        if b is None:
            # A report whose beginning was lost (ratelimited header, wrapped ring buffer, an
            # excerpt pasted from the middle): the memcg block before the table is OOM-only
            # (mm/memcontrol.c mem_cgroup_print_oom_meminfo), so it may open the event.
            starts_report = (
                _MID_START.match(text)
                or _TABLE_HEADER.match(text)
                or _SUMMARY.match(text)
                or "Killed process" in text
                or "Kill process" in text
                or text.startswith("Tasks state")
                or _PANIC_ON_OOM.search(text)
                or _NO_KILLABLE.search(text)
                or (_ROW.match(text) and _headerless_layout(text) is not None)  # ring buffer wrapped mid-table
            )
            if starts_report:
                b = self._new(ll, self._key(ll), None)
            else:
                return
        if b.killed_at >= 0 and not _AFTERMATH.search(text):
            # After the kill only further kills, group lines and panics belong to the report;
            # ordinary noise neither enters the event nor fills fields the report lacked.
            b.lines_since_kill += 1
            if b.lines_since_kill > AFTERMATH_LINES:
                self._close(self._key_of(b))
            return
        self._line(b, ll)
        self._dispatch(b, ll, text)

    def _key_of(self, b: _Builder) -> str | None:
        for k, v in self.open.items():
            if v is b:
                return k
        return None

    def _line(self, b: _Builder, ll: LogLine) -> None:
        b.ev.last_line = ll.lineno
        if self.keep_lines:
            b.ev.lines.append(ll.text)
        if ll.fixes:
            _account_fixes(b.ev.repairs, ll.fixes)

    def _reaper(self, text: str) -> None:
        m = _REAPED.match(text)
        if m:
            r = ReaperLine(
                int(m["pid"]), m["name"], True, int(m["anon"]), int(m["file"]), int(m["shmem"]) if m["shmem"] else None
            )
        else:
            m = _UNREAPED.match(text)
            if not m:
                return
            r = ReaperLine(int(m["pid"]), m["name"], False)
        for ev in [b.ev for b in self.open.values()] + list(reversed(self.held)):
            if any(k.pid == r.pid for k in ev.kills):
                ev.reaper.append(r)
                if "reaper" not in ev.features:
                    ev.features.append("reaper")
                return

    def _dispatch(self, b: _Builder, ll: LogLine, text: str) -> None:
        """One report line: the open section first (rows are the bulk), then the line handlers.

        The handlers are tried in order and the first that recognises the line consumes it; the
        order matters where two shapes share a prefix (``Kill process`` before ``Killed process``
        lines, ``Tasks state`` before the header parts).
        """
        if self._section(b, text):
            self._known(b)
            return
        if b.section == "table" and b.ev.table and len(text) < 16 and _ELISION.fullmatch(text.strip()):
            b.elided = b.elided or text.strip()
            self._known(b)
            return
        section, table_complete = b.section, b.ev.table_complete
        if section in ("table", "memcg_stats"):
            # Any report line ends these sections; a line no grammar knows does not (below).
            b.section = ""
            if section == "table":
                b.ev.table_complete = bool(b.ev.table)
        for handler in _HANDLERS:
            if handler(self, b, ll, text):
                self._known(b)
                return
        if _KNOWN_OTHER.match(text):
            b.section = section if section != "table" or not b.ev.table else ""
            self._known(b)
            return
        # A line the report grammar does not know: a foreign line (journald, a driver, audit, an
        # instrumented kernel's printk) interleaved with the report.  It neither ends the table
        # nor the memcg stats, so a row or stat after it is still read.
        b.section, b.ev.table_complete = section, table_complete
        self._foreign(b, text)

    def _known(self, b: _Builder) -> None:
        """A report line: the unknown lines since the previous one were foreign lines inside it."""
        if b.foreign:
            b.ev.repairs.foreign_lines_skipped += b.foreign
            b.foreign = 0
        b.stale = 0

    def _foreign(self, b: _Builder, text: str) -> None:
        if _OOM_WORDS.search(text):
            # e.g. "would have killed process N (x), but continuing instead" (a patched kernel)
            un = b.ev.repairs.unrecognised
            if len(un) < MAX_UNRECOGNISED:
                un.append(text[:200])
            self._known(b)
            if b.section == "table":  # it stands where the kernel's own kill line would
                b.section = ""
                b.ev.table_complete = bool(b.ev.table)
            return
        b.foreign += 1
        b.stale += 1
        if b.stale > STALE_LINES:
            self._close(self._key_of(b))

    def _section(self, b: _Builder, text: str) -> bool:
        """Lines of the section the report is in (task table, memcg stats, Mem-Info)."""
        ev = b.ev
        if text[0] == "[":
            if (b.section == "table" or (b.table_cols is None and _ROW.match(text))) and self._row(b, text):
                return True
            if self._table_header(b, text):
                return True
        if b.section == "memcg_stats":
            m = _STAT_KV.match(text)
            if m and ev.memcg is not None:
                ev.memcg.stats[m.group(1)] = int(m.group(2))
                return True
        return b.section == "meminfo" and self._meminfo(b, text)

    def _table_header(self, b: _Builder, text: str) -> bool:
        """``[  pid  ]   uid  tgid total_vm ... name`` (mm/oom_kill.c dump_tasks): names the columns."""
        mh = _TABLE_HEADER.match(text)
        if not mh:
            return False
        ev = b.ev
        cols = mh["cols"].split()
        width = text.index("]") - 1  # "[ pid ]" (<=4.18) vs "[  pid  ]" (4.19+)
        b.table_cols = cols
        b.section = "table"
        ev.table_layout = _layout_name(cols, width)
        b.feature("table:" + ev.table_layout.split(" ")[0])
        if "rss_anon" in cols:
            b.feature("table:rss_split")
        return True

    # -- line handlers, tried in _HANDLERS order; each returns True when it consumed the line -----

    def _h_tasks_state(self, b: _Builder, ll: LogLine, text: str) -> bool:
        """``Tasks state (memory values in pages):`` (4.19+ dump_tasks) opens the table."""
        if not text.startswith("Tasks state"):
            return False
        b.feature("table:tasks_state")
        b.section = "table"
        return True

    def _h_dump_stack(self, b: _Builder, ll: LogLine, text: str) -> bool:
        """``CPU: 0 PID: 140 Comm: big Not tainted 6.12...`` (lib/dump_stack.c): version and pid."""
        ev = b.ev
        if ev.kernel_version is not None and ev.current_pid is not None:
            return False
        m = _DUMP_STACK.match(text)
        if not m:
            return False
        ev.kernel_version = m["ver"]
        ev.current_pid = int(m["pid"] or m["pid2"])
        if " UID: " in text[:30]:
            b.feature("dump_stack:uid")
        return True

    def _h_cpuset(self, b: _Builder, ll: LogLine, text: str) -> bool:
        """``<comm> cpuset=<cs> mems_allowed=<n>`` (cpuset_print_current_mems_allowed, <5.0)."""
        ev = b.ev
        if " cpuset=" not in text or ev.cpuset is not None or text.startswith("oom-kill:"):
            return False
        m = _CPUSET.match(text)
        if not m:
            return False
        ev.cpuset, ev.mems_allowed = m["cpuset"], m["mems"]
        b.feature("cpuset_line")
        return True

    def _h_mem_info(self, b: _Builder, ll: LogLine, text: str) -> bool:
        """``Mem-Info:`` (mm/show_mem.c __show_mem) opens the global memory block; ``Mem-info:`` in
        the per-arch show_mem() of 2.6/3.x (arch/arm/mm/init.c, arch/i386/mm/pgtable.c)."""
        if not text.startswith(("Mem-Info:", "Mem-info:")):
            return False
        b.ev.meminfo = b.ev.meminfo or MemInfo()
        b.section = "meminfo"
        return True

    def _h_memcg_counter(self, b: _Builder, ll: LogLine, text: str) -> bool:
        """``memory: usage N kB, limit N kB, failcnt N`` and its swap/kmem siblings
        (mm/memcontrol.c mem_cgroup_print_oom_meminfo)."""
        m = _MEMCG_COUNTER.match(text)
        if not m:
            return False
        mc = b.ev.memcg = b.ev.memcg or MemcgInfo()
        usage, limit = int(m["usage"]), int(m["limit"])
        what = m["what"]
        if what == "memory":
            mc.usage_kb, mc.limit_kb, mc.failcnt = usage, limit, int(m["f"])
        elif what == "memory+swap":
            mc.memsw_usage_kb, mc.memsw_limit_kb = usage, limit
        elif what == "swap":
            mc.swap_usage_kb, mc.swap_limit_kb = usage, limit
            b.feature("memcg:swap_v2")
        else:
            mc.kmem_usage_kb = usage
        return True

    def _h_memcg_stats(self, b: _Builder, ll: LogLine, text: str) -> bool:
        """``Memory cgroup stats for /x:`` followed by ``key value`` lines (or, <4.x, all on one line)."""
        if not text.startswith("Memory cgroup stats for"):
            return False
        m = _MEMCG_STATS.match(text)
        if not m:
            return False
        mc = b.ev.memcg = b.ev.memcg or MemcgInfo()
        if mc.stats_path is None:
            mc.stats_path = m["path"]
        rest = m["rest"].strip()
        if rest:
            b.feature("memcg:stats_oneline")
            if m["path"] == mc.stats_path:
                for k, v in _STAT_PAIR.findall(rest):
                    mc.stats[k] = int(v)
        else:
            b.feature("memcg:stats_multiline")
            b.section = "memcg_stats"
        return True

    def _h_task_in(self, b: _Builder, ll: LogLine, text: str) -> bool:
        """``Task in /a killed as a result of limit of /b`` (mem_cgroup_print_oom_info, <=4.20)."""
        if not text.startswith("Task in "):
            return False
        m = _TASK_IN.match(text)
        if not m:
            return False
        mc = b.ev.memcg = b.ev.memcg or MemcgInfo()
        mc.task_in, mc.limit_of = m["task"], m["lim"]
        b.feature("memcg:task_in")
        return True

    def _h_limit_reached(self, b: _Builder, ll: LogLine, text: str) -> bool:
        """``Memory limit reached of cgroup /x`` (some vendor kernels)."""
        if not text.startswith("Memory limit reached"):
            return False
        m = _LIMIT_REACHED.match(text)
        if not m:
            return False
        mc = b.ev.memcg = b.ev.memcg or MemcgInfo()
        mc.limit_of = m["lim"]
        return True

    def _h_protection(self, b: _Builder, ll: LogLine, text: str) -> bool:
        """``Memory cgroup min protection NkB -- low protection NkB`` (6.19+)."""
        if not text.startswith("Memory cgroup min protection"):
            return False
        m = _PROTECTION.match(text)
        if not m:
            return False
        mc = b.ev.memcg = b.ev.memcg or MemcgInfo()
        mc.min_protection_kb, mc.low_protection_kb = int(m.group(1)), int(m.group(2))
        b.feature("memcg:min_protection")
        return True

    def _h_summary(self, b: _Builder, ll: LogLine, text: str) -> bool:
        """``oom-kill:constraint=...`` (dump_oom_summary, 5.0+): printed right after the table."""
        if not text.startswith("oom-kill:"):
            return False
        ev = b.ev
        ev.summary = _summary(text)
        b.feature("summary")
        if ev.table:
            ev.table_complete = True
        return True

    def _h_kill_process(self, b: _Builder, ll: LogLine, text: str) -> bool:
        """``<msg>: Kill process N (x) score S or sacrifice child`` (oom_kill_process, <=5.0) and
        ``Kill process N (x) sharing same memory`` (2.6.37-4.x)."""
        if "Kill process" not in text:
            return False
        ev = b.ev
        m = _SELECT.match(text)
        if m:
            ev.select = SelectLine(int(m["pid"]), m["name"], int(m["score"]), m["msg"])
            b.feature("select_line")
            return True
        m = _SHARING.match(text)
        if m:
            ev.kills.append(KillRecord(int(m["pid"]), m["name"], shared_mm=True, ts=ll.ts))
            return True
        return False

    def _h_killed(self, b: _Builder, ll: LogLine, text: str) -> bool:
        """``[<msg>: ]Killed process N (x) total-vm:...`` (__oom_kill_process): one per victim."""
        if "Killed process" not in text:
            return False
        k = _killed(text, ll.ts)
        if k is None:
            return False
        ev = b.ev
        if ev.kills and ev.group_memcg is None and any(not x.shared_mm for x in ev.kills):
            # Not an oom.group member (those follow the "Tasks in ... oom.group" line): the
            # kill of a later OOM whose report the kernel's ratelimit suppressed.
            b = self._new(ll, self._key_of(b), None)
            ev = b.ev
            self._line(b, ll)
        elif ev.group_memcg is not None and ev.kills:
            k.group = True
        ev.kills.append(k)
        if k.message and "oom_kill_allocating_task" in k.message:
            ev.allocating_task_kill = True
        b.feature("killed:prefixed" if k.message else "killed:unprefixed")
        if k.shmem_rss_kb is not None:
            b.feature("killed:shmem")
        if k.uid is not None:
            b.feature("killed:uid_pgtables")
        if b.killed_at < 0:
            b.killed_at = ll.lineno
        b.lines_since_kill = 0
        return True

    def _h_group(self, b: _Builder, ll: LogLine, text: str) -> bool:
        """``Tasks in /x are going to be killed due to memory.oom.group set`` (4.19+)."""
        if not text.startswith("Tasks in "):
            return False
        m = _GROUP.match(text)
        if not m:
            return False
        b.ev.group_memcg = m["cg"]
        b.feature("oom_group")
        return True

    def _h_exiting(self, b: _Builder, ll: LogLine, text: str) -> bool:
        """``OOM victim N (x) is already exiting. Skip killing the task`` (task_will_free_mem)."""
        if not _EXITING.search(text):
            return False
        if not b.ev.kills:
            # the selected victim itself (its mm went between selection and kill): no kill for it.
            # After a kill line it is a memory.oom.group member (often the first victim, already
            # gone: 6.12 oom_kill_memcg_member() -> __oom_kill_process() prints this line for any
            # member whose mm is gone); the kills stand.
            b.ev.victim_exiting = True
        b.killed_at = ll.lineno
        return True

    def _h_panic_on_oom(self, b: _Builder, ll: LogLine, text: str) -> bool:
        """``Out of memory: system-wide panic_on_oom is enabled`` (check_panic_on_oom): ends it."""
        if not _PANIC_ON_OOM.search(text):
            return False
        b.ev.panic = text
        b.feature("panic_on_oom")
        self._close(self._key_of(b))
        return True

    def _h_no_killable(self, b: _Builder, ll: LogLine, text: str) -> bool:
        """``Out of memory and no killable processes...`` / ``System is deadlocked on memory``."""
        deadlock = _DEADLOCK.search(text)
        if not (_NO_KILLABLE.search(text) or deadlock):
            return False
        b.ev.no_killable = True
        if deadlock:
            b.ev.panic = text
        b.killed_at = ll.lineno
        return True

    def _h_kernel_panic(self, b: _Builder, ll: LogLine, text: str) -> bool:
        """``Kernel panic - not syncing: ...`` ends the report (the first panic message wins)."""
        if b.ev.panic is not None or not _KERNEL_PANIC.match(text):
            return False
        b.ev.panic = text
        self._close(self._key_of(b))
        return True

    def _h_swap_cache(self, b: _Builder, ll: LogLine, text: str) -> bool:
        """``Swap cache stats: ...`` (show_swap_cache_info, <=5.x): only a format fingerprint."""
        if not text.startswith("Swap cache stats"):
            return False
        b.feature("swap_cache_stats")
        return True

    def _row(self, b: _Builder, text: str) -> bool:
        try:
            close = text.index("]")
            pid = int(text[1:close])
        except ValueError:
            return False
        cols = b.table_cols
        rest = text[close + 1 :]
        if cols is None:
            cols = _headerless_layout(text)
            if cols is None:
                return False
            b.table_cols = cols
            b.ev.table_layout = _layout_name(cols, close - 1) + " (header lost)"
            b.section = "table"
        parts = rest.split(None, len(cols))
        if len(parts) < len(cols):
            if b.ev.table:
                b.ev.missing.append("task table row cut short")
            return True
        vals: dict[str, int] = {}
        for name, p in zip(cols, parts, strict=False):
            if name in _INT_COLUMNS:
                try:
                    vals[name] = int(p)
                except ValueError:
                    return False
        name = parts[len(cols)] if len(parts) > len(cols) else ""
        b.ev.table.append(
            TaskRow(
                pid=pid,
                uid=vals.get("uid", -1),
                tgid=vals.get("tgid", pid),
                total_vm=vals.get("total_vm", 0),
                rss=vals.get("rss", 0),
                oom_score_adj=vals.get("oom_score_adj", 0),
                name=name,
                rss_anon=vals.get("rss_anon"),
                rss_file=vals.get("rss_file"),
                rss_shmem=vals.get("rss_shmem"),
                nr_ptes=vals.get("nr_ptes"),
                nr_pmds=vals.get("nr_pmds"),
                pgtables_bytes=vals.get("pgtables_bytes"),
                swapents=vals.get("swapents"),
                cpu=vals.get("cpu"),
                oom_adj=vals.get("oom_adj"),
            )
        )
        return True

    def _meminfo(self, b: _Builder, text: str) -> bool:
        mi = b.ev.meminfo
        assert mi is not None
        m = _PAGES_LINE.match(text)
        if m:
            n, what = int(m.group(1)), m.group(2) or m.group(3)
            if what == "RAM":
                mi.pages_ram = n
            elif what == "reserved":
                mi.pages_reserved = n
            elif what.startswith(("HighMem", "HIGHMEM")):
                mi.pages_highmem = n
            else:
                mi.pages_cma_reserved = n
            return True
        m = _SWAP_LINE.match(text)
        if m:
            if m.group(1) == "Total":
                mi.total_swap_kb = int(m.group(2))
            else:
                mi.free_swap_kb = int(m.group(2))
            return True
        if text.startswith("Node "):
            m = _ZONE.match(text)
            if m:
                key = f"{m.group(1)}/{m.group(2)}"
                mi.zone_present_kb[key] = int(m.group(3))
                if m.group(4):
                    mi.zone_managed_kb[key] = int(m.group(4))
                return True
            m = _BUDDY.match(text)
            if m:
                kb = int(m.group(1))
                mi.page_size_kb = kb if mi.page_size_kb is None else min(mi.page_size_kb, kb)
                return True
        return False


_Handler = Callable[[_Parser, _Builder, LogLine, str], bool]
# Report lines outside a section, in the order they are tried (first match consumes the line).
_HANDLERS: tuple[_Handler, ...] = (
    _Parser._h_tasks_state,
    _Parser._h_dump_stack,
    _Parser._h_cpuset,
    _Parser._h_mem_info,
    _Parser._h_memcg_counter,
    _Parser._h_memcg_stats,
    _Parser._h_task_in,
    _Parser._h_limit_reached,
    _Parser._h_protection,
    _Parser._h_summary,
    _Parser._h_kill_process,
    _Parser._h_killed,
    _Parser._h_group,
    _Parser._h_exiting,
    _Parser._h_panic_on_oom,
    _Parser._h_no_killable,
    _Parser._h_kernel_panic,
    _Parser._h_swap_cache,
)


def _headerless_layout(text: str) -> list[str] | None:
    """Column names for a task-table row seen without its header, by its count of numbers."""
    parts = text[text.index("]") + 1 :].split()
    n = 0
    for p in parts:
        if p.lstrip("-").isdigit():
            n += 1
        else:
            break
    return _HEADERLESS_LAYOUTS.get(n)


def _summary(text: str) -> Summary:
    s = Summary()
    body = text[len("oom-kill:") :]
    m = _SUMMARY_TAIL.search(body)
    if m:
        s.task, s.pid, s.uid = m["task"], int(m["pid"]), int(m["uid"])
        body = body[: m.start()]
    # nodemask and mems_allowed values are node lists that may themselves contain commas
    # ("0,2-3"), so split on ",key=" boundaries rather than on every comma.
    for part in re.split(r",(?=[a-z_]+(?:=|$|,))", body):
        if part == "global_oom":
            s.global_oom = True
            continue
        k, _, v = part.partition("=")
        if k == "constraint":
            s.constraint = v
        elif k == "nodemask":
            s.nodemask = v
        elif k == "cpuset":
            s.cpuset = v
        elif k == "mems_allowed":
            s.mems_allowed = v
        elif k == "oom_memcg":
            s.oom_memcg = v
        elif k == "task_memcg":
            s.task_memcg = v
        elif k == "task":
            s.task = v
        elif k == "pid":
            s.pid = _int(v)
        elif k == "uid":
            s.uid = _int(v)
    return s


def _int(v: str) -> int | None:
    try:
        return int(v)
    except ValueError:
        return None


def _killed(text: str, ts: float | None) -> KillRecord | None:
    m = _KILLED.match(text)
    if m:
        return KillRecord(
            pid=int(m["pid"]),
            name=m["name"],
            message=m["msg"],
            total_vm_kb=int(m["vm"]),
            anon_rss_kb=int(m["anon"]),
            file_rss_kb=int(m["file"]),
            shmem_rss_kb=int(m["shmem"]) if m["shmem"] else None,
            uid=int(m["uid"] or m["uid0"]) if (m["uid"] or m["uid0"]) else None,
            pgtables_kb=int(m["pgt"]) if m["pgt"] else None,
            oom_score_adj=int(m["adj"]) if m["adj"] else None,
            ts=ts,
        )
    m = _KILLED_SHORT.match(text)
    if m:
        return KillRecord(pid=int(m["pid"]), name=m["name"], message=m["msg"], ts=ts)
    return None


def _account_fixes(r: Repairs, fixes: tuple[str, ...]) -> None:
    """Add one line's repair notes (see :mod:`harness.core.repair`) to its event's record."""
    for f in fixes:
        if f == "rejoined":
            r.lines_rejoined += 1
        elif f.startswith("ambiguous"):
            if len(r.ambiguous_joins) < MAX_UNRECOGNISED:
                r.ambiguous_joins.append(f.partition(": ")[2])
        else:
            r.prefixes_stripped[f] = r.prefixes_stripped.get(f, 0) + 1


def _finalize(b: _Builder) -> None:
    ev = b.ev
    if b.section == "table" and ev.table and b.foreign:
        # Unknown lines after the last row and nothing after them: as before foreign-line
        # tolerance, the table ended at the first of them.
        ev.table_complete = True
    if b.section == "table" and ev.table:
        # The log ended (or the report was cut) while the table was being printed.
        ev.table_complete = ev.table_complete or bool(ev.kills or ev.summary or ev.select)
    elif ev.table and (ev.kills or ev.summary or ev.select or ev.panic):
        ev.table_complete = True
    if b.elided:
        ev.table_complete = False
    missing = ev.missing
    if ev.trigger is None:
        missing.append("header line (`invoked oom-killer`)")
    if ev.memcg is None and ev.meminfo is None and ev.trigger is not None:
        missing.append("memory state (Mem-Info or memcg block)")
    if not ev.table:
        missing.append("task table")
    elif b.elided:
        missing.append(f"task table rows left out (an elision line {b.elided!r} inside the table)")
    elif not ev.table_complete:
        missing.append("end of task table")
    outcome = ev.kills or ev.panic or ev.no_killable or ev.victim_exiting
    if not outcome:
        missing.append("kill line")
    ev.complete = not missing


# --- entry points --------------------------------------------------------------------------------


def parse_lines(lines: Iterable[LogLine], *, keep_lines: bool = True) -> Iterator[OomEvent]:
    """Parse already-normalized lines (e.g. records read from ``/dev/kmsg``)."""
    p = _Parser(keep_lines)
    for ll in lines:
        p.feed(ll)
        while p.out:
            yield p.out.popleft()
    p.finish()
    yield from p.out


class LiveParser:
    """For a log that is still being written (``oom-harness watch``): feed lines as they arrive.

    A closed event comes out of :meth:`feed` once the parser knows its report is over (the next
    report began, or enough unrelated lines followed); when the log goes quiet, :meth:`flush`
    closes what is still open.  Lines are not kept, so memory stays bounded however long it runs.
    """

    def __init__(self) -> None:
        self._p = _Parser(keep_lines=False)

    @property
    def pending(self) -> bool:
        """An event is open or held back (a quiet log should be flushed)."""
        return bool(self._p.open or self._p.held)

    def feed(self, ll: LogLine) -> list[OomEvent]:
        self._p.feed(ll)
        return self._drain()

    def could_matter(self, raw: str) -> bool:
        """Whether a raw line must be fed at all: while no report is open, only a line that can begin
        one (or name the kernel) can change anything (the filter :func:`parse_stream` uses)."""
        return self._p.busy or _INTERESTING.search(raw) is not None

    def flush(self) -> list[OomEvent]:
        self._p.finish()
        return self._drain()

    def _drain(self) -> list[OomEvent]:
        out = list(self._p.out)
        self._p.out.clear()
        return out


def parse_stream(chunks: Iterable[str], *, keep_lines: bool = True, repair: bool = True) -> Iterator[OomEvent]:
    """Parse text arriving in chunks of any size; memory stays bounded by the chunk size.

    While no report is open, the next line that could belong to one is found with one regex
    search over the chunk, so ordinary kernel noise costs almost nothing.  With *repair* (the
    default) the lines around reports pass through :class:`~harness.core.repair.Repairer` first, so
    a pasted report (wrapped, quoted, escaped) reads as the kernel wrote it.  A line longer than
    :data:`MAX_LINE` is cut there (the rest up to its newline is skipped, never held in memory).
    """
    p = _Parser(keep_lines)
    r = Repairer() if repair else None
    search = (_ENGAGE if repair else _INTERESTING).search
    if r is not None:
        chunks = qp_chunks(chunks, r)
    after = (_AFTERMATH_ENGAGE if repair else _AFTERMATH_SCAN).search
    carry = ""
    lineno = 0
    skipping = False  # inside an over-long line, dropping characters up to its newline
    for chunk in chunks:
        if not chunk:
            continue
        if skipping:
            nl = chunk.find("\n")
            if nl < 0:
                continue
            chunk = chunk[nl:]  # the newline ends the truncated line held in carry
            skipping = False
        buf = carry + chunk
        end = buf.rfind("\n")
        if end < 0:
            carry = buf
            if len(carry) > MAX_LINE:
                carry, skipping = carry[:MAX_LINE], True
            continue
        carry = buf[end + 1 :]
        lineno = _feed_buffer(p, r, search, after, buf, end + 1, lineno)
        if len(carry) > MAX_LINE:
            carry, skipping = carry[:MAX_LINE], True
        while p.out:
            yield p.out.popleft()
    if carry:
        lineno = _feed_buffer(p, r, search, after, carry + "\n", len(carry) + 1, lineno)
    if r is not None:
        for ll in r.flush():
            p.feed(ll)
    p.finish()
    yield from p.out


def _back_up(buf: str, pos: int, start: int) -> int:
    """Start :data:`BACK_UP` lines earlier (not before *pos*): the lines before a line the scan
    found may hold the first piece of a line cut by wrapping, and an interleaved line after it."""
    for _ in range(BACK_UP):
        if start <= pos:
            break
        start = buf.rfind("\n", pos, start - 1) + 1 or pos
    return start


_Search = Callable[[str, int, int], "re.Match[str] | None"]


def _feed_buffer(
    p: _Parser, r: Repairer | None, search: _Search, after: _Search, buf: str, limit: int, lineno: int
) -> int:
    pos = 0
    while pos < limit:
        if r is not None and r.busy and (not p.busy or p.in_aftermath):
            # The parser is idle (or past the kill): hold the repair stage's line only if the
            # next one continues it, so the scan can go on at C speed.
            nxt = buf.find("\n", pos, limit)
            released = r.settle(buf[pos : nxt if nxt >= 0 else limit])
            if released is not None:
                for ll in released:
                    p.feed(ll)
        if (r is None or not (r.busy or r.wrapped)) and p.in_aftermath:
            # after the kill: jump to the next line that may still matter, counting the rest; the
            # search stops about where the aftermath runs out (the idle scan is faster after it).
            # Not in a wrapped paste: a cut line may show none of the words searched for.
            stop = min(limit, pos + max(1, p.aftermath_left()) * 128)
            stop = buf.rfind("\n", pos, stop) + 1 or limit
            m = after(buf, pos, stop)
            end = stop if m is None else buf.rfind("\n", pos, m.start()) + 1 or pos
            if m is not None and r is not None:
                end = _back_up(buf, pos, end)
            if end > pos:
                n = buf.count("\n", pos, end)
                p.skip_noise(n)
                lineno += n
                pos = end
            if pos >= limit:
                return lineno
            if m is None:
                continue
        if not p.busy and (r is None or not r.busy):
            m = search(buf, pos, limit)
            if m is None:
                lineno += buf.count("\n", pos, limit)
                return lineno
            start = buf.rfind("\n", pos, m.start()) + 1 or pos
            if r is not None:
                start = _back_up(buf, pos, start)
                r.engage(buf, start, limit)
            lineno += buf.count("\n", pos, start)
            pos = start
        nl = buf.find("\n", pos, limit)
        if nl < 0:
            nl = limit - 1
        lineno += 1
        raw = buf[pos:nl]
        pos = nl + 1
        if r is None:
            bare = normalize(raw, lineno)
            if bare is not None:
                p.feed(bare)
            continue
        try:
            lines = r.push(raw, lineno)
        except Exception as e:
            raise ParserBug(lineno, e) from e
        for ll in lines:
            p.feed(ll)
    return lineno


def parse_text(text: str, *, keep_lines: bool = True, repair: bool = True) -> list[OomEvent]:
    """Parse a whole log held in memory."""
    return list(parse_stream([text], keep_lines=keep_lines, repair=repair))


def _chunks(f: IO[str]) -> Iterator[str]:
    while True:
        c = f.read(CHUNK)
        if not c:
            return
        yield c


def parse_file(path: str, *, keep_lines: bool = True, repair: bool = True) -> Iterator[OomEvent]:
    """Parse a saved log file (``-`` for standard input).  Raises :class:`LogReadError`."""
    import sys

    if path == "-":
        stream: IO[str] = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace")
        yield from parse_stream(_chunks(stream), keep_lines=keep_lines, repair=repair)
        return
    try:
        f = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115 - closed below
    except OSError as e:
        raise LogReadError(f"{path}: cannot read: {e.strerror or e}") from None
    with f:
        try:
            yield from parse_stream(_chunks(f), keep_lines=keep_lines, repair=repair)
        except OSError as e:
            raise LogReadError(f"{path}: read failed: {e.strerror or e}") from None
