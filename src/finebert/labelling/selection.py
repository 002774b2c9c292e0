"""Which texts to label next: the ones that teach the model most, kept diverse.

    probs = name_guess(features, name_features)          # before any label: the label names' own guess
    queue = choose(features, probs, open_rows, counts, n=8, rng=rng)

Every vector here is of unit length (normalized-mean pooling), so a dot product is a cosine.

A batch of n texts, in three parts (benchmarks/active_learning.py measures them against random choice):
- rare: a label with fewer answers than others (IMBALANCED) gets RARE_SHARE of the batch: the texts most likely to
  be it; before any model, every label gets its one text, the one its name places nearest.
- covered: the pool is cut into (answers so far + n) clusters (k-means); the largest clusters that hold no answered
  text each give one text, so that a batch spreads over what is not labelled yet, largest regions first (TypiClust,
  Hacohen et al. 2022: at small budgets the typical texts of uncovered regions teach more than the uncertain ones);
- within a cluster, the text with the best typicality x (UNCERTAINTY_FLOOR + uncertainty) ** UNCERTAINTY_POWER:
  typical (dense neighbourhood: not an outlier) and one the current model is unsure of (margin of its top two).
"""

from __future__ import annotations

import numpy as np

NAME_TEMPERATURE = 0.05  # the label names' guess: cosine similarities divided by this are its logits
RARE_SHARE = 0.25  # of each batch, for the labels with fewest answers (when classes are imbalanced) ...
IMBALANCED = 1.5  # ... that is, when the most answered label has this many times the answers of the least
UNCERTAINTY_FLOOR, UNCERTAINTY_POWER = 0.1, 1.0  # a cluster's text: typicality x (floor + uncertainty) ** power
NEIGHBOURS = 20  # typicality: 1 / the mean distance to this many nearest neighbours
SAMPLE = 5000  # k-means and the neighbours are found among a seeded sample of this many rows of a larger pool


def name_guess(features: np.ndarray, name_features: np.ndarray, space) -> np.ndarray:
    """(N, C) probabilities from the label names alone: how near each text (N, H) lies to each name (C, H), as
    logits through the label space's one step (softmax; multi-label: sigmoids, above the text's mean similarity)."""
    similarity = features @ name_features.T  # (N, C) cosines
    if space.multi_label:
        similarity = similarity - similarity.mean(axis=1, keepdims=True)
    return space.postprocess(similarity / NAME_TEMPERATURE).probabilities


def uncertainty(probs: np.ndarray, multi_label: bool = False) -> np.ndarray:
    """(N,) from 0 (sure) to 1 (undecided): 1 - the margin between the top two labels, or for multi-label
    1 - twice the distance from 0.5 of the least decided label."""
    if multi_label:
        return 1 - 2 * np.abs(probs - 0.5).min(axis=1)
    top2 = np.sort(probs, axis=1)[:, -2:]  # (N, 2)
    return 1 - (top2[:, 1] - top2[:, 0])


def spread(features: np.ndarray, rows: np.ndarray, n: int, rng: np.random.Generator,
           chosen: list[int] = ()) -> list[int]:
    """n of `rows` spread over the vector space (k-means++ seeding: each next row drawn with probability growing
    with its squared distance to the nearest row chosen so far, `chosen` included)."""
    rows, picked = np.asarray(rows), []
    if len(rows) == 0 or n <= 0:
        return picked
    x = features[rows]  # (R, H)
    nearest = np.full(len(rows), 4.0)  # squared distance to the nearest chosen (unit vectors: at most 4)
    for c in chosen:
        nearest = np.minimum(nearest, ((x - features[c]) ** 2).sum(axis=1))
    for _ in range(min(n, len(rows))):
        weights = nearest ** 2 if picked or len(chosen) else np.ones(len(rows))
        if weights.sum() <= 0:
            break
        k = int(rng.choice(len(rows), p=weights / weights.sum()))
        picked.append(int(rows[k]))
        nearest = np.minimum(nearest, ((x - x[k]) ** 2).sum(axis=1))
        nearest[k] = 0.0
    return picked


