"""ONNX engines against PyTorch (the SetFit-style parity test), engine choice, and the export CLI."""

import json
import shutil

import numpy as np
import onnx
import pytest

from finebert.errors import ModelError
from finebert.engines import score
from finebert.inference import Classifier

TEXTS = ["I really enjoyed the movie!", "a dull , lifeless and overlong mess", "ok", "the acting " * 60]


def test_onnx_fp32_matches_pytorch_logits(exported):
    folder, _ = exported
    torch_clf = Classifier.load(folder, engine="pytorch")
    onnx_clf = Classifier.load(folder, engine="onnx-fp32")
    a = score(torch_clf.engine, torch_clf.tokenizer, torch_clf.encode(TEXTS), 3)
    b = score(onnx_clf.engine, onnx_clf.tokenizer, onnx_clf.encode(TEXTS), 3)
    assert np.allclose(a, b, atol=1e-4), np.abs(a - b).max()


def test_engines_keep_residual_add_and_layer_norm_apart(exported, tmp_path):
    """ONNX Runtime's fused SkipLayerNormalization is slow on CPUs (engines.SLOW_FUSIONS): neither the
    exported files nor the graph a session runs may hold it; a session left alone would fuse it."""
    import onnx
    import onnxruntime as ort

    from finebert.engines import SLOW_FUSIONS

    folder, _ = exported

    def ops_run(path, disabled):
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = str(tmp_path / f"run-{len(disabled)}-{path.name}")
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"], disabled_optimizers=disabled)
        return {node.op_type for node in onnx.load(options.optimized_model_filepath).graph.node}

    for name in ("model.onnx", "model.int8.onnx"):
        saved = {node.op_type for node in onnx.load(folder / name).graph.node}
        assert "LayerNormalization" in saved and "SkipLayerNormalization" not in saved, name
        assert "SkipLayerNormalization" not in ops_run(folder / name, SLOW_FUSIONS), name
        assert "SkipLayerNormalization" in ops_run(folder / name, []), name


def test_int8_is_validated_recorded_and_chosen_by_default(exported):
    folder, info = exported
    engines = info.engines
    assert engines["validation"]["examples"] == 40  # the 10% held out of the 400 training rows
    assert abs(engines["onnx-fp32"]["accuracy"] - engines["pytorch"]["accuracy"]) <= 0.026  # at most 1 of 40
    on_disk = json.loads((folder / "finebert.json").read_text())
    assert on_disk["engines"] == engines
    expected = "onnx-int8" if engines["onnx-int8"]["validated"] else "onnx-fp32"
    assert info.default_engine == expected and Classifier.load(folder).engine.name == expected
    int8 = Classifier.load(folder, engine="onnx-int8").predict_proba(TEXTS)
    fp32 = Classifier.load(folder, engine="pytorch").predict_proba(TEXTS)
    assert np.abs(int8 - fp32).max() < 0.1


def test_strict_threshold_keeps_fp32_as_default(exported, tmp_path):
    from finebert.export import export

    folder, _ = exported
    copy = tmp_path / "m"
    shutil.copytree(folder, copy)
    info = export(copy, max_loss=-1.0)  # nothing may lose -1 points: neither ONNX engine qualifies
    assert info.default_engine == "pytorch"
    assert Classifier.load(copy).engine.name == "pytorch"
    # int8 was tried whole, smoothed, then smoothed with 1, 2, 4, ... products in fp32; the whole graph is kept
    tries = info.engines["onnx-int8"]["tries"]
    assert [(t["smoothing"], t["fp32_nodes"]) for t in tries[:4]] == [(None, 0), (0.8, 0), (0.8, 1), (0.8, 2)]
    assert not any(t["validated"] for t in tries) and len(tries) >= 4
    ops = [node.op_type for node in onnx.load(copy / "model.int8.onnx").graph.node]
    assert "MatMul" not in ops and not any(node.name.endswith("/smooth") for node in onnx.load(copy / "model.int8.onnx").graph.node)


