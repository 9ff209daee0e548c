"""Cache locations and the atomic cache-directory helper shared by the host side of the VM layer.

Everything the VM layer downloads or builds lives under one cache root so that a user can wipe it
with a single ``rm -rf``; nothing is written into the checkout.  Writers always build into a
temporary sibling and ``rename`` it into place, so an interrupted fetch or build never leaves a
half-written entry that a later run would trust (single files: :mod:`harness.atomic`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path


def cache_root() -> Path:
    """Return the cache root: ``$OOM_HARNESS_CACHE`` or ``~/.cache/oom-harness`` (created on demand)."""
    env = os.environ.get("OOM_HARNESS_CACHE")
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "oom-harness"
    root.mkdir(parents=True, exist_ok=True)
    return root


def progress(msg: str) -> None:
    """Report progress of a long step on stderr (stdout stays clean for machine-readable output)."""
    print(f"[vm] {msg}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a fresh temporary directory that becomes ``final`` only if the block succeeds.

    The temp dir is a sibling (same filesystem) so the final ``rename`` is atomic.  If ``final``
    appeared meanwhile (a concurrent writer won), ours is discarded: both were built from the same
    inputs, so either copy is good.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
