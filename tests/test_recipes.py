"""The recipe follows the data size: few-shot (a head fitted on sentence embeddings, then every weight
fine-tuned gently) for small data, head-first (the same head, then the full fine-tuning defaults) for
mid-size data, the full fine-tuning recipe for large data; what the caller sets is kept."""

import json

import numpy as np
import pytest

from conftest import DATA, cli, sst2_rows, subset_file, write_csv
from finebert.config import TrainConfig
from finebert.training import FEW_SHOT_MAX_ROWS, HEAD_FIRST_MAX_ROWS, choose_recipe


def test_the_recipe_follows_the_data_size_and_keeps_what_the_caller_set():
    small, mid, large = (choose_recipe(TrainConfig(), rows) for rows in
                         (FEW_SHOT_MAX_ROWS, FEW_SHOT_MAX_ROWS + 1, HEAD_FIRST_MAX_ROWS + 1))
    assert small.recipe == "few-shot" and small.pooling == "normalized-mean" and small.validation_split == 0
    assert small.head_init == "fit" and small.epochs == 20 and small.contrastive_pairs == 0  # the pair stage: opt-in
    assert small.fine_tuned_share == 0.7 and small.label_name_rows == 4 and mid.label_name_rows == 0
    assert mid == TrainConfig(recipe="head-first", pooling="normalized-mean", head_init="fit")  # else the defaults
    assert choose_recipe(TrainConfig(), HEAD_FIRST_MAX_ROWS).recipe == "head-first"
    # large data: the fine-tuning defaults, with twice the batch at 1.5x the learning rate (one epoch of SST-2)
    assert large == TrainConfig(recipe="fine-tune", batch_size=64, learning_rate=3e-4)
    assert choose_recipe(TrainConfig(batch_size=16), HEAD_FIRST_MAX_ROWS + 1).batch_size == 16  # a value set is kept
    assert choose_recipe(TrainConfig(), HEAD_FIRST_MAX_ROWS + 1, given={"learning_rate"}).learning_rate == 2e-4
    # sentence pairs skip head-first (no gain on MRPC), and keep few-shot for small data
    pairs = TrainConfig(text_pair_column="sentence2")
    assert choose_recipe(pairs, FEW_SHOT_MAX_ROWS + 1) == TrainConfig(text_pair_column="sentence2", recipe="fine-tune")
    assert choose_recipe(pairs, FEW_SHOT_MAX_ROWS).recipe == "few-shot"
    # so do multi-label data (their folders load in Hugging Face's auto classes, which need [CLS] pooling)
    assert choose_recipe(TrainConfig(), FEW_SHOT_MAX_ROWS + 1, multi_label=True).recipe == "fine-tune"
    # given values win, even one equal to TrainConfig's default (dropout 0)
    mine = choose_recipe(TrainConfig(learning_rate=3e-5, dropout=0.0), 40, given={"dropout"})
    assert mine.learning_rate == 3e-5 and mine.dropout == 0.0 and mine.epochs == small.epochs
    by_name = choose_recipe(TrainConfig(recipe="fine-tune"), 40)  # asked for by name on small data: batches of 32
    assert by_name.pooling == "cls" and by_name.batch_size == 32 and by_name.learning_rate == 2e-4


@pytest.mark.parametrize("relative, rows, share, minimum, sampled", [
    ("sst2/train.tsv", 40, None, None, None), ("ag_news/train.csv", 80, None, None, None),
    ("ag_news/train.csv", 80, 1 / 32, 30, 50),  # 1/32 of 20 epochs x 80 chunks
    ("ag_news/train.csv", 80, 1 / 64, 30, 30)])  # 25 reads are under the minimum