def test_a_guard_that_whole_int8_fails_gets_the_first_candidate_that_passes(exported, tmp_path):
    """With the probability limit set between the whole graph's change and the first candidate that does better,
    export stops at that candidate and makes it the int8 engine."""
    from finebert.export import export

    folder, _ = exported
    tries = export(shutil.copytree(folder, tmp_path / "strict"), max_loss=-1.0).engines["onnx-int8"]["tries"]
    diffs = [t["max_prob_diff"] for t in tries]
    k = next((k for k in range(1, len(diffs)) if diffs[k] < min(diffs[:k]) - 1e-3), None)
    assert k is not None, tries  # smoothing, or products in fp32, brought int8 closer to PyTorch
    limit = (diffs[k] + min(diffs[:k])) / 2
    again = export(shutil.copytree(folder, tmp_path / "m"), max_loss=100.0, max_prob_diff=limit)
    e = again.engines["onnx-int8"]
    assert [(t["smoothing"], t["fp32_nodes"], t["max_prob_diff"]) for t in e["tries"]] == [
        (t["smoothing"], t["fp32_nodes"], t["max_prob_diff"]) for t in tries[:k + 1]]
    assert e["validated"] and again.default_engine == "onnx-int8"
    assert e["smoothing"] == tries[k]["smoothing"] and len(e["fp32_nodes"]) == tries[k]["fp32_nodes"]
    on_disk = onnx.load(tmp_path / "m" / "model.int8.onnx").graph.node
    assert sum(n.name.endswith("/smooth") for n in on_disk) > 0 and e["max_prob_diff"] <= limit


def test_smoothing_keeps_the_fp32_function_and_flattens_activation_outliers(exported, tmp_path):
    import onnx

    from finebert import quantization
    from finebert.export import _sample_batches, _validation_data

    folder, _ = exported
    clf = Classifier.load(folder, engine="pytorch")
    batches = _sample_batches(clf, _validation_data(clf, None, None, None))
    quantization.smooth(folder / "model.onnx", tmp_path / "smoothed.onnx", batches)
    plain = Classifier.load(folder, engine="onnx-fp32").logits(TEXTS)
    smoothed = Classifier.load(folder, engine="onnx-fp32", engine_file=tmp_path / "smoothed.onnx").logits(TEXTS)
    assert np.allclose(plain, smoothed, atol=1e-4), np.abs(plain - smoothed).max()

    model, after = onnx.load(folder / "model.onnx"), onnx.load(tmp_path / "smoothed.onnx")
    inputs = list(dict.fromkeys(n.input[0] for n in quantization._products(model)))
    assert sum(n.name.endswith("/smooth") for n in after.graph.node) == len(inputs) > 0

    def spread(graph, names):  # per tensor: the largest channel peak over the median channel peak
        values = next(quantization._activations(graph, batches[-1:], names))
        return [float(np.abs(values[x]).reshape(-1, values[x].shape[-1]).max(0).max()
                      / np.median(np.abs(values[x]).reshape(-1, values[x].shape[-1]).max(0))) for x in names]

    assert np.mean(spread(after, [f"{x}/smoothed" for x in inputs])) < np.mean(spread(model, inputs))


def test_the_simulated_activation_rounding_is_onnx_runtimes():
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from finebert.quantization import _dynamic_uint8

    graph = helper.make_graph(
        [helper.make_node("DynamicQuantizeLinear", ["x"], ["q", "scale", "zero"]),
         helper.make_node("DequantizeLinear", ["q", "scale", "zero"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, None])])
    session = ort.InferenceSession(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).normal(size=(64, 384)).astype(np.float32)
    x[:, 7] *= 40  # an outlier channel, as layer-norm outputs have
    for sample in (x, np.abs(x), -np.abs(x)):
        assert np.allclose(_dynamic_uint8(sample), session.run(["y"], {"x": sample})[0], atol=1e-5)


def test_missing_engine_file_names_the_fix(trained):
    _, folder = trained
    with pytest.raises(ModelError, match="no model.int8.onnx; create it with: finebert export"):
        Classifier.load(folder, engine="onnx-int8")


def test_without_onnxruntime_the_message_names_the_install_command(trained, exported, monkeypatch):
    import sys

    from finebert.errors import MissingExtraError
    from finebert.export import export

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if the [onnx] extra were not installed
    with pytest.raises(MissingExtraError, match=r"pip install 'finebert\[onnx\]'"):
        export(trained[1])
    with pytest.raises(MissingExtraError, match=r"pip install 'finebert\[onnx\]'"):
        Classifier.load(exported[0], engine="onnx-int8")
    assert Classifier.load(exported[0]).engine.name == "pytorch"  # auto still works, just slower
    with pytest.raises(ModelError, match="not a finebert model"):  # a wrong folder is said first, whatever is missing
        export(exported[0].parent)
