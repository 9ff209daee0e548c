"""Build a guest kernel from a kernel source tree: the kernel developer's loop.

``build_tree(DIR)`` turns a kernel source tree into a bootable :class:`~vm.kernels.Kernel`:

* out of tree (``make O=``) into ``<cache>/kbuild/<tree name>-<hash of its path>/out``: one build
  directory per tree, so the tree stays clean and a second run on the same tree only rebuilds what
  changed (kbuild's own dependency tracking; ~3 s after touching ``mm/oom_kill.c``);
* configured from ``tinyconfig`` plus :data:`FRAGMENT` (annotated data: why each option is there),
  merged with the kernel's own ``scripts/kconfig/merge_config.sh``, then ``olddefconfig``; a
  user's extra fragment is merged on top.  The configuration step runs again only when a fragment
  changed (kbuild itself re-syncs the config when the tree's Kconfig files change);
* checked: every option of the fragments must be in the final ``.config`` with the value asked for;
  a miss names the option and the dependency that is off; a required one fails the build;
* logged: make's output goes to ``build.log`` beside ``out``; the terminal gets a line per phase
  and a count of compiled files.

Failures are one line (:class:`KernelConfigError`: bad input, missing tools, an option the kernel
does not know; :class:`KernelBuildError`: the tree does not compile).  The marker of a good build
(``kernel.json``) is removed before a build starts and written only after it succeeded, so nothing
a failed build leaves behind is ever taken for a good kernel.

The identity of a build is the GNU build-id of its vmlinux (``Kernel.build_id``): boot snapshots
are keyed by it, so a rebuilt kernel never resumes an older kernel's snapshot.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from harness.atomic import atomic_write
from vm import elf
from vm.kernels import Kernel, KernelError
from vm.paths import cache_root

#: The harness's fragment (kconfig data with a comment on every option).
FRAGMENT = Path(__file__).resolve().parent / "kconfig" / "oom-harness.config"
#: Bump when the way a build directory is configured changes (forces a re-configure).
FORMAT = 1
ARCH = "x86_64"
GOOD = "kernel.json"
#: Tools a tinyconfig x86_64 vmlinux needs, and the Debian package that has each.
TOOLS = {"make": "make", "gcc": "build-essential", "ld": "binutils", "flex": "flex", "bison": "bison",
         "bc": "bc", "perl": "perl"}
_OPTION_RE = re.compile(r"^(?:(CONFIG_\w+)=(.*)|# (CONFIG_\w+) is not set)\s*$")
_STEP_RE = re.compile(r"^\s+(CC|AS|AR|LD|HOSTCC|HOSTLD|OBJCOPY|GEN|SYNC|CHK|UPD|MKELF|RELOCS|VDSO\w*|CPP)\b")


class KernelConfigError(KernelError):
    """The tree cannot be configured or built here for a reason the user must fix (exit 2)."""


class KernelBuildError(KernelError):
    """The tree does not build (a compiler or linker error): ``git bisect`` should skip it (125)."""


@dataclass(frozen=True)
class Option:
    """One line of a fragment: ``CONFIG_NAME=value`` (``n`` for "is not set")."""

    name: str
    value: str
    required: bool
    why: str
    where: str


def parse_fragment(path: Path, *, user: bool = False) -> list[Option]:
    """The options of a fragment, each with the comment block above its group of lines as ``why``.
    In the harness's own fragment, ``oomh: optional`` in that block makes an option optional; every
    option of a user's fragment is required."""
    out: list[Option] = []
    comments: list[str] = []  # the comment block above a group of options (until a blank line)
    after_option = False
    try:
        text = path.read_text()
    except OSError as e:
        raise KernelConfigError(f"cannot read the kconfig fragment {path}: {e.strerror}") from None
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        m = _OPTION_RE.match(line)
        if m:
            name, value = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), "n")
            optional = any("oomh: optional" in c for c in comments) and not user
            why = " ".join(c for c in comments if "oomh:" not in c)
            out.append(Option(name, value.strip(), not optional, why, f"{path}:{n}"))
            after_option = True
        elif line.startswith("#"):
            if after_option:
                comments, after_option = [], False
            comments.append(line.lstrip("#").strip())
        elif not line:
            comments, after_option = [], False
        else:
            raise KernelConfigError(f"{path}:{n}: not a kconfig line: {line[:60]!r}")
    return out


