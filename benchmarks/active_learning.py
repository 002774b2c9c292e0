"""Active learning: the model from finebert label's choice of texts against the model from randomly chosen texts.

    python benchmarks/active_learning.py [ag_news sms_spam] [--seeds 3] [--budgets 64 128 384] [--pool-rows 2000]
    python benchmarks/active_learning.py --head-only ...      # a quick look: the fast head alone, no fine-tuning

A simulated annotator answers each text the session shows with its true label, which the tool never sees (the pool
file it reads has no label column). Both strategies run the tool's own session (session.py) in line: the same fast
head every 4 answers, the same fine-tunes at 32, 64, 128, 256 and every 128 labels after (the random strategy skips
those that are not a budget: its choice does not read the model). At each budget the model in PROJECT/model/ is
scored on the task's test file: accuracy (AG News), the F1 of spam (SMS spam, 80/20 split as benchmarks/tasks.py).
The reference: finebert train on every row of the pool with its true labels (the whole labelled file).

Prints the CPU, each run's figures and a table of means over seeds; writes the curves to runs/active_learning/ and
the plot to benchmarks/active_learning.png.
"""

import argparse
import csv
import json
import shutil
import time

import numpy as np
from common import CACHE, DATA, ROOT, cpu_description
from tasks import sms_split

TASKS = {  # pool file (its first --pool-rows rows), test file, labels, the figure
    "ag_news": (DATA / "ag_news/train.csv", DATA / "ag_news/test.csv", "accuracy"),
    "sms_spam": (CACHE / "sms_spam/train80.csv", CACHE / "sms_spam/test20.csv", "f1:spam"),
}
OUT = CACHE / "active_learning"


def read(path, rows=None):
    with open(path, encoding="utf-8", newline="") as f:
        table = list(csv.DictReader(f))[:rows]
    return [r["text"] for r in table], [r["label"] for r in table]


def figure(name, predicted, truth):
    from sklearn.metrics import accuracy_score, f1_score

    if name == "accuracy":
        return accuracy_score(truth, predicted)
    return f1_score(truth, predicted, pos_label=name.split(":")[1], average="binary")


