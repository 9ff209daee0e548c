"""Building kernels from source (vm/kbuild.py): the loop, the checks and every bad input.

Fast tests use a *fake kernel tree*: a top Makefile with VERSION/PATCHLEVEL whose ``tinyconfig``,
``olddefconfig`` and ``vmlinux`` targets behave like the kernel's in what the harness relies on
(olddefconfig drops options the Kconfig files do not define or whose ``depends on`` is off;
``vmlinux`` is compiled by the real compiler and carries a PVH note and a GNU build-id).  The real
6.12 tree is exercised by the slow tests (tests/test_kbuild_vm.py).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from vm import kbuild
from vm.kbuild import (
    FRAGMENT,
    KernelBuildError,
    KernelConfigError,
    build_tree,
    check_config,
    last_good,
    parse_fragment,
)

ROOT = Path(__file__).resolve().parent.parent
needs_cc = pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("make") is None, reason="needs gcc and make")

MAIN_OK = textwrap.dedent("""\
    struct xen_note { int namesz, descsz, type; char name[4]; int desc; };
    __attribute__((section(".note.Xen"), aligned(4), used))
    static const struct xen_note pvh = {4, 4, 18, "Xen", 0};
    void _start(void) { for (;;) ; }
""")

OLDDEF = textwrap.dedent("""\
    import re, sys
    cfg, kconfig = sys.argv[1], sys.argv[2]
    deps, cur = {}, None
    for line in open(kconfig):
        m = re.match(r"config (\\w+)", line.strip())
        if m:
            cur = "CONFIG_" + m.group(1); deps[cur] = []
        elif cur and line.strip().startswith("depends on "):
            deps[cur].append("CONFIG_" + line.strip()[11:])
    vals = {}
    for line in open(cfg):
        m = re.match(r"(CONFIG_\\w+)=(.*)", line.strip())
        if m:
            vals[m.group(1)] = m.group(2)
        m = re.match(r"# (CONFIG_\\w+) is not set", line.strip())
        if m:
            vals.pop(m.group(1), None)
    out = {k: v for k, v in vals.items() if k in deps}
    changed = True
    while changed:
        changed = False
        for k in list(out):
            if any(out.get(d, "n") == "n" for d in deps[k]):
                del out[k]; changed = True
    open(cfg, "w").write("".join(f"{k}={v}\\n" for k, v in out.items()))
""")


def make_tree(root: Path, *, drop: tuple[str, ...] = (), depends: dict[str, str] | None = None,
              main: str = MAIN_OK) -> Path:
    """A fake kernel tree defining every option of the harness's fragment (minus ``drop``)."""
    t = root / "linux-fake"
    (t / "scripts" / "kconfig").mkdir(parents=True)
    syms = [o.name[len("CONFIG_"):] for o in parse_fragment(FRAGMENT) if o.name not in drop]
    depends = depends or {}
    (t / "Kconfig").write_text("".join(
        f"config {s}\n\tbool\n" + (f"\tdepends on {depends[s]}\n" if s in depends else "") for s in syms))
    (t / "olddef.py").write_text(OLDDEF)
    (t / "main.c").write_text(main)
    (t / "scripts" / "kconfig" / "merge_config.sh").write_text(
        '#!/bin/sh\n# -m -O DIR BASE FRAGMENTS...\nshift; shift; out=$1; shift; base=$1; shift\n'
        'cat "$base" "$@" > "$out/.config.new" && mv "$out/.config.new" "$out/.config"\n')
    (t / "Makefile").write_text(textwrap.dedent(f"""\
        VERSION = 9
        PATCHLEVEL = 99
        SUBLEVEL = 0
        tinyconfig:
        \tmkdir -p $(O) && printf 'CONFIG_64BIT=y\\n' > $(O)/.config
        olddefconfig:
        \t{sys.executable} $(CURDIR)/olddef.py $(O)/.config $(CURDIR)/Kconfig
        $(O)/main.o: $(CURDIR)/main.c
        \t@echo "  CC      main.o"
        \tgcc -c $(CURDIR)/main.c -o $(O)/main.o
        vmlinux: $(O)/main.o
        \t@echo "  LD      vmlinux"
        \tgcc -nostdlib -static -Wl,--build-id -o $(O)/vmlinux $(O)/main.o
        \tmkdir -p $(O)/include/config && echo 9.99.0-fake > $(O)/include/config/kernel.release
        .PHONY: tinyconfig olddefconfig vmlinux
    """))
    return t


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OOM_HARNESS_CACHE", str(tmp_path / "cache"))


