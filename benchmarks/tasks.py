"""Every task shape from its default command: topics, imbalance, multi-label, long documents, sentence pairs.

    python benchmarks/tasks.py [ag_news sms_spam goemotions imdb imdb_truncate mrpc sst2] [--seed 42] [--rows N]
                               [--emulate-avx2] [-- extra train flags]

Each task runs the real console script as a user would: `finebert train` with the defaults plus the
task's own flag, then `finebert evaluate --json` on the task's held-out file. Prints the target
figure, the whole-process training time, the training process's peak resident memory (getrusage of that
process) and the machine (CPU model and its bf16/VNNI flags). --rows N trains on the first N rows only.
Data: ../shared/data (see its README). Models go to runs/ (ignored by git).
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import CACHE, DATA, cpu_description, emulate_avx2

FINEBERT = str(Path(sys.executable).parent / "finebert")

# name: (training file, evaluation file, the task's flags, the figure to report, its target)
TASKS = {
    "ag_news": ("ag_news/train.csv", "ag_news/test.csv", [], "accuracy", 0.90),
    "sms_spam": ("sms_spam/train80.csv", "sms_spam/test20.csv", ["--class-weights", "auto"], "f1:spam", 0.95),
    "goemotions": ("goemotions/train.tsv", "goemotions/dev.tsv", ["--multi-label"], "f1", 0.62),
    "imdb": ("imdb/train.csv", "imdb/test.csv", ["--long-text", "window"], "accuracy", 0.87),
    "imdb_truncate": ("imdb/train.csv", "imdb/test.csv", [], "accuracy", None),
    "mrpc": ("mrpc/train.csv", "mrpc/dev.csv", ["--text-pair-column", "sentence2"], "accuracy", 0.82),
    "sst2": ("sst2/train.tsv", "sst2/dev.tsv", [], "accuracy", None),  # with --rows 8000: mid-size data, any backbone
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


def first_rows(path: Path, rows: int) -> Path:
    """The header and the first `rows` rows of a data file, written under runs/."""
    target = CACHE / f"{path.parent.name}-{rows}{path.suffix}"
    with open(path, encoding="utf-8", newline="") as f, open(target, "w", encoding="utf-8", newline="") as out:
        if path.suffix == ".tsv":  # no quoting: a line a row
            out.writelines(line for _, line in zip(range(rows + 1), f))
        else:  # a quoted field may hold line breaks
            csv.writer(out).writerows(row for _, row in zip(range(rows + 1), csv.reader(f)))
    return target


def run_task(name: str, seed: int, extra: list[str], rows: int | None = None) -> dict:
    train_file, eval_file, flags, figure, target = TASKS[name]
    where = lambda f: CACHE / f if f.startswith("sms_spam") else DATA / f  # noqa: E731
    source = where(train_file) if rows is None else first_rows(where(train_file), rows)
    out = CACHE / f"task-{name}-{seed}"
    command = [FINEBERT, "train", str(source), "--output", str(out), "--quiet", "--seed", str(seed),
               *flags, *extra]
    start = time.perf_counter()
    process = subprocess.Popen(command)
    _, status, usage = os.wait4(process.pid, 0)  # this process's own peak memory, not the largest child's so far
    if status != 0:
        raise SystemExit(f"{' '.join(command)} failed")
    seconds = time.perf_counter() - start
    report = json.loads(subprocess.run([FINEBERT, "evaluate", str(out), str(where(eval_file)), "--json"],
                                       check=True, capture_output=True, text=True).stdout)
    value = report["per_class"][figure[3:]]["f1"] if figure.startswith("f1:") else report[figure]
    info = json.loads((out / "finebert.json").read_text())
    return {"task": name, "figure": figure, "value": value, "target": target, "seconds": round(seconds, 1),
            "epochs": info["config"]["epochs"], "train_seconds": info["metrics"]["train_seconds"],
            "peak_rss_mb": round(usage.ru_maxrss / 1024), "precision": info["metrics"]["precision"],
            "command": " ".join(["finebert", "train", train_file if rows is None else f"{train_file} (first {rows} rows)",
                                 *flags, *extra]), "report": report}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tasks", nargs="*", default=[t for t in TASKS if t not in ("imdb_truncate", "sst2")])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--rows", type=int, default=None, help="train on the first N rows of the training file")
    parser.add_argument("--emulate-avx2", action="store_true", help="run as on a CPU without AVX-512, VNNI or bf16")
    args, extra = parser.parse_known_args()
    extra = [e for e in extra if e != "--"]
    print(cpu_description(emulate_avx2() if args.emulate_avx2 else None), flush=True)
    sms_split()
    for name in args.tasks:
        r = run_task(name, args.seed, extra, args.rows)
        met = "" if r["target"] is None else ("  target met" if r["value"] >= r["target"] else "  TARGET MISSED")
        print(f"{name:14s} {r['figure']} {r['value']:.4f} (target {r['target']}){met}  epochs {r['epochs']}  "
              f"train {r['train_seconds']:.0f}s, whole command {r['seconds']:.0f}s, peak RSS {r['peak_rss_mb']} MB "
              f"({r['precision']})  [{r['command']}]", flush=True)
        (CACHE / f"task-{name}-{args.seed}.json").write_text(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
