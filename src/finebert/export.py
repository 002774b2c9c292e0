"""Stage 7, export: ONNX Runtime engines for fast CPU inference, validated against PyTorch.

    model.onnx        fp32, ONNX Runtime's BERT graph optimizations (fused attention, GELU; residual
                      Add and LayerNorm left apart: engines.SLOW_FUSIONS)
    model.int8.onnx   the same with dynamically quantized int8 weights

int8 models can collapse in accuracy (onnxruntime issue 9599), so each engine is scored on labelled
data (by default the validation data used in training) and int8 becomes the default engine only
if it loses at most `max_loss` points of the task's score against PyTorch fp32 (accuracy; macro-F1
for multi-label models), its calibrated probabilities differ from PyTorch's by at most `max_prob_diff`,
and its ECE stays within ECE_SLACK of PyTorch's. Each engine gets its own temperature (calibration.py),
fitted on the same data. The figures go to finebert.json.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from pathlib import Path

from finebert import model_folder
from finebert.calibration import calibrate
from finebert.errors import DataError, MissingExtraError
from finebert.evaluation import metrics
from finebert.inference import ENGINE_FILES, Classifier
from finebert.tokenization import Tokenizer

ECE_SLACK = 0.02  # an engine's calibrated ECE may exceed PyTorch's by at most this much


def export(folder: str | Path, *, int8: bool = True, validate: str | Path | None = None, max_loss: float = 0.5,
           max_prob_diff: float = 0.1, text_column: str | None = None, label_column: str | None = None):
    """Writes the ONNX engines into a model folder, validates and calibrates each one, and returns the
    updated ModelInfo (engines, default engine, calibration), also saved in finebert.json."""
    folder = Path(folder)
    info = model_folder.read_info(folder)  # a folder that is not a model: said first, whatever is installed
    _require_onnx()
    reference = Classifier.load(folder, engine="pytorch")
    data = _validation_data(reference, validate, text_column, label_column)
    y = info.label_space.encode(data.labels, data.source)
    measure = "macro_f1" if info.label_space.multi_label else "accuracy"

    with tempfile.TemporaryDirectory(dir=folder, prefix=".export-") as tmp, _quiet_exporters():
        tmp = Path(tmp)
        raw, fp32 = tmp / "raw.onnx", tmp / ENGINE_FILES["onnx-fp32"]
        _to_onnx(folder, info, raw)
        _optimize(raw, fp32, reference.engine.model.encoder.config)
        built = ["onnx-fp32"]
        if int8:
            _quantize(fp32, tmp / ENGINE_FILES["onnx-int8"])
            built.append("onnx-int8")

        runners = {"pytorch": reference} | {
            name: Classifier.load(folder, engine=name, engine_file=tmp / ENGINE_FILES[name]) for name in built}
        logits = {name: clf.logits(data.texts, data.pairs) for name, clf in runners.items()}
        calibration = {name: calibrate(info.label_space, z, y) for name, z in logits.items()}
        probs = {name: info.label_space.postprocess(z, calibration[name]["temperature"]).probabilities
                 for name, z in logits.items()}
        engines = {}
        for name, z in logits.items():
            engines[name] = metrics(info.label_space, info.label_space.postprocess(z), y)
            engines[name]["ece"] = calibration[name]["ece_after"]
        base = engines["pytorch"]
        for name in built:
            e = engines[name]
            e.update(file=ENGINE_FILES[name], loss_points=round(100 * (base[measure] - e[measure]), 2),
                     max_prob_diff=round(float(abs(probs[name] - probs["pytorch"]).max()), 4))
            # int8 BERT models can collapse: an engine is trusted only if its score, its probabilities
            # and its calibration all stay close to PyTorch's
            e["validated"] = (e["loss_points"] <= max_loss and e["max_prob_diff"] <= max_prob_diff
                              and e["ece"] <= base["ece"] + ECE_SLACK)
        engines["validation"] = {"examples": len(y), "measure": measure, "max_loss_points": max_loss,
                                 "max_prob_diff": max_prob_diff, "ece_slack": ECE_SLACK}
        default = next((n for n in ("onnx-int8", "onnx-fp32") if engines.get(n, {}).get("validated")), "pytorch")

        for name in built:
            os.replace(tmp / ENGINE_FILES[name], folder / ENGINE_FILES[name])
    if not int8 and (folder / ENGINE_FILES["onnx-int8"]).exists():
        (folder / ENGINE_FILES["onnx-int8"]).unlink()  # stale: it belonged to the previous weights
        calibration.pop("onnx-int8", None)
    info.engines, info.default_engine = engines, default
    info.calibration = {k: v for k, v in (info.calibration | calibration).items() if k == "pytorch" or k in built}
    model_folder.write_info(folder, info)
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


def _to_onnx(folder: Path, info, path: Path) -> None:
    """torch.onnx export with dynamic batch and sequence axes; eager attention traces to plain ops."""
    import torch

    from finebert.model import load_model

    model = load_model(folder, pooling=info.config.pooling, attention="eager")
    sample = Tokenizer(folder, info.config.max_length)  # ids of this vocabulary: any family's
    inputs = sample.pad(sample.encode(["the movie was absolutely fantastic!", "great"]).ids)
    ids, mask, types = (torch.from_numpy(inputs[k]) for k in ("input_ids", "attention_mask", "token_type_ids"))  # (2, T)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes = {name: {0: "batch", 1: "sequence"} for name in names} | {"logits": {0: "batch"}}
    with torch.no_grad():
        torch.onnx.export(model, (ids, mask, types), str(path), input_names=names, output_names=["logits"],
                          opset_version=17, dynamo=False, dynamic_axes=axes)


def _optimize(source: Path, target: Path, config) -> None:
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    model_type = "bert" if config.model_type == "bert" else config.model_type
    try:
        options = FusionOptions(model_type)
        options.enable_skip_layer_norm = options.enable_bias_skip_layer_norm = False  # slow on CPU: engines.SLOW_FUSIONS
        optimized = optimize_model(str(source), model_type=model_type, num_heads=config.num_attention_heads,
                                   hidden_size=config.hidden_size, optimization_options=options)
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


def _validation_data(clf: Classifier, validate, text_column, label_column):
    """Labelled texts to validate on: `validate`, else the validation file used in training, else the
    rows that training held out of its training file (recomputed: same seed, same rows)."""
    from finebert.data import read_dataset, validation_split

    config, sources = clf.config, clf.info.data or {}
    path = validate or sources.get("validation") or sources.get("train")
    if path is None:
        raise DataError("this model's training data was not a file; pass --validate FILE with labelled data")
    data = read_dataset(path, text_column=text_column, label_column=label_column, text_pair_column=config.text_pair_column,
                        model_columns=(config.text_column, config.label_column))
    if validate or sources.get("validation"):
        return data
    y = clf.label_space.encode(data.labels, data.source)
    _, held_out = validation_split(y, config.validation_split, config.validation_max_rows, config.seed)
    if not held_out:
        raise DataError(f"{data.source}: too small to have held out validation rows; pass --validate FILE")
    return data.subset(held_out)


