#!/usr/bin/env bash
# Installs the Debian 12 packages federa builds and runs with, if any is missing.
# Idempotent: a second run installs nothing and takes a second.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  libboost1.81-dev libboost-json1.81-dev libboost-program-options1.81-dev
  libssl-dev openssl
  libeigen3-dev
  libprotobuf-dev protobuf-compiler
  libspdlog-dev
  zlib1g-dev
  doctest-dev
  dataset-fashion-mnist
  libopenmpi-dev openmpi-bin
  # numpy: the examples' centralised references (examples/tabular/reference.py). The tabular
  # example takes its data from python3-sklearn with `apt-get download` at run time instead of
  # installing it: on Debian 12 it cannot be installed beside libboost1.81-dev.
  python3 python3-numpy
  # Debian packages (scripts/package.sh): CPack's dpkg-shlibdeps, man pages from --help, and
  # systemd-analyze for the packaging test's unit checks
  dpkg-dev fakeroot help2man systemd
  # the admin listener's tests: the dashboard in a real browser, a real Prometheus scraping it
  chromium prometheus
  iproute2
  clang libclang-rt-14-dev
  # PyTorch: models from a file (PyTorch state dicts) and the external-trainer example (examples/pytorch)
  python3-torch
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "federa: installing Debian packages: ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then sudo="sudo"; else
    echo "federa: need root (or sudo) to install: ${missing[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
