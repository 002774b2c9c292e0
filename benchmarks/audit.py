"""Suspect labels: how many deliberately flipped labels `finebert audit` ranks first.

    python benchmarks/audit.py [--rows 4000] [--flip 0.05] [--top 200]

Takes ROWS real SST-2 training sentences, flips the label of a random FLIP share of them (seed 0),
runs the audit with its defaults, and counts the flipped rows among the TOP it ranks most suspect.
Random ranking would find TOP x FLIP of them.
"""

import argparse
import csv
import sys
import time

import numpy as np

from common import CACHE, SST2, cpu_description, read_tsv


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--flip", type=float, default=0.05)
    parser.add_argument("--top", type=int, default=200)
    args = parser.parse_args()
    print(cpu_description(), flush=True)
    rows = read_tsv(SST2 / "train.tsv", args.rows)
    rng = np.random.default_rng(0)
    flipped = set(rng.choice(len(rows), int(args.flip * len(rows)), replace=False).tolist())
    path = CACHE / "audit-sst2.csv"
    CACHE.mkdir(exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["sentence", "label"])
        writer.writerows([t, 1 - y if i in flipped else y] for i, (t, y) in enumerate(rows))

    import finebert

    start = time.perf_counter()
    result = finebert.audit(path, quiet=False)
    seconds = time.perf_counter() - start
    top = result.ranking()[:args.top].tolist()
    found = len(flipped & set(top))
    caught = len(flipped & set(result.flagged.tolist()))
    print(f"{len(flipped)} of {len(rows)} labels flipped; audit took {seconds:.0f} s ({len(result.flagged)} rows flagged)")
    print(f"flipped rows among the {args.top} ranked most suspect: {found} (random: {args.top * args.flip:.0f}; "
          f"target >= 100); flipped rows flagged at all: {caught}", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
