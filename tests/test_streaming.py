"""Scoring files of any size: `finebert predict --file BIG --output scored.{csv,jsonl,parquet}` streams in
chunks, keeps every input column, and holds memory flat; `finebert.ray.predict` gives the same answers."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import cli, sst2_rows, write_csv


def predict_to(model, source, output, *extra):
    """`finebert predict MODEL --file SOURCE --output OUTPUT`, through the console script's entry point in this
    process (conftest.cli: the same code, without 6 s of imports a call; test_cli.py runs the installed script)."""
    return cli("predict", model, "--file", source, "--output", output, "--quiet", *extra)


@pytest.fixture(scope="module")
def scored_input(tmp_path_factory):
    """300 real SST-2 sentences with an id column, the text under a non-default name, and a label column."""
    rows = [[f"r{i}", text, label] for i, (text, label) in enumerate(sst2_rows(300, "dev"))]
    return write_csv(tmp_path_factory.mktemp("scoring") / "in.csv", ["id", "review", "gold"], rows)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_every_format_keeps_the_input_columns_and_matches_the_library(trained, scored_input, tmp_path, suffix):
    clf, folder = trained
    out = tmp_path / f"scored{suffix}"
    result = predict_to(folder, scored_input, out, "--engine", "pytorch")
    assert result.returncode == 0, result.stderr
    with open(scored_input, encoding="utf-8", newline="") as f:
        source = list(csv.DictReader(f))
    if suffix == ".csv":
        with open(out, encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
        probs = np.array([[float(r[f"p_{n}"]) for n in clf.labels] for r in rows])
    elif suffix == ".jsonl":
        rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        probs = np.array([[r["probabilities"][n] for n in clf.labels] for r in rows])
    else:
        import pyarrow.parquet as pq

        rows = pq.read_table(out).to_pylist()
        probs = np.array([[r[f"p_{n}"] for n in clf.labels] for r in rows])
    assert len(rows) == len(source) == 300
    assert [(r["id"], r["review"], r["gold"]) for r in rows] == [(s["id"], s["review"], s["gold"]) for s in source]
    expected = clf.predict_proba([s["review"] for s in source])
    np.testing.assert_allclose(probs, expected, atol=2e-4)
    assert [r["predicted_label"] for r in rows] == [clf.labels[k] for k in expected.argmax(axis=1)]
    np.testing.assert_allclose([float(r["confidence"]) for r in rows], expected.max(axis=1), atol=2e-4)
    # a model trained for one epoch on 400 rows is right on most of the dev set; the file was read in order
    accuracy = np.mean([r["predicted_label"] == ("positive" if r["gold"] == "1" else "negative") for r in rows])
    assert accuracy > 0.65
    assert not list(tmp_path.glob(".*tmp*"))


def test_a_bad_row_late_in_the_file_leaves_nothing_behind(trained, tmp_path):
    _, folder = trained
    rows = [[text] for text, _ in sst2_rows(2400)]
    rows[2199] = [""]  # data row 2200: past the first chunk (2,048 rows), so some output has been written by then
    source = write_csv(tmp_path / "in.csv", ["sentence"], rows)
    out = tmp_path / "scored.csv"
    result = predict_to(folder, source, out)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: ") and "row 2200" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


def test_multi_label_and_pair_models_stream_their_own_columns(emotions, paraphrases, tmp_path):
    clf, folder, data = emotions
    out = tmp_path / "emotions.jsonl"
    assert predict_to(folder, data, out).returncode == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    texts = [r["text"] for r in rows]
    assert [r["predicted_labels"] for r in rows] == [p.labels for p in clf.classify(texts)]

    clf, folder, data = paraphrases
    out = tmp_path / "pairs.csv"
    assert predict_to(folder, data, out).returncode == 0  # the pair column is the one the model was trained with
    with open(out, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    expected = clf.predict_proba([r["sentence1"] for r in rows], [r["sentence2"] for r in rows])
    np.testing.assert_allclose([[float(r[f"p_{n}"]) for n in clf.labels] for r in rows], expected, atol=2e-4)


@pytest.fixture(scope="module")
def tiny_model(tiny_backbone, tmp_path_factory):
    """A model on the tiny backbone, exported to ONNX: the million-row test is about memory, not accuracy, and
    ONNX Runtime (what `auto` picks for an exported model) scores a tiny model in about half PyTorch's time."""
    import finebert
    from finebert.export import export

    tmp = tmp_path_factory.mktemp("tiny-model")
    data = write_csv(tmp / "train.csv", ["sentence", "label"], [list(r) for r in sst2_rows(200)])
    finebert.train(data, output=tmp / "model", model=str(tiny_backbone), epochs=1, max_length=32, eval_batch_size=256,
                   quiet=True)  # large scoring batches: a tiny model's time goes into per-call overhead
    export(tmp / "model", validate=data)
    return tmp / "model"


