#!/usr/bin/env bash
# federa-client as a long-lived agent (a service), driven as systemd would run it:
#   1. it takes its kit from a --config file whose relative paths are relative to that file;
#   2. with JOURNAL_STREAM naming its stderr, log lines carry syslog priorities, no timestamps,
#      and stdout stays empty;
#   3. it survives two consecutive federations (jobs) and a coordinator SIGKILL + --resume
#      without exiting, training in each;
#   4. SIGTERM closes the connection and exits 0.
# Usage: client_agent.sh BUILD_DIR
set -euo pipefail
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  echo "skipped: Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)"; exit 77
fi
source "$(dirname "$0")/lib.sh" "$1" federa-agent
lines() { if [ -f "$1" ]; then wc -l < "$1"; else echo 0; fi; }
cd "$work"

"$pki_tool" init --dir pki >/dev/null
"$pki_tool" issue --dir pki --client site-a >/dev/null
# The agent's configuration lives in its own folder, with the kit beside it, as in /etc/federa.
mkdir -p etc
cp -r pki/clients/site-a etc/kit
P=$(port)
cat > etc/client.json <<JSON
{"coordinator": "127.0.0.1:$P", "kit": "kit", "data": "fashion-mnist",
 "partition-count": 20, "partition-index": 3, "retry-max": 1}
JSON

common=(--pki pki --listen "127.0.0.1:$P" --model mlp:784,16,10 --lr 0.1 --momentum 0 --local-epochs 1
        --min-clients 1 --round-timeout 60 --threads 2)
coord=""
start_coordinator() {  # start_coordinator JOB [flags]: logs to coordinator-JOB.log
  local job=$1; shift
  "$coordinator" "${common[@]}" --state-dir "state-$job" --metrics-out "metrics-$job.jsonl" "$@" \
    >>"coordinator-$job.out" 2>>"coordinator-$job.log" &
  coord=$!
  pids+=("$coord")
  wait_for 20 grep -q "listening on" "coordinator-$job.log" || fail "coordinator ($job) did not start"
}

echo "== agent started from a --config file in another folder, logging to the journal"
: > agent.log
# Started from the work folder: "kit" must resolve to etc/kit, not ./kit (which does not exist).
JOURNAL_STREAM="$(stat -c '%d:%i' agent.log)" "$client" --config etc/client.json >agent.out 2>>agent.log &
agent=$!
pids+=("$agent")

echo "== job 1"
start_coordinator 1 --rounds 2
wait "$coord" || fail "job 1 failed"
[ "$(lines metrics-1.jsonl)" = 2 ] || fail "job 1 did not commit 2 rounds"
sleep 1
kill -0 "$agent" 2>/dev/null || fail "the agent exited after the first federation"

echo "== job 2"
start_coordinator 2 --rounds 2
wait "$coord" || fail "job 2 failed"
[ "$(lines metrics-2.jsonl)" = 2 ] || fail "job 2 did not commit 2 rounds"
kill -0 "$agent" 2>/dev/null || fail "the agent exited after the second federation"
[ "$(grep -c 'federation complete' agent.log)" -ge 2 ] || fail "the agent did not see both federations complete"

echo "== job 3: coordinator SIGKILL mid-job, restart with --resume"
start_coordinator 3 --rounds 40
wait_for 120 bash -c "[ \$(wc -l < metrics-3.jsonl 2>/dev/null || echo 0) -ge 1 ]" || fail "job 3 committed no round"
kill -9 "$coord"
wait "$coord" 2>/dev/null || true
committed=$(python3 -c 'import json;print(json.load(open("state-3/state.json"))["round"])')
[ "$committed" -lt 40 ] || fail "job 3 finished before the kill"
sleep 2
kill -0 "$agent" 2>/dev/null || fail "the agent exited when the coordinator died"
start_coordinator 3 --rounds 40 --resume
wait "$coord" || fail "the resumed job 3 failed"
[ "$(lines metrics-3.jsonl)" = 40 ] || fail "job 3 did not end with 40 rounds in its metrics"
kill -0 "$agent" 2>/dev/null || fail "the agent exited after the resumed federation"
trained=$(grep -c "trained in" agent.log || true)
[ "$trained" -ge $((2 + 2 + 40 - committed)) ] || fail "the agent trained only $trained times"

echo "== SIGTERM"
kill -TERM "$agent"
set +e
for _ in $(seq 1 100); do kill -0 "$agent" 2>/dev/null || break; sleep 0.1; done
wait "$agent"
code=$?
set -e
[ "$code" = 0 ] || fail "SIGTERM: the agent exited $code, expected 0"

echo "== journal format and streams"
[ -s agent.out ] && fail "the agent wrote to stdout: $(head -c 200 agent.out)"
grep -q '^<6>joined federation' agent.log || fail "no '<6>' info line in the journal log"
grep -q '^<4>' agent.log || fail "no '<4>' warning line (the coordinator's disappearance) in the journal log"
grep -v -q '^<[0-7]>' agent.log && fail "a log line without a syslog priority: $(grep -v '^<[0-7]>' agent.log | head -1)"
grep -q -E '^<[0-7]>[0-9]{4}-[0-9]{2}-[0-9]{2}' agent.log && fail "journal lines carry a timestamp"
grep -q 'SIGTERM: closing the connection' agent.log || fail "SIGTERM was not logged"
echo "client agent: 1 passed, 0 failed"
