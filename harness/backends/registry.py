"""Which backends there are, and the one function that makes a runner for a backend name."""

from __future__ import annotations

from harness.errors import HarnessError

from .base import Runner

BACKENDS = ("host", "vm", "docker")


def make_runner(
    backend: str,
    kernel: str | None = None,
    *,
    accel: str = "auto",
    modules: str | None = None,
    cold_boot: bool = False,
    kconfig: str | None = None,
    label: str | None = None,
) -> Runner:
    """The runner for *backend*; *kernel* (a series, release, image or source tree), *accel*, *modules*,
    *cold_boot*, *kconfig* (extra fragment for a source tree) and *label* concern the VM backend.

    The backends are imported here, on demand, because each pulls in what only it needs (QEMU
    helpers, the Docker SDK) and ``oom-harness parse`` must not pay for them.
    """
    if backend == "host":
        from .host import HostRunner

        return HostRunner()
    if backend == "vm":
        from .vm import VmRunner

        return VmRunner(kernel or "6.12", accel=accel, modules=modules, cold_boot=cold_boot, kconfig=kconfig,
                        label=label)
    if backend == "docker":
        from .docker.runner import DockerRunner

        return DockerRunner()
    raise HarnessError(f"unknown backend {backend!r}: expected one of {', '.join(BACKENDS)}")
