"""Inference speed: the Hugging Face pipeline vs finebert's engines on the same fine-tuned model.

    python benchmarks/inference_speed.py [--model DIR] [--emulate-avx2]

Texts: the 872 SST-2 dev sentences plus 949 full sentences (8+ words) from the end of SST-2 train,
1,821 texts of varied length. Each engine scores all of them after a warm-up; texts/s, the ratio
to pipeline(batch_size=32), accuracy on dev, and single-text latency (p50/p99 of a 20-word
sentence, in process) are printed. Every side is timed the same way and over the same span: REPEATS
rounds, each one pass over all the texts by every side in turn, and each side's best pass. This machine's
speed drifts by 15% within minutes, so sides timed one after another could be compared at different
speeds; the ratio of int8 to the pipeline within each round is printed too.
Without --model a model is trained on 8,000 SST-2 rows first. --emulate-avx2 runs every side as on a CPU with
AVX2 and nothing newer (common.emulate_avx2): ONNX Runtime's int8 then runs without VNNI.
"""

import argparse
import statistics
import time

import numpy as np

from common import SST2, cpu_description, emulate_avx2, read_tsv, sst2_model

REPEATS = 5
SENTENCE = "The film starts slowly but the acting is superb and by the end I was completely won over by it"  # 20 words


def texts_and_labels():
    dev = read_tsv(SST2 / "dev.tsv")
    extra = [t for t, _ in reversed(read_tsv(SST2 / "train.tsv")) if len(t.split()) >= 8][:949]
    return [t for t, _ in dev] + extra, np.array([y for _, y in dev])


def timed_in_turn(sides: dict, texts) -> tuple[dict, dict]:
    """(outputs, seconds per pass) of each side's fn(texts), over REPEATS rounds of one pass each, in turn."""
    for fn in sides.values():
        fn(texts[:64])  # warm-up
    outputs, seconds = {}, {name: [] for name in sides}
    for _ in range(REPEATS):
        for name, fn in sides.items():
            start = time.perf_counter()
            outputs[name] = fn(texts)
            seconds[name].append(time.perf_counter() - start)
    return outputs, seconds


def latency(fn, n=300):
    for _ in range(20):
        fn(SENTENCE)
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn(SENTENCE)
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[int(0.99 * len(times)) - 1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a fine-tuned SST-2 model folder (exported)")
    parser.add_argument("--emulate-avx2", action="store_true", help="hide AVX-512, VNNI, bf16 and AMX from every side")
    args = parser.parse_args()
    emulation = emulate_avx2() if args.emulate_avx2 else None
    folder = sst2_model(args.model)
    texts, dev_y = texts_and_labels()
    n_dev = len(dev_y)
    rows = []

    from transformers import pipeline
    from transformers.utils import logging

    from finebert.inference import Classifier

    logging.set_verbosity_error()
    pipe = pipeline("text-classification", model=str(folder), tokenizer=str(folder), device="cpu")
    label_id = {name: k for k, name in pipe.model.config.id2label.items()}
    pipelines = {f"HF pipeline batch_size={bs}": (lambda t, bs=bs: pipe(t, batch_size=bs, truncation=True)) for bs in (1, 32)}
    classifiers = {f"finebert {engine}": Classifier.load(folder, engine=engine) for engine in ("pytorch", "onnx-fp32", "onnx-int8")}
    outputs, seconds = timed_in_turn(pipelines | {name: clf.predict_proba for name, clf in classifiers.items()}, texts)
    for name in pipelines:
        accuracy = np.mean([label_id[o["label"]] for o in outputs[name][:n_dev]] == dev_y)
        rows.append((name, len(texts) / min(seconds[name]), accuracy, None))
    for name, clf in classifiers.items():
        accuracy = np.mean(outputs[name][:n_dev].argmax(1) == dev_y)
        rows.append((name, len(texts) / min(seconds[name]), accuracy, latency(clf.predict_proba)))
    per_round = [p / q for p, q in zip(seconds["HF pipeline batch_size=32"], seconds["finebert onnx-int8"])]

    reference = rows[1][1]
    torch_accuracy = rows[2][2]
    print(cpu_description(emulation))
    print(f"{len(texts)} texts, accuracy on the {n_dev} dev sentences; model {folder}; best of {REPEATS} rounds, "
          f"every side once a round")
    print(f"{'engine':34s} {'texts/s':>8s} {'vs pipe32':>9s} {'accuracy':>8s} {'vs torch':>8s} {'p50 ms':>7s} {'p99 ms':>7s}")
    for name, speed, accuracy, lat in rows:
        lat_text = f"{lat[0]:7.2f} {lat[1]:7.2f}" if lat else f"{'-':>7s} {'-':>7s}"
        print(f"{name:34s} {speed:8.1f} {speed / reference:8.2f}x {accuracy:8.4f} "
              f"{100 * (accuracy - torch_accuracy):+7.2f}pt {lat_text}")
    print(f"onnx-int8 vs pipeline batch_size=32 within each round: {', '.join(f'{r:.2f}x' for r in per_round)}")
    info = classifiers["finebert pytorch"].info
    int8 = info.engines.get("onnx-int8", {})
    print(f"engine `auto` chose: {info.default_engine}; export's int8 graph: smoothing {int8.get('smoothing')}, "
          f"{len(int8.get('fp32_nodes') or [])} products in fp32, {len(int8.get('tries', [])) or 1} graphs tried")
    pooling = classifiers["finebert pytorch"].config.pooling
    if pooling != "cls":  # transformers' classes read [CLS] through BERT's pooler: the same encoder, another head
        print(f"This model pools by {pooling!r}, which transformers' BERT classes cannot express: the pipeline "
              f"computes the same encoder (so its speed compares) but reads [CLS], so its accuracy does not.")


if __name__ == "__main__":
    main()
