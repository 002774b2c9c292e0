"""`finebert tune` with real tiny trainings: the study's record, the kept model, kill and resume, bad input."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import cli, sst2_rows, write_csv

optuna = pytest.importorskip("optuna", reason="tuning needs the tune extra: pip install 'finebert[tune]'")

FAST = ["--max-length", "32", "--batch-size", "16"]  # fixed for every trial: short runs on the tiny backbone


@pytest.fixture(scope="module")
def sst2_csv(tmp_path_factory):
    return write_csv(tmp_path_factory.mktemp("tune") / "sst2.csv", ["sentence", "label"],
                     [list(row) for row in sst2_rows(400)])


def finished(url: str, name: str) -> list:
    study = optuna.load_study(study_name=name, storage=url)
    return [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]


def test_tune_keeps_the_best_trials_model_with_its_record(tmp_path, sst2_csv, tiny_backbone):
    import finebert
    from finebert.inference import Classifier
    from finebert.tuning import Choice, Range
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    space = {"learning_rate": Range(1e-4, 3e-3, log=True), "epochs": Range(1, 4),
             "pooling": Choice(("cls", "normalized-mean")),
             "batch_size": None, "warmup_ratio": None, "dropout": None, "recipe": None, "freeze_layers": None}
    result = finebert.tune(sst2_csv, output=tmp_path / "best", trials=4, space=space, model=str(tiny_backbone),
                           max_length=32, quiet=True, log_dir=tmp_path / "tb", mlflow=uri)
    study = optuna.load_study(study_name="best", storage=f"sqlite:///{tmp_path / 'best'}.study.db")
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(finished(f"sqlite:///{tmp_path / 'best'}.study.db", "best")) == 4
    # the first trial runs train's own settings; a later one is kept only when clearly better than the one before
    assert study.trials[0].params == {"learning_rate": 2e-4, "epochs": 4, "pooling": "normalized-mean"}
    assert complete[0].user_attrs["verdict"] == "kept (the first complete trial)"
    kept = [t for t in complete if t.user_attrs["verdict"].startswith("kept")]
    for before, after in zip(kept, kept[1:]):
        assert after.value > before.value
    for t in complete[1:]:
        assert re.search(r"[+-]\d+\.\d\d ± \d+\.\d\d points against trial \d+", t.user_attrs["verdict"])
    top = kept[-1]
    assert (result.trial, result.value, result.objective) == (top.number, top.value, "val_accuracy")
    assert result.settings == top.params and set(top.params) >= {"learning_rate", "pooling"}

    kept = Classifier.load(tmp_path / "best")
    # the objective is the kept model's own validation score, and the model is that trial's, with its settings
    assert kept.metrics["val_accuracy"] == result.value and kept.metrics["tuning_trial"] == result.trial
    assert kept.config.pooling == top.params["pooling"]
    assert kept.config.learning_rate == pytest.approx(top.params["learning_rate"])
    assert kept.predict(["a wonderful, moving film"])[0] in kept.labels
    rows = (tmp_path / "best" / "trials.csv").read_text().splitlines()
    assert len(rows) == 5 and rows[0].startswith("trial,state,value")
    assert (tmp_path / "best" / "report" / "tuning.html").is_file()
    assert (tmp_path / "best" / "report" / "trials.png").is_file()
    assert not list(tmp_path.glob(".best.trial-*"))  # no trial's scratch folder left behind

    assert sorted(p.name for p in (tmp_path / "tb").iterdir()) == [f"trial-{t.number}" for t in study.trials]
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("finebert").experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 4 and parent.data.metrics["kept_val_accuracy"] == result.value
    assert any(a.path == "model/trials.csv" for a in client.list_artifacts(parent.info.run_id, "model"))


def test_a_killed_study_resumes_to_exactly_its_trials(tmp_path, sst2_csv, tiny_backbone):
    """Killed (SIGKILL) once two trials have finished, then run again: three finished trials in all, not five."""
    from finebert.inference import Classifier

    args = ["tune", str(sst2_csv), "-o", str(tmp_path / "best"), "--trials", "3", "--model", str(tiny_backbone),
            "--epochs", "2", *FAST, "-q"]
    url = f"sqlite:///{tmp_path / 'best'}.study.db"
    process = subprocess.Popen([sys.executable, "-m", "finebert", *args], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
        try:
            if len(finished(url, "best")) >= 2:
                break
        except Exception:  # the study is not created yet
            pass
    assert process.poll() is None, f"tune ended before it could be killed: {process.stderr.read()[-2000:]}"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    before = finished(url, "best")
    assert len(before) == 2

    result = cli(*args, check=True)
    after = finished(url, "best")
    assert len(after) == 3 and [t.number for t in after[:2]] == [t.number for t in before]
    assert "saved" in result.stdout
    kept = Classifier.load(tmp_path / "best")
    kept_trials = [t for t in after if t.state.name == "COMPLETE" and t.user_attrs["verdict"].startswith("kept")]
    assert kept.metrics["tuning_trial"] == kept_trials[-1].number
    assert kept.predict(["dull and lifeless"])[0] in kept.labels


def test_a_study_of_other_data_is_refused(tmp_path, sst2_csv, tiny_backbone):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    common = ["--study", url, "--study-name", "s", "--trials", "1", "--model", str(tiny_backbone), "--epochs", "1",
              *FAST, "-q"]
    cli("tune", sst2_csv, "-o", tmp_path / "a", *common, check=True)
    other = write_csv(tmp_path / "other.csv", ["sentence", "label"], [list(row) for row in sst2_rows(400)[::-1]])
    result = cli("tune", other, "-o", tmp_path / "b", *common)
    assert result.returncode == 2 and "belongs to other data" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "b").exists()


@pytest.mark.parametrize("space, message", [
    ("lr: {low: 1.0e-5, high: 1.0e-3}", "lr: not a setting; did you mean learning_rate?"),
    ("learning_rate: {low: 1.0e-3, high: 1.0e-5}", "empty range, low 0.001 is above high 1e-05"),
    ("batch_size: []", "batch_size: empty choice"),
    ("pooling: [cls, max]", "pooling='max' is invalid"),
    ("label_column: [a, b]", "label_column: describes the data or the run, so it cannot be searched"),
    ("learning_rate: {low: 1e-5, high: 1e-3, log: yes please}", "log is true or false"),
    ("- learning_rate", "give one entry per setting"),
])
def test_bad_space_files_are_one_line_and_write_nothing(tmp_path, sst2_csv, tiny_backbone, space, message):
    (tmp_path / "space.yaml").write_text(space + "\n")
    result = cli("tune", sst2_csv, "-o", tmp_path / "best", "--space", tmp_path / "space.yaml",
                 "--model", tiny_backbone)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and result.stderr.startswith(f"error: {tmp_path / 'space.yaml'}: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["space.yaml"]


def test_space_file_ranges_choices_and_fixed_values_reach_the_trials(tmp_path):
    from finebert.tuning import Choice, Range, read_space

    (tmp_path / "space.yaml").write_text("learning_rate: {low: 1e-5, high: 2e-4, log: true}\nbatch_size: [8, 16]\n"
                                         "dropout: 0.1\nfreeze_layers: null\nepochs: {low: 1, high: 3}\n")
    base = {"freeze_layers": Range(0, 2), "pooling": Choice(("cls", "mean"))}
    space = read_space(tmp_path / "space.yaml", base)
    assert space == {"pooling": Choice(("cls", "mean")), "learning_rate": Range(1e-5, 2e-4, True),
                     "batch_size": Choice((8, 16)), "dropout": 0.1, "epochs": Range(1, 3)}


@pytest.mark.parametrize("args, message", [
    (["--study", "sqlite:////no/such/folder/study.db"], "cannot open that storage"),
    (["--timeout", "soon"], "--timeout 'soon': give a duration"),
    (["--trials", "0"], "trials=0"),
])
def test_bad_study_options_are_one_line_and_write_nothing(tmp_path, sst2_csv, tiny_backbone, args, message):
    result = cli("tune", sst2_csv, "-o", tmp_path / "best", "--model", tiny_backbone, *args)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["multi-label", "pairs"])
def test_multi_label_and_pair_data_tune_on_their_own_objective(tmp_path, tiny_backbone, kind):
    from conftest import subset_file
    from finebert.inference import Classifier

    if kind == "multi-label":
        data, extra, objective = subset_file(tmp_path, "goemotions/train.tsv", 300), ["--multi-label"], "val_macro_f1"
    else:
        data = subset_file(tmp_path, "mrpc/train.csv", 300)
        extra, objective = ["--text-pair-column", "sentence2"], "val_accuracy"
    (tmp_path / "space.yaml").write_text("learning_rate: {low: 1.0e-4, high: 1.0e-3, log: true}\nepochs: 1\n"
                                         "batch_size: null\nwarmup_ratio: null\ndropout: null\npooling: null\n"
                                         "recipe: null\nfreeze_layers: null\n")
    result = cli("tune", data, "-o", tmp_path / "best", "--trials", "2", "--space", tmp_path / "space.yaml",
                 "--model", tiny_backbone, "--max-length", "48", *extra, "-q", check=True)
    kept = Classifier.load(tmp_path / "best")
    assert kept.metrics["tuning_objective"] == objective and objective[4:].replace("_", "-") in result.stdout
    assert kept.metrics[objective] == kept.metrics["tuning_value"]
    assert kept.label_space.multi_label == (kind == "multi-label") and kept.pairs == (kind == "pairs")
    trials = (tmp_path / "best" / "trials.csv").read_text().splitlines()
    assert len(trials) == 3 and ",complete," in trials[1]
