#!/usr/bin/env bash
# federa-client doctor, on a member's setup laid out as /etc/federa (config file with paths
# relative to it, the key from a credentials folder through --key-file):
#   1. a good setup passes, one "ok" line per check, and the test connection leaves the
#      coordinator with no ready client (it sends no Hello);
#   2. each broken setup prints the expected FAIL line and exits 1: expired certificate,
#      certificate from another CA (the kit's ca.pem, and a whole kit of another federation),
#      key of another kit, unreachable coordinator, unresolvable name, a name the coordinator
#      does not admit, unreadable data; a certificate 10 days from expiry only warns;
#   3. with the agent running on the same config or kit, doctor skips the test connection
#      instead of replacing the agent's, which stays connected; another member's setup is still
#      tested; the agent's SIGTERM exits 0.
# Usage: client_doctor.sh BUILD_DIR (needs openssl and python3)
set -euo pipefail
source "$(dirname "$0")/../integration/lib.sh" "$1" federa-client-doctor
source "$(dirname "$0")/lib.sh"
cd "$work"

echo "== setup as in /etc/federa"
"$pki_tool" init --dir pki >/dev/null
for c in site-a site-b; do "$pki_tool" issue --dir pki --client "$c" >/dev/null; done
"$pki_tool" init --dir other >/dev/null
"$pki_tool" issue --dir other --client site-a >/dev/null
printf 'site-a\nsite-soon\n' >members
python3 -c 'import random; random.seed(2); print("a,b,c,d,y"); [print(",".join(f"{random.random():.3f}" for _ in range(4)) + f",{i % 2}") for i in range(120)]' >table.csv
mkdir -p etc creds
cp -r pki/clients/site-a etc/kit
install -m 0400 etc/kit/key.pem creds/client-key.pem && rm etc/kit/key.pem  # as LoadCredential= leaves it
P=$(port)
cat >etc/client.json <<EOF
{
  "coordinator": "127.0.0.1:$P",
  "kit": "kit",
  "data": "csv:../table.csv:label=y",
  "retry-max": 1
}
EOF
base=(--config etc/client.json --key-file creds/client-key.pem)
"$coordinator" --pki pki --members members --listen "127.0.0.1:$P" --model softmax:4,2 --rounds 1 \
  --min-clients 2 --state-dir state --threads 2 --log-level debug >coordinator.out.log 2>coordinator.log &
coord=$!
pids+=("$coord")
wait_for 20 grep -qs "listening on" coordinator.log || fail "coordinator did not start"

echo "== doctor: good setup"
doctor_expect "$client" 0 '^all checks passed' "${base[@]}"
for check in config kit certificate expiry ca-expiry key coordinator reach tls member data; do
  grep -Eq "^ok    $check " doctor.log || fail "no ok line for $check"
done
grep -q "^FAIL\|^WARN" doctor.log && fail "a good setup has a FAIL or WARN line"
grep -q "120 examples, 4 features, 2 classes" doctor.log || fail "the data line does not describe table.csv"
wait_for 10 grep -q "client 'site-a' disconnected" coordinator.log || fail "the test connection did not close"
grep -q "client 'site-a' joined" coordinator.log && fail "doctor's test connection joined the federation"

echo "== doctor: broken setups"
sign site-a -1 clientAuth expired
doctor_expect "$client" 1 '^FAIL  expiry .*expired on .*-> fix: ask the central team for a renewed kit' \
  --config etc/client.json --kit "$work/expired"
grep -q '^FAIL  certificate .*certificate has expired' doctor.log || fail "the chain line does not say expired"

mkdir -p mixed && cp pki/clients/site-a/{cert,key}.pem mixed/ && cp other/ca.pem mixed/
doctor_expect "$client" 1 '^FAIL  certificate .*not signed by the CA.*-> fix: .*different federations' \
  --config etc/client.json --kit "$work/mixed"
doctor_expect "$client" 1 "^FAIL  tls .*-> fix: install the kit the central team issued" \
  --config etc/client.json --kit "$work/other/clients/site-a"

doctor_expect "$client" 1 '^FAIL  key .*does not match' --config etc/client.json --key-file pki/clients/site-b/key.pem

Q=$(port)
doctor_expect "$client" 1 "^FAIL  reach .*cannot connect to 127.0.0.1:$Q: Connection refused" \
  "${base[@]}" --coordinator "127.0.0.1:$Q"
doctor_expect "$client" 1 '^FAIL  coordinator .*cannot resolve federa-doctor-test.invalid' \
  "${base[@]}" --coordinator federa-doctor-test.invalid:8443

doctor_expect "$client" 1 "^FAIL  member .*refuses 'site-b': 'site-b' is not a member.*-> fix: ask the central team to add 'site-b'" \
  --config etc/client.json --kit "$work/pki/clients/site-b"

doctor_expect "$client" 1 '^FAIL  data .*nothing.csv' "${base[@]}" --data csv:nothing.csv:label=y

sign site-soon 10 clientAuth soon
doctor_expect "$client" 0 '^WARN  expiry .*in 9 days' --config etc/client.json --kit "$work/soon"

echo "== doctor beside the running agent"
"$client" "${base[@]}" >agent.out.log 2>agent.log &
agent=$!
pids+=("$agent")
wait_for 20 grep -q "client 'site-a' joined" coordinator.log || fail "the agent did not join"
doctor_expect "$client" 0 "^skip  coordinator .*federa-client \(pid $agent\) runs here with this config or kit" "${base[@]}"
# Another member's setup is not the agent's: its test connection runs.
sed 's|"kit": "kit"|"kit": "../pki/clients/site-b"|' etc/client.json >etc/site-b.json
doctor_expect "$client" 1 "^FAIL  member .*refuses 'site-b'" --config etc/site-b.json
grep -q "client 'site-a' reconnected" coordinator.log && fail "doctor replaced the agent's connection"
kill -0 "$agent" || fail "the agent exited"
kill -TERM "$agent"
expect_exit "$agent" 0 "the agent after SIGTERM"
echo "client_doctor: all checks passed"
