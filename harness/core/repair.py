"""Turn a pasted kernel log back into the kernel's own lines, before the parser reads it.

OOM reports reach ``parse`` copied from mail archives, bug trackers, chats and terminals, and
mangled on the way: hard-wrapped (a mail client breaking at spaces, ``fold``/a console cutting
every *W* characters mid-token), quoted (``> ``), indented, HTML-escaped, CRLF-terminated,
forwarded by rsyslog (``#012`` for a newline).  This stage undoes that, one line at a time and with
one line of look-behind, so it streams like the parser (memory flat in the log's size):

* **prefixes**: quote markers, indentation, CR, HTML entities and rsyslog escapes are removed and
  counted; the log envelope itself (timestamps, kmsg records, syslog/journal prefixes with their
  host) is :func:`harness.core.logformat.normalize`'s job;
* **rejoining**: in a log whose lines carry an envelope, a line without one is a piece cut from the
  line before (the kernel prints every line with its prefix; the only envelope-less lines it
  makes are the continuation lines of one multi-line record, e.g. ``memory.stat`` - ``key value``
  lines - and show_mem's indented ``key:value`` lines, which are kept apart).  Where the pieces
  meet, the separator (nothing, or the space a mail client dropped) is decided from the kernel's
  grammar of that line (:func:`shape_valid`: the task table's column count from its header, the
  exact shape of the ``invoked oom-killer``, ``Killed process``, ``oom-kill:``, memcg and
  ``oom_reaper`` lines), then from the wrapping seen in the rest of the paste (fixed-width pieces
  all have one length; a mail client never cuts inside a token).  A join neither decides is taken
  the likelier way and reported as ambiguous;
* **interleaved lines between pieces** (a paste wrapped, then mixed with other lines): a line the
  grammar says is unfinished is held aside while up to :data:`MAX_SUSPEND` lines that are no
  report lines pass, and takes the next piece.

Every emitted :class:`~harness.core.logformat.LogLine` carries ``fixes``: ``"rejoined"`` once per
glued piece, ``"ambiguous: ..."`` for an undecided join, and the names of stripped prefixes; the
parser adds them to the event's :class:`~harness.core.events.Repairs`.  Foreign lines interleaved
with a report are the parser's business (it knows which lines a report may contain).

The cost matters: the parser only engages this stage around lines that may belong to a report (a
C-speed regex search skips the rest), releases a held line as soon as the next raw line shows it
cannot continue it (:meth:`Repairer.settle`), and learns how a paste was wrapped only once a line
without an envelope turns up; a line with an envelope and no continuation costs one ``normalize``
plus a few string tests.
"""

from __future__ import annotations

import html
import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from .logformat import LogLine, normalize

__all__ = ["Repairer", "shape_valid", "ELISION", "ENGAGE", "qp_chunks", "qp_decode"]

# Added to the parser's idle scan (which already finds "-kill", a part that survives a cut
# after it): a fixed-width cut inside "invoked oom-k|ill" leaves "gfp_mask=" whole on the same
# piece or the next (cuts are >= 40 columns apart), so the scan still stops at a cut header.
# Each alternative costs scan speed (its first character widens re's skip set): measured, kept few.
ENGAGE = r"|_mask=\d"  # of gfp_mask=, from its rare '_' (see parser._INTERESTING)

# A poster's mark for lines left out ("…", "...", "[...]", "<snip>"), or grep -A/-B/-C's "--" between
# two groups of context: inside the task table it means rows are missing, whatever follows.
ELISION = re.compile(r"(?i)…+|\.{3,}|\[(?:…|\.{3,}|snip)\]|\((?:…|\.{3,}|snip)\)|<snip(?:ped)?>|-{2}")

# How many raw lines ahead are looked at to learn how the paste was wrapped.
PROFILE_LINES = 400
PROFILE_CHARS = 1 << 16
# How many interleaved lines an unfinished line waits across for its next piece.
MAX_SUSPEND = 3
# More undecided word|word boundaries than this in one line: no enumeration, the wrap mode decides.
MAX_ENUM = 6

_ALNUM = re.compile(r"[0-9A-Za-z]")
_QUOTE = re.compile(r"[ \t]*(?:>[ \t]?)+")
_ENTITY = re.compile(r"&(?:lt|gt|amp|quot|apos|#\d+|#x[0-9a-fA-F]+);")
# A cheap look at whether a raw line starts with a log envelope (see logformat for the real thing).
_ENV_HINT = re.compile(
    r"[ \t]*(?:>[ \t]?)*[ \t]*(?:[a-z][a-z0-7]{2,7} *:[a-z]{3,6} *: ?)?"  # dmesg -x "kern  :warn  : "
    r"(?:<\d{1,3}>|(?:<\d{1,3}>)?"  # a console level alone is an envelope too
    r"(?:\[[ \d]*\d\.\d+\]|\d+,\d+,\d+,|[A-Z][a-z]{2} [ \d]\d \d\d:|\d{4}-\d\d-\d\dT"
    r"|\[[^\]]{0,40}?\d\d:\d\d:\d\d \d{4}\]|\[ *[TC]\d+\]))"
)
# Lines the kernel itself prints without an envelope: the continuation lines of one multi-line
# record.  mm/memcontrol.c memory_stat_format() ("anon 123", 5.x printed the whole buffer as one
# record) and mm/show_mem.c __show_mem() (" active_file:1 inactive_file:2 ...", one pr_info with
# embedded newlines).
_RECORD_CONT = re.compile(r"\s*[a-z_]+(?: \d+|:\d+(?:kB)?(?: [a-z_]+:\d+(?:kB)?)*)$")

