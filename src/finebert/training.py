"""Stage 4, training: fine-tune every weight of the encoder and the head.

Our own loop, fast by design on CPUs: texts are tokenized once; batches are cut from small random groups
sorted by length, then packed (several short texts per row, each attending only to itself: nothing changes but
the padding that is not computed); bf16 autocast where the hardware has bf16
arithmetic; fused AdamW with linear warmup and decay; gradient clipping; validation after each epoch,
keeping the best weights (of epochs alike within the validation data's noise, the later).

The loss follows the label space: cross-entropy over softmax for single-label tasks (with optional
class weights), binary cross-entropy over sigmoids for multi-label ones. Texts split into chunks
(`long_text="window"`) are scored as the mean (or max) of their chunks' logits, in training as in
prediction.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from finebert import checkpoints, distributed
from finebert.calibration import calibrate
from finebert.config import TrainConfig, resolve_backbone
from finebert.data import SAMPLE_LABEL_NAMES, Dataset, read_dataset, sample_dataset, validation_split
from finebert.engines import TorchEngine, length_batches, pool_chunks, run_chunks, score
from finebert.errors import ConfigError, Interrupted, ModelError
from finebert.evaluation import metrics, score_logits
from finebert.labels import LabelSpace
from finebert.model_folder import ModelInfo, check_output_folder
from finebert.tokenization import Encoded, Tokenizer

IMBALANCED = 2.0  # largest class / smallest class at or above this: the best epoch is chosen on macro-F1
RECIPE_EXAMPLES = 19_200  # epochs=None: enough epochs to train on about this many examples (600 steps of 32) ...
RECIPE_MAX_EPOCHS = 4  # ... but no more than this many
FEW_SHOT_MAX_ROWS = 300  # recipe="auto": up to this many training rows, the few-shot recipe (benchmarks/few_shot.py) ...
HEAD_FIRST_MAX_ROWS = 10_000  # ... up to this many, head-first; above, fine-tune
CONTRASTIVE_BATCH, CONTRASTIVE_LR = 16, 2e-5  # the contrastive stage: pairs per step and AdamW's peak learning rate (SetFit's)
# head_init="fit": the logistic regression reads every training chunk, unless that costs more than a small share of
# training: then a seeded sample of HEAD_FIT_SHARE x epochs x chunks (a read without gradients costs about a third
# of a training one, so the fit costs at most ~1/12 of training), but never fewer than HEAD_FIT_MIN_CHUNKS
HEAD_FIT_SHARE, HEAD_FIT_MIN_CHUNKS = 0.25, 1000

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


def train(data: str | Path | Dataset | None = None, *, output: str | Path | None = None,
          validation: str | Path | Dataset | None = None, config: TrainConfig | None = None, resume: bool = False,
          quiet: bool = False, on_step: Callable[[int, float], None] | None = None,
          label_space: LabelSpace | None = None, **settings):
    """Fine-tunes a classifier on `data` (a file path, a Dataset, or None for the built-in sample).

    Settings are TrainConfig fields, given as `config=` or as keywords (`epochs=2`). With `output`, the
    model folder is written there (atomically), with checkpoints under output/checkpoints while training
    runs; `resume=True` continues from the last good one. `on_step(step, loss)` is called after every
    step. `label_space` fixes the classes (e.g. a fold of a larger file that lacks a rare one); by
    default they are those of the training data. Returns a `finebert.Classifier`.
    """
    unknown = sorted(set(settings) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        raise ConfigError(f"unknown setting {unknown[0]!r}; the settings are the fields of finebert.TrainConfig")
    config = dataclasses.replace(config or TrainConfig(), **settings)
    output = Path(output) if output is not None else None
    rank, world = distributed.setup()  # several processes under torchrun (`--nproc`): this one's place
    lead = rank == 0  # validation, checkpoints, the progress bar and the saved model are the lead's alone
    if output is not None and lead:
        check_output_folder(output)  # refuse before spending minutes on training
        check_writable(output, resolve_backbone(config.model))
    elif resume and output is None:
        raise ConfigError("resume needs the output folder of the interrupted run; pass --output")
    task = prepare(data, validation, config, label_space, given=set(settings))
    config = task.config  # the recipe chosen for this data size, applied
    state = TrainState.start(task, config, rank, world)
    if resume:
        state.restore(_last_checkpoint(output), task, config)
    elif output is not None and checkpoints.exist(output):
        raise ConfigError(f"{output / checkpoints.FOLDER} holds checkpoints of an unfinished run; "
                          "add --resume to continue it, or delete that folder to start again")

    from tqdm.auto import tqdm

    bar = tqdm(total=state.total_steps * config.batch_size, initial=state.step * config.batch_size, unit="ex",
               smoothing=0, disable=quiet or not lead, desc="training")
    if not quiet and lead:
        bar.write(describe_recipe(config, task))
    save = (lambda: state.checkpoint(output)) if output is not None and lead else None
    with _stop_on_sigint(enabled=output is not None) as stop:
        while not state.finished:
            state.run_epoch(task, config, bar, on_step, stop, save=save)
            if not quiet and lead and state.history:
                bar.write(_describe(state.history[-1], task.selection))
            if state.interrupted:
                bar.close()
                if save:
                    save()
                distributed.finish()
                raise Interrupted(f"interrupted at step {state.step} of {state.total_steps}; a checkpoint is saved "
                                  f"in {output / checkpoints.FOLDER}: run the same command with --resume to continue")
    bar.close()

    from finebert.inference import Classifier

    info = state.finish(task, config)
    classifier = Classifier(TorchEngine(state.model, state.device), task.tokenizer, info)
    if output is not None and lead:  # replaces the folder, checkpoints included: the run is complete
        classifier.save(output, extra=_validation_report(state, task, info))
    distributed.finish()
    return classifier


def _validation_report(state: "TrainState", task: Task, info: ModelInfo):
    """Writes report/ (report.py) for the validation data into the new model folder, if there was any."""
    if state.best is None:
        return None

    def write(folder: Path) -> None:
        from finebert.report import write_report

        temperature = info.calibration["pytorch"]["temperature"]
        result = score_logits(task.space, state.best["logits"], task.y_val, temperature)
        write_report(folder / "report", result, task.space, state.best["logits"], task.y_val, temperature,
                     task.val_texts, task.val_pairs, history=info.history,
                     title=f"validation data held out in training (epoch {state.best['epoch']})")

    return write


class TrainState:
    """Everything a run needs to continue from where it stopped; a checkpoint holds exactly this."""

    used_rows_only = True  # train the word-embedding rows the data uses, not the whole table (UsedRows): same model, faster

    def __init__(self, model, optimizer: "AdamW", device, total_steps: int, steps_per_epoch: int,
                 use_bf16: bool, loss_fn, doc_lengths: np.ndarray, seed: int, rank: int = 0, world: int = 1):
        self.model, self.optimizer, self.device = model, optimizer, device
        self.rank, self.world = rank, world  # this process's place among `world` training processes
        self.forward = distributed.wrap(model, device) if world > 1 else model  # DDP averages gradients
        self.interrupted = False  # Ctrl-C (on any process) stopped the run between two steps
        self.total_steps, self.steps_per_epoch, self.use_bf16 = total_steps, steps_per_epoch, use_bf16
        self.loss_fn, self.doc_lengths = loss_fn, doc_lengths
        self.rng = np.random.default_rng(seed)  # the data order
        self.epoch_rng = self.rng.bit_generator.state  # its state when the current epoch's batches were drawn
        self.step = 0  # optimizer steps done
        self.epoch = 0  # the current epoch, from 1
        self.position = 0  # batches of the current epoch done
        self.last_loss = float("nan")  # the last step's loss, which the epoch's record shows
        self.history: list[dict] = []  # one record per finished epoch
        self.best: dict | None = None  # {"scores", "thresholds", "epoch", "logits", "weights"} of the epoch kept so far (within_noise)
        self.elapsed = 0.0  # seconds of training, over every session of this run
        self.stopped: str | None = None  # "max_time" when the time budget ended the run
        self.start_weights: dict | None = None  # config.fine_tuned_share < 1: the weights fine-tuning started from
        self.words: UsedRows | None = None  # the word-embedding rows the training data uses, trained alone
        self._since = time.perf_counter()
        self._last_save = self._since

    @classmethod
    def start(cls, task: Task, config: TrainConfig, rank: int = 0, world: int = 1) -> "TrainState":
        """A new run: the backbone with a fresh head, its optimizer and learning-rate schedule. Parameter
        groups are built on the bare model, before any DistributedDataParallel wrapping."""
        import torch

        from finebert.model import bf16_supported, build_model, default_device

        torch.manual_seed(config.seed)
        device = distributed.device() if world > 1 else default_device()
        use_bf16 = config.precision == "bf16" or (config.precision == "auto" and bf16_supported(device))
        model = build_model(resolve_backbone(config.model), len(task.space), pooling=config.pooling,
                            dropout=config.dropout).to(device)
        if config.contrastive_pairs:
            contrast_encoder(model, task, device, config, use_bf16)
        if config.head_init == "fit":
            fit_head(model, task, device, config, use_bf16)
        full, rest = divmod(task.train.n_docs, config.batch_size)
        steps_per_epoch = full + (rest >= world)  # a last batch smaller than `world` is left out (epoch_batches)
        total_steps = max(1, round(config.epochs * steps_per_epoch))
        start_weights = None
        if config.fine_tuned_share < 1:  # the weights before fine-tuning, to average with at the end (finish)
            start_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.encoder.get_input_embeddings().weight.requires_grad_(not config.freeze_word_embeddings)
        if config.freeze_layers:
            _freeze_lowest(model, config.freeze_layers)
        trains_rows = cls.used_rows_only and model.encoder.get_input_embeddings().weight.requires_grad
        words = UsedRows(model, task.train.ids, task.tokenizer.pad_id) if trains_rows else None
        optimizer = AdamW(_param_groups(model, config), warmup=round(config.warmup_ratio * total_steps),
                          total=total_steps)
        state = cls(model, optimizer, device, total_steps, steps_per_epoch, use_bf16,
                    _loss_function(task, config, device), task.train.doc_lengths(), config.seed, rank, world)
        state.fingerprint = cls.fingerprint_of(task, config, world)
        state.start_weights, state.words = start_weights, words
        return state

    @property
    def finished(self) -> bool:
        return self.step >= self.total_steps or self.stopped is not None

    def seconds(self) -> float:
        return self.elapsed + time.perf_counter() - self._since

    # -- the loop -------------------------------------------------------------------------------
    def run_epoch(self, task: Task, config: TrainConfig, bar, on_step, stop, save) -> None:
        """Trains to the end of the current epoch (or the run, the time budget, or Ctrl-C), then validates."""
        if self.position == 0:  # a new epoch: draw its batches, remembering the RNG state to draw them again
            self.epoch += 1
            self.epoch_rng = self.rng.bit_generator.state
        batches = self.epoch_batches(config)
        last = min(len(batches), self.position + self.total_steps - self.step)
        while self.position < last:
            batch = batches[self.position]
            self.last_loss = loss = self.train_step(task, np.array_split(batch, self.world)[self.rank], config)
            self.position += 1
            self.step += 1
            bar.update(len(batch))
            bar.set_postfix(epoch=self.epoch, loss=f"{loss:.4f}")
            if on_step:
                on_step(self.step, loss)
            # decided once for all processes: the lead's clock, anyone's Ctrl-C
            out_of_time = self.rank == 0 and config.max_time is not None and self.seconds() > config.max_time
            out_of_time, self.interrupted = distributed.any_of(self.world, out_of_time, stop.requested)
            self.stopped = "max_time" if out_of_time else self.stopped
            if self.interrupted or self.stopped:
                break
            if save and time.perf_counter() - self._last_save > 60 * config.checkpoint_minutes:
                save()
        if self.interrupted and not self.stopped and self.position < last:
            return  # mid-epoch: the checkpoint resumes here
        self.end_epoch(task, config, self.last_loss)  # a run resumed after the epoch's last step takes none here
        if save and not self.finished:
            save()

    def epoch_batches(self, config: TrainConfig) -> list[np.ndarray]:
        """The current epoch's batches, drawn again from the RNG state saved when it began (so a resumed run
        gets the same ones). Every process draws the same and takes its share of each; a last batch smaller
        than the number of processes is left out, so that every process takes the same number of steps."""
        rng = np.random.default_rng()
        rng.bit_generator.state = self.epoch_rng
        batches = bucketed_batches(self.doc_lengths, config.batch_size, rng, config.length_window)
        self.rng.bit_generator.state = rng.bit_generator.state
        return [b for b in batches if len(b) >= self.world]

    def train_step(self, task: Task, batch: np.ndarray, config: TrainConfig) -> float:
        """One optimizer step on a batch of texts; returns the loss."""
        import torch

        chunks = task.train.select(batch)
        prepare = task.tokenizer.pack if config.packing and self.model.packs else task.tokenizer.pad
        inputs = prepare(chunks.ids, chunks.type_ids)
        if self.words is not None:
            inputs["input_ids"] = self.words.rows_of(inputs["input_ids"])
        inputs = {k: torch.from_numpy(v).to(self.device) for k, v in inputs.items()}
        targets = torch.from_numpy(task.y[batch]).to(self.device)  # (B,) or (B, C)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.use_bf16):
            logits = self.forward(**inputs)  # (chunks, C)
        logits = pool_chunks(logits.float(), chunks.starts, config.chunk_pooling)  # (B, C)
        loss = self.loss_fn(logits, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.max_grad_norm, foreach=True)
        if self.words is not None:
            self.words.decay_the_rest(self.optimizer)
        self.optimizer.step()
        self.model.zero_grad(set_to_none=True)
        return loss.item()

    def end_epoch(self, task: Task, config: TrainConfig, loss: float) -> None:
        """Validates, records the epoch and keeps its weights if its score is the best so far, or as good within
        the validation data's noise (within_noise): of epochs alike on validation, the later is kept."""
        record = {"epoch": self.epoch, "step": self.step, "loss": round(loss, 4), "seconds": round(self.seconds(), 1)}
        if task.val is not None and self.rank == 0:  # the others go on to the next epoch's first all-reduce
            with UsedRows.whole_table(self.words):
                scores, thresholds, logits = validate(self.model, task, self.device, config)
                record |= {f"val_{k}": v for k, v in scores.items()}
                value = scores[task.selection]
                top = max([value] + [h[f"val_{task.selection}"] for h in self.history])  # the highest score so far
                if within_noise(value, top, task.val.n_docs):
                    self.best = {"scores": scores, "thresholds": thresholds, "epoch": self.epoch, "logits": logits,
                                 "weights": {k: v.detach().clone() for k, v in self.model.state_dict().items()}}
        if self.stopped:
            record["stopped"] = self.stopped
        self.history.append(record)
        self.position = 0

    def finish(self, task: Task, config: TrainConfig) -> ModelInfo:
        """The best weights in the model (averaged with the starting ones where config.fine_tuned_share < 1),
        and the record of the run."""
        if self.words is not None:  # training is over: the whole table goes back into the model
            self.words.release()
            self.words = None
        if self.best is not None:
            self.model.load_state_dict(self.best["weights"])
        if self.start_weights is not None:  # WiSE-FT: share x fine-tuned + (1 - share) x start, then validated again
            self.model.load_state_dict(interpolate(self.start_weights, self.model.state_dict(), config.fine_tuned_share))
            if self.best is not None:
                scores, thresholds, logits = validate(self.model, task, self.device, config)
                self.best |= {"scores": scores, "thresholds": thresholds, "logits": logits}
        if self.best is not None and self.best["thresholds"] is not None:
            task.space.thresholds = self.best["thresholds"]
        self.model.eval()
        elapsed = self.seconds()
        info = ModelInfo(task.space, config, history=self.history,
                         data=task.sources)
        info.metrics = {"train_seconds": round(elapsed, 1), "train_examples": task.train.n_docs,
                        "train_examples_per_second": round(self.step * config.batch_size / elapsed, 1),
                        "precision": "bf16" if self.use_bf16 else "fp32", "device": self.device.type}
        if self.best is not None:
            info.metrics |= {f"val_{k}": v for k, v in self.best["scores"].items()}
            info.metrics |= {"val_examples": task.val.n_docs, "best_epoch": self.best["epoch"],
                             "selected_on": task.selection}
            info.calibration["pytorch"] = calibrate(task.space, self.best["logits"], task.y_val)
        return info

    # -- checkpoints ----------------------------------------------------------------------------
    def checkpoint(self, output: Path) -> None:
        tensors, state = self.state_dict()
        state["fingerprint"] = self.fingerprint
        checkpoints.save(output, self.step, tensors, state)
        self._last_save = time.perf_counter()

    def state_dict(self) -> tuple[dict, dict]:
        """(tensors, JSON-able state): everything to continue this run, optimizer moments included."""
        import torch

        with UsedRows.whole_table(self.words):
            tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        tensors["rng.torch"] = torch.get_rng_state()
        moments, optimizer = self.optimizer.state_dict()
        tensors |= {f"optim.{key}": value for key, value in moments.items()}
        best = None
        if self.best is not None:
            tensors |= {f"best.{k}": v for k, v in self.best["weights"].items()}
            tensors["val_logits"] = torch.from_numpy(np.ascontiguousarray(self.best["logits"]))
            best = {k: v for k, v in self.best.items() if k not in ("weights", "logits")}
        state = {"step": self.step, "epoch": self.epoch, "position": self.position, "last_loss": self.last_loss,
                 "history": self.history,
                 "best": best, "elapsed": self.seconds(), "epoch_rng": self.epoch_rng, "optimizer": optimizer,
                 "total_steps": self.total_steps, "stopped": self.stopped,
                 "unused_rows_scale": self.words.scale if self.words else None}
        return tensors, state

    def restore(self, found: tuple[dict, dict, Path], task: Task, config: TrainConfig) -> None:
        """Continues from a checkpoint made by the same command on the same data."""
        import torch

        tensors, state, folder = found
        if state.get("fingerprint") != self.fingerprint_of(task, config, self.world):
            raise ConfigError(f"{folder}: this checkpoint was made with other data, settings or number of processes; "
                              "run the same command as the interrupted run with --resume, or delete the checkpoints folder")
        with UsedRows.whole_table(self.words):  # the rows used are read back from the table on leaving
            self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        if self.words is not None:
            self.words.scale = state["unused_rows_scale"]
        torch.set_rng_state(tensors["rng.torch"])
        moments = {k[6:]: v for k, v in tensors.items() if k.startswith("optim.")}
        self.optimizer.load_state_dict(moments, state["optimizer"])
        self.step, self.epoch, self.position = state["step"], state["epoch"], state["position"]
        self.last_loss = state.get("last_loss", float("nan"))  # checkpoints written before it was kept have none
        self.history, self.elapsed, self.stopped = state["history"], state["elapsed"], state["stopped"]
        self.epoch_rng = state["epoch_rng"]
        self.rng.bit_generator.state = self.epoch_rng
        if self.position == 0:  # saved at an epoch's end: the next epoch draws from where that one ended
            self.epoch_batches(config)
        if state["best"] is not None:
            self.best = dict(state["best"], weights={k[5:]: v for k, v in tensors.items() if k.startswith("best.")},
                             logits=tensors["val_logits"].numpy())
        self.skipped = state.get("skipped", [])

    @staticmethod
    def fingerprint_of(task: Task, config: TrainConfig, world: int = 1) -> str:
        """What a resumed run must share with the interrupted one: settings (bar the time budget and
        checkpoint interval), training data and the number of processes."""
        import hashlib

        settings = dataclasses.replace(config, max_time=None, checkpoint_minutes=0).to_dict()
        digest = hashlib.sha256(json.dumps([settings, world], sort_keys=True).encode())
        for ids in task.train.ids:
            digest.update(np.asarray(ids, dtype=np.int32).tobytes())
        digest.update(np.ascontiguousarray(task.y).tobytes())
        return digest.hexdigest()


