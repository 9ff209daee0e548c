"""A private apt configuration for fetching Debian packages (kernels, guest userland).

Why private: the harness needs packages from several Debian releases at once (bullseye for 5.10,
bookworm, trixie, sid) and must not touch the machine's own ``/etc/apt``.  So it keeps its own
sources list, lists folder, archive cache and an empty dpkg status under the cache root, and passes
them to ``apt-get``/``apt-cache`` with ``-o Dir::...`` options.

Why the mirror is derived at run time: the repository must not hard-code a mirror host.  The
archive URIs (``.../debian`` and ``.../debian-security``) are read from the machine's own apt
sources, and only the suite names are changed.  A machine behind a caching proxy or a local mirror
therefore keeps using it.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from vm.paths import cache_root, progress

#: Suites the harness needs; the security suites live on the security archive.
DEBIAN_SUITES = ("bullseye", "bookworm", "bookworm-updates", "trixie", "trixie-updates", "sid")
SECURITY_SUITES = ("bullseye-security", "bookworm-security", "trixie-security")

#: Debian codenames, used to tell a Debian archive entry from third-party ones (cloud-sdk, nodesource).
_CODENAMES = {
    "buster",
    "bullseye",
    "bookworm",
    "trixie",
    "forky",
    "duke",
    "sid",
    "experimental",
    "oldoldstable",
    "oldstable",
    "stable",
    "testing",
    "unstable",
}


class AptError(RuntimeError):
    """An apt operation or the apt configuration discovery failed (one-line message)."""


@dataclass(frozen=True)
class SourceEntry:
    """One ``deb`` source as found in the machine's apt configuration."""

    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]
    options: dict[str, str] = field(default_factory=dict, compare=False, hash=False)


def parse_one_line(text: str) -> list[SourceEntry]:
    """Parse the classic one-line format (``deb [opts] URI suite comp...``); ``deb-src`` is skipped."""
    out: list[SourceEntry] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        opts: dict[str, str] = {}
        m = re.match(r"^(deb|deb-src)\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)\s*(.*)$", line)
        if not m or m.group(1) != "deb":
            continue
        for kv in (m.group(2) or "").split():
            if "=" in kv:
                k, v = kv.split("=", 1)
                opts[k.lower()] = v
        out.append(SourceEntry(m.group(3), (m.group(4),), tuple(m.group(5).split()), opts))
    return out


def parse_deb822(text: str) -> list[SourceEntry]:
    """Parse the deb822 ``.sources`` format (stanzas separated by blank lines; ``Enabled: no`` honoured)."""
    out: list[SourceEntry] = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for raw in stanza.splitlines():
            if raw.startswith("#") or not raw.strip():
                continue
            if raw[:1].isspace() and key:
                fields[key] += " " + raw.strip()
                continue
            if ":" not in raw:
                continue
            key, val = raw.split(":", 1)
            key = key.strip().lower()
            fields[key] = val.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() in ("no", "false", "0"):
            continue
        opts = {k: v for k, v in fields.items() if k not in ("types", "uris", "suites", "components")}
        suites = tuple(fields.get("suites", "").split())
        comps = tuple(fields.get("components", "").split())
        for uri in fields.get("uris", "").split():
            out.append(SourceEntry(uri, suites, comps, opts))
    return out


def read_system_sources(etc: Path = Path("/etc/apt")) -> list[SourceEntry]:
    """Read every enabled ``deb`` entry of the machine's apt configuration under ``etc``."""
    entries: list[SourceEntry] = []
    main = etc / "sources.list"
    if main.is_file():
        entries += parse_one_line(main.read_text(errors="replace"))
    parts = etc / "sources.list.d"
    if parts.is_dir():
        for p in sorted(parts.iterdir()):
            if p.suffix == ".list":
                entries += parse_one_line(p.read_text(errors="replace"))
            elif p.suffix == ".sources":
                entries += parse_deb822(p.read_text(errors="replace"))
    return entries


def _base_suite(suite: str) -> str:
    return suite.split("/")[0].split("-")[0]


