import json

import pytest

from conftest import DATA, write_csv
from finebert.config import TrainConfig
from finebert.data import read_dataset, validation_split
from finebert.errors import ConfigError, DataError


def test_reads_real_sst2_tsv_with_default_columns():
    data = read_dataset(DATA / "sst2" / "dev.tsv")
    assert len(data) == 872 and set(data.labels) == {"0", "1"}


def test_reads_real_sms_csv_with_quoting_and_string_labels():
    data = read_dataset(DATA / "sms_spam" / "sms_spam.csv")
    assert len(data) == 5574 and data.labels.count("spam") == 747


def test_named_columns_and_jsonl(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps({"body": t, "y": y}) for t, y in [("good", 1), ("bad", 0)]) + "\n")
    data = read_dataset(path, text_column="body", label_column="y")
    assert data.texts == ["good", "bad"] and data.labels == ["1", "0"]


def test_validation_split_is_stratified_and_capped():
    import numpy as np

    labels = np.array([0] * 900 + [1] * 100)
    train, val = validation_split(labels, 0.1, 2000, seed=1)
    assert len(val) == 100 and sum(labels[i] for i in val) == 10
    assert sorted(train + val) == list(range(1000))
    assert len(validation_split(labels, 0.5, 50, seed=1)[1]) == 50
    assert validation_split(np.array([0, 1, 1]), 0.1, 100, seed=1)[1] == []  # too small to hold any out
    multi = np.eye(3)[np.arange(300) % 3]  # multi-label targets (N, C): split at random, same cap
    assert len(validation_split(multi, 0.1, 2000, seed=1)[1]) == 30


@pytest.mark.parametrize("content, message", [
    ("text,label\nhello,1\n,0\n", r"row 2, column 'text' is empty"),
    ("text,label\nhello,1\nbye,\n", r"row 2, column 'label' has no label"),
    ("sentence,stars\nhello,1\n", r"no label column found .* columns found: sentence, stars. Pass --label-column"),
    ("words,label\nhello,1\n", r"no text column found .* columns found: words, label. Pass --text-column"),
    ("text,label\n", r"has no data rows"),
    ("", r"the file is empty"),
])
def test_bad_csv_names_row_or_column_and_fix(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        read_dataset(path)


def test_missing_named_column_lists_columns_found(tmp_path):
    path = write_csv(tmp_path / "d.csv", ["review", "sentiment"], [["good", "positive"]])
    with pytest.raises(DataError, match=r"no column 'text'; columns found: review, sentiment"):
        read_dataset(path, text_column="text", label_column="sentiment")


def test_non_text_cell_in_jsonl(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "fine", "label": 1}\n{"text": 42, "label": 0}\n')
    with pytest.raises(DataError, match=r"row 2, column 'text' is 42, not text"):
        read_dataset(path)


def test_unreadable_encoding_and_missing_file(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("text,label\ncaf\xe9 au lait,1\n".encode("latin-1"))
    with pytest.raises(DataError, match="not valid UTF-8.*save the file as UTF-8"):
        read_dataset(path)
    with pytest.raises(DataError, match="no such file"):
        read_dataset(tmp_path / "nope.csv")


def test_config_errors_quote_the_bad_value_and_the_fix():
    with pytest.raises(ConfigError, match=r"learning_rate=5.0 is invalid: use a value between 0 and 1"):
        TrainConfig(learning_rate=5.0)
    with pytest.raises(ConfigError, match=r"pooling='max' is invalid: use 'cls', 'mean' or 'normalized-mean'"):
        TrainConfig(pooling="max")
    with pytest.raises(ConfigError, match=r"recipe='tiny' is invalid: use 'auto' .*, 'few-shot', 'head-first' or 'fine-tune'"):
        TrainConfig(recipe="tiny")
    with pytest.raises(ConfigError, match=r"head_learning_rate=2 is invalid: use a value between 0 and 1"):
        TrainConfig(head_learning_rate=2)
    with pytest.raises(ConfigError, match=r"head_init='zeros' is invalid: use 'random' or 'fit'"):
        TrainConfig(head_init="zeros")
    with pytest.raises(ConfigError, match=r"contrastive_pairs=-1 is invalid: use a whole number of partners per text"):
        TrainConfig(contrastive_pairs=-1)
    assert TrainConfig.from_dict(TrainConfig(epochs=2).to_dict()).epochs == 2