def check_data(data, validation, settings: dict) -> None:
    """Reads the data and builds the label space as training would, raising the same errors; for launchers
    that start several training processes (so that bad input is one message, not one per process)."""
    config = TrainConfig(**settings)
    prepare_labels(_as_dataset(data, config), config, data is None)
    if validation is not None:
        _as_dataset(validation, config)


def check_writable(output: Path, backbone: Path) -> None:
    """Refuses, before training, an output folder that cannot be written or a disk without room for the
    model and two checkpoints (each: weights, two optimizer moments, best weights): 10x the backbone."""
    import shutil
    import tempfile

    needed = 10 * sum(f.stat().st_size for f in backbone.glob("*.safetensors"))

    parent = output if output.is_dir() else output.parent
    while not parent.exists():
        parent = parent.parent
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as e:
        raise ModelError(f"{output}: cannot write there ({e.strerror}); choose another --output folder") from None
    free = shutil.disk_usage(parent).free
    if free < needed:
        raise ModelError(f"{output}: only {free / 2**20:.0f} MB free on that disk, and this run needs about "
                         f"{needed / 2**20:.0f} MB (model and checkpoints); free some space or choose another --output")


def _last_checkpoint(output: Path):
    found = checkpoints.latest(output)
    if found is None:
        raise ConfigError(f"no usable checkpoint in {output / checkpoints.FOLDER} to resume from; "
                          "train without --resume to start again")
    return found