def test_fragment_is_annotated_and_parses() -> None:
    opts = parse_fragment(FRAGMENT)
    names = {o.name for o in opts}
    for need in ("CONFIG_PVH", "CONFIG_MEMCG", "CONFIG_SWAP", "CONFIG_NUMA", "CONFIG_CPUSETS", "CONFIG_VIRTIO_CONSOLE"):
        assert need in names
    assert all(o.why for o in opts), [o.name for o in opts if not o.why]
    assert not next(o for o in opts if o.name == "CONFIG_MEMCG_SWAP").required  # 5.10 only


def test_check_config_names_the_missing_dependency(tmp_path: Path) -> None:
    t = make_tree(tmp_path, depends={"SWAP": "BLOCK"})
    opts = parse_fragment(FRAGMENT)
    cfg = {o.name: o.value for o in opts}
    cfg["CONFIG_BLOCK"] = "n"
    cfg["CONFIG_SWAP"] = "n"
    errors, _w = check_config(t, cfg, opts)
    swap = next(e for e in errors if e.startswith("CONFIG_SWAP"))
    assert "depends on CONFIG_BLOCK, which is off" in swap


@needs_cc
def test_build_then_incremental(tmp_path: Path) -> None:
    t = make_tree(tmp_path)
    lines: list[str] = []
    b = build_tree(t, out=lines.append)
    assert b.configured and b.kernel.release == "9.99.0-fake" and b.kernel.build_id
    assert b.kernel.image == b.build_dir / "out" / "vmlinux" and b.log.is_file()
    assert not (t / ".config").exists()  # out of tree
    assert any(ln.startswith("configuring") for ln in lines) and any(ln.startswith("built ") for ln in lines)
    assert len(lines) < 10  # a line per phase, not make's output
    assert last_good(t) == b.kernel
    b2 = build_tree(t, out=lines.append)
    assert not b2.configured and b2.steps == 1  # only the link ran again
    assert b2.kernel.build_id == b.kernel.build_id
    (t / "main.c").write_text(MAIN_OK + "int changed = 1;\n")
    b3 = build_tree(t, out=lines.append)
    assert b3.kernel.build_id != b.kernel.build_id and not b3.configured


@needs_cc
def test_user_fragment_merged_on_top_and_checked(tmp_path: Path) -> None:
    t = make_tree(tmp_path)
    frag = tmp_path / "extra.config"
    frag.write_text("# switch swap off for this run\n# CONFIG_SWAP is not set\n")
    b = build_tree(t, frag, out=lambda m: None)
    assert b.configured
    assert "CONFIG_SWAP=y" not in (b.build_dir / "out" / ".config").read_text()
    frag.write_text("CONFIG_NO_SUCH_OPTION=y\n")
    with pytest.raises(KernelConfigError, match="CONFIG_NO_SUCH_OPTION is not an option of this kernel"):
        build_tree(t, frag, out=lambda m: None)
    assert last_good(t) is None  # nothing a later run would take for a good build
    assert not (b.build_dir / "out" / ".config").exists()


@needs_cc
def test_required_option_off_fails_with_one_line(tmp_path: Path) -> None:
    t = make_tree(tmp_path, depends={"NUMA": "NO_SUCH_DEP"})
    with pytest.raises(KernelConfigError) as e:
        build_tree(t, out=lambda m: None)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("required kernel option missing: CONFIG_NUMA=y asked, not set")


@needs_cc
def test_compile_error_is_a_build_failure_and_leaves_no_good_build(tmp_path: Path) -> None:
    t = make_tree(tmp_path)
    build_tree(t, out=lambda m: None)
    assert last_good(t) is not None
    (t / "main.c").write_text(MAIN_OK + "int broken( { }\n")
    with pytest.raises(KernelBuildError) as e:
        build_tree(t, out=lambda m: None)
    assert "error:" in str(e.value) and "main.c" in str(e.value) and "\n" not in str(e.value)
    assert last_good(t) is None


