"""Suspect labels: k-fold fine-tuning and confident learning find rows whose label was flipped."""

import csv
import json

import numpy as np

from conftest import cli, sst2_rows, write_csv



def test_audit_ranks_flipped_labels_first(tmp_path):
    rows = [[t, "positive" if y == "1" else "negative", f"id-{i}"] for i, (t, y) in enumerate(sst2_rows(600))]
    flipped = set(np.random.default_rng(0).choice(600, 30, replace=False).tolist())
    for i in flipped:
        rows[i][1] = "negative" if rows[i][1] == "positive" else "positive"
    data = write_csv(tmp_path / "reviews.csv", ["sentence", "label", "id"], rows)
    out = tmp_path / "suspects.csv"
    result = cli("audit", data, "--output", out, "--folds", "3", "--max-length", "48", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "rows look mislabelled" in result.stdout and "most suspect" in result.stdout
    with open(out, encoding="utf-8", newline="") as f:
        suspects = list(csv.DictReader(f))
    assert suspects and list(suspects[0]) == ["sentence", "label", "id", "given_label", "likely_label", "score", "flagged"]
    ids = [int(s["id"].removeprefix("id-")) for s in suspects]
    top = ids[:30]
    assert len(flipped & set(top)) >= 8  # random ranking would find 1.5 of them
    for s in suspects:  # the likely label disagrees with the given one, and the original row is intact
        assert s["likely_label"] != s["given_label"] and s["label"] == s["given_label"]
    scores = [float(s["score"]) for s in suspects]
    assert all(0 <= v <= 1 for v in scores)


def test_audit_in_python_keeps_every_row_and_handles_multi_label(tmp_path):
    import finebert
    from conftest import data_rows

    _, rows = data_rows("goemotions/train.tsv", 240)
    path = tmp_path / "e.jsonl"
    path.write_text("".join(json.dumps({"text": t, "labels": labels.split(",")}) + "\n" for t, labels in rows))
    import finebert.auditing  # noqa: F401  the module loaded (as the CLI does) must not hide the function

    result = finebert.audit(path, folds=2, epochs=0.5, max_length=32, quiet=True)
    assert result.space.multi_label and result.probabilities.shape == (240, 7)
    assert sorted(result.ranking().tolist()) == list(range(240))
    written = result.write(tmp_path / "all.csv", every_row=True)
    with open(written, encoding="utf-8", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 240 and json.loads(table[0]["labels"])  # a JSON list stays a JSON list
