#!/usr/bin/env bash
# Federated evaluation with the installed programs (issue 10, items 1 and 5):
#   1. three clients hold out 20 % of their rows (one asks for privacy); every round's metrics
#      line has the weighted fed_* figures, --client-metrics-out the two public clients' values,
#      --keep-best fed_accuracy keeps the best round's model as state/best.safetensors;
#   2. --rounds 0 --evaluate-only --model safetensors:state/best.safetensors evaluates that model
#      across the same clients and gets the same fed_accuracy its round had, committing nothing;
#   3. --model files that cannot be used are refused at startup with the reason.
# Usage: evaluation_cli.sh BUILD_DIR
set -euo pipefail
source "$(dirname "$0")/lib.sh" "$1" federa-eval
cd "$work"

"$pki_tool" init --dir pki >/dev/null
for c in a b c; do "$pki_tool" issue --dir pki --client "site-$c" >/dev/null; done

P=$(port)
common=(--pki pki --listen "127.0.0.1:$P" --lr 0.1 --momentum 0 --local-epochs 1 --round-timeout 60
        --threads 2 --min-clients 3 --min-evaluate-clients 3)
clients() {  # clients LOG_STEM: the three sites, site-c private; waits for them to finish
  local cpids=()
  for c in a b c; do
    local extra=()
    [ "$c" = c ] && extra=(--private-metrics)
    "$client" --coordinator "127.0.0.1:$P" --kit "pki/clients/site-$c" --data fashion-mnist \
      --partition-index "$(( $(printf '%d' "'$c") - 97 ))" --partition-count 20 --test-fraction 0.2 \
      --retry-max 1 --give-up-after 90 --once "${extra[@]}" >/dev/null 2>"$1-$c.log" &
    cpids+=("$!")
    pids+=("$!")
  done
  for p in "${cpids[@]}"; do wait "$p" || fail "a client of $1 did not exit 0"; done
}

echo "== 3 rounds with federated evaluation and --keep-best"
"$coordinator" "${common[@]}" --model mlp:784,32,10 --rounds 3 --state-dir state --metrics-out metrics.jsonl \
  --client-metrics-out clients.jsonl --keep-best fed_accuracy >coordinator.out 2>coordinator.log &
coord=$!
pids+=("$coord")
wait_for 20 grep -q "listening on" coordinator.log || fail "coordinator did not start"
clients train
wait "$coord" || fail "coordinator failed"
python3 - <<'PY' || fail "metrics, per-client lines or best.safetensors are wrong"
import json, struct
lines = [json.loads(l) for l in open("metrics.jsonl")]
assert [l["round"] for l in lines] == [1, 2, 3], lines
for l in lines:
    assert l["fed_clients"] == 3, l
    assert l["fed_accuracy_min"] <= l["fed_accuracy"] <= l["fed_accuracy_max"], l
per = [json.loads(l) for l in open("clients.jsonl")]
assert sorted((p["round"], p["client"]) for p in per) == [(r, c) for r in (1, 2, 3) for c in ("site-a", "site-b")], per
assert all(p["outcome"] == "accepted" and p["num_examples"] > 0 for p in per), per
# The public clients' values lie between the line's min and max (which leave site-c out).
for l in lines:
    mine = [p["accuracy"] for p in per if p["round"] == l["round"]]
    assert min(mine) == l["fed_accuracy_min"] and max(mine) == l["fed_accuracy_max"], (l, mine)
b = open("state/best.safetensors", "rb").read()
n = struct.unpack("<Q", b[:8])[0]
meta = json.loads(b[8:8 + n])["__metadata__"]
best = max(lines, key=lambda l: l["fed_accuracy"])
assert meta["federa.best_metric"] == "fed_accuracy", meta
assert int(meta["federa.round"]) == best["round"], (meta, best)
assert float(meta["federa.best_value"]) == best["fed_accuracy"], (meta, best)
open("best_value", "w").write(meta["federa.best_value"])
PY
grep -q "federated evaluation on 3 of 3 clients" coordinator.log || fail "no evaluation in the log"
grep "site-c" coordinator.log | grep -qi "accuracy" && fail "site-c's private values reached the log"

echo "== --evaluate-only on best.safetensors"
"$coordinator" "${common[@]}" --rounds 0 --evaluate-only --model safetensors:state/best.safetensors \
  --metrics-out eval.jsonl --state-dir nowhere >>coordinator.out 2>>coordinator.log &
coord=$!
pids+=("$coord")
clients evaluate
wait "$coord" || fail "--evaluate-only failed"
[ ! -e nowhere ] || fail "--evaluate-only wrote a state folder"
for c in a b c; do grep -q "task received" "train-$c.log" || fail "site-$c logged no task"; done
grep -q "fit task" evaluate-a.log && fail "--evaluate-only sent a fit task"
python3 - <<'PY' || fail "the evaluate-only line does not match the best round's"
import json
l = [json.loads(x) for x in open("eval.jsonl")]
assert len(l) == 1 and l[0]["round"] == 0, l
assert l[0]["fed_clients"] == 3, l
assert l[0]["fed_accuracy"] == float(open("best_value").read()), (l, open("best_value").read())
PY

echo "== unusable --model files are refused at startup"
printf 'abc' > short.safetensors
python3 - <<'PY'
import json, struct
h = json.dumps({"w": {"dtype": "F64", "shape": [2], "data_offsets": [0, 16]}}).encode()
open("f64.safetensors", "wb").write(struct.pack("<Q", len(h)) + h + bytes(16))
PY
for bad in short f64 missing; do
  set +e
  "$coordinator" "${common[@]}" --model "safetensors:$bad.safetensors" --state-dir "s-$bad" >/dev/null 2>"refused-$bad.log"
  code=$?
  set -e
  [ "$code" = 2 ] || fail "--model $bad.safetensors: exit $code, expected 2"
done
grep -q "shorter than its 8-byte header" refused-short.log || fail "short file: no reason"
grep -q "'w' has dtype F64, which federa can neither aggregate nor carry" refused-f64.log || fail "F64: no reason"
grep -q "missing.safetensors" refused-missing.log || fail "missing file: no reason"
set +e
"$coordinator" "${common[@]}" --evaluate-only --rounds 2 >/dev/null 2>refused-only.log
code=$?
set -e
[ "$code" = 2 ] && grep -q "pass --rounds 0" refused-only.log || fail "--evaluate-only with rounds accepted"
echo "evaluation cli: 1 passed, 0 failed"
