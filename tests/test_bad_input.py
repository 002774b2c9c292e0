"""The corpus of bad input (tests/data/bad/) through `train`, `evaluate` and `predict`: one line naming
the file, the row and the fix, exit code 2, no traceback, nothing half-written.

The commands run in this process through `finebert.cli.main`, the console script's own entry point
(conftest.cli; a subprocess per case would cost minutes); test_cli.py runs the real console script.
"""

import json
import shutil
from pathlib import Path

import pytest

from conftest import cli

BAD = Path(__file__).parent / "data" / "bad"


def assert_one_line_error(result, *fragments):
    code, _, err = result
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def huge(tmp_path_factory) -> Path:
    """A 10 MB single line: one row whose text has no line end for 10 million characters."""
    path = tmp_path_factory.mktemp("huge") / "huge_line.csv"
    path.write_text("text,label\n" + "word " * 2_000_000 + ",positive\nfine,negative\n")
    return path


# file: what the one line must say, for train and evaluate (labels matter) and predict (they do not)
CASES = {
    "missing_column.csv": (["no text column found", "columns found: words, stars", "--text-column"],) * 2,
    "empty_text.csv": (["row 2, column 'text' is empty", "fill it in or remove the row"],) * 2,
    "nan_label.csv": (["row 2, column 'label' has no label", "fill it in"], None),
    "empty_label.csv": (["row 2, column 'label' has no label", "fill it in"], None),
    "latin1.csv": (["row 2, column 'text' is not valid UTF-8", "save the file as UTF-8"],) * 2,
    "wrong_delimiter.csv": (["separated by ';'", "save it comma-separated"],) * 2,
    "ragged.csv": (["row 2 has 1 field but the header has 2", "fill in the missing fields"],) * 2,
    "extra_fields.csv": (["row 2 has 3 fields but the header has 2", "put quotes around"],) * 2,
    "empty.csv": (["the file is empty", "header row"],) * 2,
    "a_directory.csv": (["is a folder, not a data file"],) * 2,
    "binary.csv": (["is a binary file, not text"],) * 2,
    "object_label.jsonl": (['row 2, column \'label\' is {"stars": 1}, which is not a label', "write a label name"], None),
    "boolean_label.jsonl": (["row 2, column 'label' is true, which is not a label"], None),
    "huge_line.csv": (["row 1 has a field of over 1,000,000 characters", "split that text"],) * 2,
}


def path_of(name, huge):
    return huge if name == "huge_line.csv" else BAD / name


@pytest.mark.parametrize("name", CASES)
def test_train_refuses_bad_data_in_one_line_and_writes_nothing(name, huge, tmp_path):
    fragments = CASES[name][0]
    out = tmp_path / "model"
    assert_one_line_error(cli("train", path_of(name, huge), "--output", out), name, *fragments)
    assert list(tmp_path.iterdir()) == []  # no model folder, no temporary folder


@pytest.mark.parametrize("name", CASES)
def test_evaluate_refuses_bad_data_in_one_line(name, huge, trained):
    assert_one_line_error(cli("evaluate", trained[1], path_of(name, huge)), name, *CASES[name][0])


@pytest.mark.parametrize("name", CASES)
def test_predict_refuses_bad_texts_and_ignores_bad_labels(name, huge, trained):
    result = cli("predict", trained[1], "--file", path_of(name, huge), "--json")
    fragments = CASES[name][1]
    if fragments is None:  # the label column is not read when predicting
        assert result[0] == 0, result[2]
        assert len(json.loads(result[1])) == (2 if name.endswith(".jsonl") else 3)
    else:
        assert_one_line_error(result, name, *fragments)


def test_single_class_is_refused_for_training_but_fine_to_evaluate(trained, tmp_path):
    assert_one_line_error(cli("train", BAD / "single_class.csv", "--output", tmp_path / "m"),
                          "single_class.csv", "every row has the label 'positive'", "at least two classes")
    code, out, err = cli("evaluate", trained[1], BAD / "single_class.csv", "--json")
    assert code == 0 and json.loads(out)["per_class"]["positive"]["support"] == 3


def test_labels_the_model_never_saw_are_named_with_their_row(trained):
    assert_one_line_error(cli("evaluate", trained[1], BAD / "unseen_label.csv"), "unseen_label.csv",
                          "row 3 has the label 'neutral', which the model does not know (negative, positive)")


@pytest.mark.parametrize("name", ["utf16.csv", "bom.csv"])
def test_utf16_and_bom_files_are_read_like_utf8(name, tmp_path, trained):
    from finebert.data import read_dataset

    data = read_dataset(BAD / name)
    assert data.texts[0] == "great film" and data.labels == ["positive", "negative", "positive", "negative"]
    code, _, err = cli("train", BAD / name, "--output", tmp_path / "m", "--epochs", "0.5", "--quiet")
    assert code == 0, err
    code, out, err = cli("predict", tmp_path / "m", "--file", BAD / name, "--json")
    assert code == 0 and len(json.loads(out)) == 4
    assert cli("evaluate", trained[1], BAD / name, "--json")[0] == 0


@pytest.fixture()
def broken_models(trained, tmp_path):
    """Copies of the session model: weights missing, weights torn in half, finebert.json from a newer finebert."""
    _, folder = trained
    made = {}
    for case in ("missing", "corrupt", "newer"):
        copy = tmp_path / case
        shutil.copytree(folder, copy)
        made[case] = copy
    (made["missing"] / "model.safetensors").unlink()
    weights = made["corrupt"] / "model.safetensors"
    with open(weights, "r+b") as f:
        f.truncate(weights.stat().st_size // 2)
    info = json.loads((made["newer"] / "finebert.json").read_text())
    info["schema_version"] = 99
    (made["newer"] / "finebert.json").write_text(json.dumps(info))
    return made


@pytest.mark.parametrize("case, fragments", [
    ("missing", ["model.safetensors", "train it again"]),
    ("corrupt", ["model.safetensors", "train it again"]),
    ("newer", ["written by a newer finebert (schema 99", "pip install -U finebert"]),
])
def test_broken_model_folders_are_one_line_errors(broken_models, case, fragments, reviews_csv, tmp_path):
    folder = broken_models[case]
    assert_one_line_error(cli("predict", folder, "great film", "--engine", "pytorch"), str(folder), *fragments)
    assert_one_line_error(cli("evaluate", folder, reviews_csv, "--engine", "pytorch"), str(folder), *fragments)
    if case != "newer":  # the same folder as a backbone to train from
        out = tmp_path / "m"
        assert_one_line_error(cli("train", reviews_csv, "--output", out, "--model", folder), str(folder))
        assert not out.exists()