def read_config(path: Path) -> dict[str, str]:
    """``{CONFIG_NAME: value}`` of a .config (``n`` for "is not set")."""
    out: dict[str, str] = {}
    for line in path.read_text(errors="replace").splitlines():
        m = _OPTION_RE.match(line.strip())
        if m:
            if m.group(1):
                out[m.group(1)] = m.group(2).strip()
            else:
                out[m.group(3)] = "n"
    return out


# --- why an option is off: a small reader of the tree's Kconfig files -------------------------------


def kconfig_symbols(tree: Path) -> dict[str, list[str]]:
    """Every symbol defined in the tree's Kconfig files, with its ``depends on`` expressions
    (including those of enclosing ``if`` blocks).  Enough to name a missing dependency; not a
    Kconfig evaluator (``menu ... depends on`` and ``select`` are not followed)."""
    syms: dict[str, list[str]] = {}
    for dirpath, dirnames, files in os.walk(tree):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d not in ("Documentation", "tools")]
        for f in files:
            if not f.startswith("Kconfig"):
                continue
            ifs: list[str] = []
            cur: str | None = None
            try:
                text = (Path(dirpath) / f).read_text(errors="replace")
            except OSError:
                continue
            for raw in text.splitlines():
                line = raw.split("#", 1)[0].strip()
                m = re.match(r"^(?:menu)?config\s+(\w+)$", line)
                if m:
                    cur = "CONFIG_" + m.group(1)
                    syms.setdefault(cur, []).extend(ifs)
                    continue
                if line.startswith("if "):
                    ifs.append(line[3:].strip())
                    cur = None
                elif line == "endif" and ifs:
                    ifs.pop()
                    cur = None
                elif line.startswith(("choice", "endchoice", "menu ", "endmenu", "source ", "comment ")):
                    cur = None
                elif cur and line.startswith("depends on "):
                    syms[cur].append(line[len("depends on "):].strip())
    return syms


def missing_dependencies(name: str, syms: dict[str, list[str]], config: dict[str, str]) -> list[str]:
    """Symbols that ``name`` depends on and that are off in ``config`` (``CONFIG_`` prefix kept)."""
    off = []
    for expr in syms.get(name, []):
        for tok in re.findall(r"(!?)\b([A-Z0-9_]+)\b", expr):
            neg, sym = tok
            full = "CONFIG_" + sym
            if neg or full not in syms:
                continue
            if config.get(full, "n") in ("n", "") and full not in off:
                off.append(full)
    return off


def check_config(tree: Path, config: dict[str, str], options: list[Option]) -> tuple[list[str], list[str]]:
    """``(errors, warnings)``: one line per fragment option not in ``config`` as asked for."""
    misses = [o for o in options if config.get(o.name, "n") != o.value]
    if not misses:
        return [], []
    syms = kconfig_symbols(tree)
    errors: list[str] = []
    warnings: list[str] = []
    for o in misses:
        have = config.get(o.name, "n")
        if o.name not in syms:
            msg = f"{o.name} is not an option of this kernel ({o.where})"
        else:
            deps = missing_dependencies(o.name, syms, config)
            need = f" (depends on {', '.join(deps)}, which is off)" if deps else ""
            msg = f"{o.name}={o.value} asked, {'not set' if have == 'n' else have} in .config{need} ({o.where})"
        (errors if o.required else warnings).append(msg)
    return errors, warnings


# --- the build --------------------------------------------------------------------------------------


def is_kernel_tree(path: Path) -> bool:
    """A directory with the kernel's top Makefile (VERSION/PATCHLEVEL), Kconfig and merge_config.sh."""
    mk = path / "Makefile"
    if not mk.is_file() or not (path / "Kconfig").is_file():
        return False
    head = mk.read_text(errors="replace")[:2000]
    return bool(re.search(r"^VERSION = \d+", head, re.M) and re.search(r"^PATCHLEVEL = \d+", head, re.M))


