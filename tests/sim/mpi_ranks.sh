#!/usr/bin/env bash
# federa-sim under MPI: `mpirun -np 2` must give the same metrics as `-np 1` for one seed
# (every field but the wall-clock duration_ms). Exits 77 (skipped) without mpirun or without
# an MPI build.
set -euo pipefail
sim=${1:?usage: mpi_ranks.sh PATH/TO/federa-sim}
if ! command -v mpirun >/dev/null; then
  echo "skipped: mpirun is not installed (apt-get install openmpi-bin libopenmpi-dev)"; exit 77
fi
# (ldd's output captured first: `ldd | grep -q` fails under pipefail when grep exits early.)
if ! grep -q libmpi <<< "$(ldd "$sim")"; then
  echo "skipped: $sim was built without MPI (reconfigure with -DFEDERA_MPI=ON)"; exit 77
fi
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  echo "skipped: Fashion-MNIST is not installed"; exit 77
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mpi=(mpirun --oversubscribe)
[ "$(id -u)" = 0 ] && mpi+=(--allow-run-as-root)
args=(--clients 20 --per-round 7 --rounds 3 --model softmax:784,10 --train-limit 3000 --eval-limit 1000
      --partition dirichlet:0.5 --momentum 0.9 --lr 0.01 --dropout 0.1 --threads 1 --progress false
      --device cpu --seed 11)
"${mpi[@]}" -np 1 "$sim" "${args[@]}" --metrics-out "$dir/np1.jsonl" > "$dir/np1.log"
"${mpi[@]}" -np 2 "$sim" "${args[@]}" --metrics-out "$dir/np2.jsonl" > "$dir/np2.log"
grep -q "2 ranks" "$dir/np2.log" || { echo "FAIL: the 2-rank run did not run on 2 MPI ranks"; cat "$dir/np2.log"; exit 1; }
strip() { sed 's/"duration_ms":[^,}]*,\{0,1\}//' "$1"; }
[ "$(wc -l < "$dir/np1.jsonl")" = 3 ] || { echo "FAIL: expected 3 rounds"; cat "$dir/np1.jsonl"; exit 1; }
if diff <(strip "$dir/np1.jsonl") <(strip "$dir/np2.jsonl"); then
  echo "ok: 1 and 2 MPI ranks give identical metrics"
else
  echo "FAIL: metrics differ between 1 and 2 ranks"; exit 1
fi
