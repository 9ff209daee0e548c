"""Unit tests of the VM layer that need neither QEMU nor network: apt config, versions, cpio, ELF."""

from __future__ import annotations

import gzip
import io
import shutil
import subprocess
from pathlib import Path

import pytest

from vm import apt, cpio, elf, kernels
from vm.image import input_hash

ONE_LINE = """
# comment
deb http://mirror.example/debian bookworm main contrib
deb [signed-by=/k.gpg arch=amd64] http://mirror.example/debian-security bookworm-security main
deb-src http://mirror.example/debian bookworm main
deb https://packages.cloud.example/apt cloud-sdk-bookworm main
"""

DEB822 = """Types: deb
# http://snapshot.example/archive/debian/20250520T000000Z
URIs: http://proxy.local:3142/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://disabled.example/debian
Suites: trixie
Components: main
Enabled: no

Types: deb
URIs: https://deb.nodesource.example/node_20.x
Suites: nodistro
Components: main
"""


def test_parse_one_line_skips_deb_src_and_reads_options():
    e = apt.parse_one_line(ONE_LINE)
    assert [x.uri for x in e] == [
        "http://mirror.example/debian",
        "http://mirror.example/debian-security",
        "https://packages.cloud.example/apt",
    ]
    assert e[1].options["signed-by"] == "/k.gpg"
    assert e[0].components == ("main", "contrib")


def test_parse_deb822_honours_enabled_and_comments():
    e = apt.parse_deb822(DEB822)
    assert [x.uri for x in e] == ["http://proxy.local:3142/debian", "https://deb.nodesource.example/node_20.x"]
    assert e[0].suites == ("bookworm", "bookworm-updates")


def test_derive_uris_one_line():
    assert apt.derive_archive_uris(apt.parse_one_line(ONE_LINE)) == (
        "http://mirror.example/debian",
        "http://mirror.example/debian-security",
    )


def test_derive_uris_ignores_third_party_and_guesses_security():
    deb, sec = apt.derive_archive_uris(apt.parse_deb822(DEB822))
    assert deb == "http://proxy.local:3142/debian"
    assert sec == "http://proxy.local:3142/debian-security"


def test_derive_uris_fails_without_debian():
    with pytest.raises(apt.AptError):
        apt.derive_archive_uris(apt.parse_deb822("Types: deb\nURIs: http://x/y\nSuites: nodistro\nComponents: main\n"))


