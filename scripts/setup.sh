#!/usr/bin/env bash
# One-command setup for oom-harness on a Debian/Ubuntu machine (run as root; CI does).
# Installs the system packages the runners need, then a virtualenv with the harness in it.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PKGS=(qemu-system-x86 cpio busybox-static zstd lz4 xz-utils kmod docker.io shellcheck
          build-essential flex bison bc libelf-dev libssl-dev dwarves)  # building kernels from source (vm/kbuild.py)
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  missing=()
  for p in "${APT_PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
else
  echo "setup: not root or no apt-get: install ${APT_PKGS[*]} yourself for the VM and Docker backends" >&2
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[dev]'
echo "setup: done (.venv/bin/oom-harness)" >&2
