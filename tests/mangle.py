"""Mangle a kernel log the way people paste it: what mail clients, terminals, trackers and chats do.

Each function takes and returns a list of lines (no newlines) so they compose: quote then wrap,
wrap then interleave, and so on.  They model real tools, not random damage:

* :func:`mail_wrap` - a mail client / ``fmt`` / ``fold -s``: break at the last space that fits the
  width, drop that space; a word longer than the width stays whole on its own line;
* :func:`hard_wrap` - ``fold -w``, a serial console capture, a fixed-width terminal copy: exactly
  *width* characters a piece, tokens split anywhere;
* :func:`quote` - a mail reply's ``> `` (before wrapping: the client re-quotes each piece; after:
  the quote is added to wrapped lines);
* :func:`interleave` - unrelated kernel lines (journald, a NIC driver, audit, an instrumented
  kernel's debug printks) between the report's lines, even between two task-table rows;
* :func:`mid_report` - an excerpt that starts after the ``invoked oom-killer`` header;
* :func:`quoted_printable` - a mail sent as quoted-printable (RFC 2045): ``=`` as ``=3D``, lines
  over 76 characters broken with a soft ``=`` (the continuation has no quote marker of its own);
* :func:`print_wrap` - a browser's print of a log view: lines broken at a space, each continuation
  starting `` ↪``;
* :func:`run_together` - a paste that lost its newlines (a web form, a chat): every record on one
  line, glued or with its whitespace collapsed;
* :func:`envelope` - the prefix variants: ``<4>``, ``host kernel:``, indentation, CRLF, HTML
  escaping, doubled blank lines.
"""

from __future__ import annotations

import html
import random
from collections.abc import Callable
from pathlib import Path

from harness.core.logformat import normalize

__all__ = [
    "FOREIGN",
    "dmesg_lines",
    "envelope",
    "hard_wrap",
    "interleave",
    "mail_wrap",
    "mid_report",
    "print_wrap",
    "quote",
    "quoted_printable",
    "run_together",
]

# Ordinary kernel lines a busy machine logs between (and inside) an OOM report's lines.
FOREIGN = [
    "systemd-journald[312]: Under memory pressure, flushing caches.",
    "e1000e 0000:00:19.0 eth0: NIC Link is Up 1000 Mbps Full Duplex, Flow Control: Rx/Tx",
    'audit: type=1400 audit(1732546255.123:45): apparmor="DENIED" operation="open" profile="snap.x" pid=812',
    "igb 0000:02:00.0 enp2s0: Reset adapter",
    "oomdbg: out_of_memory: scanning 4 tasks, order=0 points=1234",
    "EXT4-fs (sda1): mounted filesystem with ordered data mode. Quota mode: none.",
    "usb 1-1: new high-speed USB device number 3 using xhci_hcd",
    "systemd[1]: Started Session 42 of User root.",
    "nvme nvme0: I/O 123 QID 4 timeout, aborting",
    "IPv6: ADDRCONF(NETDEV_CHANGE): wlan0: link becomes ready",
]


def dmesg_lines(path: Path) -> list[str]:
    """A fixture as plain ``dmesg`` text: ``[ seconds] message`` (kmsg records and consoles too)."""
    out = []
    last = 0.0
    for raw in path.read_text(errors="replace").splitlines():
        ll = normalize(raw)
        if ll is None:
            continue
        last = ll.ts if ll.ts is not None else last
        first, *more = ll.text.split("\\x0a")  # dmesg prints a record's escaped newlines as lines
        out.append(f"[{last:12.6f}] {first}")
        out.extend(more)
    return out


def mail_wrap(lines: list[str], width: int) -> list[str]:
    """Greedy wrap at spaces, as a mail client does; the space at a break is dropped."""
    out: list[str] = []
    for line in lines:
        while len(line) > width:
            cut = line.rfind(" ", 0, width + 1)
            if cut <= 0 or not line[:cut].strip():
                cut = line.find(" ", width)  # a word longer than the width stays whole
                if cut < 0:
                    break
            out.append(line[:cut].rstrip(" "))
            line = line[cut:].lstrip(" ")
        out.append(line)
    return out


