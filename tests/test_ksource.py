"""Kernel sources by version (vm/ksource.py), with a stand-in for the private apt and a real .deb."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from vm.apt import AptError
from vm.kernels import KernelError
from vm.ksource import fetch_source

pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")


class FakeApt:
    """What fetch_source asks of PrivateApt: lists, the candidate version, a download."""

    def __init__(self, deb: Path | None, version: str = "9.99.1-1") -> None:
        self.deb, self.version, self.downloads = deb, version, 0

    def ensure_lists(self) -> None:
        if self.deb is None:
            raise AptError("apt-get update failed: no network")

    def candidate(self, name: str) -> str:
        assert name == "linux-source-9.99"
        return self.version

    def download(self, name: str, version: str, dest: Path) -> Path:
        self.downloads += 1
        assert self.deb is not None
        return self.deb


def _deb(tmp: Path) -> Path:
    src = tmp / "src" / "linux-source-9.99"
    src.mkdir(parents=True)
    (src / "Makefile").write_text("VERSION = 9\nPATCHLEVEL = 99\n")
    pkg = tmp / "pkg"
    (pkg / "usr" / "src").mkdir(parents=True)
    subprocess.run(["tar", "-cJf", str(pkg / "usr/src/linux-source-9.99.tar.xz"), "-C", str(tmp / "src"),
                    "linux-source-9.99"], check=True)
    (pkg / "DEBIAN").mkdir()
    (pkg / "DEBIAN" / "control").write_text("Package: linux-source-9.99\nVersion: 9.99.1-1\nArchitecture: all\n"
                                            "Maintainer: x <x@example.org>\nDescription: test\n")
    out = tmp / "linux-source-9.99_9.99.1-1_all.deb"
    subprocess.run(["dpkg-deb", "-b", "-Zxz", str(pkg), str(out)], check=True, capture_output=True)
    return out


def test_fetch_unpacks_once_and_works_offline_after(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OOM_HARNESS_CACHE", str(tmp_path / "cache"))
    apt = FakeApt(_deb(tmp_path))
    tree = fetch_source("9.99", apt)  # type: ignore[arg-type]
    assert tree.name == "linux-source-9.99" and (tree / "Makefile").is_file()
    assert tree.parent.name == "9.99-9.99.1-1" and (tree.parent / "source.json").is_file()
    assert fetch_source("9.99", apt) == tree and apt.downloads == 1  # cached
    assert fetch_source("9.99", FakeApt(None)) == tree  # no network: the cached tree


def test_unknown_series_and_no_network_are_one_line_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OOM_HARNESS_CACHE", str(tmp_path / "cache"))
    with pytest.raises(KernelError, match="expected a series like"):
        fetch_source("six")
    with pytest.raises(KernelError, match="no linux-source-9.99 in the Debian package lists"):
        fetch_source("9.99", FakeApt(None))  # type: ignore[arg-type]
