"""Data preparation and recipes: from a file to a tokenized Task, with the settings chosen for its size.

    task = prepare("reviews.csv", None, TrainConfig())   # read, check, label space, validation split, tokenize
    task.config.recipe                                   # "few-shot", "head-first" or "fine-tune"
    describe_recipe(task.config, task)                   # the one line said when training starts

Each recipe sets the TrainConfig fields it names (RECIPE_SETTINGS), unless the caller chose them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from finebert.config import TrainConfig, resolve_backbone
from finebert.data import SAMPLE_LABEL_NAMES, Dataset, read_dataset, sample_dataset, validation_split
from finebert.errors import ConfigError
from finebert.labels import LabelSpace
from finebert.tokenization import Encoded, Tokenizer

IMBALANCED = 2.0  # largest class / smallest class at or above this: the best epoch is chosen on macro-F1
RECIPE_EXAMPLES = 19_200  # epochs=None: enough epochs to train on about this many examples (600 steps of 32) ...
RECIPE_MAX_EPOCHS = 4  # ... but no more than this many
FEW_SHOT_MAX_ROWS = 300  # recipe="auto": up to this many training rows, the few-shot recipe (benchmarks/few_shot.py) ...
HEAD_FIRST_MAX_ROWS = 10_000  # ... up to this many, head-first; above, fine-tune

# What each recipe sets, where the setting was left at its TrainConfig default (a value given is kept).
RECIPE_SETTINGS = {
    # Small data. The backbone's own sentence embedding (mean of token states at unit length) feeds the head;
    # the head starts as a logistic regression fitted on those embeddings, then every weight is fine-tuned
    # gently for many short epochs, with the head learning faster. Every row trains: no validation split.
    # (SetFit's contrastive pair stage first, contrastive_pairs=20, was measured and left off: +1.7 points at
    # 16 SST-2 rows per class, +0.1 on AG News, -1.5 at 64 per class, and 4x the time; benchmarks/RESULTS.md.)
    # The model kept lies 0.7 of the way from the starting weights to the fine-tuned ones (WiSE-FT): +1.0 and +1.1
    # points at 16 SST-2 and AG News rows per class, +0.1 and 0.0 at 64 (benchmarks/RESULTS.md), for no extra training.
    # Each label name with a letter in it joins the training texts 4 times (label_name_rows): the backbone already
    # places "negative" near negative reviews. +1.8 points at 16 SST-2 rows per class (10 draws), +0.3 at 64 (5),
    # +0.1 at 16 AG News rows per class (6), paired draw by draw (benchmarks/RESULTS.md).
    "few-shot": dict(pooling="normalized-mean", epochs=20, batch_size=16, learning_rate=1e-4,
                     head_learning_rate=1e-2, layer_lr_decay=1.0, dropout=0.1, validation_split=0.0, head_init="fit",
                     fine_tuned_share=0.7, label_name_rows=4),
    # Mid-size data (hundreds to thousands of single texts): the head starts from the same logistic regression
    # on sentence embeddings, then TrainConfig's defaults fine-tune every weight (a linear probe, then
    # fine-tuning): +0.6 to +1.2 points on AG News, SMS spam, IMDB and 8,000 SST-2 rows (benchmarks/RESULTS.md).
    "head-first": dict(pooling="normalized-mean", head_init="fit"),
    # Large data: the defaults of TrainConfig (and LARGE_DATA_SETTINGS above HEAD_FIRST_MAX_ROWS rows).
    "fine-tune": {},
}
# Fine-tuning over HEAD_FIRST_MAX_ROWS rows: twice the batch at 1.5x the learning rate. A step costs less per example:
# one epoch of full SST-2 trained 1.4-1.6x as fast in bf16 and 1.23x in fp32 held to AVX2. Over four paired runs its
# dev accuracy read 0.7 points lower on average, its 2,000-row holdout 0.17 higher. On mid-size data (4 epochs) one
# seed each read AG News -0.5 and MRPC +1.5 points: too few runs to move that size, whose batches stay at 32
# (benchmarks/RESULTS.md).
LARGE_DATA_SETTINGS = dict(batch_size=64, learning_rate=3e-4)


@dataclass
class Task:
    """The data of one training run, tokenized once."""

    space: LabelSpace
    tokenizer: Tokenizer
    train: Encoded  # N training texts
    y: np.ndarray  # (N,) class ids, or (N, C) 0/1 targets for multi-label
    val: Encoded | None  # validation texts, if any
    y_val: np.ndarray | None
    selection: str  # the validation metric that picks the best epoch: "accuracy" or "macro_f1"
    sources: dict  # {"train": path, "validation": path}
    config: TrainConfig  # the settings of this run, the recipe's applied: recipe and epochs are never "auto" here
    val_texts: list[str] | None = None  # the validation texts as written, for the report's mistakes
    val_pairs: list[str] | None = None
    soft: object | None = None  # distill.Soft: a teacher's answers for each training row, when distilling


def prepare(data, validation, config: TrainConfig, space: LabelSpace | None = None, *,
            given: set[str] = frozenset(), soft=None) -> Task:
    """Reads and checks the data, chooses the recipe, builds the label space (unless given), holds out
    validation rows, tokenizes. `given`: settings the caller chose, kept whatever the recipe (as are those
    that differ from TrainConfig's defaults)."""
    train_set = as_dataset(data, config)
    space = dataclasses.replace(space) if space is not None else prepare_labels(train_set, config, data is None)
    config = choose_recipe(config, len(train_set), given, multi_label=space.multi_label)
    if config.contrastive_pairs and space.multi_label:
        raise ConfigError(f"contrastive_pairs={config.contrastive_pairs} needs one label per row; "
                          "leave it at 0 for multi-label data")
    y = space.encode(train_set.labels, train_set.source)
    if validation is not None:
        val_set = as_dataset(validation, config)
        y_val = space.encode(val_set.labels, val_set.source)
    else:
        train_rows, val_rows = validation_split(y, config.validation_split, config.validation_max_rows, config.seed)
        val_set, y_val = (train_set.subset(val_rows), y[val_rows]) if val_rows else (None, None)
        train_set, y = train_set.subset(train_rows), y[train_rows]
    if config.text_pair_column and train_set.pairs is None:
        raise ConfigError("text_pair_column is set but the training data has no second texts")
    train_set, y = with_label_names(train_set, y, space, config.label_name_rows)
    if soft is not None and (validation is None or len(soft.logits) != len(y)):
        raise ConfigError("a teacher's answers need a validation set of their own and one answer per training row")
    tokenizer = Tokenizer(resolve_backbone(config.model), config.max_length)
    encode = lambda d: tokenizer.encode(d.texts, d.pairs, long_text=config.long_text, stride=config.stride)  # noqa: E731
    return Task(space, tokenizer, encode(train_set), y, encode(val_set) if val_set else None, y_val,
                selection_metric(space, y),
                {"train": path_of(data), "validation": path_of(validation)},
                dataclasses.replace(config, epochs=config.epochs or recipe_epochs(len(train_set))),
                val_set.texts if val_set else None, val_set.pairs if val_set else None, soft)


def selection_metric(space: LabelSpace, y: np.ndarray) -> str:
    """The validation metric that picks the best epoch (and scores tuning trials): macro-F1 for multi-label or
    imbalanced data (largest class at least IMBALANCED times the smallest), else accuracy."""
    counts = space.one_hot(y).sum(axis=0)
    imbalanced = space.multi_label or counts.max() >= IMBALANCED * max(counts.min(), 1)
    return "macro_f1" if imbalanced else "accuracy"


def held_out(data, validation, config: TrainConfig, space: LabelSpace, purpose: str):
    """(train_set, val_set, y, y_val): the training data and the validation data, read once, labels encoded in
    `space`. Without a validation file, the rows train() would hold out of `data` (the same split function and
    seed), so that every run of a study, or a teacher and its student, is scored on the same rows. `purpose` ends
    the message of data too small to hold any out ("scoring trials")."""
    train_set = as_dataset(data, config)
    y = space.encode(train_set.labels, train_set.source)
    if validation is not None:
        val_set = as_dataset(validation, config)
    else:
        rows, val_rows = validation_split(y, config.validation_split, config.validation_max_rows, config.seed)
        if not val_rows:
            raise ConfigError(f"{train_set.source}: too few rows to hold out validation data for {purpose}; "
                              "give a --validation file")
        train_set, val_set, y = train_set.subset(rows), train_set.subset(val_rows), y[rows]
    return train_set, val_set, y, space.encode(val_set.labels, val_set.source)


def check_data(data, validation, settings: dict) -> None:
    """Reads the data and builds the label space as training would, raising the same errors; for launchers
    that start several training processes (so that bad input is one message, not one per process)."""
    config = TrainConfig(**settings)
    prepare_labels(as_dataset(data, config), config, data is None)
    if validation is not None:
        as_dataset(validation, config)


def prepare_labels(train_set: Dataset, config: TrainConfig, sample: bool) -> LabelSpace:
    names = config.label_names or (SAMPLE_LABEL_NAMES if sample else None)
    return LabelSpace.from_data(train_set.labels, names=names, multi_label=config.multi_label,
                                separator=config.label_separator, source=train_set.source)


def named_labels(space: LabelSpace, pairs: bool) -> list[int]:
    """The classes whose names can join the training texts (label_name_rows): names with a letter in them (not
    ids such as 0 or 1), of single-label data of single texts."""
    if space.multi_label or pairs:
        return []
    return [k for k, name in enumerate(space.names) if any(c.isalpha() for c in name)]


def with_label_names(train_set: Dataset, y: np.ndarray, space: LabelSpace, copies: int) -> tuple[Dataset, np.ndarray]:
    """The training rows, then each named label's name (named_labels) `copies` times as a text of its own class."""
    extra = np.repeat(np.array(named_labels(space, train_set.pairs is not None), dtype=y.dtype), copies)  # (E,)
    if len(extra) == 0:
        return train_set, y
    texts = train_set.texts + [space.names[k] for k in extra]
    return Dataset(texts, None, train_set.source, None, train_set.text_column), np.concatenate([y, extra])


def choose_recipe(config: TrainConfig, rows: int, given: set[str] = frozenset(), *,
                  multi_label: bool = False) -> TrainConfig:
    """The config with its recipe decided ("auto": few-shot up to FEW_SHOT_MAX_ROWS rows, head-first up to
    HEAD_FIRST_MAX_ROWS single texts with one label each, else fine-tune) and applied: each setting the
    recipe names (and LARGE_DATA_SETTINGS for fine-tuning over HEAD_FIRST_MAX_ROWS rows) is set, unless the
    caller chose it: named in `given`, or set to other than TrainConfig's default."""
    recipe = config.recipe
    if recipe == "auto":
        # Sentence pairs skip head-first: a probe on the mean embedding of "a [SEP] b" gained nothing on MRPC.
        # Multi-label models keep [CLS] pooling, so Hugging Face's auto classes load them.
        mid = "head-first" if config.text_pair_column is None and not multi_label else "fine-tune"
        recipe = "few-shot" if rows <= FEW_SHOT_MAX_ROWS else mid if rows <= HEAD_FIRST_MAX_ROWS else "fine-tune"
    settings = RECIPE_SETTINGS[recipe]
    if recipe == "fine-tune" and rows > HEAD_FIRST_MAX_ROWS:
        settings = settings | LARGE_DATA_SETTINGS
    given = set(given) | changed_fields(config)
    chosen = {k: v for k, v in settings.items() if k not in given}
    return dataclasses.replace(config, recipe=recipe, **chosen)


def changed_fields(config: TrainConfig | None) -> set[str]:
    """The fields of a config given by the caller that differ from TrainConfig's defaults."""
    if config is None:
        return set()
    defaults = TrainConfig()
    return {f.name for f in dataclasses.fields(config) if getattr(config, f.name) != getattr(defaults, f.name)}


def recipe_epochs(rows: int) -> float:
    """Epochs when none are given: 1 for large data; more for small data, so that a run trains on about
    RECIPE_EXAMPLES examples (at most RECIPE_MAX_EPOCHS epochs). Measured in benchmarks/RESULTS.md."""
    return float(min(RECIPE_MAX_EPOCHS, max(1, math.ceil(RECIPE_EXAMPLES / rows))))


def describe_recipe(config: TrainConfig, task: Task) -> str:
    """The one line said when training starts: the recipe, the rows, and the stages before fine-tuning."""
    rows = task.train.n_docs
    held_out = f", {task.val.n_docs} held out for validation" if task.val is not None and config.recipe != "few-shot" else ""
    first = []  # what happens before every weight is fine-tuned
    if config.contrastive_pairs:
        first.append(f"the encoder first trained on contrastive pairs ({config.contrastive_pairs} same-label and "
                     f"{config.contrastive_pairs} other-label partners per text)")
    named = named_labels(task.space, config.text_pair_column is not None) if config.label_name_rows else []
    if named:
        rows -= len(named) * config.label_name_rows
        first.append(f"the label names added as {config.label_name_rows} training texts each")
    if config.head_init == "fit":
        first.append("a head fitted on sentence embeddings")
    last = "" if config.fine_tuned_share == 1 else \
        f", kept at {config.fine_tuned_share:g} of the way from the starting weights to the fine-tuned ones"
    if not first:
        return f"recipe: {config.recipe} ({rows} training rows{held_out}) for {config.epochs:g} epochs{last}"
    return (f"recipe: {config.recipe} ({rows} training rows{held_out}): {', '.join(first)}, then every weight "
            f"fine-tuned for {config.epochs:g} epochs{last}")


def as_dataset(data, config: TrainConfig) -> Dataset:
    """A Dataset from a file path, a Dataset as it is, or the built-in sample for None."""
    if data is None:
        return sample_dataset()
    if isinstance(data, Dataset):
        return data
    return read_dataset(data, text_column=config.text_column, label_column=config.label_column,
                        text_pair_column=config.text_pair_column)


def path_of(data) -> str | None:
    return str(Path(data).resolve()) if isinstance(data, (str, Path)) else None