def test_the_head_starts_as_a_logistic_regression_on_the_embeddings(tmp_path, backbone, monkeypatch, relative, rows,
                                                                      share, minimum, sampled):
    """Before any fine-tuning step, the model's probabilities are scikit-learn's, class for class. The
    regression reads every chunk unless that is more than HEAD_FIT_SHARE of training's reads (epochs x
    chunks), here lowered: then a seeded sample of that many, and never fewer than HEAD_FIT_MIN_CHUNKS."""
    import torch
    from sklearn.linear_model import LogisticRegression

    from finebert.model import build_model
    from finebert.training import fit_head, prepare, warm_start

    if share:
        monkeypatch.setattr(warm_start, "HEAD_FIT_SHARE", share)
        monkeypatch.setattr(warm_start, "HEAD_FIT_MIN_CHUNKS", minimum)

    data = subset_file(tmp_path, relative, rows)
    # the file's rows alone (no label names as extra texts), so that `rows` counts the chunks the fit may read
    task = prepare(data, None, TrainConfig(label_name_rows=0), given={"label_name_rows"})
    config = task.config
    assert config.recipe == "few-shot" and task.val is None and task.train.n_docs == rows  # every row trains
    torch.manual_seed(0)
    model = build_model(backbone, len(task.space), pooling=config.pooling, dropout=config.dropout)
    fit_head(model, task, torch.device("cpu"), config)
    model.eval()
    inputs = {k: torch.from_numpy(v) for k, v in task.tokenizer.pad(task.train.ids).items()}
    with torch.no_grad():
        features = model.pooled(**inputs).numpy()  # (N, H)
        ours = torch.softmax(model(**inputs), -1).numpy()  # (N, C)
    assert np.allclose(np.linalg.norm(features, axis=1), 1, atol=1e-5)  # sentence embeddings at unit length
    assert config.epochs == 20
    picked = np.arange(rows) if sampled is None else np.sort(np.random.default_rng(config.seed).choice(rows, sampled, replace=False))
    fit = LogisticRegression(max_iter=1000).fit(features[picked], task.y[picked])
    theirs = np.zeros_like(ours)
    theirs[:, fit.classes_] = fit.predict_proba(features)
    assert np.allclose(ours[:, fit.classes_], theirs[:, fit.classes_], atol=1e-4)
    if sampled:  # the sample made a difference: the regression on every row gives other probabilities
        every = LogisticRegression(max_iter=1000).fit(features, task.y).predict_proba(features)
        assert not np.allclose(ours[:, fit.classes_], every, atol=1e-3)
    else:
        assert (ours.argmax(1) == task.y).mean() > 0.8  # and it already fits its data


def test_few_shot_through_the_cli_says_its_recipe_and_beats_chance(tmp_path):
    """32 SST-2 sentences, 16 per class, with no flags: the recipe line, the record, and a real model."""
    rows = sst2_rows(400)
    picked = [r for r in rows if r[1] == "0"][:16] + [r for r in rows if r[1] == "1"][:16]
    data = write_csv(tmp_path / "few.csv", ["sentence", "label"], [[t, y] for t, y in picked])
    result = cli("train", data, "--output", tmp_path / "m", "--label-names", "negative,positive", "--epochs", "10",
                 check=True)
    assert ("recipe: few-shot (32 training rows): the label names added as 4 training texts each, a head fitted on "
            "sentence embeddings, then every weight fine-tuned for 10 epochs, kept at 0.7 of the way from the starting "
            "weights to the fine-tuned ones") in result.stdout
    info = json.loads((tmp_path / "m" / "finebert.json").read_text())
    assert info["config"]["recipe"] == "few-shot" and info["config"]["pooling"] == "normalized-mean"
    assert info["config"]["label_name_rows"] == 4
    assert info["config"]["head_init"] == "fit" and info["config"]["fine_tuned_share"] == 0.7
    assert info["config"]["epochs"] == 10  # given, so kept
    report = json.loads(cli("evaluate", tmp_path / "m", DATA / "sst2" / "dev.tsv", "--json", check=True).stdout)
    assert report["accuracy"] > 0.6  # chance is 0.5; 16 examples per class


def test_label_names_join_the_few_shot_training_texts_but_ids_do_not(tmp_path):
    from finebert.training import prepare

    rows = [[t, "positive" if y == "1" else "negative"] for t, y in sst2_rows(30)]
    named = write_csv(tmp_path / "named.csv", ["sentence", "label"], rows)
    task = prepare(named, None, TrainConfig())
    assert task.config.recipe == "few-shot" and task.train.n_docs == 30 + 2 * 4
    assert task.train.ids[30:] == task.tokenizer.encode(["negative"] * 4 + ["positive"] * 4).ids  # after every row
    assert list(task.y[30:]) == [task.space.names.index("negative")] * 4 + [task.space.names.index("positive")] * 4
    assert prepare(named, None, TrainConfig(label_name_rows=0), given={"label_name_rows"}).train.n_docs == 30  # off
    assert prepare(named, None, TrainConfig(recipe="head-first")).train.n_docs == 27  # other recipes: none (3 held out)
    ids = write_csv(tmp_path / "ids.csv", ["sentence", "label"], [list(r) for r in sst2_rows(30)])
    assert prepare(ids, None, TrainConfig()).train.n_docs == 30  # "0" and "1" mean nothing to the backbone
    assert prepare(ids, None, TrainConfig(label_names=["negative", "positive"])).train.n_docs == 38  # names given


