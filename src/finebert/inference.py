"""Stage 6, inference: a trained model as a `Classifier` with predict / predict_proba, saved and loaded.

A model folder holds Hugging Face's files (config.json, model.safetensors, tokenizer files) plus
finebert.json: labels, training settings, metrics. Never pickle.

Scoring is batched: texts are tokenized together by the Rust tokenizer, sorted by length, and each
batch is padded only to its own longest text; results come back in the caller's order.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from finebert.config import TrainConfig
from finebert.errors import ModelError
from finebert.tokenization import Tokenizer

FINEBERT_FILE = "finebert.json"


@dataclass
class Prediction:
    text: str
    label: str
    confidence: float  # probability of `label`
    probabilities: dict[str, float]

    def to_dict(self) -> dict:
        return {"text": self.text, "label": self.label, "confidence": self.confidence,
                "probabilities": self.probabilities}


class TorchEngine:
    """Runs the PyTorch model in fp32 under no_grad: logits for a padded batch."""

    name = "pytorch"

    def __init__(self, model, device=None):
        import torch

        from finebert.model import default_device

        self.device = device or default_device()
        self.model = model.to(self.device).eval()
        self._torch = torch

    def logits(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            out = self.model(torch.from_numpy(input_ids).to(self.device),
                             torch.from_numpy(attention_mask).to(self.device))  # (B, C)
        return out.float().cpu().numpy()


class OnnxEngine:
    """Runs an exported ONNX model (fp32 or int8) in ONNX Runtime on the CPU; needs no torch."""

    def __init__(self, path: Path, name: str):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.name = name

    def logits(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return self.session.run(["logits"], {"input_ids": input_ids, "attention_mask": attention_mask})[0]


ENGINES = ("auto", "pytorch", "onnx-fp32", "onnx-int8")


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def score_sequences(engine, tokenizer: Tokenizer, sequences: list[list[int]], batch_size: int) -> np.ndarray:
    """Logits (N, C) for token-id sequences, batched shortest to longest, returned in input order."""
    order = np.argsort([len(s) for s in sequences], kind="stable")
    out = None
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        ids, mask = tokenizer.pad([sequences[i] for i in idx])  # (b, T) each
        logits = engine.logits(ids, mask)  # (b, C)
        if out is None:
            out = np.empty((len(sequences), logits.shape[1]), dtype=np.float32)
        out[idx] = logits
    return out


class Classifier:
    """A fine-tuned text classifier. Load one with `Classifier.load(folder)`; `finebert.train` returns one."""

    def __init__(self, engine, tokenizer: Tokenizer, labels: list[str], *, raw_labels: list[str] | None = None,
                 config: TrainConfig | None = None, metrics: dict | None = None, history: list | None = None,
                 sources: dict | None = None):
        self.engine = engine
        self.tokenizer = tokenizer
        self.labels = list(labels)  # class names, index = class id
        self.raw_labels = list(raw_labels or labels)  # the labels as written in the training file
        self.config = config or TrainConfig()
        self.metrics = metrics or {}
        self.history = history or []
        self.sources = sources or {}  # {"train": path, "validation": path or None}, for `finebert export`

    # -- prediction -------------------------------------------------------------------------------
    def predict_proba(self, texts: str | list[str]) -> np.ndarray:
        """Class probabilities, shape (N, C) in the order of `self.labels`; (C,) for a single string."""
        single = isinstance(texts, str)
        batch = [texts] if single else list(texts)
        if not batch:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        logits = score_sequences(self.engine, self.tokenizer, self.tokenizer.encode(batch), self.config.eval_batch_size)
        probs = softmax(logits)
        return probs[0] if single else probs

    def predict(self, texts: str | list[str]) -> str | list[str]:
        """Label names: one for a single string, a list for a list."""
        probs = self.predict_proba(texts)
        if probs.ndim == 1:
            return self.labels[int(probs.argmax())]
        return [self.labels[int(k)] for k in probs.argmax(axis=1)]

    def classify(self, texts: str | list[str]) -> Prediction | list[Prediction]:
        """Label, confidence and every class's probability for each text."""
        single = isinstance(texts, str)
        batch = [texts] if single else list(texts)
        probs = self.predict_proba(batch)
        results = []
        for text, p in zip(batch, probs):
            k = int(p.argmax())
            results.append(Prediction(text, self.labels[k], round(float(p[k]), 4),
                                      {name: round(float(v), 4) for name, v in zip(self.labels, p)}))
        return results[0] if single else results

    def class_ids(self, labels: list[str], source: str) -> list[int]:
        """Class ids of labels written as in the training file (`1`) or by name (`positive`)."""
        from finebert.errors import DataError

        to_id = {raw: k for k, raw in enumerate(self.raw_labels)} | {name: k for k, name in enumerate(self.labels)}
        unknown = sorted(set(labels) - set(to_id))
        if unknown:
            raise DataError(f"{source}: label {unknown[0]!r} is not one the model knows "
                            f"({', '.join(self.labels)}); use data with the training labels")
        return [to_id[label] for label in labels]

    # -- saving and loading -----------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """Writes the model folder atomically: a failed save leaves any earlier model there untouched."""
        from finebert.model import HF_POOLER_SCALE, hf_compatible, save_model

        folder = Path(folder)
        if not isinstance(self.engine, TorchEngine):
            raise ModelError("only a PyTorch-engine classifier can be saved; load it with engine='pytorch'")
        model = self.engine.model
        check_output_folder(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            save_model(model.cpu(), tmp, self.labels)
            model.to(self.engine.device)
            self.tokenizer.save(tmp)
            info = {
                "finebert_version": _version(),
                "labels": self.labels,
                "raw_labels": self.raw_labels,
                "pooling": model.pooling,
                "hf_sequence_classification": hf_compatible(model),
                "hf_pooler_scale": HF_POOLER_SCALE,
                "config": self.config.to_dict(),
                "metrics": self.metrics,
                "history": self.history,
                "data": self.sources,
            }
            (tmp / FINEBERT_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
            for path in tmp.iterdir():
                path.chmod(0o644)
            _replace_folder(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return folder

    @classmethod
    def load(cls, folder: str | Path, *, engine: str = "auto", device=None, engine_file: Path | None = None) -> "Classifier":
        """Loads a model folder. engine: "auto" takes the fastest validated one (ONNX int8, then ONNX
        fp32, see `finebert export`), else PyTorch; or name one of "pytorch", "onnx-fp32", "onnx-int8"."""
        info = read_model_info(folder)
        folder = Path(folder)
        config = TrainConfig.from_dict(info.get("config", {}))
        runner = _make_engine(folder, info, engine, device, engine_file)
        return cls(runner, Tokenizer(folder, config.max_length), info["labels"], raw_labels=info.get("raw_labels"),
                   config=config, metrics=info.get("metrics"), history=info.get("history"), sources=info.get("data"))

    def __repr__(self):
        return f"Classifier(labels={self.labels}, backbone={self.config.model!r}, engine={self.engine.name!r})"


def _make_engine(folder: Path, info: dict, engine: str, device, engine_file: Path | None):
    from finebert.errors import ConfigError, MissingExtraError

    if engine not in ENGINES:
        raise ConfigError(f"engine={engine!r} is invalid: use one of {', '.join(ENGINES)}")
    if engine == "auto":
        engine = info.get("default_engine", "pytorch")
        if engine != "pytorch" and (not (folder / info["engines"][engine]["file"]).is_file() or not _has_onnxruntime()):
            engine = "pytorch"  # the ONNX file or onnxruntime is missing: still works, just slower
    if engine == "pytorch":
        from finebert.model import load_model

        return TorchEngine(load_model(folder, pooling=info.get("pooling", "cls")), device)
    if not _has_onnxruntime():
        raise MissingExtraError("onnxruntime", "onnx")
    path = engine_file or folder / {"onnx-fp32": "model.onnx", "onnx-int8": "model.int8.onnx"}[engine]
    if not path.is_file():
        raise ModelError(f"{folder}: no {path.name}; create it with: finebert export {folder}")
    return OnnxEngine(path, engine)


def _has_onnxruntime() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def read_model_info(folder: str | Path) -> dict:
    """finebert.json of a model folder, or a ModelError saying why the folder is not a finebert model."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelError(f"{folder}: no such model folder; give the --output folder of `finebert train`")
    path = folder / FINEBERT_FILE
    if not path.is_file():
        raise ModelError(f"{folder}: not a finebert model (no {FINEBERT_FILE}); train one with `finebert train DATA --output DIR`")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(info.get("labels"), list):
            raise ValueError("no labels")
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelError(f"{path}: unreadable ({e}); train the model again") from None
    return info


def check_output_folder(folder: Path) -> None:
    """An output folder may be new, empty, or an earlier finebert model (replaced); anything else is refused."""
    if folder.exists() and (not folder.is_dir() or (any(folder.iterdir()) and not (folder / FINEBERT_FILE).is_file())):
        raise ModelError(f"{folder}: exists and is not a finebert model folder; choose a new --output folder")


def _replace_folder(new: Path, target: Path) -> None:
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
        new.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        new.rename(target)
    os.chmod(target, 0o755)


def _version() -> str:
    from finebert import __version__

    return __version__
