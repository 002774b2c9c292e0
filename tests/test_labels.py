"""The label space: one place for labels <-> ids and for logits -> probabilities -> decisions."""

import json

import numpy as np
import pytest

from conftest import write_csv
from finebert.data import read_dataset
from finebert.errors import DataError
from finebert.labels import LabelSpace


def test_classes_are_ordered_integers_numerically_strings_alphabetically():
    assert LabelSpace.from_data(["10", "2", "2"]).names == ["2", "10"]
    space = LabelSpace.from_data(["spam", "ham", "spam"])
    assert space.names == ["ham", "spam"] and space.encode(["spam", "ham"], "f").tolist() == [1, 0]


def test_label_names_rename_integer_labels_in_numeric_order():
    space = LabelSpace.from_data(["1", "0", "1"], names=["negative", "positive"])
    assert space.names == ["negative", "positive"] and space.raw == ["0", "1"]
    # evaluation files may write labels as in training or by name: both reach the same class
    assert space.encode(["1", "positive", "0", "negative"], "f").tolist() == [1, 1, 0, 0]


def test_label_names_on_string_labels_is_an_error_so_classes_cannot_be_swapped():
    """`--label-names spam,ham` used to rename the sorted labels (ham, spam) silently: every label swapped."""
    with pytest.raises(DataError, match=r"renames integer labels only.*already names \(ham, spam\)"):
        LabelSpace.from_data(["ham", "spam", "ham"], names=["spam", "ham"])
    with pytest.raises(DataError, match="gives 1 names but the training data has 2 labels"):
        LabelSpace.from_data(["1", "0"], names=["only"])


def test_unknown_label_names_its_row_and_the_known_labels():
    space = LabelSpace.from_data(["ham", "spam"])
    with pytest.raises(DataError, match=r"eval.csv: row 3 has the label 'eggs', which the model does not know \(ham, spam\)"):
        space.encode(["ham", "spam", "eggs"], "eval.csv")


def test_multi_label_cells_split_on_the_separator_and_json_lists_turn_it_on_by_themselves(tmp_path):
    space = LabelSpace.from_data(["joy,surprise", "anger", "joy"], multi_label=True)
    assert space.multi_label and space.names == ["anger", "joy", "surprise"]
    assert space.encode(["surprise, joy", "anger"], "f").tolist() == [[0, 1, 1], [1, 0, 0]]
    piped = LabelSpace.from_data(["joy|fear", "anger"], multi_label=True, separator="|")
    assert piped.names == ["anger", "fear", "joy"]

    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "yay", "labels": ["joy", "surprise"]}\n{"text": "grr", "labels": ["anger"]}\n')
    data = read_dataset(path)
    assert data.labels == [["joy", "surprise"], ["anger"]]
    assert LabelSpace.from_data(data.labels).multi_label  # no flag needed


def test_single_label_model_refuses_rows_with_several_labels():
    space = LabelSpace.from_data(["a", "b"])
    with pytest.raises(DataError, match="row 1 has several labels"):
        space.encode([["a", "b"]], "f")


def test_postprocess_softmax_argmax_and_temperature_never_changes_a_decision():
    space = LabelSpace.from_data(["a", "b", "c"])
    logits = np.array([[2.0, 1.0, -1.0], [0.0, 0.5, 3.0]])
    out = space.postprocess(logits)
    expected = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert np.allclose(out.probabilities, expected, atol=1e-6)
    assert out.decisions.tolist() == [[True, False, False], [False, False, True]]
    hot = space.postprocess(logits, temperature=3.0)
    assert (hot.decisions == out.decisions).all() and hot.probabilities.max() < out.probabilities.max()