# --- the kernel's grammar of the lines a verdict rests on (full lines, anchored) ----------------
# mm/oom_kill.c dump_header(): "%s invoked oom-killer: gfp_mask=%#x(%pGg), order=%d, oom_score_adj=%hd"
# (4.9-4.18 add "nodemask=%*pbl, " before order; 2.6.36-3.6 print "oom_adj=%d, " before oom_score_adj)
_TRIGGER_FULL = re.compile(
    r".+? invoked oom-killer: gfp_mask=0x[0-9a-fA-F]+(?:\([^)]*\))?, (?:nodemask=\S+, )?order=-?\d+,"
    r" (?:oom_adj=-?\d+, )?oom_score_adj=-?\d+"
)
# mm/oom_kill.c __oom_kill_process(): "%s: Killed process %d (%s) total-vm:%lukB, anon-rss:%lukB,
# file-rss:%lukB, shmem-rss:%lukB, UID:%u pgtables:%lukB oom_score_adj:%hd" (fields added in 4.6,
# 5.1; "UID %d, " before the name in some vendor 3.x kernels)
_KILLED_FULL = re.compile(
    r"(?:[A-Za-z][^:]*: )?Killed process \d+,? (?:UID \d+, )?\(.*\),? (?:total-vm|vsz):\d+kB,"
    r" anon-rss:\d+kB, file-rss:\d+kB(?:, shmem-rss:\d+kB)?(?:,? UID:\d+ pgtables:\d+kB oom_score_adj:-?\d+)?"
    r"|(?:[A-Za-z][^:]*: )?Killed process \d+ \([^()]*\)"
)
# mm/oom_kill.c oom_kill_process() (<=5.0): "%s: Kill process %d (%s) score %u or sacrifice child"
_SELECT_FULL = re.compile(r"(?:.+?: )?Kill process \d+ \(.*\) score -?\d+ or sacrifice child")
# mm/oom_kill.c dump_oom_summary() (5.0+): "oom-kill:constraint=%s,nodemask=%*pbl,cpuset=...,
# mems_allowed=...,oom_memcg=...,task_memcg=...,task=%s,pid=%d,uid=%d"
_SUMMARY_FULL = re.compile(
    r"oom-kill:constraint=CONSTRAINT_[A-Z_]+,nodemask=[^,]*(?:,[a-z_]+(?:=[^,]*)?)*?,task=.*,pid=\d+,uid=\d+"
)
# mm/memcontrol.c mem_cgroup_print_oom_meminfo(): "%s: usage %llukB, limit %llukB, failcnt %lu"
_COUNTER_FULL = re.compile(r"(?:memory|memory\+swap|swap|kmem): usage \d+kB, limit \d+kB, failcnt \d+")
# mm/memcontrol.c mem_cgroup_print_oom_context() (<=4.20): "Task in %s killed as a result of limit of %s"
_TASK_IN_FULL = re.compile(r"Task in \S+ killed as a result of limit of \S+")
_STATS_FULL = re.compile(r"Memory cgroup stats for \S*:(?: ?[a-z_]+:\d+KB)*")
# mm/oom_kill.c oom_reap_task_mm(): "oom_reaper: reaped process %d (%s), now anon-rss:%lukB, ..."
_REAPED_FULL = re.compile(
    r"oom_reaper: reaped process \d+ \(.*\), now anon-rss:\d+kB, file-rss:\d+kB(?:, shmem-rss:\d+kB)?"
)
# mm/oom_kill.c oom_kill_memcg_member path (4.19+): "Tasks in %s are going to be killed due to memory.oom.group set"
_GROUP_FULL = re.compile(r"Tasks in \S+ are going to be killed due to memory\.oom\.group set")
# lib/dump_stack.c dump_stack_print_info(): "CPU: %d UID: %u PID: %d Comm: %.20s %s%s %s %.*s %s"
_CPU_FULL = re.compile(r"CPU: \d+ (?:UID: \d+ )?PID: \d+ Comm: .{1,20}? (?:Not tainted|Tainted: [A-Z ]+?) +\S+ #.*")
_HEADER_START = re.compile(r"\[\s*pid\s*\]")
# mm/oom_kill.c dump_tasks(): the column names of every era's table header
_COLUMNS = frozenset(
    {
        "uid", "tgid", "total_vm", "rss", "rss_anon", "rss_file", "rss_shmem", "nr_ptes", "nr_pmds",
        "pgtables_bytes", "swapents", "cpu", "oom_adj", "oom_score_adj", "name",
    }
)  # fmt: skip
_ROW_START = re.compile(r"\[\s*\d+\]")