def test_read_system_sources_from_a_tree(tmp_path: Path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text("")
    (tmp_path / "sources.list.d" / "debian.sources").write_text(DEB822)
    (tmp_path / "sources.list.d" / "x.list.disabled").write_text("deb http://no/debian sid main\n")
    uris = apt.derive_archive_uris(apt.read_system_sources(tmp_path))
    assert uris[0] == "http://proxy.local:3142/debian"


def test_render_sources_changes_only_suites():
    text = apt.render_sources("http://m/debian", "http://m/debian-security")
    lines = text.splitlines()
    assert "deb http://m/debian sid main" in lines
    assert "deb http://m/debian-security bullseye-security main" in lines
    assert all(line.split()[1] in ("http://m/debian", "http://m/debian-security") for line in lines)


def test_private_apt_options_point_into_its_root(tmp_path: Path):
    opts = apt.PrivateApt(root=tmp_path).options()
    pairs = dict(o.split("=", 1) for o in opts[1::2])
    assert pairs["Dir::Etc::SourceParts"] == "/dev/null"
    for k in ("Dir::Etc::SourceList", "Dir::State::Lists", "Dir::Cache::Archives", "Dir::State::status"):
        assert pairs[k].startswith(str(tmp_path))


@pytest.mark.parametrize(
    "a,b",
    [
        ("1.0", "1.0-1"),
        ("6.12.57-1", "6.12.115-1"),
        ("1.0~rc1", "1.0"),
        ("1:9", "2:1"),
        ("6.12.115-1~deb12u1", "6.12.115-1"),
        ("1.0a", "1.0+"),
        ("5.10.237-1", "5.10.262-1"),
    ],
)
def test_compare_versions(a: str, b: str):
    assert apt.compare_versions(a, b) < 0
    assert apt.compare_versions(b, a) > 0
    assert apt.compare_versions(a, a) == 0
    if shutil.which("dpkg"):
        assert subprocess.run(["dpkg", "--compare-versions", a, "lt", b]).returncode == 0


def test_kernel_package_regex():
    m = kernels._PKG_RE.match
    assert m("linux-image-6.12.118+deb13-cloud-amd64-unsigned").group(1, 2) == ("6.12.118+deb13-cloud-amd64", "6.12")
    assert m("linux-image-6.1.0-56-cloud-amd64").group(1, 2) == ("6.1.0-56-cloud-amd64", "6.1")
    assert m("linux-image-7.2.13+deb14-cloud-amd64").group(2) == "7.2"
    assert m("linux-image-6.12-cloud-amd64") is None
    assert m("linux-image-cloud-amd64") is None
    assert m("linux-image-6.1.0-56-cloud-amd64-dbg") is None
    # the generic flavour resolves by exact release (zswap up to 6.12), never by series
    assert m("linux-image-6.12.118+deb13-amd64").group(1, 2, 3) == ("6.12.118+deb13-amd64", "6.12", None)
    assert m("linux-image-5.10.0-46-amd64-unsigned").group(1) == "5.10.0-46-amd64"
    assert m("linux-image-6.1.0-0.deb11.48-amd64") is None
    assert kernels.is_cloud("6.1.0-57-cloud-amd64") and not kernels.is_cloud("6.1.0-57-amd64")


def test_cpio_roundtrip_and_concatenation():
    buf = io.BytesIO()
    w = cpio.CpioWriter(buf)
    w.add_dir("dev")
    w.add_chardev("dev/console", 5, 1)
    w.add_dir("bin")
    w.add_file("bin/x", b"hello", 0o755)
    w.add_symlink("bin/y", "x")
    w.close()
    data = buf.getvalue()
    assert len(data) % 512 == 0
    entries = cpio.read_newc(data + data)
    assert [e[0] for e in entries] == ["dev", "dev/console", "bin", "bin/x", "bin/y"] * 2
    assert entries[3][2] == b"hello" and entries[3][1] == 0o100755
    assert entries[4][2] == b"x" and entries[1][1] == 0o20600


def test_cpio_is_deterministic_and_readable_by_gnu_cpio(tmp_path: Path):
    (tmp_path / "t" / "a").mkdir(parents=True)
    (tmp_path / "t" / "a" / "f").write_text("data")
    (tmp_path / "t" / "l").symlink_to("a/f")
    outs = []
    for _ in range(2):
        b = io.BytesIO()
        w = cpio.CpioWriter(b)
        w.add_tree(tmp_path / "t")
        w.close()
        outs.append(b.getvalue())
    assert outs[0] == outs[1]
    if shutil.which("cpio"):
        p = subprocess.run(["cpio", "-t", "--quiet"], input=outs[0], capture_output=True)
        assert p.stdout.decode().split() == ["a", "a/f", "l"]


def test_elf_needed_of_a_host_binary():
    sh = Path("/bin/ls").resolve()
    assert "libc.so.6" in elf.needed(sh)
    assert not elf.has_pvh_note(sh.read_bytes())


def _fake_elf() -> bytes:
    hdr = bytearray(b"\x7fELF\x02\x01\x01" + b"\0" * 57)
    return bytes(hdr) + b"payload" * 50


def test_extract_vmlinux_finds_a_gzip_payload():
    blob = b"junk" * 100 + gzip.compress(_fake_elf()) + b"trailing"
    out, comp = kernels.extract_vmlinux(blob)
    assert comp == "gzip" and out == _fake_elf()


def test_extract_vmlinux_rejects_garbage():
    with pytest.raises(kernels.KernelError):
        kernels.extract_vmlinux(b"nothing compressed in here" * 100)


def test_image_hash_tracks_source_contents(tmp_path: Path):
    src = tmp_path / "pkg"
    src.mkdir()
    (src / "m.py").write_text("x = 1\n")
    (src / "__pycache__").mkdir()
    (src / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"ignored")
    versions = {"python3.11-minimal": "3.11.2-6"}
    h1 = input_hash(versions, [src])
    (src / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"changed, still ignored")
    assert input_hash(versions, [src]) == h1
    (src / "m.py").write_text("x = 2\n")
    h2 = input_hash(versions, [src])
    assert h2 != h1
    assert input_hash({"python3.11-minimal": "3.11.2-7"}, [src]) != h2


def test_local_kernel_rejects_non_kernels(tmp_path: Path):
    p = tmp_path / "k"
    p.write_bytes(b"\0" * 4096)
    with pytest.raises(kernels.KernelError):
        kernels.local_kernel(p)
    with pytest.raises(kernels.KernelError):
        kernels.local_kernel(tmp_path / "missing")


def test_unknown_version_is_a_one_line_kernel_error():
    with pytest.raises(kernels.KernelError) as ei:
        kernels.get_kernel("banana")
    assert "\n" not in str(ei.value)


# --- boot snapshot bookkeeping (vm.bootstate; no VM needed) ---------------------------------------------


def test_snapshot_key_changes_with_what_decides_the_guest_state(tmp_path):
    from vm.bootstate import state_key

    k, i = tmp_path / "vmlinux", tmp_path / "initrd"
    k.write_bytes(b"k")
    i.write_bytes(b"i")
    base = state_key(["-m", "512"], [k, i], "7.2")
    assert base == state_key(["-m", "512"], [k, i], "7.2")
    assert base != state_key(["-m", "1024"], [k, i], "7.2")
    assert base != state_key(["-m", "512"], [k, i], "8.0")
    i.write_bytes(b"i2")  # a rebuilt initramfs
    assert base != state_key(["-m", "512"], [k, i], "7.2")


def test_prune_keeps_the_most_recently_used_and_removes_stale_saves(tmp_path, monkeypatch):
    import os
    import time

    from vm import bootstate

    monkeypatch.setattr(bootstate, "snapshots_dir", lambda: tmp_path)
    now = time.time()
    for n in range(5):
        d = tmp_path / f"key{n}"
        d.mkdir()
        os.utime(d, (now - 100 + n, now - 100 + n))
    stale, fresh = tmp_path / ".key9.abc.tmp", tmp_path / ".key8.def.tmp"
    orphan = tmp_path / ".key7.ghi.tmp"  # a save whose harness was SIGKILLed a moment ago
    for d in (stale, fresh, orphan):
        d.mkdir()
    (fresh / bootstate.OWNER).write_text(str(os.getpid()))
    (orphan / bootstate.OWNER).write_text("999999999")
    os.utime(stale, (now - 3600, now - 3600))
    bootstate.BootState("key0", tmp_path / "key0").touch()  # just used: kept
    bootstate.prune(keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".key8.def.tmp", "key0", "key4"]


def test_snapshots_can_be_switched_off(monkeypatch):
    from vm import bootstate

    monkeypatch.delenv("OOM_HARNESS_VM_SNAPSHOT", raising=False)
    assert bootstate.enabled()
    for off in ("0", "off", "no"):
        monkeypatch.setenv("OOM_HARNESS_VM_SNAPSHOT", off)
        assert not bootstate.enabled()


def test_cleanup_removes_unfinished_saves_and_on_request_every_snapshot(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).parent.parent
    snaps = tmp_path / "bootstate"
    (snaps / "k1").mkdir(parents=True)
    orphan = snaps / ".k2.abcd.tmp"  # a save whose harness was SIGKILLed
    orphan.mkdir()
    (orphan / "owner").write_text("999999999")
    env = {**os.environ, "OOM_HARNESS_CACHE": str(tmp_path)}

    def cleanup(*args: str) -> str:
        r = subprocess.run([sys.executable, "-m", "harness", "cleanup", *args], cwd=root, env=env,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout

    assert str(orphan) in cleanup()
    assert sorted(p.name for p in snaps.iterdir()) == ["k1"]
    assert str(snaps / "k1") in cleanup("--snapshots")
    assert list(snaps.iterdir()) == []


def test_prune_spares_the_unfinished_save_of_another_live_process(tmp_path, monkeypatch):
    """GuestVM used as a library (no harness command line) saving at the same moment as a harness:
    its liveness lock, taken by ``bootstate.save``, is what keeps another process's prune away."""
    import os
    import shutil
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from vm import bootstate

    monkeypatch.setattr(bootstate, "snapshots_dir", lambda: tmp_path)
    root = str(Path(__file__).parent.parent)
    script_dir = Path(tempfile.mkdtemp(prefix="libuser-"))  # not under tmp_path, whose name says "pytest"
    script = script_dir / "library_user.py"  # a command line that does not say "harness"
    script.write_text(
        "from harness.machine.liveness import hold_liveness_lock\n"
        "hold_liveness_lock()\nprint('ok', flush=True)\ninput()\n"
    )
    other = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             cwd=root, env={**os.environ, "PYTHONPATH": root})
    saving = tmp_path / ".key.abc.tmp"
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == "ok"
        saving.mkdir()
        (saving / bootstate.OWNER).write_text(str(other.pid))
        bootstate.prune()
        assert saving.exists()
    finally:
        other.communicate("\n", timeout=10)
        shutil.rmtree(script_dir, ignore_errors=True)
    bootstate.prune()  # its owner is gone now
    assert not saving.exists()


def test_ram_files_go_to_tmpfs_only_when_the_whole_guest_fits(monkeypatch):
    """A container's /dev/shm is 64 MiB by default: a 512 MiB guest's RAM file there would SIGBUS QEMU."""
    import os
    import tempfile

    from vm import machine

    class St:
        f_frsize = 4096
        f_bavail = (100 << 20) // 4096  # 100 MiB free

    monkeypatch.setattr(os, "statvfs", lambda p: St())
    monkeypatch.setattr(os, "access", lambda p, m: True)
    assert machine._ram_root(512) == tempfile.gettempdir()
    assert machine._ram_root(32) == "/dev/shm"
