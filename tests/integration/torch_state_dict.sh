#!/usr/bin/env bash
# A PyTorch state_dict (BF16, F16, F32 and an I64 counter) starts a federation round over fake
# links (tests/coordinator/test_orchestrator_model.cpp), and the committed global.safetensors goes
# back into the module with load_state_dict(strict=True): same names, dtypes, averaged floats,
# carried integers. Skipped (77) where no python3 has torch (Debian: apt-get install python3-torch).
#
#   torch_state_dict.sh BUILD_DIR
set -euo pipefail
build="$1"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python=""
for p in python3 /usr/bin/python3; do
  if command -v "$p" >/dev/null && "$p" -c "import torch" 2>/dev/null; then python="$p"; break; fi
done
if [ -z "$python" ]; then
  echo "SKIP: no python3 with torch (apt-get install python3-torch)"
  exit 77
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$python" "$here/torch_state_dict.py" make "$work/model.safetensors"
FEDERA_TEST_MODEL="$work/model.safetensors" FEDERA_TEST_STATE="$work/state" \
  "$build/tests/federa_tests_orchestrator" --test-case="*model from a file keeps its dtypes*"
"$python" "$here/torch_state_dict.py" check "$work/model.safetensors" "$work/state/global.safetensors"
