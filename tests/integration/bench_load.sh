#!/usr/bin/env bash
# federa-bench load at a small size, so the tool behind issue 9's load figures keeps working: a
# real coordinator, 3 members, 2 rounds; the result line carries every field the docs promise and
# says every update was accepted; the two references (openssl speed, one bare TLS stream over
# 127.0.0.1) are measured and the ratios to them reported; bad flags exit 2.
# Usage: bench_load.sh BUILD_DIR
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" "$1" federa-bench-load
bench="$build/tools/federa-bench"
command -v openssl >/dev/null || { echo "SKIP: the openssl program is not installed"; exit 77; }
cd "$work"

rc=0
"$bench" load --clients 0 >out.txt 2>err.txt || rc=$?
[ "$rc" = 2 ] || fail "--clients 0 exited $rc, expected 2"
grep -q "must be positive" err.txt || fail "--clients 0 said: $(cat err.txt)"

rc=0
"$bench" load --clients 3 --params 1000 --rounds 2 --aes-seconds 1 --tls-stream-mb 16 \
  --work run --json >result.json 2>bench.log || rc=$?
[ "$rc" = 0 ] || fail "federa-bench load exited $rc: $(tail -n 20 bench.log)"
grep -q "one TLS stream over 127.0.0.1" bench.log || fail "no reference stream in the log"

python3 - result.json <<'PY' || fail "see above"
import json, sys
r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
need = ["round_ms", "ingest_gbps", "coordinator_peak_rss_mb", "coordinator_cpu_s",
        "accepted_per_round", "failures", "aes_gcm_gbps", "ingest_to_aes", "tls_stream_gbps",
        "ingest_to_tls_stream", "rss_bound_mb", "bench_cpu_s"]
missing = [k for k in need if k not in r]
assert not missing, f"missing fields {missing} in {r}"
assert r["accepted_per_round"] == [3, 3], r["accepted_per_round"]
assert r["failures"] == 0 and r["coordinator_exit"] == 0, r
assert r["tls_stream_gbps"] > 0 and r["aes_gcm_gbps"] > 0, r
# The ratio is the median ingest over the reference, rounded to 3 places.
assert abs(r["ingest_to_tls_stream"] - r["ingest_gbps"] / r["tls_stream_gbps"]) < 0.01, r
print("bench load:", {k: r[k] for k in ["ingest_gbps", "tls_stream_gbps", "ingest_to_tls_stream"]})
PY

# Without references the ratios are left out, not made up.
"$bench" load --clients 2 --params 100 --rounds 1 --aes-seconds 0 --tls-stream-mb 0 --json \
  >bare.json 2>bare.log || fail "the run without references failed: $(tail -n 20 bare.log)"
python3 - bare.json <<'PY' || fail "see above"
import json, sys
r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
for k in ["aes_gcm_gbps", "ingest_to_aes", "tls_stream_gbps", "ingest_to_tls_stream"]:
    assert k not in r, f"{k} reported although its reference was skipped: {r}"
assert r["accepted_per_round"] == [2] and r["failures"] == 0, r
PY
echo "bench_load: ok"
