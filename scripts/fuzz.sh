#!/usr/bin/env bash
# Runs every libFuzzer target (tests/fuzz) for SECONDS each (default 60), one after the other, on
# its committed corpus plus what earlier runs found (build-asan/tests/fuzz/work/TARGET), and
# prints executions per target. Exits 1 if any target crashed, leaked, timed out or ran out of
# memory; the input that did it is left as build-asan/tests/fuzz/TARGET-crash-* (or leak-,
# timeout-, oom-), and the target's log as build-asan/fuzz-logs/TARGET.log.
#
#   scripts/fuzz.sh                  # 60 s per target
#   scripts/fuzz.sh 600              # a longer campaign
#   FUZZ_TARGETS='csv|idx' scripts/fuzz.sh 30     # only the targets matching the regex
#   FUZZ_JOBS=2 scripts/fuzz.sh 300  # two targets at a time (one per core)
#   FUZZ_NO_BUILD=1 scripts/fuzz.sh  # run the fuzzers already built, without rebuilding first
#
# The build is scripts/test.sh --sanitize address,undefined's (clang, ASan+UBSan, libFuzzer
# coverage), so its folder serves both. Reproduce a finding with
#   build-asan/tests/fuzz/federa_fuzz_TARGET build-asan/tests/fuzz/TARGET-crash-...
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
seconds="${1:-60}"
case "$seconds" in ''|*[!0-9]*) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;; esac
build_dir="${BUILD_DIR:-build-asan}"
if [ -z "${FUZZ_NO_BUILD:-}" ]; then
  BUILD_DIR="$build_dir" bash scripts/test.sh --sanitize address,undefined --build-only >/dev/null
fi

fuzz_dir="$build_dir/tests/fuzz"
logs="$build_dir/fuzz-logs"
mkdir -p "$logs"
supp="$root/tests/sanitizers"
export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:suppressions=$supp/asan.supp"
export LSAN_OPTIONS="suppressions=$supp/lsan.supp"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:suppressions=$supp/ubsan.supp"

targets=()
for exe in "$fuzz_dir"/federa_fuzz_*; do
  name="${exe##*/federa_fuzz_}"
  [ "$name" = seeds ] && continue
  [[ -n "${FUZZ_TARGETS:-}" && ! "$name" =~ ${FUZZ_TARGETS} ]] && continue
  targets+=("$name")
done
[ ${#targets[@]} -gt 0 ] || { echo "fuzz.sh: no fuzz targets in $fuzz_dir" >&2; exit 2; }

run_one() {
  local name=$1 work="$fuzz_dir/work/$1"
  mkdir -p "$work"
  "$fuzz_dir/federa_fuzz_$name" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$fuzz_dir/$name-" "$work" "tests/fuzz/corpus/$name" \
    >"$logs/$name.log" 2>&1
}

status=0
pids=()
names=()
for name in "${targets[@]}"; do
  run_one "$name" &
  pids+=("$!")
  names+=("$name")
  if [ ${#pids[@]} -ge "${FUZZ_JOBS:-1}" ]; then
    wait "${pids[0]}" || { echo "fuzz.sh: $name: FAILED (see $logs/${names[0]}.log)" >&2; status=1; }
    pids=("${pids[@]:1}")
    names=("${names[@]:1}")
  fi
done
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || { echo "fuzz.sh: ${names[$i]}: FAILED (see $logs/${names[$i]}.log)" >&2; status=1; }
done

total=0
printf '%-26s %14s %10s %8s\n' target executions exec/s corpus
for name in "${targets[@]}"; do
  log="$logs/$name.log"
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  corpus=$(ls "$fuzz_dir/work/$name" | wc -l)
  printf '%-26s %14s %10s %8s\n' "$name" "${runs:-?}" "${speed:-?}" "$corpus"
  total=$((total + ${runs:-0}))
done
printf '%-26s %14s\n' total "$total"
exit "$status"
