"""The training options of the command line are made from TrainConfig's fields (config.setting): each setting is
described once, and every field is either an option or deliberately kept off the command line."""

import dataclasses
import re

import pytest

from conftest import cli
from finebert.cli.options import option_fields, settings_from
from finebert.config import TrainConfig
from finebert.errors import ConfigError

# Set by the recipes, or fine knobs for the Python API and tuning: deliberately not on the command line.
INTERNAL = {"head_init", "head_learning_rate", "warmup_ratio", "weight_decay", "layer_lr_decay", "max_grad_norm",
            "freeze_word_embeddings", "packing", "length_window", "eval_batch_size", "validation_split",
            "validation_max_rows"}
# `finebert train`'s flags for TrainConfig settings: every one users already pass, and --precision.
TRAIN_FLAGS = ["--text-column", "--label-column", "--text-pair-column", "--label-names", "--multi-label",
               "--label-separator", "--class-weights", "--long-text", "--stride", "--chunk-pooling", "--model",
               "--recipe", "--contrastive-pairs", "--label-name-rows", "--fine-tuned-share", "--epochs",
               "--batch-size", "--learning-rate", "--max-length", "--pooling", "--dropout", "--freeze-layers",
               "--precision", "--max-time", "--seed", "--checkpoint-minutes"]


def test_every_setting_is_an_option_or_deliberately_internal_and_describes_itself():
    fields = dataclasses.fields(TrainConfig)
    options = {f.name for f in option_fields()}
    assert not options & INTERNAL
    assert options | INTERNAL == {f.name for f in fields}  # a new field must choose
    assert sorted("--" + name.replace("_", "-") for name in options) == sorted(TRAIN_FLAGS)
    for f in fields:
        assert len(f.metadata["help"]) > 10, f.name


def help_text(*command) -> str:
    result = cli(*command, "--help", check=True)
    return re.sub(r"[\s│]+", " ", result.stdout)  # rich's box and wrapping, undone


def test_train_help_shows_each_option_with_the_description_written_on_its_field(monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    shown = help_text("train")
    for f in option_fields():
        flag = "--" + f.name.replace("_", "-")
        assert f"{flag} " in shown and " ".join(f.metadata["help"].split()) in shown, flag
    for own in ("--output", "--validation", "--resume", "--nproc", "--quiet", "--log-dir", "--mlflow"):  # its own
        assert f"{own} " in shown


def test_tune_takes_every_training_option_as_a_fixed_setting(monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    shown = help_text("tune")
    for flag in TRAIN_FLAGS + ["--trials", "--timeout", "--space", "--study", "--study-name", "--log-dir", "--mlflow"]:
        assert f"{flag} " in shown, flag


@pytest.mark.parametrize("argv, expected", [
    (["train", "d.csv", "--mlflow"], ["train", "d.csv", "--mlflow="]),
    (["train", "--mlflow", "--log-dir", "tb"], ["train", "--mlflow=", "--log-dir", "tb"]),
    (["train", "--mlflow", "d.csv"], ["train", "--mlflow=", "d.csv"]),
    (["train", "--mlflow", "http://host:5000", "d.csv"], ["train", "--mlflow", "http://host:5000", "d.csv"]),
    (["train", "--mlflow=databricks"], ["train", "--mlflow=databricks"]),
])
def test_mlflow_takes_a_uri_only_when_one_follows(argv, expected):
    from finebert.cli.options import optional_values

    assert optional_values(argv) == expected


def test_audit_reuses_the_same_descriptions(monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    shown = help_text("audit")
    for name in ("model", "max_length", "label_separator"):
        f = TrainConfig.__dataclass_fields__[name]
        assert " ".join(f.metadata["help"].split()) in shown
    assert "--learning-rate" not in shown  # only the options audit names


def test_options_given_become_settings_and_the_rest_stay_unset():
    values = {f.name: None for f in option_fields()} | {"multi_label": False}
    assert settings_from(values) == {}  # nothing given: the recipes decide
    values |= {"class_weights": "ham=1,spam=4", "label_names": "negative, positive", "epochs": 2.0,
               "label_separator": "|"}
    assert settings_from(values) == {"class_weights": {"ham": 1.0, "spam": 4.0},
                                     "label_names": ["negative", "positive"], "epochs": 2.0,
                                     "label_separator": "|", "multi_label": True}
    with pytest.raises(ConfigError, match="cannot read 'spam'"):
        settings_from({"class_weights": "ham=1,spam"})
