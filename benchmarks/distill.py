"""`finebert distill` on SST-2: teacher and student side by side, in one run.

    python benchmarks/distill.py [--rows 8000] [--unlabelled 20000] [--layers 3] [--emulate-avx2] [--reuse]

Teacher: the default command on the first ROWS sentences of SST-2 train. Student: `finebert distill` with LAYERS
of its layers, the next UNLABELLED sentences of SST-2 train given as unlabelled text (their labels never read).
Both are scored on SST-2 dev (872 sentences); both are exported (`finebert export`, the guarded int8 path) and
their engines timed in turn on the dev sentences plus 949 long train sentences, with the HF pipeline on the teacher
as the baseline (benchmarks/inference_speed.py's texts and timing: rounds in turn, each side's best pass).
--reuse keeps the teacher and student of an earlier run (runs/distill/) and exports and times them again.
"""

import argparse
import json
import shutil
import subprocess
import sys
import time

from common import CACHE, SST2, cpu_description, emulate_avx2, read_tsv
from inference_speed import texts_and_labels, timed_in_turn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8000)
    parser.add_argument("--unlabelled", type=int, default=20000)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--emulate-avx2", action="store_true")
    parser.add_argument("--reuse", action="store_true", help="export and time the models of an earlier run again")
    args = parser.parse_args()
    print(cpu_description(emulate_avx2() if args.emulate_avx2 else None))
    work = CACHE / "distill"
    finebert = [sys.executable, "-m", "finebert"]
    teacher_seconds = student_seconds = float("nan")
    if not (args.reuse and (work / "student" / "finebert.json").is_file()):
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        rows = read_tsv(SST2 / "train.tsv", args.rows + args.unlabelled)
        with open(work / "train.tsv", "w", encoding="utf-8") as f:
            f.write("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows[:args.rows]))
        (work / "unlabelled.txt").write_text("".join(f"{t}\n" for t, _ in rows[args.rows:]), encoding="utf-8")
        started = time.perf_counter()
        subprocess.run([*finebert, "train", str(work / "train.tsv"), "-o", str(work / "teacher"), "-q"], check=True)
        teacher_seconds = time.perf_counter() - started
        started = time.perf_counter()
        subprocess.run([*finebert, "distill", str(work / "teacher"), str(work / "train.tsv"), "-o",
                        str(work / "student"), "--layers", str(args.layers), "--unlabelled", str(work / "unlabelled.txt"),
                        "--force"], check=True)
        student_seconds = time.perf_counter() - started
    for side in ("teacher", "student"):
        subprocess.run([*finebert, "export", str(work / side)], check=True)

    from transformers import pipeline

    from finebert.data import Dataset
    from finebert.evaluation import evaluate
    from finebert.inference import Classifier

    dev = read_tsv(SST2 / "dev.tsv")
    dev_set = Dataset([t for t, _ in dev], [str(y) for _, y in dev], "sst2 dev")
    record = json.loads((work / "student" / "finebert.json").read_text())["metrics"]["distillation"]
    accuracy = {side: evaluate(Classifier.load(work / side, engine="pytorch"), dev_set).accuracy
                for side in ("teacher", "student")}
    texts, _ = texts_and_labels()
    sides = {}
    engines = {}
    for side in ("teacher", "student"):
        clf = Classifier.load(work / side)  # auto: the fastest engine that passed export's guard
        engines[side] = clf.engine.name
        sides[side] = clf.predict_proba
    # The pipeline on the teacher's network. A mean-pooled teacher's folder is finebert-only (HF's classes would put
    # their head on [CLS]), so the pipeline gets the same encoder with HF's own head: the same arithmetic, other logits.
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from finebert.model import hf_config

    network = AutoModelForSequenceClassification.from_pretrained(str(work / "teacher"), config=hf_config(work / "teacher"))
    hf = pipeline("text-classification", model=network, tokenizer=AutoTokenizer.from_pretrained(str(work / "teacher")),
                  device="cpu")
    sides["HF pipeline (teacher)"] = lambda batch: hf(batch, batch_size=32, truncation=True)
    _, seconds = timed_in_turn(sides, texts)
    rate = {name: len(texts) / min(s) for name, s in seconds.items()}
    print(f"teacher: default command on {args.rows} SST-2 rows, {teacher_seconds:.0f} s; student: {args.layers} "
          f"layers {record['layer_map']}, {args.unlabelled} unlabelled sentences, {student_seconds:.0f} s")
    print(f"SST-2 dev: teacher {accuracy['teacher']:.4f}, student {accuracy['student']:.4f} "
          f"({100 * (accuracy['student'] - accuracy['teacher']):+.2f} points); the guard's validation: teacher "
          f"{record['teacher_score']:.4f}, student {record['student_score']:.4f}")
    for name, value in rate.items():
        print(f"{name} ({engines.get(name, 'pytorch')}): {value:.0f} texts/s")
    print(f"student / teacher: {rate['student'] / rate['teacher']:.2f}x")
    print(f"student / HF pipeline on the teacher: {rate['student'] / rate['HF pipeline (teacher)']:.2f}x")


if __name__ == "__main__":
    main()
