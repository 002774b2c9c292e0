"""A labelling project on disk: the pool, the answers given so far and the queue, all a restart needs.

    PROJECT/project.json   the labels, the pool (path, rows, SHA-256) and the settings (strategy, seed, backbone)
    PROJECT/labels.jsonl   one {"text", "label", "id"} per label given, appended and fsynced before the answer:
                           `finebert train PROJECT/labels.jsonl` reads it as it is
    PROJECT/skipped.jsonl  one {"id"} per text skipped
    PROJECT/queue.json     the texts to show next, in order (rewritten atomically)
    PROJECT/features.npy   the pool's vectors, from the backbone or from the latest model (features.json says which)
    PROJECT/model/         the latest fine-tuned model: an ordinary model folder

Every row of labels.jsonl and skipped.jsonl carries "at", the number of the answer, so that undo takes back the
last answer whichever file holds it. A row given with --seed-data has "id": null and cannot be undone.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path

from finebert.config import DEFAULT_BACKBONE
from finebert.data import _json_row, read_dataset
from finebert.errors import ConfigError, DataError
from finebert.labels import MULTI_LABEL, SINGLE_LABEL, LabelSpace
from finebert.model_folder import _write_atomic, sha256

STRATEGIES = ("active", "random")
MAX_LABELS = 9  # keys 1-9 choose a label on the page


@dataclass
class Settings:
    """What a project was started with, saved in project.json; a restart reads it back."""

    labels: list[str]  # the label names, in the order of keys 1, 2, ...
    multi_label: bool = False  # several labels per text (toggled, then confirmed)
    # "random": a seeded shuffle; "active": clusters, typicality, uncertainty and rare labels (selection.py). Random is
    # the default because it measured better: the active choice's fine-tuned models scored 0.4-0.7 points under random's
    # on AG News and lower on SMS spam at 64 and 128 labels (benchmarks/RESULTS.md)
    strategy: str = "random"
    seed: int = 42  # the random choices: the first diverse texts, the shuffle, the pool sample, training
    model: str = DEFAULT_BACKBONE  # the backbone every fine-tune starts from
    max_length: int = 128  # tokens per text, for the pool's vectors and for training
    candidates: int = 20_000  # a larger pool offers a seeded sample of this many texts (each is scored often)
    pool: str = ""  # the pool file, as an absolute path
    pool_rows: int = 0
    pool_sha256: str = ""

    def __post_init__(self):
        if len(self.labels) < 2 and not self.multi_label:
            raise ConfigError(f"--labels {','.join(self.labels)!r} names {len(self.labels)} label; a classifier needs "
                              "at least two, e.g. --labels negative,positive")
        if len(self.labels) > MAX_LABELS:
            raise ConfigError(f"--labels names {len(self.labels)} labels; the page has keys for {MAX_LABELS}: "
                              "merge some, or label in several passes")
        if any(not name or name != name.strip() for name in self.labels) or len(set(self.labels)) != len(self.labels):
            raise ConfigError(f"--labels {','.join(self.labels)!r}: give distinct, non-empty names separated by commas")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"--strategy {self.strategy!r} is not one of {', '.join(STRATEGIES)}")
        if not isinstance(self.candidates, int) or self.candidates < 1:
            raise ConfigError(f"--candidates {self.candidates!r}: use a whole number of texts, e.g. 20000")

    @property
    def space(self) -> LabelSpace:
        """The one label space of the project: the names in the order given, single- or multi-label."""
        if self.multi_label:
            return LabelSpace(list(self.labels), list(self.labels), MULTI_LABEL, separator=",")
        return LabelSpace(list(self.labels), list(self.labels), SINGLE_LABEL)

    def label_of(self, cell, source: str):
        """A label cell of a data file in the project's form: a name, or a list of names in the project's order."""
        try:
            y = self.space.encode([cell], source)[0]  # (C,) 0/1 or a class id
        except DataError:
            raise DataError(f"{source} has the label {json.dumps(cell)}, which is not one of the project's labels "
                            f"({', '.join(self.labels)}); fix that row, or start a project with that label") from None
        return [self.labels[k] for k in y.nonzero()[0]] if self.multi_label else self.labels[int(y)]


def read_pool(path: Path) -> list[str]:
    """The texts of a pool file (.txt: one per line; .csv/.jsonl: the text column); labels in it are not read."""
    if not path.exists():
        raise DataError(f"{path}: no such file; give a .txt, .csv or .jsonl file of texts to label")
    try:
        return read_dataset(path, require_labels=False).texts
    except DataError as e:
        if "has no data rows" in str(e):
            raise DataError(f"{path}: the pool is empty; put one text per line (.txt) or per row (.csv, .jsonl)") from None
        raise


@dataclass
class Answer:
    at: int  # the number of the answer, from 1
    id: int | None  # the text's row in the pool (None: a row of --seed-data)
    label: object  # a label name, a list of names (multi-label), or None for a skip
    text: str


class Project:
    """The project folder, opened by one process at a time (a lock file), with every answer given so far."""

    def __init__(self, folder: Path, settings: Settings, texts: list[str]):
        self.folder, self.settings, self.texts = folder, settings, texts
        self.answers: list[Answer] = []  # in the order given; seed rows first
        self._lock = None

    # -- opening ----------------------------------------------------------------------------------------------------
    @classmethod
    def open(cls, folder: str | Path, pool: str | Path | None = None, *, labels: list[str] | None = None,
             seed_data: str | Path | None = None, lock: bool = True, **settings) -> "Project":
        """Starts the project in `folder` (pool and labels needed), or opens the one there; what is given must
        agree with what the project was started with. Nothing is written until every check has passed.
        lock=False: a read-only look (the fine-tune process, while the server holds the project)."""
        folder = Path(folder)
        saved = folder / "project.json"
        if saved.exists():
            stored = Settings(**json.loads(saved.read_text(encoding="utf-8")))
            if labels is not None and list(labels) != stored.labels:
                raise ConfigError(f"{folder}: the project's labels are {','.join(stored.labels)}, not "
                                  f"{','.join(labels)}; leave --labels out to go on, or start another project")
            if pool is not None and Path(pool).resolve() != Path(stored.pool):
                raise ConfigError(f"{folder}: the project labels {stored.pool}, not {Path(pool).resolve()}; "
                                  "leave POOL out to go on, or start another project")
            if seed_data is not None:
                raise ConfigError(f"{folder}: --seed-data is read when a project starts; this one has started already")
            changed = {k: v for k, v in settings.items() if v is not None and getattr(stored, k) != v}
            if changed:
                k, v = next(iter(changed.items()))
                raise ConfigError(f"{folder}: the project was started with {k}={getattr(stored, k)!r}, not {v!r}; "
                                  "leave that option out to go on")
            project = cls(folder, stored, cls._pool_of(stored))
            if lock:
                project._take_lock()
            project._read_answers(repair=lock)
            return project
        if pool is None:
            raise ConfigError(f"{folder}: no project there yet; give the POOL of texts to label and --labels")
        pool = Path(pool).resolve()
        texts = read_pool(pool)
        seeds = cls._seed_rows(Path(seed_data), labels, settings.get("multi_label")) if seed_data else None
        if labels is None:
            if seeds is None:
                raise ConfigError("give the labels to choose from, e.g. --labels negative,positive")
            labels = seeds[1]
        stored = Settings(labels=list(labels), **{k: v for k, v in settings.items() if v is not None}, pool=str(pool),
                          pool_rows=len(texts), pool_sha256=sha256(pool))
        seeds = [(text, stored.label_of(cell, f"{seed_data}: row {row}")) for row, (text, cell)
                 in enumerate(seeds[0] if seeds else [], 1)]  # a label not in --labels: one line, nothing written
        folder.mkdir(parents=True, exist_ok=True)
        project = cls(folder, stored, texts)
        project._take_lock()
        _write_atomic(saved, json.dumps(dataclasses.asdict(stored), indent=2) + "\n")
        for text, label in seeds:
            project._append("labels.jsonl", {"text": text, "label": label, "id": None, "at": 0})
        project._read_answers()
        return project

    @staticmethod
    def _pool_of(stored: Settings) -> list[str]:
        path = Path(stored.pool)
        if not path.exists():
            raise DataError(f"{path}: the project's pool is gone; put the file back where it was")
        if sha256(path) != stored.pool_sha256:
            raise DataError(f"{path}: the pool has changed since the project started (its SHA-256 differs), so the "
                            "ids of the labels given no longer name the same texts; restore the file, or start "
                            "another project")
        return read_pool(path)

    @staticmethod
    def _seed_rows(path: Path, labels: list[str] | None, multi_label: bool | None):
        data = read_dataset(path)
        names = labels or LabelSpace.from_data(data.labels, multi_label=bool(multi_label), source=str(path)).names
        return list(zip(data.texts, data.labels)), names

    def _take_lock(self) -> None:
        self._lock = open(self.folder / ".lock", "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise ConfigError(f"{self.folder}: another finebert label has this project open; stop it first, "
                              "or give another project folder") from None

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # -- the answers ------------------------------------------------------------------------------------------------
    def _read_answers(self, repair: bool = True) -> None:
        """Reads labels.jsonl and skipped.jsonl, checking each row against the project. A last line cut short (the
        process killed while writing, before it answered) is left out, and with `repair` cut off the file."""
        n = len(self.texts)
        answers = []
        for name in ("labels.jsonl", "skipped.jsonl"):
            path = self.folder / name
            for line_no, row in _rows(path, repair):
                where = f"{path}: line {line_no}"
                at, row_id = row.get("at"), row.get("id")
                if not isinstance(at, int) or not (row_id is None or isinstance(row_id, int) and 0 <= row_id < n):
                    raise DataError(f"{where} is not an answer of this project (its id must be a row of the pool, "
                                    f"0 to {n - 1}); remove that line")
                if name == "skipped.jsonl":
                    answers.append(Answer(at, row_id, None, self.texts[row_id]))
                    continue
                self.settings.label_of(row.get("label"), where)  # a label the project does not have: one line
                if row_id is not None and row.get("text") != self.texts[row_id]:
                    raise DataError(f"{where}: its text is not row {row_id} of the pool {self.settings.pool}; the "
                                    "labels file and the project disagree: restore the labels file or the pool")
                answers.append(Answer(at, row_id, row["label"], row["text"]))
        self.answers = sorted(answers, key=lambda a: a.at)

    def _append(self, name: str, row: dict) -> None:
        """One line at the end of a journal, on disk (fsync) before this returns."""
        fd = os.open(self.folder / name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)

    @property
    def answered(self) -> set[int]:
        return {a.id for a in self.answers if a.id is not None}

    def labelled(self) -> list[Answer]:
        return [a for a in self.answers if a.label is not None]

    def answer(self, row_id: int, label) -> Answer:
        """Records a label (a name, or a list of names for multi-label) or a skip (None) for pool row `row_id`."""
        if not isinstance(row_id, int) or isinstance(row_id, bool) or not 0 <= row_id < len(self.texts):
            raise ConfigError(f"id {row_id!r} is not a row of the pool; use 0 to {len(self.texts) - 1}")
        if row_id in self.answered:
            raise ConfigError(f"text {row_id} has been answered already; undo the last answer to change it")
        label = self.check_label(label)
        at = max((a.at for a in self.answers), default=0) + 1
        answer = Answer(at, row_id, label, self.texts[row_id])
        if label is None:
            self._append("skipped.jsonl", {"id": row_id, "at": at})
        else:
            self._append("labels.jsonl", {"text": answer.text, "label": label, "id": row_id, "at": at})
        self.answers.append(answer)
        return answer

    def check_label(self, label):
        """The label as stored: a name of the project (single-label), a list of distinct names (multi-label)."""
        names = self.settings.labels
        if label is None:
            return None
        if self.settings.multi_label:
            if not isinstance(label, list) or not label or any(l not in names for l in label) or len(set(label)) < len(label):
                raise ConfigError(f"label {json.dumps(label)}: give a list of one or more of {', '.join(names)} "
                                  "(or null to skip)")
            return [name for name in names if name in label]  # in the project's order
        if label not in names:
            raise ConfigError(f"label {json.dumps(label)} is not one of {', '.join(names)}; give one of them (or null to skip)")
        return label

    def undo(self) -> Answer | None:
        """Takes back the last answer (label or skip; not a seed row): its line is cut from the end of its file."""
        last = self.answers[-1] if self.answers else None
        if last is None or last.id is None:
            return None
        path = self.folder / ("skipped.jsonl" if last.label is None else "labels.jsonl")
        data = path.read_bytes()
        cut = data.rstrip(b"\n").rfind(b"\n") + 1  # the start of the last line
        with open(path, "r+b") as f:
            f.truncate(cut)
            os.fsync(f.fileno())
        self.answers.pop()
        return last

    # -- the queue --------------------------------------------------------------------------------------------------
    def saved_queue(self) -> list[int] | None:
        path = self.folder / "queue.json"
        if not path.exists():
            return None
        try:
            queue = json.loads(path.read_text(encoding="utf-8"))["queue"]
        except (ValueError, KeyError, TypeError):
            return None  # written atomically, so only a hand-edited file is bad: choose again
        return [i for i in queue if isinstance(i, int) and 0 <= i < len(self.texts)]

    def save_queue(self, queue: list[int]) -> None:
        _write_atomic(self.folder / "queue.json", json.dumps({"queue": [int(i) for i in queue]}) + "\n")


def _rows(path: Path, repair: bool):
    """(line number, JSON object) of each line of a journal; a torn last line (no newline) is left out, and with
    `repair` cut off the file."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        data = data[:data.rfind(b"\n") + 1]
    if repair and len(data) < path.stat().st_size:
        with open(path, "r+b") as f:
            f.truncate(len(data))
            os.fsync(f.fileno())
    for line_no, line in enumerate(data.decode("utf-8").splitlines(), 1):
        row = _json_row(path, line_no, line)  # None for a blank line; a bad line is a DataError naming it
        if row is not None:
            yield line_no, row
