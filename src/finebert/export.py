"""Stage 7, export: ONNX Runtime engines for fast CPU inference, validated against PyTorch.

    model.onnx        fp32, ONNX Runtime's BERT graph optimizations (fused attention, LayerNorm, GELU)
    model.int8.onnx   the same with dynamically quantized int8 weights

int8 models can collapse in accuracy (onnxruntime issue 9599), so each engine is scored on labelled
data (by default the validation data used in training) and int8 becomes the default engine only
if it loses at most `max_loss` accuracy points against PyTorch fp32. The figures go to finebert.json.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from finebert.errors import DataError, MissingExtraError
from finebert.inference import FINEBERT_FILE, Classifier, read_model_info

ENGINE_FILES = {"onnx-fp32": "model.onnx", "onnx-int8": "model.int8.onnx"}


def export(folder: str | Path, *, int8: bool = True, validate: str | Path | None = None, max_loss: float = 0.5,
           text_column: str | None = None, label_column: str | None = None) -> dict:
    """Writes the ONNX engines into a model folder and returns the `engines` record saved in finebert.json."""
    _require_onnx()
    folder = Path(folder)
    info = read_model_info(folder)
    reference = Classifier.load(folder, engine="pytorch")
    texts, y = _validation_data(reference, info, validate, text_column, label_column)

    with tempfile.TemporaryDirectory(dir=folder, prefix=".export-") as tmp, _quiet_exporters():
        tmp = Path(tmp)
        raw, fp32 = tmp / "raw.onnx", tmp / ENGINE_FILES["onnx-fp32"]
        _to_onnx(folder, info, raw)
        _optimize(raw, fp32, reference.engine.model.encoder.config)
        built = ["onnx-fp32"]
        if int8:
            _quantize(fp32, tmp / ENGINE_FILES["onnx-int8"])
            built.append("onnx-int8")

        engines = {"pytorch": {"accuracy": _accuracy(reference, texts, y)}}
        for name in built:
            candidate = Classifier.load(folder, engine=name, engine_file=tmp / ENGINE_FILES[name])
            engines[name] = {"file": ENGINE_FILES[name], "accuracy": _accuracy(candidate, texts, y)}
        base = engines["pytorch"]["accuracy"]
        for name in built:
            loss = round(100 * (base - engines[name]["accuracy"]), 2)
            engines[name].update(loss_points=loss, validated=loss <= max_loss)
        engines["validation"] = {"examples": len(texts), "max_loss_points": max_loss}
        default = next((n for n in ("onnx-int8", "onnx-fp32") if engines.get(n, {}).get("validated")), "pytorch")

        for name in built:
            os.replace(tmp / ENGINE_FILES[name], folder / ENGINE_FILES[name])
    if not int8 and (folder / ENGINE_FILES["onnx-int8"]).exists():
        (folder / ENGINE_FILES["onnx-int8"]).unlink()  # stale: it belonged to the previous weights
    info.update(engines=engines, default_engine=default)
    _write_json(folder / FINEBERT_FILE, info)
    return info


@contextlib.contextmanager
def _quiet_exporters():
    """The exporters warn about things checked here anyway (traced branches: the parity test; quantization: validation)."""
    import logging

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def _require_onnx():
    for module, package in (("onnx", "onnx"), ("onnxruntime", "onnxruntime")):
        try:
            __import__(module)
        except ImportError:
            raise MissingExtraError(package, "onnx") from None


def _to_onnx(folder: Path, info: dict, path: Path) -> None:
    """torch.onnx export with dynamic batch and sequence axes; eager attention traces to plain ops."""
    import torch

    from finebert.model import load_model

    model = load_model(folder, pooling=info.get("pooling", "cls"), attention="eager")
    ids = torch.tensor([[101, 1996, 3185, 2001, 102], [101, 2307, 102, 0, 0]])  # (2, 5)
    mask = (ids != 0).long()
    with torch.no_grad():
        torch.onnx.export(model, (ids, mask), str(path), input_names=["input_ids", "attention_mask"],
                          output_names=["logits"], opset_version=17, dynamo=False,
                          dynamic_axes={"input_ids": {0: "batch", 1: "sequence"},
                                        "attention_mask": {0: "batch", 1: "sequence"}, "logits": {0: "batch"}})


def _optimize(source: Path, target: Path, config) -> None:
    from onnxruntime.transformers.optimizer import optimize_model

    model_type = "bert" if config.model_type == "bert" else config.model_type
    try:
        optimized = optimize_model(str(source), model_type=model_type, num_heads=config.num_attention_heads,
                                   hidden_size=config.hidden_size)
    except (KeyError, AttributeError):  # a family ONNX Runtime's optimizer does not know: plain graph
        source.replace(target)
        return
    optimized.save_model_to_file(str(target))


def _quantize(source: Path, target: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Fused contrib ops (Attention, SkipLayerNorm) defeat shape inference: tell it activations are float.
    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


def _validation_data(clf: Classifier, info: dict, validate, text_column, label_column):
    """Labelled texts to validate on: `validate`, else the validation file used in training, else the
    split that training held out of its training file (recomputed: same seed, same rows)."""
    from finebert.data import read_dataset, stratified_split

    config = clf.config
    sources = info.get("data") or {}
    path = validate or sources.get("validation") or sources.get("train")
    if path is None:
        raise DataError("this model's training data was not a file; pass --validate FILE with labelled data")
    data = read_dataset(path, text_column=text_column or config.text_column,
                        label_column=label_column or config.label_column)
    y = np.array(clf.class_ids(data.labels, data.source))
    if validate or sources.get("validation"):
        return data.texts, y
    _, held_out = stratified_split(y.tolist(), config.validation_split, config.validation_max_rows, config.seed)
    if not held_out:
        raise DataError(f"{data.source}: too small to have held out validation rows; pass --validate FILE")
    return [data.texts[i] for i in held_out], y[held_out]


def _accuracy(clf: Classifier, texts: list[str], y: np.ndarray) -> float:
    return round(float((clf.predict_proba(texts).argmax(1) == y).mean()), 4)


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
