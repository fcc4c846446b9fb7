#!/usr/bin/env bash
# federa-coordinator as its systemd unit runs it, and its doctor:
#   1. doctor on a good setup (config file as /etc/federa/coordinator.json, key from a
#      credentials folder through --key-file) passes, one "ok" line per check;
#   2. doctor on each broken setup prints the expected FAIL line and exits 1: bad config key,
#      expired certificate, certificate from another CA, key of another kit, key others may
#      read, PKI files missing, empty member list, listen address in use, unwritable state
#      folder (probed as another user when root), a committed federation without --resume or of
#      another model; a certificate 10 days from expiry only warns;
#   3. the service itself: its certificate close to expiry and a member's (seen at the member's
#      TLS handshake) are warned about in the log; SIGHUP re-reads the members; SIGTERM exits 0.
# Usage: coordinator_service.sh BUILD_DIR (needs openssl and python3)
set -euo pipefail
source "$(dirname "$0")/../integration/lib.sh" "$1" federa-service
source "$(dirname "$0")/lib.sh"
cd "$work"

echo "== setup as in /etc/federa"
"$pki_tool" init --dir pki >/dev/null
"$pki_tool" issue --dir pki --client site-a >/dev/null
"$pki_tool" init --dir other >/dev/null
mkdir -p creds && install -m 0400 pki/coordinator/key.pem creds/coordinator-key.pem
rm pki/coordinator/key.pem   # the service reads the key only from its credential
printf 'site-a\nsite-x\n' >members
P=$(port)
cat >coordinator.json <<EOF
{
  "pki": "$work/pki",
  "members": "$work/members",
  "listen": "127.0.0.1:$P",
  "state-dir": "$work/state/coordinator",
  "resume": true,
  "metrics-out": "$work/state/metrics.jsonl",
  "rounds": 3, "min-clients": 1, "model": "mlp:784,16,10", "device": "cpu", "threads": 2
}
EOF
mkdir -p state
conf=(--config coordinator.json)
base=("${conf[@]}" --key-file creds/coordinator-key.pem)

echo "== doctor: good setup"
doctor_expect "$coordinator" 0 '^all checks passed' "${base[@]}"
for check in config pki certificate expiry ca-expiry key tls members listen state-dir state metrics-out model device; do
  grep -Eq "^ok    $check " doctor.log || fail "no ok line for $check"
done
grep -q "^FAIL\|^WARN" doctor.log && fail "a good setup has a FAIL or WARN line"

echo "== doctor: broken setups"
echo '{ "pki": "pki", "bogus": 1 }' >bad.json
doctor_expect "$coordinator" 1 "^FAIL  config .*unknown key 'bogus'" --config bad.json
doctor_expect "$coordinator" 1 "^FAIL  pki .*'$work/nowhere/ca.pem', '$work/nowhere/coordinator/cert.pem' missing -> fix: install" \
  "${base[@]}" --pki "$work/nowhere"
printf '# nobody yet\n' >empty-members
doctor_expect "$coordinator" 1 "^FAIL  members .*lists no client names" "${base[@]}" --members empty-members
grep -q '^ok    state ' doctor.log || fail "an empty member list hid the other checks"

sign coordinator -1 serverAuth expired IP:127.0.0.1
mkdir -p expired-pki/coordinator && cp pki/ca.pem expired-pki/ && cp expired/cert.pem expired-pki/coordinator/
doctor_expect "$coordinator" 1 '^FAIL  expiry .*expired on .* -> fix: federa-pki renew' "${conf[@]}" --pki expired-pki --key-file expired/key.pem
grep -q '^ok    key ' doctor.log || fail "the expired kit's key still matches"

mkdir -p wrong-ca/coordinator && cp other/ca.pem wrong-ca/ && cp pki/coordinator/cert.pem wrong-ca/coordinator/
doctor_expect "$coordinator" 1 '^FAIL  certificate .*not signed by the CA.*-> fix: .*different federations' "${base[@]}" --pki wrong-ca

doctor_expect "$coordinator" 1 '^FAIL  key .*does not match' "${conf[@]}" --key-file pki/clients/site-a/key.pem

install -m 0644 creds/coordinator-key.pem loose-key.pem
doctor_expect "$coordinator" 1 '^FAIL  key .*has mode 0644.*-> fix: chmod 600' "${conf[@]}" --key-file loose-key.pem

