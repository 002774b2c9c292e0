"""Training speed: finebert's default command against the Hugging Face Trainer, same rows, backbone and epochs.

    python benchmarks/train_speed.py [--rows 8000] [--epochs 1] [--rounds 1] [--emulate-avx2]
                                     [--finebert-args "--freeze-layers 2"]

Three sides, each a child process of this one, run one after the other and timed the same way: whole
process, from its start (Python, imports, model load, tokenization) to a trained model. With --rounds N
the sides run N times in turn, in reverse order every other round (A B C, C B A, ...), so that the drift of
this machine's speed within the hour (up to 15% between two runs of the same command minutes apart) falls on
every side alike; each round's ratios are printed, and the ratio of each side's best time.
- trainer-glue:  the Trainer with the canonical run_glue recipe: batch 32, learning rate 5e-5, dynamic
                 padding (DataCollatorWithPadding), fp32, random batches.
- trainer-tuned: the same with its best CPU settings: train_sampling_strategy="group_by_length", and bf16
                 where the CPU has bf16 arithmetic.
- finebert:      `finebert train ROWS.tsv --epochs 1`, the default command: it holds out a stratified 10%,
                 trains on the rest, validates, calibrates, and writes the model folder with its report.
                 `--finebert-validation dev` instead trains on all ROWS rows and validates on SST-2 dev;
                 `--finebert-args` adds options to the command (for example "--freeze-layers 2").
All three are then scored on SST-2 dev. Prints seconds, samples/s, dev accuracy, peak RSS and finebert's
ratio to each Trainer side.

--emulate-avx2 runs every side on this CPU as if it had AVX2 and nothing newer: CPUID hides AVX-512, VNNI,
bf16 and AMX from every process (benchmarks/avx2_only.c; common.emulate_avx2), so PyTorch, MKL and oneDNN
run their AVX2 kernels in fp32. It is an emulation, not an AVX2 machine (clock, caches and memory stay this
CPU's); say so with its figures. Sessions 5-14 emulated with ATEN_CPU_CAPABILITY=avx2,
MKL_ENABLE_INSTRUCTIONS=AVX2 and ONEDNN_MAX_CPU_ISA=AVX2 instead, which hold those three libraries alike.
Needs `pip install -e '.[bench]'` (accelerate, the Trainer's dependency).
"""

import argparse
import json
import os
import resource
import shlex
import shutil
import subprocess
import sys
import time

from common import CACHE, SST2 as DATA, cpu_description, emulate_avx2, read_tsv

FINEBERT = os.path.join(os.path.dirname(sys.executable), "finebert")


def dev_accuracy(model, tok) -> float:
    import numpy as np
    import torch

    dev = read_tsv(DATA / "dev.tsv")
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(dev), 64):
            chunk = dev[i:i + 64]
            enc = tok([t for t, _ in chunk], padding=True, truncation=True, max_length=128, return_tensors="pt")
            correct += int((model(**enc).logits.argmax(1).numpy() == np.array([y for _, y in chunk])).sum())
    return correct / len(dev)


def run_trainer(rows: int, epochs: float, tuned: bool) -> dict:
    """Child: trains with the Trainer; returns when training ended (time.time()) and the dev accuracy."""
    import tempfile

    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments)
    from transformers.utils import logging

    from finebert.config import DEFAULT_BACKBONE, resolve_backbone
    from finebert.model import bf16_supported

    import torch

    logging.set_verbosity_error()
    backbone = resolve_backbone(DEFAULT_BACKBONE)
    tok = AutoTokenizer.from_pretrained(backbone)
    model = AutoModelForSequenceClassification.from_pretrained(backbone, num_labels=2)
    train = [dict(tok(text, truncation=True, max_length=128), labels=label) for text, label in read_tsv(DATA / "train.tsv", rows)]
    bf16 = tuned and bf16_supported(torch.device("cpu"))
    tuning = dict(train_sampling_strategy="group_by_length", bf16=bf16) if tuned else {}
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(output_dir=tmp, per_device_train_batch_size=32, learning_rate=5e-5,
                                 num_train_epochs=epochs, report_to=[], save_strategy="no", logging_strategy="no",
                                 use_cpu=True, seed=42, disable_tqdm=True, **tuning)
        Trainer(model=model, args=args, train_dataset=train, data_collator=DataCollatorWithPadding(tok)).train()
    trained_at = time.time()
    return {"trained_at": trained_at, "dev_accuracy": dev_accuracy(model, tok), "bf16": bf16}


