"""`finebert demo`: the whole workflow on the five built-in reviews, each step shown as it happens."""

from __future__ import annotations


def run_demo() -> None:
    import tempfile

    import numpy as np
    from rich.console import Console
    from rich.table import Table

    from finebert.config import DEFAULT_BACKBONE, resolve_backbone
    from finebert.data import SAMPLE_LABEL_NAMES, sample_dataset
    from finebert.inference import Classifier
    from finebert.labels import LabelSpace
    from finebert.tokenization import Tokenizer

    console = Console(highlight=False)
    step = lambda n, title: console.print(f"\n[bold]Step {n}. {title}[/bold]")  # noqa: E731
    data = sample_dataset()

    step(1, "Data: the five built-in reviews (1 = positive, 0 = negative)")
    table = Table("review", "label")
    for text, label in zip(data.texts, data.labels):
        table.add_row(text, label)
    console.print(table)

    step(2, "Tokenization: WordPiece from the backbone's tokenizer.json")
    tokenizer = Tokenizer(resolve_backbone(DEFAULT_BACKBONE), 128)
    shown = tokenizer.explain(data.texts[0])
    console.print("tokens:         " + " ".join(shown["tokens"]))
    console.print("input_ids:      " + " ".join(map(str, shown["input_ids"])))
    batch = tokenizer.pad(tokenizer.encode(data.texts).ids)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    console.print(f"the batch is padded to its longest review: input_ids {ids.shape}, attention mask (1 = token, 0 = padding):")
    for row in mask:
        console.print("  " + " ".join(map(str, row)))

    step(3, "Model: BERT encoder + linear head on the [CLS] state, z = W·h_cls + b")
    import torch

    from finebert.model import build_model

    torch.manual_seed(0)
    model = build_model(resolve_backbone(DEFAULT_BACKBONE), 2, pooling="cls", dropout=0.1).eval()
    cfg = model.encoder.config
    params = sum(p.numel() for p in model.parameters())
    console.print(f"{DEFAULT_BACKBONE}: {cfg.num_hidden_layers} layers, hidden size {cfg.hidden_size}, "
                  f"{params / 1e6:.1f}M parameters; head W {tuple(model.head.weight.T.shape)} (hidden x classes)")
    with torch.no_grad():
        logits = model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()  # (5, 2)
    probs = LabelSpace.from_data(data.labels, names=SAMPLE_LABEL_NAMES).postprocess(logits).probabilities
    console.print("before training the head is random, so the probabilities sit near 0.5:")
    for text, z, p in zip(data.texts, logits, probs):
        console.print(f"  logits [{z[0]:+.3f} {z[1]:+.3f}] -> softmax [{p[0]:.3f} {p[1]:.3f}]  {text}")

    step(4, "Training: cross-entropy loss, backpropagation through every weight, AdamW")
    import finebert

    losses = []
    clf = finebert.train(None, recipe="fine-tune", epochs=15, warmup_ratio=0.0, quiet=True, seed=0,
                         on_step=lambda s, loss: losses.append(loss))
    console.print("(the plain recipe, shown step by step; on files of up to 300 rows `finebert train` starts the "
                  "head from a logistic regression on sentence embeddings: the few-shot recipe)")
    for s, loss in enumerate(losses, 1):
        console.print(f"  step {s:2d}  loss {loss:.4f}  " + "█" * max(1, round(loss * 40)))

    step(5, "Evaluation on the sample (a real run evaluates on held-out data)")
    report = finebert.evaluate(clf, data)
    console.print(f"accuracy {report.accuracy:.2f}, macro F1 {report.f1:.2f}, confusion matrix {report.confusion_matrix}")

    step(6, "Prediction: softmax(z) gives each label's probability")
    text = "I really enjoyed the movie!"
    p = clf.classify(text)
    console.print(f"\"{text}\" -> [bold]{p.label}[/bold] (confidence {p.confidence:.2f})  {p.probabilities}")

    step(7, "Save and load: a folder Hugging Face and finebert both load")
    with tempfile.TemporaryDirectory() as tmp:
        clf.save(f"{tmp}/model")
        again = Classifier.load(f"{tmp}/model")
        same = np.allclose(again.predict_proba(text), clf.predict_proba(text), atol=1e-5)
        console.print(f"saved files: {', '.join(sorted(p.name for p in __import__('pathlib').Path(tmp, 'model').iterdir()))}")
        console.print(f"reloaded model gives the same prediction: {same}")
    console.print(f"\nNext: finebert train your_data.csv --output model/  (labels here: {', '.join(SAMPLE_LABEL_NAMES)})")
