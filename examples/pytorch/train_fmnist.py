#!/usr/bin/env python3
"""A small CNN on Fashion-MNIST in plain PyTorch: the kind of script an agency already has.

Reads Debian's IDX files (apt-get install dataset-fashion-mnist python3-torch), trains on a
shard of the training split and reports accuracy on the same shard of the test split.

    python3 train_fmnist.py --epochs 10                       # the whole training split
    python3 train_fmnist.py --shard 0 --shards 3 --epochs 5   # one third of it

Under federa-client --trainer exec the lines marked "# federa" take the global model, train for
the round and hand the update back (or evaluate it); see examples/pytorch/README.md.
"""
import argparse
import gzip
import struct
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

import federa_trainer as fed  # federa

DATA = "/usr/share/datasets/fashion-mnist"


def load_split(split):
    """Images as float [N, 1, 28, 28] in [0, 1] and labels as int64."""
    prefix = "train" if split == "train" else "t10k"
    with gzip.open("%s/%s-images-idx3-ubyte.gz" % (DATA, prefix)) as f:
        _, n, rows, cols = struct.unpack(">IIII", f.read(16))
        x = torch.frombuffer(bytearray(f.read()), dtype=torch.uint8)
        x = x.reshape(n, 1, rows, cols).float() / 255.0
    with gzip.open("%s/%s-labels-idx1-ubyte.gz" % (DATA, prefix)) as f:
        f.read(8)
        y = torch.frombuffer(bytearray(f.read()), dtype=torch.uint8).long()
    return x, y


def shard(x, y, index, count, seed, limit=0):
    """An IID share: a seeded shuffle, then every count-th example."""
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[index::count]
    if limit:
        order = order[:limit]
    return x[order], y[order]


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc1 = nn.Linear(64 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.dropout(F.relu(self.fc1(x.flatten(1))), 0.25, self.training)
        return self.fc2(x)


def train_epoch(model, x, y, opt, batch_size, generator):
    model.train()
    order = torch.randperm(len(y), generator=generator)
    total = 0.0
    for i in range(0, len(y), batch_size):
        idx = order[i:i + batch_size]
        opt.zero_grad()
        loss = F.cross_entropy(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
        total += loss.item() * len(idx)
    return total / len(y)


@torch.no_grad()
def evaluate(model, x, y):
    model.eval()
    logits = torch.cat([model(x[i:i + 1000]) for i in range(0, len(y), 1000)])
    loss = F.cross_entropy(logits, y).item()
    return loss, (logits.argmax(1) == y).float().mean().item()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--shard", type=int, default=0)
    p.add_argument("--shards", type=int, default=1)
    p.add_argument("--limit", type=int, default=0, help="use at most this many training examples")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--export-init", help="write the initial model (safetensors) and exit")  # federa
    args = p.parse_args()

    torch.manual_seed(args.seed)
    x, y = shard(*load_split("train"), args.shard, args.shards, args.seed, args.limit)
    xt, yt = shard(*load_split("test"), args.shard, args.shards, args.seed)
    model = Net()
    epochs, lr = args.epochs, args.lr
    if args.export_init:  # federa
        return fed.write_safetensors(args.export_init, model.state_dict())  # federa
    if fed.active():  # federa
        task = fed.load_global(model)  # federa
        if task.kind == "evaluate":  # federa
            loss, acc = evaluate(model, xt, yt)  # federa
            return fed.save_metrics(len(yt), {"loss": loss, "accuracy": acc})  # federa
        epochs, lr = task.hyperparameters["local_epochs"], task.hyperparameters["lr"]  # federa
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    generator = torch.Generator().manual_seed(args.seed)
    for epoch in range(epochs):
        started = time.time()
        loss = train_epoch(model, x, y, opt, args.batch_size, generator)
        test_loss, acc = evaluate(model, xt, yt)
        print("epoch %d: train loss %.4f, test loss %.4f, test accuracy %.4f (%.1f s)"
              % (epoch + 1, loss, test_loss, acc, time.time() - started), flush=True)
    if fed.active():  # federa
        fed.save_update(model, len(y), {"train_loss": loss})  # federa


if __name__ == "__main__":
    main()
