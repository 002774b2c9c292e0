"""Calibration: temperature scaling fitted per engine, applied wherever a probability is shown."""

import json
import shutil

import numpy as np

from conftest import cli, sst2_rows, write_csv
from finebert.calibration import ece, fit_temperature
from finebert.labels import LabelSpace



def synthetic(n=4000, classes=3, seed=0):
    """Logits of a perfectly calibrated model (labels drawn from its own softmax)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2.0, size=(n, classes))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = np.array([rng.choice(classes, p=row) for row in p])
    return logits, y


def test_temperature_undoes_overconfidence():
    space = LabelSpace.from_data(["a", "b", "c"])
    logits, y = synthetic()
    assert abs(fit_temperature(space, logits, y) - 1.0) < 0.1  # already calibrated: T stays near 1
    assert abs(fit_temperature(space, 3 * logits, y) - 3.0) < 0.3  # 3x overconfident: T near 3
    raw = ece(space, space.postprocess(3 * logits).probabilities, y)
    fixed = ece(space, space.postprocess(3 * logits, 3.0).probabilities, y)
    assert raw > 0.1 and fixed < 0.03


def test_ece_by_hand():
    space = LabelSpace.from_data(["a", "b"])
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.2, 0.8], [0.3, 0.7]])
    y = np.array([0, 1, 1, 1])
    # bins: 0.9 (2 rows, accuracy 0.5), 0.8 (1 row, right), 0.7 (1 row, right)
    expected = 0.5 * abs(0.5 - 0.9) + 0.25 * abs(1 - 0.8) + 0.25 * abs(1 - 0.7)
    assert abs(ece(space, probs, y) - expected) < 1e-9


def test_multi_label_gets_one_temperature_per_label():
    space = LabelSpace.from_data(["a", "b"], multi_label=True)
    rng = np.random.default_rng(1)
    z = rng.normal(0, 2, size=(3000, 2))
    y = (rng.random((3000, 2)) < 1 / (1 + np.exp(-z))).astype(np.float32)
    t = fit_temperature(space, z * np.array([1.0, 4.0]), y)
    assert abs(t[0] - 1) < 0.15 and abs(t[1] - 4) < 0.6


def test_training_calibrates_and_every_probability_uses_it(trained):
    clf, folder = trained
    saved = json.loads((folder / "finebert.json").read_text())["calibration"]["pytorch"]
    assert saved["temperature"] > 0 and saved["examples"] == 40
    assert saved["log_loss_after"] <= saved["log_loss_before"]  # what the fit minimises; ECE on 40 rows is noise
    texts = ["a delight", "a bore", "fine"]
    expected = clf.label_space.postprocess(clf.logits(texts), saved["temperature"]).probabilities
    assert np.allclose(clf.predict_proba(texts), expected, atol=1e-6)
    if abs(saved["temperature"] - 1) > 0.05:
        assert not np.allclose(clf.label_space.postprocess(clf.logits(texts)).probabilities, expected, atol=1e-3)


def test_export_calibrates_each_engine_and_checks_probabilities(exported):
    folder, info = exported
    for name in ("pytorch", "onnx-fp32", "onnx-int8"):
        assert info.calibration[name]["temperature"] > 0
        assert "ece" in info.engines[name]
    assert info.engines["onnx-fp32"]["max_prob_diff"] < 0.01  # fp32 ONNX is PyTorch to rounding
    assert 0 <= info.engines["onnx-int8"]["max_prob_diff"] < 0.2
    assert info.engines["validation"]["max_prob_diff"] == 0.1


def test_calibrate_command_and_evaluate_output(exported, tmp_path):
    folder, _ = exported
    copy = tmp_path / "m"
    shutil.copytree(folder, copy)
    dev = write_csv(tmp_path / "dev.csv", ["review", "sentiment"],  # SST-2 dev, labelled as the model was trained
                    [[t, "positive" if y == "1" else "negative"] for t, y in sst2_rows(872, split="dev")])
    out = cli("calibrate", copy, dev, check=True).stdout
    assert out.count("temperature") == 3 and "ECE" in out
    info = json.loads((copy / "finebert.json").read_text())["calibration"]
    assert {"pytorch", "onnx-fp32", "onnx-int8"} <= set(info) and info["onnx-int8"]["examples"] == 872
    report = json.loads(cli("evaluate", copy, dev, "--json", "--engine", "onnx-int8", check=True).stdout)
    assert report["calibration"]["temperature"] == info["onnx-int8"]["temperature"]
    assert report["calibration"]["ece_after"] <= report["calibration"]["ece_before"] + 0.01
    table = cli("evaluate", copy, dev, check=True).stdout
    default = json.loads((copy / "finebert.json").read_text())["default_engine"]
    assert f"calibration ({default}): ECE" in table
