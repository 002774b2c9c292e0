"""Calibration: temperature scaling, so that of the predictions made with confidence 0.95 about 95% are right.

    T = fit_temperature(space, logits, y)          # on validation data; one T, or one per label (multi-label)
    space.postprocess(logits, temperature=T)       # every probability finebert shows is divided by T first
    figures(space, logits, y, T)                   # ECE (15 equal-width bins) and log loss, before and after

Dividing logits by a positive T never changes a decision (argmax, or a logit above its threshold), so
accuracy is unchanged. Each engine gets its own T: int8 logits are not PyTorch's (finebert export).
"""

from __future__ import annotations

import numpy as np

from finebert.labels import LabelSpace

BINS = 15


def fit_temperature(space: LabelSpace, logits: np.ndarray, y: np.ndarray) -> float | list[float]:
    """The T (> 0) minimising the log loss of the calibrated probabilities; one per label for multi-label."""
    from scipy.optimize import minimize_scalar

    logits = np.asarray(logits, dtype=np.float64)

    def best(loss) -> float:  # search log T in [-3, 3]: T from 0.05 to 20
        result = minimize_scalar(loss, bounds=(-3.0, 3.0), method="bounded", options={"xatol": 1e-4})
        return round(float(np.exp(result.x)), 4)

    if space.multi_label:
        return [best(lambda t, c=c: _bce(logits[:, c] / np.exp(t), y[:, c])) for c in range(len(space))]
    return best(lambda t: _cross_entropy(logits / np.exp(t), y))


def calibrate(space: LabelSpace, logits: np.ndarray, y: np.ndarray) -> dict:
    """What finebert.json keeps per engine: the temperature(s) fitted on (logits, y) and the figures."""
    temperature = fit_temperature(space, logits, y)
    return {"temperature": temperature, "examples": len(y), **figures(space, logits, y, temperature)}


def figures(space: LabelSpace, logits: np.ndarray, y: np.ndarray, temperature=None) -> dict:
    """ECE and log loss of the raw probabilities ("before") and of the calibrated ones ("after")."""
    out = {}
    for when, t in (("before", None), ("after", temperature)):
        probs = space.postprocess(logits, t).probabilities
        out[f"ece_{when}"] = round(ece(space, probs, y), 4)
        out[f"log_loss_{when}"] = round(log_loss(space, probs, y), 4)
    return out


def ece(space: LabelSpace, probs: np.ndarray, y: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error over `bins` equal-width confidence bins: the mean |accuracy - confidence|,
    weighted by the share of predictions in each bin. Single-label: the top class's probability against
    whether it is right; multi-label: every label's probability against whether the label is there."""
    confidence, correct = reliability_points(space, probs, y)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total)


def reliability_points(space: LabelSpace, probs: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, correct) pairs that ECE and the reliability diagram are made of."""
    if space.multi_label:
        return probs.ravel(), y.ravel().astype(float)
    return probs.max(axis=1), (probs.argmax(axis=1) == y).astype(float)


def log_loss(space: LabelSpace, probs: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(probs.astype(np.float64), 1e-12, 1 - 1e-12)
    if space.multi_label:
        return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())
    return float(-np.log(p[np.arange(len(y)), y]).mean())


def _cross_entropy(z: np.ndarray, y: np.ndarray) -> float:
    z = z - z.max(axis=1, keepdims=True)
    return float((np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]).mean())


def _bce(z: np.ndarray, y: np.ndarray) -> float:
    return float((np.logaddexp(0, z) - y * z).mean())  # -[y log s(z) + (1-y) log(1 - s(z))]


def recalibrate(folder, data, *, text_column: str | None = None, label_column: str | None = None):
    """`finebert calibrate`: fits every engine of a model folder again on labelled `data`; returns the
    updated ModelInfo, also saved in finebert.json."""
    from pathlib import Path

    from finebert import model_folder
    from finebert.data import read_dataset
    from finebert.inference import ENGINE_FILES, Classifier, onnx_available

    folder = Path(folder)
    info = model_folder.read_info(folder)
    config = info.config
    dataset = read_dataset(data, text_column=text_column, label_column=label_column,
                           text_pair_column=config.text_pair_column, model_columns=(config.text_column, config.label_column))
    y = info.label_space.encode(dataset.labels, dataset.source)
    engines = ["pytorch"] + [e for e, f in ENGINE_FILES.items() if (folder / f).is_file() and onnx_available()]
    for engine in engines:
        logits = Classifier.load(folder, engine=engine).logits(dataset.texts, dataset.pairs)
        info.calibration[engine] = calibrate(info.label_space, logits, y) | {"data": str(Path(data).resolve())}
    model_folder.write_info(folder, info)
    return info
