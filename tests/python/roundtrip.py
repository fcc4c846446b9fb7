"""`roundtrip.py IN OUT BACKEND`: reads IN with python/federa_trainer.py's reader in BACKEND
(python | numpy | torch) and writes it to OUT with its writer, dtypes kept. For the C++ side of
the cross-check (tests/client/test_exec_trainer.cpp). Exit 77: BACKEND is not installed."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
import federa_trainer as fed  # noqa: E402

src, dst, backend = sys.argv[1:4]
try:
    tensors, meta = fed.read_safetensors(src, backend=backend)
except ImportError:
    sys.exit(77)
dtypes = {k: d for k, (d, _) in fed.read_header(src).items()}  # numpy's widened BF16 goes back
fed.write_safetensors(dst, tensors, meta, dtypes=dtypes)
