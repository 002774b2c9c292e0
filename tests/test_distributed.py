"""Training on 2 real processes (DistributedDataParallel, gloo over loopback) under torchrun."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import DATA, cli, sst2_rows, write_csv

FINEBERT = str(Path(sys.executable).parent / "finebert")


def train(*args, timeout=600):
    result = subprocess.run([FINEBERT, "train", *map(str, args)], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_two_processes_train_save_once_and_match_one_process(tmp_path):
    import numpy as np

    import finebert
    from finebert.data import Dataset, read_dataset
    from finebert.inference import Classifier

    data = write_csv(tmp_path / "reviews.csv", ["sentence", "label"], [[t, y] for t, y in sst2_rows(500)])
    # fp32 on every CPU: under bf16 autocast a half batch rounds apart from the whole one (probabilities 0.003 apart
    # on AVX-512 bf16 CPUs), and this compares the gradient averaging, not bf16's rounding
    common = ["--epochs", "1", "--max-length", "32", "--seed", "3", "--label-names", "negative,positive",
              "--precision", "fp32"]
    cli("train", data, "--output", tmp_path / "one", *common, "--quiet", check=True)  # one process: this one
    run = train(data, "--output", tmp_path / "two", *common, "--nproc", "2")
    assert run.stdout.count("saved ") == 1 and (run.stdout + run.stderr).count("epoch 1: loss") == 1  # the lead alone
    # 450 training rows (50 held out) in batches of 32: 15 steps, each split between the two processes
    assert json.loads((tmp_path / "two" / "finebert.json").read_text())["history"][0]["step"] == 15

    full = read_dataset(DATA / "sst2" / "dev.tsv")
    dev = Dataset(full.texts[:300], full.labels[:300], "sst2 dev")
    one, two = Classifier.load(tmp_path / "one"), Classifier.load(tmp_path / "two")
    assert finebert.evaluate(one, dev).accuracy > 0.7  # it learned (0.77 here)
    # the same gradients, averaged over two processes: the same model, to float rounding (5e-7 here)
    np.testing.assert_allclose(two.predict_proba(dev.texts), one.predict_proba(dev.texts), atol=1e-4)


SCRIPT = '''
import json, sys
import numpy as np
import torch
from finebert.training import distributed
from finebert.config import TrainConfig
from finebert.training import TrainState, prepare

rank, world = distributed.setup()
config = TrainConfig(model=sys.argv[2], max_length=32, batch_size=10, epochs=1, recipe="fine-tune")
task = prepare(sys.argv[1], None, config)
state = TrainState.start(task, config, rank, world)
lr = {name: group["peak_lr"] for group in state.optimizer.param_groups for p in group["params"]
      for name, q in state.model.named_parameters() if p is q}
batches = state.epoch_batches(config)
shares = [len(np.array_split(b, world)[rank]) for b in batches]
sys.stdout.write(json.dumps({"rank": rank, "wrapped": type(state.forward).__name__, "batches": len(batches), "shares": shares,
                  "steps_per_epoch": state.steps_per_epoch, "lr_head": lr["head.weight"],
                  "lr_embeddings": lr["encoder.embeddings.word_embeddings.weight"]}) + "\\n")  # one write: the ranks' lines stay whole
sys.stdout.flush()
distributed.finish()
'''


def test_every_process_gets_the_same_batches_and_the_bare_models_learning_rates(tiny_backbone, tmp_path):
    data = write_csv(tmp_path / "d.csv", ["sentence", "label"], [[t, y] for t, y in sst2_rows(111)])
    script = tmp_path / "probe.py"
    script.write_text(SCRIPT)
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                          str(script), str(data), str(tiny_backbone)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    ranks = sorted((json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")), key=lambda r: r["rank"])
    assert [r["rank"] for r in ranks] == [0, 1] and {r["wrapped"] for r in ranks} == {"DistributedDataParallel"}
    # 100 training rows (11 held out), batches of 10: 10 batches, 5 examples per process each
    assert ranks[0]["batches"] == ranks[1]["batches"] == ranks[0]["steps_per_epoch"] == 10
    assert ranks[0]["shares"] == ranks[1]["shares"] == [5] * 10
    for r in ranks:  # layer-wise rates as in one process: the head's above the embeddings' (0.8 ** 3 for 2 layers)
        assert r["lr_head"] == 2e-4 and abs(r["lr_embeddings"] - 2e-4 * 0.8 ** 3) < 1e-12


def test_time_budget_stops_every_process(tiny_backbone, tmp_path):
    data = write_csv(tmp_path / "d.csv", ["sentence", "label"], [[t, y] for t, y in sst2_rows(2000)])
    start = time.time()
    train(data, "--output", tmp_path / "m", "--model", tiny_backbone, "--epochs", "50", "--max-time", "3",
          "--nproc", "2", "--quiet", timeout=300)
    history = json.loads((tmp_path / "m" / "finebert.json").read_text())["history"]
    assert history[-1]["stopped"] == "max_time" and time.time() - start < 120


def test_resume_with_the_same_number_of_processes(tiny_backbone, tmp_path):
    data = write_csv(tmp_path / "d.csv", ["sentence", "label"], [[t, y] for t, y in sst2_rows(1500)])
    out = tmp_path / "m"
    args = [FINEBERT, "train", data, "--output", out, "--model", tiny_backbone, "--epochs", "2", "--max-length", "32",
            "--nproc", "2", "--checkpoint-minutes", "0.01", "--quiet"]
    proc = subprocess.Popen(list(map(str, args)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not list((out / "checkpoints").glob("step-*")) and time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    import psutil

    for p in [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]:
        p.send_signal(signal.SIGKILL)  # the launcher and both workers (torchrun starts them in sessions of their own)
    proc.wait()
    other = cli(*args[1:-5], "--quiet", "--resume")
    assert other.returncode == 2 and "number of processes" in other.stderr  # one process cannot resume two
    resumed = subprocess.run(list(map(str, [*args, "--resume"])), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((out / "finebert.json").read_text())["history"][-1]["epoch"] == 2
