"""Stage 6a, engines: run a trained model on encoded texts, in PyTorch or in ONNX Runtime.

    engine.logits(batch)                              batch: input_ids, attention_mask, token_type_ids (B, T)
                                                      -> (B, C) logits, one row per chunk
    engine.name, engine.max_added_padding             its name; the padding a batch may gain before it is cut
    engine.workers                                    batches it scores at once, one per thread (1: one at a
                                                      time; more: engine.one_thread_logits() runs them)
    length_batches(lengths, batch_size, max_added_padding)   -> chunk indices, batch by batch
    padded(tokenizer, encoded, idx)                   -> the model inputs of chunks idx, padded to their longest
    run_chunks(run, tokenizer, encoded, batches)      -> (n_chunks, D): run(batch) -> (B, D) over every chunk
    score(engine, tokenizer, encoded, batch_size)     -> (N, C) logits, one row per text (chunks pooled)

Scoring is batched: chunks are sorted by length, each batch is padded only to its own longest chunk,
and in ONNX Runtime a chunk that would pad its batch by more than a few tokens starts the next one
(length_batches); results come back in the caller's order. ONNX Runtime scores several batches at
once, each on a thread of its own; a single batch gets every thread. Texts split into several chunks (`long_text="window"`)
get the mean (or max) of their chunks' logits, in training and prediction alike (`pool_chunks`).
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity, which containers and taskset narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class TorchEngine:
    """Runs the PyTorch model in fp32 under inference_mode."""

    name = "pytorch"
    # Batches are only filled (length_batches): a PyTorch call costs more, and under bf16 autocast (training's
    # head fit) cutting at length steps was 3-5% slower (7,500 SST-2 phrases: 11.65-11.69 s against 11.08-11.32 s).
    max_added_padding = None
    workers = 1  # one batch at a time, every thread on each of its operations

    def __init__(self, model, device=None, threads: int | None = None):
        import torch

        from finebert.model import default_device

        if threads:  # a server worker's share of the cores (None: PyTorch's default, every core)
            torch.set_num_threads(threads)
        self.device = device or default_device()
        self.model = model.to(self.device).eval()
        self._torch = torch

    def logits(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        return self._run(self.model, batch)  # (B, C)

    def embeddings(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        """(B, H): the pooled vectors the head reads."""
        return self._run(self.model.pooled, batch)

    def _run(self, function, batch: dict[str, np.ndarray]) -> np.ndarray:
        torch = self._torch
        inputs = {k: torch.from_numpy(v).to(self.device) for k, v in batch.items()}
        with torch.inference_mode():
            out = function(**inputs)
        return out.float().cpu().numpy()


# ONNX Runtime's CPU kernel for the fused Add + LayerNormalization (SkipLayerNormalization) is a scalar
# loop with a division per element: unfused, the two ops took 158 ms where it took 757 ms over 1,821
# SST-2 texts, and int8 scoring ran 1.4-1.5x faster (benchmarks/RESULTS.md). Export leaves them unfused
# (export._optimize) and sessions must not fuse them back.
SLOW_FUSIONS = ["SkipLayerNormFusion"]


class OnnxEngine:
    """Runs an exported ONNX model (fp32 or int8) in ONNX Runtime on the CPU; needs no torch."""

    # A padded token costs as much as a real one, and a call about as much as a few tokens: a batch takes
    # a longer chunk only if padding the batch to it adds at most this many tokens (length_batches). Micro-
    # batches of 8 random SST-2 sentences (int8, one thread) scored 197-205 texts/s as one padded call,
    # 339-419 in such groups; sorted bulk scoring is unchanged (benchmarks/RESULTS.md).
    max_added_padding = 8

    def __init__(self, path: Path, name: str, threads: int | None = None):
        self.path, self.name = path, name
        # Several batches run faster one per thread than one after another on every thread: ONNX Runtime
        # leaves many small operations on one thread and synchronises the threads at each operation. Bulk
        # scoring (1,821 SST-2 texts, 2 threads, the same batches, interleaved) ran 1.07-1.31x faster in int8
        # and 1.05-1.12x in fp32. A single batch (one text: a request, `finebert predict "..."`) still gets
        # every thread: one-thread sessions took 1.6-1.8x as long on one 100-token text in fp32, 1.1-1.8x in int8
        # (benchmarks/RESULTS.md).
        self.workers = threads or usable_cores()
        self.session = self._open(self.workers)
        self._one_thread = None  # opened on first use: +29 MB (int8), +86 MB (fp32) for the benchmark model
        self.inputs = [i.name for i in self.session.get_inputs()]  # the exporter drops inputs a model ignores

    def _open(self, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        return ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"],
                                    disabled_optimizers=SLOW_FUSIONS)

    def logits(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        """(B, C): one batch, every thread on each of its operations."""
        return self._run(self.session, batch)

    def one_thread_logits(self):
        """A function batch -> (B, C) logits that computes on one thread, for `workers` threads to call at once."""
        if self._one_thread is None:
            self._one_thread = self._open(1)
        return functools.partial(self._run, self._one_thread)

    def _run(self, session, batch: dict[str, np.ndarray]) -> np.ndarray:
        return session.run(["logits"], {name: batch[name] for name in self.inputs})[0]


def pool_chunks(logits, starts: np.ndarray, how: str = "mean"):
    """(n_chunks, C) chunk logits -> (N, C) text logits: the mean or max over each text's chunks.
    Works on numpy arrays (prediction) and on torch tensors with gradients (training)."""
    counts = np.diff(starts)
    if len(counts) == len(logits):  # one chunk per text: nothing to pool
        return logits
    if isinstance(logits, np.ndarray):
        reduce = np.maximum.reduceat if how == "max" else np.add.reduceat
        pooled = reduce(logits, starts[:-1], axis=0)
        return pooled if how == "max" else pooled / counts[:, None]
    import torch

    return torch.segment_reduce(logits, how, lengths=torch.from_numpy(counts).to(logits.device), axis=0)


def length_batches(lengths, batch_size: int, max_added_padding: int | None = None) -> list[np.ndarray]:
    """Chunk indices in batches, shortest chunks first: at most `batch_size` per batch, and (given
    `max_added_padding`) a new batch wherever joining the last one would add more padding tokens to it."""
    lengths = np.asarray(lengths)
    order = np.argsort(lengths, kind="stable")
    batches, start = [], 0
    for k in range(1, len(order) + 1):
        full = k == len(order) or k - start == batch_size
        # chunk k joining would pad each of the k - start chunks before it by the difference in length
        padding = 0 if full else (k - start) * (lengths[order[k]] - lengths[order[k - 1]])
        if full or (max_added_padding is not None and padding > max_added_padding):
            batches.append(order[start:k])
            start = k
    return batches


def padded(tokenizer, encoded, idx: np.ndarray) -> dict[str, np.ndarray]:
    """The model inputs, each (b, T), of the chunks `idx` of an `Encoded`, padded to the longest of them."""
    type_ids = None if encoded.type_ids is None else [encoded.type_ids[i] for i in idx]
    return tokenizer.pad([encoded.ids[i] for i in idx], type_ids)


def run_chunks(run, tokenizer, encoded, batches: list[np.ndarray], workers: int = 1) -> np.ndarray:
    """(n_chunks, D): `run(batch)` -> (B, D) over every chunk of an `Encoded`, batch by batch (`batches`: chunk
    indices, from length_batches), in input order. With workers > 1, `run` is called from that many threads at once."""
    def padded_run(idx):
        return run(padded(tokenizer, encoded, idx))  # (b, D)

    out = None
    with ThreadPoolExecutor(workers) as pool:
        # one worker runs on the caller's thread: autocast and inference_mode (training's head fit) are per thread
        for idx, values in zip(batches, pool.map(padded_run, batches) if workers > 1 else map(padded_run, batches)):
            if out is None:
                out = np.empty((len(encoded.ids), values.shape[1]), dtype=np.float32)
            out[idx] = values
    return out


def score(engine, tokenizer, encoded, batch_size: int, chunk_pooling: str = "mean") -> np.ndarray:
    """Logits (N, C) for an `Encoded` batch of N texts, in input order."""
    if encoded.n_docs == 0:
        return np.zeros((0, 0), dtype=np.float32)
    batches = length_batches(encoded.chunk_lengths(), batch_size, engine.max_added_padding)
    if engine.workers > 1 and len(batches) > 1:  # one batch per thread, several at once (OnnxEngine)
        chunks = run_chunks(engine.one_thread_logits(), tokenizer, encoded, batches, engine.workers)
    else:
        chunks = run_chunks(engine.logits, tokenizer, encoded, batches)
    return pool_chunks(chunks, encoded.starts, chunk_pooling)