def simulate(task, strategy, seed, budgets, texts, truth, test, head_only):
    """One labelling session answered by the true labels; {budget: test figure} and {budget: estimated accuracy}."""
    from finebert.inference import Classifier
    from finebert.labelling.project import Project
    from finebert.labelling.session import Session, embed, fine_tune, next_fine_tune

    folder = OUT / task / f"{strategy}-{seed}"
    shutil.rmtree(folder, ignore_errors=True)
    pool = OUT / task / "pool.csv"
    labels = sorted(set(truth))
    project = Project.open(folder, pool, labels=labels, strategy=strategy, seed=seed)
    shutil.copy(OUT / task / "features.base.npy", folder / "features.base.npy")  # the backbone's vectors, embedded once
    session = Session(project)
    scores, estimates, start = {}, {}, time.perf_counter()
    test_texts, test_truth, metric = test
    while len(project.labelled()) < max(budgets):
        item = session.next()
        session.answer(item["id"], truth[item["id"]])
        if session.refit_due():
            session.refresh()
        done = len(project.labelled())
        due = session.fine_tune_due() and (strategy == "active" or done in budgets)
        if not head_only and due:
            fine_tune(folder)
            session.reload()
        elif head_only and session.fine_tune_due():
            session.trained_on = next_fine_tune(session.trained_on)  # the schedule moves on, the vectors stay
        if done in budgets:
            if head_only:
                index, y = session._targets()
                x = OUT / task / "test.base.npy"
                if not x.exists():
                    np.save(x, embed(test_texts))
                probs = session.guess(session.base, index, y, rows=np.load(x))  # (T, C)
                predicted = [labels[k] for k in probs.argmax(1)]
            else:
                predicted = Classifier.load(folder / "model").predict(test_texts)
            scores[done] = figure(metric, predicted, test_truth)
            estimates[done] = session.estimate
            print(f"  {task} {strategy} seed {seed}: {done} labels -> {metric} {scores[done]:.4f} "
                  f"(estimated accuracy {session.estimate}) at {time.perf_counter() - start:.0f} s", flush=True)
    project.close()
    return scores, estimates


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tasks", nargs="*", default=list(TASKS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budgets", type=int, nargs="+", default=[64, 128, 384])
    parser.add_argument("--pool-rows", type=int, default=2000, help="the pool: this many first rows of the train file")
    parser.add_argument("--head-only", action="store_true", help="score the fast head, fine-tune nothing")
    args = parser.parse_args()

    from finebert.labelling.session import embed
    from finebert.training import train

    sms_split()
    print(cpu_description())
    results = {}
    for task in args.tasks:
        pool_file, test_file, metric = TASKS[task]
        texts, truth = read(pool_file, args.pool_rows)
        test_texts, test_truth = read(test_file)
        (OUT / task).mkdir(parents=True, exist_ok=True)
        with open(OUT / task / "pool.csv", "w", encoding="utf-8", newline="") as f:  # texts only: no labels to peek at
            csv.writer(f).writerows([["text"], *[[t] for t in texts]])
        labels = sorted(set(truth))
        if not (OUT / task / "features.base.npy").exists():
            np.save(OUT / task / "features.base.npy", embed(texts + labels))
        full = OUT / task / "full"
        if not (full / "finebert.json").exists():
            shutil.rmtree(full, ignore_errors=True)  # a run stopped midway
            train(_labelled(task, texts, truth), output=full, quiet=True)
        from finebert.inference import Classifier

        reference = figure(metric, Classifier.load(full).predict(test_texts), test_truth)
        print(f"{task}: pool {len(texts)} texts, test {len(test_texts)}; the whole labelled pool: {metric} {reference:.4f}",
              flush=True)
        runs = {s: [simulate(task, s, seed, args.budgets, texts, truth, (test_texts, test_truth, metric), args.head_only)
                    for seed in range(args.seeds)] for s in ("active", "random")}
        results[task] = {"metric": metric, "reference": reference, "pool": len(texts), "runs": runs, "budgets": args.budgets}
        for b in args.budgets:
            a = [r[0][b] for r in runs["active"]]
            r = [r[0][b] for r in runs["random"]]
            print(f"{task} {b:4d} labels: active {np.mean(a):.4f} ± {np.std(a):.4f}, random {np.mean(r):.4f} ± "
                  f"{np.std(r):.4f}: {100 * (np.mean(a) - np.mean(r)):+.2f} points; the whole pool {reference:.4f} "
                  f"({100 * (np.mean(a) - reference):+.2f})", flush=True)
    kind = "head" if args.head_only else "model"
    saved = OUT / f"results-{kind}.json"  # one task at a time: the tasks measured before stay in the plot
    earlier = json.loads(saved.read_text()) if saved.exists() else {}
    results = {task: _budgets_as_ints(r) for task, r in earlier.items()} | results
    saved.write_text(json.dumps(results, indent=1, default=str))
    plot(results, ROOT / "benchmarks" / ("active_learning.png" if not args.head_only else "active_learning_head.png"))


def _budgets_as_ints(result):
    """A task's results read back from JSON (whose keys are strings)."""
    result["runs"] = {s: [[{int(b): v for b, v in part.items()} for part in run] for run in runs]
                      for s, runs in result["runs"].items()}
    return result


def _labelled(task, texts, truth):
    path = OUT / task / "labelled.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([["text", "label"], *zip(texts, truth)])
    return path


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.6), squeeze=False)
    for ax, (task, r) in zip(axes[0], results.items()):
        budgets = sorted(r["runs"]["active"][0][0])
        for strategy, colour in (("active", "#2b7de9"), ("random", "#999999")):
            values = np.array([[run[0][b] for b in budgets] for run in r["runs"][strategy]])  # (seeds, budgets)
            ax.errorbar(budgets, values.mean(0), yerr=values.std(0), marker="o", color=colour, capsize=3,
                        label=f"{strategy} (mean of {len(values)} seeds)")
        ax.axhline(r["reference"], color="#3aa655", linestyle="--", label=f"all {r['pool']} rows labelled")
        ax.set_title(task)
        ax.set_xlabel("labels given")
        ax.set_ylabel(r["metric"])
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
