#!/usr/bin/env bash
# Builds the Debian packages federa-client, federa-coordinator and federa-tools into dist/:
# a Release build configured with Debian's layout (prefix /usr, /etc/federa, /lib/systemd/system),
# then CPack (packaging/CMakeLists.txt) with dependencies from dpkg-shlibdeps.
#   scripts/package.sh                         # build/ (the tests' build, reused), dist/
#   BUILD_DIR=build-cuda CMAKE_ARGS="-DFEDERA_CUDA=ON" scripts/package.sh   # with the CUDA backend
#   DIST_DIR=/tmp/debs scripts/package.sh
#   scripts/package.sh --no-build              # package what BUILD_DIR holds (tests/packaging)
# Prints the packages it wrote; install one with `apt install ./dist/federa-client_*.deb`.
# Exit status 3: --no-build on a build not configured with the prefix /usr.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

build=1
case "${1:-}" in
  --no-build) build=0 ;;
  "") ;;
  *) sed -n '2,10p' "$0" >&2; exit 2 ;;
esac
bash scripts/setup-debian.sh
build_dir="${BUILD_DIR:-build}"
dist_dir="${DIST_DIR:-dist}"
jobs="${JOBS:-$(nproc)}"

if [ "$build" = 1 ]; then
  # The install prefix changes no compile flag, so reusing the tests' build recompiles nothing.
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr ${CMAKE_ARGS:-} >/dev/null
  cmake --build "$build_dir" -j "$jobs"
elif ! grep -qx 'CMAKE_INSTALL_PREFIX:PATH=/usr' "$build_dir/CMakeCache.txt" 2>/dev/null; then
  echo "package.sh: $build_dir is not configured with -DCMAKE_INSTALL_PREFIX=/usr (Debian's layout); run without --no-build" >&2
  exit 3
fi
rm -rf "$build_dir/cpack"
(cd "$build_dir" && cpack -G DEB >cpack.log 2>&1) || { cat "$build_dir/cpack.log" >&2; exit 1; }
mkdir -p "$dist_dir"
version=$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$build_dir/CMakeCache.txt")
rm -f "$dist_dir"/federa-{client,coordinator,tools}_"$version"-*.deb
cp "$build_dir"/cpack/federa-*.deb "$dist_dir"/
ls -1 "$dist_dir"/federa-{client,coordinator,tools}_"$version"-*.deb
