"""The recipe follows the data size: few-shot (a head fitted on sentence embeddings, then every weight
fine-tuned) for small data, the full fine-tuning recipe otherwise; what the caller sets is kept."""

import json

import numpy as np
import pytest

from conftest import DATA, cli, sst2_rows, subset_file, write_csv
from finebert.config import TrainConfig
from finebert.training import FEW_SHOT_MAX_ROWS, choose_recipe


def test_the_recipe_follows_the_data_size_and_keeps_what_the_caller_set():
    small, large = choose_recipe(TrainConfig(), FEW_SHOT_MAX_ROWS), choose_recipe(TrainConfig(), FEW_SHOT_MAX_ROWS + 1)
    assert small.recipe == "few-shot" and small.pooling == "normalized-mean" and small.validation_split == 0
    assert large.recipe == "fine-tune" and large == TrainConfig(recipe="fine-tune")
    # given values win, even one equal to TrainConfig's default (dropout 0)
    mine = choose_recipe(TrainConfig(learning_rate=3e-5, dropout=0.0), 40, given={"dropout"})
    assert mine.learning_rate == 3e-5 and mine.dropout == 0.0 and mine.epochs == small.epochs
    assert choose_recipe(TrainConfig(recipe="fine-tune"), 40).pooling == "cls"  # asked for by name


@pytest.mark.parametrize("relative, rows", [("sst2/train.tsv", 40), ("ag_news/train.csv", 80)])
def test_the_head_starts_as_a_logistic_regression_on_the_embeddings(tmp_path, backbone, relative, rows):
    """Before any fine-tuning step, the model's probabilities are scikit-learn's, class for class."""
    import torch
    from sklearn.linear_model import LogisticRegression

    from finebert.model import build_model
    from finebert.training import fit_head, prepare

    data = subset_file(tmp_path, relative, rows)
    task = prepare(data, None, TrainConfig())
    config = task.config
    assert config.recipe == "few-shot" and task.val is None  # every row trains
    torch.manual_seed(0)
    model = build_model(backbone, len(task.space), pooling=config.pooling, dropout=config.dropout)
    fit_head(model, task, torch.device("cpu"), config)
    model.eval()
    inputs = {k: torch.from_numpy(v) for k, v in task.tokenizer.pad(task.train.ids).items()}
    with torch.no_grad():
        features = model.pooled(**inputs).numpy()  # (N, H)
        ours = torch.softmax(model(**inputs), -1).numpy()  # (N, C)
    assert np.allclose(np.linalg.norm(features, axis=1), 1, atol=1e-5)  # sentence embeddings at unit length
    fit = LogisticRegression(max_iter=1000).fit(features, task.y)
    theirs = np.zeros_like(ours)
    theirs[:, fit.classes_] = fit.predict_proba(features)
    assert np.allclose(ours[:, fit.classes_], theirs[:, fit.classes_], atol=1e-4)
    assert (ours.argmax(1) == task.y).mean() > 0.8  # and it already fits its data


def test_few_shot_through_the_cli_says_its_recipe_and_beats_chance(tmp_path):
    """32 SST-2 sentences, 16 per class, with no flags: the recipe line, the record, and a real model."""
    rows = sst2_rows(400)
    picked = [r for r in rows if r[1] == "0"][:16] + [r for r in rows if r[1] == "1"][:16]
    data = write_csv(tmp_path / "few.csv", ["sentence", "label"], [[t, y] for t, y in picked])
    result = cli("train", data, "--output", tmp_path / "m", "--label-names", "negative,positive", "--epochs", "10",
                 check=True)
    assert "recipe: few-shot (32 training rows)" in result.stdout
    info = json.loads((tmp_path / "m" / "finebert.json").read_text())
    assert info["config"]["recipe"] == "few-shot" and info["config"]["pooling"] == "normalized-mean"
    assert info["config"]["epochs"] == 10  # given, so kept
    report = json.loads(cli("evaluate", tmp_path / "m", DATA / "sst2" / "dev.tsv", "--json", check=True).stdout)
    assert report["accuracy"] > 0.6  # chance is 0.5; 16 examples per class
