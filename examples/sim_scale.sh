#!/usr/bin/env bash
# federa-sim at scale and its overhead (issue 5's numbers):
#  1. 10,000 virtual clients, 100 per round, MLP on Fashion-MNIST, 5 rounds: peak RSS must stay
#     under 2 GiB (measured with /usr/bin/time -v, else getrusage through bash's `times`).
#  2. Overhead: 100 clients per round, the simulation's wall time against the same local
#     training (same clients, configs and threads) in a plain loop, in one run (--baseline);
#     the ratio must be within 1.15.
#
#   examples/sim_scale.sh                 # uses build/sim/federa-sim
#   SIM=build-sim/sim/federa-sim examples/sim_scale.sh
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
SIM=${SIM:-$here/build/sim/federa-sim}
OUT=${OUT:-sim-scale}
THREADS=${THREADS:-$(nproc)}
[ -x "$SIM" ] || { echo "federa-sim not found at $SIM (build it, or set SIM=...)"; exit 1; }
mkdir -p "$OUT"
status=0

echo "== 1. scale: 10,000 clients, 100 per round, mlp:784,128,10, 5 rounds"
if [ -x /usr/bin/time ]; then
  /usr/bin/time -v "$SIM" --clients 10000 --per-round 100 --rounds 5 --model mlp:784,128,10 \
    --threads "$THREADS" --progress false --metrics-out "$OUT/scale.jsonl" 2> "$OUT/scale.time" | tee "$OUT/scale.log"
  rss_kb=$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' "$OUT/scale.time")
else
  # No GNU time: the peak RSS of finished children from getrusage, via python3.
  rss_kb=$(python3 - "$SIM" "$THREADS" "$OUT" <<'PY'
import resource, subprocess, sys
sim, threads, out = sys.argv[1:4]
subprocess.run([sim, "--clients", "10000", "--per-round", "100", "--rounds", "5", "--model", "mlp:784,128,10",
                "--threads", threads, "--progress", "false", "--metrics-out", out + "/scale.jsonl"], check=True,
               stdout=open(out + "/scale.log", "w"))
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
PY
)
  cat "$OUT/scale.log"
fi
rss_mib=$((rss_kb / 1024))
if [ "$rss_kb" -lt $((2 * 1024 * 1024)) ]; then
  echo "peak RSS: $rss_mib MiB (< 2048 MiB: ok)"
else
  echo "peak RSS: $rss_mib MiB (>= 2048 MiB: FAIL)"; status=1
fi

echo
echo "== 2. overhead: 100 clients, all 100 every round, mlp:784,128,10, 5 rounds, with --baseline"
"$SIM" --clients 100 --per-round 100 --rounds 5 --model mlp:784,128,10 --threads "$THREADS" \
  --progress false --baseline --metrics-out "$OUT/overhead.jsonl" | tee "$OUT/overhead.log"
ratio=$(awk '/simulation \/ baseline/ {print $NF}' "$OUT/overhead.log")
if awk -v r="$ratio" 'BEGIN { exit !(r <= 1.15) }'; then
  echo "overhead ratio: $ratio (<= 1.15: ok)"
else
  echo "overhead ratio: $ratio (> 1.15: FAIL)"; status=1
fi
exit $status
