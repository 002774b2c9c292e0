"""Training survives: SIGKILL mid-epoch and --resume ends with the same model as an uninterrupted run;
Ctrl-C saves a checkpoint and says how to resume; a torn checkpoint is skipped for the one before it."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import cli, sst2_rows, write_csv

FINEBERT = str(Path(sys.executable).parent / "finebert")
BASE = ["--epochs", "2", "--max-length", "32", "--batch-size", "16", "--seed", "5", "--quiet"]


@pytest.fixture(scope="module")
def settings(tiny_backbone):
    """These runs test the machinery, not accuracy: a tiny BERT makes each one seconds long."""
    return [*BASE, "--model", str(tiny_backbone)]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rows = [[t, y] for t, y in sst2_rows(1200)]
    return write_csv(tmp_path_factory.mktemp("resume") / "reviews.csv", ["sentence", "label"], rows)


@pytest.fixture(scope="module")
def uninterrupted(data, settings, tmp_path_factory):
    out = tmp_path_factory.mktemp("plain") / "model"
    cli("train", data, "--output", out, *settings, check=True)
    return out


def start(data, out, settings, *extra):
    return subprocess.Popen([FINEBERT, "train", str(data), "--output", str(out), *settings, *map(str, extra)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_checkpoint(out: Path, proc, mid_epoch: bool, count: int = 1, timeout: float = 300) -> list[dict]:
    """Polls until `count` whole checkpoints exist, the newest saved mid-epoch if asked; returns their states."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        states = []
        for folder in sorted((out / "checkpoints").glob("step-*")):
            try:
                states.append(json.loads((folder / "state.json").read_text()))
            except (OSError, ValueError):
                pass
        if len(states) >= count and (not mid_epoch or states[-1]["position"] > 0):
            return states
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("no checkpoint appeared")


def weights(folder: Path) -> dict:
    from safetensors.numpy import load_file

    return load_file(str(folder / "model.safetensors"))


def assert_same_model(a: Path, b: Path):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert np.allclose(wa[key], wb[key], atol=1e-6), key
    ha = json.loads((a / "finebert.json").read_text())
    hb = json.loads((b / "finebert.json").read_text())
    strip = lambda history: [{k: v for k, v in r.items() if k != "seconds"} for r in history]  # noqa: E731
    assert strip(ha["history"]) == strip(hb["history"])
    assert ha["metrics"]["val_accuracy"] == hb["metrics"]["val_accuracy"]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_gives_the_same_model(data, settings, uninterrupted, tmp_path):
    out = tmp_path / "model"
    proc = start(data, out, settings, "--checkpoint-minutes", "0.005")
    states = wait_for_checkpoint(out, proc, mid_epoch=True, count=2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "finebert.json").exists() and states[-1]["position"] > 0
    kept = sorted(p.name for p in (out / "checkpoints").glob("step-*"))
    assert 1 <= len(kept) <= 2  # at most the last two

    result = cli("train", data, "--output", out, *settings, "--resume")
    assert result.returncode == 0, result.stderr
    assert_same_model(uninterrupted, out)
    assert not (out / "checkpoints").exists()  # the finished model replaced the run's checkpoints


