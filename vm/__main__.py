"""Command line for humans: ``python -m vm kernels | fetch VER | image VER | shell VER -- CMD``.

Examples::

    python -m vm kernels                 # series, release, package version, cached?
    python -m vm fetch 6.12              # download + extract into the cache
    python -m vm shell 6.12 -- uname -r  # boot, run, print, power off
    python -m vm shell 6.1 --mem 512 --numa 2 --swap 256 -- cat /proc/swaps
"""

from __future__ import annotations

import argparse
import os
import sys

from vm.apt import AptError
from vm.kernels import KernelError, get_kernel, list_kernels
from vm.machine import GuestError, shell


def _kernel(args: argparse.Namespace):
    return get_kernel(args.version, getattr(args, "modules", None))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vm", description="Boot stock Debian kernels in QEMU.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("kernels", help="list available and cached kernels")
    k.add_argument("--refresh", action="store_true", help="run apt-get update on the private lists first")
    f = sub.add_parser("fetch", help="download a kernel into the cache")
    f.add_argument("version", help="series (5.10, 6.1, 6.12, 7.2), release, or path to a kernel image")
    i = sub.add_parser("image", help="build the guest initramfs for a kernel and print its path")
    i.add_argument("version")
    s = sub.add_parser("shell", help="boot, run one command (after --), print its output")
    s.add_argument("version")
    s.add_argument("--modules", help="modules folder for a kernel given by path")
    s.add_argument("--mem", type=int, default=512, help="guest memory in MB")
    s.add_argument("--smp", type=int, default=1)
    s.add_argument("--numa", type=int, default=1, choices=(1, 2))
    s.add_argument("--swap", type=int, default=0, help="swap disk size in MB (0: none)")
    s.add_argument("--append", default="", help="extra kernel command line")
    s.add_argument("--accel", default="auto", choices=("auto", "tcg", "kvm"))
    s.add_argument("--timeout", type=float, default=120.0, help="command timeout in seconds")
    argv = list(sys.argv[1:] if argv is None else argv)
    cmd: list[str] = []
    if "--" in argv:  # everything after -- is the guest command, options included
        cut = argv.index("--")
        argv, cmd = argv[:cut], argv[cut + 1 :]
    args = ap.parse_args(argv)
    try:
        if args.cmd == "kernels":
            print(f"{'series':<7} {'release':<34} {'version':<22} {'suite':<18} cached")
            for r in list_kernels(refresh=args.refresh):
                print(
                    f"{r.series:<7} {r.release:<34} {r.version or '-':<22} {r.suite or '-':<18} "
                    f"{'yes' if r.cached else 'no'}"
                )
            return 0
        if args.cmd == "fetch":
            kern = _kernel(args)
            print(f"{kern.release} {kern.image}")
            return 0
        if args.cmd == "image":
            from vm.image import build_initrd

            print(build_initrd(_kernel(args)))
            return 0
        if not cmd:
            cmd = ["sh", "-c", "uname -r; cat /proc/meminfo | head -3"]
        return shell(
            _kernel(args),
            cmd,
            args.timeout,
            mem_mb=args.mem,
            smp=args.smp,
            numa_nodes=args.numa,
            swap_mb=args.swap,
            cmdline_extra=args.append,
            accel=args.accel,
        )
    except (KernelError, AptError, GuestError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `python -m vm kernels | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