_FULL_BY_START: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("oom-kill:", _SUMMARY_FULL),
    ("memory", _COUNTER_FULL),
    ("swap:", _COUNTER_FULL),
    ("kmem:", _COUNTER_FULL),
    ("Task in ", _TASK_IN_FULL),
    ("Tasks in ", _GROUP_FULL),
    ("Memory cgroup stats for", _STATS_FULL),
    ("oom_reaper: reaped", _REAPED_FULL),
    ("CPU: ", _CPU_FULL),
)


# The fixed beginnings of report lines (mm/oom_kill.c, mm/memcontrol.c): a held line that is only
# a beginning of one of these ("Memory cgroup out of", "Tasks in") is unfinished, whatever follows.
_HEADS = (
    "Memory cgroup out of memory: Killed process ",
    "Memory cgroup out of memory: Kill process ",
    "Out of memory (oom_kill_allocating_task): Killed process ",
    "Out of memory: Killed process ",
    "Out of memory: Kill process ",
    "Tasks in ",
    "Task in ",
    "Tasks state (memory values in pages):",
    "Memory cgroup stats for ",
    "memory: usage ",
    "memory+swap: usage ",
    "oom-kill:constraint=",
    "oom_reaper: reaped process ",
)


# The ends a header line cut inside " invoked oom-killer:" can have (" i" on; a line of other text
# ending so is only held back a little longer).
_TRIGGER_CUTS = tuple(" invoked oom-killer:"[:k] for k in range(2, len(" invoked oom-killer:")))


def _head_only(text: str) -> bool:
    """*text* is a proper beginning of a report line's fixed head (a line cut right after it)."""
    if len(text) >= 58 or not text:
        return False
    t = text + " "
    return any(h.startswith(text) and h != text for h in _HEADS) or any(h.startswith(t) for h in _HEADS)


def shape_valid(text: str, table_numbers: int | None = None) -> bool | None:
    """Whether *text* is a whole, well-formed line of a report shape the verdict depends on.

    ``None`` when the line is of no shape known here (a call-trace line, Mem-Info, a foreign line):
    then only the wrap mode can decide a join.  *table_numbers* is the number of numeric columns
    of the table whose header was last seen (rows are checked against it).
    """
    if text[:1] == "[":
        if _HEADER_START.match(text):
            cols = text[text.index("]") + 1 :].split()
            return bool(cols) and cols[-1] == "name" and all(c in _COLUMNS for c in cols)
        if _ROW_START.match(text):
            return _row_valid(text, table_numbers)
        return None
    if text.endswith(_TRIGGER_CUTS):
        return False  # "grower inv": cut inside " invoked oom-killer:"
    i = text.find(" invoked")
    if i >= 0:
        rest = text[i + 8 :]
        if rest.startswith(" oom-killer:"):
            return bool(_TRIGGER_FULL.fullmatch(text))
        if " oom-killer:".startswith(rest):
            return False  # cut inside "invoked oom-killer:"
    if "Killed process" in text:
        return bool(_KILLED_FULL.fullmatch(text))
    if "Kill process " in text and " score " in text:
        return bool(_SELECT_FULL.fullmatch(text))
    for start, pat in _FULL_BY_START:
        if text.startswith(start):
            return bool(pat.fullmatch(text))
    if text.startswith("Tasks state"):
        return text == "Tasks state (memory values in pages):"
    if _head_only(text):
        return False
    return None


def _row_valid(text: str, numbers: int | None) -> bool:
    """A task-table row: ``[pid]``, exactly the header's count of integers, then a name."""
    parts = text[text.index("]") + 1 :].split()
    n = 0
    for p in parts:
        if p.lstrip("-").isdigit():
            n += 1
        else:
            break
    if numbers is None:
        return n in (7, 8, 10) and len(parts) > n
    # A name that starts with an integer and a space is what a wrong join inside the numbers
    # produces; counting integers rejects it.
    # (a name of digits only would count as one more integer: such a row is taken as unfinished,
    # which only matters when deciding a cut inside it)
    return n == numbers and len(parts) > n and parts[n] != "-"  # "-": the cut "-1000" of oom_score_adj


@dataclass(slots=True)
class _Piece:
    """One raw line's contribution to a logical line."""

    text: str  # message text (first piece) or the raw continuation without quote/indent
    lead: bool  # began with whitespace (after the paste's own indentation)
    trail: bool  # ended with whitespace
    raw_len: int  # length of the raw line as it is in the file (for fixed-width detection)


