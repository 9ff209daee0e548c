"""What of the project is shipped into guests and containers: the core, the machine side, the workloads.

Why one definition: the VM initramfs and the Docker image are both built from it, and their hashes
decide when an image is rebuilt (and, for VMs, when every boot snapshot goes cold).  Reporting, the
CLI and the backends are host-only, so editing them must not change either image; a test imports
every shipped module under ``python3 -I`` with only these files present, so a non-stdlib or
host-only import in them fails there and not inside a guest.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Paths relative to the checkout; directories are shipped whole (caches and dot-files left out).
SHIPPED: tuple[str, ...] = (
    "harness/__init__.py",
    "harness/errors.py",
    "harness/core",
    "harness/machine",
    "workloads",
)

#: The checkout these paths are relative to.
CHECKOUT = Path(__file__).resolve().parent.parent.parent

__all__ = ["SHIPPED", "CHECKOUT", "payload_files"]


def payload_files(paths: tuple[str, ...] | list[str] = SHIPPED, root: Path = CHECKOUT) -> list[tuple[str, Path]]:
    """``(path relative to root, file)`` for every file of *paths*, sorted, without caches or dot-files."""
    out: list[tuple[str, Path]] = []
    for rel in paths:
        src = root / rel
        if src.is_file():
            out.append((Path(rel).as_posix(), src))
            continue
        for dirpath, dirnames, filenames in os.walk(src):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and not d.startswith("."))
            for f in sorted(filenames):
                if f.endswith((".pyc", ".pyo")) or f.startswith("."):
                    continue
                p = Path(dirpath, f)
                out.append((p.relative_to(root).as_posix(), p))
    return sorted(out)
