#!/usr/bin/env bash
# The CUDA backend's proof in one command, prepared on a build machine and run on a GPU machine.
#
#   scripts/gpu-check.sh --prepare        # here: Release + CUDA build in build-gpu/, then a
#                                         # self-contained kit in build-gpu/federa-gpu-kit/
#   federa-gpu-kit/gpu-check.sh --run OUT # there (only a driver needed): every check, <= 6 min
#
# --prepare builds the parity tests, federa-bench, the coordinator, the client and the PKI tool
# (CMAKE_ARGS is passed to cmake, e.g. CMAKE_ARGS=-DCMAKE_CUDA_ARCHITECTURES=80 for an A100;
# the default is sm_90 + PTX), copies them with their non-system shared libraries into one
# folder with an $ORIGIN run path, and checks that every library resolves inside it.
#
# --run OUT writes OUT/results.jsonl (one JSON object per result, each with a "step"),
# OUT/verdicts.txt (one PASS/FAIL/INFO line per target of issue 13) and the logs of each step.
# Exit status: 0 when every target passed, 1 otherwise. GPU_CHECK_DEVICE=cpu rehearses the
# script itself on a machine without a GPU (the GPU targets then fail, as they should).
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

usage() {
  sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  exit 2
}

# ------------------------------------------------------------------------------------------------
# --prepare

kit_programs=(tools/federa-bench coordinator/federa-coordinator client/federa-client tools/federa-pki
              tests/federa_tests_parity tests/federa_tests_aggregation)

is_system_lib() {  # the C library family and the driver come from the GPU machine
  case "$(basename "$1")" in
    ld-linux*|libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|libresolv.so*|libutil.so*) return 0 ;;
    libcuda.so*|libnvidia*) return 0 ;;
  esac
  return 1
}

prepare() {
  set -e
  local root build kit
  root="$(cd "$here/.." && pwd)"
  build="$root/build-gpu"
  kit="$build/federa-gpu-kit"
  cd "$root"
  echo "== configure $build (Release, CUDA on)"
  # $ORIGIN as RPATH (not RUNPATH): it then also applies to the libraries' own dependencies.
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFEDERA_CUDA=ON \
    '-DCMAKE_BUILD_RPATH=$ORIGIN' -DCMAKE_EXE_LINKER_FLAGS=-Wl,--disable-new-dtags ${CMAKE_ARGS:-} >/dev/null
  echo "== build (-j${JOBS:-2})"
  local targets=()
  for p in "${kit_programs[@]}"; do targets+=("$(basename "$p")"); done
  cmake --build "$build" -j "${JOBS:-2}" --target "${targets[@]}"
  echo "== kit in $kit"
  rm -rf "$kit"
  mkdir -p "$kit"
  for p in "${kit_programs[@]}"; do
    cp "$build/$p" "$kit/"
    strip --strip-unneeded "$kit/$(basename "$p")"
  done
  local lib
  for lib in $(ldd "${kit_programs[@]/#/$build/}" | awk '/=> \// {print $3}' | sort -u); do
    is_system_lib "$lib" || cp -L "$lib" "$kit/"
  done
  chmod u+w "$kit"/*.so* 2>/dev/null || true
  strip --strip-unneeded "$kit"/*.so* 2>/dev/null || true
  # The C library is the GPU machine's, but an older one than the build's (Ubuntu 22.04 has 2.35)
  # cannot run these programs: keep this machine's loader and C library aside, for --run to use
  # only then (with them, the driver's libcuda also loads against this C library).
  mkdir -p "$kit/glibc"
  for lib in /lib64/ld-linux-x86-64.so.2 /lib/x86_64-linux-gnu/{libc.so.6,libm.so.6,libpthread.so.0,libdl.so.2,librt.so.1}; do
    cp -L "$lib" "$kit/glibc/"
  done
  cp "$root/scripts/gpu-check.sh" "$kit/"
  verify_kit "$kit"
  {
    echo "commit: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "cuda architectures: $(sed -n 's/^CMAKE_CUDA_ARCHITECTURES:[A-Z]*=//p' "$build/CMakeCache.txt")"
    local cuda_major
    cuda_major=$(nvcc --version 2>/dev/null | sed -n 's/.*release \([0-9]*\)\..*/\1/p')
    echo "nvcc: $(nvcc --version 2>/dev/null | tail -1)"
    # The CUDA runtime is linked statically; it still needs a driver at least as new as its major
    # release (minor-version compatibility): 13.x -> 580, 12.x -> 525, 11.x -> 450.
    case "$cuda_major" in 13) echo "needs driver >= 580" ;; 12) echo "needs driver >= 525" ;; 11) echo "needs driver >= 450" ;; esac
    echo "needs glibc >= $(objdump -T "$kit"/federa* "$kit"/*.so* 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sort -Vu | tail -1 | cut -d_ -f2)"
    echo "prepared: $(date -u +%FT%TZ) on $(uname -n)"
  } >"$kit/build-info.txt"
  cat "$kit/build-info.txt"
  echo "== kit ready: $(du -sm "$kit" | cut -f1) MiB, $(ls "$kit" | wc -l) files"
  echo "   copy $kit to the GPU machine and run: federa-gpu-kit/gpu-check.sh --run OUTDIR"
}