@dataclass(slots=True)
class _Pending:
    ll: LogLine
    pieces: list[_Piece]
    fixes: list[str] = field(default_factory=list)
    indent: int = 0  # the paste's indentation before the first piece's envelope


class Repairer:
    """Raw lines in, the kernel's lines out (see the module docstring)."""

    def __init__(self) -> None:
        self.pend: _Pending | None = None
        self.fixed_votes = 0  # evidence of fixed-width wrapping (tokens cut anywhere)
        self.mail_votes = 0  # evidence of wrapping at spaces
        self.width: int | None = None  # the fixed width, once seen
        self.enveloped = True  # most lines of the paste carry an envelope
        self.table_numbers: int | None = None
        self.extra: list[LogLine] = []  # further lines of an rsyslog #012 record
        self.wrapped = False  # the paste shows wrapping at all (pieces without an envelope)
        self.strip_indent = True  # continuation pieces carry the paste's indentation too
        # A line the grammar says is unfinished, held while one foreign line passes: pasted text
        # wrapped first and interleaved after has a foreign line between two pieces.
        self.susp: _Pending | None = None
        self.susp_for = 0  # foreign lines let pass since the held line was suspended
        self.window = ""  # text ahead of the last engagement, profiled when first needed
        self.qp = False  # the paste is quoted-printable mail, decoded before it got here (qp_chunks)

    @property
    def busy(self) -> bool:
        """A line is held back until the next shows whether it continues it."""
        return self.pend is not None or self.susp is not None

    # -- wrap profile ---------------------------------------------------------------------------

    def engage(self, buf: str, start: int, limit: int) -> None:
        """The parser's scan stopped at *start*: keep the text ahead, to learn how it was wrapped
        should a line without an envelope turn up (a log as the kernel wrote it never needs it)."""
        self.window = buf[start : min(limit, start + PROFILE_CHARS)]

    def _profile(self) -> None:
        """Learn how the paste ahead was wrapped from up to :data:`PROFILE_LINES` raw lines.

        Fixed-width wrapping gives pieces of one length, and some of its cuts fall on a space (a
        piece ends with one, or the next begins with one); a mail client's pieces vary in length
        and never keep the space it broke at.
        """
        text, self.window = self.window, ""
        if not text:
            return
        if "&" in text:
            text = html.unescape(text)
        window = text.split("\n", PROFILE_LINES)[:PROFILE_LINES]
        env = [bool(_ENV_HINT.match(x)) for x in window]
        filled = [bool(x.strip(" \t\r>")) for x in window]
        n_lines = sum(filled)
        if n_lines >= 4:
            # narrow wrapping can cut most lines in three: a few envelopes are enough evidence
            self.enveloped = sum(e and f for e, f in zip(env, filled, strict=True)) * 6 >= n_lines
        lengths: dict[int, int] = {}
        spaced = pieces = indented = kept = 0
        for i in range(len(window) - 1):
            if filled[i] and filled[i + 1] and not env[i + 1] and not _RECORD_CONT.match(_unquote(window[i + 1])):
                raw = window[i].rstrip("\r")
                pieces += 1
                lengths[len(raw)] = lengths.get(len(raw), 0) + 1
                lead, nxt = _lead(raw), _lead(window[i + 1])
                if env[i] and lead:
                    indented += 1
                    kept += nxt >= lead
                if raw.endswith((" ", "\t")) or nxt > lead:
                    spaced += 1
        if indented:
            # Indentation added after wrapping is on every piece; added before, only on the first.
            self.strip_indent = kept == indented
        self.wrapped = self.wrapped or pieces > 0
        if pieces >= 2 and self.enveloped:
            # the width: the commonest length of a piece, or else the longest if it recurs (an
            # interleaved line before a piece makes that "piece" any length)
            w, n = max(lengths.items(), key=lambda kv: (kv[1], kv[0]))
            if n * 3 < pieces:
                w = max(lengths)
                n = lengths[w] if lengths[w] * 10 >= pieces * 3 else 0
            if spaced and n >= 2:
                self.width = w
                self.fixed_votes += 2
            elif not spaced and n == pieces and pieces >= 3:
                # every piece exactly as long as the others and no cut fell on a space: a fixed
                # width that happened to cut inside words only (a mail client's pieces end at
                # word ends, so their lengths vary)
                self.width = w
                self.fixed_votes += 1
            elif not spaced:
                self.mail_votes += 1

    # -- streaming --------------------------------------------------------------------------------

    def push(self, raw: str, lineno: int, _fixes: list[str] | None = None) -> list[LogLine]:
        """Take one raw line; return the lines that are now complete (possibly none)."""
        fixes: list[str] = ["quoted-printable"] if self.qp else []
        if _fixes is not None:
            fixes = _fixes
        line = raw
        if line.endswith("\r"):
            line = line.rstrip("\r")
            fixes.append("cr")
        raw_len = len(line)
        if "&" in line and _ENTITY.search(line):  # first: a web archive escapes the quote too
            line = html.unescape(line)
            fixes.append("html")
        if line[:1] in (">", " ", "\t"):
            m = _QUOTE.match(line)
            if m and ">" in m.group():
                line = line[m.end() :]
                fixes.append("quote")
        if line.find("\u21aa", 0, 8) >= 0 and line.lstrip(" \t")[:1] == "\u21aa":
            # a print/terminal wrap's continuation marker (U+21AA, e.g. a browser's print of a
            # syslog view): it stands where the line was broken at a space, so the space stays
            line = line.replace("\u21aa", " ", 1)
            fixes.append("wrap-marker")
        if _fixes is None and len(line) > 40 and _may_run_on(line):
            parts = _split_run_on(line)
            if len(parts) > 1:
                split_out: list[LogLine] = []
                for i, part in enumerate(parts):
                    if i:  # each later part is a record of its own, never a piece of the one before
                        split_out.extend(self.flush())
                    split_out.extend(self.push(part, lineno, [*fixes, "run-together"]))
                return split_out
        extra: list[str] = []
        if "#01" in line:
            line, extra = _rsyslog(line)
            if extra or "\t" in line:
                fixes.append("rsyslog")
        if "\\x0a" in line:
            # /dev/kmsg escapes a record's embedded newlines (Documentation/ABI/testing/dev-kmsg):
            # 5.x printed memory.stat as one record.  The kernel's own format, not a repair.
            line, *more = line.split("\\x0a")
            extra.extend(x for x in more if x.strip())
        body = line.lstrip(" \t")
        indent = len(line) - len(body)
        out: list[LogLine] = []
        if not body:
            out.extend(self.flush())
            out.append(LogLine("", lineno))
            return out
        got = normalize(line, lineno)
        if got is None:  # a kmsg dictionary line
            return self.flush()
        ll = got
        if not ll.env and self.window:
            self._profile()
        if self.pend is not None and self._continues(ll, body):
            target = self.pend
            if self.susp is not None and self._to_suspended():
                target = self.susp
            self._append(target, line, indent, raw_len, fixes)
            return out
        if (
            self.susp is not None
            and self.susp_for < MAX_SUSPEND
            and self._unfinished(self.susp, by_width=self._is_report_line(self.susp))
            and _may_be_foreign(ll.text, self.table_numbers)
        ):
            # another foreign line before the held line's next piece: let it pass too
            if self.pend is not None:
                out.extend(self._emit(self.pend))
                self.pend = None
            self.susp_for += 1
        elif (
            self.susp is None
            and self.pend is not None
            and self._unfinished(self.pend, by_width=self.wrapped)
            and _may_be_foreign(ll.text, self.table_numbers)
        ):
            # the held line is unfinished and an interleaved line came: hold it aside
            self.susp, self.pend, self.susp_for = self.pend, None, 1
        else:
            out.extend(self.flush())
        if indent and ll.env:
            fixes.append("indent")
        first = _Piece(ll.text, False, line.endswith((" ", "\t")), raw_len)
        self.pend = _Pending(ll, [first], fixes, indent)
        for e in extra:
            self.extra.append(LogLine(e.rstrip(), lineno, ll.ts, ll.caller, ll.seq, ll.host, True))
        if self.extra:
            out.extend(self.flush())
        return out

    def settle(self, next_raw: str) -> list[LogLine] | None:
        """Release the held lines if *next_raw* cannot continue them (it has an envelope, it is
        blank, or - in a log without envelopes - the grammar says the held line is whole).

        Lets the parser's scan go back to C speed right after a line that started nothing;
        ``None`` means the next line must go through :meth:`push`.
        """
        p = self.pend
        if p is None:
            return [] if self.susp is None else self.flush()
        if not next_raw.strip(" \t\r>") or normalize(next_raw) is None:  # blank, or a kmsg dictionary line
            return self.flush()
        if _ENV_HINT.match(next_raw):
            # an unfinished line may get its next piece after an interleaved line: push decides
            return None if self._unfinished(p, by_width=self.wrapped) else self.flush()
        if self.window:
            self._profile()
        if not self.enveloped and shape_valid(self._text(p), self.table_numbers) is not False:
            return self.flush()
        return None

    def flush(self) -> list[LogLine]:
        """Emit the held lines (at the end of input, or when the next line starts a new one)."""
        out: list[LogLine] = []
        if self.susp is not None:
            s, self.susp = self.susp, None
            out.extend(self._emit(s))
        if self.pend is not None:
            p, self.pend = self.pend, None
            out.extend(self._emit(p))
        return out

    def _emit(self, p: _Pending) -> list[LogLine]:
        ll = p.ll
        if len(p.pieces) > 1:
            ll.text = self._join(p)
        if p.fixes:
            ll.fixes = tuple(p.fixes)
        if _HEADER_START.match(ll.text):
            cols = ll.text[ll.text.index("]") + 1 :].split()
            self.table_numbers = sum(1 for c in cols if c != "name")
        out = [ll]
        if self.extra:
            out.extend(self.extra)
            self.extra = []
        return out

    # -- joining ----------------------------------------------------------------------------------

    def _continues(self, ll: LogLine, body: str) -> bool:
        """Is this envelope-less line a piece of the held line?  (see the module docstring)"""
        p = self.pend
        if ll.env or p is None:
            return False
        first = p.pieces[0].text
        if not first:
            return True  # the held line is an envelope whose message was wrapped onto this one
        if self.susp is not None and self._unfinished(self.susp):
            return True  # the next piece of the line an interleaved line interrupted
        if not self.enveloped:
            # No envelopes to tell pieces apart: only a line the grammar says is unfinished joins.
            return (
                shape_valid(first, self.table_numbers) is False
                and not _RECORD_CONT.match(body)
                and shape_valid(ll.text, self.table_numbers) is None
            )
        if _RECORD_CONT.match(body) and len(p.pieces) == 1:
            v = shape_valid(first, self.table_numbers)
            if v is not False:
                return False
        if len(body) < 16 and ELISION.fullmatch(body.rstrip()):
            return False  # a poster's "<snip>" / "[...]" / grep's "--": a line of its own
        if not _ALNUM.search(body) and len(p.pieces) == 1:
            # "  :" / "..." - a poster's elision mark after a whole line, not a piece of it
            return shape_valid(first, self.table_numbers) is False
        return True

    def _unfinished(self, p: _Pending, by_width: bool = True) -> bool:
        """The grammar says the line is not whole yet, or (*by_width*) its last piece is exactly
        as long as the fixed wrapping width (a line can be that long uncut: weaker evidence)."""
        if (
            by_width
            and self.width is not None
            and p.pieces[-1].raw_len == self.width
            and self.fixed_votes > self.mail_votes
        ):
            return True
        text = self._text(p)
        v = shape_valid(text, table_numbers=self.table_numbers)
        # "Killed process N (x)" alone is whole only before 2.6.2x; since, " total-vm:..." follows
        return v is False or (v is True and text.endswith(")") and "Killed process" in text)

    def _is_report_line(self, p: _Pending) -> bool:
        """A line of a shape the verdict rests on (a cut at the width is then worth waiting for)."""
        return shape_valid(self._text(p), self.table_numbers) is not None

    def _to_suspended(self) -> bool:
        """Does the next piece belong to the held unfinished line rather than to the foreign line
        that came between?  Yes while that line is unfinished, unless the foreign line was itself
        cut (it already has a piece, or it is exactly as long as the fixed wrapping width)."""
        susp, pend = self.susp, self.pend
        assert susp is not None and pend is not None
        if len(pend.pieces) > 1:
            return False
        v = shape_valid(self._text(susp), self.table_numbers)
        if v is False:
            return True  # the report line's grammar wants more; a foreign line's is unknown
        if self.width is None or susp.pieces[-1].raw_len != self.width:
            return False
        # the held line was cut at the fixed width; if the interleaved line is exactly as long
        # too, the report line wins over a line of unknown shape
        return pend.pieces[0].raw_len != self.width or (
            v is True and shape_valid(pend.pieces[0].text, self.table_numbers) is None
        )

    def _text(self, p: _Pending) -> str:
        """The held line as it would be emitted now (no vote, no note)."""
        return p.pieces[0].text if len(p.pieces) == 1 else self._join(p, record=False)

    def _append(self, p: _Pending, line: str, indent: int, raw_len: int, fixes: list[str]) -> None:
        cut = min(indent, p.indent) if self.strip_indent else 0
        text = line[cut:]
        lead = text[:1] in (" ", "\t")
        p.pieces.append(_Piece(text.strip(" \t"), lead, line.endswith((" ", "\t")), raw_len))
        p.fixes.append("rejoined")
        self.wrapped = True
        for f in fixes:
            if f not in p.fixes:
                p.fixes.append(f)

    def _join(self, p: _Pending, record: bool = True) -> str:
        """Glue the pieces; each word|word cut gets "" or " " as grammar and wrap mode say."""
        pieces = p.pieces
        fixed = self.fixed_votes > self.mail_votes
        seps: list[str | None] = []
        for a, b in zip(pieces, pieces[1:], strict=False):
            if not a.text:
                seps.append("")  # an envelope alone: its message is the next piece
            elif a.trail or b.lead:
                seps.append(" ")  # the cut fell on whitespace: one space (tables split anyway)
            else:
                seps.append(None)
        open_idx = [i for i, s in enumerate(seps) if s is None]
        if not open_idx:
            return _glue(pieces, seps)
        preferred = [("" if (fixed and pieces[i].raw_len >= (self.width or 0)) else " ") for i in open_idx]
        if len(open_idx) > MAX_ENUM:
            return _glue(pieces, _fill(seps, open_idx, preferred))
        valid: list[tuple[str, ...]] = []
        shape_known = True
        for combo in itertools.product(("", " "), repeat=len(open_idx)):
            text = _glue(pieces, _fill(seps, open_idx, combo))
            v = shape_valid(text, self.table_numbers)
            if v is None:
                shape_known = False
                break
            if v:
                valid.append(combo)
        decided_by_mode = self.fixed_votes != self.mail_votes
        if not shape_known or not valid:
            choice = tuple(preferred)
            if not decided_by_mode and shape_known:
                self._ambiguous(p, record)
        elif len(valid) == 1:
            choice = valid[0]
            if record:
                self._vote(choice)
        elif tuple(preferred) in valid and decided_by_mode:
            choice = tuple(preferred)
        else:
            choice = tuple(preferred) if tuple(preferred) in valid else valid[-1]
            self._ambiguous(p, record)
        return _glue(pieces, _fill(seps, open_idx, choice))

    def _ambiguous(self, p: _Pending, record: bool) -> None:
        if record:
            p.fixes.append("ambiguous: " + " | ".join(x.text for x in p.pieces)[:160])

    def _vote(self, combo: tuple[str, ...]) -> None:
        """A join only one separator makes grammatical says how the paste was wrapped."""
        if "" in combo:
            self.fixed_votes += 1
        else:
            self.mail_votes += 1


