#!/usr/bin/env bash
# Peak memory of federa-client through one fit task of a large model with an external trainer
# (issue 10 target: peak RSS <= 2.5 x the model's float32 size), coordinator -> client ->
# trainer -> client -> coordinator over loopback TLS. The trainer is a shell `cp` of the global
# model (its own memory is not the client's), so the figure is the client's own: the received
# global model, global.safetensors written, model.safetensors read and checked, the upload.
# Usage: [DTYPE=BF16] examples/pytorch/bench_exec_memory.sh [BUILD_DIR] [HIDDEN]
#   HIDDEN: width of mlp:784,HIDDEN,10 (125786 = 100M parameters, 400 MB; default)
#   DTYPE: F32 (default: the built-in mlp spec) or F16/BF16 (the same shapes from a safetensors
#   file in that dtype, --model safetensors:FILE: the files and the wire carry half the bytes,
#   the client still holds float32 in memory)
# Prints one JSON object on its last line.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
build="$(cd "${1:-$root/build}" && pwd)"
hidden="${2:-125786}"
params=$((784 * hidden + hidden + hidden * 10 + 10))
work="$(mktemp -d /tmp/federa-exec-mem.XXXXXX)"
trap 'kill $coord 2>/dev/null || true; rm -rf "$work"' EXIT
cd "$work"
"$build/tools/federa-pki" init --dir pki >/dev/null
"$build/tools/federa-pki" issue --dir pki --client big >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
dtype="${DTYPE:-F32}"
model="mlp:784,$hidden,10"
if [ "$dtype" != F32 ]; then
  PYTHONPATH="$root/python" /usr/bin/python3 - "$hidden" "$dtype" <<'PY'
import sys
import numpy as np
import federa_trainer as fed
h, dtype = int(sys.argv[1]), sys.argv[2]
rng = np.random.default_rng(1)
shapes = {"fc1.weight": (h, 784), "fc1.bias": (h,), "fc2.weight": (10, h), "fc2.bias": (10,)}
t = {k: (rng.standard_normal(s, dtype=np.float32) * 0.01) for k, s in shapes.items()}
fed.write_safetensors("init.safetensors", t, dtypes={k: dtype for k in shapes})
PY
  model="safetensors:init.safetensors"
fi
"$build/coordinator/federa-coordinator" --pki pki --listen "127.0.0.1:$port" \
  --model "$model" --rounds 1 --min-clients 1 --round-timeout 600 --threads 2 \
  --max-inflight-uploads 1 --state-dir state --metrics-out metrics.jsonl >coordinator.out 2>coordinator.log &
coord=$!
for _ in $(seq 1 600); do grep -q "listening on" coordinator.log && break; sleep 0.1; done
cat > trainer.sh <<'SH'
#!/bin/sh
cp "$FEDERA_INPUT_MODEL" "$FEDERA_OUTPUT_MODEL"
echo '{"num_examples": 1000, "metrics": {}}' > "$FEDERA_METRICS"
SH
/usr/bin/time -v "$build/client/federa-client" --coordinator "127.0.0.1:$port" --kit pki/clients/big \
  --once --trainer exec --trainer-command "sh $work/trainer.sh" --trainer-work-root "$work/tasks" \
  >client.out 2>client.log
wait $coord
rss_kb=$(sed -n 's/.*Maximum resident set size (kbytes): //p' client.log)
grep -q '"clients":1' metrics.jsonl || { tail -20 client.log coordinator.log; exit 1; }
python3 - "$params" "$rss_kb" "$dtype" <<'PY'
import json, sys
params, rss_kb, dtype = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
model_mb = params * 4 / 1e6  # float32, as the client holds it
stored_mb = params * (4 if dtype == "F32" else 2) / 1e6
rss_mb = rss_kb * 1024 / 1e6
print("model: %d parameters, %.1f MB float32 (%.1f MB in %s); client peak RSS %.1f MB = %.2f x "
      "the float32 model" % (params, model_mb, stored_mb, dtype, rss_mb, rss_mb / model_mb))
print(json.dumps({"params": params, "dtype": dtype, "model_mb": round(model_mb, 1),
                  "stored_mb": round(stored_mb, 1), "client_peak_rss_mb": round(rss_mb, 1),
                  "ratio": round(rss_mb / model_mb, 3), "ratio_to_stored": round(rss_mb / stored_mb, 3),
                  "target": 2.5}))
PY