def peak_rss_mb(model, source, output) -> float:
    """Peak resident memory of a whole `finebert predict` process: the kernel's high-water mark (VmHWM) of
    the process itself (getrusage's maxrss would carry over the forking pytest process's size)."""
    code = ("import sys; from finebert.cli import main; sys.argv = ['finebert', *sys.argv[1:]]\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "hwm = next(l for l in open('/proc/self/status') if l.startswith('VmHWM:'))\n"
            "print(int(hwm.split()[1]) / 1024)")
    result = subprocess.run([sys.executable, "-c", code, "predict", str(model), "--file", str(source), "--output",
                             str(output), "--engine", "onnx-fp32", "--quiet"], capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr
    return float(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_million_rows_stream_in_flat_memory(tiny_model, tmp_path):
    sentences = [text for text, _ in sst2_rows(5000)]
    small, big = tmp_path / "small.csv", tmp_path / "big.csv"
    for path, n in ((small, 50_000), (big, 1_000_000)):
        with open(path, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "sentence"])
            writer.writerows([i, sentences[i % len(sentences)]] for i in range(n))
    small_mb = peak_rss_mb(tiny_model, small, tmp_path / "small.parquet")
    big_mb = peak_rss_mb(tiny_model, big, tmp_path / "big.parquet")
    print(f"peak RSS: 50,000 rows {small_mb:.0f} MB, 1,000,000 rows {big_mb:.0f} MB")
    assert big_mb < 1536
    assert big_mb < small_mb * 1.10  # twenty times the rows, (almost) the same memory

    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "big.parquet", columns=["id", "predicted_label"])
    assert table.num_rows == 1_000_000
    assert table.column("id")[999_999].as_py() == "999999"


@pytest.mark.slow
def test_ray_data_gives_the_same_predictions_as_the_engine_in_process(trained, tmp_path):
    import ray  # the [ray] extra, installed by '.[all,dev]'

    import finebert.ray

    clf, folder = trained
    rows = [[f"r{i}", text] for i, (text, _) in enumerate(sst2_rows(1000))]
    source = write_csv(tmp_path / "in.csv", ["id", "sentence"], rows)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)  # half a CPU per actor leaves one for reading
    try:
        scored = finebert.ray.predict(source, folder, engine="pytorch", actors=2, cpus_per_actor=0.5,
                                         batch_size=256).to_pandas()
    finally:
        ray.shutdown()
    scored = scored.sort_values("id", key=lambda ids: ids.str[1:].astype(int))
    assert list(scored["id"]) == [r[0] for r in rows]
    expected = clf.predict_proba([r[1] for r in rows])
    np.testing.assert_allclose(scored[[f"p_{n}" for n in clf.labels]].to_numpy(dtype=float), expected, atol=2e-4)
    assert list(scored["predicted_label"]) == [clf.labels[k] for k in expected.argmax(axis=1)]
