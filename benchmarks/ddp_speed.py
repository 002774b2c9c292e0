"""Two processes × one thread (DistributedDataParallel, gloo) against one process × two threads.

    python benchmarks/ddp_speed.py [--rows 4000] [--epochs 1]

Both sides run the real console script on the same SST-2 rows with the same settings, one after the
other: `finebert train --nproc 2` (finebert sets one thread per process) and `finebert train` with
OMP_NUM_THREADS=2. Prints whole-process wall time, training samples/s and dev accuracy of each, the
ratio, and the machine. Models go to runs/ (ignored by git).
"""

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import CACHE, SST2, cpu_description, read_tsv

FINEBERT = str(Path(sys.executable).parent / "finebert")


def run(data: Path, output: Path, nproc: int, epochs: float) -> dict:
    shutil.rmtree(output, ignore_errors=True)
    env = {**os.environ, "OMP_NUM_THREADS": "2" if nproc == 1 else "1"}
    start = time.perf_counter()
    subprocess.run([FINEBERT, "train", str(data), "--output", str(output), "--label-names", "negative,positive",
                    "--epochs", str(epochs), "--nproc", str(nproc), "--quiet"], check=True, env=env)
    wall = time.perf_counter() - start
    info = json.loads((output / "finebert.json").read_text())
    evaluated = subprocess.run([FINEBERT, "evaluate", str(output), str(SST2 / "dev.tsv"), "--json"],
                               check=True, capture_output=True, text=True)
    return {"wall": wall, "train_seconds": info["metrics"]["train_seconds"], "accuracy": json.loads(evaluated.stdout)["accuracy"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--epochs", type=float, default=1.0)
    args = parser.parse_args()
    print(cpu_description())
    folder = CACHE / "ddp"
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / f"sst2-{args.rows}.csv"
    with open(data, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["sentence", "label"])
        writer.writerows(read_tsv(SST2 / "train.tsv", args.rows))
    samples = args.rows * 0.9 * args.epochs  # the stratified 10% holdout is not trained on
    results = {}
    for name, nproc in (("1 process x 2 threads", 1), ("2 processes x 1 thread", 2)):
        r = run(data, folder / f"nproc{nproc}", nproc, args.epochs)
        results[name] = r
        print(f"{name}: wall {r['wall']:.1f} s, training {r['train_seconds']:.1f} s "
              f"({samples / r['train_seconds']:.1f} samples/s), dev accuracy {r['accuracy']:.4f}")
    one, two = results.values()
    print(f"ratio (2 processes / 1 process, training samples/s): {one['train_seconds'] / two['train_seconds']:.2f}x; "
          f"whole process: {one['wall'] / two['wall']:.2f}x")


if __name__ == "__main__":
    main()
