"""Warm starts: what happens to the model before fine-tuning, and after it.

    fit_head(model, task, device, config)          # the head as a logistic regression on sentence embeddings
    contrast_encoder(model, task, device, config)  # SetFit's contrastive stage (contrastive_pairs > 0)
    interpolate(start, end, share)                 # WiSE-FT: the weights kept, between start and fine-tuned
"""

from __future__ import annotations

import math

import numpy as np

from finebert.config import TrainConfig
from finebert.engines import TorchEngine, length_batches, run_chunks
from finebert.tokenization import Encoded
from finebert.training.optim import AdamW
from finebert.training.recipes import Task

CONTRASTIVE_BATCH, CONTRASTIVE_LR = 16, 2e-5  # the contrastive stage: pairs per step and AdamW's peak learning rate (SetFit's)
# head_init="fit": the logistic regression reads every training chunk, unless that costs more than a small share of
# training: then a seeded sample of HEAD_FIT_SHARE x epochs x chunks (a read without gradients costs about a third
# of a training one, so the fit costs at most ~1/12 of training), but never fewer than HEAD_FIT_MIN_CHUNKS
HEAD_FIT_SHARE, HEAD_FIT_MIN_CHUNKS = 0.25, 1000


def fit_head(model, task: Task, device, config: TrainConfig, use_bf16: bool = False) -> None:
    """Sets the head to a logistic regression (scikit-learn, L2, C=1) fitted on the pooled vectors the head
    reads, one per training chunk (a chunk carries its text's label; multi-label: one regression per label).
    Each chunk read costs a forward pass (bf16 autocast where training uses it), so the regression reads a
    seeded sample where every chunk would cost more than HEAD_FIT_SHARE of training's reads. More rows make
    a better probe: on AG News' and SST-2's own validation splits, 0.877 from 2,000 rows and 0.890 from all
    5,400 (AG), 0.824 and 0.840 from 7,200 (SST-2); benchmarks/RESULTS.md."""
    import torch
    from sklearn.linear_model import LogisticRegression

    chunks, doc = task.train, task.train.doc_of_chunk()  # doc: (chunks,) the text of each chunk
    picked = np.arange(len(doc))
    budget = max(HEAD_FIT_MIN_CHUNKS, int(HEAD_FIT_SHARE * config.epochs * len(doc)))
    if len(picked) > budget:
        picked = np.sort(np.random.default_rng(config.seed).choice(len(doc), budget, replace=False))
    sample = Encoded([chunks.ids[i] for i in picked], None if chunks.type_ids is None else
                     [chunks.type_ids[i] for i in picked], np.arange(len(picked) + 1))  # each chunk a text of its own
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
        features = run_chunks(TorchEngine(model, device).embeddings, task.tokenizer, sample,
                              length_batches(sample.chunk_lengths(), config.eval_batch_size))  # (picked, H)
    targets = task.space.one_hot(task.y)[doc[picked]]  # (picked, C)
    weight = np.zeros((len(task.space), features.shape[1]), dtype=np.float32)  # (C, H)
    bias = np.zeros(len(task.space), dtype=np.float32)  # (C,)
    if task.space.multi_label:
        for k in range(len(task.space)):
            if 0 < targets[:, k].sum() < len(targets):  # a label always (or never) on: its head stays at zero
                fit = LogisticRegression(max_iter=1000).fit(features, targets[:, k])
                weight[k], bias[k] = fit.coef_[0], fit.intercept_[0]
    elif len(np.unique(labels := targets.argmax(1))) > 1:  # (chunks,) class ids; one class alone: no fit
        fit = LogisticRegression(max_iter=1000).fit(features, labels)
        present = fit.classes_  # classes absent from this data (a fold's) keep logit 0
        if len(present) == 2:  # one coefficient vector: split it evenly between the two logits
            weight[present], bias[present] = np.stack([-fit.coef_[0], fit.coef_[0]]) / 2, np.array([-1, 1]) * fit.intercept_[0] / 2
        else:
            weight[present], bias[present] = fit.coef_, fit.intercept_
    with torch.no_grad():
        model.head.weight.copy_(torch.from_numpy(weight))
        model.head.bias.copy_(torch.from_numpy(bias))
    model.train()


def contrast_encoder(model, task: Task, device, config: TrainConfig, use_bf16: bool) -> None:
    """SetFit's contrastive stage. Each training chunk gets `config.contrastive_pairs` partners of its own
    label (cosine target 1) and as many of other labels (target 0); one pass over these pairs, in random
    order, trains the encoder so that the pooled vectors of one label gather (mean squared error on the
    cosine, AdamW at CONTRASTIVE_LR falling linearly to 0, no dropout). Single-label data only."""
    import torch
    from torch.nn import functional as F

    chunks, labels = task.train, task.y[task.train.doc_of_chunk()]  # labels: (chunks,)
    rng = np.random.default_rng(config.seed)
    first, second, target = [], [], []
    for i, label in enumerate(labels):
        same, other = np.flatnonzero(labels == label), np.flatnonzero(labels != label)
        for partners, cosine in ((same[same != i], 1.0), (other, 0.0)):
            if len(partners):
                second += list(rng.choice(partners, config.contrastive_pairs))
                first += [i] * config.contrastive_pairs
                target += [cosine] * config.contrastive_pairs
    first, second, target = np.array(first), np.array(second), np.array(target, dtype=np.float32)
    order = rng.permutation(len(first))
    optimizer = AdamW([{"params": list(model.encoder.parameters()), "lr": CONTRASTIVE_LR, "weight_decay": 0.01}],
                      warmup=0, total=math.ceil(len(order) / CONTRASTIVE_BATCH))
    model.eval()  # no dropout; gradients still flow
    for start in range(0, len(order), CONTRASTIVE_BATCH):
        pairs = order[start:start + CONTRASTIVE_BATCH]
        rows = np.concatenate([first[pairs], second[pairs]])  # (2b,) chunk ids: the left texts, then the right ones
        type_ids = None if chunks.type_ids is None else [chunks.type_ids[i] for i in rows]
        inputs = {k: torch.from_numpy(v).to(device) for k, v in task.tokenizer.pad([chunks.ids[i] for i in rows], type_ids).items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            vectors = model.pooled(**inputs).float()  # (2b, H)
        cosine = F.cosine_similarity(vectors[:len(pairs)], vectors[len(pairs):])  # (b,)
        loss = F.mse_loss(cosine, torch.from_numpy(target[pairs]).to(device))
        loss.backward()
        optimizer.step()
        model.zero_grad(set_to_none=True)
    model.train()


def interpolate(start: dict, end: dict, share: float) -> dict:
    """Weights `share` of the way from `start` to `end` (state dicts of one model): WiSE-FT (Wortsman et al.,
    2022) between the weights before and after fine-tuning. Integer buffers (position ids) are taken from `end`.
    In the few-shot recipe a share of 0.7 scored about a point above the fine-tuned weights alone at 16 rows per
    class, the same at 64; on AG News' 6,000 rows (head-first) it scored lower (benchmarks/RESULTS.md)."""
    import torch

    # lerp: start + share x (end - start), so weights fine-tuning left alone (frozen, or rows no batch used) stay exact
    return {k: torch.lerp(start[k].float(), v.float(), share).to(v.dtype) if v.is_floating_point() else v
            for k, v in end.items()}