def _may_be_foreign(text: str, table_numbers: int | None) -> bool:
    """Could this enveloped line be one interleaved between two pieces of a report line?  Not if
    it is itself a report line: then the report has moved on and the line before is complete."""
    if text.startswith(("Kernel panic", "Mem-Info", "Tasks state", "Memory cgroup", "oom-kill:", "oom_reaper:")):
        return False
    if text[:1] == "[" and (_ROW_START.match(text) or _HEADER_START.match(text)):
        return False
    return shape_valid(text, table_numbers) is None


def _unquote(raw: str) -> str:
    """*raw* without a mail quote marker."""
    if raw[:1] in (">", " ", "\t"):
        m = _QUOTE.match(raw)
        if m and ">" in m.group():
            return raw[m.end() :]
    return raw


def _lead(raw: str) -> int:
    """Leading whitespace after any quote marker (the paste's indentation, or a cut at a space)."""
    if raw[:1] in (">", " ", "\t"):
        m = _QUOTE.match(raw)
        if m and ">" in m.group():
            raw = raw[m.end() :]
    return len(raw) - len(raw.lstrip(" \t"))


def _fill(seps: list[str | None], idx: list[int], combo: tuple[str, ...] | list[str]) -> list[str]:
    out = [s if s is not None else "" for s in seps]
    for i, c in zip(idx, combo, strict=True):
        out[i] = c
    return out