def test_postprocess_multi_label_thresholds_and_the_top_label_when_none_passes():
    space = LabelSpace.from_data(["a", "b,c"], multi_label=True)
    space.thresholds = [0.0, 1.0, -1.0]  # logit thresholds: p 0.5, 0.73, 0.27
    logits = np.array([[0.5, 0.9, -0.5],  # a passes (0.5 >= 0), b does not (0.9 < 1), c passes (-0.5 >= -1)
                       [-3.0, -2.0, -4.0]])  # nothing passes: the most probable label, b
    out = space.postprocess(logits)
    assert np.allclose(out.probabilities, 1 / (1 + np.exp(-logits)), atol=1e-6)
    assert out.decisions.tolist() == [[True, False, True], [False, True, False]]


def test_thresholds_are_tuned_per_label_for_f1():
    rng = np.random.default_rng(0)
    y = (rng.random((400, 2)) < [0.5, 0.1]).astype(np.float32)
    y[y.sum(1) == 0, 0] = 1  # every row has a label, as in real multi-label data
    logits = np.where(y == 1, 2.0, -2.0) + rng.normal(0, 0.3, y.shape)
    logits[:, 1] -= 3.0  # label 1 is under-confident: the default threshold 0 would miss most of it
    space = LabelSpace.from_data(["x", "y"], multi_label=True)
    t = space.tune_thresholds(logits, y)
    assert abs(t[0]) < 1.5 and t[1] < -2.5
    space.thresholds = t
    assert (space.postprocess(logits).decisions == y.astype(bool)).mean() > 0.99


@pytest.mark.parametrize("line, message", [
    ('{"text": "b", "label": {"x": 1}}', r'row 2, column \'label\' is \{"x": 1\}, which is not a label'),
    ('{"text": "b", "label": true}', r"row 2, column 'label' is true, which is not a label"),
    ('{"text": "b", "label": 0.5}', r"row 2, column 'label' is 0.5, which is not a label"),
    ('{"text": "b", "label": ["x", 3]}', r"row 2, column 'label' is \[\"x\", 3\]; a list of labels must hold non-empty strings"),
    ('{"text": "b", "label": null}', r"row 2, column 'label' has no label"),
])
def test_bad_label_cells_name_the_row(tmp_path, line, message):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n' + line + "\n")
    with pytest.raises(DataError, match=message):
        read_dataset(path)


def test_unquoted_comma_adding_a_field_is_an_error_not_a_new_class(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text,label\ngood film,positive\ngood, not great,negative\n")
    with pytest.raises(DataError, match=r"d.csv: row 2 has 3 fields but the header has 2; put quotes around"):
        read_dataset(path)


def test_class_weights_auto_and_by_name():
    from finebert.errors import ConfigError
    from finebert.training import class_weights

    space = LabelSpace.from_data(["ham"] * 6 + ["spam"] * 2)
    y = space.encode(["ham"] * 6 + ["spam"] * 2, "f")
    assert class_weights(space, y, "auto") == [round(8 / (2 * 6), 4), 2.0]  # N / (C * count)
    assert class_weights(space, y, {"spam": 4}) == [1.0, 4.0]
    assert class_weights(space, y, None) is None
    with pytest.raises(ConfigError, match="class_weights names 'eggs'"):
        class_weights(space, y, {"eggs": 2})
    multi = LabelSpace.from_data(["a", "a,b", "a", "a"], multi_label=True)
    assert class_weights(multi, multi.encode(["a", "a,b", "a", "a"], "f"), "auto") == [0.0, 3.0]  # negatives / positives


def test_label_space_round_trips_through_json():
    space = LabelSpace.from_data(["1", "0"], names=["neg", "pos"])
    again = LabelSpace.from_dict(json.loads(json.dumps(space.to_dict())))
    assert again == space


def test_cli_refuses_label_names_on_string_labels(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    data = write_csv(tmp_path / "sms.csv", ["label", "text"], [["ham", "see you at 5"], ["spam", "WIN a prize now"]])
    result = subprocess.run([str(Path(sys.executable).parent / "finebert"), "train", str(data), "--output",
                             str(tmp_path / "m"), "--label-names", "spam,ham"], capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "--label-names renames integer labels only" in result.stderr
    assert not (tmp_path / "m").exists()
