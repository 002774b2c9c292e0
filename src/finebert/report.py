"""Evaluation reports people look at: metrics.json, PNG plots and one self-contained report.html.

    REPORT/metrics.json            the evaluation Report (evaluation.py) as JSON
    REPORT/confusion_matrix.png    single-label: rows true, columns predicted
    REPORT/reliability.png         confidence against accuracy in 15 bins, before and after calibration
    REPORT/per_class.png           precision, recall and F1 of each class
    REPORT/training.png            loss and validation scores per epoch (from the model's history)
    REPORT/report.html             all of the above plus the most confident mistakes; images inlined,
                                   no external assets, so the file can be mailed or archived alone

`finebert evaluate MODEL DATA --report DIR` writes one; training writes one for its validation data
into the model folder (report/).
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import numpy as np

from finebert.calibration import BINS, reliability_points

MISTAKES = 15  # the most confident mistakes listed in report.html


def write_report(folder: str | Path, report, space, logits: np.ndarray, y: np.ndarray, temperature,
                 texts: list[str], pairs: list[str] | None, *, history: list, title: str) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    raw = space.postprocess(logits).probabilities
    outputs = space.postprocess(logits, temperature)
    plots = {}
    if report.confusion_matrix is not None:
        plots["confusion_matrix.png"] = _confusion_matrix(report)
    plots["reliability.png"] = _reliability(space, raw, outputs.probabilities, y)
    plots["per_class.png"] = _per_class(report)
    if history:
        plots["training.png"] = _training(history)
    for name, figure in plots.items():
        figure.savefig(folder / name, dpi=110, bbox_inches="tight")
    mistakes = _mistakes(space, outputs, y, texts, pairs)
    (folder / "report.html").write_text(_html(report, title, folder, list(plots), mistakes), encoding="utf-8")
    return folder / "report.html"


def _confusion_matrix(report):
    from matplotlib.figure import Figure  # not pyplot: no display, no global figures to close, 0.4 s less to import

    matrix = np.array(report.confusion_matrix)
    n = len(report.labels)
    fig = Figure(figsize=(1.2 + 0.7 * n, 1.0 + 0.6 * n))
    ax = fig.subplots()
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n), report.labels, rotation=45, ha="right")
    ax.set_yticks(range(n), report.labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center",
                    color="white" if matrix[i, j] > matrix.max() / 2 else "black")
    ax.set_title("Confusion matrix")
    return fig


def _reliability(space, raw, calibrated, y):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.6, 4.2))
    ax = fig.subplots()
    edges = np.linspace(0, 1, BINS + 1)
    ax.plot([0, 1], [0, 1], color="#999", linestyle="--", linewidth=1, label="perfect")
    for probs, name, color in ((raw, "uncalibrated", "#e0a030"), (calibrated, "calibrated", "#2b7de9")):
        confidence, correct = reliability_points(space, probs, y)
        which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, BINS - 1)
        xs = [confidence[which == b].mean() for b in range(BINS) if (which == b).any()]
        ys = [correct[which == b].mean() for b in range(BINS) if (which == b).any()]
        ax.plot(xs, ys, marker="o", color=color, label=name)
    ax.set_xlabel("confidence" if not space.multi_label else "probability of a label")
    ax.set_ylabel("accuracy" if not space.multi_label else "share of those labels present")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left")
    ax.set_title("Reliability diagram (15 bins)")
    return fig


def _per_class(report):
    from matplotlib.figure import Figure

    names = report.labels
    x = np.arange(len(names))
    fig = Figure(figsize=(1.5 + 0.9 * len(names), 3.6))
    ax = fig.subplots()
    for k, (key, color) in enumerate((("precision", "#2b7de9"), ("recall", "#e0a030"), ("f1", "#3aa655"))):
        ax.bar(x + (k - 1) * 0.27, [report.per_class[n][key] for n in names], 0.27, label=key, color=color)
    ax.set_xticks(x, names, rotation=30 if len(names) > 4 else 0, ha="right" if len(names) > 4 else "center")
    ax.set_ylim(0, 1.2)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.legend(loc="upper center", ncol=3, frameon=False)
    ax.set_title("Per class")
    return fig


def _training(history):
    from matplotlib.figure import Figure

    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(5, 3.4))
    ax = fig.subplots()
    ax.plot(epochs, [h["loss"] for h in history], marker="o", color="#b00020", label="training loss (last step)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    lines = ax.get_lines()
    scores = [k for k in ("val_accuracy", "val_macro_f1") if k in history[0]]
    if scores:
        other = ax.twinx()
        for key, color in zip(scores, ("#2b7de9", "#3aa655")):
            other.plot(epochs, [h[key] for h in history], marker="s", color=color, label=key.replace("_", " "))
        other.set_ylabel("validation score")
        lines += other.get_lines()
    ax.legend(lines, [line.get_label() for line in lines], loc="upper center", bbox_to_anchor=(0.5, -0.18),
              ncol=3, frameon=False, fontsize="small")
    ax.set_xticks(epochs)
    ax.set_title("Training")
    return fig


def _mistakes(space, outputs, y, texts, pairs) -> list[dict]:
    """The wrong predictions the model was surest of."""
    probs, decisions = outputs.probabilities, outputs.decisions
    truth = space.one_hot(y).astype(bool)
    wrong = (decisions != truth).any(axis=1)
    # how sure the model was of its wrong answer: the top probability (single-label), or the strongest
    # wrong decision about one label (multi-label)
    sureness = np.where(decisions != truth, np.where(decisions, probs, 1 - probs), 0).max(axis=1)
    rows = []
    for i in np.argsort(-sureness):
        if not wrong[i] or len(rows) == MISTAKES:
            continue
        rows.append({"text": texts[i] + (f"  ⟂  {pairs[i]}" if pairs else ""), "sureness": float(sureness[i]),
                     "true": ", ".join(space.names[k] for k in np.flatnonzero(truth[i])),
                     "predicted": ", ".join(space.names[k] for k in np.flatnonzero(decisions[i]))})
    return rows


def inline_figures(folder: Path, images: list[str]) -> str:
    """The PNG files `images` in `folder` as <figure> elements with the pictures inlined (base64): a page that
    travels alone."""
    e = html.escape
    return "".join(f'<figure><img alt="{e(name)}" src="data:image/png;base64,'
                   f'{base64.b64encode((folder / name).read_bytes()).decode()}"></figure>' for name in images)


def _html(report, title: str, folder: Path, images: list[str], mistakes: list[dict]) -> str:
    e = html.escape
    multi = report.problem_type == "multi_label"
    c = report.calibration
    headline = (f"macro-F1 <b>{report.f1:.4f}</b> · micro-F1 {report.micro_f1:.4f} · exact match {report.accuracy:.4f}"
                if multi else f"accuracy <b>{report.accuracy:.4f}</b> · macro-F1 {report.f1:.4f}")
    rows = "".join(f"<tr><td>{e(name)}</td><td>{v['precision']:.4f}</td><td>{v['recall']:.4f}</td>"
                   f"<td>{v['f1']:.4f}</td><td>{v['support']}</td></tr>" for name, v in report.per_class.items())
    figures = inline_figures(folder, images)
    wrong = "".join(f"<tr><td>{m['sureness']:.3f}</td><td>{e(m['true'])}</td><td>{e(m['predicted'])}</td>"
                    f"<td>{e(m['text'][:400])}</td></tr>" for m in mistakes) or '<tr><td colspan="4">none</td></tr>'
    t = c.get("temperature")
    temperature = "none" if t is None else (f"{t:.3f}" if isinstance(t, float) else ", ".join(f"{v:.2f}" for v in t))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>finebert report: {e(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 62rem; margin: 2rem auto; padding: 0 1rem; color: #222; }}
h1 {{ font-size: 1.4rem; }} h2 {{ font-size: 1.1rem; margin-top: 2rem; }} .muted {{ color: #666; }}
table {{ border-collapse: collapse; margin: .5rem 0; }} td, th {{ border: 1px solid #ddd; padding: .3rem .6rem; text-align: left; }}
th {{ background: #f4f6fa; }} figure {{ display: inline-block; margin: .5rem; vertical-align: top; }}
img {{ max-width: 29rem; }} .headline {{ font-size: 1.15rem; }}
</style></head><body>
<h1>finebert evaluation report</h1>
<p class="muted">{e(title)} · {report.examples} examples · labels: {e(", ".join(report.labels))}</p>
<p class="headline" id="headline">{headline}</p>
<p>Calibration ({e(report.engine)} engine, temperature {temperature}): ECE {c['ece_after']:.4f}
(uncalibrated {c['ece_before']:.4f}), log loss {c['log_loss_after']:.4f} (uncalibrated {c['log_loss_before']:.4f}).</p>
<h2>Per class</h2>
<table><tr><th>label</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>{rows}</table>
<h2>Plots</h2>{figures}
<h2>Most confident mistakes</h2>
<table id="mistakes"><tr><th>sureness</th><th>true</th><th>predicted</th><th>text</th></tr>{wrong}</table>
</body></html>
"""
