"""Guest kernels: stock Debian cloud kernels by series (``5.10``, ``6.1``, ``6.12``, ``7.2``) or a user's own.

Why Debian cloud kernels: they are what real systems run, small, and have virtio built in or as a
few modules.  Debian's generic flavour (``-amd64``, not ``-cloud-amd64``) resolves too, by its exact
release (``6.12.118+deb13-amd64``), never by series: it is built from the same source with options
the cloud flavour leaves out (``CONFIG_ZSWAP`` up to 6.12), and its virtio drivers are modules the
initramfs loads (:data:`vm.image.WANTED_MODULES`).

Why the uncompressed ``vmlinux``: QEMU boots it directly through its PVH entry note, skipping the
in-guest decompressor, which is slow under TCG (about 1.3 s for zstd on 6.12).

Layout of one cached kernel (``<cache>/kernels/<release>/``), written atomically:
``vmlinux`` (or ``bzImage`` if no PVH ELF could be made), ``config``, ``modules/`` (the package's
``lib/modules/<release>`` tree) and ``kernel.json`` (package, version, series).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from vm import elf
from vm.apt import AptError, PrivateApt, compare_versions
from vm.paths import atomic_dir, cache_root, progress

#: The series the harness is tested with; any other ``X.Y`` present in the lists also resolves.
KNOWN_SERIES = ("5.10", "6.1", "6.12", "7.2")

#: ``linux-image-6.12.118+deb13-cloud-amd64-unsigned``, ``linux-image-6.1.0-56-cloud-amd64``, and the generic
#: flavour ``linux-image-6.12.118+deb13-amd64`` (group 3 is ``cloud-`` or None)
_PKG_RE = re.compile(r"^linux-image-((\d+\.\d+)\.\d+(?:-\d+|\+[\w.]+)-(cloud-)?amd64)(-unsigned)?$")

#: Compressed-payload magics as the kernel's ``extract-vmlinux`` knows them, and the CLI for each.
_MAGICS: list[tuple[str, bytes, list[str]]] = [
    ("zstd", b"\x28\xb5\x2f\xfd", ["zstd", "-dcq"]),
    ("lz4", b"\x02\x21\x4c\x18", ["lz4", "-dcq"]),
    ("xz", b"\xfd7zXZ\x00", ["xz", "-dcq"]),
    ("gzip", b"\x1f\x8b\x08", ["gzip", "-dcq"]),
    ("bzip2", b"BZh", ["bzip2", "-dcq"]),
    ("lzma", b"\x5d\x00\x00\x00", ["xz", "--format=lzma", "-dcq"]),
]


class KernelError(RuntimeError):
    """A kernel could not be resolved, downloaded or prepared (one-line message)."""


@dataclass(frozen=True)
class Kernel:
    """A bootable guest kernel.

    ``image`` is what QEMU gets as ``-kernel`` (an ELF vmlinux with a PVH note, or a bzImage).
    ``modules`` is the ``lib/modules/<release>`` folder, or None if the kernel has no modules
    (then everything the guest needs must be built in).
    """

    release: str
    image: Path
    modules: Path | None = None
    series: str | None = None
    package: str | None = None
    version: str | None = None
    #: GNU build-id of a kernel built from source (:mod:`vm.kbuild`); part of the boot-snapshot key.
    build_id: str | None = None

    @property
    def key(self) -> str:
        """A short stable identifier (for per-kernel cache entries such as the modules initrd)."""
        h = hashlib.sha256(f"{self.release}|{self.image}|{self.version}".encode()).hexdigest()[:12]
        safe = re.sub(r"[^\w.+-]", "_", self.release)
        return f"{safe}-{h}"

    @property
    def pvh(self) -> bool:
        """True when ``image`` is an ELF vmlinux (PVH boot)."""
        with open(self.image, "rb") as f:
            return f.read(4) == elf.ELF_MAGIC


@dataclass(frozen=True)
class KernelInfo:
    """One row of :func:`list_kernels`."""

    series: str
    release: str
    package: str | None
    version: str | None
    suite: str | None
    cached: bool


def kernels_dir() -> Path:
    """Folder holding one subfolder per cached kernel release."""
    return cache_root() / "kernels"


# --- vmlinux extraction ----------------------------------------------------------------------------


def _bzimage_payload(data: bytes) -> bytes | None:
    """The compressed payload of a bzImage, located exactly through the boot-protocol header."""
    if len(data) < 0x250 or data[0x202:0x206] != b"HdrS":
        return None
    setup_sects = data[0x1F1] or 4
    payload_offset, payload_length = struct.unpack_from("<II", data, 0x248)
    start = (setup_sects + 1) * 512 + payload_offset
    if payload_length and start + payload_length <= len(data):
        return data[start : start + payload_length]
    return None


def _decompress(tool: list[str], blob: bytes) -> bytes:
    """Run a decompressor CLI on ``blob``; trailing bytes after the stream are tolerated."""
    if shutil.which(tool[0]) is None:
        raise KernelError(f"{tool[0]} is needed to extract this kernel (apt-get install {tool[0]})")
    p = subprocess.run(tool, input=blob, capture_output=True)
    return p.stdout


def extract_vmlinux(vmlinuz: bytes) -> tuple[bytes, str]:
    """Return ``(vmlinux, compression)`` from a bzImage, trying the exact payload first then a scan.

    The result is accepted only if it is an ELF; callers check the PVH note separately.
    """
    payload = _bzimage_payload(vmlinuz)
    candidates: list[tuple[str, bytes, list[str]]] = []
    if payload is not None:
        for name, magic, tool in _MAGICS:
            if payload.startswith(magic):
                candidates.append((name, payload, tool))
    for name, magic, tool in _MAGICS:
        pos = vmlinuz.find(magic)
        tries = 0
        while pos >= 0 and tries < 8:
            candidates.append((name, vmlinuz[pos:], tool))
            pos = vmlinuz.find(magic, pos + 1)
            tries += 1
    for name, blob, tool in candidates:
        out = _decompress(tool, blob)
        if elf.is_elf(out):
            return out, name
    raise KernelError("no ELF vmlinux found inside the kernel image (unknown compression?)")


def _release_from_image(data: bytes) -> str | None:
    """``uname -r`` of a kernel image: from the bzImage header's version string or 'Linux version'."""
    if len(data) > 0x210 and data[0x202:0x206] == b"HdrS":
        off = struct.unpack_from("<H", data, 0x20E)[0] + 0x200
        s = data[off : off + 200].split(b"\0")[0].decode(errors="replace")
        if s:
            return s.split()[0]
    m = re.search(rb"Linux version (\S+) \(", data)
    return m.group(1).decode(errors="replace") if m else None