# The squatter takes a port the kernel picks and says which: a port chosen ahead (as $P was)
# may meanwhile be taken by a test running in parallel, and then the squatter cannot start.
rm -f squat-port
python3 -c 'import socket,time,sys; s=socket.socket(); s.bind(("127.0.0.1",0)); s.listen(); open(sys.argv[1]+".tmp","w").write(str(s.getsockname()[1])); __import__("os").rename(sys.argv[1]+".tmp",sys.argv[1]); time.sleep(60)' squat-port &
squatter=$!
pids+=("$squatter")
wait_for 10 test -s squat-port || fail "the port squatter did not start"
SQ=$(cat squat-port)
doctor_expect "$coordinator" 1 "^FAIL  listen .*cannot listen on 127.0.0.1:$SQ" "${base[@]}" --listen "127.0.0.1:$SQ"
kill "$squatter"; wait "$squatter" 2>/dev/null || true

mkdir -p locked && chmod 0555 locked
if [ "$(id -u)" = 0 ]; then
  # Root writes anywhere; doctor probes as the unit's user (here nobody) the way the service runs.
  doctor_expect "$coordinator" 1 "^FAIL  state-dir .*not writable for user nobody" "${base[@]}" --state-dir locked/state --service-user nobody
else
  doctor_expect "$coordinator" 1 "^FAIL  state-dir .*not writable for this user" "${base[@]}" --state-dir locked/state
fi

sign coordinator 10 serverAuth soon IP:127.0.0.1
mkdir -p soon-pki/coordinator && cp pki/ca.pem soon-pki/ && cp soon/cert.pem soon-pki/coordinator/
doctor_expect "$coordinator" 0 '^WARN  expiry .*in 9 days' "${conf[@]}" --pki soon-pki --key-file soon/key.pem

echo "== the service: expiry warnings, SIGHUP, SIGTERM"
"$coordinator" "${conf[@]}" --pki soon-pki --key-file soon/key.pem >service.out.log 2>service.log &
coord=$!
pids+=("$coord")
wait_for 20 grep -qs "listening on" service.log || fail "coordinator did not start"
grep -q "the coordinator's certificate .* expires on .*in 9 days.*federa-pki renew --dir soon-pki --coordinator" service.log ||
  fail "no warning about the coordinator's own certificate"
sign site-x 10 clientAuth member-x
echo | timeout 10 openssl s_client -connect "127.0.0.1:$P" -CAfile pki/ca.pem -tls1_3 \
  -cert member-x/cert.pem -key member-x/key.pem >member-x.log 2>&1 || true
wait_for 10 grep -q "member 'site-x': its certificate expires on .*in 9 days" service.log ||
  fail "no warning about member site-x's certificate at its handshake"
printf 'site-a\n' >members
kill -HUP "$coord"
wait_for 10 grep -q "SIGHUP: 1 members reloaded" service.log || fail "SIGHUP did not reload the members"
kill -0 "$coord" || fail "SIGHUP stopped the coordinator"
kill -TERM "$coord"
expect_exit "$coord" 0 "the coordinator after SIGTERM (systemd counts anything else as a failed stop)"
grep -q "signal 15: stopping" service.log || fail "SIGTERM was not logged"

echo "== doctor: a committed federation"
# A small table instead of Fashion-MNIST: 4 features, 2 classes.
python3 -c 'import random; random.seed(1); print("a,b,c,d,y"); [print(",".join(f"{random.random():.3f}" for _ in range(4)) + f",{i % 2}") for i in range(200)]' >table.csv
"$coordinator" "${base[@]}" --rounds 1 --model softmax:4,2 >run.out.log 2>run.log &
coord=$!
pids+=("$coord")
wait_for 20 grep -qs "listening on" run.log || fail "coordinator did not start"
"$client" --coordinator "127.0.0.1:$P" --kit pki/clients/site-a --data csv:table.csv:label=y --retry-max 1 \
  >client.out.log 2>client.log &
client=$!
pids+=("$client")
expect_exit "$coord" 0 "the one-round job"
kill "$client" 2>/dev/null || true
doctor_expect "$coordinator" 0 '^WARN  state .*holds round 1 of 1: the job is complete' "${base[@]}" --rounds 1 \
  --model softmax:4,2
doctor_expect "$coordinator" 0 '^ok    state .*holds round 1; --resume continues at round 2' "${base[@]}" --model softmax:4,2
grep -v '"resume"' coordinator.json >no-resume.json
doctor_expect "$coordinator" 1 '^FAIL  state .*holds round 1 and --resume is off: the coordinator refuses to start' \
  --config no-resume.json --key-file creds/coordinator-key.pem --model softmax:4,2
doctor_expect "$coordinator" 1 '^FAIL  state .*of --model softmax:4,2, not mlp:784,16,10' "${base[@]}"
echo "coordinator_service: all checks passed"
