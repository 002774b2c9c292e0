"""Are explanations faithful? ERASER's comprehensiveness on SST-2 dev.

    python benchmarks/faithfulness.py MODEL [--sentences 200] [--share 0.2]

For each of the first SENTENCES dev sentences: the predicted class's probability p; again with the
top-attributed SHARE of its words deleted (integrated gradients, finebert explain); again with the
same number of words deleted at random (mean of 3 draws). Faithful attributions make the first drop
much larger than the second. MODEL: a model folder trained on SST-2 (e.g. runs/sst2-full).
"""

import argparse
import math
import time

import numpy as np

from common import SST2, cpu_description, read_tsv


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--sentences", type=int, default=200)
    parser.add_argument("--share", type=float, default=0.2)
    args = parser.parse_args()
    print(cpu_description(), flush=True)

    from finebert.inference import Classifier

    clf = Classifier.load(args.model, engine="pytorch")
    texts = [t for t, _ in read_tsv(SST2 / "dev.tsv", args.sentences)]
    start = time.perf_counter()
    explanations = clf.explain(texts)
    seconds = time.perf_counter() - start
    rng = np.random.default_rng(0)
    top_texts, random_texts, owners = [], [], []
    for i, e in enumerate(explanations):
        k = max(1, math.ceil(args.share * len(e.words)))
        keep = lambda drop: " ".join(w for j, w in enumerate(e.words) if j not in drop)  # noqa: E731
        top_texts.append(keep(set(np.argsort(e.scores)[::-1][:k].tolist())))
        for _ in range(3):
            random_texts.append(keep(set(rng.choice(len(e.words), k, replace=False).tolist())))
            owners.append(i)
    label = [clf.labels.index(e.label) for e in explanations]
    p = clf.predict_proba(texts)[np.arange(len(texts)), label]
    p_top = clf.predict_proba(top_texts)[np.arange(len(texts)), label]
    p_random = clf.predict_proba(random_texts)[np.arange(len(random_texts)), np.array(label)[owners]]
    p_random = p_random.reshape(len(texts), 3).mean(axis=1)
    print(f"{len(texts)} sentences, explained in {seconds:.0f} s ({seconds / len(texts):.2f} s each)")
    print(f"comprehensiveness, top {args.share:.0%} of words deleted: {np.mean(p - p_top):.4f}")
    print(f"comprehensiveness, random {args.share:.0%} of words deleted: {np.mean(p - p_random):.4f}")
    print(f"ratio: {np.mean(p - p_top) / max(np.mean(p - p_random), 1e-9):.1f}x")


if __name__ == "__main__":
    main()