# --- Debian packages -------------------------------------------------------------------------------


def _apt() -> PrivateApt:
    return PrivateApt()


def available(apt: PrivateApt | None = None) -> list[KernelInfo]:
    """Kernel packages listed in the private apt lists (newest package per release)."""
    apt = apt or _apt()
    try:
        apt.ensure_lists()
        names = [n for n in apt.pkgnames("linux-image-") if _PKG_RE.match(n)]
        rows = apt.madison(names)
    except AptError as e:
        raise KernelError(str(e)) from None
    best: dict[str, KernelInfo] = {}
    for name, version, suite in rows:
        m = _PKG_RE.match(name)
        if not m:
            continue
        release, series, unsigned = m.group(1), m.group(2), bool(m.group(4))
        cur = best.get(release)
        if cur is not None:
            c = compare_versions(version, cur.version or "0")
            # Same content either way; prefer -unsigned (no signature blob), then the newer upload.
            if c < 0 or (c == 0 and not unsigned) or (c == 0 and cur.package == name):
                continue
        best[release] = KernelInfo(series, release, name, version, suite, False)
    return list(best.values())


def _newest(infos: list[KernelInfo]) -> KernelInfo:
    out = infos[0]
    for i in infos[1:]:
        if compare_versions(i.version or "0", out.version or "0") > 0:
            out = i
    return out


def _cached(release: str) -> Kernel | None:
    d = kernels_dir() / release
    meta = d / "kernel.json"
    if not meta.is_file():
        return None
    m = json.loads(meta.read_text())
    mods = d / "modules"
    return Kernel(
        release=m["release"],
        image=d / m["image"],
        modules=mods if mods.is_dir() else None,
        series=m.get("series"),
        package=m.get("package"),
        version=m.get("version"),
    )


def cached_kernels() -> list[Kernel]:
    """Every complete kernel in the cache."""
    d = kernels_dir()
    out = []
    if d.is_dir():
        for sub in sorted(d.iterdir()):
            if not sub.name.startswith("."):
                k = _cached(sub.name)
                if k is not None:
                    out.append(k)
    return out


