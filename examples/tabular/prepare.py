#!/usr/bin/env python3
"""Per-site CSV files from the public tabular datasets that Debian's python3-sklearn ships.

    prepare.py SKLEARN_DATA_DIR OUT_DIR

For each dataset (breast-cancer, wine: classification; diabetes: regression) it writes, under
OUT_DIR/DATASET/:
  site-a.csv, site-b.csv, site-c.csv  each site's training rows, then its held-out rows
  train.csv, test.csv                 the union of the sites' training / held-out rows (the
                                      centralised reference trains and tests on exactly these)
  sites.tsv                           name, --data spec, --test-fraction, rows, held-out rows
  schema.json                         (diabetes only) a --schema file: 'sex' is categorical
The sites differ in row counts and label mixes, and in how their files are written, as three
agencies' exports would: site-a plain, site-b a spreadsheet's export (UTF-8 BOM, CRLF, every
field quoted, the label first), site-c a European one (';' separated, decimal comma).
Standard library only; deterministic (seed 2024).
"""
import csv
import gzip
import json
import os
import random
import sys

BREAST_CANCER = [
    "mean radius", "mean texture", "mean perimeter", "mean area", "mean smoothness",
    "mean compactness", "mean concavity", "mean concave points", "mean symmetry",
    "mean fractal dimension", "radius error", "texture error", "perimeter error", "area error",
    "smoothness error", "compactness error", "concavity error", "concave points error",
    "symmetry error", "fractal dimension error", "worst radius", "worst texture",
    "worst perimeter", "worst area", "worst smoothness", "worst compactness", "worst concavity",
    "worst concave points", "worst symmetry", "worst fractal dimension"]
WINE = ["alcohol", "malic_acid", "ash", "alcalinity_of_ash", "magnesium", "total_phenols",
        "flavanoids", "nonflavanoid_phenols", "proanthocyanins", "color_intensity", "hue",
        "od280/od315_of_diluted_wines", "proline"]
DIABETES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]

SITES = ["site-a", "site-b", "site-c"]
TEST_SHARE = 0.3


def read_sklearn_csv(path):
    """sklearn's bundled format: a first line 'rows,features,class names...', then rows whose
    last field is the class index."""
    with open(path, newline="") as f:
        reader = csv.reader(f)
        head = next(reader)
        names = head[2:]
        rows = [(r[:-1], names[int(r[-1])]) for r in reader]
    return rows


def read_diabetes(folder):
    with gzip.open(os.path.join(folder, "diabetes_data_raw.csv.gz"), "rt") as f:
        data = [line.split() for line in f if line.strip()]
    with gzip.open(os.path.join(folder, "diabetes_target.csv.gz"), "rt") as f:
        target = ["%g" % float(line) for line in f if line.strip()]
    return list(zip(data, target))


def split(rows, shares, rng, classes=None):
    """Train/test split (stratified for classification), then each class's rows dealt to the
    sites by that class's shares: per site, (train rows, test rows)."""
    groups = {}
    for r in rows:
        groups.setdefault(r[1] if classes else "all", []).append(r)
    sites = [([], []) for _ in SITES]
    for key in sorted(groups):
        g = groups[key]
        rng.shuffle(g)
        n_test = round(len(g) * TEST_SHARE)
        for part, chunk in ((1, g[:n_test]), (0, g[n_test:])):
            p = shares[key] if classes else shares["all"]
            cut = [0]
            for s in p[:-1]:
                cut.append(cut[-1] + round(s * len(chunk)))
            cut.append(len(chunk))
            for i in range(len(SITES)):
                sites[i][part].extend(chunk[cut[i]:cut[i + 1]])
    for train, test in sites:
        rng.shuffle(train)
        rng.shuffle(test)
    return sites


def write_plain(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        for feats, label in rows:
            w.writerow(list(feats) + [label])


def write_spreadsheet(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8-sig") as f:
        w = csv.writer(f, lineterminator="\r\n", quoting=csv.QUOTE_ALL)
        w.writerow([header[-1]] + header[:-1])
        for feats, label in rows:
            w.writerow([label] + list(feats))


def write_european(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f, delimiter=";", lineterminator="\n")
        w.writerow(header)
        for feats, label in rows:
            w.writerow([v.replace(".", ",") for v in feats] + [label.replace(".", ",")])


def prepare(out, name, header, rows, shares, classification, rng):
    folder = os.path.join(out, name)
    os.makedirs(folder, exist_ok=True)
    sites = split(rows, shares, rng, classification)
    label = header[-1]
    writers = [write_plain, write_spreadsheet, write_european]
    lines = []
    for site, (train, test), writer in zip(SITES, sites, writers):
        path = os.path.join(folder, site + ".csv")
        writer(path, header, train + test)
        spec = "csv:%s:label=%s%s" % (path, label, ":sep=;" if writer is write_european else "")
        # The client holds out the last floor(f * rows) rows: exactly this site's test rows.
        fraction = (len(test) + 0.5) / (len(train) + len(test))
        lines.append("%s\t%s\t%.6f\t%d\t%d" % (site, spec, fraction, len(train), len(test)))
    write_plain(os.path.join(folder, "train.csv"), header, [r for s in sites for r in s[0]])
    write_plain(os.path.join(folder, "test.csv"), header, [r for s in sites for r in s[1]])
    with open(os.path.join(folder, "sites.tsv"), "w") as f:
        f.write("\n".join(lines) + "\n")
    for site, (train, test) in zip(SITES, sites):
        mix = ""
        if classification:
            counts = {}
            for r in train:
                counts[r[1]] = counts.get(r[1], 0) + 1
            mix = " " + ", ".join("%s %d" % (k, counts[k]) for k in sorted(counts))
        print("%s %s: %d training rows%s; %d held out" % (name, site, len(train), mix, len(test)))
    return folder


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    data, out = sys.argv[1], sys.argv[2]
    rng = random.Random(2024)
    cancer = read_sklearn_csv(os.path.join(data, "breast_cancer.csv"))
    prepare(out, "breast-cancer", BREAST_CANCER + ["diagnosis"], cancer,
            {"malignant": [0.55, 0.35, 0.10], "benign": [0.15, 0.35, 0.50]}, True, rng)
    wine = read_sklearn_csv(os.path.join(data, "wine_data.csv"))
    prepare(out, "wine", WINE + ["cultivar"], wine,
            {"class_0": [0.6, 0.3, 0.1], "class_1": [0.1, 0.6, 0.3], "class_2": [0.3, 0.0, 0.7]},
            True, rng)
    diabetes = read_diabetes(data)
    folder = prepare(out, "diabetes", DIABETES + ["progression"], diabetes,
                     {"all": [0.5, 0.3, 0.2]}, False, rng)
    schema = {"label": "progression", "task": "regression",
              "features": [{"name": n, "type": "numeric"} if n != "sex" else
                           {"name": n, "type": "categorical", "categories": ["1", "2"]}
                           for n in DIABETES]}
    with open(os.path.join(folder, "schema.json"), "w") as f:
        json.dump(schema, f, indent=1)


if __name__ == "__main__":
    main()
