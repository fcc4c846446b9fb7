#!/usr/bin/env bash
# The installed programs as a user runs them: federa-pki, federa-coordinator, federa-client.
#   1. refusals at the TLS handshake (no certificate, TLS 1.2 only) and an HTTP error for a
#      non-WebSocket request, with the coordinator still serving afterwards;
#   2. SIGKILL of the coordinator mid-federation, restart with --resume: every round is in the
#      metrics exactly once, the clients reconnect on their own and finish;
#   3. a member removed from --members at the restart is refused and its client exits 3.
# Usage: cli_scenarios.sh BUILD_DIR
set -euo pipefail
source "$(dirname "$0")/lib.sh" "$1" federa-cli
cd "$work"

echo "== PKI"
"$pki_tool" init --dir pki >/dev/null
for c in a b c; do "$pki_tool" issue --dir pki --client "site-$c" >/dev/null; done
"$pki_tool" init --dir pki >/dev/null 2>&1 && fail "init overwrote an existing CA"
"$pki_tool" issue --dir pki --client site-a >/dev/null 2>&1 && fail "issue overwrote an existing client"
[ "$(stat -c %a pki/clients/site-a/key.pem)" = 600 ] || fail "client key is not mode 0600"

P=$(port)
common=(--pki pki --listen "127.0.0.1:$P" --model mlp:784,32,10 --lr 0.1 --momentum 0 --local-epochs 2
        --round-timeout 60 --state-dir state --metrics-out metrics.jsonl --threads 2)
start_coordinator() {
  "$coordinator" "${common[@]}" "$@" >>coordinator.out 2>>coordinator.log &
  coord=$!
  pids+=("$coord")
  wait_for 20 grep -q "listening on" coordinator.log || fail "coordinator did not start"
}

echo "== handshake refusals"
start_coordinator --rounds 6 --min-clients 3
# No client certificate.
echo | timeout 10 openssl s_client -connect "127.0.0.1:$P" -CAfile pki/ca.pem -tls1_3 >nocert.log 2>&1 <<<'' || true
# TLS 1.2 only, even with a valid certificate.
echo | timeout 10 openssl s_client -connect "127.0.0.1:$P" -CAfile pki/ca.pem -tls1_2 \
  -cert pki/clients/site-a/cert.pem -key pki/clients/site-a/key.pem >tls12.log 2>&1 || true
grep -q "^New, TLSv1.2" tls12.log && fail "TLS 1.2 was not refused"
# Garbage bytes on the TLS port.
head -c 4096 /dev/urandom | timeout 5 bash -c "cat > /dev/tcp/127.0.0.1/$P" 2>/dev/null || true
# An authenticated peer asking for something other than the WebSocket endpoint gets an HTTP error.
printf 'GET /admin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' |
  timeout 10 openssl s_client -quiet -connect "127.0.0.1:$P" -CAfile pki/ca.pem \
    -cert pki/clients/site-a/cert.pem -key pki/clients/site-a/key.pem >http.log 2>&1 || true
grep -q "HTTP/1.1 404" http.log || fail "non-WebSocket request did not get 404"
kill -0 "$coord" || fail "coordinator died after bad peers"
grep -q "no verified client certificate\|TLS handshake failed" coordinator.log || fail "refusals not logged"

echo "== federation, SIGKILL mid-run, --resume"
for c in a b c; do
  "$client" --coordinator "127.0.0.1:$P" --kit "pki/clients/site-$c" --data fashion-mnist \
    --partition-index "$(( $(printf '%d' "'$c") - 97 ))" --partition-count 10 --retry-max 1 --give-up-after 90 --once \
    >/dev/null 2>"client-$c.log" &
  pids+=("$!")
  eval "client_$c=$!"
done
wait_for 120 bash -c "[ \$(wc -l < metrics.jsonl 2>/dev/null || echo 0) -ge 1 ]" || fail "no round committed"
kill -9 "$coord" || fail "the coordinator finished before it could be killed mid-run"
wait "$coord" 2>/dev/null || true
committed=$(python3 -c 'import json;print(json.load(open("state/state.json"))["round"])')
echo "   killed after committed round $committed"
[ "$committed" -lt 6 ] || fail "the federation finished before the kill; nothing was resumed"
# Restart without site-c in the member list: it must be refused and exit 3.
printf 'site-a\nsite-b\n' > members.txt
"$coordinator" "${common[@]}" --min-clients 2 --rounds 6 --resume --members members.txt \
  >>coordinator.out 2>>coordinator.log &
coord=$!
pids+=("$coord")
wait "$coord" || fail "resumed coordinator failed"
wait "$client_a" || fail "site-a did not exit 0"
wait "$client_b" || fail "site-b did not exit 0"
set +e
wait "$client_c"
code_c=$?
set -e
[ "$code_c" = 3 ] || fail "revoked site-c exited $code_c, expected 3"
grep -q "not a member" client-c.log || fail "site-c was not told why"
rounds=$(python3 -c '
import json
rs=[json.loads(l)["round"] for l in open("metrics.jsonl") if l.strip()]
print(" ".join(map(str,rs)))')
[ "$rounds" = "1 2 3 4 5 6" ] || fail "metrics rounds are '$rounds', expected each of 1..6 once"
python3 - <<'PY' || fail "global.safetensors is not a valid safetensors file"
import json, struct
b = open("state/global.safetensors", "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
assert h["__metadata__"]["federa.round"] == "6", h["__metadata__"]
assert "fc1.weight" in h and h["fc1.weight"]["dtype"] == "F32"
PY
echo "cli scenarios: 1 passed, 0 failed"
