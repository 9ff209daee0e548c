"""``oom-harness watch``: explain every OOM kill on a live machine as it happens.

Reads ``/dev/kmsg`` from its current end (``--from-start``: from the oldest record the ring buffer
still holds), or follows a growing log file (``--file PATH``, like ``tail -F``: truncation and
rotation are followed), or reads standard input (``--file -``, e.g. ``journalctl -k -f -o cat |
oom-harness watch --file -``).  For every OOM report, once it is complete, it prints what ``parse``
prints — the ranked candidates, predicted vs killed, verdict and reason — or, with ``--json``, one
JSON object per line (``"type": "oom"``, then the ``parse --json`` event fields).

Long-running by design:

* a ``/dev/kmsg`` overrun (records overwritten before they were read: ``EPIPE``) or a jump in
  sequence numbers is reported as a gap (``"type": "gap"`` with ``--json``, ``lost_records`` the
  number of records lost) and reading goes on;
  an event that lost lines says so (``complete: false``);
* memory is bounded: no line is kept once parsed, a line longer than 64 KiB is cut, and only the
  last few victims are remembered (to recognise a second kill);
* SIGINT and SIGTERM end it cleanly: what is pending is flushed, a one-line summary goes to
  stderr, exit code 0.

The explanation is from the kernel's report alone: by the time it is printed the victim is dead
and its ``/proc`` state is gone, so nothing is read from ``/proc`` about the tasks (only the
machine's total swap and swappiness, which a memcg report does not print, when reading the live
kernel log).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import select
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from harness import __version__
from harness.core.analysis import Context, analyze
from harness.core.events import OomEvent
from harness.core.logformat import LogLine, normalize
from harness.core.parser import LiveParser
from harness.errors import HarnessError
from harness.reporting.render import analysis_text

#: A line longer than this is cut (a binary blob on stdin must not grow the buffer without end).
MAX_LINE = 64 * 1024
#: Victims remembered, to recognise a second kill of the same OOM (a bounded window).
REMEMBER_VICTIMS = 256
GONE = ("note: the explanation is from the kernel's report alone: the victim is dead and the live /proc "
        "state of the tasks is gone")


@dataclass
class Gap:
    """Records lost before the reader saw them."""

    why: str
    lost: int | None = None  # records, when the sequence numbers tell


class _Stop(Exception):
    pass


# ---------------------------------------------------------------------------------------- sources


class KmsgSource:
    """``/dev/kmsg`` records as lines, from the current end (or the oldest still held).

    An overrun — the ring buffer overwrote records before they were read, which ``read`` reports
    as ``EPIPE`` once and then goes on from the oldest record left — becomes one :class:`Gap`
    carrying how many records were lost, from the sequence numbers either side.  To know the
    number even when the reader stalls before its first record, opening "from now" reads to the
    end (keeping only the last sequence number) rather than seeking there blind.
    """

    #: At open, records skipped at most before seeking to the end blind (a huge ring buffer).
    MAX_SKIP = 1_000_000

    def __init__(self, path: str = "/dev/kmsg", from_start: bool = False, read: Any = None) -> None:
        try:
            self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            raise HarnessError(f"cannot read the kernel log {path}: {e.strerror} (run as root, or set "
                               "kernel.dmesg_restrict=0; or follow a log with --file)") from None
        self.name = path
        self._read = read or os.read
        self.last_seq: int | None = None
        self.lineno = 0
        self._overrun = False
        if not from_start:
            self._skip_to_end()

    def _skip_to_end(self) -> None:
        """Read what the ring buffer holds, keeping only the last record's sequence number."""
        for _ in range(self.MAX_SKIP):
            try:
                data = self._read(self.fd, 8192)
            except BlockingIOError:
                return
            except InterruptedError:
                continue
            except OSError as e:
                if e.errno == errno.EPIPE:
                    continue
                raise
            if not data:
                return
            try:
                self.last_seq = int(data.split(b",", 2)[1])
            except (IndexError, ValueError):
                pass
        os.lseek(self.fd, 0, os.SEEK_END)
        self.last_seq = None

    def poll(self, timeout: float) -> Iterator[LogLine | Gap]:
        """Whatever arrived within *timeout* seconds (records, and gaps)."""
        r, _w, _x = select.select([self.fd], [], [], timeout)
        if not r:
            return
        for _ in range(10_000):  # then let the caller breathe (flush, signals)
            try:
                data = self._read(self.fd, 8192)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            except OSError as e:
                if e.errno == errno.EPIPE:  # overwritten before we read them; the next read goes on
                    self._overrun = True
                    continue
                raise
            if not data:
                break
            head = data.decode("utf-8", "replace").split("\n", 1)[0]
            self.lineno += 1
            ll = normalize(head, self.lineno)
            if ll is None:
                continue
            if ll.seq is not None:
                lost = ll.seq - self.last_seq - 1 if self.last_seq is not None else None
                if self._overrun:
                    self._overrun = False
                    yield Gap("kmsg overrun: records were overwritten before they were read", lost)
                elif lost is not None and lost > 0:
                    yield Gap(f"kmsg sequence jumped from {self.last_seq} to {ll.seq}", lost)
                self.last_seq = ll.seq
            yield ll
        if self._overrun:  # EPIPE and nothing after it (yet): say so now, without a count
            self._overrun = False
            yield Gap("kmsg overrun: records were overwritten before they were read")

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

