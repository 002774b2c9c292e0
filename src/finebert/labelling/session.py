"""A labelling session: the queue of texts to show, the answers, and the model that learns from them.

    session = Session(Project.open("project/", "pool.txt", labels=["negative", "positive"]))
    item = session.next()                  # {"id", "text", "guess", "confidence"}
    session.answer(item["id"], "positive")
    session.refresh()                      # refit the head on the answers so far and choose the next texts
    if session.fine_tune_due(): fine_tune(session.project.folder); session.reload()

The model, in two speeds. A fast head (a logistic regression on the pool's cached vectors) is refitted every
REFIT_EVERY answers; a full fine-tune (`finebert.train` on labels.jsonl, the few-shot recipe at this size) runs at
FINE_TUNE_AT labels and every FINE_TUNE_STEP after, writes PROJECT/model/ and re-embeds the pool with its encoder,
whose vectors the head then reads. The server runs the fine-tune in a process of its own (worker.py), never
blocking the page; the benchmark runs it in line.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from finebert.config import DEFAULT_BACKBONE
from finebert.labelling import selection
from finebert.labelling.project import Project
from finebert.model_folder import _write_atomic

BATCH = 8  # texts chosen together after each refresh ...
RESERVE = 24  # ... and this many more behind them, shown should the next refresh be late (a large pool, a busy CPU)
REFIT_EVERY = 4  # answers between refits of the fast head (and a new queue)
FINE_TUNE_AT = (32, 64, 128, 256)  # labels at which the model is fine-tuned ...
FINE_TUNE_STEP = 128  # ... and every this many labels after the last of them
COLD_LABELS = 4  # fewer labels than this, or a label with none yet: the guess is the names' and the answers' centroids
FOLDS = 5  # the estimated accuracy: cross-validated over this many folds ...
ESTIMATE_MIN = 10  # ... once there are this many labels, and two per label in use


def embed(texts: list[str], *, backbone: str = DEFAULT_BACKBONE, model_folder: Path | None = None,
          max_length: int = 128) -> np.ndarray:
    """(N, H) unit vectors of texts: the backbone's normalized mean of token states, or a fine-tuned model's pooled
    vector (what its head reads), normalized. fp32, so every CPU gives the same vectors."""
    import torch

    from finebert.config import resolve_backbone
    from finebert.engines import TorchEngine, length_batches, run_chunks
    from finebert.model import build_model
    from finebert.tokenization import Tokenizer

    if model_folder is not None:
        from finebert.inference import Classifier

        clf = Classifier.load(model_folder, engine="pytorch")
        model, tokenizer = clf.torch_model(), clf.tokenizer
    else:
        folder = resolve_backbone(backbone)
        model, tokenizer = build_model(folder, 2, pooling="normalized-mean", dropout=0.0), Tokenizer(folder, max_length)
    model.eval()
    encoded = tokenizer.encode(texts)
    with torch.inference_mode():
        x = run_chunks(TorchEngine(model).embeddings, tokenizer, encoded, length_batches(encoded.chunk_lengths(), 64))
    x = x[encoded.starts[:-1]]  # (N, H): a text's first chunk (texts longer than max_length are cut)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class Session:
    """The queue, the answers and the fast head of one project (one process; the server guards it with a lock)."""

    def __init__(self, project: Project, *, on_embed=None):
        """on_embed(n): called before the pool's n vectors are computed (the first start; later ones read them)."""
        self.project, self.settings, self.on_embed = project, project.settings, on_embed
        self.space = self.settings.space
        self.rows = offered_rows(len(project.texts), self.settings)  # (R,) the pool rows offered, sorted
        self.position = {int(r): k for k, r in enumerate(self.rows)}
        self.base = self._vectors("base", self._embed_all)  # (R + S + C, H): backbone vectors, for the estimate
        self.features, self.trained_on = self.model_vectors()  # what the head reads: the latest model's, or the backbone's
        self.probs = None  # (R, C) the current guess for every offered row
        self._typical = (None, None)  # (the vectors, their typicality (R,))
        self.curve: list[list] = _read_curve(project.folder)  # [labels, estimated accuracy] after each refit
        self.estimate: float | None = None
        saved = project.saved_queue()
        self.queue: list[int] = []
        self.refresh(keep=saved)

    # -- vectors ----------------------------------------------------------------------------------------------------
    @property
    def seeds(self) -> list:
        return [a for a in self.project.answers if a.id is None]

    def _embed_all(self, **source) -> np.ndarray:
        """Vectors of the offered rows, then the seed rows, then the label names."""
        texts = ([self.project.texts[r] for r in self.rows] + [a.text for a in self.seeds] + list(self.settings.labels))
        return embed(texts, max_length=self.settings.max_length, **(source or {"backbone": self.settings.model}))

    def _vectors(self, name: str, compute) -> np.ndarray:
        path = self.project.folder / f"features.{name}.npy"
        expected = len(self.rows) + len(self.seeds) + len(self.settings.labels)
        if path.exists():
            x = np.load(path)
            if x.shape[0] == expected:
                return x
        if self.on_embed is not None:
            self.on_embed(expected)
        x = compute()
        save_vectors(path, x)
        return x

    def model_vectors(self) -> tuple[np.ndarray, int]:
        """(vectors, labels it was trained on) of the model in PROJECT/model, or the backbone's and 0 if none."""
        folder = self.project.folder
        path, meta = folder / "features.model.npy", folder / "features.model.json"
        if path.exists() and meta.exists() and (folder / "model").exists():
            x = np.load(path)
            if x.shape == self.base.shape:
                return x, json.loads(meta.read_text())["labels"]
        return self.base, 0

    def reload(self) -> None:
        """Takes in the vectors of a model fine-tuned since (fine_tune) and refits on them."""
        self.features, self.trained_on = self.model_vectors()
        self.refresh(keep=self.queue[:1])

    # -- the fast head ----------------------------------------------------------------------------------------------
    def _targets(self):
        """(vector index of each label given, (L, C) 0/1 targets)."""
        labelled = self.project.labelled()
        r, seed_at = len(self.rows), {id(a): k for k, a in enumerate(self.seeds)}
        index, y = [], np.zeros((len(labelled), len(self.space)), dtype=np.float32)
        for i, a in enumerate(labelled):
            index.append(self.position.get(a.id, -1) if a.id is not None else r + seed_at[id(a)])
            for name in a.label if isinstance(a.label, list) else [a.label]:
                y[i, self.settings.labels.index(name)] = 1
        index = np.array(index, dtype=int)
        keep = index >= 0  # a label given over HTTP for a row outside the offered sample still trains the fine-tune
        return index[keep], y[keep]

    def guess(self, x: np.ndarray, index: np.ndarray, y: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """(R, C) probabilities for the offered rows (or other vectors `rows`) from the head fitted on vectors
        x[index] with targets y."""
        names = x[len(x) - len(self.settings.labels):]  # (C, H) the label names' vectors
        rows = x[:len(self.rows)] if rows is None else rows  # (R, H)
        if self.cold(y):  # each label's centroid: its name and the texts given it
            centroids = names + y.T @ x[index]  # (C, H)
            centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
            return selection.name_guess(rows, centroids, self.space)
        return _fit_head(x[index], y, self.space.multi_label).predict(rows)

    def cold(self, y: np.ndarray) -> bool:
        return len(y) < COLD_LABELS or (not self.space.multi_label and (y.sum(axis=0) == 0).any())

    def estimated_accuracy(self, index: np.ndarray, y: np.ndarray) -> float | None:
        """Accuracy (multi-label: the share of label decisions right) of the head on the backbone's vectors, cross-
        validated over the labels so far: a model's own vectors have seen its training texts, so they would flatter."""
        counts = y.sum(axis=0)
        used = counts[counts > 0]
        if len(y) < ESTIMATE_MIN or (not self.space.multi_label and (len(used) < 2 or used.min() < 2)):
            return None
        folds = np.arange(len(y)) % FOLDS  # interleaved: every fold has early and late answers
        right = []
        for k in range(FOLDS):
            train, test = folds != k, folds == k
            if self.cold(y[train]) or len(np.unique(y[train].argmax(1))) < 2 and not self.space.multi_label:
                continue
            p = _fit_head(self.base[index[train]], y[train], self.space.multi_label).predict(self.base[index[test]])
            if self.space.multi_label:
                right.extend(((p >= 0.5) == (y[test] > 0)).mean(axis=1))
            else:
                right.extend(p.argmax(1) == y[test].argmax(1))
        return float(np.mean(right)) if right else None

    # -- the queue --------------------------------------------------------------------------------------------------
    def refresh(self, keep: list[int] | None = None) -> None:
        """Refits the head on every label so far and chooses the next BATCH texts (`keep`: ids to put first, e.g. the
        queue saved before a restart, or the text on screen)."""
        self.apply(self.plan(), keep)

    def plan(self, features: np.ndarray | None = None) -> dict:
        """The work of a refresh, reading the answers but changing nothing (the server runs it outside its lock).
        features: vectors to fit on instead of the session's (a new model's, about to be swapped in)."""
        features = self.features if features is None else features
        index, y = self._targets()
        probs = self.guess(features, index, y)  # (R, C)
        answered = self.project.answered
        open_positions = np.array([k for k, r in enumerate(self.rows) if int(r) not in answered], dtype=int)
        rng = np.random.default_rng([self.settings.seed, len(self.project.answers)])
        if self.settings.strategy == "random":
            order = [self.position[r] for r in selection.shuffled(len(self.project.texts), self.settings.seed)
                     if r in self.position and r not in answered]
            chosen = order[:BATCH + RESERVE]
        else:
            rows = features[:len(self.rows)]  # (R, H)
            if self._typical[0] is not features:  # typicality once per set of vectors (a new model's: again)
                self._typical = (features, selection.typicality(rows, np.random.default_rng(self.settings.seed)))
            chosen = selection.choose(rows, probs, open_positions, y.sum(axis=0), n=BATCH, rng=rng,
                                      multi_label=self.space.multi_label, cold=self.cold(y), typical=self._typical[1],
                                      extra=RESERVE)
        return {"probs": probs, "queue": [int(self.rows[k]) for k in chosen], "labels": len(y),
                "estimate": self.estimated_accuracy(index, y)}

    def apply(self, plan: dict, keep: list[int] | None = None) -> None:
        answered = self.project.answered
        keep = [i for i in keep or [] if i not in answered and i in self.position]
        self.probs = plan["probs"]
        self.queue = list(dict.fromkeys(keep + [i for i in plan["queue"] if i not in answered]))
        self.project.save_queue(self.queue)
        self.estimate = plan["estimate"]
        if plan["estimate"] is not None and (not self.curve or self.curve[-1][0] != plan["labels"]):
            self.curve = [point for point in self.curve if point[0] < plan["labels"]]  # after an undo
            self.curve.append([plan["labels"], round(plan["estimate"], 4)])
            _write_atomic(self.project.folder / "curve.json", json.dumps({"curve": self.curve}) + "\n")

    def next(self) -> dict | None:
        """The text to label now, with the model's guess; None when every offered text is answered."""
        answered = self.project.answered
        self.queue = [i for i in self.queue if i not in answered]
        if not self.queue:
            self.refresh()
            if not self.queue:
                return None
        row = self.queue[0]
        p = np.clip(self.probs[self.position[row]], 1e-9, 1 - 1e-9)  # (C,)
        logits = np.log(p / (1 - p)) if self.space.multi_label else np.log(p)  # what gives back p in the one step
        out = self.space.shown(self.space.postprocess(logits[None]))
        guess = out.labels[0] if self.space.multi_label else out.label[0]
        return {"id": row, "text": self.project.texts[row], "guess": guess,
                "confidence": round(float(out.confidence[0]), 4)}

    def answer(self, row: int, label) -> None:
        self.project.answer(row, label)
        self.queue = [i for i in self.queue if i != row]

    def undo(self):
        undone = self.project.undo()
        if undone is not None:
            self.queue.insert(0, undone.id)  # shown again next
            self.project.save_queue(self.queue)
        return undone

    def refit_due(self) -> bool:
        return len(self.project.answers) % REFIT_EVERY == 0 or not self.queue

    def fine_tune_due(self) -> bool:
        """True once the labels reach the next milestone after those the model was trained on."""
        index, y = self._targets()
        return len(self.project.labelled()) >= next_fine_tune(self.trained_on) and not self.cold(y)

    def progress(self) -> dict:
        labelled = self.project.labelled()
        per_label = dict.fromkeys(self.settings.labels, 0)
        for a in labelled:
            for name in a.label if isinstance(a.label, list) else [a.label]:
                per_label[name] += 1
        return {"labelled": len(labelled), "skipped": len(self.project.answers) - len(labelled),
                "per_label": per_label, "estimated_accuracy": self.estimate, "curve": self.curve,
                "pool": len(self.project.texts), "offered": len(self.rows), "strategy": self.settings.strategy,
                "labels": self.settings.labels, "multi_label": self.space.multi_label,
                "model": {"labels": self.trained_on, "folder": str(self.project.folder / "model")} if self.trained_on else None}


def next_fine_tune(trained_on: int) -> int:
    """The number of labels at which the next fine-tune runs: FINE_TUNE_AT, then every FINE_TUNE_STEP."""
    for milestone in FINE_TUNE_AT:
        if milestone > trained_on:
            return milestone
    return FINE_TUNE_AT[-1] + FINE_TUNE_STEP * ((trained_on - FINE_TUNE_AT[-1]) // FINE_TUNE_STEP + 1)


def offered_rows(n: int, settings) -> np.ndarray:
    """(R,) the pool rows a project offers: all of them, or a seeded sample of settings.candidates, sorted."""
    if n <= settings.candidates:
        return np.arange(n)
    return np.sort(np.random.default_rng(settings.seed).choice(n, settings.candidates, replace=False))


def _read_curve(folder: Path) -> list:
    path = folder / "curve.json"
    return json.loads(path.read_text())["curve"] if path.exists() else []


class _Head:
    def __init__(self, fits: list, present: np.ndarray | None, classes: int, multi_label: bool):
        self.fits, self.present, self.classes, self.multi_label = fits, present, classes, multi_label

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(N, C) probabilities."""
        if self.multi_label:
            return np.stack([f.predict_proba(x)[:, 1] if f is not None else np.full(len(x), c)
                             for f, c in zip(self.fits, self.present)], axis=1)
        out = np.zeros((len(x), self.classes))
        out[:, self.present] = self.fits[0].predict_proba(x)
        return out


def _fit_head(x: np.ndarray, y: np.ndarray, multi_label: bool) -> _Head:
    """Logistic regression on unit vectors (classes weighted to balance, so a rare label is not drowned)."""
    from sklearn.linear_model import LogisticRegression

    def fit(targets):
        return LogisticRegression(C=HEAD_C, max_iter=1000, class_weight="balanced").fit(x, targets)

    if multi_label:  # one regression per label; a label always (or never) on keeps that share as its probability
        on = y.mean(axis=0)
        return _Head([fit(y[:, k]) if 0 < on[k] < 1 else None for k in range(y.shape[1])], on, y.shape[1], True)
    labels = y.argmax(1)
    present = np.unique(labels)
    return _Head([fit(labels)], present, y.shape[1], False)


HEAD_C = 10.0  # the fast head's inverse regularisation (on unit vectors, C=1 squeezes every probability towards even)


def fine_tune(folder: Path) -> int:
    """Fine-tunes a model on the project's labels (finebert.train, its recipe chosen by size), puts it in place of
    PROJECT/model/ and writes the pool's vectors from its encoder. Returns the labels it was trained on."""
    from finebert.data import Dataset
    from finebert.model_folder import replace_folder
    from finebert.training import train

    project = Project.open(folder, lock=False)
    settings, labelled = project.settings, project.labelled()
    data = Dataset([a.text for a in labelled], [a.label for a in labelled], str(folder / "labels.jsonl"))
    new = folder / ".model-new"
    shutil.rmtree(new, ignore_errors=True)  # a fine-tune killed midway
    train(data, output=new, label_space=settings.space, model=settings.model, max_length=settings.max_length,
          seed=settings.seed, quiet=True)
    replace_folder(new, folder / "model")
    texts = ([project.texts[r] for r in offered_rows(len(project.texts), settings)] + [a.text for a in project.answers if a.id is None]
             + list(settings.labels))
    save_vectors(folder / "features.model.npy", embed(texts, model_folder=folder / "model", max_length=settings.max_length))
    _write_atomic(folder / "features.model.json", json.dumps({"labels": len(labelled)}) + "\n")
    return len(labelled)


def save_vectors(path: Path, x: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, x)
    tmp.replace(path)