def tree_version(tree: Path) -> str:
    """``6.12`` from the top Makefile."""
    head = (tree / "Makefile").read_text(errors="replace")[:2000]
    v = re.search(r"^VERSION = (\d+)", head, re.M)
    p = re.search(r"^PATCHLEVEL = (\d+)", head, re.M)
    return f"{v.group(1)}.{p.group(1)}" if v and p else "?"


def missing_tools() -> list[str]:
    """Debian packages to install for what is missing (compiler, make, flex, bison, bc, libelf)."""
    pkgs: list[str] = []
    cc = os.environ.get("CC", "gcc").split()[0]
    for tool, pkg in TOOLS.items():
        if shutil.which(cc if tool == "gcc" else tool) is None and pkg not in pkgs:
            pkgs.append(pkg)
    if shutil.which(cc) is not None:
        # objtool (x86_64 always builds it) needs libelf's headers
        p = subprocess.run([cc, "-E", "-x", "c", "-"], input="#include <gelf.h>\n", capture_output=True, text=True)
        if p.returncode != 0:
            pkgs.append("libelf-dev")
    return pkgs


def build_dir_for(tree: Path) -> Path:
    """One build directory per tree (by its real path)."""
    h = hashlib.sha256(str(tree).encode()).hexdigest()[:12]
    safe = re.sub(r"[^\w.+-]", "_", tree.name)[:40]
    return cache_root() / "kbuild" / f"{safe}-{h}"


def build_id(vmlinux: Path) -> str | None:
    """The GNU build-id of an ELF (hex), which the kernel's link always records."""
    with open(vmlinux, "rb") as f:
        data = f.read()
    with contextlib.suppress(Exception):
        for name, ntype, desc in elf.notes(data):
            if name == b"GNU" and ntype == 3:
                return desc.hex()
    return hashlib.sha256(data).hexdigest()[:40]


@dataclass
class BuildInfo:
    """What a build did (printed by ``build-kernel`` and the benchmark)."""

    kernel: Kernel
    tree: Path
    build_dir: Path
    log: Path
    configured: bool
    config_s: float
    build_s: float
    steps: int
    warnings: list[str]


class _Progress:
    """A line per phase on stderr, a live count on a terminal."""

    def __init__(self, out: Callable[[str], None] | None) -> None:
        self.out = out or (lambda m: print(f"[kbuild] {m}", file=sys.stderr, flush=True))
        self.tty = out is None and sys.stderr.isatty()
        self.last = 0.0

    def phase(self, msg: str) -> None:
        if self.tty:
            sys.stderr.write("\r\x1b[K")
        self.out(msg)

    def count(self, what: str, n: int) -> None:
        """A live counter on a terminal; elsewhere (CI logs, pipes) a line a minute."""
        now = time.monotonic()
        if self.tty and now - self.last > 0.5:
            self.last = now
            sys.stderr.write(f"\r[kbuild] {what}: {n}\x1b[K")
            sys.stderr.flush()
        elif not self.tty:
            if not self.last:
                self.last = now
            elif now - self.last > 60:
                self.last = now
                self.out(f"{what}: {n} so far")