# Every program must find its libraries inside the kit (or be a system one) and carry $ORIGIN.
verify_kit() {
  local kit="$1" bad=0 f
  for f in "$kit"/federa*; do
    [ -x "$f" ] && [ ! -d "$f" ] || continue
    case "$f" in *.sh) continue ;; esac
    if ! grep -q 'RPATH.*\$ORIGIN' <<< "$(readelf -d "$f")"; then
      echo "kit: $f has no \$ORIGIN RPATH" >&2
      bad=1
    fi
    while read -r lib path; do
      [ -n "$path" ] || continue
      if [ "$path" = "not" ]; then
        echo "kit: $f: $lib not found" >&2
        bad=1
      elif [ "$(readlink -f "$(dirname "$path")")" != "$(readlink -f "$kit")" ] && ! is_system_lib "$path"; then
        echo "kit: $f loads $path from outside the kit" >&2
        bad=1
      fi
    done < <(ldd "$f" | awk '/=>/ {print $1, $3}')
  done
  [ "$bad" = 0 ] || { echo "kit: verification failed" >&2; exit 1; }
  echo "kit: every program resolves its libraries inside the kit"
}

# ------------------------------------------------------------------------------------------------
# --run

json_field() {  # json_field FIELD < line: a number or string value
  sed -n "s/.*\"$1\":\"\{0,1\}\([^,\"}]*\).*/\1/p" | head -1
}

add_step() {  # add_step NAME < json line: prefix "step" and append to results.jsonl
  sed "s/^{/{\"step\":\"$1\",/" >>"$out/results.jsonl"
}

verdict() {  # verdict PASS|FAIL|INFO text
  echo "$1  $2" | tee -a "$out/verdicts.txt"
  [ "$1" != FAIL ] || failed=1
}

at_least() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "" && a + 0 >= b + 0) }'; }

bench() {  # bench NAME TIMEOUT args...: one federa-bench run, its JSON line kept
  local name="$1" limit="$2"
  shift 2
  local line
  if line=$(timeout "$limit" "${runner[@]}" "$kit/federa-bench" "$@" --json 2>"$out/$name.log" | tail -1) &&
     [ "${line:0:1}" = "{" ]; then
    echo "$line" | add_step "$name"
    echo "$line"
  else
    echo "{\"step\":\"$name\",\"error\":\"failed or timed out, see $name.log\"}" >>"$out/results.jsonl"
    echo ""
  fi
}