class _StopFlag:
    requested = False


@contextlib.contextmanager
def _stop_on_sigint(enabled: bool):
    """Ctrl-C (SIGINT) sets a flag that the loop checks after each step, so it can stop between steps and
    save a checkpoint. Only in the main thread, and only when there is an output folder to save to."""
    stop = _StopFlag()
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, frame):
        if stop.requested:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        stop.requested = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def prepare(data, validation, config: TrainConfig, space: LabelSpace | None = None, *,
            given: set[str] = frozenset()) -> Task:
    """Reads and checks the data, chooses the recipe, builds the label space (unless given), holds out
    validation rows, tokenizes. `given`: settings the caller chose, kept whatever the recipe (as are those
    that differ from TrainConfig's defaults)."""
    train_set = _as_dataset(data, config)
    space = dataclasses.replace(space) if space is not None else prepare_labels(train_set, config, data is None)
    config = choose_recipe(config, len(train_set), given, multi_label=space.multi_label)
    if config.contrastive_pairs and space.multi_label:
        raise ConfigError(f"contrastive_pairs={config.contrastive_pairs} needs one label per row; "
                          "leave it at 0 for multi-label data")
    y = space.encode(train_set.labels, train_set.source)
    if validation is not None:
        val_set = _as_dataset(validation, config)
        y_val = space.encode(val_set.labels, val_set.source)
    else:
        train_rows, val_rows = validation_split(y, config.validation_split, config.validation_max_rows, config.seed)
        val_set, y_val = (train_set.subset(val_rows), y[val_rows]) if val_rows else (None, None)
        train_set, y = train_set.subset(train_rows), y[train_rows]
    if config.text_pair_column and train_set.pairs is None:
        raise ConfigError("text_pair_column is set but the training data has no second texts")
    train_set, y = with_label_names(train_set, y, space, config.label_name_rows)
    tokenizer = Tokenizer(resolve_backbone(config.model), config.max_length)
    encode = lambda d: tokenizer.encode(d.texts, d.pairs, long_text=config.long_text, stride=config.stride)  # noqa: E731
    counts = space.one_hot(y).sum(axis=0)
    imbalanced = space.multi_label or counts.max() >= IMBALANCED * max(counts.min(), 1)
    return Task(space, tokenizer, encode(train_set), y, encode(val_set) if val_set else None, y_val,
                "macro_f1" if imbalanced else "accuracy",
                {"train": _path_of(data), "validation": _path_of(validation)},
                dataclasses.replace(config, epochs=config.epochs or recipe_epochs(len(train_set))),
                val_set.texts if val_set else None, val_set.pairs if val_set else None)


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
        # Multi-label models keep [CLS] pooling, so Hugging Face's auto classes load them (issue 8).
        mid = "head-first" if config.text_pair_column is None and not multi_label else "fine-tune"
        recipe = "few-shot" if rows <= FEW_SHOT_MAX_ROWS else mid if rows <= HEAD_FIRST_MAX_ROWS else "fine-tune"
    settings = RECIPE_SETTINGS[recipe]
    if recipe == "fine-tune" and rows > HEAD_FIRST_MAX_ROWS:
        settings = settings | LARGE_DATA_SETTINGS
    given = set(given) | _changed_fields(config)
    chosen = {k: v for k, v in settings.items() if k not in given}
    return dataclasses.replace(config, recipe=recipe, **chosen)