@contextlib.contextmanager
def _locked(d: Path) -> Iterator[None]:
    d.mkdir(parents=True, exist_ok=True)
    with open(d / "lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _make_args(tree: Path, out: Path, *targets: str, jobs: int = 2) -> list[str]:
    return ["make", "-C", str(tree), f"O={out}", f"ARCH={ARCH}", f"-j{jobs}", *targets]


#: Reproducible builds: the same sources give the same vmlinux and build-id, so a tree edited and
#: edited back (or a bisect step revisited) resumes its old boot snapshot instead of booting cold.
REPRODUCIBLE = {"KBUILD_BUILD_TIMESTAMP": "Thu Jan  1 00:00:00 UTC 1970", "KBUILD_BUILD_USER": "oomh",
                "KBUILD_BUILD_HOST": "oom-harness", "KBUILD_BUILD_VERSION": "1"}


def _run_logged(cmd: list[str], log: TextIO, prog: _Progress | None = None,
                what: str = "") -> tuple[int, int, list[str]]:
    """Run ``cmd`` with its output appended to ``log``; returns (rc, kbuild steps seen, error lines)."""
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    steps, errors = 0, list[str]()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         text=True, errors="replace", start_new_session=True, env={**os.environ, **REPRODUCIBLE})
    try:
        assert p.stdout is not None
        for line in p.stdout:
            log.write(line)
            if _STEP_RE.match(line):
                steps += 1
                if prog:
                    prog.count(what, steps)
            elif re.search(r"\berror\b|Error \d|\*\*\*", line) and len(errors) < 20:
                errors.append(line.strip())
        rc = p.wait()
    except BaseException:
        with contextlib.suppress(OSError):
            os.killpg(p.pid, 9)
        p.wait()
        raise
    log.flush()
    return rc, steps, errors


def _first_error(errors: list[str]) -> str:
    for pat in (r": (fatal )?error: ", r"undefined reference", r"\*\*\*", r"Error \d"):
        for e in errors:
            if re.search(pat, e):
                return e[:200]
    return errors[0][:200] if errors else "make failed"


