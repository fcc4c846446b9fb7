#!/usr/bin/env bash
# One member sending finite values 3e38 with num_examples 4 (issue 9, defect 2), against the real
# programs in their default configuration. Before the fix the float32 sum overflowed, the all-Inf
# model was committed and every later round failed. Now, with the poisoner:
#   - every round commits, the poisoner is rejected in each one with the outlier rule's reason;
#   - every committed model (global.safetensors and history/) is finite;
#   - the final accuracy is within 3 points of the same federation without the poisoner.
# Usage: poisoning.sh BUILD_DIR
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" "$1" federa-poison
member="$build/tests/federa-test-member"
[ -d /usr/share/datasets/fashion-mnist ] || { echo "SKIP: Fashion-MNIST is not installed"; exit 77; }
cd "$work"
"$pki_tool" init --dir pki >/dev/null
for c in a b c evil; do "$pki_tool" issue --dir pki --client "site-$c" >/dev/null; done

# federation NAME WITH_POISONER: 4 rounds, 3 honest clients (+ the poisoner), default robustness.
federation() {
  local name=$1 poison=$2 P
  P=$(port)
  mkdir -p "$name"
  # Every round waits for all members, the poisoner included, so each round is one it attacks.
  "$coordinator" --pki pki --listen "127.0.0.1:$P" --model mlp:784,32,10 --rounds 4 --min-clients 3 \
    --min-available-clients $((3 + poison)) \
    --lr 0.1 --momentum 0 --round-timeout 120 --eval-data fashion-mnist --state-dir "$name/state" \
    --metrics-out "$name/metrics.jsonl" --threads 2 >/dev/null 2>"$name/coordinator.log" &
  local coord=$!
  pids+=("$coord")
  wait_for 20 grep -qs "listening on" "$name/coordinator.log" || fail "$name: coordinator did not start"
  local i=0 clients=()
  for c in a b c; do
    "$client" --coordinator "127.0.0.1:$P" --kit "pki/clients/site-$c" --data fashion-mnist \
      --partition-index "$i" --partition-count 10 --retry-max 1 --give-up-after 120 --once \
      >/dev/null 2>"$name/client-$c.log" &
    clients+=("$!")
    pids+=("$!")
    i=$((i + 1))
  done
  if [ "$poison" = 1 ]; then
    "$member" --coordinator "127.0.0.1:$P" --kit pki/clients/site-evil --attack poison --limit 300 \
      2>"$name/poisoner.log" &
    pids+=("$!")
  fi
  local s=0
  wait "$coord" || s=$?
  [ "$s" = 0 ] || fail "$name: the coordinator exited $s"
  for p in "${clients[@]}"; do wait "$p" || fail "$name: a client did not finish"; done
}

echo "== with the poisoner"
federation poisoned 1
echo "== without it"
federation clean 0

python3 - poisoned clean <<'PY' || fail "see above"
import glob, json, math, struct, sys

def rounds(name):
    return [json.loads(l) for l in open(f"{name}/metrics.jsonl") if l.strip()]

def finite(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8:8 + n])
    data = b[8 + n:]
    for k, t in header.items():
        if k == "__metadata__":
            continue
        s, e = t["data_offsets"]
        vals = struct.unpack(f"<{(e - s) // 4}f", data[s:e])
        if not all(math.isfinite(v) for v in vals):
            return False
    return True

poisoned, clean = rounds(sys.argv[1]), rounds(sys.argv[2])
assert [r["round"] for r in poisoned] == [1, 2, 3, 4], poisoned
assert all(r["rejected"] == 1 and r["clients"] == 3 for r in poisoned), poisoned
models = glob.glob(f"{sys.argv[1]}/state/history/*.safetensors") + [f"{sys.argv[1]}/state/global.safetensors"]
assert len(models) == 5, models
assert all(finite(m) for m in models), "a committed model is not finite"
a, b = poisoned[-1]["accuracy"], clean[-1]["accuracy"]
print(f"   final accuracy {a:.4f} with the poisoner, {b:.4f} without")
assert abs(a - b) <= 0.03, (a, b)
PY
grep -q "outlier" poisoned/coordinator.log || fail "the rejection does not name the outlier rule"
echo "poisoning: every round committed a finite model; accuracy within 3 points of the clean federation"