def test_mid_size_data_gets_head_first_and_says_so(tmp_path):
    from finebert.training import describe_recipe, prepare

    task = prepare(subset_file(tmp_path, "ag_news/train.csv", 400), None, TrainConfig())
    assert task.config.recipe == "head-first" and task.config.head_init == "fit" and task.val.n_docs == 40
    assert describe_recipe(task.config, task) == ("recipe: head-first (360 training rows, 40 held out for validation): "
                                                  "a head fitted on sentence embeddings, then every weight fine-tuned for 4 epochs")


def test_the_contrastive_stage_gathers_each_label(tmp_path, backbone):
    """SetFit's pair stage: after it, texts of one label are closer to each other than to the other label's,
    by a wider margin than before (cosines of the normalised sentence embeddings, 8 SST-2 rows per class)."""
    import torch

    from finebert.model import build_model
    from finebert.training import contrast_encoder, describe_recipe, prepare

    rows = sst2_rows(400)
    picked = [r for r in rows if r[1] == "0"][:8] + [r for r in rows if r[1] == "1"][:8]
    task = prepare(write_csv(tmp_path / "few.csv", ["sentence", "label"], picked), None, TrainConfig(contrastive_pairs=10))
    assert task.config.recipe == "few-shot" and task.config.contrastive_pairs == 10
    assert "the encoder first trained on contrastive pairs (10 same-label and 10 other-label" in describe_recipe(task.config, task)
    torch.manual_seed(0)
    model = build_model(backbone, 2, pooling="normalized-mean", dropout=0.1)
    inputs = {k: torch.from_numpy(v) for k, v in task.tokenizer.pad(task.train.ids).items()}
    same = task.y[:, None] == task.y[None, :]  # (N, N)

    def margin():
        with torch.no_grad():
            e = model.eval().pooled(**inputs)  # (N, H), unit length
        model.train()
        cos = (e @ e.T).numpy()
        return cos[same & ~np.eye(len(same), dtype=bool)].mean() - cos[~same].mean()

    before = margin()
    contrast_encoder(model, task, torch.device("cpu"), task.config, use_bf16=False)
    assert model.training  # left in training mode for the fine-tuning that follows
    after = margin()
    assert after > before + 0.05, (before, after)  # measured: 0.013 before, 0.109 after (20 steps)


def test_contrastive_pairs_refuse_multi_label_data(tmp_path):
    from finebert.errors import ConfigError
    from finebert.training import prepare

    with pytest.raises(ConfigError, match="contrastive_pairs=5 needs one label per row"):
        prepare(subset_file(tmp_path, "goemotions/train.tsv", 40), None, TrainConfig(multi_label=True, contrastive_pairs=5))


def test_the_model_kept_is_the_share_of_the_way_from_start_to_fine_tuned(tmp_path):
    """fine_tuned_share (WiSE-FT): the weights kept are share x fine-tuned + (1 - share) x the starting ones, so
    they move from the fine-tuned weights in proportion to 1 - share (same seed, same fine-tuning); validation
    scores are those of the weights kept; the recipe line says so."""
    import finebert
    from finebert.training import describe_recipe, prepare

    rows = sst2_rows(400)
    picked = [r for r in rows if r[1] == "0"][:20] + [r for r in rows if r[1] == "1"][:20]
    data = write_csv(tmp_path / "few.csv", ["sentence", "label"], picked)
    validation = write_csv(tmp_path / "val.csv", ["sentence", "label"], rows[300:400])
    runs = {share: finebert.train(data, validation=validation, quiet=True, epochs=4, fine_tuned_share=share)
            for share in (1.0, 0.75, 0.5)}
    weights = {share: clf.engine.model.state_dict() for share, clf in runs.items()}
    moved = 0
    for name, fine_tuned in weights[1.0].items():
        if fine_tuned.is_floating_point():
            quarter, half = weights[0.75][name] - fine_tuned, weights[0.5][name] - fine_tuned
            assert np.allclose(half.numpy(), 2 * quarter.numpy(), atol=1e-6), name
            moved += int(half.abs().max() > 1e-4)
    assert moved > 50  # fine-tuning moved most tensors, so the shares differ
    for clf in runs.values():
        assert clf.metrics["val_accuracy"] == finebert.evaluate(clf, validation).accuracy
    task = prepare(data, None, TrainConfig(fine_tuned_share=0.7))
    assert describe_recipe(task.config, task).endswith(
        "fine-tuned for 20 epochs, kept at 0.7 of the way from the starting weights to the fine-tuned ones")
