"""Training throughput: finebert vs the Hugging Face Trainer, same rows, backbone and epochs.

    python benchmarks/train_speed.py [--rows 8000] [--epochs 1]

Both fine-tune the default backbone on the first ROWS rows of SST-2 train and are scored on SST-2
dev. The Trainer runs the canonical run_glue recipe: batch 32, learning rate 5e-5, dynamic padding
with DataCollatorWithPadding, fp32. finebert runs its defaults. Each side runs in a child process
of this one, one after the other; this prints samples/s, the ratio and both dev accuracies.
Needs `pip install accelerate` (the Trainer's dependency).
"""

import argparse
import json
import resource
import subprocess
import sys
import time

from common import SST2 as DATA, read_tsv


def run_trainer(rows, epochs):
    import tempfile

    import numpy as np
    import torch
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments)
    from transformers.utils import logging

    from finebert.config import DEFAULT_BACKBONE, resolve_backbone

    logging.set_verbosity_error()
    backbone = resolve_backbone(DEFAULT_BACKBONE)
    tok = AutoTokenizer.from_pretrained(backbone)
    model = AutoModelForSequenceClassification.from_pretrained(backbone, num_labels=2)
    train = [dict(tok(text, truncation=True, max_length=128), labels=label) for text, label in read_tsv(DATA / "train.tsv", rows)]
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(output_dir=tmp, per_device_train_batch_size=32, learning_rate=5e-5,
                                 num_train_epochs=epochs, report_to=[], save_strategy="no", logging_strategy="no",
                                 use_cpu=True, seed=42, disable_tqdm=True)
        trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=DataCollatorWithPadding(tok))
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    dev = read_tsv(DATA / "dev.tsv")
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(dev), 64):
            chunk = dev[i:i + 64]
            enc = tok([t for t, _ in chunk], padding=True, truncation=True, max_length=128, return_tensors="pt")
            correct += int((model(**enc).logits.argmax(1).numpy() == np.array([y for _, y in chunk])).sum())
    return {"seconds": seconds, "dev_accuracy": correct / len(dev)}


def run_finebert(rows, epochs):
    import finebert
    from finebert.data import Dataset

    texts, labels = zip(*read_tsv(DATA / "train.tsv", rows))
    clf = finebert.train(Dataset(list(texts), [str(y) for y in labels], "sst2 train"), epochs=epochs,
                         validation_split=0.0, quiet=True)
    dev = read_tsv(DATA / "dev.tsv")
    predicted = clf.predict([t for t, _ in dev])
    accuracy = sum(p == str(y) for p, (_, y) in zip(predicted, dev)) / len(dev)
    return {"seconds": clf.metrics["train_seconds"], "dev_accuracy": accuracy}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8000)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--only", choices=["trainer", "finebert"], help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args()
    if args.only:
        result = (run_trainer if args.only == "trainer" else run_finebert)(args.rows, args.epochs)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    results = {}
    for side in ("trainer", "finebert"):
        out = subprocess.run([sys.executable, __file__, "--rows", str(args.rows), "--epochs", str(args.epochs),
                              "--only", side], capture_output=True, text=True, check=True).stdout
        results[side] = json.loads(out.strip().splitlines()[-1])
        results[side]["samples_per_second"] = args.rows * args.epochs / results[side]["seconds"]
        r = results[side]
        print(f"{side:9s} {r['samples_per_second']:7.1f} samples/s  {r['seconds']:6.1f}s  dev accuracy "
              f"{r['dev_accuracy']:.4f}  peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
    ratio = results["finebert"]["samples_per_second"] / results["trainer"]["samples_per_second"]
    print(f"ratio finebert / Trainer: {ratio:.2f}x  (accuracy difference "
          f"{100 * (results['finebert']['dev_accuracy'] - results['trainer']['dev_accuracy']):+.1f} pt)")


if __name__ == "__main__":
    main()