def hard_wrap(lines: list[str], width: int) -> list[str]:
    """Fixed-width pieces of exactly *width* characters (``fold -w``): tokens split anywhere."""
    out: list[str] = []
    for line in lines:
        while len(line) > width:
            out.append(line[:width])
            line = line[width:]
        out.append(line)
    return out


def quoted_printable(lines: list[str], width: int = 76) -> list[str]:
    """RFC 2045 6.7 encoding: ``=`` and non-ASCII bytes as ``=XX``, a trailing space as ``=20``,
    and soft line breaks (``=`` ending a piece) keeping each encoded line within *width*."""
    out: list[str] = []
    for line in lines:
        enc = []
        for ch in line:
            if ch == "=" or ord(ch) > 126 or (ord(ch) < 32 and ch != "\t"):
                enc.append("".join(f"={b:02X}" for b in ch.encode()))
            else:
                enc.append(ch)
        if enc and enc[-1] in (" ", "\t"):
            enc[-1] = f"={ord(enc[-1]):02X}"
        piece = ""
        for tok in enc:  # an escape is never split
            if len(piece) + len(tok) > width - 1:
                out.append(piece + "=")
                piece = ""
            piece += tok
        out.append(piece)
    return out


def print_wrap(lines: list[str], width: int = 60, marker: str = " \u21aa") -> list[str]:
    """Break at the last space that fits, the space replaced by a continuation *marker*."""
    out: list[str] = []
    for line in lines:
        prefix = ""
        while len(prefix) + len(line) > width:
            cut = line.rfind(" ", 0, width - len(prefix) + 1)
            if cut <= 0 or not line[:cut].strip():
                break
            out.append(prefix + line[:cut])
            line, prefix = line[cut + 1 :], marker
        out.append(prefix + line)
    return out


def run_together(lines: list[str], collapse: bool = False) -> list[str]:
    """All lines as one, with no separator (and, with *collapse*, every run of whitespace one space)."""
    text = "".join(lines)
    return [" ".join(text.split()) if collapse else text]


def quote(lines: list[str], prefix: str = "> ") -> list[str]:
    """A mail reply's quoting (``> `` on every line, ``>`` alone on an empty one)."""
    return [prefix + x if x else prefix.rstrip() for x in lines]


def interleave(lines: list[str], rng: random.Random, every: int = 5, rate: float | None = None) -> list[str]:
    """Insert a foreign kernel line after every *every*-th line (or with probability *rate*)."""
    out: list[str] = []
    for i, line in enumerate(lines, 1):
        out.append(line)
        if (rate is None and i % every == 0) or (rate is not None and rng.random() < rate):
            stamp = line[: line.index("]") + 1] if line.startswith("[") and "]" in line else "[    0.000000]"
            out.append(f"{stamp} {rng.choice(FOREIGN)}")
    return out


_MID_STARTS = ("memory: usage", "Tasks state", "Task in ", "Mem-Info:", "[  pid  ]", "[ pid ]")


def mid_report(lines: list[str], starts: tuple[str, ...] = _MID_STARTS) -> list[str]:
    """Drop everything before the first line that starts one of *starts* (an excerpt)."""
    for i, line in enumerate(lines):
        ll = normalize(line)
        if ll is not None and ll.text.startswith(starts):
            return lines[i:]
    return lines


def _syslog(lines: list[str]) -> list[str]:
    return [f"Nov 25 14:10:55 web01 kernel: {x.split('] ', 1)[-1] if x.startswith('[') else x}" for x in lines]


ENVELOPES: dict[str, Callable[[list[str]], list[str]]] = {
    "level": lambda ls: ["<4>" + x for x in ls],
    "syslog": _syslog,
    "indent": lambda ls: ["    " + x for x in ls],
    "crlf": lambda ls: [x + "\r" for x in ls],
    "html": lambda ls: [html.escape(x, quote=False) for x in ls],
    "blank": lambda ls: [y for x in ls for y in (x, "")],
    "quote": quote,
}


def envelope(lines: list[str], kind: str) -> list[str]:
    """One of the prefix variants in :data:`ENVELOPES`."""
    return ENVELOPES[kind](lines)
