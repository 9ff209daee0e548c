"""The harness image, built here without a registry: the host's Python and stdlib plus the machine-side payload.

``docker import`` of a rootfs tar, tagged with the hash of its inputs, so an unchanged checkout
reuses the image.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from typing import Any

from harness.errors import HarnessError
from harness.machine.payload import payload_files

from . import LABEL, progress

PROJECT_IN_IMAGE = "/opt/oom-harness"
HOG_IN_IMAGE = PROJECT_IN_IMAGE + "/workloads/hog.py"
PYTHON_IN_IMAGE = "/usr/bin/python3"
REPO = "oom-harness"

STDLIB_DROP = {
    "test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data", "venv",
    "distutils", "turtle.py", "pydoc.py", "sqlite3", "dbm", "curses", "site-packages", "dist-packages",
}  # fmt: skip
DYNLOAD_DROP = (
    "_test", "_xxtest", "_ctypes_test", "xxlimited", "_xxsubinterpreters", "ossaudiodev", "_ssl",
    "_hashlib", "_sqlite3", "_curses", "_dbm", "_gdbm", "readline", "_tkinter", "nis",
)  # fmt: skip


def _ldd(path: str) -> list[str]:
    """Absolute paths of the shared libraries *path* needs (and the loader)."""
    p = subprocess.run(["ldd", path], capture_output=True, text=True, check=False)
    out = []
    for line in p.stdout.splitlines():
        m = re.search(r"=>\s*(/\S+)", line) or re.match(r"\s*(/\S+)\s+\(", line)
        if m:
            out.append(m.group(1))
    return out


def _project_files() -> list[tuple[str, str]]:
    """The machine-side payload (core, machine side, workloads): the same files the VM guest gets."""
    return [(rel, str(p)) for rel, p in payload_files()]


def _image_inputs() -> tuple[str, str, str, list[tuple[str, str]]]:
    """(python binary, its stdlib dir, sleep binary, project files)."""
    py = os.path.realpath("/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable)
    ver = subprocess.run(
        [py, "-I", "-S", "-c", "import sys, sysconfig; print(sysconfig.get_paths()['stdlib'])"],
        capture_output=True,
        text=True,
        check=False,
    )
    stdlib = ver.stdout.strip()
    if ver.returncode != 0 or not os.path.isdir(stdlib):
        raise HarnessError(f"cannot find the stdlib of {py} for the image")
    sleep = shutil.which("sleep") or "/bin/sleep"
    return py, stdlib, os.path.realpath(sleep), _project_files()


def image_tag() -> str:
    """``oom-harness:<hash>`` of everything that goes into the image (incl. this builder)."""
    py, stdlib, sleep, files = _image_inputs()
    h = hashlib.sha256()
    for p in (py, sleep, os.path.abspath(__file__)):
        with open(p, "rb") as f:
            h.update(f.read())
    h.update(stdlib.encode())
    with contextlib.suppress(OSError):
        h.update(str(os.stat(stdlib).st_mtime_ns).encode())
    for rel, p in files:
        h.update(rel.encode() + b"\0")
        with open(p, "rb") as f:
            h.update(f.read())
    return f"{REPO}:{h.hexdigest()[:16]}"


def _write_rootfs_tar(out: str) -> None:
    py, stdlib, sleep, files = _image_inputs()
    pyname = os.path.basename(py)
    seen: set[str] = set()

    def norm(ti: tarfile.TarInfo) -> tarfile.TarInfo:
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = "root"
        return ti

    with tarfile.open(out, "w") as tar:

        def add_dir(arc: str, mode: int = 0o755) -> None:
            parts = arc.strip("/").split("/")
            for i in range(1, len(parts) + 1):
                a = "/".join(parts[:i])
                if a and a not in seen:
                    seen.add(a)
                    ti = tarfile.TarInfo(a)
                    ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, mode if i == len(parts) else 0o755, 0
                    tar.addfile(norm(ti))

        def add_file(src: str, arc: str) -> None:
            arc = arc.lstrip("/")
            if arc in seen:
                return
            add_dir(os.path.dirname(arc))
            seen.add(arc)
            ti = tar.gettarinfo(src, arc)
            if ti.issym() or ti.islnk():
                ti = tar.gettarinfo(os.path.realpath(src), arc)
            with open(os.path.realpath(src), "rb") as f:
                tar.addfile(norm(ti), f)

        def add_text(arc: str, text: str, mode: int = 0o644) -> None:
            add_dir(os.path.dirname(arc))
            data = text.encode()
            ti = tarfile.TarInfo(arc)
            ti.size, ti.mode, ti.mtime = len(data), mode, 0
            tar.addfile(norm(ti), io.BytesIO(data))
            seen.add(arc)

        def add_link(arc: str, target: str) -> None:
            add_dir(os.path.dirname(arc))
            ti = tarfile.TarInfo(arc)
            ti.type, ti.linkname, ti.mode = tarfile.SYMTYPE, target, 0o777
            tar.addfile(norm(ti))
            seen.add(arc)

        for d in ("proc", "sys", "dev", "etc", "root", "run"):
            add_dir(d)
        add_dir("tmp", 0o1777)
        add_text("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
        add_text("etc/group", "root:x:0:\nnogroup:x:65534:\n")
        # interpreter, sleep, and the libraries of both and of the extension modules kept
        add_file(py, f"usr/bin/{pyname}")
        if pyname != "python3":
            add_link("usr/bin/python3", pyname)
        add_file(sleep, "bin/sleep")
        add_link("usr/bin/sleep", "/bin/sleep")
        libs = set(_ldd(py)) | set(_ldd(sleep))
        for dirpath, dirnames, filenames in os.walk(stdlib):
            rel = os.path.relpath(dirpath, stdlib)
            top = rel.split(os.sep)[0]
            dirnames[:] = sorted(
                d for d in dirnames if not (rel == "." and d in STDLIB_DROP) and d not in ("test", "tests")
            )
            if rel == "." or top not in STDLIB_DROP:
                for f in sorted(filenames):
                    if rel == "." and f in STDLIB_DROP:
                        continue
                    if top == "lib-dynload" and f.startswith(DYNLOAD_DROP):
                        continue
                    src = os.path.join(dirpath, f)
                    if os.path.isfile(src):
                        add_file(src, os.path.join(stdlib, rel, f) if rel != "." else os.path.join(stdlib, f))
                        if f.endswith(".so"):
                            libs |= set(_ldd(src))
        for lib in sorted(libs):
            add_file(lib, lib)
            real = os.path.realpath(lib)
            if real != lib:
                add_file(real, real)
        for rel, p in files:
            add_file(p, os.path.join(PROJECT_IN_IMAGE, rel))


def build_image(client: Any) -> str:
    """The image tag, importing the image unless this engine has it already."""
    tag = image_tag()
    with contextlib.suppress(Exception):
        client.images.get(tag)
        return tag
    t0 = time.monotonic()
    progress(f"building image {tag}")
    with tempfile.TemporaryDirectory(prefix="oomh-image-") as work:
        tar = os.path.join(work, "rootfs.tar")
        _write_rootfs_tar(tar)
        repo, _, t = tag.partition(":")
        try:
            client.api.import_image_from_file(tar, repository=repo, tag=t, changes=[f"LABEL {LABEL}=1"])
            client.images.get(tag)
        except Exception as e:  # noqa: BLE001
            raise HarnessError(f"docker import of the harness image failed: {e}") from None
        size = os.path.getsize(tar)
    progress(f"image {tag}: {size >> 20} MB in {time.monotonic() - t0:.1f}s")
    with contextlib.suppress(Exception):  # older builds of ours
        for img in client.images.list(name=REPO):
            if tag not in img.tags:
                client.images.remove(img.id, force=True)
    return tag
