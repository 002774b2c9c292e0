"""Stage 4, training: fine-tune every weight of the encoder and the head with cross-entropy.

Our own loop, fast by design on CPUs: texts are tokenized once; batches are cut from small random groups
sorted by length and padded only to their own longest text; bf16 autocast where the
hardware has bf16 arithmetic; fused AdamW with linear warmup and decay; gradient clipping; validation
after each epoch, keeping the best weights.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np

from finebert.config import TrainConfig, resolve_backbone
from finebert.data import (SAMPLE_LABEL_NAMES, Dataset, check_trainable, label_vocabulary, read_dataset,
                           sample_dataset, stratified_split)
from finebert.errors import ConfigError, DataError
from finebert.inference import Classifier, TorchEngine, check_output_folder, score_sequences
from finebert.tokenization import Tokenizer


def train(data: str | Path | Dataset | None = None, *, output: str | Path | None = None,
          validation: str | Path | Dataset | None = None, config: TrainConfig | None = None,
          quiet: bool = False, on_step: Callable[[int, float], None] | None = None, **settings) -> Classifier:
    """Fine-tunes a classifier on `data` (a file path, a Dataset, or None for the built-in sample).

    Settings are TrainConfig fields, given as `config=` or as keywords (`epochs=2`). With `output`, the
    model folder is written there (atomically). `on_step(step, loss)` is called after every step.
    """
    unknown = sorted(set(settings) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        raise ConfigError(f"unknown setting {unknown[0]!r}; the settings are the fields of finebert.TrainConfig")
    config = dataclasses.replace(config or TrainConfig(), **settings)
    train_set = _as_dataset(data, config)
    check_trainable(train_set)
    raw_labels, label_ids = label_vocabulary(train_set.labels)
    names = label_vocabulary(train_set.labels, config.label_names or (SAMPLE_LABEL_NAMES if data is None else None))[0]
    y = np.array([label_ids[label] for label in train_set.labels])

    if validation is not None:
        val_set = _as_dataset(validation, config)
        unknown = sorted(set(val_set.labels) - set(label_ids))
        if unknown:
            raise DataError(f"{val_set.source}: label {unknown[0]!r} does not occur in the training data "
                            f"({', '.join(raw_labels)}); use the same labels in both files")
        val_texts, val_y = val_set.texts, np.array([label_ids[label] for label in val_set.labels])
        train_idx = np.arange(len(y))
    else:
        train_idx, val_idx = stratified_split(y.tolist(), config.validation_split, config.validation_max_rows, config.seed)
        val_texts, val_y = [train_set.texts[i] for i in val_idx], y[val_idx]
    if output is not None:
        check_output_folder(Path(output))  # refuse before spending minutes on training

    import torch

    from finebert.model import bf16_supported, build_model, default_device

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    backbone = resolve_backbone(config.model)
    tokenizer = Tokenizer(backbone, config.max_length)
    sequences = tokenizer.encode([train_set.texts[i] for i in train_idx])
    lengths = np.array([len(s) for s in sequences])
    targets = y[train_idx]
    val_sequences = tokenizer.encode(val_texts) if len(val_texts) else []

    device = default_device()
    model = build_model(backbone, len(raw_labels), pooling=config.pooling, dropout=config.dropout).to(device)
    use_bf16 = config.precision == "bf16" or (config.precision == "auto" and bf16_supported(device))
    steps_per_epoch = math.ceil(len(sequences) / config.batch_size)
    total_steps = max(1, round(config.epochs * steps_per_epoch))
    # With sparse_embeddings the word embeddings (30k rows) get sparse gradients: a batch touches a few
    # hundred rows, and only those are updated (lazy Adam) instead of a dense pass over the whole table.
    words = model.encoder.get_input_embeddings()
    words.sparse = config.sparse_embeddings
    dense, sparse = _param_groups(model, config, sparse=words.weight if config.sparse_embeddings else None)
    optimizers = [torch.optim.AdamW(dense, lr=config.learning_rate, fused=True)]
    if sparse:
        optimizers.append(torch.optim.SparseAdam(sparse, lr=config.learning_rate))
    warmup = round(config.warmup_ratio * total_steps)
    ramp = lambda s: s / max(1, warmup) if s < warmup else max(0.0, (total_steps - s) / max(1, total_steps - warmup))  # noqa: E731
    schedules = [torch.optim.lr_scheduler.LambdaLR(o, ramp) for o in optimizers]
    engine = TorchEngine(model, device)
    sources = {"train": _path_of(data), "validation": _path_of(validation)}
    classifier = Classifier(engine, tokenizer, names, raw_labels=raw_labels, config=config, sources=sources)

    from tqdm.auto import tqdm

    bar = tqdm(total=total_steps * config.batch_size, unit="ex", smoothing=0, disable=quiet, desc="training")
    start, step, history, best = time.perf_counter(), 0, [], None
    while step < total_steps:
        epoch = step // steps_per_epoch + 1
        model.train()
        for batch in bucketed_batches(lengths, config.batch_size, rng, config.length_window):
            ids, mask = tokenizer.pad([sequences[i] for i in batch])  # (B, T) each
            ids, mask = torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)
            labels = torch.from_numpy(targets[batch]).to(device)  # (B,)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                logits = model(ids, mask)  # (B, C)
            loss = torch.nn.functional.cross_entropy(logits.float(), labels)
            loss.backward()
            clip_gradients(model.parameters(), config.max_grad_norm)
            for optimizer, schedule in zip(optimizers, schedules):
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
            step += 1
            loss_value = loss.item()
            bar.update(len(batch))
            bar.set_postfix(epoch=epoch, loss=f"{loss_value:.4f}")
            if on_step:
                on_step(step, loss_value)
            out_of_time = config.max_time is not None and time.perf_counter() - start > config.max_time
            if step >= total_steps or out_of_time:
                break
        record = {"epoch": epoch, "step": step, "loss": round(loss_value, 4),
                  "seconds": round(time.perf_counter() - start, 1)}
        if len(val_sequences):
            model.eval()  # no dropout while validating
            logits = score_sequences(engine, tokenizer, val_sequences, config.eval_batch_size)  # (N, C)
            record["val_accuracy"] = round(float((logits.argmax(1) == val_y).mean()), 4)
            if best is None or record["val_accuracy"] > best[0]:
                best = (record["val_accuracy"], {k: v.detach().clone() for k, v in model.state_dict().items()})
        history.append(record)
        if not quiet:
            bar.write(_describe(record))
        if out_of_time:
            history[-1]["stopped"] = "max_time"
            break
    bar.close()
    words.sparse = False
    if best is not None:
        model.load_state_dict(best[1])
    model.eval()
    elapsed = time.perf_counter() - start
    classifier.history = history
    classifier.metrics = {"train_seconds": round(elapsed, 1), "train_examples": len(sequences),
                          "train_examples_per_second": round(step * config.batch_size / elapsed, 1),
                          "precision": "bf16" if use_bf16 else "fp32", "device": device.type}
    if best is not None:
        classifier.metrics["val_accuracy"] = best[0]
        classifier.metrics["val_examples"] = len(val_sequences)
    if output is not None:
        classifier.save(output)
    return classifier


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


def _param_groups(model, config: TrainConfig, sparse=None) -> tuple[list[dict], list[dict]]:
    """AdamW groups: no weight decay on biases and LayerNorm; layer-wise learning-rate decay downwards.
    The parameter `sparse` (if any) goes in a group of its own for SparseAdam, which has no weight decay."""
    layers = getattr(model.encoder.config, "num_hidden_layers", 0)
    groups: dict[tuple, list] = {}
    sparse_groups = []
    for name, param in model.named_parameters():
        depth = _layer_depth(name, layers)  # 0 = embeddings, layers + 1 = head
        decay = 0.0 if param.ndim == 1 else config.weight_decay
        lr = config.learning_rate * config.layer_lr_decay ** (layers + 1 - depth)
        if param is sparse:
            sparse_groups.append({"params": [param], "lr": lr})
        else:
            groups.setdefault((lr, decay), []).append(param)
    return [{"params": params, "lr": lr, "weight_decay": decay} for (lr, decay), params in groups.items()], sparse_groups


def clip_gradients(parameters, max_norm: float) -> None:
    """Scales all gradients, dense and sparse, so that their global L2 norm is at most max_norm."""
    import torch

    grads = []
    for p in parameters:
        if p.grad is not None:
            if p.grad.is_sparse:
                p.grad = p.grad.coalesce()  # repeated token ids summed, so the norm is right
            grads.append(p.grad)
    norms = torch.stack([(g._values() if g.is_sparse else g).norm() for g in grads])  # (P,)
    scale = (max_norm / (norms.norm() + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(scale)


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
    return read_dataset(data, text_column=config.text_column, label_column=config.label_column)


def _path_of(data) -> str | None:
    return str(Path(data).resolve()) if isinstance(data, (str, Path)) else None


def _describe(record: dict) -> str:
    text = f"epoch {record['epoch']}: loss {record['loss']:.4f}"
    if "val_accuracy" in record:
        text += f", validation accuracy {record['val_accuracy']:.4f}"
    return text + f" ({record['seconds']:.0f}s)"
