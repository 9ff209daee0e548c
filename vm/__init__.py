"""VM layer of oom-harness: boot stock Debian kernels in QEMU and drive a Python agent inside.

Kept import-light on purpose: ``vm.guest`` is copied into the guest initramfs without this file, and
host tools (``python -m vm``) import the submodules they need.  The public names are re-exported
lazily so ``import vm`` costs nothing.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "ExecResult",
    "GuestBootTimeout",
    "GuestError",
    "GuestHung",
    "GuestPanic",
    "GuestVM",
    "Kernel",
    "KernelError",
    "build_initrd",
    "get_kernel",
    "list_kernels",
    "local_kernel",
]

_WHERE = {
    "ExecResult": "vm.machine",
    "GuestBootTimeout": "vm.machine",
    "GuestError": "vm.machine",
    "GuestHung": "vm.machine",
    "GuestPanic": "vm.machine",
    "GuestVM": "vm.machine",
    "Kernel": "vm.kernels",
    "KernelError": "vm.kernels",
    "get_kernel": "vm.kernels",
    "list_kernels": "vm.kernels",
    "local_kernel": "vm.kernels",
    "build_initrd": "vm.image",
}


def __getattr__(name: str) -> Any:
    """Resolve the public names on first use (PEP 562) to keep ``import vm`` cheap."""
    mod = _WHERE.get(name)
    if mod is None:
        raise AttributeError(f"module 'vm' has no attribute {name!r}")
    return getattr(importlib.import_module(mod), name)