class FileSource:
    """A growing log file (``tail -F``: from its end unless *from_start*; truncation and rotation
    followed), or standard input for ``-`` (ends at end of input)."""

    def __init__(self, path: str, from_start: bool = False) -> None:
        self.path = path
        self.stdin = path == "-"
        self.name = "standard input" if self.stdin else path
        self.buf = b""
        self.lineno = 0
        self.eof = False
        self.keep: Callable[[str], bool] = lambda raw: True  # the watcher narrows it (noise is not parsed)
        self.ino: tuple[int, int] | None = None
        if self.stdin:
            self.fd = sys.stdin.fileno()
        else:
            self._open(from_start)

    def _open(self, from_start: bool) -> None:
        try:
            self.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise HarnessError(f"cannot read {self.path}: {e.strerror}") from None
        st = os.fstat(self.fd)
        self.ino = (st.st_dev, st.st_ino)
        if not from_start:
            os.lseek(self.fd, 0, os.SEEK_END)

    def _rotated(self) -> bool:
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        if (st.st_dev, st.st_ino) != self.ino:
            return True
        if st.st_size < os.lseek(self.fd, 0, os.SEEK_CUR):  # truncated in place
            os.lseek(self.fd, 0, os.SEEK_SET)
        return False

    def poll(self, timeout: float) -> Iterator[LogLine | Gap]:
        if self.stdin:
            r, _w, _x = select.select([self.fd], [], [], timeout)
            if not r:
                return
        data = os.read(self.fd, 1 << 16)
        if not data:
            if self.stdin:
                self.eof = True
                if self.buf:
                    yield from self._lines(self.buf + b"\n")
                    self.buf = b""
                return
            if self._rotated():
                yield from self._lines(self.buf + b"\n") if self.buf else iter(())
                self.buf = b""
                os.close(self.fd)
                self._open(from_start=True)
                return
            time.sleep(timeout)
            return
        yield from self._lines(data)

    def _lines(self, data: bytes) -> Iterator[LogLine | Gap]:
        buf = self.buf + data
        *lines, self.buf = buf.split(b"\n")
        if len(self.buf) > MAX_LINE:
            lines.append(self.buf[:MAX_LINE])
            self.buf = b""
        for raw in lines:
            self.lineno += 1
            text = raw[:MAX_LINE].decode("utf-8", "replace")
            if not self.keep(text):
                continue
            ll = normalize(text, self.lineno)
            if ll is not None:
                yield ll

    def close(self) -> None:
        if not self.stdin and self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


# ---------------------------------------------------------------------------------------- watching


def _live_context() -> Context:
    """What a memcg report does not print but the running machine tells: total swap, swappiness."""
    swap = swappiness = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("SwapTotal:"):
                    swap = int(line.split()[1]) // 4
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open("/proc/sys/vm/swappiness") as f:
            swappiness = int(f.read().strip())
    except (OSError, ValueError):
        pass
    return Context(total_swap_pages=swap, swappiness=swappiness)


