#!/usr/bin/env bash
# Unauthenticated connections must not exhaust the coordinator (issue 9, defect 5). Before the
# fix, 300 idle TCP connections against a coordinator allowed 200 file descriptors made its
# acceptor spin on EMFILE (3.7 million "accept failed" lines in 25 s) and a member's handshake
# waited 8 s. Here, under `prlimit --nofile=200`:
#   - 300 idle TCP connections are opened and held, then a member joins and a round completes;
#   - the log stays small (refusals and accept errors rate-limited);
#   - a second wave of 300 while the member is connected does not disturb it.
# Usage: connection_flood.sh BUILD_DIR
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" "$1" federa-flood
command -v prlimit >/dev/null || { echo "SKIP: prlimit (util-linux) is not installed"; exit 77; }
[ -d /usr/share/datasets/fashion-mnist ] || { echo "SKIP: Fashion-MNIST is not installed"; exit 77; }
cd "$work"
"$pki_tool" init --dir pki >/dev/null
"$pki_tool" issue --dir pki --client site-a >/dev/null

# Opens N TCP connections, says how many it holds, keeps them idle until killed.
cat > hold.py <<'PY'
import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
held = []
for _ in range(n):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        held.append(s)
    except OSError:
        pass
print(len(held), flush=True)
while True:
    time.sleep(60)
PY

P=$(port)
prlimit --nofile=200:200 "$coordinator" --pki pki --listen "127.0.0.1:$P" --model mlp:784,128,10 --rounds 4 \
  --local-epochs 4 --min-clients 1 --round-timeout 60 --state-dir state --threads 2 >/dev/null 2>coordinator.log &
coord=$!
pids+=("$coord")
wait_for 20 grep -qs "listening on" coordinator.log || fail "coordinator did not start"
grep -q "at most [0-9]* client connections" coordinator.log || fail "the descriptor budget was not applied"

echo "== 300 idle connections"
python3 hold.py "$P" 300 >hold1.out 2>hold1.log &
pids+=("$!")
wait_for 30 grep -qs . hold1.out || fail "the idle connections were not made"
echo "   held $(cat hold1.out) connections"
kill -0 "$coord" || fail "the coordinator died under 300 idle connections"

echo "== a member joins through them"
start=$(date +%s.%N)
"$client" --coordinator "127.0.0.1:$P" --kit pki/clients/site-a --data fashion-mnist --partition-count 10 \
  --retry-max 1 --give-up-after 60 --once >/dev/null 2>client.log &
member=$!
pids+=("$member")
wait_for 60 grep -qs "client 'site-a' joined" coordinator.log || fail "the member never joined"
joined=$(date +%s.%N)
echo "   joined after $(python3 -c "print(round($joined - $start, 2))") s"

echo "== a second wave while it trains"
python3 hold.py "$P" 300 >hold2.out 2>hold2.log &
pids+=("$!")
wait_for 30 grep -qs . hold2.out || fail "the second wave was not made"
echo "   held $(cat hold2.out) more"
grep -q "round 4/4" coordinator.log && echo "   (the last round had started before the wave: it came late)"
s=0
wait "$member" || s=$?
[ "$s" = 0 ] || fail "the member exited $s"
s=0
wait "$coord" || s=$?
[ "$s" = 0 ] || fail "the coordinator exited $s"

lines=$(wc -l < coordinator.log)
accept=$(grep -c "accept failed" coordinator.log || true)
refused=$(grep -c "refused" coordinator.log || true)
echo "   coordinator log: $lines lines ($accept 'accept failed', $refused refusals)"
[ "$accept" -le 10 ] || fail "$accept 'accept failed' lines: the acceptor is not backing off"
[ "$lines" -le 200 ] || fail "$lines log lines for 600 idle connections"
echo "connection flood: the member joined and every round completed under 2 x 300 idle connections"