gpu_facts() {
  echo "== GPU"
  nvidia-smi >"$out/nvidia-smi.txt" 2>&1 || true
  local q
  q=$(nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap,pcie.link.gen.max,pcie.link.width.max,clocks.max.sm,compute_mode \
        --format=csv,noheader 2>/dev/null | head -1)
  if [ -z "$q" ]; then
    echo '{"step":"gpu","error":"nvidia-smi shows no GPU (see nvidia-smi.txt)"}' >>"$out/results.jsonl"
    verdict FAIL "nvidia-smi: no GPU visible (see nvidia-smi.txt)"
    return
  fi
  IFS=',' read -r name driver mem cc gen width clock mode <<<"$q"
  printf '{"step":"gpu","name":"%s","driver":"%s","memory":"%s","compute_capability":"%s","pcie_gen":"%s","pcie_width":"%s","max_sm_clock":"%s","compute_mode":"%s"}\n' \
    "$(echo $name)" "$(echo $driver)" "$(echo $mem)" "$(echo $cc)" "$(echo $gen)" "$(echo $width)" "$(echo $clock)" "$(echo $mode)" \
    >>"$out/results.jsonl"
  verdict INFO "GPU: $(echo $name), compute capability $(echo $cc), driver $(echo $driver), PCIe gen $(echo $gen) x$(echo $width)"
  local need_driver
  need_driver=$(sed -n 's/^needs driver >= //p' "$kit/build-info.txt" 2>/dev/null)
  if [ -n "$need_driver" ] && ! at_least "$(echo "$driver" | cut -d. -f1)" "$need_driver"; then
    verdict FAIL "driver $(echo $driver) is older than this build's CUDA runtime needs ($need_driver): rebuild the kit with an older CUDA toolkit, or update the driver"
  fi
}

parity() {
  echo "== parity tests (CPU vs CUDA, every case must run)"
  local rc=0
  timeout 200 "${runner[@]}" "$kit/federa_tests_parity" >"$out/parity.log" 2>&1 || rc=$?
  local summary
  summary=$(grep -E "test cases:" "$out/parity.log" | tail -1 | tr -s ' ')
  echo "{\"step\":\"parity\",\"rc\":$rc,\"summary\":\"$summary\"}" >>"$out/results.jsonl"
  case "$rc" in
    0) verdict PASS "parity: CPU and GPU within 1e-6 for every strategy, rejected adds bit-identical, pinned = pageable, two GPU runs bit-identical ($summary)" ;;
    77) verdict FAIL "parity: $(head -1 "$out/parity.log") -- the GPU was not usable" ;;
    *) verdict FAIL "parity: exit $rc ($summary; see parity.log)" ;;
  esac
}

aggregate() {
  echo "== federa-bench aggregate --device cuda"
  local p line f
  for p in 4000000 32000000; do
    local reps=5
    [ "$p" -gt 4000000 ] && reps=3
    line=$(bench "fedavg_pinned_$p" 120 aggregate --device "$device" --strategy fedavg --clients 32 --params "$p" --reps "$reps")
    f=$(json_field fraction_of_h2d_bw <<<"$line")
    if at_least "$f" 0.7; then verdict PASS "FedAvg streamed from pinned memory (the coordinator's receive path), P=$p: $f of pinned H2D (target >= 0.7)"
    else verdict FAIL "FedAvg streamed from pinned memory (the coordinator's receive path), P=$p: ${f:-no result} of pinned H2D (target >= 0.7)"; fi
    line=$(bench "fedavg_pageable_$p" 120 aggregate --device "$device" --strategy fedavg --clients 32 --params "$p" --reps "$reps" --pageable)
    verdict INFO "FedAvg streamed from pageable memory, P=$p: $(json_field fraction_of_h2d_bw <<<"$line") of pinned H2D (no target)"
    line=$(bench "fedavg_unvalidated_$p" 120 aggregate --device "$device" --strategy fedavg --clients 32 --params "$p" --reps "$reps" --facts none)
    verdict INFO "FedAvg from pinned memory, backend validates first, P=$p: $(json_field fraction_of_h2d_bw <<<"$line") of pinned H2D (no target)"
    line=$(bench "fedavg_resident_$p" 120 aggregate --device "$device" --strategy fedavg --clients 32 --params "$p" --reps "$reps" --resident)
    f=$(json_field fraction_of_memory_bw <<<"$line")
    if at_least "$f" 0.8; then verdict PASS "FedAvg on device-resident updates, P=$p: $f of device-to-device copy bandwidth (target >= 0.8)"
    else verdict FAIL "FedAvg on device-resident updates, P=$p: ${f:-no result} of device-to-device copy bandwidth (target >= 0.8)"; fi
  done
  local s
  for s in median trimmed-mean krum multi-krum; do
    line=$(bench "robust_$s" 120 aggregate --device "$device" --strategy "$s" --clients 32 --params 4000000 --reps 3 --no-bandwidth)
    if [ -n "$line" ]; then verdict INFO "$s, K=32, P=4M on the GPU: $(json_field ms <<<"$line") ms per round (no target)"
    else verdict FAIL "$s, K=32, P=4M on the GPU: did not run (see robust_$s.log)"; fi
  done
}