def _glue(pieces: list[_Piece], seps: list[str | None] | list[str]) -> str:
    parts = [pieces[0].text]
    for sep, piece in zip(seps, pieces[1:], strict=True):
        parts.append(sep or "")
        parts.append(piece.text)
    return "".join(parts)


def _rsyslog(line: str) -> tuple[str, list[str]]:
    """rsyslog's control-character escapes: ``#012`` a newline (a multi-line record), ``#011`` a tab."""
    line = line.replace("#011", "\t")
    if "#012" not in line:
        return line, []
    first, *rest = line.split("#012")
    return first, [r for r in rest if r.strip()]


# --- quoted-printable mail (RFC 2045 6.7) ---------------------------------------------------------
# A mail client that sends a report as quoted-printable breaks every line longer than 76
# characters with a soft break ("=" at the end of a piece, the next piece on the next line, with
# no quote marker of its own: the quote was there before encoding) and writes "=" as "=3D", other
# bytes as "=XX".  A genuine log has lines ending in "=" too (a netconsole/pr_cont record cut after
# "cpuset="), so nothing is decoded unless the text shows an escape only an encoder writes: "=3D"
# (any report has "gfp_mask=", so its encoding has "=3D"), a soft break, and (almost) no "=" that is
# neither (a genuine log has many: "gfp_mask=0x...", "order=0"; an encoder leaves none).
_QP_EVIDENCE = "=3D"
_QP_EVIDENCE_RE = re.compile(_QP_EVIDENCE)  # re's search beats str's "in" on text full of "="
# Where in a chunk the evidence is looked for: a quoted-printable paste is a mail (a few KiB), so
# its first lines are in the window; the rest of a large log costs nothing.
QP_WINDOW = 1 << 16
_QP_SOFT = re.compile(r"=\r?\n")
_QP_ESC = re.compile(r"(?:=[0-9A-F]{2})+")
_QP_BARE = re.compile(r"=(?![0-9A-F]{2}|\r?\n)")


