#!/usr/bin/env bash
# NIID-Bench (Li et al., ICDE 2022) on federa-sim: FedAvg and FedProx on Fashion-MNIST,
# Dirichlet(0.5) label skew over 10 clients, all 10 every round, the simple CNN, 10 local epochs,
# batch 64, SGD lr 0.01 momentum 0.9 weight decay 1e-5, evaluation on the full 10k test set.
# Prints the best-round accuracy of each run beside the published figures (Flower's
# reproduction: FedAvg 88.09 ± 0.29, FedProx 88.15 ± 0.42; docs/references.md, NIID-Bench).
#
#   examples/niid_bench.sh                      # the full setup: 50 rounds, seed 1
#   ROUNDS=5 examples/niid_bench.sh             # a shortened run
#   SEEDS="1 2 3" OUT=runs/niid examples/niid_bench.sh
#
# Cost: one local epoch over the 60k training rows takes ~2.2 s on 2 cores (Release), so the
# full setup is ~50 x 10 x 2.2 s ≈ 18 min per strategy and seed; MPI ranks or more cores divide it.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
SIM=${SIM:-$here/build/sim/federa-sim}
ROUNDS=${ROUNDS:-50}
SEEDS=${SEEDS:-1}
MU=${MU:-0.01}
OUT=${OUT:-niid-bench}
THREADS=${THREADS:-$(nproc)}
LAUNCH=${LAUNCH:-}   # e.g. LAUNCH="mpirun -np 4"
[ -x "$SIM" ] || { echo "federa-sim not found at $SIM (build it, or set SIM=...)"; exit 1; }
mkdir -p "$OUT"

common=(--clients 10 --per-round 10 --rounds "$ROUNDS" --model cnn:fmnist --data fashion-mnist
        --eval-data fashion-mnist --partition dirichlet:0.5 --local-epochs 10 --batch-size 64
        --lr 0.01 --momentum 0.9 --weight-decay 1e-5 --threads "$THREADS" --device cpu --progress false)

for strategy in fedavg fedprox; do
  for seed in $SEEDS; do
    log="$OUT/$strategy-seed$seed.log"
    echo "== $strategy, seed $seed, $ROUNDS rounds -> $OUT/$strategy-seed$seed.jsonl"
    $LAUNCH "$SIM" "${common[@]}" --strategy "$strategy" --mu "$MU" --seed "$seed" \
      --metrics-out "$OUT/$strategy-seed$seed.jsonl" | tee "$log"
  done
done

echo
echo "| strategy | seed | rounds | best accuracy (round) | final accuracy | wall time | published (50 rounds) |"
echo "|---|---|---|---|---|---|---|"
for strategy in fedavg fedprox; do
  published="88.09 ± 0.29"; [ "$strategy" = fedprox ] && published="88.15 ± 0.42"
  for seed in $SEEDS; do
    log="$OUT/$strategy-seed$seed.log"
    best=$(grep -m1 "best accuracy" "$log" | sed 's/ *best accuracy *//')
    final=$(grep -m1 "final accuracy" "$log" | sed 's/ *final accuracy *//')
    wall=$(grep -m1 "wall time" "$log" | sed 's/ *wall time *//; s/ (rounds).*//')
    echo "| $strategy | $seed | $ROUNDS | $best | $final | $wall | $published |"
  done
done
