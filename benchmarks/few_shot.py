"""Small data: `finebert train` with no flags against SetFit 1.2 with its defaults, on the same backbone.

    python benchmarks/few_shot.py [--tasks sst2 ag_news] [--shots 16 64] [--draws 3] [--no-setfit] [--emulate-avx2]
                                  [-- extra finebert train flags, e.g. --recipe fine-tune]

For each task, k examples per class are drawn from the training file (seeds 0, 1, 2, ...); both tools
train on the same draw and are scored on the same held-out file (SST-2 dev, AG News test). Each side is
timed the same way, in this process: from loading the backbone to a trained model, scoring excluded.
Prints the mean accuracy and time over the draws, their differences, and the machine. Needs the [bench]
extra (setfit). Data: ../shared/data (see its README); results go to runs/few-shot.json. --emulate-avx2 runs
both sides as on a CPU with AVX2 and nothing newer, so in fp32 (common.emulate_avx2).
"""

import argparse
import csv
import json
import time

import numpy as np
from common import CACHE, DATA, cpu_description, emulate_avx2, read_tsv

AG_NEWS_LABELS = ["World", "Sports", "Business", "Sci/Tech"]


def load(task: str):
    """(train rows, evaluation rows, label names), rows as (text, label name)."""
    if task == "sst2":
        names = ["negative", "positive"]
        train, test = (read_tsv(DATA / "sst2" / f) for f in ("train.tsv", "dev.tsv"))
        return [(t, names[y]) for t, y in train], [(t, names[y]) for t, y in test], names
    rows = {}
    for split in ("train", "test"):
        with open(DATA / "ag_news" / f"{split}.csv", encoding="utf-8", newline="") as f:
            rows[split] = [(r["text"], r["label"]) for r in csv.DictReader(f)]
    return rows["train"], rows["test"], AG_NEWS_LABELS


def draw(rows, names, k: int, seed: int):
    """k rows of each label, chosen at random (seed), in a shuffled order."""
    rng = np.random.default_rng(seed)
    picked = []
    for name in names:
        candidates = [i for i, (_, label) in enumerate(rows) if label == name]
        picked += list(rng.choice(candidates, k, replace=False))
    rng.shuffle(picked)
    return [rows[i] for i in picked]


def run_finebert(train, test, seed: int, extra: list[str]) -> tuple[float, float, str]:
    import finebert
    from finebert.data import Dataset

    settings = _settings(extra)
    start = time.perf_counter()
    clf = finebert.train(Dataset([t for t, _ in train], [y for _, y in train], "draw"), seed=seed, quiet=True,
                         **settings)
    seconds = time.perf_counter() - start
    predicted = clf.predict([t for t, _ in test])
    return float(np.mean([p == y for p, (_, y) in zip(predicted, test)])), seconds, clf.config.recipe


def run_setfit(train, test, seed: int) -> tuple[float, float]:
    from datasets import Dataset as HFDataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    from finebert.config import DEFAULT_BACKBONE, resolve_backbone

    start = time.perf_counter()
    model = SetFitModel.from_pretrained(str(resolve_backbone(DEFAULT_BACKBONE)))
    args = TrainingArguments(seed=seed, show_progress_bar=False, output_dir=str(CACHE / "setfit-checkpoints"))
    trainer = Trainer(model=model, args=args,
                      train_dataset=HFDataset.from_dict({"text": [t for t, _ in train], "label": [y for _, y in train]}))
    trainer.train()
    seconds = time.perf_counter() - start
    predicted = model.predict([t for t, _ in test])
    return float(np.mean([p == y for p, (_, y) in zip(predicted, test)])), seconds


def _settings(extra: list[str]) -> dict:
    """`--recipe fine-tune --epochs 3` as TrainConfig keywords (numbers converted)."""
    settings, i = {}, 0
    while i < len(extra):
        key, value = extra[i].lstrip("-").replace("-", "_"), extra[i + 1]
        for kind in (int, float):
            try:
                value = kind(value)
                break
            except ValueError:
                pass
        settings[key] = value
        i += 2
    return settings


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["sst2", "ag_news"])
    parser.add_argument("--shots", nargs="+", type=int, default=[16, 64])
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--no-setfit", action="store_true", help="finebert only")
    parser.add_argument("--emulate-avx2", action="store_true", help="hide AVX-512, VNNI, bf16 and AMX from both sides")
    args, extra = parser.parse_known_args()
    extra = [e for e in extra if e != "--"]
    print(cpu_description(emulate_avx2() if args.emulate_avx2 else None), flush=True)
    results = []
    for task in args.tasks:
        train_rows, test_rows, names = load(task)
        for k in args.shots:
            for seed in range(args.draws):
                sample = draw(train_rows, names, k, seed)
                row = {"task": task, "shots": k, "draw": seed, "extra": extra}
                row["finebert_accuracy"], row["finebert_seconds"], row["recipe"] = run_finebert(sample, test_rows, seed, extra)
                if not args.no_setfit:
                    row["setfit_accuracy"], row["setfit_seconds"] = run_setfit(sample, test_rows, seed)
                results.append(row)
                print(json.dumps(row), flush=True)
            same = [r for r in results if r["task"] == task and r["shots"] == k]
            line = (f"{task} {k}/class, {len(same)} draws: finebert ({same[0]['recipe']}) "
                    f"{np.mean([r['finebert_accuracy'] for r in same]):.4f} in {np.mean([r['finebert_seconds'] for r in same]):.0f}s")
            if not args.no_setfit:
                gain = np.mean([r["finebert_accuracy"] - r["setfit_accuracy"] for r in same])
                ratio = np.mean([r["setfit_seconds"] for r in same]) / np.mean([r["finebert_seconds"] for r in same])
                line += (f", SetFit {np.mean([r['setfit_accuracy'] for r in same]):.4f} in "
                         f"{np.mean([r['setfit_seconds'] for r in same]):.0f}s: {gain * 100:+.1f} points, "
                         f"finebert {ratio:.2f}x as fast")
            print(line, flush=True)
    CACHE.mkdir(exist_ok=True)
    (CACHE / "few-shot.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