def _qp_bytes(m: re.Match[str]) -> str:
    return bytes.fromhex(m.group().replace("=", "")).decode("utf-8", "replace")


def qp_decode(text: str) -> str:
    """Join soft breaks, then decode ``=XX`` escapes (quote markers are stripped later, per line)."""
    return _QP_ESC.sub(_qp_bytes, _QP_SOFT.sub("", text))


def qp_chunks(chunks: Iterable[str], r: Repairer) -> Iterator[str]:
    """*chunks* with quoted-printable decoded, once a chunk's first :data:`QP_WINDOW` characters
    show the encoding (``=3D``, a soft break, and hardly a bare ``=``); until then they pass as
    they are (one C-speed search of that window per chunk).

    A soft break or an escape cut by a chunk boundary is carried to the next chunk.
    """
    carry = ""
    for chunk in chunks:
        if not r.qp:
            if _QP_EVIDENCE_RE.search(chunk, 0, QP_WINDOW) is not None and (
                "=\n" in chunk[:QP_WINDOW] or "=\r\n" in chunk[:QP_WINDOW]
            ):
                head = chunk[:QP_WINDOW]
                r.qp = len(_QP_BARE.findall(head)) * 10 <= head.count(_QP_EVIDENCE)
            if not r.qp:
                yield chunk
                continue
        buf = carry + chunk
        # keep back the last line, and any line before it that ends in a soft break
        cut = buf.rfind("\n") + 1
        while cut > 0 and buf[max(0, cut - 3) : cut].rstrip("\r\n").endswith("="):
            cut = buf.rfind("\n", 0, cut - 1) + 1
        carry = buf[cut:]
        if cut:
            yield qp_decode(buf[:cut])
    if carry:
        yield qp_decode(carry)


