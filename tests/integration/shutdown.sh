#!/usr/bin/env bash
# federa-coordinator's exit codes as an operator sees them (issue 9, defect 1): a failed job
# exits 1, a SIGTERM or SIGINT during rounds exits 0 with the last committed round kept, bad
# flags exit 2, SIGHUP does not kill it -- and never 134 (abort) or 139 (SIGSEGV), which is what
# a teardown in the wrong order produced. Each case runs several times: the crashes were races.
# Usage: shutdown.sh BUILD_DIR [REPEATS]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" "$1" federa-shutdown
repeats="${2:-4}"
# Waits for PID (a child of this shell) and sets $s to its exit status.
status_of() {
  s=0
  wait "$1" || s=$?
}
cd "$work"
"$pki_tool" init --dir pki >/dev/null
for c in a b; do "$pki_tool" issue --dir pki --client "site-$c" >/dev/null; done
[ -d /usr/share/datasets/fashion-mnist ] || { echo "SKIP: Fashion-MNIST is not installed"; exit 77; }

start_client() {  # start_client NAME PORT INDEX
  "$client" --coordinator "127.0.0.1:$2" --kit "pki/clients/site-$1" --data fashion-mnist \
    --partition-index "$3" --partition-count 20 --retry-max 1 --give-up-after 30 --once \
    >/dev/null 2>>"client-$1.log" &
  pids+=("$!")
}

echo "== bad flags exit 2"
for args in "--rounds nope" "--pki pki --fraction-fit 2" "--no-such-flag"; do
  # shellcheck disable=SC2086
  s=0; "$coordinator" $args >/dev/null 2>bad.log || s=$?
  [ "$s" = 2 ] || fail "federa-coordinator $args exited $s, expected 2"
done

echo "== a failed job exits 1 ($repeats + 1 times)"
for i in $(seq 1 $((repeats + 1))); do
  P=$(port)
  rm -rf "state-f$i"
  # Two clients join; no one can train 20 epochs within a 50 ms round, so every attempt fails
  # while both sessions are open and busy (the teardown closes live sessions).
  "$coordinator" --pki pki --listen "127.0.0.1:$P" --model mlp:784,32,10 --rounds 2 --min-clients 2 \
    --local-epochs 20 --round-timeout 0.05 --round-retries 1 --state-dir "state-f$i" \
    --threads 2 >/dev/null 2>"failed-$i.log" &
  coord=$!
  pids+=("$coord")
  wait_for 20 grep -qs "listening on" "failed-$i.log" || fail "coordinator $i did not start"
  start_client a "$P" 0
  start_client b "$P" 1
  status_of "$coord"
  [ "$s" = 1 ] || fail "failed job $i exited $s, expected 1"
  grep -q "round [0-9]* failed" "failed-$i.log" || fail "failed job $i did not say why"
done

echo "== SIGTERM/SIGINT during rounds exits 0 ($repeats times each), SIGHUP does not kill"
for sig in TERM INT; do
  for i in $(seq 1 "$repeats"); do
    P=$(port)
    rm -rf "state-$sig$i"
    "$coordinator" --pki pki --listen "127.0.0.1:$P" --model mlp:784,128,10 --rounds 50 --min-clients 2 \
      --round-timeout 60 --state-dir "state-$sig$i" --threads 2 >/dev/null 2>"term-$sig$i.log" &
    coord=$!
    pids+=("$coord")
    wait_for 20 grep -qs "listening on" "term-$sig$i.log" || fail "coordinator $sig$i did not start"
    start_client a "$P" 0
    start_client b "$P" 1
    # Land the signal in a different phase each time: training, upload, aggregation, commit.
    wait_for 60 grep -qs "round $i/50: training" "term-$sig$i.log" || fail "round $i of $sig$i never started"
    if [ "$sig" = TERM ] && [ "$i" = 1 ]; then
      kill -HUP "$coord"
      sleep 0.2
      kill -0 "$coord" 2>/dev/null || fail "SIGHUP killed the coordinator"
      grep -q "SIGHUP" "term-$sig$i.log" || fail "SIGHUP was not acknowledged"
    fi
    sleep "0.$((RANDOM % 10))"
    kill "-$sig" "$coord"
    status_of "$coord"
    [ "$s" = 0 ] || fail "SIG$sig $i exited $s, expected 0"
    grep -q "stopped after" "term-$sig$i.log" || fail "SIG$sig $i: no 'stopped after' line"
  done
done
for f in *.log; do
  if grep -q "corrupted\|double free\|Segmentation\|terminate called" "$f"; then fail "$f shows a crash"; fi
done
echo "shutdown: exit codes 0/1/2 as documented, no crash in $((3 * repeats + 1)) runs"
