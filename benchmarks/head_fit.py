"""The head fit (head_init="fit"): how a linear probe's accuracy grows with the rows it reads, and what
reading them costs, on a training file alone (no test data).

    python benchmarks/head_fit.py [ag_news/train.csv] [--rows 8000]

Splits the file as the default command does (10% held out, stratified, seed 42), embeds every row once with the
default backbone (normalised-mean pooling, as head-first does) in fp32 and in bf16 autocast, then fits scikit-learn's
logistic regression (C=1, as training.fit_head) on seeded samples of the training part and scores it on the
held-out part. Prints the CPU, the embedding times and accuracy by sample size (mean ± sd over 5 samples).
"""

import argparse
import time

import numpy as np
from common import DATA, cpu_description


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", default="ag_news/train.csv", help="under ../shared/data")
    parser.add_argument("--rows", type=int, help="only the first ROWS rows of the file")
    args = parser.parse_args()

    import torch
    from sklearn.linear_model import LogisticRegression

    from finebert.config import TrainConfig, resolve_backbone
    from finebert.data import read_dataset, validation_split
    from finebert.engines import TorchEngine, length_batches, run_chunks
    from finebert.labels import LabelSpace
    from finebert.model import bf16_supported, build_model
    from finebert.tokenization import Tokenizer

    data = read_dataset(DATA / args.file)
    texts, labels = data.texts[:args.rows], data.labels[:args.rows]
    space = LabelSpace.from_data(labels)
    y = space.encode(labels, data.source)  # (N,)
    config = TrainConfig()
    train, held = (np.array(rows) for rows in validation_split(y, config.validation_split, config.validation_max_rows, config.seed))
    backbone = resolve_backbone(config.model)
    tokenizer = Tokenizer(backbone)
    model = build_model(backbone, len(space), pooling="normalized-mean", dropout=0.0)
    encoded = tokenizer.encode(texts)
    print(cpu_description())
    print(f"{args.file}: {len(texts)} rows, {len(train)} to fit on, {len(held)} held out", flush=True)
    features = {}
    for precision in ("fp32", "bf16") if bf16_supported(torch.device("cpu")) else ("fp32",):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            features[precision] = run_chunks(TorchEngine(model).embeddings, tokenizer, encoded,
                                             length_batches(encoded.chunk_lengths(), config.eval_batch_size))  # (N, H)
        print(f"embedding every row, {precision}: {time.perf_counter() - start:.1f} s", flush=True)
    for precision, x in features.items():
        for n in sorted({500, 1000, 2000, 3000, 5000, len(train)} & set(range(len(train) + 1))):
            scores = []
            for draw in range(5 if n < len(train) else 1):
                picked = np.sort(np.random.default_rng(draw).choice(train, n, replace=False))
                fit = LogisticRegression(max_iter=1000).fit(x[picked], y[picked])
                scores.append((fit.predict(x[held]) == y[held]).mean())
            print(f"{precision} probe on {n:5d} rows: held-out accuracy {np.mean(scores):.4f} ± {np.std(scores):.4f}", flush=True)


if __name__ == "__main__":
    main()