def build_tree(tree: str | Path, kconfig: str | Path | None = None, *, jobs: int = 2, nice: int = 10,
               out: Callable[[str], None] | None = None) -> BuildInfo:
    """Configure (when needed) and build ``tree``'s vmlinux out of tree; return the bootable kernel."""
    t0 = time.monotonic()
    src = Path(tree).expanduser().resolve()
    if not src.is_dir():
        raise KernelConfigError(f"{src} is not a directory")
    if not is_kernel_tree(src):
        raise KernelConfigError(f"{src} is not a kernel source tree (no top Makefile with VERSION/PATCHLEVEL "
                                "and Kconfig)")
    if not (src / "scripts" / "kconfig" / "merge_config.sh").is_file():
        raise KernelConfigError(f"{src} has no scripts/kconfig/merge_config.sh (kernel too old?)")
    if (src / ".config").exists() or (src / "include" / "config").is_dir():
        raise KernelConfigError(f"{src} has been built in place (it has a .config); the harness builds out of "
                                "tree: run 'make mrproper' there first")
    tools = missing_tools()
    if tools:
        raise KernelConfigError(f"building a kernel needs {', '.join(tools)}: apt-get install {' '.join(tools)} "
                                "(or make setup)")
    user = Path(kconfig).expanduser().resolve() if kconfig else None
    if user is not None and not user.is_file():
        raise KernelConfigError(f"kconfig fragment {user} does not exist")
    # the user's fragment is merged on top: its value of an option replaces the harness's
    merged = {o.name: o for o in parse_fragment(FRAGMENT) + (parse_fragment(user, user=True) if user else [])}
    options = list(merged.values())
    prog = _Progress(out)
    bdir = build_dir_for(src)
    obj = bdir / "out"
    log_path = bdir / "build.log"
    nice_cmd = ["nice", "-n", str(nice)] if nice else []
    with _locked(bdir):
        (bdir / GOOD).unlink(missing_ok=True)
        inputs = hashlib.sha256(
            f"{FORMAT}|{ARCH}|{src}|".encode() + FRAGMENT.read_bytes() + b"|" + (user.read_bytes() if user else b"")
        ).hexdigest()
        stamp = bdir / "config.inputs"
        configure = not (obj / ".config").is_file() or not stamp.is_file() or stamp.read_text() != inputs
        with open(log_path, "w") as log:
            tc = time.monotonic()
            if configure:
                prog.phase(f"configuring {src.name} ({tree_version(src)}): tinyconfig + {FRAGMENT.name}"
                           + (f" + {user.name}" if user else ""))
                stamp.unlink(missing_ok=True)
                obj.mkdir(parents=True, exist_ok=True)
                frags = [str(FRAGMENT)] + ([str(user)] if user else [])
                for cmd in (
                    _make_args(src, obj, "tinyconfig", jobs=jobs),
                    ["sh", str(src / "scripts" / "kconfig" / "merge_config.sh"), "-m", "-O", str(obj),
                     str(obj / ".config"), *frags],
                    _make_args(src, obj, "olddefconfig", jobs=jobs),
                ):
                    rc, _n, errs = _run_logged(nice_cmd + cmd, log)
                    if rc != 0:
                        (obj / ".config").unlink(missing_ok=True)
                        raise KernelBuildError(f"configuring {src} failed: {_first_error(errs)} (log: {log_path})")
            config = read_config(obj / ".config")
            errors, warnings = check_config(src, config, options)
            for w in warnings if configure else []:  # said once, when the configuration is made
                prog.phase(f"note: optional {w}")
            if errors:
                (obj / ".config").unlink(missing_ok=True)
                more = f" (and {len(errors) - 1} more, see {log_path})" if len(errors) > 1 else ""
                log.write("\n".join(["config check failed:", *errors]) + "\n")
                raise KernelConfigError(f"required kernel option missing: {errors[0]}{more}")
            if configure:
                stamp.write_text(inputs)
            config_s = time.monotonic() - tc
            fresh = not (obj / "vmlinux").exists()
            prog.phase(f"building vmlinux (make -j{jobs}, nice {nice}; log {log_path})")
            tb = time.monotonic()
            rc, steps, errs = _run_logged(nice_cmd + _make_args(src, obj, "vmlinux", jobs=jobs), log, prog, "steps")
            build_s = time.monotonic() - tb
        if rc != 0:
            raise KernelBuildError(f"build of {src} failed: {_first_error(errs)} (log: {log_path})")
        errors, _w = check_config(src, read_config(obj / ".config"), options)  # kbuild may have re-synced it
        if errors:
            raise KernelConfigError(f"required kernel option missing after the build: {errors[0]}")
        vmlinux = obj / "vmlinux"
        head = vmlinux.read_bytes()
        if not elf.has_pvh_note(head):
            raise KernelConfigError(f"{vmlinux} has no PVH entry note (CONFIG_PVH off?)")
        del head
        release = (obj / "include" / "config" / "kernel.release").read_text().strip()
        bid = build_id(vmlinux)
        kernel = Kernel(release=release, image=vmlinux, modules=None, series=tree_version(src),
                        package=f"built from {src}", version=None, build_id=bid)
        meta = {"tree": str(src), "release": release, "build_id": bid, "series": kernel.series,
                "kconfig": str(user) if user else None, "built": time.time(), "steps": steps}
        if fresh:  # the full first build's figures (bench/bench_kbuild.py reports them)
            atomic_write(bdir / "first-build.json", json.dumps({"build_s": round(build_s, 1), "steps": steps,
                                                                "config_s": round(config_s, 1), "jobs": jobs}))
        atomic_write(bdir / GOOD, json.dumps(meta, indent=1) + "\n")
    total = time.monotonic() - t0
    prog.phase(f"built {release} in {total:.1f}s ({steps} steps{', configured' if configure else ''}; "
               f"build-id {bid[:12] if bid else '?'})")
    return BuildInfo(kernel, src, bdir, log_path, configure, config_s, build_s, steps, warnings)


def last_good(tree: str | Path) -> Kernel | None:
    """The kernel of the tree's last successful build, if its vmlinux is still the one built."""
    src = Path(tree).expanduser().resolve()
    bdir = build_dir_for(src)
    meta = bdir / GOOD
    if not meta.is_file():
        return None
    m = json.loads(meta.read_text())
    vmlinux = bdir / "out" / "vmlinux"
    if not vmlinux.is_file() or build_id(vmlinux) != m["build_id"]:
        return None
    return Kernel(release=m["release"], image=vmlinux, series=m.get("series"), package=f"built from {src}",
                  build_id=m["build_id"])