def run_finebert(rows: int, epochs: float, folder, validation: str, options: list[str]) -> dict:
    """Parent: the real console script on a file of the first ROWS rows; scored on dev afterwards."""
    data = CACHE / f"sst2-first{rows}.tsv"
    if not data.is_file():
        CACHE.mkdir(exist_ok=True)
        lines = (DATA / "train.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
        data.write_text("".join(lines[:rows + 1]), encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    extra = ["--validation", str(DATA / "dev.tsv")] * (validation == "dev") + options
    process = subprocess.Popen([FINEBERT, "train", str(data), *extra, "--epochs", str(epochs), "--output", str(folder),
                                "--quiet"])
    _, status, usage = os.wait4(process.pid, 0)  # this process's own peak memory, not the largest child's so far
    process.returncode = os.waitstatus_to_exitcode(status)
    if status:
        raise SystemExit(f"finebert train failed (wait status {status})")
    return {"trained_at": time.time(), "peak_rss_mb": usage.ru_maxrss / 1024}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8000)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--emulate-avx2", action="store_true", help="hide AVX-512, VNNI, bf16 and AMX from every side")
    parser.add_argument("--sides", default="trainer-glue,trainer-tuned,finebert")
    parser.add_argument("--rounds", type=int, default=1, help="run the sides this many times in turn (see above)")
    parser.add_argument("--finebert-validation", choices=["holdout", "dev"], default="holdout",
                        help="holdout: the default command; dev: train on every row, validate on SST-2 dev")
    parser.add_argument("--finebert-args", default="", help='more options for `finebert train`, e.g. "--freeze-layers 2"')
    parser.add_argument("--only", choices=["trainer-glue", "trainer-tuned"], help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args()
    if args.only:
        result = run_trainer(args.rows, args.epochs, tuned=args.only == "trainer-tuned")
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    print(cpu_description(emulate_avx2() if args.emulate_avx2 else None))
    print(f"{args.rows} SST-2 rows, {args.epochs:g} epoch(s); time = whole process, start to trained model"
          + (f"; finebert train ... {args.finebert_args}" if args.finebert_args else ""), flush=True)
    sides = args.sides.split(",")
    runs = {side: [] for side in sides}
    for round_ in range(args.rounds):
        for side in sides if round_ % 2 == 0 else sides[::-1]:
            r = run_side(side, args)
            runs[side].append(r)
            note = f"  bf16 {'on' if r.get('bf16') else 'off'}" if "bf16" in r else ""
            print(f"round {round_ + 1}  {side:13s} {r['seconds']:7.1f} s  {r['samples_per_second']:6.1f} samples/s  "
                  f"dev accuracy {r['dev_accuracy']:.4f}  peak RSS {r['peak_rss_mb']:.0f} MB{note}", flush=True)
    if "finebert" in runs:
        ours = runs["finebert"]
        for side in (s for s in sides if s != "finebert"):
            per_round = [theirs["seconds"] / mine["seconds"] for theirs, mine in zip(runs[side], ours)]
            best = min(r["seconds"] for r in runs[side]) / min(r["seconds"] for r in ours)
            print(f"finebert vs {side}: {best:.2f}x faster, best times (each round: "
                  f"{', '.join(f'{x:.2f}x' for x in per_round)}; accuracy "
                  f"{100 * (mean_accuracy(ours) - mean_accuracy(runs[side])):+.1f} pt, means over the rounds)")


def mean_accuracy(runs: list[dict]) -> float:
    return sum(r["dev_accuracy"] for r in runs) / len(runs)


def run_side(side: str, args) -> dict:
    """One run of a side, timed from its start to a trained model, scored on SST-2 dev."""
    start = time.time()
    if side == "finebert":
        folder = CACHE / "speed-finebert"
        r = run_finebert(args.rows, args.epochs, folder, args.finebert_validation, shlex.split(args.finebert_args))
        from finebert import Classifier

        dev = read_tsv(DATA / "dev.tsv")
        predicted = Classifier.load(folder, engine="pytorch").predict([t for t, _ in dev])
        r["dev_accuracy"] = sum(p == str(y) for p, (_, y) in zip(predicted, dev)) / len(dev)
    else:
        out = subprocess.run([sys.executable, __file__, "--rows", str(args.rows), "--epochs", str(args.epochs),
                              "--only", side], capture_output=True, text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
    r["seconds"] = r["trained_at"] - start
    r["samples_per_second"] = args.rows * args.epochs / r["seconds"]
    return r

if __name__ == "__main__":
    main()
