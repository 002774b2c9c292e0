"""The training loop and its state: train -> epoch -> step -> end of epoch -> finish.

Our own loop, fast by design on CPUs: texts are tokenized once; batches are cut from small random groups
sorted by length, then packed (several short texts per row, each attending only to itself: nothing changes but
the padding that is not computed); bf16 autocast where the hardware has bf16 arithmetic; fused AdamW with
linear warmup and decay; gradient clipping; validation after each epoch, keeping the best weights (of epochs
alike within the validation data's noise, the later). Texts split into chunks (`long_text="window"`) are
scored as the mean (or max) of their chunks' logits, in training as in prediction.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time

import numpy as np

from finebert.calibration import calibrate
from finebert.config import TrainConfig, resolve_backbone
from finebert.engines import TorchEngine, pool_chunks, score
from finebert.evaluation import metrics
from finebert.model_folder import ModelInfo
from finebert.training import checkpoints, distributed
from finebert.training.distill import distillation_loss
from finebert.training.losses import loss_function
from finebert.training.optim import AdamW, UsedRows, freeze_lowest, param_groups
from finebert.training.recipes import Task
from finebert.training.warm_start import contrast_encoder, fit_head, interpolate

# What one training forward pass takes at once: 4,096 tokens, and the attention of 16 windows of 128 tokens. A batch
# of long texts split into more windows is trained in parts (TrainState.backward_in_parts), so memory stays bounded
# whatever the text lengths: one epoch of 200 IMDB reviews in windows peaked at 4.4 GB in one pass per batch
# (benchmarks/RESULTS.md). Batches of short texts stay one pass: 128 SST-2 sentences are about 3,000 tokens.
STEP_TOKENS = 4096  # tokens
STEP_ATTENTION = 16 * 128 * 128  # attention cells per head: the sum of each chunk's squared length


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
        self.last_lr = 0.0  # the last step's learning rate (the highest of the parameter groups'), for tracking
        self.history: list[dict] = []  # one record per finished epoch
        self.best: dict | None = None  # {"scores", "thresholds", "epoch", "logits", "weights"} of the epoch kept so far (within_noise)
        self.elapsed = 0.0  # seconds of training, over every session of this run
        self.stopped: str | None = None  # "max_time" when the time budget ended the run, "pruned" when on_epoch did
        self.start_weights: dict | None = None  # config.fine_tuned_share < 1: the weights fine-tuning started from
        self.words: UsedRows | None = None  # the word-embedding rows the training data uses, trained alone
        self.fingerprint = ""  # what a checkpoint of this run must match to resume it (checkpoints.fingerprint)
        self.skipped: list[str] = []  # torn checkpoints passed over when this run resumed
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
            freeze_lowest(model, config.freeze_layers)
        trains_rows = cls.used_rows_only and model.encoder.get_input_embeddings().weight.requires_grad
        words = UsedRows(model, task.train.ids, task.tokenizer.pad_id) if trains_rows else None
        optimizer = AdamW(param_groups(model, config), warmup=round(config.warmup_ratio * total_steps),
                          total=total_steps)
        loss = loss_function(task.space, task.y, config, device)
        if task.soft is not None:  # distilling: the teacher's answers besides the labels
            loss = distillation_loss(loss, task.space.multi_label, task.soft)
        state = cls(model, optimizer, device, total_steps, steps_per_epoch, use_bf16, loss,
                    task.train.doc_lengths(), config.seed, rank, world)
        state.fingerprint = checkpoints.fingerprint(task, config, world)
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
        targets = torch.from_numpy(task.y[batch]).to(self.device)  # (B,) or (B, C)
        if task.soft is not None:  # and the teacher's logits, with a flag for the rows that have a true label
            targets = (targets, torch.from_numpy(task.soft.rows(batch)).to(self.device))  # (B, C + 1)
        parts = step_parts(chunks.chunk_lengths())
        if len(parts) == 1:
            logits = pool_chunks(self.chunk_logits(task, chunks, parts[0], config), chunks.starts, config.chunk_pooling)
            loss = self.loss_fn(logits, targets)  # logits: (B, C)
            loss.backward()
        else:  # long texts in many windows: never all their activations at once
            loss = self.backward_in_parts(task, chunks, parts, targets, config)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.max_grad_norm, foreach=True)
        if self.words is not None:
            self.words.decay_the_rest(self.optimizer)
        self.last_lr = max(group["lr"] for group in self.optimizer.param_groups)
        self.optimizer.step()
        self.model.zero_grad(set_to_none=True)
        return loss.item()

    def chunk_logits(self, task: Task, chunks, part: slice, config: TrainConfig):
        """(n, C) float logits of the chunks in `part`, packed or padded, in bf16 autocast where training uses it."""
        import torch

        prepare = task.tokenizer.pack if config.packing and self.model.packs else task.tokenizer.pad
        inputs = prepare(chunks.ids[part], None if chunks.type_ids is None else chunks.type_ids[part])
        if self.words is not None:
            inputs["input_ids"] = self.words.rows_of(inputs["input_ids"])
        inputs = {k: torch.from_numpy(v).to(self.device) for k, v in inputs.items()}
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.use_bf16):
            return self.forward(**inputs).float()  # (n, C)

    def backward_in_parts(self, task: Task, chunks, parts: list[slice], targets, config: TrainConfig):
        """The gradients of one pass over the whole batch, with the activations of one part of its chunks in memory
        at a time: every part's logits without gradients; the loss and its gradient with respect to those logits;
        then each part again with gradients, handed its share. Without dropout (the default) the gradients are those
        of one pass over the batch; with it, each part's masks are replayed from the RNG state its first pass
        started from, so both passes compute the same function. It costs one forward pass more."""
        import torch

        starts, pieces = [], []
        with torch.no_grad():
            for part in parts:
                starts.append(torch.get_rng_state())
                pieces.append(self.chunk_logits(task, chunks, part, config))
        after = torch.get_rng_state()
        logits = torch.cat(pieces).requires_grad_()  # (n_chunks, C), a leaf: its .grad is each chunk's share
        loss = self.loss_fn(pool_chunks(logits, chunks.starts, config.chunk_pooling), targets)
        loss.backward()
        for i, (part, state) in enumerate(zip(parts, starts)):
            torch.set_rng_state(state)
            last = i == len(parts) - 1  # several processes: the gradients are averaged once, after the last part
            with contextlib.nullcontext() if self.world == 1 or last else self.forward.no_sync():
                self.chunk_logits(task, chunks, part, config).backward(logits.grad[part])
        torch.set_rng_state(after)
        return loss.detach()

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

    def saved(self) -> None:
        """A checkpoint of this state was written (checkpoints.checkpoint): the next is due in checkpoint_minutes."""
        self._last_save = time.perf_counter()


def step_parts(lengths: np.ndarray) -> list[slice]:
    """A training batch's chunks (their token counts, in order) as consecutive parts that each fit one forward pass:
    at most STEP_TOKENS tokens and STEP_ATTENTION attention cells (the sum of squared lengths), one chunk at least.
    Batches of short texts are one part; a batch of long texts in windows is several (backward_in_parts)."""
    parts, start, tokens, cells = [], 0, 0, 0
    for i, n in enumerate(int(n) for n in lengths):
        if i > start and (tokens + n > STEP_TOKENS or cells + n * n > STEP_ATTENTION):
            parts.append(slice(start, i))
            start, tokens, cells = i, 0, 0
        tokens, cells = tokens + n, cells + n * n
    return parts + [slice(start, len(lengths))]


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


def within_noise(value: float, top: float, rows: int) -> bool:
    """Whether a validation score is as good as the top one seen so far, within one standard error of a
    proportion measured on `rows` rows, sqrt(p (1 - p) / rows). Such an epoch is kept over an earlier, higher
    one: the data cannot tell them apart, and the later weights have trained longer, to the end of the
    learning-rate decay. On AG News (600 validation rows, one standard error 1.2 points) the epoch with the
    highest score read 0.8950, 0.8975 and 0.9025 on test.csv (seeds 42, 1, 2), the last epoch 0.9019, 0.8988
    and 0.9025 (benchmarks/RESULTS.md)."""
    return value >= top - math.sqrt(top * (1 - top) / rows)


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


def describe_epoch(record: dict, selection: str) -> str:
    """The line said after each epoch: its loss, validation score and time."""
    text = f"epoch {record['epoch']}: loss {record['loss']:.4f}"
    if f"val_{selection}" in record:
        text += f", validation {selection.replace('_', '-')} {record[f'val_{selection}']:.4f}"
    return text + f" ({record['seconds']:.0f}s)"