def test_not_a_kernel_tree(tmp_path: Path) -> None:
    (tmp_path / "Makefile").write_text("all:\n\techo hi\n")
    with pytest.raises(KernelConfigError, match="is not a kernel source tree"):
        build_tree(tmp_path)
    with pytest.raises(KernelConfigError, match="is not a directory"):
        build_tree(tmp_path / "nope")


def test_in_tree_build_is_refused(tmp_path: Path) -> None:
    t = make_tree(tmp_path)
    (t / ".config").write_text("CONFIG_64BIT=y\n")
    with pytest.raises(KernelConfigError, match="make mrproper"):
        build_tree(t)


def test_missing_tools_say_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    t = make_tree(tmp_path)
    real = shutil.which
    monkeypatch.setattr(kbuild.shutil, "which", lambda n, *a, **k: None if n in ("flex", "bison") else real(n))
    with pytest.raises(KernelConfigError, match=r"needs flex, bison: apt-get install flex bison"):
        build_tree(t)
    monkeypatch.setattr(kbuild.shutil, "which", lambda n, *a, **k: None if n == "gcc" else real(n))
    with pytest.raises(KernelConfigError, match="build-essential"):
        build_tree(t)


# --- the command line: exit codes ---------------------------------------------------------------


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **env}, timeout=300)


@needs_cc
def test_cli_build_kernel_exit_codes(tmp_path: Path) -> None:
    env = {"OOM_HARNESS_CACHE": str(tmp_path / "cache")}
    t = make_tree(tmp_path)
    p = _cli("build-kernel", str(t), env=env)
    assert p.returncode == 0, p.stderr
    assert re.match(r"9\.99\.0-fake /\S+/vmlinux$", p.stdout.strip())
    assert "[kbuild] built 9.99.0-fake" in p.stderr
    p = _cli("build-kernel", str(tmp_path / "cache"), env=env)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "not a kernel source tree" in p.stderr
    (t / "main.c").write_text("int broken( { }\n")
    p = _cli("build-kernel", str(t), env=env)
    assert p.returncode == 125, p.stderr
    assert p.stderr.strip().splitlines()[-1].startswith("oom-harness: error: build of")


@needs_cc
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("qemu-system-x86_64") is None, reason="needs root and QEMU")
def test_cli_run_kernel_dir_exit_codes(tmp_path: Path) -> None:
    """git bisect run: 125 for a tree that does not build, 2 for bad input; nothing runs."""
    env = {"OOM_HARNESS_CACHE": str(tmp_path / "cache"), "OOM_HARNESS_RESULTS": str(tmp_path / "results")}
    t = make_tree(tmp_path, main="int broken( { }\n")
    p = _cli("run", "--kernel", str(t), "single-hog", env=env)
    assert p.returncode == 125, p.stderr
    frag = tmp_path / "x.config"
    frag.write_text("CONFIG_NOT_IN_THIS_KERNEL=y\n")
    p = _cli("run", "--kernel", str(tmp_path), "single-hog", env=env)
    assert p.returncode == 2 and "not a kernel source tree" in p.stderr
    p = _cli("run", "--kernel", "6.12", "--kconfig", str(frag), "single-hog", env=env)
    assert p.returncode == 2 and "--kconfig applies to a kernel built from source" in p.stderr


def test_compare_accepts_trees_and_refuses_other_dirs(tmp_path: Path) -> None:
    from harness.cli.compare import parse_kernels
    from harness.errors import HarnessError

    t = make_tree(tmp_path)
    assert parse_kernels(f"6.12,{t}") == ["6.12", str(t)]
    with pytest.raises(HarnessError, match="not a kernel source tree"):
        parse_kernels(f"6.12,{tmp_path}")
    other = tmp_path / "b"
    other.mkdir()
    t2 = make_tree(other)
    with pytest.raises(HarnessError, match="share the label 'linux-fake'"):
        parse_kernels(f"{t},{t2}")
