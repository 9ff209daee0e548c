"""The guest initramfs: busybox + Debian's Python 3.11 + psutil + the project's own packages.

Why built from Debian packages (bookworm, through the private apt configuration) and not from the
host: the result depends only on package versions and the project's files, so it is reproducible
and cached by a hash of exactly those inputs.  Why uncompressed: inflating ~45 MB under TCG costs
seconds.  Why ``.pyc`` precompiled (unchecked-hash): the guest's cold Python start dominates the
boot, and compiling in the guest would make it worse.

Two archives are concatenated into the file QEMU gets as ``-initrd`` (it accepts only one file,
but the kernel unpacks concatenated cpio archives in turn):

* the base archive (``<cache>/images/<hash>/base.cpio``), the same for every kernel;
* a small per-kernel archive with the modules the guest needs that the kernel does not have built
  in (``/modules/*.ko`` plus ``/modules/order``, the ``insmod`` order).

Guest layout: Debian's own paths (``/usr/bin/python3.11``, ``/usr/lib/python3.11``,
``/usr/lib/python3/dist-packages``); busybox applets in ``/bin``; the project under
``/opt/oom-harness/<path relative to the checkout>`` (e.g. ``/opt/oom-harness/harness``), which is
on ``PYTHONPATH`` for everything the agent runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from harness.atomic import atomic_file
from harness.machine.payload import SHIPPED, payload_files
from vm import elf
from vm.apt import AptError, PrivateApt, max_version
from vm.cpio import CpioWriter
from vm.kernels import Kernel
from vm.paths import atomic_dir, cache_root, progress

GUEST_DIR = Path(__file__).resolve().parent / "guest"
CHECKOUT = Path(__file__).resolve().parent.parent
GUEST_PROJECT = "/opt/oom-harness"
SUITE_PREFIX = "bookworm"

#: Guest userland packages (the python ones are what the feasibility study trimmed and tested).
PACKAGES = [
    "busybox-static",
    "python3.11-minimal",
    "libpython3.11-minimal",
    "libpython3.11-stdlib",
    "python3-psutil",
    # shared libraries of the above; only those actually needed (DT_NEEDED closure) are copied
    "libc6",
    "zlib1g",
    "libexpat1",
    "libffi8",
    "libbz2-1.0",
    "liblzma5",
    "libuuid1",
    "libcrypt1",
    "libzstd1",
]

#: Parts of the stdlib a test guest never uses (saves ~25 MB of initramfs, i.e. boot time).
STDLIB_DROP = {
    "test",
    "idlelib",
    "tkinter",
    "turtledemo",
    "ensurepip",
    "lib2to3",
    "pydoc_data",
    "venv",
    "config-3.11-x86_64-linux-gnu",
    "distutils",
    "turtle.py",
    "pydoc.py",
    "sqlite3",
    "dbm",
    "curses",
}

#: Test-only extension modules of the stdlib.
DYNLOAD_DROP = ("_test", "_xxtest", "_ctypes_test", "xxlimited", "_xxsubinterpreters", "ossaudiodev")

#: Modules the guest needs; those built into the kernel (modules.builtin) are skipped.
WANTED_MODULES = ["virtio_pci", "virtio_console", "virtio_blk"]

#: The machine-side payload (:data:`harness.machine.payload.SHIPPED`) plus the guest agent.
DEFAULT_SOURCES = (*SHIPPED, "vm/guest")
KEEP_IMAGES = 4


def images_dir() -> Path:
    return cache_root() / "images"


# --- package resolution ----------------------------------------------------------------------------


def resolve_packages(apt: PrivateApt) -> dict[str, str]:
    """Newest bookworm (incl. -security/-updates) version of every package in :data:`PACKAGES`."""
    apt.ensure_lists()
    rows = apt.madison(PACKAGES)
    out: dict[str, str] = {}
    for name in PACKAGES:
        versions = [v for n, v, s in rows if n == name and s.startswith(SUITE_PREFIX)]
        if not versions:
            raise AptError(f"package {name} not found in {SUITE_PREFIX}")
        out[name] = max_version(versions)
    return out


def _source_files(sources: list[Path]) -> list[tuple[str, Path]]:
    """``(path relative to the checkout, file)`` for every file of the sources (no caches).

    A source outside the checkout (a test's own tree) lands under its own name.
    """
    out: list[tuple[str, Path]] = []
    for src in sources:
        src = src.resolve()
        if not src.exists():
            continue
        try:
            out += payload_files([src.relative_to(CHECKOUT).as_posix()], root=CHECKOUT)
        except ValueError:
            out += payload_files([src.name], root=src.parent)
    return out


def input_hash(versions: dict[str, str], sources: list[Path]) -> str:
    """Hash of everything that goes into the base image, including this builder's own code."""
    h = hashlib.sha256()
    h.update(json.dumps(versions, sort_keys=True).encode())
    for mod in ("image.py", "cpio.py", "elf.py"):
        h.update((Path(__file__).parent / mod).read_bytes())
    for rel, p in _source_files(sources):
        h.update(rel.encode() + b"\0")
        h.update(p.read_bytes())
    h.update(b"\0STDLIB_DROP=" + ",".join(sorted(STDLIB_DROP)).encode())
    return h.hexdigest()[:20]


# --- base image ------------------------------------------------------------------------------------


def _find_lib(stage: Path, soname: str) -> Path | None:
    for d in ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64", "lib", "usr/lib"):
        p = stage / d / soname
        if p.exists():
            return p
    return None


def _lib_closure(stage: Path, roots: list[Path]) -> tuple[dict[str, Path], dict[Path, list[str]]]:
    """Libraries needed by ``roots`` (transitively) and, per root, the sonames that are missing."""
    libs: dict[str, Path] = {}
    missing: dict[Path, list[str]] = {}
    for root in roots:
        todo = list(elf.needed(root))
        seen: set[str] = set()
        miss = []
        while todo:
            so = todo.pop()
            if so in seen:
                continue
            seen.add(so)
            p = _find_lib(stage, so)
            if p is None:
                miss.append(so)
                continue
            libs.setdefault(so, p)
            todo += elf.needed(p.resolve())
        missing[root] = miss
    return libs, missing


def _compile(root: Path, dirs: list[str]) -> None:
    """Precompile ``.pyc`` (unchecked-hash) with the guest's own interpreter, run on the host.

    Using the guest's python (through its own ld.so) guarantees the bytecode magic matches; the
    host's python 3.11 is the fallback.
    """
    code = (
        "import compileall, sys, py_compile\n"
        "ok = True\n"
        "for d in sys.argv[2:]:\n"
        "    ok &= compileall.compile_dir(sys.argv[1] + d, ddir=d, quiet=2, workers=1,\n"
        "        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)\n"
        "sys.exit(0 if ok else 1)\n"
    )
    ldso = root / "lib64" / "ld-linux-x86-64.so.2"
    libpath = f"{root}/lib/x86_64-linux-gnu:{root}/usr/lib/x86_64-linux-gnu"
    guest_py = [str(ldso), "--library-path", libpath, str(root / "usr/bin/python3.11")]
    env = {"PYTHONHOME": str(root / "usr"), "PATH": "/usr/bin:/bin", "PYTHONHASHSEED": "0"}
    p = subprocess.run([*guest_py, "-S", "-c", code, str(root), *dirs], env=env, capture_output=True, text=True)
    if p.returncode == 0:
        return
    progress(f"guest python could not compile on the host ({p.stderr.strip()[-200:]}); trying host python3.11")
    host = shutil.which("python3.11")
    if host is None:
        raise RuntimeError("cannot precompile .pyc: no runnable python3.11")
    p = subprocess.run(
        [host, "-S", "-c", code, str(root), *dirs],
        capture_output=True,
        text=True,
        env={"PYTHONHASHSEED": "0", "PATH": "/usr/bin:/bin"},
    )
    if p.returncode != 0:
        raise RuntimeError(f"compileall failed: {p.stderr.strip()[-300:]}")


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_symlink():
        os.symlink(os.readlink(src), dst)
    else:
        shutil.copy2(src, dst)


def _assemble_root(stage: Path, root: Path, sources: list[Path]) -> None:
    """Copy the wanted parts of the unpacked packages and the project into ``root``."""
    # busybox and its applets
    (root / "bin").mkdir(parents=True)
    shutil.copy2(stage / "bin" / "busybox", root / "bin" / "busybox")
    applets = subprocess.run([str(stage / "bin" / "busybox"), "--list"], capture_output=True, text=True).stdout.split()
    for a in sorted(set(applets)):
        if a != "busybox":
            os.symlink("busybox", root / "bin" / a)
    for d in ("sbin", "usr/bin", "usr/sbin"):
        (root / d).mkdir(parents=True, exist_ok=True)
    # python
    shutil.copy2(stage / "usr/bin/python3.11", root / "usr/bin/python3.11")
    os.symlink("python3.11", root / "usr/bin/python3")
    libdir = stage / "usr/lib/python3.11"
    for p in sorted(libdir.rglob("*")):
        rel = p.relative_to(libdir)
        if rel.parts[0] in STDLIB_DROP or "__pycache__" in rel.parts or p.is_dir() and not p.is_symlink():
            continue
        if rel.parts[0] == "lib-dynload" and rel.name.startswith(DYNLOAD_DROP):
            continue
        if rel.parts[-1] in ("tests", "test") or (len(rel.parts) > 1 and rel.parts[-2] in ("tests", "test")):
            continue
        _copy(p, root / "usr/lib/python3.11" / rel)
    psutil = stage / "usr/lib/python3/dist-packages"
    for p in sorted(psutil.rglob("*")):
        rel = p.relative_to(psutil)
        if rel.parts[0].startswith("psutil") and not p.is_dir() and "tests" not in rel.parts:
            _copy(p, root / "usr/lib/python3/dist-packages" / rel)
    # shared libraries: closure of the interpreter and the extension modules we keep
    exts = sorted(root.rglob("*.so"))
    libs, missing = _lib_closure(stage, [root / "usr/bin/python3.11", *exts])
    for ext, miss in missing.items():
        if miss and ext.suffix == ".so":
            ext.unlink()  # e.g. _ssl, readline: their libraries are not shipped
    for so, p in sorted(libs.items()):
        dst = root / "lib/x86_64-linux-gnu" / so
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(p.resolve(), dst)
    ld = _find_lib(stage, "ld-linux-x86-64.so.2")
    if ld is None:
        raise RuntimeError("ld-linux-x86-64.so.2 not found in libc6")
    shutil.copy2(ld.resolve(), root / "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
    (root / "lib64").mkdir()
    os.symlink("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", root / "lib64/ld-linux-x86-64.so.2")
    # system files
    for d in ("proc", "sys", "dev", "run", "tmp", "root", "etc", "mnt", "modules"):
        (root / d).mkdir(exist_ok=True)
    os.chmod(root / "tmp", 0o1777)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
    (root / "etc/group").write_text("root:x:0:\nnogroup:x:65534:\n")
    (root / "etc/hostname").write_text("oomh-guest\n")
    shutil.copy2(GUEST_DIR / "init", root / "init")
    os.chmod(root / "init", 0o755)
    # the project
    for relpath, src in _source_files(sources):
        _copy(src, root / GUEST_PROJECT.lstrip("/") / relpath)
    _compile(root, ["/usr/lib/python3.11", "/usr/lib/python3/dist-packages", GUEST_PROJECT])


def build_base(sources: list[Path] | None = None, apt: PrivateApt | None = None) -> Path:
    """Build (or reuse) the base initramfs; returns the path of ``base.cpio``."""
    apt = apt or PrivateApt()
    srcs = [CHECKOUT / s for s in DEFAULT_SOURCES] if sources is None else [Path(s) for s in sources]
    if not any(s.resolve() == GUEST_DIR for s in srcs):
        srcs.append(GUEST_DIR)  # the agent must always be there
    versions = resolve_packages(apt)
    digest = input_hash(versions, srcs)
    final = images_dir() / digest
    if (final / "base.cpio").is_file():
        return final / "base.cpio"
    progress(f"building guest initramfs {digest}")
    debs_dir = apt.root / "debs"
    with atomic_dir(final) as tmp, tempfile.TemporaryDirectory(prefix="oomh-img-", dir=cache_root()) as work:
        stage, root = Path(work) / "stage", Path(work) / "root"
        for name, ver in versions.items():
            deb = apt.download(name, ver, debs_dir)
            p = subprocess.run(["dpkg", "-x", str(deb), str(stage)], capture_output=True, text=True)
            if p.returncode != 0:
                raise RuntimeError(f"dpkg -x {deb.name}: {p.stderr.strip()[-200:]}")
        _assemble_root(stage, root, srcs)
        with open(tmp / "base.cpio", "wb") as f:
            w = CpioWriter(f)
            w.add_dir("dev")
            w.add_chardev("dev/console", 5, 1)
            w.add_chardev("dev/null", 1, 3, 0o666)
            w.add_tree(root)
            w.close()
        (tmp / "inputs.json").write_text(
            json.dumps({"packages": versions, "sources": [str(s) for s in srcs]}, indent=1) + "\n"
        )
        size = (tmp / "base.cpio").stat().st_size
        progress(f"initramfs {digest}: {size >> 20} MB")
    prune_images(keep=KEEP_IMAGES)
    return final / "base.cpio"


def prune_images(keep: int) -> None:
    """Delete all but the ``keep`` most recently built images (each is ~35 MB plus one initrd per kernel).

    Every change to the project's sources makes a new image, so without pruning the cache grows
    with each edit.  A running QEMU is unaffected: it has read its initrd at start.
    """
    d = images_dir()
    dirs = [p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")] if d.is_dir() else []
    dirs.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    for old in dirs[keep:]:
        shutil.rmtree(old, ignore_errors=True)


# --- per-kernel modules ----------------------------------------------------------------------------


def _modname(p: Path) -> str:
    return re.sub(r"\.ko(\.(xz|zst|gz))?$", "", p.name).replace("-", "_")


def _read_module(p: Path) -> bytes:
    """A module's ELF bytes; compressed modules are decompressed on the host (busybox insmod can't)."""
    if p.name.endswith(".ko"):
        return p.read_bytes()
    tool = {".xz": ["xz", "-dc"], ".zst": ["zstd", "-dcq"], ".gz": ["gzip", "-dc"]}[p.suffix]
    return subprocess.run([*tool, str(p)], capture_output=True, check=True).stdout


def needed_modules(modules: Path, wanted: list[str] = WANTED_MODULES) -> list[tuple[str, bytes]]:
    """``(name, ko bytes)`` for ``wanted`` modules and their dependencies, in load order."""
    builtin = set()
    bfile = modules / "modules.builtin"
    if bfile.is_file():
        builtin = {_modname(Path(line.strip())) for line in bfile.read_text().splitlines() if line.strip()}
    index = {_modname(p): p for p in (modules / "kernel").rglob("*.ko*")} if (modules / "kernel").is_dir() else {}
    order: list[tuple[str, bytes]] = []
    done: set[str] = set()

    def visit(name: str, stack: tuple[str, ...]) -> None:
        if name in done or name in builtin or name in stack:
            return
        p = index.get(name)
        if p is None:
            return  # neither built in nor shipped: the guest will say what is missing
        data = _read_module(p)
        deps = [d.replace("-", "_") for d in elf.modinfo(data).get("depends", "").split(",") if d]
        for d in deps:
            visit(d, (*stack, name))
        done.add(name)
        order.append((name, data))

    for w in wanted:
        visit(w, ())
    return order


def build_modules_cpio(kernel: Kernel) -> Path:
    """The per-kernel archive with ``/modules/<name>.ko`` and ``/modules/order`` (cached)."""
    wanted = hashlib.sha256(",".join(WANTED_MODULES).encode()).hexdigest()[:8]
    final = cache_root() / "kernel-initrd" / f"{kernel.key}-{wanted}.cpio"
    if final.is_file():
        return final
    mods = needed_modules(kernel.modules) if kernel.modules else []
    with atomic_file(final) as tmp, open(tmp, "wb") as f:
        w = CpioWriter(f)
        w.add_dir("modules")
        for name, data in mods:
            w.add_file(f"modules/{name}.ko", data)
        w.add_file("modules/order", ("\n".join(n for n, _ in mods) + "\n").encode() if mods else b"")
        w.close()
    return final


def build_initrd(kernel: Kernel, sources: list[Path] | None = None) -> Path:
    """The complete ``-initrd`` file for ``kernel``: base archive + modules archive, concatenated.

    Cached next to the base image and rebuilt whenever either part changes.
    """
    base = build_base(sources)
    mods = build_modules_cpio(kernel)
    final = base.parent / f"initrd-{kernel.key}.cpio"
    if final.is_file() and final.stat().st_mtime >= max(base.stat().st_mtime, mods.stat().st_mtime):
        return final
    with atomic_file(final) as tmp, open(tmp, "wb") as out:
        for part in (base, mods):
            with open(part, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 20)
    return final


def minimal_initrd(marker: str = "@@BARE@@") -> Path:
    """A busybox-only initramfs whose /init prints ``marker`` and powers off (bench and KVM probe)."""
    apt = PrivateApt()
    versions = resolve_packages(apt)
    ver = versions["busybox-static"]
    digest = hashlib.sha256(f"{ver}|{marker}|v1".encode()).hexdigest()[:16]
    final = images_dir() / f"bare-{digest}.cpio"
    if final.is_file():
        return final
    deb = apt.download("busybox-static", ver, apt.root / "debs")
    with tempfile.TemporaryDirectory(prefix="oomh-bare-", dir=cache_root()) as work:
        subprocess.run(["dpkg", "-x", str(deb), work], check=True, capture_output=True)
        init = (
            "#!/bin/busybox sh\n/bin/busybox mount -t proc proc /proc\n"
            f'read -r up _ < /proc/uptime\necho "{marker} $up"\n/bin/busybox poweroff -f\n'
        )
        with atomic_file(final) as tmp, open(tmp, "wb") as f:
            w = CpioWriter(f)
            for d in ("bin", "dev", "proc"):
                w.add_dir(d)
            w.add_chardev("dev/console", 5, 1)
            w.add_path("bin/busybox", Path(work) / "bin" / "busybox", 0o755)
            w.add_symlink("bin/sh", "busybox")
            w.add_file("init", init.encode(), 0o755)
            w.close()
    return final
