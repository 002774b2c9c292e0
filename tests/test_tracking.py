"""Experiment tracking on real tiny trainings: TensorBoard event files and MLflow runs, read back with the tools'
own readers (EventAccumulator, MlflowClient), hold the losses training printed and the scores it reported."""

import re
import subprocess
import sys
import time

import pytest

from conftest import cli, sst2_rows, write_csv

pytest.importorskip("mlflow", reason="tracking needs the track extra: pip install 'finebert[track]'")
pytest.importorskip("tensorboard", reason="tracking needs the track extra: pip install 'finebert[track]'")


@pytest.fixture(scope="module")
def sst2_csv(tmp_path_factory):
    return write_csv(tmp_path_factory.mktemp("track") / "sst2.csv", ["sentence", "label"],
                     [list(row) for row in sst2_rows(400)])


def scalars(log_dir, tag: str) -> dict[int, float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir))
    events.Reload()
    return {e.step: e.value for e in events.Scalars(tag)}


def test_cli_train_logs_what_it_printed_to_tensorboard_and_mlflow(tmp_path, sst2_csv, tiny_backbone):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = cli("train", sst2_csv, "-o", tmp_path / "model", "--model", tiny_backbone, "--epochs", "2",
                 "--max-length", "32", "--learning-rate", "3e-4", "--log-dir", tmp_path / "tb", "--mlflow", uri,
                 check=True)
    printed = [(float(loss), float(score)) for loss, score in
               re.findall(r"epoch \d+: loss ([0-9.]+), validation accuracy ([0-9.]+)", result.stderr + result.stdout)]
    assert len(printed) == 2, result

    losses, rates = scalars(tmp_path / "tb", "train/loss"), scalars(tmp_path / "tb", "train/learning_rate")
    accuracy = scalars(tmp_path / "tb", "val/accuracy")
    epoch_ends = sorted(accuracy)  # val/accuracy is logged at each epoch's last step
    assert len(epoch_ends) == 2 and epoch_ends[-1] == max(losses)
    assert [round(losses[s], 4) for s in epoch_ends] == [loss for loss, _ in printed]
    assert [round(accuracy[s], 4) for s in epoch_ends] == [score for _, score in printed]
    assert max(rates.values()) == pytest.approx(3e-4, rel=0.05) and rates[max(rates)] < rates[epoch_ends[0]]

    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("finebert").experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "model"
    assert run.data.params["learning_rate"] == "0.0003" and run.data.params["epochs"] == "2.0"
    history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "loss")}
    assert history == pytest.approx(losses, abs=1e-6)
    val = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "val_accuracy")}
    assert [round(val[s], 4) for s in epoch_ends] == [score for _, score in printed]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert {"model/finebert.json", "model/model.safetensors", "model/report"} <= artifacts


def test_every_step_loss_reaches_tensorboard(tmp_path, sst2_csv, tiny_backbone):
    import finebert

    seen = {}
    finebert.train(sst2_csv, model=str(tiny_backbone), epochs=1, max_length=32, quiet=True, log_dir=tmp_path / "tb",
                   on_step=lambda step, loss: seen.__setitem__(step, loss))
    assert scalars(tmp_path / "tb", "train/loss") == pytest.approx(seen, abs=1e-6)
    assert len(seen) >= 6


def test_on_epoch_can_stop_a_run_keeping_its_best_epoch(sst2_csv, tiny_backbone):
    import finebert

    records = []

    def stop_after_first(record):
        records.append(record)
        return True

    clf = finebert.train(sst2_csv, model=str(tiny_backbone), epochs=3, max_length=32, quiet=True,
                         on_epoch=stop_after_first)
    assert len(records) == 1 and clf.info.history[-1]["stopped"] == "pruned"
    assert clf.metrics["best_epoch"] == 1 and clf.metrics["val_accuracy"] == records[0]["val_accuracy"]


def test_tracking_off_imports_neither_tool(tmp_path, sst2_csv, tiny_backbone):
    code = ("import sys, finebert; "
            f"finebert.train({str(sst2_csv)!r}, model={str(tiny_backbone)!r}, epochs=1, max_length=32, quiet=True); "
            "print(sorted(m for m in ('mlflow', 'tensorboard', 'optuna') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_unreachable_mlflow_store_is_one_line_and_writes_nothing(tmp_path, sst2_csv, tiny_backbone):
    import socket

    with socket.socket() as unused:  # a port nothing listens on
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    started = time.monotonic()
    result = cli("train", sst2_csv, "-o", tmp_path / "model", "--model", tiny_backbone, "--epochs", "1",
                 "--mlflow", f"http://127.0.0.1:{port}")
    assert result.returncode == 2 and time.monotonic() - started < 60  # not MLflow's four minutes of retries
    assert result.stderr.startswith(f"error: --mlflow http://127.0.0.1:{port}: cannot open that tracking store (no server")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "model").exists()
