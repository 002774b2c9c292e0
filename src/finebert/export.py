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

Where the whole graph in int8 fails that guard, export tries int8 graphs that stay closer to fp32, in turn
(quantization.candidates): the graph with its activation outliers smoothed into the weights, then that graph with its
1, 2, 4, ... most sensitive matrix products in fp32. The first that passes becomes the int8 engine; if none does,
the whole-graph int8 file is kept (usable by name, not by default). finebert.json records each try.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import warnings
from pathlib import Path

from finebert import model_folder, quantization
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
        judge = _Judge(folder, info.label_space, data, y, measure, reference, max_loss, max_prob_diff)
        engines, calibration = {}, {}
        engines["pytorch"], calibration["pytorch"] = judge("pytorch")
        engines["onnx-fp32"], calibration["onnx-fp32"] = judge("onnx-fp32", fp32)
        if int8:
            engines["onnx-int8"], calibration["onnx-int8"] = _guarded_int8(fp32, tmp, judge, reference, data)
            built.append("onnx-int8")
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


class _Judge:
    """judge(name, file) -> (figures, calibration) of one engine on the validation data: its metrics and ECE, and
    for an ONNX engine the points lost and the largest probability change against PyTorch (judged first), and
    whether that keeps it close enough to be trusted (`validated`)."""

    def __init__(self, folder: Path, space, data, y, measure: str, reference: Classifier, max_loss: float,
                 max_prob_diff: float):
        self.folder, self.space, self.data, self.y, self.measure = folder, space, data, y, measure
        self.reference, self.max_loss, self.max_prob_diff = reference, max_loss, max_prob_diff
        self.base = self.base_probs = None

    def __call__(self, name: str, file: Path | None = None):
        clf = self.reference if name == "pytorch" else Classifier.load(self.folder, engine=name, engine_file=file)
        z = clf.logits(self.data.texts, self.data.pairs)  # (N, C)
        calibration = calibrate(self.space, z, self.y)
        probs = self.space.postprocess(z, calibration["temperature"]).probabilities  # (N, C)
        e = metrics(self.space, self.space.postprocess(z), self.y)
        e["ece"] = calibration["ece_after"]
        if name == "pytorch":
            self.base, self.base_probs = e, probs
            return e, calibration
        e.update(file=ENGINE_FILES[name], loss_points=round(100 * (self.base[self.measure] - e[self.measure]), 2),
                 max_prob_diff=round(float(abs(probs - self.base_probs).max()), 4))
        # int8 BERT models can collapse: an engine is trusted only if its score, its probabilities
        # and its calibration all stay close to PyTorch's
        e["validated"] = (e["loss_points"] <= self.max_loss and e["max_prob_diff"] <= self.max_prob_diff
                          and e["ece"] <= self.base["ece"] + ECE_SLACK)
        return e, calibration


def _guarded_int8(fp32: Path, tmp: Path, judge: _Judge, reference: Classifier, data):
    """Judges quantization.candidates in turn and leaves the first that passes (else the whole-graph one) at
    tmp/model.int8.onnx: (its figures, with how it was made and every try, its calibration)."""
    target = tmp / ENGINE_FILES["onnx-int8"]
    work = tmp / "int8"
    work.mkdir()
    tries, chosen = [], None
    for how, path in quantization.candidates(fp32, work, _sample_batches(reference, data)):
        e, cal = judge("onnx-int8", path)
        tries.append({"smoothing": how["smoothing"], "fp32_nodes": len(how["fp32_nodes"]),
                      "loss_points": e["loss_points"], "max_prob_diff": e["max_prob_diff"], "validated": e["validated"]})
        if e["validated"] or chosen is None:  # the first graph (the whole one) is kept if nothing passes
            shutil.copyfile(path, target)
            chosen = e | how, cal
        if e["validated"]:
            break
    figures, calibration = chosen
    figures["tries"] = tries
    return figures, calibration


def _sample_batches(clf: Classifier, data) -> list[dict]:
    """Padded model inputs for the first quantization.SAMPLE validation texts, in batches of similar length."""
    from finebert.engines import length_batches, padded

    n = quantization.SAMPLE
    encoded = clf.encode(data.texts[:n], None if data.pairs is None else data.pairs[:n])
    batches = length_batches(encoded.chunk_lengths(), clf.config.eval_batch_size)
    return [padded(clf.tokenizer, encoded, idx) for idx in batches]


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