class Watcher:
    """Lines in, explanations out (*emit* gets each output object: an analysis dict or a gap dict)."""

    def __init__(self, ctx: Context, emit: Any, settle_s: float = 0.5) -> None:
        self.parser = LiveParser()
        self.ctx = ctx
        self.emit = emit
        self.settle_s = settle_s
        self.victims: deque[int] = deque(maxlen=REMEMBER_VICTIMS)
        self.prev: OomEvent | None = None
        self.last_line = time.monotonic()
        self.events = 0
        self.gaps = 0

    def feed(self, item: LogLine | Gap) -> None:
        if isinstance(item, Gap):
            self.gaps += 1
            self.emit({"type": "gap", "reason": item.why, "lost_records": item.lost, "time": time.time()})
            return
        self.last_line = time.monotonic()
        self._out(self.parser.feed(item))

    def tick(self) -> None:
        """Flush what is pending once the log has been quiet for a while."""
        if self.parser.pending and time.monotonic() - self.last_line >= self.settle_s:
            self._out(self.parser.flush())

    def flush(self) -> None:
        self._out(self.parser.flush())

    def _out(self, events: list[OomEvent]) -> None:
        for ev in events:
            a = analyze(ev, self.ctx, self.victims, self.prev)
            self.victims.extend(k.pid for k in ev.kills)
            self.prev = ev
            self.events += 1
            d = a.to_dict()
            self.emit({"type": "oom", "seen": time.time(), **d})


def _printer(as_json: bool, source: str) -> Any:
    def emit(obj: dict[str, Any]) -> None:
        if as_json:
            sys.stdout.write(json.dumps(obj, default=str) + "\n")
        elif obj["type"] == "gap":
            lost = f" ({obj['lost_records']} record(s) lost)" if obj.get("lost_records") else ""
            sys.stdout.write(f"gap: {obj['reason']}{lost}; a report in progress may be incomplete; going on\n\n")
        else:
            d = {k: v for k, v in obj.items() if k not in ("type", "seen")}
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(obj["seen"]))
            sys.stdout.write(f"== OOM kill seen {stamp} ({source})\n{analysis_text(d)}\n  {GONE}\n\n")
        sys.stdout.flush()

    return emit


def cmd_watch(args: argparse.Namespace) -> int:
    if args.file:
        src: KmsgSource | FileSource = FileSource(args.file, from_start=args.from_start)
        ctx = Context(era=args.era)
    else:
        src = KmsgSource(from_start=args.from_start)
        live = _live_context()
        ctx = Context(era=args.era, total_swap_pages=live.total_swap_pages, swappiness=live.swappiness)
    w = Watcher(ctx, _printer(args.json, src.name), settle_s=args.settle)
    if isinstance(src, FileSource):
        src.keep = w.parser.could_matter
    t0 = time.monotonic()

    def stop(signum: int, frame: object) -> None:
        raise _Stop

    old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    print(f"oom-harness {__version__}: watching {src.name} for OOM kills (Ctrl-C to stop)", file=sys.stderr,
          flush=True)
    try:
        while not getattr(src, "eof", False):
            for item in src.poll(0.2):
                w.feed(item)
            w.tick()
        w.flush()
    except _Stop:
        w.flush()
    except BrokenPipeError:  # the reader went away (| head): nothing more to say
        return 0
    finally:
        src.close()
        for s, h in old.items():
            signal.signal(s, h)
    print(f"oom-harness watch: {w.events} OOM event(s), {w.gaps} gap(s) in {time.monotonic() - t0:.0f}s",
          file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "watch", help="explain every OOM kill on this machine as it happens (/dev/kmsg, a growing log, or stdin)",
        description="Follow the kernel log and, for every OOM report once complete, print the ranked candidates, "
        "predicted vs killed victim, verdict and reason (as `parse` does). The live /proc state of the tasks is gone "
        "by then: the explanation is from the kernel's report alone.")
    p.add_argument("--file", metavar="PATH", help="follow this growing log instead of /dev/kmsg; - reads standard "
                   "input (e.g. journalctl -k -f -o cat | oom-harness watch --file -)")
    p.add_argument("--from-start", action="store_true",
                   help="begin with what the log already holds (default: only what comes from now on)")
    p.add_argument("--json", action="store_true", help='one JSON object per line: {"type": "oom", ...the parse '
                   '--json event fields} or {"type": "gap", ...}')
    p.add_argument("--era", help="force the model era (a kernel version like 6.1, or an era label)")
    p.add_argument("--settle", type=float, default=0.5, metavar="S",
                   help="a report is complete once the log has been quiet this long (default: %(default)s s)")
    p.set_defaults(func=cmd_watch)
