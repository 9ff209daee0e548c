"""The package's layers, checked from the code itself (no root needed).

* no import cycle between modules (module-level or inside functions);
* each layer imports only from itself and the layers below it (core < machine < backends,
  reporting < cli), and the core and the machine side import nothing outside the standard library;
* the payload shipped into guests and containers imports under ``python3 -I`` with only its own
  files present, i.e. it needs nothing host-only and nothing from PyPI;
* editing a reporting or CLI module does not change the guest image's or the Docker image's hash.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.machine.payload import SHIPPED, payload_files  # noqa: E402

#: Layer of each subpackage; a module may import from its own layer and the ones of lower rank.
RANK = {
    "harness.errors": 0, "harness.atomic": 0, "harness": 0,
    "harness.core": 1,
    "harness.machine": 2,
    "vm": 3,
    "harness.backends": 4,
    "harness.reporting": 4,
    "harness.cli": 5,
    "harness.pytest_plugin": 6,
    "harness.__main__": 6,
    "workloads": 0,
}  # fmt: skip
STDLIB = set(sys.stdlib_module_names)


def _modules() -> dict[str, Path]:
    out = {}
    for top in ("harness", "vm", "workloads"):
        for p in sorted((ROOT / top).rglob("*.py")):
            if "__pycache__" in p.parts or (p.parent.name == "guest" and top == "vm"):
                continue
            rel = p.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = p
    return out


MODULES = _modules()


def _optional(tree: ast.AST) -> set[int]:
    """ids of import nodes inside ``try: ... except ImportError:`` (optional: the code runs without them)."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
            isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError") for h in node.handlers
        ):
            out.update(id(n) for b in node.body for n in ast.walk(b) if isinstance(n, (ast.Import, ast.ImportFrom)))
    return out


def _imports(mod: str, path: Path, *, required_only: bool = False) -> set[str]:
    """Every module *mod* imports (at any depth of the file), resolved to a full dotted name."""
    tree = ast.parse(path.read_text())
    pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    found: set[str] = set()
    skip = _optional(tree) if required_only else set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = pkg.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for a in node.names:
                full = f"{base}.{a.name}"
                found.add(full if full in MODULES else base)
    return found


def _internal(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _graph() -> dict[str, set[str]]:
    g = {}
    for mod, path in MODULES.items():
        deps = {_internal(n) for n in _imports(mod, path)}
        g[mod] = {d for d in deps if d and d != mod}
    return g


def _layer(mod: str) -> tuple[str, int]:
    best = max((k for k in RANK if mod == k or mod.startswith(k + ".")), key=len)
    return best, RANK[best]


def test_no_import_cycles() -> None:
    g = _graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(n: str, stack: list[str]) -> None:
        state[n] = 1
        for d in sorted(g.get(n, ())):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d] if d in stack else [n, d])
            elif not state.get(d):
                visit(d, [*stack, d])
        state[n] = 2

    for n in sorted(g):
        if not state.get(n):
            visit(n, [n])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_layers_import_only_downwards() -> None:
    bad = []
    for mod, deps in _graph().items():
        name, rank = _layer(mod)
        for d in deps:
            dname, drank = _layer(d)
            if drank > rank or (drank == rank and dname != name and rank > 0):
                bad.append(f"{mod} ({name}) imports {d} ({dname})")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("layer", ["harness.core", "harness.machine"])
def test_core_and_machine_use_only_the_standard_library(layer: str) -> None:
    bad = []
    for mod, path in MODULES.items():
        if not mod.startswith(layer):
            continue
        for n in _imports(mod, path, required_only=True):
            top = n.split(".")[0]
            if top not in STDLIB and top != "harness":
                bad.append(f"{mod} imports {n}")
            if layer == "harness.core" and top == "harness" and not n.startswith("harness.core"):
                bad.append(f"{mod} imports {n}: the core imports nothing above it")
    assert not bad, "\n".join(bad)


def test_payload_imports_in_isolation(tmp_path: Path) -> None:
    """Every shipped module imports with ``python3 -I`` (no site-packages, no PYTHONPATH, no cwd)."""
    for rel, src in payload_files():
        dst = tmp_path / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    mods = sorted(
        ".".join(Path(rel).with_suffix("").parts).removesuffix(".__init__")
        for rel, _ in payload_files()
        if rel.endswith(".py")
    )
    script = f"import sys; sys.path.insert(0, {str(tmp_path)!r})\nimport importlib\n" + "".join(
        f"importlib.import_module({m!r})\n" for m in mods
    )
    py = shutil.which("python3") or sys.executable
    r = subprocess.run([py, "-I", "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]


def test_payload_is_core_machine_and_workloads_only() -> None:
    rels = {rel for rel, _ in payload_files()}
    assert any(r.startswith("harness/core/") for r in rels)
    assert any(r.startswith("harness/machine/catalogue/") for r in rels)
    assert "workloads/hog.py" in rels
    host_only = [r for r in rels if r.startswith(("harness/reporting", "harness/cli", "harness/backends", "vm/"))]
    assert not host_only, host_only
    assert set(SHIPPED) >= {"harness/core", "harness/machine", "workloads"}


def test_editing_reporting_or_cli_keeps_image_hashes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Guest initramfs and Docker image hashes depend on the payload only (plus their builders)."""
    from harness.backends.docker import image as docker_image
    from vm import image as vm_image

    versions = {"python3.11-minimal": "1"}
    srcs = [ROOT / s for s in vm_image.DEFAULT_SOURCES]
    vm_before = vm_image.input_hash(versions, srcs)
    docker_before = docker_image.image_tag()
    for victim in ("harness/reporting/report.py", "harness/cli/commands.py", "harness/backends/host.py"):
        path = ROOT / victim
        original = path.read_bytes()
        try:
            path.write_bytes(original + b"\n# edited by test_layers\n")
            assert vm_image.input_hash(versions, srcs) == vm_before, victim
            assert docker_image.image_tag() == docker_before, victim
        finally:
            path.write_bytes(original)
    # ...while editing the machine side does change them (the test can fail)
    path = ROOT / "harness/machine/engine.py"
    original = path.read_bytes()
    try:
        path.write_bytes(original + b"\n# edited by test_layers\n")
        assert vm_image.input_hash(versions, srcs) != vm_before
        assert docker_image.image_tag() != docker_before
    finally:
        path.write_bytes(original)