secagg() {
  echo "== federa-bench secagg --device cuda"
  local line
  line=$(bench secagg 120 secagg --device "$device")
  if [ -n "$line" ] && [ "$(json_field correct <<<"$line")" = true ] && [ "$(json_field device <<<"$line")" = "$device" ]; then
    verdict PASS "SecAgg+ round (100 clients, 100k parameters) with the masked sum on the GPU: correct, server $(json_field server_ms <<<"$line") ms"
  else verdict FAIL "SecAgg+ round with the masked sum on the GPU: wrong or did not run (see secagg.log)"; fi
}

free_port() {
  local p
  for _ in $(seq 1 50); do
    p=$((20000 + RANDOM % 40000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
  echo 18443
}

federation() {
  echo "== 3-round loopback federation with --device cuda"
  local dir="$out/federation" port pids=() i
  mkdir -p "$dir"
  # Synthetic tabular data: 16 features, 4 classes decided by a linear rule, 2400 rows.
  awk 'BEGIN { srand(7); printf "f0"; for (j = 1; j < 16; ++j) printf ",f%d", j; print ",label";
       for (r = 0; r < 2400; ++r) { s0 = 0; s1 = 0; line = "";
         for (j = 0; j < 16; ++j) { x = 2 * rand() - 1; line = line (j ? "," : "") sprintf("%.4f", x);
           if (j % 2) s1 += x; else s0 += x; }
         print line "," ((s0 > 0) * 2 + (s1 > 0)) } }' >"$dir/data.csv"
  "${runner[@]}" "$kit/federa-pki" init --dir "$dir/pki" >/dev/null 2>"$dir/pki.log"
  for i in 0 1; do "${runner[@]}" "$kit/federa-pki" issue --dir "$dir/pki" --client "site-$i" >/dev/null 2>>"$dir/pki.log"; done
  port=$(free_port)
  local start=$SECONDS
  timeout 150 "${runner[@]}" "$kit/federa-coordinator" --pki "$dir/pki" --listen "127.0.0.1:$port" --rounds 3 --min-clients 2 \
    --round-timeout 60 --model mlp:16,32,4 --local-epochs 1 --lr 0.1 --momentum 0 --device "$device" --threads 2 \
    --state-dir "$dir/state" --metrics-out "$dir/metrics.jsonl" 2>"$dir/coordinator.log" &
  local coord=$!
  for _ in $(seq 1 100); do grep -q "listening on" "$dir/coordinator.log" 2>/dev/null && break; sleep 0.1; done
  for i in 0 1; do
    timeout 150 "${runner[@]}" "$kit/federa-client" --coordinator "127.0.0.1:$port" --kit "$dir/pki/clients/site-$i" \
      --data "csv:$dir/data.csv:label=label" --partition-index "$i" --partition-count 2 --give-up-after 60 \
      >/dev/null 2>"$dir/client-$i.log" &
    pids+=("$!")
  done
  local rc=0
  wait "$coord" || rc=$?
  for i in "${pids[@]}"; do kill "$i" 2>/dev/null || true; done
  wait 2>/dev/null || true
  local rounds first last on_gpu=no
  rounds=$(cat "$dir/metrics.jsonl" 2>/dev/null | wc -l)
  first=$(head -1 "$dir/metrics.jsonl" 2>/dev/null | json_field loss)
  last=$(tail -1 "$dir/metrics.jsonl" 2>/dev/null | json_field loss)
  grep -q "on the $device backend" "$dir/coordinator.log" && on_gpu=yes
  echo "{\"step\":\"federation\",\"rc\":$rc,\"rounds\":$rounds,\"loss_first\":\"$first\",\"loss_last\":\"$last\",\"cuda_backend\":\"$on_gpu\",\"seconds\":$((SECONDS - start))}" \
    >>"$out/results.jsonl"
  if [ "$rc" = 0 ] && [ "$rounds" -ge 3 ] && [ "$on_gpu" = yes ]; then
    verdict PASS "3-round loopback federation with --device cuda: $rounds rounds committed, training loss $first -> $last"
  else
    verdict FAIL "3-round loopback federation with --device cuda: exit $rc, $rounds rounds, cuda backend: $on_gpu (see federation/)"
  fi
}

# Programs run directly when this machine's C library is at least the build's; else through the
# kit's own loader and C library (GPU_CHECK_GLIBC=bundled forces that, =host the other way).
choose_runner() {
  runner=()
  local need have
  need=$(sed -n 's/^needs glibc >= //p' "$kit/build-info.txt" 2>/dev/null)
  have=$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}')
  local mode="${GPU_CHECK_GLIBC:-auto}"
  if [ "$mode" = bundled ] || { [ "$mode" = auto ] && [ -n "$need" ] &&
       [ "$(printf '%s\n%s\n' "$need" "${have:-0}" | sort -V | head -1)" != "$need" ]; }; then
    runner=("$kit/glibc/ld-linux-x86-64.so.2" --library-path "$kit/glibc")
  fi
  verdict INFO "C library: this machine ${have:-unknown}, the kit needs ${need:-unknown}; $([ ${#runner[@]} -gt 0 ] && echo "using the kit's own" || echo "using this machine's")"
}

