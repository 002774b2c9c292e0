"""ONNX engines against PyTorch (the SetFit-style parity test), engine choice, and the export CLI."""

import json
import shutil

import numpy as np
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
