"""A deterministic writer for the ``newc`` cpio format the kernel unpacks as initramfs.

Written in Python (rather than calling ``cpio -H newc``) so that the archive is byte-for-byte
reproducible: entries are sorted, owners are root, mtimes are a fixed value, inode numbers are
sequential, and device nodes such as ``/dev/console`` can be added without being root.
The archive is uncompressed on purpose: inflating tens of MB is slow under TCG.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

NEWC_MAGIC = b"070701"
TRAILER = "TRAILER!!!"


def _pad4(n: int) -> int:
    return (4 - n % 4) % 4


class CpioWriter:
    """Append-only newc writer.  Parents must be added before their children (the kernel needs it)."""

    def __init__(self, out: BinaryIO, mtime: int = 0) -> None:
        self.out = out
        self.mtime = mtime
        self._ino = 300000
        self._closed = False

    def _entry(
        self,
        name: str,
        mode: int,
        data: bytes = b"",
        rdev: tuple[int, int] = (0, 0),
        nlink: int = 1,
        size: int | None = None,
    ) -> None:
        name = name.lstrip("/") or "."
        self._ino += 1
        encoded = name.encode() + b"\0"
        fields = [
            self._ino,
            mode,
            0,
            0,
            nlink,
            self.mtime,
            len(data) if size is None else size,
            0,
            0,
            rdev[0],
            rdev[1],
            len(encoded),
            0,
        ]
        hdr = NEWC_MAGIC + b"".join(b"%08X" % f for f in fields)
        self.out.write(hdr + encoded + b"\0" * _pad4(len(hdr) + len(encoded)))
        if data:
            self.out.write(data + b"\0" * _pad4(len(data)))

    def add_dir(self, name: str, mode: int = 0o755) -> None:
        """A directory entry."""
        self._entry(name, stat.S_IFDIR | mode, nlink=2)

    def add_file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        """A regular file with the given contents."""
        self._entry(name, stat.S_IFREG | mode, data)

    def add_path(self, name: str, src: Path, mode: int | None = None) -> None:
        """A regular file streamed from ``src`` (keeps memory flat for 50 MB archives)."""
        size = src.stat().st_size
        m = (src.stat().st_mode & 0o7777) if mode is None else mode
        self._entry(name, stat.S_IFREG | m, size=size)
        with open(src, "rb") as f:
            while True:
                chunk = f.read(1 << 20)
                if not chunk:
                    break
                self.out.write(chunk)
        self.out.write(b"\0" * _pad4(size))

    def add_symlink(self, name: str, target: str) -> None:
        """A symlink; the target is stored as the entry's data, as newc requires."""
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def add_chardev(self, name: str, major: int, minor: int, mode: int = 0o600) -> None:
        """A character device node (``/dev/console`` must exist before devtmpfs is mounted)."""
        self._entry(name, stat.S_IFCHR | mode, rdev=(major, minor))

    def add_tree(self, root: Path, prefix: str = "") -> None:
        """Add everything under ``root`` (sorted, parents first), mapping it under ``prefix``."""
        entries = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for n in dirnames + filenames:
                entries.append(Path(dirpath, n))
        for p in sorted(entries, key=lambda p: p.relative_to(root).as_posix()):
            rel = p.relative_to(root).as_posix()
            name = f"{prefix.strip('/')}/{rel}" if prefix.strip("/") else rel
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                self.add_symlink(name, os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                self.add_dir(name, st.st_mode & 0o7777)
            elif stat.S_ISREG(st.st_mode):
                self.add_path(name, p, st.st_mode & 0o7777)

    def close(self) -> None:
        """Write the trailer and pad to 512 bytes so further archives can be concatenated."""
        if self._closed:
            return
        self._closed = True
        self._ino = -1  # trailer has inode 0
        self._entry(TRAILER, 0, nlink=1)
        pos = self.out.tell()
        self.out.write(b"\0" * ((512 - pos % 512) % 512))


def read_newc(data: bytes) -> list[tuple[str, int, bytes]]:
    """Parse a (possibly concatenated) newc archive into ``(name, mode, data)``; used by the tests."""
    out = []
    pos = 0
    while pos + 110 <= len(data):
        if data[pos : pos + 6] != NEWC_MAGIC:
            if data[pos : pos + 4] == b"\0\0\0\0":
                pos += 4
                continue
            raise ValueError(f"bad cpio magic at {pos}")
        f = [int(data[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = f[1], f[6], f[11]
        name = data[pos + 110 : pos + 110 + namesize - 1].decode()
        pos += 110 + namesize
        pos += _pad4(110 + namesize)
        body = data[pos : pos + size]
        pos += size + _pad4(size)
        if name == TRAILER:
            continue
        out.append((name, mode, body))
    return out