run() {
  out="$1"
  device="${GPU_CHECK_DEVICE:-cuda}"
  kit="$here"
  [ -x "$kit/federa-bench" ] || kit="$here/../build-gpu/federa-gpu-kit"
  [ -x "$kit/federa-bench" ] || { echo "gpu-check: no kit next to this script nor in build-gpu/ (run --prepare)" >&2; exit 2; }
  kit="$(cd "$kit" && pwd)"
  mkdir -p "$out"
  out="$(cd "$out" && pwd)"
  : >"$out/results.jsonl"
  : >"$out/verdicts.txt"
  failed=0
  choose_runner
  local t0=$SECONDS
  [ -f "$kit/build-info.txt" ] && sed 's/^/kit /' "$kit/build-info.txt" | tee -a "$out/verdicts.txt"
  gpu_facts
  parity
  aggregate
  secagg
  federation
  echo "{\"step\":\"total\",\"seconds\":$((SECONDS - t0)),\"failed\":$failed}" >>"$out/results.jsonl"
  echo "== done in $((SECONDS - t0)) s; results in $out/results.jsonl, verdicts in $out/verdicts.txt"
  exit "$failed"
}

case "${1:-}" in
  --prepare) prepare ;;
  --run) [ -n "${2:-}" ] || usage; run "$2" ;;
  *) usage ;;
esac
