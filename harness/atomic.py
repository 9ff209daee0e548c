"""Atomic file writes: a reader sees the old file or the whole new one, never half of it.

Why one module: results (verdict summaries, env) and the VM cache (initramfs images, kernels) both
write files that a later run trusts; a write cut short by Ctrl-C, SIGKILL or a full disk must not
leave a torn file under the final name.  The data is fsync'ed before the rename so that a crash
right after cannot leave an empty file behind a good-looking name either.  Standard library only.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_file", "atomic_write"]


@contextlib.contextmanager
def atomic_file(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling path; if the block succeeds it is fsync'ed and renamed onto *final*.

    The caller writes (and closes) the temporary file inside the block.  On any exception the
    temporary file is removed and *final* is left as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write(path: str | os.PathLike[str], data: str) -> None:
    """Write *data* (UTF-8 text) to *path* atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(data, encoding="utf-8")