def typicality(features: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N,) 1 / the mean distance of each row to its NEIGHBOURS nearest rows (among a sample of SAMPLE rows)."""
    sample = features if len(features) <= SAMPLE else features[rng.choice(len(features), SAMPLE, replace=False)]
    k = min(NEIGHBOURS, len(sample) - 1)
    out = np.empty(len(features))
    for start in range(0, len(features), 1024):
        similarity = features[start:start + 1024] @ sample.T  # (b, S)
        nearest = -np.partition(-similarity, k, axis=1)[:, 1:k + 1]  # the k most similar, less the row itself
        out[start:start + 1024] = 1 / (np.sqrt(np.maximum(2 - 2 * nearest, 0)).mean(axis=1) + 1e-6)
    return out


def clusters(features: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """(N,) the k-means cluster of each row: k clusters fitted on a sample of at most SAMPLE rows."""
    from sklearn.cluster import KMeans

    sample = features if len(features) <= SAMPLE else features[rng.choice(len(features), SAMPLE, replace=False)]
    fit = KMeans(min(k, len(sample)), n_init=1, max_iter=50, random_state=int(rng.integers(2**31))).fit(sample)
    return fit.predict(features)


def choose(features: np.ndarray, probs: np.ndarray, open_rows: np.ndarray, counts: np.ndarray, *, n: int,
           rng: np.random.Generator, multi_label: bool = False, cold: bool = False,
           typical: np.ndarray | None = None, extra: int = 0) -> list[int]:
    """The next n rows to label, from `open_rows` (rows not answered yet), in the order to show them, and `extra`
    rows more, chosen the same way (the same clusters), to show should the next choice be late; the first n are
    those choose(n) gives.

    features: (N, H) unit vectors; probs: (N, C) the current model's (or the names') guess; counts: (C,) answers
    per label so far; cold: no model yet (too few labels): the label names' guess, then typical texts alone;
    typical: typicality(features), when the caller keeps it."""
    open_rows = np.asarray(open_rows)
    if len(open_rows) == 0:
        return []
    picked: list[int] = []
    rare = np.arange(len(counts)) if cold or counts.max() == 0 else np.flatnonzero(counts < counts.max() / IMBALANCED)
    slots = len(rare) if cold else min(len(rare), max(1, int(round(RARE_SHARE * n))))
    for k in rare[np.argsort(counts[rare], kind="stable")][:slots]:
        left = open_rows[~np.isin(open_rows, picked)]
        if len(left):
            picked.append(int(left[np.argmax(probs[left, k])]))
    typical = typicality(features, rng) if typical is None else typical  # (N,)
    score = typical if cold else typical * (UNCERTAINTY_FLOOR + uncertainty(probs, multi_label)) ** UNCERTAINTY_POWER
    answered = np.setdiff1d(np.arange(len(features)), open_rows)
    cluster = clusters(features, len(answered) + n, rng)  # (N,)
    covered = set(cluster[answered].tolist()) | set(cluster[picked].tolist())
    free = np.zeros(len(features), dtype=bool)
    free[open_rows] = True
    free[picked] = False
    for c in np.argsort(-np.bincount(cluster), kind="stable"):  # the largest clusters first
        if len(picked) >= n + extra:
            break
        members = np.flatnonzero((cluster == c) & free)
        if c in covered or len(members) == 0:
            continue
        picked.append(int(members[np.argmax(score[members])]))
    rest = open_rows[~np.isin(open_rows, picked)]
    return picked + spread(features, rest, n + extra - len(picked), rng, picked)  # fewer free clusters than wanted


def shuffled(rows: int, seed: int) -> list[int]:
    """The random strategy's order of the pool: a seeded permutation."""
    return np.random.default_rng(seed).permutation(rows).tolist()
