"""Kernel source trees by version: Debian's ``linux-source-<series>`` unpacked into the cache.

Why Debian's source package: it is the tree Debian's own kernels are built from (same version the
VM backend boots as a packaged kernel), it comes through the harness's private apt configuration
(:mod:`vm.apt`; the machine's apt config is never touched), and it downloads in seconds (153 MB
for 6.12) where a git clone of the kernel would take minutes.

Layout: ``<cache>/sources/<series>-<version>/linux-source-<series>/`` (the tree) and
``source.json`` beside it, written last (an entry without it is unfinished and is redone).
The tree is never built in place: :mod:`vm.kbuild` builds out of tree, so the tree stays clean.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from vm.apt import AptError, PrivateApt, max_version
from vm.kernels import KernelError
from vm.paths import atomic_dir, cache_root, progress

#: The series whose sources the harness is tested with (any other X.Y in the lists also works).
SOURCE_SERIES = ("5.10", "6.1", "6.12")


def sources_dir() -> Path:
    return cache_root() / "sources"


def _cached(series: str) -> Path | None:
    """The newest complete cached tree of ``series`` (for use without network)."""
    best: tuple[str, Path] | None = None
    d = sources_dir()
    if not d.is_dir():
        return None
    for sub in d.iterdir():
        meta = sub / "source.json"
        if sub.name.startswith(".") or not meta.is_file():
            continue
        m = json.loads(meta.read_text())
        if m.get("series") == series and (best is None or max_version([best[0], m["version"]]) == m["version"]):
            best = (m["version"], sub / m["tree"])
    return best[1] if best else None


def fetch_source(series: str, apt: PrivateApt | None = None) -> Path:
    """Download and unpack ``linux-source-<series>`` (newest version in the lists); return the tree.

    A no-op when that version is cached.  Without network, the newest cached tree is returned.
    """
    if not re.fullmatch(r"\d+\.\d+", series):
        raise KernelError(f"kernel source {series!r}: expected a series like {', '.join(SOURCE_SERIES)}")
    pkg = f"linux-source-{series}"
    apt = apt or PrivateApt()
    try:
        apt.ensure_lists()
        version = apt.candidate(pkg)
    except AptError as e:
        have = _cached(series)
        if have is not None:
            progress(f"{e}; using the cached {have}")
            return have
        raise KernelError(f"no {pkg} in the Debian package lists ({e})") from None
    final = sources_dir() / f"{series}-{version}".replace(":", "_")
    meta = final / "source.json"
    if meta.is_file():
        return final / json.loads(meta.read_text())["tree"]
    for tool in ("dpkg", "tar", "xz"):
        if shutil.which(tool) is None:
            raise KernelError(f"{tool} is needed to unpack kernel sources (apt-get install {tool})")
    if final.exists():  # an unfinished entry of an earlier run: redo it
        shutil.rmtree(final)
    with tempfile.TemporaryDirectory(prefix="oomh-src-", dir=cache_root()) as dl:
        progress(f"downloading {pkg} {version}")
        try:
            deb = apt.download(pkg, version, Path(dl))
        except AptError as e:
            raise KernelError(f"download of {pkg} {version} failed: {e}") from None
        unpack = Path(dl) / "x"
        p = subprocess.run(["dpkg", "-x", str(deb), str(unpack)], capture_output=True, text=True)
        if p.returncode != 0:
            raise KernelError(f"dpkg -x {deb.name} failed: {p.stderr.strip()[-200:]}")
        tarballs = sorted((unpack / "usr" / "src").glob("linux-source-*.tar.*"))
        if not tarballs:
            raise KernelError(f"{deb.name} holds no linux-source tarball")
        with atomic_dir(final) as tmp:
            progress(f"unpacking {tarballs[0].name}")
            p = subprocess.run(["tar", "-xf", str(tarballs[0]), "-C", str(tmp)], capture_output=True, text=True)
            if p.returncode != 0:
                raise KernelError(f"tar -xf {tarballs[0].name} failed: {p.stderr.strip()[-200:]}")
            trees = [d for d in tmp.iterdir() if (d / "Makefile").is_file()]
            if len(trees) != 1:
                raise KernelError(f"{tarballs[0].name} did not unpack to one kernel tree")
            info = {"series": series, "version": version, "package": pkg, "tree": trees[0].name}
            (tmp / "source.json").write_text(json.dumps(info, indent=1) + "\n")
    return final / trees[0].name
