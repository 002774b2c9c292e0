"""The real console script in a subprocess (and, where noted, its entry point in this process): output,
exit codes, one-line errors, nothing half-written."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import cli, write_csv

FINEBERT = str(Path(sys.executable).parent / "finebert")


def run(*args, stdin=None, env=None):
    return subprocess.run([FINEBERT, *map(str, args)], capture_output=True, text=True, input=stdin, timeout=300,
                          env=env and {**os.environ, **env})


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize("command, shown", [([], "train"), (["train"], "--precision"), (["tune"], "--study"),
                                           (["distill"], "--layer-map")])
def test_help_does_not_import_torch(command, shown):
    code = ("import sys; from finebert.cli import app; from typer.testing import CliRunner; "
            f"r = CliRunner().invoke(app, {command + ['--help']!r}); assert r.exit_code == 0 and {shown!r} in r.output; "
            "print(*(m in sys.modules for m in ('torch', 'transformers', 'optuna', 'mlflow', 'tensorboard')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False"] * 5
    assert run(*command, "--help").returncode == 0


def test_tokenize_text_and_json():
    result = run("tokenize", "The movie was absolutely fantastic!", "--max-length", "10")
    assert result.returncode == 0
    assert "[CLS] the movie was absolutely fantastic ! [SEP] [PAD] [PAD]" in result.stdout
    assert "attention_mask: 1 1 1 1 1 1 1 1 0 0" in result.stdout
    out = json.loads(run("tokenize", "The movie was absolutely fantastic!", "--json").stdout)
    assert out["input_ids"] == [101, 1996, 3185, 2001, 7078, 10392, 999, 102]
    assert set(out) == {"tokens", "input_ids", "attention_mask"}


def test_evaluate_predict_with_other_columns_and_string_labels(trained, tmp_path, reviews_csv):
    _, model = trained  # trained through the CLI with --text-column review --label-column sentiment
    # the installed console script, reading texts from standard input
    piped = run("predict", model, stdin="I really enjoyed the movie!\na dull mess\n")
    assert piped.returncode == 0, piped.stderr
    first, second = piped.stdout.strip().splitlines()
    assert first.startswith("I really enjoyed the movie!\tpositive (confidence ")
    assert second.startswith("a dull mess\tnegative (confidence ")
    # the rest through the same entry point in this process (conftest.cli), to save a start-up per call
    report = json.loads(cli("evaluate", model, reviews_csv, "--text-column", "review", "--label-column", "sentiment",
                            "--json", check=True).stdout)
    assert report["labels"] == ["negative", "positive"] and report["accuracy"] > 0.6
    table = cli("evaluate", model, reviews_csv, "--text-column", "review", "--label-column", "sentiment").stdout
    assert "confusion matrix" in table and "macro precision" in table
    many = json.loads(cli("predict", model, "--json", "great fun", "a dull mess", check=True).stdout)
    assert [p["text"] for p in many] == ["great fun", "a dull mess"]
    assert set(many[0]["probabilities"]) == {"negative", "positive"}
    texts = tmp_path / "texts.txt"
    texts.write_text("great fun\n\na dull mess\nfine\n")
    assert len(json.loads(cli("predict", model, "--file", texts, "--json", check=True).stdout)) == 3


def test_bad_input_gives_one_line_exit_2_and_no_output_folder(tmp_path):
    out = tmp_path / "never"
    assert_one_line_error(run("train", tmp_path / "missing.csv", "--output", out), "missing.csv", "no such file")
    bad = write_csv(tmp_path / "bad.csv", ["comment_text", "stars"], [["good", "5"], ["bad", "1"]])
    assert_one_line_error(run("train", bad, "--output", out), "columns found: comment_text, stars", "--text-column")
    one = write_csv(tmp_path / "one.csv", ["text", "label"], [["good", "pos"], ["fine", "pos"]])
    assert_one_line_error(run("train", one, "--output", out), "at least two classes")
    assert_one_line_error(run("train", one, "--output", out, "--learning-rate", "3"), "learning_rate=3.0")
    assert_one_line_error(run("predict", tmp_path, "hello"), "not a finebert model")
    assert not out.exists()
    assert list(tmp_path.glob(".never*")) == []


def test_unknown_option_is_a_usage_error():
    assert run("train", "--no-such-flag").returncode == 2


def test_model_as_hub_id_comes_from_the_hugging_face_cache(tmp_path, reviews_csv):
    """`--model org/name` goes through huggingface_hub; offline, it reads the cache (filled here by hand,
    in the cache's own layout, from the default backbone's files) or says in one line that it cannot."""
    from finebert.config import DEFAULT_BACKBONE, resolve_backbone

    cache = tmp_path / "hub"
    snapshot = cache / "models--someone--minilm" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (cache / "models--someone--minilm" / "refs").mkdir()
    (cache / "models--someone--minilm" / "refs" / "main").write_text("0" * 40)
    for file in resolve_backbone(DEFAULT_BACKBONE).iterdir():
        if file.suffix in (".json", ".txt", ".safetensors"):
            (snapshot / file.name).symlink_to(file)
    offline = {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}

    out = tmp_path / "m"
    result = run("train", reviews_csv, "--output", out, "--model", "someone/minilm", "--epochs", "0.2", "--quiet", env=offline)
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "finebert.json").read_text())["config"]["model"] == "someone/minilm"

    result = run("train", reviews_csv, "--output", tmp_path / "n", "--model", "someone/missing", env=offline)
    assert_one_line_error(result, "someone/missing", "not in the local Hugging Face cache")
    assert not (tmp_path / "n").exists()


def test_a_piped_train_logs_a_line_per_tenth_not_a_redraw_per_batch(tmp_path, reviews_csv, tiny_backbone):
    """stderr is a pipe here, as in CI or `finebert train ... 2> log`: plain lines, at 10%, 20%, ... 100%."""
    result = run("train", reviews_csv, "-o", tmp_path / "model", "--model", tiny_backbone, "--epochs", "2",
                 "--batch-size", "8", "--max-length", "32", "--text-column", "review", "--label-column", "sentiment")
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("training: ")]
    assert [line.split("%")[0].removeprefix("training: ").strip() for line in lines] == \
        [str(p) for p in range(10, 101, 10)]  # 90 steps of 8: a line per tenth, not one per step
    assert lines[-1].startswith("training: 100% 720/720 ex [") and "loss=" in lines[-1]
    assert sum(line.startswith("epoch ") for line in result.stdout.splitlines()) == 2  # messages: stdout, as tqdm's