@pytest.mark.slow
def test_torn_checkpoint_is_skipped_for_the_one_before(data, settings, uninterrupted, tmp_path):
    out = tmp_path / "model"
    proc = start(data, out, settings, "--checkpoint-minutes", "0.005")
    wait_for_checkpoint(out, proc, mid_epoch=False, count=2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    newest = sorted((out / "checkpoints").glob("step-*"))[-1]
    tensors = newest / "tensors.safetensors"
    with open(tensors, "r+b") as f:  # a torn write: the second half of the file never reached the disk
        f.truncate(tensors.stat().st_size // 2)
    result = cli("train", data, "--output", out, *settings, "--resume")
    assert result.returncode == 0, result.stderr
    assert_same_model(uninterrupted, out)


def test_death_between_an_epochs_last_step_and_its_record_resumes_to_the_same_model(data, settings, uninterrupted,
                                                                                  tmp_path, monkeypatch):
    """The checkpoint after an epoch's last step is saved before the epoch is validated and recorded: a run that
    dies there resumes with no step left in that epoch, and still records the loss its last step had."""
    from finebert.training import TrainState

    out = tmp_path / "model"
    record = TrainState.end_epoch

    def dies_validating(self, *args):
        monkeypatch.setattr(TrainState, "end_epoch", record)  # the resumed run records as usual
        raise RuntimeError("killed while validating")

    monkeypatch.setattr(TrainState, "end_epoch", dies_validating)
    with pytest.raises(RuntimeError, match="killed while validating"):  # BASE's settings, a checkpoint every step
        cli("train", data, "--output", out, *settings, "--checkpoint-minutes", "0")
    newest = json.loads(sorted((out / "checkpoints").glob("step-*"))[-1].joinpath("state.json").read_text())
    assert newest["history"] == [] and newest["position"] == newest["step"] > 0  # all of epoch 1, unrecorded

    result = cli("train", data, "--output", out, *settings, "--resume")
    assert result.returncode == 0, result.stderr
    assert_same_model(uninterrupted, out)


def test_ctrl_c_saves_a_checkpoint_and_says_how_to_resume(data, settings, tmp_path):
    out = tmp_path / "model"
    proc = start(data, out, settings, "--checkpoint-minutes", "0.005")
    wait_for_checkpoint(out, proc, mid_epoch=False)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "interrupted at step" in lines[0] and "--resume" in lines[0], stderr
    assert "Traceback" not in stderr
    assert (out / "checkpoints").is_dir() and not (out / "finebert.json").exists()

    again = cli("train", data, "--output", out, *settings)
    assert again.returncode == 2 and "add --resume to continue it" in again.stderr
    resumed = cli("train", data, "--output", out, *settings, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert (out / "finebert.json").is_file()


def test_resume_with_nothing_saved_yet_says_so_and_trains_from_the_beginning(data, settings, uninterrupted, tmp_path):
    """A script that always passes --resume works on its first run too (PyTorch Lightning's ckpt_path="last")."""
    out = tmp_path / "model"
    result = cli("train", data, "--output", out, *[s for s in settings if s != "--quiet"], "--resume")
    assert result.returncode == 0, result.stderr
    assert "nothing to resume: no usable checkpoint" in result.stdout
    assert_same_model(uninterrupted, out)


def test_resume_refuses_other_settings(data, settings, tmp_path):
    out = tmp_path / "model"
    proc = start(data, out, settings, "--checkpoint-minutes", "0.005")
    wait_for_checkpoint(out, proc, mid_epoch=False)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    other = [s if s != "5" else "6" for s in settings]  # another seed
    result = cli("train", data, "--output", out, *other, "--resume")
    assert result.returncode == 2 and "made with other data, settings or number of processes" in result.stderr


def test_failed_swap_keeps_the_old_model(trained, tmp_path, monkeypatch):
    """If the new folder cannot be moved into place, the earlier model is put back, whole."""
    import shutil

    from finebert.inference import Classifier

    clf, folder = trained
    target = tmp_path / "model"
    shutil.copytree(folder, target)
    before = (target / "model.safetensors").read_bytes()
    original = Path.rename

    def rename(self, dest):  # fail only the second rename (new folder -> target), as a full disk would
        if Path(dest) == target and self.name.startswith(".model.") and "old" not in self.name:
            raise OSError(28, "No space left on device")
        return original(self, dest)

    from finebert.errors import ModelError

    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(ModelError, match="no space left on the disk while saving"):
        clf.save(target)
    monkeypatch.undo()
    assert (target / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temporary folders left
    Classifier.load(target)


def test_unwritable_output_is_refused_before_training(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root ignores permissions: use a read-only place instead
            target = Path("/proc/finebert-model")
        else:
            target = locked / "model"
        result = cli("train", "unused.csv", "--output", target)
        assert result.returncode == 2 and "cannot write there" in result.stderr, result.stderr
    finally:
        locked.chmod(0o700)


@pytest.fixture()
def small_disk(tmp_path):
    """A real 2 MB file system (tmpfs): what a full disk looks like to finebert."""
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_is_a_clear_error_before_training_and_while_saving(trained, small_disk, reviews_csv):
    from finebert.errors import ModelError

    result = cli("train", reviews_csv, "--output", small_disk / "model")
    assert result.returncode == 2 and "MB free on that disk" in result.stderr and result.stderr.count("\n") == 1
    with pytest.raises(ModelError, match="no space left on the disk"):
        trained[0].save(small_disk / "model")  # the disk fills while writing the weights
    assert list(small_disk.iterdir()) == []  # nothing half-written
