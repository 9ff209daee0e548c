"""Just enough ELF64 reading for the VM layer, so no binutils are needed on the host.

Used to: check that an extracted ``vmlinux`` is an ELF and carries the PVH entry note (QEMU's
direct PVH boot needs ``XEN_ELFNOTE_PHYS32_ENTRY``); list ``DT_NEEDED`` of guest binaries to pick
shared libraries; and read ``.modinfo`` of kernel modules to order ``insmod`` by dependencies.
"""

from __future__ import annotations

import struct
from pathlib import Path

ELF_MAGIC = b"\x7fELF"
PT_NOTE = 4
PT_DYNAMIC = 2
PT_LOAD = 1
DT_NEEDED = 1
DT_STRTAB = 5
XEN_ELFNOTE_PHYS32_ENTRY = 18


class ElfError(ValueError):
    """The data is not an ELF64 little-endian file this module understands."""


def is_elf(data: bytes) -> bool:
    """True for an ELF64 little-endian image."""
    return data[:4] == ELF_MAGIC and len(data) > 64 and data[4] == 2 and data[5] == 1


def _header(data: bytes) -> tuple[int, int, int, int, int, int]:
    if not is_elf(data):
        raise ElfError("not an ELF64 little-endian file")
    (e_phoff, e_shoff) = struct.unpack_from("<QQ", data, 0x20)
    (e_phentsize, e_phnum, e_shentsize, e_shnum) = struct.unpack_from("<HHHH", data, 0x36)
    return e_phoff, e_phentsize, e_phnum, e_shoff, e_shentsize, e_shnum


def _phdrs(data: bytes) -> list[tuple[int, int, int, int, int]]:
    """``(type, offset, vaddr, filesz, memsz)`` of every program header."""
    phoff, phentsize, phnum, *_ = _header(data)
    out = []
    for i in range(phnum):
        p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz, p_memsz = struct.unpack_from(
            "<IIQQQQQ", data, phoff + i * phentsize
        )
        out.append((p_type, p_offset, p_vaddr, p_filesz, p_memsz))
    return out


def notes(data: bytes) -> list[tuple[bytes, int, bytes]]:
    """``(name, type, desc)`` of every note in the PT_NOTE segments."""
    out = []
    for p_type, off, _va, size, _ms in _phdrs(data):
        if p_type != PT_NOTE:
            continue
        pos, end = off, off + size
        while pos + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", data, pos)
            pos += 12
            name = data[pos : pos + namesz].rstrip(b"\0")
            pos += (namesz + 3) & ~3
            desc = data[pos : pos + descsz]
            pos += (descsz + 3) & ~3
            out.append((name, ntype, desc))
    return out


def has_pvh_note(data: bytes) -> bool:
    """True if the ELF has the Xen PVH entry note that QEMU's ``-kernel`` PVH boot needs."""
    try:
        return any(n == b"Xen" and t == XEN_ELFNOTE_PHYS32_ENTRY for n, t, _ in notes(data))
    except (ElfError, struct.error):
        return False


def _vaddr_to_offset(data: bytes, vaddr: int) -> int:
    for p_type, off, va, filesz, _ms in _phdrs(data):
        if p_type == PT_LOAD and va <= vaddr < va + filesz:
            return off + (vaddr - va)
    raise ElfError(f"address {vaddr:#x} not in a loaded segment")


def needed(path: Path) -> list[str]:
    """``DT_NEEDED`` entries (shared-library sonames) of an ELF file; [] for static binaries."""
    data = path.read_bytes()
    dyn = [(off, size) for t, off, _va, size, _ms in _phdrs(data) if t == PT_DYNAMIC]
    if not dyn:
        return []
    off, size = dyn[0]
    entries = []
    strtab = None
    for i in range(0, size, 16):
        tag, val = struct.unpack_from("<qQ", data, off + i)
        if tag == 0:
            break
        if tag == DT_NEEDED:
            entries.append(val)
        elif tag == DT_STRTAB:
            strtab = val
    if strtab is None:
        return []
    base = _vaddr_to_offset(data, strtab)
    return [data[base + e : data.index(b"\0", base + e)].decode() for e in entries]


def section(data: bytes, name: str) -> bytes | None:
    """Contents of the section called ``name`` (used for ``.modinfo`` of ``.ko`` files)."""
    _po, _pe, _pn, shoff, shentsize, shnum = _header(data)
    if not shoff:
        return None
    shstrndx = struct.unpack_from("<H", data, 0x3E)[0]
    secs = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    str_off = secs[shstrndx][4]
    for s in secs:
        nm = data[str_off + s[0] : data.index(b"\0", str_off + s[0])].decode()
        if nm == name:
            return data[s[4] : s[4] + s[5]]
    return None


def modinfo(data: bytes) -> dict[str, str]:
    """The ``key=value`` pairs of a kernel module's ``.modinfo`` (last value wins)."""
    raw = section(data, ".modinfo") or b""
    out: dict[str, str] = {}
    for item in raw.split(b"\0"):
        if b"=" in item:
            k, v = item.split(b"=", 1)
            out[k.decode(errors="replace")] = v.decode(errors="replace")
    return out
