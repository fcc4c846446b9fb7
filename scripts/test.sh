#!/usr/bin/env bash
# Builds federa and runs its tests (ctest). Exits non-zero on any failure or sanitizer report.
#
#   scripts/test.sh                               # Release build in build/, every test
#   scripts/test.sh --sanitize address,undefined  # clang ASan+UBSan in build-asan/, every test,
#                                                 # the fuzz targets built and run briefly
#   scripts/test.sh --sanitize thread             # clang TSan in build-tsan/: the orchestrator and
#                                                 # integration suites (only their targets built)
#   scripts/test.sh --tests 'core|secagg'         # only the ctest names matching the regex
#   scripts/test.sh --build-only ...              # configure and build, run nothing
#   BUILD_DIR=build-dbg BUILD_TYPE=Debug scripts/test.sh
#
# Sanitizer builds use Debian's clang (the same one libFuzzer needs), -O1 with line tables, and no
# CUDA. Every report is fatal and is also written under BUILD_DIR/sanitizer-reports/, so a report
# from a program that a shell test runs (whose exit status the test may expect to be non-zero) is
# still caught: the script fails when that folder is not empty after ctest. Suppressions, only for
# reports proven to lie inside a third-party library, live in tests/sanitizers/.
# Environment: BUILD_DIR, BUILD_TYPE, JOBS (default: the number of cores), CMAKE_ARGS, CTEST_ARGS.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

sanitize=""
tests=""
build_only=0
usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --sanitize) [ $# -ge 2 ] || { usage >&2; exit 2; }; sanitize="$2"; shift ;;
    --sanitize=*) sanitize="${1#*=}" ;;
    --tests) [ $# -ge 2 ] || { usage >&2; exit 2; }; tests="$2"; shift ;;
    --build-only) build_only=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "test.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

bash scripts/setup-debian.sh

jobs="${JOBS:-$(nproc)}"
cmake_args=()
targets=()
supp="$root/tests/sanitizers"
case "$sanitize" in
  "")
    build_dir="${BUILD_DIR:-build}"
    cmake_args+=(-DCMAKE_BUILD_TYPE="${BUILD_TYPE:-Release}")
    ;;
  address,undefined|undefined,address|address)
    build_dir="${BUILD_DIR:-build-asan}"
    flags="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
    # Coverage for libFuzzer (no main, no runtime): the fuzz targets in tests/fuzz link against
    # these same libraries, so one build serves the test suite and the fuzzers.
    flags+=" -fsanitize=fuzzer-no-link"
    cmake_args+=(-DFEDERA_FUZZ=ON)
    ;;
  thread)
    build_dir="${BUILD_DIR:-build-tsan}"
    flags="-fsanitize=thread -fno-omit-frame-pointer"
    tests="${tests:-^(orchestrator|integration)$}"
    targets=(federa_tests_orchestrator federa_tests_integration)
    ;;
  *) echo "test.sh: --sanitize takes address,undefined or thread, not '$sanitize'" >&2; exit 2 ;;
esac

if [ -n "$sanitize" ]; then
  cmake_args+=(
    -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++
    -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}"
    "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -gline-tables-only"
    "-DCMAKE_CXX_FLAGS=$flags"
    "-DCMAKE_EXE_LINKER_FLAGS=${flags/ -fsanitize=fuzzer-no-link/}"
    "-DCMAKE_SHARED_LINKER_FLAGS=${flags/ -fsanitize=fuzzer-no-link/}"
    -DFEDERA_CUDA=OFF
  )
  reports="$root/$build_dir/sanitizer-reports"
  # halt_on_error: the first report ends the program (its test fails); log_path: also on disk.
  export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:check_initialization_order=1:strict_init_order=1:log_path=$reports/asan:suppressions=$supp/asan.supp"
  export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0"
  export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$reports/ubsan:suppressions=$supp/ubsan.supp"
  export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:log_path=$reports/tsan:suppressions=$supp/tsan.supp"
fi

cmake -S . -B "$build_dir" -G Ninja "${cmake_args[@]}" ${CMAKE_ARGS:-}
cmake --build "$build_dir" -j "$jobs" ${targets:+--target "${targets[@]}"}
[ "$build_only" = 1 ] && exit 0
if [ -n "$sanitize" ]; then
  rm -rf "$reports"
  mkdir -p "$reports"
fi

status=0
(cd "$build_dir" && ctest --output-on-failure --timeout 900 ${tests:+-R "$tests"} ${CTEST_ARGS:-}) || status=$?
if [ -n "$sanitize" ] && [ -n "$(ls -A "$reports")" ]; then
  echo "test.sh: sanitizer reports in $reports:" >&2
  for f in "$reports"/*; do echo "--- $f" >&2; head -n 60 "$f" >&2; done
  status=1
fi
exit "$status"