def derive_archive_uris(entries: list[SourceEntry]) -> tuple[str, str]:
    """Return ``(debian_uri, security_uri)`` as used by this machine.

    An entry counts as the Debian archive when its suite is a Debian codename and it has ``main``.
    Security entries are those whose suite ends in ``-security`` (or the legacy ``codename/updates``).
    If the machine has no security entry, the security archive is assumed next to the main one
    (``.../debian`` -> ``.../debian-security``), which is how every Debian mirror lays them out.
    """
    debian = security = None
    for e in entries:
        if "main" not in e.components:
            continue
        for s in e.suites:
            if _base_suite(s) not in _CODENAMES:
                continue
            if s.endswith("-security") or s.endswith("/updates"):
                security = security or e.uri
            else:
                debian = debian or e.uri
    if debian is None and security is not None and security.rstrip("/").endswith("-security"):
        debian = security.rstrip("/")[: -len("-security")]
    if debian is None:
        raise AptError("no Debian archive found in the machine's apt sources (/etc/apt)")
    if security is None:
        security = debian.rstrip("/") + "-security"
    return debian.rstrip("/"), security.rstrip("/")


def render_sources(debian_uri: str, security_uri: str) -> str:
    """Render the private one-line sources list (suites from :data:`DEBIAN_SUITES`/``SECURITY_SUITES``)."""
    lines = [f"deb {debian_uri} {s} main" for s in DEBIAN_SUITES]
    lines += [f"deb {security_uri} {s} main" for s in SECURITY_SUITES]
    return "\n".join(lines) + "\n"


