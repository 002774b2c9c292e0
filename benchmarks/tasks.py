"""Every task shape from its default command: topics, imbalance, multi-label, long documents, sentence pairs.

    python benchmarks/tasks.py [ag_news sms_spam goemotions imdb imdb_truncate mrpc] [--seed 42] [-- extra train flags]

Each task runs the real console script as a user would: `finebert train` with the defaults plus the
task's own flag, then `finebert evaluate --json` on the task's held-out file. Prints the target
figure, the whole-process training time and the machine (CPU model and its bf16/VNNI flags).
Data: ../shared/data (see its README). Models go to runs/ (ignored by git).
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from common import CACHE, DATA, cpu_description

FINEBERT = str(Path(sys.executable).parent / "finebert")

# name: (training file, evaluation file, the task's flags, the figure to report, its target)
TASKS = {
    "ag_news": ("ag_news/train.csv", "ag_news/test.csv", [], "accuracy", 0.90),
    "sms_spam": ("sms_spam/train80.csv", "sms_spam/test20.csv", ["--class-weights", "auto"], "f1:spam", 0.95),
    "goemotions": ("goemotions/train.tsv", "goemotions/dev.tsv", ["--multi-label"], "f1", 0.62),
    "imdb": ("imdb/train.csv", "imdb/test.csv", ["--long-text", "window"], "accuracy", 0.87),
    "imdb_truncate": ("imdb/train.csv", "imdb/test.csv", [], "accuracy", None),
    "mrpc": ("mrpc/train.csv", "mrpc/dev.csv", ["--text-pair-column", "sentence2"], "accuracy", 0.82),
}


def sms_split() -> None:
    """SMS spam has one file: a stratified 80/20 split (scikit-learn, seed 0), written under runs/."""
    import csv

    from sklearn.model_selection import train_test_split

    folder = CACHE / "sms_spam"
    if (folder / "test20.csv").is_file():
        return
    with open(DATA / "sms_spam" / "sms_spam.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    header, rows = rows[0], rows[1:]
    train, test = train_test_split(rows, test_size=0.2, stratify=[r[0] for r in rows], random_state=0)
    folder.mkdir(parents=True, exist_ok=True)
    for name, part in (("train80.csv", train), ("test20.csv", test)):
        with open(folder / name, "w", encoding="utf-8", newline="") as f:
            csv.writer(f).writerows([header, *part])


def run_task(name: str, seed: int, extra: list[str]) -> dict:
    train_file, eval_file, flags, figure, target = TASKS[name]
    where = lambda f: CACHE / f if f.startswith("sms_spam") else DATA / f  # noqa: E731
    out = CACHE / f"task-{name}-{seed}"
    command = [FINEBERT, "train", str(where(train_file)), "--output", str(out), "--quiet", "--seed", str(seed),
               *flags, *extra]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    seconds = time.perf_counter() - start
    report = json.loads(subprocess.run([FINEBERT, "evaluate", str(out), str(where(eval_file)), "--json"],
                                       check=True, capture_output=True, text=True).stdout)
    value = report["per_class"][figure[3:]]["f1"] if figure.startswith("f1:") else report[figure]
    info = json.loads((out / "finebert.json").read_text())
    return {"task": name, "figure": figure, "value": value, "target": target, "seconds": round(seconds, 1),
            "epochs": info["config"]["epochs"], "train_seconds": info["metrics"]["train_seconds"],
            "command": " ".join(["finebert", "train", train_file, *flags, *extra]), "report": report}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tasks", nargs="*", default=[t for t in TASKS if t != "imdb_truncate"])
    parser.add_argument("--seed", type=int, default=42)
    args, extra = parser.parse_known_args()
    extra = [e for e in extra if e != "--"]
    print(cpu_description(), flush=True)
    sms_split()
    for name in args.tasks:
        r = run_task(name, args.seed, extra)
        met = "" if r["target"] is None else ("  target met" if r["value"] >= r["target"] else "  TARGET MISSED")
        print(f"{name:14s} {r['figure']} {r['value']:.4f} (target {r['target']}){met}  epochs {r['epochs']}  "
              f"train {r['train_seconds']:.0f}s, whole command {r['seconds']:.0f}s  [{r['command']}]", flush=True)
        (CACHE / f"task-{name}-{args.seed}.json").write_text(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
