"""The evaluation report: files, a self-contained HTML page, and what headless Chromium shows of it."""

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from conftest import cli, sst2_rows, write_csv

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PLOTS = {"confusion_matrix.png", "reliability.png", "per_class.png", "training.png"}


@pytest.fixture(scope="module")
def report(trained, tmp_path_factory):
    _, folder = trained
    dev = write_csv(tmp_path_factory.mktemp("dev") / "dev.csv", ["review", "sentiment"],
                    [[t, "positive" if y == "1" else "negative"] for t, y in sst2_rows(300, split="dev")])
    out = tmp_path_factory.mktemp("report") / "r"
    result = cli("evaluate", folder, dev, "--report", out)
    assert result.returncode == 0, result.stderr
    return out


def test_report_files_and_metrics(report):
    assert {p.name for p in report.iterdir()} == PLOTS | {"metrics.json", "report.html"}
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["examples"] == 300 and sum(map(sum, metrics["confusion_matrix"])) == 300
    assert "ece_after" in metrics["calibration"]


def test_report_html_is_self_contained_and_lists_confident_mistakes(report):
    page = (report / "report.html").read_text()
    assert not re.search(r'(src|href)="(?!data:)', page)  # no external assets: images are inlined
    assert page.count("data:image/png;base64,") == 4
    mistakes = re.findall(r"<tr><td>(0\.\d+)</td>", page.split('id="mistakes"')[1])
    assert len(mistakes) == 15 and [float(m) for m in mistakes] == sorted(map(float, mistakes), reverse=True)


def test_training_writes_a_report_for_its_validation_data(trained):
    _, folder = trained
    assert {p.name for p in (folder / "report").iterdir()} == PLOTS | {"metrics.json", "report.html"}
    assert json.loads((folder / "report" / "metrics.json").read_text())["examples"] == 40


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium package is not installed (.ci/run installs it)")
def test_report_renders_in_headless_chromium(report, tmp_path):
    from PIL import Image

    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", f"--user-data-dir={tmp_path / 'profile'}",
                    "--window-size=1100,1400", f"--screenshot={shot}", (report / "report.html").as_uri()],
                   capture_output=True, timeout=120)
    image = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert image.shape == (1400, 1100, 3)
    # the plots drew: the reliability curve's blue (#2b7de9) and the confusion matrix's dark blue cells
    blue = (np.abs(image - (0x2B, 0x7D, 0xE9)).sum(axis=2) < 30).sum()
    dark = ((image[..., 2] > 90) & (image[..., 0] < 40) & (image[..., 1] < 110)).sum()
    assert blue > 1500 and dark > 2000, (blue, dark)
