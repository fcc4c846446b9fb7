#!/usr/bin/env bash
# The external trainer through the real binaries (issue 10): a coordinator and three clients with
# --trainer exec running small programs that need no torch.
#   1. two good clients (Python standard-library trainer adding 0.5 to every weight) and one whose
#      program returns a model with a missing tensor: every round completes with the two, the bad
#      client's reason reaches the coordinator's log and its metrics count it;
#   2. `federa-client trainer-test` on the committed model: exit 0 and "would send" for a good
#      program, exit 1 with the reason for a bad one, from a --config file with a JSON-array command;
#      `federa-client doctor` finds the configured program (and names a missing one);
#   3. SIGTERM to a client whose program hangs: the client exits 0 and the program is gone.
# Usage: exec_trainer.sh BUILD_DIR
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/lib.sh" "$1" federa-exec
fake_py="$here/../client/test_exec_trainer_fake.py"
fake_sh="$here/../client/test_exec_trainer_fake.sh"
command -v python3 >/dev/null || { echo "skipped: python3 is missing"; exit 77; }
cd "$work"

"$pki_tool" init --dir pki >/dev/null
for c in good-1 good-2 bad-3 hang-4; do "$pki_tool" issue --dir pki --client "$c" >/dev/null; done
P=$(port)
rounds=3
"$coordinator" --pki pki --listen "127.0.0.1:$P" --model mlp:784,16,10 --rounds $rounds \
  --min-clients 2 --min-available-clients 3 --round-timeout 60 --threads 2 \
  --state-dir state --metrics-out metrics.jsonl >coordinator.out 2>coordinator.log &
coord=$!
pids+=("$coord")
wait_for 20 grep -q "listening on" coordinator.log || fail "coordinator did not start"

client() {  # client NAME MODE [extra flags]
  local name=$1 mode=$2; shift 2
  "$client" --coordinator "127.0.0.1:$P" --kit "pki/clients/$name" --once --retry-max 1 \
    --trainer exec --trainer-command python3 --trainer-command "$fake_py" --trainer-command "$mode" \
    --trainer-timeout 60 "$@" >"$name.out" 2>"$name.log" &
  pids+=($!)
}

echo "== 1. two good clients and one whose model misses a tensor"
client good-1 ok
client good-2 ok
client bad-3 missing_tensor
wait "$coord" || fail "the coordinator failed"
[ "$(wc -l < metrics.jsonl)" = $rounds ] || fail "not $rounds rounds committed"
python3 - <<'PY' || fail "metrics are wrong: $(cat metrics.jsonl)"
import json
for l in map(json.loads, open("metrics.jsonl")):
    assert l["clients"] == 2 and l["selected"] == 3, l
    assert l["rejected"] + l["dropped"] == 1, l
    assert l["train_loss"] == 0.5, l  # the good programs' metrics.json, weighted
PY
grep -q "client 'bad-3' reported an error: training failed: the trainer's model was refused: model.safetensors: 1 missing tensor is:" coordinator.log \
  || fail "the coordinator's log does not carry bad-3's reason"
grep -q "\[trainer\] training on fake data" good-1.log || fail "the program's output is not in the client's log"
grep -q "round 1: training failed: the trainer's model was refused" bad-3.log || fail "bad-3 did not log its refusal"

echo "== 2. trainer-test: a good program from a --config file (JSON array), then a bad one"
mkdir -p etc
cp -r pki/clients/good-1 etc/kit
cat > etc/client.json <<JSON
{"coordinator": "127.0.0.1:1", "kit": "kit", "trainer": "exec",
 "trainer-command": ["sh", "$fake_sh", "args", "{input_model}", "{output_model}"]}
JSON
"$client" trainer-test --config etc/client.json --model state/global.safetensors >tt-good.out 2>tt-good.log \
  || fail "trainer-test refused a good program: $(cat tt-good.out)"
grep -q "would send: *UpdateHeader{round 1, num_examples 9" tt-good.out || fail "trainer-test did not say what it would send"
grep -q "OK: this output would be accepted" tt-good.out || fail "trainer-test did not accept"
set +e
"$client" trainer-test --trainer exec --trainer-command "python3 '$fake_py' wrong_shape" \
  --model state/global.safetensors >tt-bad.out 2>tt-bad.log
code=$?
set -e
[ $code = 1 ] || fail "trainer-test exited $code on a bad program"
grep -q "REFUSED: the trainer's model was refused: model.safetensors: tensor '.*' has shape" tt-bad.out \
  || fail "trainer-test did not say what was wrong: $(cat tt-bad.out)"

echo "== doctor: the trainer line"
"$client" doctor --config etc/client.json >doctor.out 2>&1 || true  # its coordinator is unreachable
grep -q "^ok *trainer *runs .*sh; task folders in " doctor.out || fail "doctor: $(cat doctor.out)"
"$client" doctor --coordinator 127.0.0.1:1 --kit etc/kit --trainer exec \
  --trainer-command no-such-program --trainer-command x >doctor2.out 2>&1 || true
grep -q "^FAIL *trainer *cannot run the trainer: 'no-such-program' is not an executable in PATH" doctor2.out \
  || fail "doctor did not name the missing program: $(cat doctor2.out)"

echo "== 3. SIGTERM while the program hangs"
P=$(port)
"$coordinator" --pki pki --listen "127.0.0.1:$P" --model mlp:784,16,10 --rounds 1 --min-clients 1 \
  --round-timeout 60 --threads 2 --state-dir state2 >coordinator2.out 2>coordinator2.log &
coord=$!
pids+=("$coord")
wait_for 20 grep -q "listening on" coordinator2.log || fail "coordinator 2 did not start"
client hang-4 hang
agent=${pids[-1]}
wait_for 30 grep -q "\[trainer\] hanging" hang-4.log || fail "the hanging program did not start"
trainer_pid=$(pgrep -f "test_exec_trainer_fake.py hang" | head -1)
[ -n "$trainer_pid" ] || fail "no trainer process found"
kill -TERM "$agent"
set +e
wait "$agent"
code=$?
set -e
[ $code = 0 ] || fail "the client exited $code on SIGTERM"
wait_for 10 bash -c "! kill -0 $trainer_pid 2>/dev/null || grep -q '^State:.*Z' /proc/$trainer_pid/status" \
  || fail "the trainer outlived the client"
echo "exec trainer scenarios passed"