class PrivateApt:
    """apt-get/apt-cache bound to the harness's own sources, lists and archive folders."""

    def __init__(self, root: Path | None = None, etc: Path = Path("/etc/apt")) -> None:
        self.root = root or cache_root() / "apt"
        self.etc = etc
        self.sources = self.root / "sources.list"
        self.lists = self.root / "lists"
        self.archives = self.root / "archives"
        self.status = self.root / "status"

    def _ensure_layout(self) -> None:
        """Create the folders and (re)write the sources list from the machine's current mirror."""
        for d in (self.lists / "partial", self.archives / "partial"):
            d.mkdir(parents=True, exist_ok=True)
        if not self.status.exists():
            self.status.write_text("")
        text = render_sources(*derive_archive_uris(read_system_sources(self.etc)))
        if not self.sources.exists() or self.sources.read_text() != text:
            self.sources.write_text(text)

    def options(self) -> list[str]:
        """The ``-o`` options that make apt use only the private state.

        ``Check-Valid-Until=false``: mirrors and snapshots often serve Release files whose
        Valid-Until has passed; signatures are still checked.
        """
        o = {
            "Dir::Etc::SourceList": str(self.sources),
            "Dir::Etc::SourceParts": "/dev/null",
            "Dir::State::Lists": str(self.lists),
            "Dir::State::status": str(self.status),
            "Dir::Cache::Archives": str(self.archives),
            "Dir::Cache::pkgcache": str(self.root / "pkgcache.bin"),
            "Dir::Cache::srcpkgcache": "",  # a second 100 MB copy that buys nothing here
            "APT::Architecture": "amd64",
            "APT::Architectures": "amd64",
            "Acquire::Languages": "none",
            "Acquire::Check-Valid-Until": "false",
            "Acquire::PDiffs": "false",
        }
        args: list[str] = []
        for k, v in o.items():
            args += ["-o", f"{k}={v}"]
        return args

    def _run(self, tool: str, args: list[str], cwd: Path | None = None, quiet: bool = True) -> str:
        self._ensure_layout()
        cmd = [tool, *self.options(), *args]
        p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
        if p.returncode != 0:
            err = (p.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise AptError(f"{tool} {' '.join(args)} failed: {err}")
        return p.stdout

    def has_lists(self) -> bool:
        """True when an ``update`` has populated the private lists."""
        return self.lists.is_dir() and any(p.name.endswith("InRelease") for p in self.lists.iterdir())

    def update(self) -> None:
        """Download the package lists of every configured suite (minutes on a cold cache)."""
        progress("apt-get update (private lists: bullseye..sid)")
        self._run("apt-get", ["-q", "update"])

    def ensure_lists(self) -> None:
        """Run :meth:`update` once if the lists were never downloaded."""
        if not self.has_lists():
            self.update()

    def pkgnames(self, prefix: str) -> list[str]:
        """Names of all packages starting with ``prefix``."""
        return sorted(set(self._run("apt-cache", ["pkgnames", prefix]).split()))

    def madison(self, names: list[str]) -> list[tuple[str, str, str]]:
        """``(name, version, suite)`` rows for every available version of ``names``."""
        if not names:
            return []
        rows = []
        for line in self._run("apt-cache", ["madison", *names]).splitlines():
            parts = [p.strip() for p in line.split("|")]
            if len(parts) >= 3:
                suite = parts[2].split()[1].split("/")[0] if len(parts[2].split()) > 1 else ""
                rows.append((parts[0], parts[1], suite))
        return rows

    def candidate(self, name: str, suite: str | None = None) -> str:
        """Newest version of ``name`` (optionally only from ``suite``); raises :class:`AptError`."""
        versions = [v for n, v, s in self.madison([name]) if n == name and (suite is None or s == suite)]
        if not versions:
            where = f" in {suite}" if suite else ""
            raise AptError(f"package {name} not found{where} in the private apt lists")
        return max_version(versions)

    def depends(self, name: str, version: str) -> list[str]:
        """Package names in the ``Depends`` of ``name=version`` (alternatives and versions dropped)."""
        out: list[str] = []
        for line in self._run("apt-cache", ["show", f"{name}={version}"]).splitlines():
            if line.startswith("Depends:"):
                for dep in line.split(":", 1)[1].split(","):
                    out.append(dep.split("|")[0].split("(")[0].split(":")[0].strip())
                break
        return [d for d in out if d]

    def download(self, name: str, version: str, dest: Path) -> Path:
        """``apt-get download name=version`` into ``dest``; returns the .deb path (re-used if present)."""
        dest.mkdir(parents=True, exist_ok=True)
        for p in dest.glob(f"{name}_*.deb"):
            if _deb_version_from_filename(p) == version:
                return p
        self._run("apt-get", ["-q", "download", f"{name}={version}"], cwd=dest)
        for p in dest.glob(f"{name}_*.deb"):
            if _deb_version_from_filename(p) == version:
                return p
        raise AptError(f"apt-get download {name}={version} produced no .deb")


def _deb_version_from_filename(p: Path) -> str:
    """Version part of ``name_version_arch.deb`` (apt encodes ``:`` as ``%3a``)."""
    parts = p.name.split("_")
    return parts[1].replace("%3a", ":") if len(parts) >= 3 else ""


# --- Debian version comparison (Debian Policy 5.6.12), so no python-apt is needed ----------------


def _order(c: str) -> int:
    """dpkg's character weight: ``~`` sorts before everything, letters before other symbols."""
    if c == "~":
        return -1
    if not c or c.isdigit():
        return 0
    if c.isalpha():
        return ord(c)
    return ord(c) + 256


def _cmp_part(a: str, b: str) -> int:
    """dpkg's ``verrevcmp``: alternate non-digit runs (by weight) and digit runs (numerically)."""
    i = j = 0
    while i < len(a) or j < len(b):
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = _order(a[i] if i < len(a) else "")
            bc = _order(b[j] if j < len(b) else "")
            if ac != bc:
                return ac - bc
            i += 1
            j += 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        first_diff = 0
        while i < len(a) and a[i].isdigit() and j < len(b) and b[j].isdigit():
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        if i < len(a) and a[i].isdigit():
            return 1
        if j < len(b) and b[j].isdigit():
            return -1
        if first_diff:
            return first_diff
    return 0


def compare_versions(a: str, b: str) -> int:
    """Compare two Debian versions like ``dpkg --compare-versions`` (<0, 0, >0)."""

    def split(v: str) -> tuple[int, str, str]:
        epoch = 0
        if ":" in v:
            e, v = v.split(":", 1)
            epoch = int(e)
        up, _, rev = v.rpartition("-") if "-" in v else (v, "", "")
        return epoch, up, rev

    ea, ua, ra = split(a)
    eb, ub, rb = split(b)
    if ea != eb:
        return ea - eb
    return _cmp_part(ua, ub) or _cmp_part(ra, rb)


def max_version(versions: list[str]) -> str:
    """The newest of ``versions`` by Debian ordering."""
    best = versions[0]
    for v in versions[1:]:
        if compare_versions(v, best) > 0:
            best = v
    return best
