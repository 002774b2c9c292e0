"""Explanations: which words moved a prediction, by integrated gradients on the word embeddings (Captum).

    clf.explain("I really enjoyed the movie!")
    -> Explanation(label="positive", words=["I", "really", "enjoyed", ...], scores=[0.02, 0.31, 1.85, ...])

A word's score is the sum of its WordPieces' attributions to the explained label's logit; positive
scores push towards the label, negative ones away. The baseline keeps [CLS] and [SEP] and puts [PAD]
everywhere else; by completeness the scores add up to the logit's change from that baseline. Texts
split into windows are explained chunk by chunk, with each chunk weighted as the pooling weights it
(mean: 1/K each; max: the chunk that gave the maximum).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from finebert.errors import MissingExtraError

STEPS = 50  # integration steps (Captum's default); more is smoother, slower


@dataclass
class Explanation:
    text: str
    label: str  # the label explained: the predicted (top) one unless another was asked for
    words: list[str]  # the words as written ("[SEP]" between the two texts of a pair)
    scores: list[float]  # one per word: + pushes towards `label`, - away from it
    text_pair: str | None = None

    def to_dict(self) -> dict:
        d = {"text": self.text, "label": self.label, "words": self.words, "scores": self.scores}
        return d if self.text_pair is None else {**d, "text_pair": self.text_pair}


def explain(classifier, texts: list[str], pairs: list[str] | None = None, *, label: str | None = None,
            steps: int = STEPS) -> list[Explanation]:
    """Word attributions for each text, towards `label` (default: each text's top label)."""
    import torch

    try:
        from captum.attr import LayerIntegratedGradients
    except ImportError:
        raise MissingExtraError("captum", "explain") from None

    model = classifier.torch_model()
    config, tokenizer = classifier.config, classifier.tokenizer
    targets = classifier.label_space.shown(classifier.outputs(texts, pairs)).top if label is None else \
        np.full(len(texts), classifier.labels.index(label))
    forward = lambda ids, mask, types: model(ids, mask, types)  # noqa: E731
    ig = LayerIntegratedGradients(forward, model.encoder.get_input_embeddings())
    results = []
    for i, text in enumerate(texts):
        pair = None if pairs is None else pairs[i]
        words, token_words, enc = tokenizer.words(text, pair)
        if pair is None:  # chunks of the whole text, as prediction makes them
            spans = tokenizer.spans(len(enc.ids), config.long_text, config.stride)
            chunks = [[tokenizer.cls_id, *(enc.ids[j] for j in span), tokenizer.sep_id] for span in spans]
            owners = [[None, *(token_words[j] for j in span), None] for span in spans]
            types = None
        else:  # a pair is one truncated chunk
            chunks, owners, types = [enc.ids], [token_words], [enc.type_ids]
        batch = {k: torch.from_numpy(v) for k, v in tokenizer.pad(chunks, types).items()}
        special = torch.tensor([[o is None for o in row] + [True] * (batch["input_ids"].shape[1] - len(row))
                                for row in owners])
        baseline = torch.where(special, batch["input_ids"], torch.full_like(batch["input_ids"], tokenizer.pad_id))
        target = int(targets[i])
        attributions = ig.attribute(batch["input_ids"], baselines=baseline, target=target, n_steps=steps,
                                    additional_forward_args=(batch["attention_mask"], batch["token_type_ids"]),
                                    internal_batch_size=steps)  # (chunks, T, H)
        per_token = attributions.sum(-1).detach().numpy()  # (chunks, T)
        weights = _chunk_weights(model, batch, target, config.chunk_pooling)  # (chunks,)
        scores = np.zeros(len(words))
        for chunk, row in enumerate(owners):
            for position, word in enumerate(row):
                if word is not None:
                    scores[word] += weights[chunk] * per_token[chunk, position]
        results.append(Explanation(text, classifier.labels[target], words, [round(float(v), 6) for v in scores], pair))
    return results


def _chunk_weights(model, batch, target: int, pooling: str) -> np.ndarray:
    """How much each chunk's logit counts in the text's: 1/K for mean pooling, one-hot on the max for max."""
    import torch

    k = batch["input_ids"].shape[0]
    if pooling == "mean" or k == 1:
        return np.full(k, 1.0 / k)
    with torch.inference_mode():
        logits = model(**batch)[:, target]
    return np.eye(k)[int(logits.argmax())]