# --- records run together on one line ------------------------------------------------------------
# A paste that lost its newlines (a web form, a chat, a mail client collapsing whitespace) runs the
# kernel's records together.  A record starts where nothing else in kernel text can: a dmesg
# timestamp glued to the text before it, a syslog head ("Nov  2 11:52:13 host kernel: "), or the
# kill lines of mm/oom_kill.c ("Out of memory: ", "Memory cgroup out of memory: ", "Killed process N")
# right after a letter, digit or ")" (the kernel prints them after ": " or at the start of a line,
# and an envelope ends in "] ", ": " or ";" - never glued to a word).
_TS_MID = r"\[ *\d+\.\d{6}\] "
_RUN_ON = re.compile(
    r"(?P<ts>" + _TS_MID + r")"
    r"|(?P<sys>(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ \d]\d \d\d:\d\d:\d\d \S+ kernel: )"
    r"|(?<=[\w)])(?P<kill>Out of memory: |Out of memory \(|Memory cgroup out of memory: |Killed process \d)"
)
_TS_ANY = re.compile(_TS_MID)
_TS_START = re.compile(r"[ \t]*\[ *(\d+\.\d{6})\] ")
_SYS_START = re.compile(r"[ \t]*(?:<\d{1,3}>)?[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \S+ kernel: ")


def _may_run_on(line: str) -> bool:
    """A cheap look (substring tests, one literal-led search) for a record start inside *line*."""
    if "ut of memory" in line or "Killed process" in line:
        return _RUN_ON.search(line, 1) is not None
    k = line.find(" kernel: ")
    if k >= 0 and line.find(" kernel: ", k + 9) > 0:  # a syslog line's own head is one
        return _RUN_ON.search(line, 1) is not None
    if line.lstrip(" \t")[:1] == "[":
        end = line.find("] ")
        return end > 0 and _TS_ANY.search(line, end + 2) is not None
    return False


def _split_run_on(line: str) -> list[str]:
    """*line* cut before each record start it has glued in (see :data:`_RUN_ON`).

    A timestamp splits only in a line that starts with one, at a time not earlier than the one
    before (a timestamp-like text inside a message is neither); a syslog head only in a line that
    starts with one.
    """
    ts0 = _TS_START.match(line)
    sys0 = _SYS_START.match(line) is not None
    last = float(ts0.group(1)) if ts0 else None
    cuts: list[int] = []
    for m in _RUN_ON.finditer(line, 1):
        if m["ts"] is not None:
            if last is None:
                continue
            t = float(m["ts"].strip("[] "))
            if t < last:
                continue
            last = t
        elif m["sys"] is not None and not sys0:
            continue
        cuts.append(m.start())
    if not cuts:
        return [line]
    parts = [line[a:b].rstrip() for a, b in zip([0, *cuts], [*cuts, len(line)], strict=True)]
    return [p for p in parts if p.strip()]
