"""Stage 6, inference: a trained model as a `Classifier` with predict / predict_proba / classify.

    clf = Classifier.load("model/")                  # the fastest validated engine (see `finebert export`)
    clf.predict("I really enjoyed the movie!")       # 'positive'  (multi-label: a list of labels)
    clf.predict_proba(["great", "awful"])            # (2, C) probabilities, in the order of clf.labels
    clf.classify("great")                            # Prediction(text, label, labels, confidence, probabilities)
    clf.predict([("a man plays", "someone is playing")])   # sentence pairs: (text, pair) tuples or pairs=[...]

Every probability and decision comes from the label space's one post-processing step
(`LabelSpace.postprocess`), with this engine's calibration applied, and every label shown from `LabelSpace.shown`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from finebert import model_folder
from finebert.engines import OnnxEngine, TorchEngine, score
from finebert.errors import ConfigError, MissingExtraError, ModelError
from finebert.labels import LabelSpace, Outputs
from finebert.model_folder import ModelInfo
from finebert.tokenization import Encoded, Tokenizer

ENGINES = ("auto", "pytorch", "onnx-fp32", "onnx-int8")
ENGINE_FILES = {"onnx-fp32": "model.onnx", "onnx-int8": "model.int8.onnx"}


@dataclass
class Prediction:
    text: str
    label: str  # the most probable of the labels predicted (multi-label: of those over their thresholds)
    confidence: float  # the probability of `label`
    labels: list[str]  # every label predicted: [label] for single-label, those over their thresholds for multi-label
    probabilities: dict[str, float]
    text_pair: str | None = None

    def to_dict(self) -> dict:
        d = {"text": self.text, "label": self.label, "labels": self.labels, "confidence": self.confidence,
             "probabilities": self.probabilities}
        return d if self.text_pair is None else {"text": self.text, "text_pair": self.text_pair, **d}


class Classifier:
    """A fine-tuned text classifier. Load one with `Classifier.load(folder)`; `finebert.train` returns one."""

    def __init__(self, engine, tokenizer: Tokenizer, info: ModelInfo, folder: Path | None = None):
        self.engine = engine
        self.tokenizer = tokenizer
        self.info = info
        self.folder = folder  # where it was loaded from (for the PyTorch model behind an ONNX engine)
        self._torch_model = None

    @property
    def label_space(self) -> LabelSpace:
        return self.info.label_space

    @property
    def labels(self) -> list[str]:
        """Class names; index = class id."""
        return self.info.label_space.names

    @property
    def config(self):
        return self.info.config

    @property
    def metrics(self) -> dict:
        return self.info.metrics

    @property
    def history(self) -> list:
        return self.info.history

    @property
    def pairs(self) -> bool:
        """True for a sentence-pair model."""
        return self.config.text_pair_column is not None

    # -- prediction -------------------------------------------------------------------------------
    def encode(self, texts: list[str], pairs: list[str] | None = None) -> Encoded:
        if self.pairs and pairs is None:
            raise ConfigError("this model classifies sentence pairs; give (text, pair) tuples or pairs=[...]")
        if pairs is not None and not self.pairs:
            raise ConfigError("this model classifies single texts; leave out the second texts")
        return self.tokenizer.encode(texts, pairs, long_text=self.config.long_text, stride=self.config.stride)

    def logits(self, texts: list[str], pairs: list[str] | None = None) -> np.ndarray:
        """Raw logits (N, C) from this classifier's engine."""
        return score(self.engine, self.tokenizer, self.encode(texts, pairs), self.config.eval_batch_size,
                     self.config.chunk_pooling)

    def outputs(self, texts: list[str], pairs: list[str] | None = None) -> Outputs:
        """Probabilities and decisions for a batch of texts: the path every prediction takes."""
        if not texts:
            return Outputs(np.zeros((0, len(self.labels)), np.float32), np.zeros((0, len(self.labels)), bool))
        return self.label_space.postprocess(self.logits(texts, pairs), self.temperature)

    @property
    def temperature(self):
        """This engine's calibration (finebert.json), or None."""
        return (self.info.calibration.get(self.engine.name) or {}).get("temperature")

    def predict_proba(self, texts, pairs: list[str] | None = None) -> np.ndarray:
        """Class probabilities, shape (N, C) in the order of `self.labels`; (C,) for a single text."""
        single, texts, pairs = _batch(texts, pairs, self.pairs)
        probs = self.outputs(texts, pairs).probabilities
        return probs[0] if single else probs

    def predict(self, texts, pairs: list[str] | None = None):
        """Label names: one per text for single-label models, a list per text for multi-label ones;
        a single text (or pair) gives one answer, a list gives a list."""
        single, texts, pairs = _batch(texts, pairs, self.pairs)
        shown = self.label_space.shown(self.outputs(texts, pairs))
        answers = shown.labels if self.label_space.multi_label else shown.label
        return answers[0] if single else answers

    def classify(self, texts, pairs: list[str] | None = None) -> Prediction | list[Prediction]:
        """Label, every predicted label, confidence and every class's probability, for each text."""
        single, texts, pairs = _batch(texts, pairs, self.pairs)
        out = self.outputs(texts, pairs)
        shown = self.label_space.shown(out)
        results = [Prediction(text, shown.label[i], round(float(shown.confidence[i]), 4), shown.labels[i],
                              {name: round(float(v), 4) for name, v in zip(self.labels, out.probabilities[i])},
                              None if pairs is None else pairs[i])
                   for i, text in enumerate(texts)]
        return results[0] if single else results

    def explain(self, texts, pairs: list[str] | None = None, *, label: str | None = None):
        """Word attributions (integrated gradients) towards each text's top label, or `label`:
        an Explanation for a single text, a list for a list (explain.py)."""
        from finebert.explain import explain

        single, texts, pairs = _batch(texts, pairs, self.pairs)
        if label is not None and label not in self.labels:
            raise ConfigError(f"label={label!r} is not one of this model's labels ({', '.join(self.labels)})")
        results = explain(self, texts, pairs, label=label)
        return results[0] if single else results

    def torch_model(self):
        """The PyTorch model: this engine's, or loaded once from the folder (gradients need PyTorch)."""
        if isinstance(self.engine, TorchEngine):
            return self.engine.model
        if self._torch_model is None:
            from finebert.model import load_model

            if self.folder is None:
                raise ModelError("this classifier has no PyTorch model to explain with; load it from its folder")
            self._torch_model = load_model(self.folder, pooling=self.config.pooling)
        return self._torch_model

    # -- saving and loading -----------------------------------------------------------------------
    def save(self, folder: str | Path, *, extra=None) -> Path:
        """Writes the model folder atomically: a failed save leaves any earlier model there untouched.
        `extra(tmp_folder)` may add files (training adds its report)."""
        if not isinstance(self.engine, TorchEngine):
            raise ModelError("only a PyTorch-engine classifier can be saved; load it with engine='pytorch'")
        model = self.engine.model
        try:
            return model_folder.save(folder, model.cpu(), self.tokenizer, self.info, extra)
        finally:
            model.to(self.engine.device)

    @classmethod
    def load(cls, folder: str | Path, *, engine: str = "auto", device=None, engine_file: Path | None = None,
             threads: int | None = None) -> "Classifier":
        """Loads a model folder. engine: "auto" takes the fastest validated one (ONNX int8, then ONNX
        fp32, see `finebert export`), else PyTorch; or name one of "pytorch", "onnx-fp32", "onnx-int8".
        threads: CPU threads the engine computes with (None: every core this process may use)."""
        info = model_folder.read_info(folder)
        folder = Path(folder)
        runner = _make_engine(folder, info, engine, device, engine_file, threads)
        return cls(runner, Tokenizer(folder, info.config.max_length), info, folder)

    def __repr__(self):
        return (f"Classifier(labels={self.labels}, problem_type={self.label_space.problem_type!r}, "
                f"backbone={self.config.model!r}, engine={self.engine.name!r})")


