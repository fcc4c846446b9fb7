#!/usr/bin/env python3
"""The exec contract's overhead (issue 10: <= 10 %): one round of local training of a ~1M-parameter
MLP, 1 epoch on a 20k-row Fashion-MNIST shard, done two ways with the same code and data:

  in process   one long-running Python process: torch imported and the shard loaded once, then
               per round load the global weights, train, take the state (what an in-process
               client API such as Flower's NumPyClient does);
  exec         per round `federa-client trainer-test` runs this script as a task: a new process
               (Python + torch import), the shard read from its cache file, global.safetensors
               in, model.safetensors and metrics.json out, the client's validation.

    python3 bench_trainer.py --client build/client/federa-client [--rounds 3]
prints both, per round, and one JSON object on its last line. Under federa-client it is the
trainer itself (FEDERA_TASK set)."""
import argparse
import gzip
import json
import os
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
import federa_trainer as fed  # noqa: E402
from train_fmnist import train_epoch  # noqa: E402  (the example's loop, the same in both ways)

DATA = "/usr/share/datasets/fashion-mnist"
ROWS = 20000


def make_model():
    # 784*1024 + 1024 + 1024*256 + 256 + 256*10 + 10 = 1,068,810 parameters
    return nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 256), nn.ReLU(),
                         nn.Linear(256, 10))


def cache_shard(path):
    """The first 20k training rows as one torch file: the data an agency keeps ready."""
    with gzip.open(DATA + "/train-images-idx3-ubyte.gz") as f:
        f.read(16)
        x = torch.frombuffer(bytearray(f.read(ROWS * 784)), dtype=torch.uint8).reshape(ROWS, 784)
    with gzip.open(DATA + "/train-labels-idx1-ubyte.gz") as f:
        f.read(8)
        y = torch.frombuffer(bytearray(f.read(ROWS)), dtype=torch.uint8).long()
    torch.save({"x": x.float() / 255.0, "y": y}, path)


def train_one_epoch(model, x, y, lr, seed):
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    return train_epoch(model, x, y, opt, 32, torch.Generator().manual_seed(seed))


def as_trainer(shard, skip_training):
    """One task under federa-client (FEDERA_TASK set)."""
    data = torch.load(shard)
    model = make_model()
    task = fed.load_global(model)
    loss = 0.0 if skip_training else train_one_epoch(
        model, data["x"], data["y"], task.hyperparameters["lr"], task.seed)
    fed.save_update(model, len(data["y"]), {"train_loss": loss})


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--client", help="federa-client binary")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--shard", help="(as a trainer) the cached shard")
    p.add_argument("--skip-training", action="store_true",
                   help="(as a trainer) everything but the epoch: the contract's fixed cost")
    args = p.parse_args()
    if fed.active():
        return as_trainer(args.shard, args.skip_training)
    torch.set_num_threads(1)  # both ways alike (the trainer inherits OMP_NUM_THREADS=1)
    os.environ["OMP_NUM_THREADS"] = "1"
    work = tempfile.mkdtemp(prefix="federa-bench-trainer-")
    shard, init = os.path.join(work, "shard.pt"), os.path.join(work, "init.safetensors")
    cache_shard(shard)
    torch.manual_seed(1)
    fed.write_safetensors(init, make_model().state_dict())
    # in process: torch and the data once
    data = torch.load(shard)
    global_state, _ = fed.read_safetensors(init, backend="torch")
    model = make_model()
    inproc, exec_ = [], []
    command = [args.client, "trainer-test", "--model", init, "--lr", "0.05", "--task-seed", "1",
               "--trainer", "exec", "--trainer-command", sys.executable,
               "--trainer-command", os.path.abspath(__file__),
               "--trainer-command", "--shard", "--trainer-command", shard]
    cpu = {"in": [], "exec": []}  # CPU seconds: steadier than wall time on a shared machine

    def cpu_now(who):
        u = resource.getrusage(who)
        return u.ru_utime + u.ru_stime

    for r in range(args.rounds):  # interleaved, so a busy machine slows both alike
        started, c0 = time.perf_counter(), cpu_now(resource.RUSAGE_SELF)
        model.load_state_dict(global_state)
        train_one_epoch(model, data["x"], data["y"], 0.05, 1)
        _ = {k: v.detach().clone() for k, v in model.state_dict().items()}
        inproc.append(time.perf_counter() - started)
        cpu["in"].append(cpu_now(resource.RUSAGE_SELF) - c0)
        started, c0 = time.perf_counter(), cpu_now(resource.RUSAGE_CHILDREN)
        out = subprocess.run(command, capture_output=True, text=True)
        exec_.append(time.perf_counter() - started)
        cpu["exec"].append(cpu_now(resource.RUSAGE_CHILDREN) - c0)  # client + trainer
        if out.returncode != 0:
            sys.exit("trainer-test failed:\n" + out.stdout + out.stderr)
        print("round %d: in process %.2f s (%.2f s CPU), exec %.2f s (%.2f s CPU)"
              % (r + 1, inproc[-1], cpu["in"][-1], exec_[-1], cpu["exec"][-1]), flush=True)
    fixed = []
    for _ in range(args.rounds):  # the same task without its epoch: start, import, files, checks
        started = time.perf_counter()
        subprocess.run(command + ["--trainer-command", "--skip-training"], check=True,
                       capture_output=True)
        fixed.append(time.perf_counter() - started)
    a, b, c = statistics.median(inproc), statistics.median(exec_), statistics.median(fixed)
    ca, cb = statistics.median(cpu["in"]), statistics.median(cpu["exec"])
    print("median per round: in process %.2f s, exec contract %.2f s: overhead %.1f %% (wall)"
          % (a, b, 100 * (b / a - 1)))
    print("median CPU per round: in process %.2f s, exec contract %.2f s: overhead %.1f %%"
          % (ca, cb, 100 * (cb / ca - 1)))
    print("the contract's fixed cost per task (no epoch): %.2f s = %.1f %% of an in-process round"
          % (c, 100 * c / a))
    print(json.dumps({"params": sum(t.numel() for t in model.state_dict().values()), "rows": ROWS,
                      "rounds": args.rounds, "inprocess_s": round(a, 3), "exec_s": round(b, 3),
                      "overhead": round(b / a - 1, 4), "cpu_inprocess_s": round(ca, 3),
                      "cpu_exec_s": round(cb, 3), "cpu_overhead": round(cb / ca - 1, 4),
                      "fixed_s": round(c, 3),
                      "fixed_share": round(c / a, 4), "target": 0.10}))


if __name__ == "__main__":
    main()