def list_kernels(refresh: bool = False) -> list[KernelInfo]:
    """Available (private apt lists) and cached kernels, newest first within each series.

    ``refresh`` re-runs ``apt-get update``.  Without network the cached kernels are still listed.
    """
    apt = _apt()
    infos: list[KernelInfo] = []
    try:
        if refresh:
            apt.update()
        infos = available(apt)
    except (KernelError, AptError) as e:
        progress(f"package lists unavailable ({e}); listing cached kernels only")
    cached = {k.release: k for k in cached_kernels()}
    rows = [KernelInfo(i.series, i.release, i.package, i.version, i.suite, i.release in cached) for i in infos]
    seen = {r.release for r in rows}
    for k in cached.values():
        if k.release not in seen:
            rows.append(KernelInfo(k.series or "?", k.release, k.package, k.version, None, True))

    def sort_key(r: KernelInfo) -> tuple[tuple[int, ...], str]:
        try:
            ser = tuple(int(x) for x in r.series.split("."))
        except ValueError:
            ser = (0,)
        return ser, r.version or ""

    rows.sort(key=sort_key)
    return rows


def is_cloud(release: str) -> bool:
    """A Debian cloud-flavour release: what a bare series (``6.12``) resolves to."""
    return release.endswith("-cloud-amd64")


def resolve(series: str) -> KernelInfo:
    """The newest package of a series, e.g. ``"6.12"`` -> ``linux-image-6.12.118+deb13-cloud-amd64-unsigned``."""
    if not re.fullmatch(r"\d+\.\d+", series):
        raise KernelError(f"unknown kernel version {series!r}: expected a series like {', '.join(KNOWN_SERIES)}")
    infos = [i for i in available() if i.series == series and is_cloud(i.release)]
    if not infos:
        known = ", ".join(KNOWN_SERIES)
        raise KernelError(f"no Debian cloud kernel for {series} in the package lists (known: {known})")
    return _newest(infos)


def fetch(info: KernelInfo) -> Kernel:
    """Download, unpack and extract one kernel package into the cache (no-op when cached)."""
    have = _cached(info.release)
    if have is not None and have.version == info.version:
        return have
    if shutil.which("dpkg") is None:
        raise KernelError("dpkg is needed to unpack kernel packages")
    apt = _apt()
    final = kernels_dir() / info.release
    if final.exists():
        shutil.rmtree(final)
    with tempfile.TemporaryDirectory(prefix="oomh-kdl-", dir=cache_root()) as dl:
        package, debs = _download_kernel_debs(apt, info, Path(dl))
        with atomic_dir(final) as tmp:
            unpack = Path(dl) / "x"
            for deb in debs:
                progress(f"unpacking {deb.name}")
                p = subprocess.run(["dpkg", "-x", str(deb), str(unpack)], capture_output=True, text=True)
                if p.returncode != 0:
                    raise KernelError(f"dpkg -x {deb.name} failed: {p.stderr.strip()[-200:]}")
            _install_tree(unpack, info.release, tmp)
            meta = {
                "release": info.release,
                "series": info.series,
                "package": package,
                "version": info.version,
                "image": _image_name(tmp),
            }
            (tmp / "kernel.json").write_text(json.dumps(meta, indent=1) + "\n")
    k = _cached(info.release)
    assert k is not None
    return k


def _download_kernel_debs(apt: PrivateApt, info: KernelInfo, dest: Path) -> tuple[str, list[Path]]:
    """Download the image package, falling back between the -unsigned and signed variants.

    Why the fallback: mirrors sometimes drop one variant from the pool while the lists still name
    it (bullseye-security's -unsigned 5.10 gives 404).  Why the dependency walk: since 7.x Debian
    splits the kernel into ``linux-binary-<release>`` (vmlinuz) and ``linux-modules-<release>``,
    and ``linux-image-<release>`` only depends on them.
    """
    version = info.version or ""
    names = [info.package or f"linux-image-{info.release}"]
    for alt in (f"linux-image-{info.release}-unsigned", f"linux-image-{info.release}"):
        if alt not in names:
            names.append(alt)
    errors = []
    for name in names:
        try:
            deps = apt.depends(name, version)
        except AptError:
            continue  # this variant is not in the lists
        progress(f"downloading {name} {version} ({info.suite})")
        try:
            debs = [apt.download(name, version, dest)]
            for dep in deps:
                if re.match(rf"^linux-(binary|modules|base)-{re.escape(info.release)}$", dep):
                    progress(f"downloading {dep} {version}")
                    debs.append(apt.download(dep, version, dest))
            return name, debs
        except AptError as e:
            errors.append(str(e))
    raise KernelError(f"download of kernel {info.release} failed: {(errors or ['not in the lists'])[-1]}")


def _image_name(d: Path) -> str:
    return "vmlinux" if (d / "vmlinux").exists() else "bzImage"