def _batch(texts, pairs, pair_model: bool):
    """(single, texts, pairs): a string, a list of strings, or for a pair model also a (text, pair) tuple
    or a list of them."""
    is_pair = lambda t: isinstance(t, tuple) and len(t) == 2 and all(isinstance(s, str) for s in t)  # noqa: E731
    if isinstance(texts, str) or (pair_model and is_pair(texts)):
        single, texts = True, [texts]
        pairs = [pairs] if isinstance(pairs, str) else pairs
    else:
        single, texts = False, list(texts)
    if pair_model and texts and all(is_pair(t) for t in texts):
        texts, pairs = [t[0] for t in texts], [t[1] for t in texts]
    if pairs is not None and len(pairs) != len(texts):
        raise ConfigError(f"{len(texts)} texts but {len(pairs)} second texts; give one pair per text")
    return single, texts, None if pairs is None else list(pairs)


def _make_engine(folder: Path, info: ModelInfo, engine: str, device, engine_file: Path | None, threads: int | None):
    if engine not in ENGINES:
        raise ConfigError(f"engine={engine!r} is invalid: use one of {', '.join(ENGINES)}")
    if engine == "auto":
        engine = info.default_engine
        if engine != "pytorch" and (not (folder / ENGINE_FILES[engine]).is_file() or not onnx_available()):
            engine = "pytorch"  # the ONNX file or onnxruntime is missing: still works, just slower
    if engine == "pytorch":
        from finebert.model import load_model

        return TorchEngine(load_model(folder, pooling=info.config.pooling), device, threads)
    if not onnx_available():
        raise MissingExtraError("onnxruntime", "onnx")
    path = engine_file or folder / ENGINE_FILES[engine]
    if not path.is_file():
        raise ModelError(f"{folder}: no {path.name}; create it with: finebert export {folder}")
    return OnnxEngine(path, engine, threads)


def onnx_available() -> bool:
    """True when the [onnx] extra (onnxruntime) is installed."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True
