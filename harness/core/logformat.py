"""Turn one line of any kernel-log source into the bare kernel message.

Kernel messages reach users wrapped in many envelopes; the OOM parser must see only the message.
Recognised envelopes (any combination, in this order from the left):

* ``/dev/kmsg`` records: ``6,1234,5678901,-;message`` (optionally ``,caller=T123`` before ``;``),
  and their ``" KEY=value"`` dictionary continuation lines (dropped);
* syslog / ``journalctl -k`` prefixes: ``Nov 25 14:10:55 host kernel: `` and the ISO forms
  ``2026-11-25T14:10:55.123456+00:00 host kernel: ``;
* ``dmesg --time-format iso``: ``2026-11-25T14:10:55,123456+00:00 message``;
* ``dmesg -T``: ``[Wed Nov 25 14:10:55 2026] message``;
* ``dmesg -x`` (``--decode``): ``kern  :warn  : `` before any of the dmesg forms (util-linux prints
  the facility and the level names, each padded to six columns: ``"%-6s:%-6s: "``);
* ``journalctl -o short-monotonic``: ``[  123.456789] host kernel: `` (the host is kept: a syslog
  file may hold several machines' logs, and their reports must not mix);
* raw console / ``dmesg -r``: ``<4>`` level prefixes;
* printk timestamps ``[ 1234.567890]`` and caller ids ``[  T123]`` / ``[  C1]`` (with or without a
  space between them, as the console prints ``[    0.0][    T0]``);
* a QEMU serial capture where guest user-space output shares a line with a kernel message: the
  message is taken from the last printk timestamp on the line.

Lines without any envelope are passed through unchanged.  Nothing here knows about OOM reports.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["LogLine", "normalize"]


@dataclass(slots=True)
class LogLine:
    """One kernel message, stripped of its envelope."""

    text: str
    lineno: int = 0
    ts: float | None = None  # printk seconds since boot, when the source shows them
    caller: str | None = None  # "T123" / "C1" when CONFIG_PRINTK_CALLER or kmsg caller= shows it
    seq: int | None = None  # /dev/kmsg sequence number
    host: str | None = None  # the syslog/journal host name, when the source shows one
    env: bool = False  # an envelope (timestamp, record header, syslog prefix...) was removed
    fixes: tuple[str, ...] = ()  # what the repair stage did to make this line (harness.core.repair)


_KMSG = re.compile(r"^(\d+),(\d+),(\d+),[^;,]*(?:,caller=([TC]\d+))?[^;]*;")
_SYSLOG = re.compile(
    r"^(?:[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d(?:\.\d+)?"  # Nov 25 14:10:55[.123456] (short-precise)
    r"|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?)"  # ISO 8601
    r" (?P<host>\S+) kernel(?:\[\d+\])?:(?: |$)"  # (a prefix alone: its message wrapped onto the next line)
)
# dmesg -x / --decode: "kern  :warn  : ", "user  :err   : ", "local7:debug : " (util-linux sys-utils/dmesg.c)
_DECODED = re.compile(
    r"^(?:kern|user|mail|daemon|auth|syslog|lpr|news|uucp|cron|authpriv|ftp|res0|res1|res2|res3|local[0-7]) *:"
    r"(?:emerg|alert|crit|err|warn|notice|info|debug) *: ?"
)
# journalctl -o short-monotonic: "[  123.456789] host kernel: message" (the host after the stamp)
_HOST_KERNEL = re.compile(r"^(?P<host>[\w.-]+) kernel(?:\[\d+\])?:(?: |$)")
_ISO_DMESG = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)? ")
# ctime in any locale: "[Wed Nov 25 14:10:55 2026]", "[dim. 19 avril 18:03:30 2026]", "[月  1月 26 ...]"
_CTIME = re.compile(r"^\[[^\]]{0,40}?\d\d:\d\d:\d\d \d{4}\] ?")
_LEVEL = re.compile(r"^<\d{1,3}>")
_TS = re.compile(r"\[\s*(\d+\.\d+)\]")
_CALLER = re.compile(r"^ ?\[\s*([TC]\d+)\] ?")
_TS_AT_START = re.compile(r"^\[\s*(\d+\.\d+)\] ?")
# A printk timestamp somewhere inside a line (serial console with interleaved user output).
# Six fractional digits is what printk prints; demanding them avoids eating user text like "[1.5]".
_TS_INSIDE = re.compile(r"\[\s*\d+\.\d{6}\]")


def normalize(raw: str, lineno: int = 0) -> LogLine | None:
    """Return the kernel message in *raw*, or ``None`` for lines that carry no message.

    ``None`` is returned only for ``/dev/kmsg`` dictionary continuation lines; every other line
    yields a :class:`LogLine` (possibly with empty text).
    """
    line = raw.rstrip("\r\n")
    if not line:
        return LogLine("", lineno)
    ts: float | None = None
    caller: str | None = None
    seq: int | None = None
    host: str | None = None
    first = line[0]
    if first == " " and "=" in line and line.lstrip(" ")[:1].isupper() and _is_kmsg_dict(line):
        return None
    if first in " \t":
        # Indentation added by a copy (forum code blocks, `dmesg -T` continuation lines) is no part
        # of the message.
        line = line.lstrip(" \t")
        if not line:
            return LogLine("", lineno)
        first = line[0]
    n0 = len(line)
    if first.islower() and line[6:7] == ":":
        m = _DECODED.match(line)
        if m:
            line = line[m.end() :]
            if not line:
                return LogLine("", lineno)
            first = line[0]
    if first.isdigit():
        m = _KMSG.match(line)
        if m:
            seq = int(m.group(2))
            ts = int(m.group(3)) / 1e6
            caller = m.group(4)
            line = line[m.end() :]
        else:
            m = _SYSLOG.match(line) or _ISO_DMESG.match(line)
            if m:
                host = m.groupdict().get("host")
                line = line[m.end() :]
    elif first.isalpha():
        m = _SYSLOG.match(line)
        if m:
            host = m["host"]
            line = line[m.end() :]
    elif first == "[" and not line[1:2].isdigit() and line[1:2] not in (" ", "<"):
        # (caller ids "[T123]"/"[C1]" never match _CTIME: it needs "hh:mm:ss yyyy]"; English
        # "[Thu ...]"/"[Tue ...]" timestamps start with "T")
        m = _CTIME.match(line)
        if m:
            line = line[m.end() :]
    if line[:1] == "<":
        m = _LEVEL.match(line)
        if m:
            line = line[m.end() :]
    if line[:1] == "[":
        m = _TS_AT_START.match(line)
        if m:
            ts = float(m.group(1))
            line = line[m.end() :]
            if host is None and " kernel" in line[:80]:
                mh = _HOST_KERNEL.match(line)
                if mh:
                    host = mh["host"]
                    line = line[mh.end() :]
    elif "]" in line and "[" in line:
        # Serial console: "user output[   12.345678] kernel message"
        matches = list(_TS_INSIDE.finditer(line))
        if matches:
            last = matches[-1]
            m_ts = _TS.match(line, last.start())
            if m_ts is not None:
                ts = float(m_ts.group(1))
            line = line[last.end() :].lstrip(" ")
    if line[:2] in ("[T", "[C", "[ ", " [") and caller is None:
        m = _CALLER.match(line)
        if m:
            caller = m.group(1)
            line = line[m.end() :]
    return LogLine(line.rstrip(), lineno, ts, caller, seq, host, len(line) != n0)


def _is_kmsg_dict(line: str) -> bool:
    """kmsg dictionary lines look like `` SUBSYSTEM=pci`` / `` DEVICE=+pci:0000:00:01.0``."""
    key = line.lstrip(" ").split("=", 1)[0]
    return key.isupper() or key.replace("_", "").isupper()
