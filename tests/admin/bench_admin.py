#!/usr/bin/env python3
"""Round times of a federation with and without a bounded loop hammering the admin API (target:
within 20 %). Runs the same federation (3 clients, CSV data, 127.0.0.1) in alternating pairs,
quiet and loaded; the load is N threads of keep-alive reads (status, clients, rounds, /metrics,
members) paced to at most RATE requests per second each, plus an open event stream. Prints a
summary and, on its last line, one JSON object.
usage: bench_admin.py BUILD_DIR [--rounds 40] [--pairs 2] [--threads 2] [--rate 100]
       [--model mlp:4,128,128,2] [--local-epochs 3]
"""
import argparse
import json
import os
import statistics
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fedtest import Federation, check  # noqa: E402
from admin_e2e import EventStream  # noqa: E402


def run_once(args, loaded):
    fed = Federation(args.build, "bench-admin")
    try:
        fed.start_coordinator("--rounds", str(args.rounds), model=args.model, local_epochs=args.local_epochs)
        stop = threading.Event()
        counts = {}
        threads, stream = [], None
        if loaded:
            stream = EventStream(fed, fed.viewer_token)
            threads = [threading.Thread(target=fed.hammer, args=(stop, counts, 10**9, args.rate)) for _ in range(args.threads)]
            for t in threads:
                t.start()
        for c in fed.clients:
            fed.start_client(c)
        code = fed.wait_coordinator(1800)
        stop.set()
        for t in threads:
            t.join()
        if stream:
            stream.close()
        check(code == 0, "the federation failed:\n" + fed.tail("coordinator.log"))
        with open(fed.path("metrics.jsonl")) as f:
            durations = [json.loads(line)["duration_ms"] for line in f]
        check(len(durations) == args.rounds, "%d rounds committed" % len(durations))
        return durations[1:], sum(counts.values())  # the first round includes the clients' start
    finally:
        fed.close()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("build")
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument("--pairs", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rate", type=float, default=100.0)
    p.add_argument("--model", default="mlp:4,128,128,2")
    p.add_argument("--local-epochs", type=int, default=3)
    args = p.parse_args()
    quiet, loaded, requests = [], [], 0
    for pair in range(args.pairs):
        q, _ = run_once(args, False)
        l, n = run_once(args, True)
        quiet += q
        loaded += l
        requests += n
        print("pair %d: quiet median %.1f ms, loaded median %.1f ms (%d admin requests)"
              % (pair + 1, statistics.median(q), statistics.median(l), n), flush=True)
    ratio = statistics.median(loaded) / statistics.median(quiet)
    mean_ratio = statistics.mean(loaded) / statistics.mean(quiet)
    print("round time under admin load: median %.3fx, mean %.3fx of the quiet runs (target <= 1.20)" % (ratio, mean_ratio))
    print(json.dumps({"bench": "admin_load", "rounds": args.rounds, "pairs": args.pairs, "threads": args.threads,
                      "rate_per_thread": args.rate, "model": args.model,
                      "quiet_median_ms": round(statistics.median(quiet), 2),
                      "loaded_median_ms": round(statistics.median(loaded), 2),
                      "median_ratio": round(ratio, 3), "mean_ratio": round(mean_ratio, 3),
                      "admin_requests": requests, "within_target": ratio <= 1.2}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
