"""The loss follows the label space: cross-entropy over softmax for single-label tasks, binary cross-entropy
over sigmoids for multi-label ones, each with the class weights asked for (TrainConfig.class_weights)."""

from __future__ import annotations

import numpy as np

from finebert.config import TrainConfig
from finebert.errors import ConfigError
from finebert.labels import LabelSpace


def loss_function(space: LabelSpace, y: np.ndarray, config: TrainConfig, device):
    """loss(logits (B, C), targets (B,) or (B, C)) -> a scalar tensor, for this label space and its weights."""
    import torch
    from torch.nn import functional as F

    weights = class_weights(space, y, config.class_weights)
    w = None if weights is None else torch.tensor(weights, dtype=torch.float32, device=device)
    if space.multi_label:
        return lambda logits, targets: F.binary_cross_entropy_with_logits(logits, targets, pos_weight=w)
    return lambda logits, targets: F.cross_entropy(logits, targets, weight=w)


def class_weights(space: LabelSpace, y: np.ndarray, setting) -> list[float] | None:
    """Per-class loss weights. "auto": inverse frequency, N / (C * count) for single-label (mean weight 1
    over the rows), and negatives / positives per label (BCE's pos_weight) for multi-label."""
    if setting is None:
        return None
    counts = np.maximum(space.one_hot(y).sum(axis=0), 1)  # (C,)
    if setting == "auto":
        weights = (len(y) - counts) / counts if space.multi_label else len(y) / (len(space) * counts)
        return [round(float(w), 4) for w in weights]
    known = set(space.names) | set(space.raw)
    unknown = sorted(set(setting) - known)
    if unknown:
        raise ConfigError(f"class_weights names {unknown[0]!r}, which is not a label here ({', '.join(space.names)}); "
                          "give weights for these labels")
    return [float(setting.get(name, setting.get(raw, 1.0))) for name, raw in zip(space.names, space.raw)]
