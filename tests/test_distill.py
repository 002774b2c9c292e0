"""`finebert distill` with real tiny models: the student's folder, the guard, unlabelled texts, every task shape,
another vocabulary, and resume after SIGKILL."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import cli, sst2_rows, write_csv


@pytest.fixture(scope="module")
def sst2_csv(tmp_path_factory):
    return write_csv(tmp_path_factory.mktemp("distill") / "sst2.csv", ["sentence", "label"],
                     [list(row) for row in sst2_rows(400)])


@pytest.fixture(scope="module")
def bert_teacher(tmp_path_factory, sst2_csv, tiny_backbone):
    """A tiny 2-layer BERT teacher with [CLS] pooling: a folder Hugging Face's auto classes load."""
    folder = tmp_path_factory.mktemp("teacher") / "teacher"
    cli("train", sst2_csv, "-o", folder, "--model", tiny_backbone, "--recipe", "fine-tune", "--pooling", "cls",
        "--epochs", "2", "--max-length", "32", "-q", check=True)
    return folder


def record(folder) -> dict:
    return json.loads((folder / "finebert.json").read_text())["metrics"]["distillation"]


def test_a_layer_student_is_an_ordinary_folder_that_hf_loads_where_the_teacher_does(tmp_path, sst2_csv, bert_teacher):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from finebert.inference import Classifier

    result = cli("distill", bert_teacher, sst2_csv, "-o", tmp_path / "student", "--epochs", "1", "--force", "-q",
                 check=True)
    assert result.stdout.startswith(f"saved {tmp_path / 'student'} (validation accuracy ")
    d = record(tmp_path / "student")
    assert d["layer_map"] == [0] and d["teacher"] == str(bert_teacher.resolve()) and d["unlabelled_rows"] == 0
    assert d["points_lost"] == pytest.approx(100 * (d["teacher_score"] - d["student_score"]), abs=0.01)
    assert json.loads((tmp_path / "student" / "config.json").read_text())["num_hidden_layers"] == 1

    student = Classifier.load(tmp_path / "student", engine="pytorch")
    texts = ["a gripping, beautifully acted film", "tedious and far too long"]
    hf = AutoModelForSequenceClassification.from_pretrained(tmp_path / "student").eval()
    tokens = AutoTokenizer.from_pretrained(tmp_path / "student")(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hf_logits = hf(**tokens).logits.numpy()
    np.testing.assert_allclose(hf_logits, student.logits(texts), atol=1e-4)
    # the student began from the teacher's first layer: that layer's attention weights moved, but not far
    teacher_w = AutoModelForSequenceClassification.from_pretrained(bert_teacher).bert.encoder.layer[0].attention.self.query.weight
    student_w = hf.bert.encoder.layer[0].attention.self.query.weight
    assert 0 < (student_w - teacher_w).abs().max() < 0.1
    # it exports through the guarded path, validated on the rows distillation held out of the training file
    result = cli("export", tmp_path / "student", check=True)
    assert "onnx-fp32" in result.stdout + result.stderr
    assert "onnx-fp32" in json.loads((tmp_path / "student" / "finebert.json").read_text())["engines"]


def test_the_guard_refuses_a_crippled_student_and_writes_no_folder(tmp_path, trained, reviews_csv):
    _, teacher = trained  # the default backbone, fine-tuned: a teacher worth losing points against
    result = cli("distill", teacher, reviews_csv, "-o", tmp_path / "student", "--layers", "1", "--max-time", "1",
                 "--text-column", "review", "--label-column", "sentiment", "-q")
    assert result.returncode == 2, result.stderr
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and line.startswith("error: the student's validation accuracy is 0.")
    assert "points under the teacher's 0." in line and "--force" in line
    assert not (tmp_path / "student").exists() and not (tmp_path / ".student.distilling").exists()


def test_unlabelled_texts_are_labelled_once_and_change_the_student(tmp_path, sst2_csv, bert_teacher):
    from finebert.inference import Classifier

    more = tmp_path / "more.txt"
    more.write_text("\n".join(text for text, _ in sst2_rows(700)[400:]) + "\n")
    common = ["--epochs", "1", "--force", "-q"]
    cli("distill", bert_teacher, sst2_csv, "-o", tmp_path / "plain", *common, check=True)
    cli("distill", bert_teacher, sst2_csv, "-o", tmp_path / "more", "--unlabelled", more, *common, check=True)
    assert record(tmp_path / "more")["unlabelled_rows"] == 300
    (cache,) = tmp_path.glob(".more.teacher-*.npy")
    assert np.load(cache).shape == (360 + 300, 2)  # the training rows (less validation) and the unlabelled ones
    texts = [text for text, _ in sst2_rows(40, "dev")]
    plain = Classifier.load(tmp_path / "plain", engine="pytorch").logits(texts)
    richer = Classifier.load(tmp_path / "more", engine="pytorch").logits(texts)
    assert np.abs(plain - richer).max() > 1e-3
    stamp = cache.stat().st_mtime_ns
    cli("distill", bert_teacher, sst2_csv, "-o", tmp_path / "more", "--unlabelled", more, *common, check=True)
    assert cache.stat().st_mtime_ns == stamp  # the teacher's labels came from the cache


@pytest.mark.parametrize("shape", ["multi-label", "pairs"])
def test_multi_label_and_pair_teachers_distil(tmp_path, shape, emotions, paraphrases):
    from finebert.inference import Classifier

    _, teacher, data = emotions if shape == "multi-label" else paraphrases
    cli("distill", teacher, data, "-o", tmp_path / "student", "--layers", "3", "--epochs", "1", "--force", "-q",
        check=True)
    student = Classifier.load(tmp_path / "student")
    assert student.label_space.multi_label == (shape == "multi-label") and student.pairs == (shape == "pairs")
    assert record(tmp_path / "student")["metric"] == ("macro_f1" if shape == "multi-label" else "accuracy")
    assert record(tmp_path / "student")["layer_map"] == [0, 2, 4]
    teacher_labels = Classifier.load(teacher).labels
    assert student.labels == teacher_labels


def test_a_teacher_of_another_family_and_vocabulary_teaches_a_bert_student(tmp_path, sst2_csv, families, tiny_backbone):
    from finebert.inference import Classifier

    teacher = tmp_path / "roberta"
    cli("train", sst2_csv, "-o", teacher, "--model", families["roberta"], "--epochs", "1", "--max-length", "32", "-q",
        check=True)
    cli("distill", teacher, sst2_csv, "-o", tmp_path / "student", "--student", tiny_backbone, "--epochs", "1",
        "--force", "-q", check=True)
    student = Classifier.load(tmp_path / "student")
    assert (tmp_path / "student" / "vocab.txt").is_file() and not (tmp_path / "student" / "merges.txt").exists()
    assert record(tmp_path / "student")["student"] == str(tiny_backbone)
    assert student.predict(["a fine film"])[0] in ("0", "1")


def test_bad_options_are_one_line_and_write_nothing(tmp_path, sst2_csv, bert_teacher, tiny_backbone):
    for args, message in [(["--layers", "5"], "--layers 5: the teacher has 2 layers"),
                          (["--layer-map", "0,x"], "--layer-map '0,x': give layer numbers"),
                          (["--student", str(tiny_backbone), "--layers", "1"], "give one or the other"),
                          (["--alpha", "2"], "alpha=2.0")]:
        result = cli("distill", bert_teacher, sst2_csv, "-o", tmp_path / "student", *args)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "student").exists()


def test_resume_after_sigkill_ends_where_an_uninterrupted_run_does(tmp_path, sst2_csv, bert_teacher):
    from safetensors.numpy import load_file

    args = [sst2_csv, "--epochs", "3", "--batch-size", "8", "--checkpoint-minutes", "0", "--force", "-q"]
    cli("distill", bert_teacher, *args[:1], "-o", tmp_path / "whole", *args[1:], check=True)
    command = [sys.executable, "-m", "finebert", "distill", str(bert_teacher), str(sst2_csv), "-o",
               str(tmp_path / "killed"), *map(str, args[1:])]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoints = tmp_path / ".killed.distilling" / "checkpoints"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None and len(list(checkpoints.glob("*"))) < 1:
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before a checkpoint was written"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    cli("distill", bert_teacher, *args[:1], "-o", tmp_path / "killed", *args[1:], "--resume", check=True)
    whole, resumed = (load_file(str(tmp_path / name / "model.safetensors")) for name in ("whole", "killed"))
    for key in whole:
        np.testing.assert_allclose(resumed[key], whole[key], atol=1e-6, err_msg=key)