def _changed_fields(config: TrainConfig | None) -> set[str]:
    """The fields of a config given by the caller that differ from TrainConfig's defaults."""
    if config is None:
        return set()
    defaults = TrainConfig()
    return {f.name for f in dataclasses.fields(config) if getattr(config, f.name) != getattr(defaults, f.name)}


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


def prepare_labels(train_set: Dataset, config: TrainConfig, sample: bool) -> LabelSpace:
    names = config.label_names or (SAMPLE_LABEL_NAMES if sample else None)
    return LabelSpace.from_data(train_set.labels, names=names, multi_label=config.multi_label,
                                separator=config.label_separator, source=train_set.source)


def interpolate(start: dict, end: dict, share: float) -> dict:
    """Weights `share` of the way from `start` to `end` (state dicts of one model): WiSE-FT (Wortsman et al.,
    2022) between the weights before and after fine-tuning. Integer buffers (position ids) are taken from `end`.
    In the few-shot recipe a share of 0.7 scored about a point above the fine-tuned weights alone at 16 rows per
    class, the same at 64; on AG News' 6,000 rows (head-first) it scored lower (benchmarks/RESULTS.md)."""
    import torch

    # lerp: start + share x (end - start), so weights fine-tuning left alone (frozen, or rows no batch used) stay exact
    return {k: torch.lerp(start[k].float(), v.float(), share).to(v.dtype) if v.is_floating_point() else v
            for k, v in end.items()}


