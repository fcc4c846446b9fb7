#!/usr/bin/python3
"""FedAvg the way NumPy-based FL frameworks do it today, as a reference for federa-bench aggregate.

For each client in arrival order: acc += layer * (n_i / N)  (a temporary for layer * w, then an
in-place add), which is what e.g. Flower's aggregate() amounts to per layer.

    python3 bench/numpy_fedavg.py --clients 32 --params 4000000 --json
    python3 bench/numpy_fedavg.py --clients 32 --params 4000000 --memory-bw-gbps 44 --json

The K client updates are generated up front as separate arrays (as a framework holding its
received results would), so each update is read from memory, not from a cache the generator just
filled. Run it with Debian's interpreter (/usr/bin/python3, which has python3-numpy).
`ms` is the median over --reps of the accumulation loop alone; `gbps` counts update bytes
read (clients x params x 4) per second, like federa-bench. Run with Debian's python3-numpy.
"""
import argparse
import json
import resource
import sys
import time

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--params", type=int, default=4_000_000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--memory-bw-gbps", type=float, default=0.0,
                    help="the machine's triad bandwidth (from federa-bench's JSON) for fraction_of_memory_bw")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    a = ap.parse_args()

    rng = np.random.default_rng(0)
    base = rng.standard_normal(a.params, dtype=np.float32)
    updates = [base + np.float32(1e-3 * k) for k in range(a.clients)]
    num_examples = [100 + k for k in range(a.clients)]
    total = float(sum(num_examples))

    times = []
    acc = np.zeros(a.params, dtype=np.float32)
    for rep in range(a.reps + 1):
        acc[:] = 0.0
        t0 = time.perf_counter()
        for layer, n in zip(updates, num_examples):
            acc += layer * np.float32(n / total)
        ms = (time.perf_counter() - t0) * 1e3
        if rep > 0:  # the first pass pays for page faults
            times.append(ms)
    times.sort()
    ms = times[len(times) // 2] if len(times) % 2 else 0.5 * (times[len(times) // 2 - 1] + times[len(times) // 2])
    gbps = a.clients * a.params * 4 / (ms / 1e3) / 1e9
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"numpy {np.__version__}: K={a.clients}, P={a.params}: {ms:.3f} ms, {gbps:.3f} GB/s of updates",
          file=sys.stderr)
    out = {
        "strategy": "fedavg", "device": "numpy", "clients": a.clients, "params": a.params,
        "reps": a.reps, "ms": round(ms, 3), "gbps": round(gbps, 3),
        "memory_bw_gbps": a.memory_bw_gbps,
        "fraction_of_memory_bw": round(gbps / a.memory_bw_gbps, 3) if a.memory_bw_gbps > 0 else 0.0,
        "peak_rss_mb": round(rss, 3), "numpy": np.__version__,
    }
    print(json.dumps(out, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