def _install_tree(unpack: Path, release: str, dest: Path) -> None:
    """Move the kernel image (as vmlinux or bzImage), its config and the modules into ``dest``.

    Debian up to 6.x ships ``boot/vmlinuz-<release>`` and ``lib/modules/<release>``; 7.x ships
    everything under ``usr/lib/modules/<release>`` (``vmlinuz``, ``config``, the modules).
    """
    moddirs = [b / release for b in (unpack / "usr" / "lib" / "modules", unpack / "lib" / "modules")]
    images = [unpack / "boot" / f"vmlinuz-{release}", *(m / "vmlinuz" for m in moddirs)]
    images += sorted((unpack / "boot").glob("vmlinuz-*")) if (unpack / "boot").is_dir() else []
    vmlinuz = next((p for p in images if p.is_file()), None)
    if vmlinuz is None:
        raise KernelError(f"no vmlinuz in the {release} packages")
    _write_bootable(vmlinuz.read_bytes(), dest, release)
    for cfg in (unpack / "boot" / f"config-{release}", *(m / "config" for m in moddirs)):
        if cfg.is_file():
            shutil.copy2(cfg, dest / "config")
            break
    for mods in moddirs:
        if mods.is_dir():
            (mods / "vmlinuz").unlink(missing_ok=True)
            shutil.move(str(mods), str(dest / "modules"))
            break


def _write_bootable(vmlinuz: bytes, dest: Path, release: str) -> None:
    """Write ``dest/vmlinux`` if a PVH-capable ELF can be extracted, else ``dest/bzImage``."""
    progress(f"extracting vmlinux for {release}")
    try:
        vmlinux, comp = extract_vmlinux(vmlinuz)
    except KernelError as e:
        progress(f"{e}; falling back to bzImage boot")
        (dest / "bzImage").write_bytes(vmlinuz)
        return
    if elf.has_pvh_note(vmlinux):
        (dest / "vmlinux").write_bytes(vmlinux)
        progress(f"vmlinux ({comp}, {len(vmlinux) >> 20} MB) has the PVH note")
    else:
        progress("vmlinux has no PVH entry note; using the bzImage (slower boot)")
        (dest / "bzImage").write_bytes(vmlinuz)


def local_kernel(path: str | Path, modules: str | Path | None = None) -> Kernel:
    """A user's own kernel: a PVH vmlinux or a bzImage, with an optional ``lib/modules/<release>`` dir.

    A bzImage is converted once to a PVH vmlinux (cached by content hash) when possible, because
    PVH boot skips the decompressor.
    """
    p = Path(path).expanduser().resolve()
    if not p.is_file():
        raise KernelError(f"kernel image {p} does not exist")
    mods = Path(modules).expanduser().resolve() if modules else None
    if mods is not None and not mods.is_dir():
        raise KernelError(f"modules folder {mods} does not exist")
    data = p.read_bytes()
    release = _release_from_image(data) or (mods.name if mods else p.name)
    if elf.is_elf(data):
        if not elf.has_pvh_note(data):
            raise KernelError(f"{p} is an ELF without the PVH entry note; pass the bzImage instead")
        return Kernel(release=release, image=p, modules=mods)
    if data[0x202:0x206] != b"HdrS":
        raise KernelError(f"{p} is neither an ELF vmlinux nor a bzImage")
    digest = hashlib.sha256(data).hexdigest()[:16]
    final = cache_root() / "local-kernels" / digest
    if not final.exists():
        with atomic_dir(final) as tmp:
            _write_bootable(data, tmp, release)
    img = final / _image_name(final)
    return Kernel(release=release, image=img if img.name == "vmlinux" else p, modules=mods)


def get_kernel(version: str, modules: str | Path | None = None) -> Kernel:
    """Resolve ``version`` to a ready :class:`Kernel`, downloading it on first use.

    ``version`` is a series (``"6.12"``), an exact cached or listed release
    (``"6.12.118+deb13-cloud-amd64"``), or a path to a kernel image (then ``modules`` may name its
    modules folder).  Without network, the newest cached kernel of the series is used.
    """
    if "/" in version or Path(version).is_file():
        return local_kernel(version, modules)
    cached = cached_kernels()
    for k in cached:
        if k.release == version:
            return k
    try:
        if re.fullmatch(r"\d+\.\d+", version):
            info = resolve(version)
        else:
            rows = [i for i in available() if i.release == version]
            if not rows:
                raise KernelError(f"unknown kernel version {version!r} (try one of {', '.join(KNOWN_SERIES)})")
            info = rows[0]
    except KernelError as e:
        fallback = [k for k in cached if k.series == version and is_cloud(k.release)]
        if fallback and "unknown kernel" not in str(e):
            progress(f"{e}; using the cached {fallback[-1].release}")
            return fallback[-1]
        raise
    return fetch(info)