def within_noise(value: float, top: float, rows: int) -> bool:
    """Whether a validation score is as good as the top one seen so far, within one standard error of a
    proportion measured on `rows` rows, sqrt(p (1 - p) / rows). Such an epoch is kept over an earlier, higher
    one: the data cannot tell them apart, and the later weights have trained longer, to the end of the
    learning-rate decay. On AG News (600 validation rows, one standard error 1.2 points) the epoch with the
    highest score read 0.8950, 0.8975 and 0.9025 on test.csv (seeds 42, 1, 2), the last epoch 0.9019, 0.8988
    and 0.9025 (benchmarks/RESULTS.md)."""
    return value >= top - math.sqrt(top * (1 - top) / rows)


class AdamW:
    """AdamW (decoupled weight decay) with its learning-rate schedule: each group's rate rises linearly from 0 to
    its peak over `warmup` steps, then falls linearly to 0 at `total` steps (as transformers'
    get_linear_schedule_with_warmup). The update is PyTorch's fused AdamW kernel, called through its functional
    API (torch.optim.adam.adam), so the arithmetic is torch.optim.AdamW's (a test compares them). Not that class
    itself: every torch.optim optimizer imports torch._dynamo on first use, 1.5 s of each run's start."""

    def __init__(self, groups: list[dict], *, warmup: int, total: int, betas=(0.9, 0.999), eps: float = 1e-8):
        self.param_groups = [dict(g, peak_lr=g["lr"]) for g in groups]  # each: params, lr, weight_decay, peak_lr
        self.index = {id(p): i for i, p in enumerate(p for g in groups for p in g["params"])}  # param -> its number
        self.warmup, self.total, self.betas, self.eps, self.steps = warmup, total, betas, eps, 0
        self.moments = {}  # param index -> {"exp_avg", "exp_avg_sq", "step"}, made at the param's first step
        self._schedule()

    def _schedule(self) -> None:
        s, warmup, total = self.steps, self.warmup, self.total
        factor = s / max(1, warmup) if s < warmup else max(0.0, (total - s) / max(1, total - warmup))
        for group in self.param_groups:
            group["lr"] = group["peak_lr"] * factor

    def step(self) -> None:
        """One update of every parameter that has a gradient, at the current rates; then the schedule moves on."""
        from torch.optim.adam import adam

        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            states = [self._moments_of(p) for p in params]
            adam(params, [p.grad for p in params], [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
                 [], [s["step"] for s in states], fused=True, decoupled_weight_decay=True, amsgrad=False,
                 beta1=self.betas[0], beta2=self.betas[1], lr=group["lr"], weight_decay=group["weight_decay"],
                 eps=self.eps, maximize=False)
        self.steps += 1
        self._schedule()

    def _moments_of(self, param) -> dict:
        """The parameter's moments, made (zeros) at its first step only: making them at every step and keeping the
        first (dict.setdefault) zero-filled twice the model's size per step, 17% of bf16 training time."""
        i = self.index[id(param)]
        if i not in self.moments:
            import torch

            self.moments[i] = {"exp_avg": torch.zeros_like(param), "exp_avg_sq": torch.zeros_like(param),
                               "step": torch.zeros((), device=param.device)}  # step: a float32 scalar, as the kernel wants
        return self.moments[i]

    def state_dict(self) -> tuple[dict, dict]:
        """(tensors, JSON-able state): the moments by parameter index, and the step count."""
        tensors = {f"{i}.{key}": value for i, moments in self.moments.items() for key, value in moments.items()}
        return tensors, {"steps": self.steps}

    def load_state_dict(self, tensors: dict, state: dict) -> None:
        self.moments = {}
        for key, value in tensors.items():
            i, name = key.split(".", 1)
            self.moments.setdefault(int(i), {})[name] = value.clone()
        self.steps = state["steps"]
        self._schedule()


class UsedRows:
    """Trains the word-embedding rows the training data uses, and only those.

    A text touches a few dozen of the table's 30,522 rows, and a training file a few thousand (8,224 of them in
    8,000 SST-2 sentences). Trained whole, the table costs a dense gradient, clipping pass and AdamW update
    of 30,522 x H numbers every step. Here the model trains with a table of the rows used alone (token ids
    mapped to their rows: rows_of), which gives the same model: the other rows get no gradient, so AdamW
    moves them only by weight decay, p <- p (1 - lr wd) at every step, and that factor is kept (decay_the_rest)
    and applied when the whole table is put back (whole_table, release). Per training step on 8,000 SST-2 rows:
    132 -> 105 ms in bf16, 308 -> 275 ms in fp32 held to AVX2 (benchmarks/RESULTS.md).
    """

    def __init__(self, model, chunks: list[list[int]], pad_id: int):
        import torch
        from torch import nn

        self.model, self.table = model, model.encoder.get_input_embeddings()  # the whole table: (V, H)
        self.start = self.table.weight.detach().clone()  # (V, H) the weights training starts from
        padding = self.table.padding_idx  # a row that gets no gradient (transformers' BERT: [PAD]), or None
        extra = [pad_id] if padding is None else [pad_id, padding]
        self.used = np.unique(np.concatenate([np.asarray(c, dtype=np.int64) for c in chunks] + [extra]))  # (U,) ids
        self.lookup = np.full(self.start.shape[0], -1, dtype=np.int64)  # (V,) id -> its row here; -1: unused
        self.lookup[self.used] = np.arange(len(self.used))
        padding_row = None if padding is None else int(self.lookup[padding])
        self.rows = nn.Embedding.from_pretrained(self.start[torch.from_numpy(self.used)].clone(), freeze=False,
                                                 padding_idx=padding_row)  # (U, H): what trains
        self.scale = 1.0  # what weight decay has left of the rows not used: the product of (1 - lr wd)
        model.encoder.set_input_embeddings(self.rows)

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """Token ids of a training batch -> rows of the trained table (every id a training text holds has one)."""
        return self.lookup[ids]

    def decay_the_rest(self, optimizer: AdamW) -> None:
        """Before an optimizer step: the weight decay AdamW would apply to the rows not used, at its current rate."""
        group = next(g for g in optimizer.param_groups if any(p is self.rows.weight for p in g["params"]))
        self.scale *= 1 - group["lr"] * group["weight_decay"]

    def _fill_table(self) -> None:
        import torch

        with torch.no_grad():
            self.table.weight.copy_(self.start * self.scale)
            self.table.weight[torch.from_numpy(self.used)] = self.rows.weight

    @staticmethod
    @contextlib.contextmanager
    def whole_table(words: "UsedRows | None"):
        """The model with its whole table inside, for validation and saving; on leaving, the trained rows are read
        back from it (a restored checkpoint changes them). Does nothing when `words` is None."""
        import torch

        if words is None:
            yield
            return
        words._fill_table()
        words.model.encoder.set_input_embeddings(words.table)
        try:
            yield
        finally:
            with torch.no_grad():
                words.rows.weight.copy_(words.table.weight[torch.from_numpy(words.used)])
            words.model.encoder.set_input_embeddings(words.rows)

    def release(self) -> None:
        """Training is over: the whole table goes back into the model, for good."""
        self._fill_table()
        self.model.encoder.set_input_embeddings(self.table)


def validate(model, task: Task, device, config: TrainConfig) -> tuple[dict, list[float] | None, np.ndarray]:
    """(scores, thresholds, logits) on the validation texts, without dropout. Multi-label: per-label
    thresholds are tuned first."""
    model.eval()
    logits = score(TorchEngine(model, device), task.tokenizer, task.val, config.eval_batch_size, config.chunk_pooling)
    thresholds = None
    if task.space.multi_label:
        thresholds = task.space.tune_thresholds(logits, task.y_val)
        space = dataclasses.replace(task.space, thresholds=thresholds)
    else:
        space = task.space
    model.train()
    return metrics(space, space.postprocess(logits), task.y_val), thresholds, logits


def contrast_encoder(model, task: Task, device, config: TrainConfig, use_bf16: bool) -> None:
    """SetFit's contrastive stage. Each training chunk gets `config.contrastive_pairs` partners of its own
    label (cosine target 1) and as many of other labels (target 0); one pass over these pairs, in random
    order, trains the encoder so that the pooled vectors of one label gather (mean squared error on the
    cosine, AdamW at CONTRASTIVE_LR falling linearly to 0, no dropout). Single-label data only."""
    import torch
    from torch.nn import functional as F

    chunks, labels = task.train, task.y[task.train.doc_of_chunk()]  # labels: (chunks,)
    rng = np.random.default_rng(config.seed)
    first, second, target = [], [], []
    for i, label in enumerate(labels):
        same, other = np.flatnonzero(labels == label), np.flatnonzero(labels != label)
        for partners, cosine in ((same[same != i], 1.0), (other, 0.0)):
            if len(partners):
                second += list(rng.choice(partners, config.contrastive_pairs))
                first += [i] * config.contrastive_pairs
                target += [cosine] * config.contrastive_pairs
    first, second, target = np.array(first), np.array(second), np.array(target, dtype=np.float32)
    order = rng.permutation(len(first))
    optimizer = AdamW([{"params": list(model.encoder.parameters()), "lr": CONTRASTIVE_LR, "weight_decay": 0.01}],
                      warmup=0, total=math.ceil(len(order) / CONTRASTIVE_BATCH))
    model.eval()  # no dropout; gradients still flow
    for start in range(0, len(order), CONTRASTIVE_BATCH):
        pairs = order[start:start + CONTRASTIVE_BATCH]
        rows = np.concatenate([first[pairs], second[pairs]])  # (2b,) chunk ids: the left texts, then the right ones
        type_ids = None if chunks.type_ids is None else [chunks.type_ids[i] for i in rows]
        inputs = {k: torch.from_numpy(v).to(device) for k, v in task.tokenizer.pad([chunks.ids[i] for i in rows], type_ids).items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            vectors = model.pooled(**inputs).float()  # (2b, H)
        cosine = F.cosine_similarity(vectors[:len(pairs)], vectors[len(pairs):])  # (b,)
        loss = F.mse_loss(cosine, torch.from_numpy(target[pairs]).to(device))
        loss.backward()
        optimizer.step()
        model.zero_grad(set_to_none=True)
    model.train()


def fit_head(model, task: Task, device, config: TrainConfig, use_bf16: bool = False) -> None:
    """Sets the head to a logistic regression (scikit-learn, L2, C=1) fitted on the pooled vectors the head
    reads, one per training chunk (a chunk carries its text's label; multi-label: one regression per label).
    Each chunk read costs a forward pass (bf16 autocast where training uses it), so the regression reads a
    seeded sample where every chunk would cost more than HEAD_FIT_SHARE of training's reads. More rows make
    a better probe: on AG News' and SST-2's own validation splits, 0.877 from 2,000 rows and 0.890 from all
    5,400 (AG), 0.824 and 0.840 from 7,200 (SST-2); benchmarks/RESULTS.md."""
    import torch
    from sklearn.linear_model import LogisticRegression

    chunks, doc = task.train, task.train.doc_of_chunk()  # doc: (chunks,) the text of each chunk
    picked = np.arange(len(doc))
    budget = max(HEAD_FIT_MIN_CHUNKS, int(HEAD_FIT_SHARE * config.epochs * len(doc)))
    if len(picked) > budget:
        picked = np.sort(np.random.default_rng(config.seed).choice(len(doc), budget, replace=False))
    sample = Encoded([chunks.ids[i] for i in picked], None if chunks.type_ids is None else
                     [chunks.type_ids[i] for i in picked], np.arange(len(picked) + 1))  # each chunk a text of its own
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
        features = run_chunks(TorchEngine(model, device).embeddings, task.tokenizer, sample,
                              length_batches(sample.chunk_lengths(), config.eval_batch_size))  # (picked, H)
    targets = task.space.one_hot(task.y)[doc[picked]]  # (picked, C)
    weight = np.zeros((len(task.space), features.shape[1]), dtype=np.float32)  # (C, H)
    bias = np.zeros(len(task.space), dtype=np.float32)  # (C,)
    if task.space.multi_label:
        for k in range(len(task.space)):
            if 0 < targets[:, k].sum() < len(targets):  # a label always (or never) on: its head stays at zero
                fit = LogisticRegression(max_iter=1000).fit(features, targets[:, k])
                weight[k], bias[k] = fit.coef_[0], fit.intercept_[0]
    elif len(np.unique(labels := targets.argmax(1))) > 1:  # (chunks,) class ids; one class alone: no fit
        fit = LogisticRegression(max_iter=1000).fit(features, labels)
        present = fit.classes_  # classes absent from this data (a fold's) keep logit 0
        if len(present) == 2:  # one coefficient vector: split it evenly between the two logits
            weight[present], bias[present] = np.stack([-fit.coef_[0], fit.coef_[0]]) / 2, np.array([-1, 1]) * fit.intercept_[0] / 2
        else:
            weight[present], bias[present] = fit.coef_, fit.intercept_
    with torch.no_grad():
        model.head.weight.copy_(torch.from_numpy(weight))
        model.head.bias.copy_(torch.from_numpy(bias))
    model.train()


def recipe_epochs(rows: int) -> float:
    """Epochs when none are given: 1 for large data; more for small data, so that a run trains on about
    RECIPE_EXAMPLES examples (at most RECIPE_MAX_EPOCHS epochs). Measured in benchmarks/RESULTS.md."""
    return float(min(RECIPE_MAX_EPOCHS, max(1, math.ceil(RECIPE_EXAMPLES / rows))))


def bucketed_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator,
                     window: int) -> list[np.ndarray]:
    """Random batches of similar length: shuffle, sort within windows of `window` batches, shuffle the batches.

    `window` is TrainConfig.length_window. A small one keeps batches varied (a window of 50 made SST-2
    batches of only 2-word phrases or only long sentences, and cost accuracy); a large one pads less.
    window=1 gives plain random batches.
    """
    order = rng.permutation(len(lengths))
    group = batch_size * window
    batches = []
    for start in range(0, len(order), group):
        chunk = order[start:start + group]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def _loss_function(task: Task, config: TrainConfig, device):
    """Cross-entropy (single-label) or binary cross-entropy (multi-label), with the class weights asked for."""
    import torch
    from torch.nn import functional as F

    weights = class_weights(task.space, task.y, config.class_weights)
    w = None if weights is None else torch.tensor(weights, dtype=torch.float32, device=device)
    if task.space.multi_label:
        return lambda logits, y: F.binary_cross_entropy_with_logits(logits, y, pos_weight=w)
    return lambda logits, y: F.cross_entropy(logits, y, weight=w)


def class_weights(space: LabelSpace, y: np.ndarray, setting) -> list[float] | None:
    """Per-class loss weights. "auto": inverse frequency, N / (C * count) for single-label (mean weight 1
    over the rows), and negatives / positives per label (BCE's pos_weight) for multi-label."""
    if setting is None:
        return None
    counts = np.maximum(space.one_hot(y).sum(axis=0), 1)  # (C,)
    if setting == "auto":
        weights = (len(y) - counts) / counts if space.multi_label else len(y) / (len(space) * counts)
        return [round(float(w), 4) for w in weights]
    known = set(space.names) | set(space.raw)
    unknown = sorted(set(setting) - known)
    if unknown:
        raise ConfigError(f"class_weights names {unknown[0]!r}, which is not a label here ({', '.join(space.names)}); "
                          "give weights for these labels")
    return [float(setting.get(name, setting.get(raw, 1.0))) for name, raw in zip(space.names, space.raw)]


def _param_groups(model, config: TrainConfig) -> list[dict]:
    """AdamW groups: no weight decay on biases and LayerNorm; layer-wise learning-rate decay downwards."""
    layers = getattr(model.encoder.config, "num_hidden_layers", 0)
    groups: dict[tuple, list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:  # frozen (freeze_word_embeddings, freeze_layers)
            continue
        depth = _layer_depth(name, layers)  # 0 = embeddings, layers + 1 = head
        decay = 0.0 if param.ndim == 1 else config.weight_decay
        lr = config.learning_rate * config.layer_lr_decay ** (layers + 1 - depth)
        if depth == layers + 1 and name.startswith("head.") and config.head_learning_rate is not None:
            lr = config.head_learning_rate
        groups.setdefault((lr, decay), []).append(param)
    return [{"params": params, "lr": lr, "weight_decay": decay} for (lr, decay), params in groups.items()]


def _freeze_lowest(model, n: int) -> None:
    """The embeddings and the n lowest encoder layers take no gradient: their output needs none, so backward
    stops above them and AdamW never sees them."""
    layers = getattr(model.encoder.config, "num_hidden_layers", 0)
    if n >= layers:
        raise ConfigError(f"freeze_layers={n} would freeze every one of this backbone's {layers} layers; "
                          f"use at most {layers - 1}")
    for name, param in model.named_parameters():
        if _layer_depth(name, layers) <= n:  # 0 = embeddings, i + 1 = layer i
            param.requires_grad_(False)


def _layer_depth(name: str, layers: int) -> int:
    if not name.startswith("encoder."):
        return layers + 1
    parts = name.split(".")
    for i, part in enumerate(parts[:-1]):
        if part in ("layer", "layers") and parts[i + 1].isdigit():
            return int(parts[i + 1]) + 1
    return 0 if "embeddings" in name else layers + 1


def _as_dataset(data, config: TrainConfig) -> Dataset:
    if data is None:
        return sample_dataset()
    if isinstance(data, Dataset):
        return data
    return read_dataset(data, text_column=config.text_column, label_column=config.label_column,
                        text_pair_column=config.text_pair_column)


def _path_of(data) -> str | None:
    return str(Path(data).resolve()) if isinstance(data, (str, Path)) else None


def _describe(record: dict, selection: str) -> str:
    text = f"epoch {record['epoch']}: loss {record['loss']:.4f}"
    if f"val_{selection}" in record:
        text += f", validation {selection.replace('_', '-')} {record[f'val_{selection}']:.4f}"
    return text + f" ({record['seconds']:.0f}s)"
