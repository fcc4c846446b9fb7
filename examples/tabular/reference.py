#!/usr/bin/env python3
"""The centralised reference the federated runs are compared with, on the same split.

    reference.py DATASET_DIR classification|regression [schema.json]

Reads DATASET_DIR/train.csv and test.csv (written by prepare.py), standardises the numeric
columns with the training rows' mean and population standard deviation, one-hot encodes the
columns the schema calls categorical, and fits
  classification: multinomial logistic regression with scikit-learn's defaults (L2, C = 1,
                  intercept not penalised), by Nesterov-accelerated gradient descent to
                  convergence;
  regression:     ordinary least squares with an intercept (numpy.linalg.lstsq).
Prints one JSON object: accuracy / loss (classification) or r2 / rmse / mae (regression) on
test.csv. numpy only (Debian's python3-numpy).
"""
import csv
import json
import sys

import numpy as np


def read(path, categorical):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    return header, body


def encode(header, body, categorical, categories, mean=None, std=None):
    cols = []
    for j, name in enumerate(header[:-1]):
        if name in categorical:
            for c in categories[name]:
                cols.append(np.array([1.0 if r[j] == c else 0.0 for r in body]))
        else:
            cols.append(np.array([float(r[j]) for r in body]))
    x = np.stack(cols, axis=1)
    numeric = np.array([True] * x.shape[1])
    k = 0
    for name in header[:-1]:
        if name in categorical:
            numeric[k:k + len(categories[name])] = False
            k += len(categories[name])
        else:
            k += 1
    if mean is None:
        mean = np.where(numeric, x.mean(axis=0), 0.0)
        std = np.where(numeric, x.std(axis=0), 1.0)
        std[std == 0] = 1.0
    return (x - mean) / std, mean, std


def logistic(x, y, classes, c=1.0, iterations=20000):
    n, d = x.shape
    k = len(classes)
    onehot = np.zeros((n, k))
    onehot[np.arange(n), y] = 1.0
    xb = np.hstack([x, np.ones((n, 1))])
    w = np.zeros((d + 1, k))
    v = np.zeros_like(w)
    reg = np.ones((d + 1, 1))
    reg[-1] = 0.0  # the intercept is not penalised

    def grad(w):
        z = xb @ w
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        # sklearn: C * sum(log loss) + 0.5 ||w||^2, divided here by C * n.
        return xb.T @ (p - onehot) / n + reg * w / (c * n)

    step = 1.0 / (0.5 * np.linalg.eigvalsh(xb.T @ xb / n).max() + 1.0 / (c * n))
    for t in range(iterations):
        look = w + (t / (t + 3.0)) * v
        g = grad(look)
        v = (t / (t + 3.0)) * v - step * g
        w = w + v
        if np.abs(g).max() < 1e-10:
            break
    return w


def main():
    folder, task = sys.argv[1], sys.argv[2]
    categorical, categories = set(), {}
    if len(sys.argv) > 3:
        with open(sys.argv[3]) as f:
            for col in json.load(f)["features"]:
                if col["type"] == "categorical":
                    categorical.add(col["name"])
                    categories[col["name"]] = col["categories"]
    header, train = read(folder + "/train.csv", categorical)
    _, test = read(folder + "/test.csv", categorical)
    xtr, mean, std = encode(header, train, categorical, categories)
    xte, _, _ = encode(header, test, categorical, categories, mean, std)
    out = {"dataset": folder.rstrip("/").split("/")[-1], "train_rows": len(train),
           "test_rows": len(test)}
    if task == "classification":
        classes = sorted({r[-1] for r in train} | {r[-1] for r in test})
        ytr = np.array([classes.index(r[-1]) for r in train])
        yte = np.array([classes.index(r[-1]) for r in test])
        w = logistic(xtr, ytr, classes)
        z = np.hstack([xte, np.ones((len(test), 1))]) @ w
        z -= z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        out["model"] = "logistic regression, standardised, L2 C=1"
        out["accuracy"] = float((logp.argmax(axis=1) == yte).mean())
        out["loss"] = float(-logp[np.arange(len(test)), yte].mean())
    else:
        ytr = np.array([float(r[-1]) for r in train])
        yte = np.array([float(r[-1]) for r in test])
        a = np.hstack([xtr, np.ones((len(train), 1))])
        w, *_ = np.linalg.lstsq(a, ytr, rcond=None)
        pred = np.hstack([xte, np.ones((len(test), 1))]) @ w
        err = pred - yte
        out["model"] = "least squares with intercept"
        out["r2"] = float(1 - (err ** 2).sum() / ((yte - yte.mean()) ** 2).sum())
        out["rmse"] = float(np.sqrt((err ** 2).mean()))
        out["mae"] = float(np.abs(err).mean())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
