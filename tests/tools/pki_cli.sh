#!/usr/bin/env bash
# federa-pki as an operator runs it: every command's --help, exit codes (0 done, 1 refused with
# a reason, 2 usage), what lands on stdout and on disk for issue/renew/list/token.
#   tests/tools/pki_cli.sh build/tools/federa-pki
set -euo pipefail
pki=$(realpath "${1:?usage: pki_cli.sh PATH/TO/federa-pki}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
fail() { echo "FAIL: $*" >&2; exit 1; }
# expect CODE PATTERN CMD...: CMD exits with CODE and its stderr+stdout match PATTERN.
expect() {
  local code=$1 pattern=$2; shift 2
  local out rc=0
  out=$("$@" 2>&1) || rc=$?
  [ "$rc" = "$code" ] || fail "'$*' exited $rc, expected $code: $out"
  grep -qE -- "$pattern" <<<"$out" || fail "'$*' said '$out', expected /$pattern/"
}

for cmd in init issue renew list token verify issue-coordinator; do
  expect 0 "usage: federa-pki $cmd" "$pki" "$cmd" --help
done
expect 0 "renew" "$pki" --help
expect 2 "unknown command" "$pki" frobnicate
expect 2 "required" "$pki" init

"$pki" init --dir pki >/dev/null
"$pki" issue --dir pki --client hospital-a >/dev/null
expect 0 "role operator" "$pki" issue --dir pki --admin alice --role operator
expect 2 "needs --role" "$pki" issue --dir pki --admin bob
expect 2 "goes with --admin" "$pki" issue --dir pki --client bob --role viewer
expect 2 "exactly one of --client" "$pki" issue --dir pki --client a --admin b --role viewer
expect 2 "unknown admin role 'root'" "$pki" issue --dir pki --admin bob --role root
expect 1 "already has a kit" "$pki" issue --dir pki --admin alice --role viewer
[ "$(stat -c %a pki/admins/alice/key.pem)" = 600 ] || fail "admin key is not 0600"

# renew: same name, new serial, the same CA verifies it.
before=$(openssl x509 -in pki/clients/hospital-a/cert.pem -noout -serial)
expect 0 "renewed 'hospital-a'" "$pki" renew --dir pki --client hospital-a
after=$(openssl x509 -in pki/clients/hospital-a/cert.pem -noout -serial)
[ "$before" != "$after" ] || fail "renew kept the serial"
expect 0 "common name: hospital-a" "$pki" verify --dir pki --cert pki/clients/hospital-a/cert.pem
expect 0 "administrator.*operator" "$pki" verify --dir pki --cert pki/admins/alice/cert.pem
expect 1 "no kit at" "$pki" renew --dir pki --client nobody
expect 2 "exactly one of" "$pki" renew --dir pki
expect 0 "coordinator's kit" "$pki" renew --dir pki --coordinator

# token: the token alone on stdout, only its hash on disk.
token=$("$pki" token --dir pki --name prometheus --role viewer 2>/dev/null)
[[ "$token" =~ ^fdt_[0-9a-f]{64}$ ]] || fail "token '$token' is not fdt_ + 64 hex digits"
[ "$(stat -c %a pki/admin-tokens)" = 600 ] || fail "admin-tokens is not 0600"
grep -q "${token#fdt_}" pki/admin-tokens && fail "the token itself was written to disk"
hash=$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)
grep -qx "sha256:$hash viewer prometheus" pki/admin-tokens || fail "admin-tokens lacks the hash line"
expect 1 "may only contain" "$pki" token --dir pki --name "a b" --role viewer
expect 1 "holds no federation PKI" "$pki" token --dir nowhere --name x --role viewer

# list: a table, and JSON a program can read.
expect 0 "hospital-a +client" "$pki" list --dir pki
expect 0 "admin/operator" "$pki" list --dir pki
"$pki" list --dir pki --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
kinds = {c["name"]: c["kind"] for c in d["certificates"]}
assert kinds == {"federa federation CA": "ca", "coordinator": "coordinator",
                 "hospital-a": "client", "alice": "admin"}, kinds
assert all(c["problem"] == "" and c["days_left"] > 300 for c in d["certificates"]), d
assert d["tokens"] == [{"name": "prometheus", "role": "viewer"}], d["tokens"]
' || fail "list --json"
expect 1 "does not exist" "$pki" list --dir nowhere
echo "federa-pki CLI: all checks passed"
