#!/usr/bin/env bash
# A real federation on this machine: one coordinator and 10 clients on 127.0.0.1 over mutual
# TLS 1.3, 20 FedAvg rounds of an MLP on Fashion-MNIST split IID across the clients.
# Everything it writes is under runs/quickstart/ (throw-away PKI included); it stops what it
# started and exits 0 when the federation completes.
#   scripts/quickstart.sh                  # defaults below
#   ROUNDS=5 CLIENTS=4 scripts/quickstart.sh
#   EXTRA_COORDINATOR_FLAGS="--strategy fedadam" scripts/quickstart.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

clients="${CLIENTS:-10}"
rounds="${ROUNDS:-20}"
build_dir="${BUILD_DIR:-build}"
run_dir="${RUN_DIR:-runs/quickstart}"

bash scripts/setup-debian.sh
echo "== building (Release) in $build_dir"
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release ${CMAKE_ARGS:-} >/dev/null
cmake --build "$build_dir" -j "$(nproc)" --target federa-pki federa-coordinator federa-client

bin="$build_dir"
pki_tool="$bin/tools/federa-pki"
coordinator="$bin/coordinator/federa-coordinator"
client="$bin/client/federa-client"

rm -rf "$run_dir"
mkdir -p "$run_dir/logs"
pki="$run_dir/pki"

# A free port on the loopback interface.
port="${PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}"

echo "== PKI: a throw-away federation CA in $pki"
"$pki_tool" init --dir "$pki" --coordinator-host 127.0.0.1 >/dev/null
for i in $(seq 0 $((clients - 1))); do
  "$pki_tool" issue --dir "$pki" --client "agency-$i" >/dev/null
done

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

echo "== coordinator on 127.0.0.1:$port; $clients clients; $rounds rounds (logs in $run_dir/logs)"
start=$(date +%s.%N)
"$coordinator" --pki "$pki" --listen "127.0.0.1:$port" \
  --rounds "$rounds" --min-clients "$clients" --round-timeout 120 \
  --model mlp:784,128,10 --local-epochs "${LOCAL_EPOCHS:-2}" --batch-size "${BATCH_SIZE:-32}" --lr "${LR:-0.02}" \
  --momentum "${MOMENTUM:-0.9}" \
  --eval-data fashion-mnist --state-dir "$run_dir/state" --metrics-out "$run_dir/metrics.jsonl" \
  --threads 2 ${EXTRA_COORDINATOR_FLAGS:-} \
  2> "$run_dir/logs/coordinator.log" &
coord_pid=$!
pids+=("$coord_pid")

# Wait until it listens (or died with a reason).
for _ in $(seq 1 100); do
  grep -q "listening on" "$run_dir/logs/coordinator.log" 2>/dev/null && break
  if ! kill -0 "$coord_pid" 2>/dev/null; then
    echo "quickstart: the coordinator did not start:" >&2
    cat "$run_dir/logs/coordinator.log" >&2
    exit 1
  fi
  sleep 0.1
done

for i in $(seq 0 $((clients - 1))); do
  "$client" --coordinator "127.0.0.1:$port" --kit "$pki/clients/agency-$i" \
    --data fashion-mnist --partition iid --partition-index "$i" --partition-count "$clients" \
    --give-up-after 120 --once 2> "$run_dir/logs/client-$i.log" &
  pids+=("$!")
done

status=0
wait "$coord_pid" || status=$?
end=$(date +%s.%N)
if [ "$status" -ne 0 ]; then
  echo "quickstart: the coordinator exited with status $status; last lines of its log:" >&2
  tail -n 20 "$run_dir/logs/coordinator.log" >&2
  exit 1
fi
# Clients leave on their own when the coordinator says goodbye (--once; without it they stay,
# as agents waiting for the next job).
failed=0
for p in "${pids[@]:1}"; do
  wait "$p" || failed=$((failed + 1))
done
pids=()
if [ "$failed" -ne 0 ]; then
  echo "quickstart: $failed client(s) did not exit cleanly; see $run_dir/logs/" >&2
  exit 1
fi
final=$(tail -n 1 "$run_dir/metrics.jsonl")
echo "== done in $(python3 -c "print(f'{$end - $start:.1f}')") s"
echo "   final: $final"
echo "   metrics: $run_dir/metrics.jsonl   global model: $run_dir/state/global.safetensors"
