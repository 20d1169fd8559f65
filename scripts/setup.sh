#!/usr/bin/env bash
# Set up everything OpenPEX needs on a Debian machine: system packages, a virtualenv in .venv
# and the pinned Python packages. Safe to re-run: it skips what is already there.
# `setup.sh --tests` also installs what only the tests use: Chromium, for the portal's tests.
set -euo pipefail
cd "$(dirname "$0")/.."

# wrk drives the API benchmark; libvirt-daemon* and qemu-system-x86 are the real hypervisor the
# driver contract tests boot the tiny guest on; everything else is needed to build, run or test.
packages=(python3 python3-venv python3-dev gcc pkg-config libvirt-dev postgresql wrk
          libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86)
if [ "${1:-}" = "--tests" ]; then
  # Playwright drives Debian's Chromium (no browser download); the fonts make screenshots legible.
  packages+=(chromium fonts-dejavu-core)
fi
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing Debian packages: ${missing[*]}"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -e "$stamp" ]; then
  echo "setup: installing Python packages into .venv (libvirt-python compiles: about a minute)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi
# The tiny guest (kernel + busybox initramfs) the qemu tests boot; quick when already built.
./scripts/build-guest.sh >/dev/null
echo "setup: ready ($(.venv/bin/python --version), .venv)"
