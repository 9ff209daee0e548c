"""Read the kernel log from a cursor through ``/dev/kmsg``; never clear it.

Opening ``/dev/kmsg`` and seeking to the end remembers "now"; every later read returns the next
record, in order, with its sequence number.  A record overwritten before it was read makes the
next ``read`` fail with ``EPIPE``: that, and any jump in sequence numbers, is counted as a gap so
a report that may have lost lines is flagged, never silently trusted.
"""

from __future__ import annotations

import errno
import os
import select
import time
from collections.abc import Callable

from harness.core.logformat import LogLine, normalize
from harness.errors import HarnessError

__all__ = ["KmsgCursor"]


class KmsgCursor:
    """A read position in the kernel log, armed at construction (``from_start=False``)."""

    def __init__(self, path: str = "/dev/kmsg", from_start: bool = False) -> None:
        try:
            self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            raise HarnessError(
                f"cannot read the kernel log {path}: {e.strerror} (run as root, or set kernel.dmesg_restrict=0)"
            ) from None
        if not from_start:
            os.lseek(self.fd, 0, os.SEEK_END)
        self.path = path
        self.records: list[str] = []  # raw records read so far (for results/<run>/kernel.log)
        self.lines: list[LogLine] = []
        self.gaps = 0
        self.last_seq: int | None = None

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> KmsgCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read_new(self) -> list[LogLine]:
        """Read every record that arrived since the last call (non-blocking)."""
        new: list[LogLine] = []
        while True:
            try:
                data = os.read(self.fd, 8192)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.EPIPE:  # records overwritten before we read them
                    self.gaps += 1
                    continue
                if e.errno == errno.EINTR:
                    continue
                raise
            if not data:
                break
            rec = data.decode("utf-8", "replace")
            head = rec.split("\n", 1)[0]
            self.records.append(head)
            ll = normalize(head)
            if ll is None:
                continue
            if ll.seq is not None:
                if self.last_seq is not None and ll.seq > self.last_seq + 1:
                    self.gaps += 1
                self.last_seq = ll.seq
            ll.lineno = len(self.records)
            new.append(ll)
        self.lines.extend(new)
        return new

    def wait_for(self, pred: Callable[[list[LogLine]], bool], timeout: float) -> bool:
        """Read until *pred*(all lines so far) is true or *timeout* seconds pass."""
        deadline = time.monotonic() + timeout
        while True:
            self.read_new()
            if pred(self.lines):
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            select.select([self.fd], [], [], min(left, 0.05))

    def text(self) -> str:
        return "\n".join(self.records) + ("\n" if self.records else "")
