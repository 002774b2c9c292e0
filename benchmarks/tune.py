"""`finebert tune` against the default command, in one run, on the same rows.

    python benchmarks/tune.py [--rows 2000] [--trials 12] [--validation-rows 1000]

Both commands run as a user runs them (subprocesses) on the first ROWS sentences of SST-2 train; both hold out
the same 10% for validation (the same split function and seed), or with --validation-rows both take the next
that many sentences of SST-2 train as their --validation file. Each model is then scored on SST-2 dev (872
sentences), which neither saw. Prints the dev accuracies, the times, how many trials the pruner stopped, and the
time the study took against an estimate of the same trials run to their end (each pruned trial's seconds per
epoch times the epochs it was drawn with).
"""

import argparse
import csv
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import CACHE, SST2, cpu_description, read_tsv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--validation-rows", type=int, default=0)
    args = parser.parse_args()
    print(cpu_description())
    work = CACHE / "tune"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    train = work / "train.csv"
    rows = read_tsv(SST2 / "train.tsv", args.rows + args.validation_rows)
    write_rows(train, rows[:args.rows])
    validation = []
    if args.validation_rows:
        write_rows(work / "validation.csv", rows[args.rows:])
        validation = ["--validation", str(work / "validation.csv")]
    finebert = [sys.executable, "-m", "finebert"]

    started = time.perf_counter()
    subprocess.run([*finebert, "train", str(train), "-o", str(work / "default"), *validation, "-q"], check=True)
    default_seconds = time.perf_counter() - started
    started = time.perf_counter()
    subprocess.run([*finebert, "tune", str(train), "-o", str(work / "best"), "--trials", str(args.trials), *validation],
                   check=True)
    tune_seconds = time.perf_counter() - started

    default_dev, tuned_dev = dev_accuracy(work / "default"), dev_accuracy(work / "best")
    trials = list(csv.DictReader(open(work / "best" / "trials.csv", encoding="utf-8")))
    pruned = [t for t in trials if t["state"] == "pruned"]
    trial_seconds = sum(float(t["seconds"]) for t in trials if t["seconds"])
    full = sum(float(t["seconds"]) * float(t["epochs"]) / float(t["epochs_run"]) if t["state"] == "pruned"
               else float(t["seconds"]) for t in trials if t["seconds"])
    best = json.loads((work / "best" / "finebert.json").read_text())
    held_out = f"the next {args.validation_rows} as --validation" if args.validation_rows else "10% held out"
    print(f"rows: the first {args.rows} SST-2 train sentences ({held_out}); dev: SST-2 dev, "
          f"{len(read_tsv(SST2 / 'dev.tsv'))} sentences")
    print(f"default command: dev accuracy {default_dev:.4f}, {default_seconds:.0f} s")
    print(f"tune --trials {args.trials}: dev accuracy {tuned_dev:.4f}, {tune_seconds:.0f} s; best trial "
          f"{best['metrics']['tuning_trial']} (validation {best['metrics']['tuning_value']:.4f}, default command's "
          f"{json.loads((work / 'default' / 'finebert.json').read_text())['metrics']['val_accuracy']:.4f})")
    verdict = "beats" if tuned_dev > default_dev else "ties" if tuned_dev == default_dev else "loses to"
    print(f"tuned {verdict} the default on dev by {100 * (tuned_dev - default_dev):+.2f} points")
    print(f"pruned: {len(pruned)} of {len(trials)} trials; the trials trained {trial_seconds:.0f} s, the same trials "
          f"to their end about {full:.0f} s: ratio {trial_seconds / full:.2f}")
    print("settings of the best trial:", {k: v for k, v in best["config"].items()
                                           if k in ("learning_rate", "epochs", "batch_size", "warmup_ratio", "dropout",
                                                    "pooling", "recipe", "freeze_layers")})


def write_rows(path: Path, rows: list) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["sentence", "label"])
        writer.writerows(rows)


def dev_accuracy(folder: Path) -> float:
    from finebert.data import Dataset
    from finebert.evaluation import evaluate
    from finebert.inference import Classifier

    rows = read_tsv(SST2 / "dev.tsv")
    texts, labels = [t for t, _ in rows], [str(y) for _, y in rows]
    return evaluate(Classifier.load(folder, engine="pytorch"), Dataset(texts, labels, "sst2 dev")).accuracy


if __name__ == "__main__":
    main()
