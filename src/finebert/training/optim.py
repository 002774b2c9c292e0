"""Optimisation: AdamW with its learning-rate schedule, parameter groups, freezing, and the used embedding rows.

    groups = param_groups(model, config)        # weight decay and layer-wise learning rates per parameter
    optimizer = AdamW(groups, warmup=36, total=600)
    words = UsedRows(model, chunks, pad_id)     # train the word-embedding rows the data uses, and only those
"""

from __future__ import annotations

import contextlib

import numpy as np

from finebert.config import TrainConfig
from finebert.errors import ConfigError


def param_groups(model, config: TrainConfig) -> list[dict]:
    """AdamW groups: no weight decay on biases and LayerNorm; layer-wise learning-rate decay downwards."""
    layers = getattr(model.encoder.config, "num_hidden_layers", 0)
    groups: dict[tuple, list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:  # frozen (freeze_word_embeddings, freeze_layers)
            continue
        depth = _layer_depth(name, layers)  # 0 = embeddings, layers + 1 = head
        decay = 0.0 if param.ndim == 1 else config.weight_decay
        lr = config.learning_rate * config.layer_lr_decay ** (layers + 1 - depth)
        if depth == layers + 1 and name.startswith("head.") and config.head_learning_rate is not None:
            lr = config.head_learning_rate
        groups.setdefault((lr, decay), []).append(param)
    return [{"params": params, "lr": lr, "weight_decay": decay} for (lr, decay), params in groups.items()]


def freeze_lowest(model, n: int) -> None:
    """The embeddings and the n lowest encoder layers take no gradient: their output needs none, so backward
    stops above them and AdamW never sees them."""
    layers = getattr(model.encoder.config, "num_hidden_layers", 0)
    if n >= layers:
        raise ConfigError(f"freeze_layers={n} would freeze every one of this backbone's {layers} layers; "
                          f"use at most {layers - 1}")
    for name, param in model.named_parameters():
        if _layer_depth(name, layers) <= n:  # 0 = embeddings, i + 1 = layer i
            param.requires_grad_(False)


def _layer_depth(name: str, layers: int) -> int:
    if not name.startswith("encoder."):
        return layers + 1
    parts = name.split(".")
    for i, part in enumerate(parts[:-1]):
        if part in ("layer", "layers") and parts[i + 1].isdigit():
            return int(parts[i + 1]) + 1
    return 0 if "embeddings" in name else layers + 1


class AdamW:
    """AdamW (decoupled weight decay) with its learning-rate schedule: each group's rate rises linearly from 0 to
    its peak over `warmup` steps, then falls linearly to 0 at `total` steps (as transformers'
    get_linear_schedule_with_warmup). The update is PyTorch's fused AdamW kernel, called through its functional
    API (torch.optim.adam.adam), so the arithmetic is torch.optim.AdamW's (a test compares them). Not that class
    itself: every torch.optim optimizer imports torch._dynamo on first use, 1.5 s of each run's start."""

    def __init__(self, groups: list[dict], *, warmup: int, total: int, betas=(0.9, 0.999), eps: float = 1e-8):
        self.param_groups = [dict(g, peak_lr=g["lr"]) for g in groups]  # each: params, lr, weight_decay, peak_lr
        self.index = {id(p): i for i, p in enumerate(p for g in groups for p in g["params"])}  # param -> its number
        self.warmup, self.total, self.betas, self.eps, self.steps = warmup, total, betas, eps, 0
        self.moments = {}  # param index -> {"exp_avg", "exp_avg_sq", "step"}, made at the param's first step
        self._schedule()

    def _schedule(self) -> None:
        s, warmup, total = self.steps, self.warmup, self.total
        factor = s / max(1, warmup) if s < warmup else max(0.0, (total - s) / max(1, total - warmup))
        for group in self.param_groups:
            group["lr"] = group["peak_lr"] * factor

    def step(self) -> None:
        """One update of every parameter that has a gradient, at the current rates; then the schedule moves on."""
        from torch.optim.adam import adam

        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            states = [self._moments_of(p) for p in params]
            adam(params, [p.grad for p in params], [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
                 [], [s["step"] for s in states], fused=True, decoupled_weight_decay=True, amsgrad=False,
                 beta1=self.betas[0], beta2=self.betas[1], lr=group["lr"], weight_decay=group["weight_decay"],
                 eps=self.eps, maximize=False)
        self.steps += 1
        self._schedule()

    def _moments_of(self, param) -> dict:
        """The parameter's moments, made (zeros) at its first step only: making them at every step and keeping the
        first (dict.setdefault) zero-filled twice the model's size per step, 17% of bf16 training time."""
        i = self.index[id(param)]
        if i not in self.moments:
            import torch

            self.moments[i] = {"exp_avg": torch.zeros_like(param), "exp_avg_sq": torch.zeros_like(param),
                               "step": torch.zeros((), device=param.device)}  # step: a float32 scalar, as the kernel wants
        return self.moments[i]

    def state_dict(self) -> tuple[dict, dict]:
        """(tensors, JSON-able state): the moments by parameter index, and the step count."""
        tensors = {f"{i}.{key}": value for i, moments in self.moments.items() for key, value in moments.items()}
        return tensors, {"steps": self.steps}

    def load_state_dict(self, tensors: dict, state: dict) -> None:
        self.moments = {}
        for key, value in tensors.items():
            i, name = key.split(".", 1)
            self.moments.setdefault(int(i), {})[name] = value.clone()
        self.steps = state["steps"]
        self._schedule()


class UsedRows:
    """Trains the word-embedding rows the training data uses, and only those.

    A text touches a few dozen of the table's 30,522 rows, and a training file a few thousand (8,224 of them in
    8,000 SST-2 sentences). Trained whole, the table costs a dense gradient, clipping pass and AdamW update
    of 30,522 x H numbers every step. Here the model trains with a table of the rows used alone (token ids
    mapped to their rows: rows_of), which gives the same model: the other rows get no gradient, so AdamW
    moves them only by weight decay, p <- p (1 - lr wd) at every step, and that factor is kept (decay_the_rest)
    and applied when the whole table is put back (whole_table, release). Per training step on 8,000 SST-2 rows:
    132 -> 105 ms in bf16, 308 -> 275 ms in fp32 held to AVX2 (benchmarks/RESULTS.md).
    """

    def __init__(self, model, chunks: list[list[int]], pad_id: int):
        import torch
        from torch import nn

        self.model, self.table = model, model.encoder.get_input_embeddings()  # the whole table: (V, H)
        self.start = self.table.weight.detach().clone()  # (V, H) the weights training starts from
        padding = self.table.padding_idx  # a row that gets no gradient (transformers' BERT: [PAD]), or None
        extra = [pad_id] if padding is None else [pad_id, padding]
        self.used = np.unique(np.concatenate([np.asarray(c, dtype=np.int64) for c in chunks] + [extra]))  # (U,) ids
        self.lookup = np.full(self.start.shape[0], -1, dtype=np.int64)  # (V,) id -> its row here; -1: unused
        self.lookup[self.used] = np.arange(len(self.used))
        padding_row = None if padding is None else int(self.lookup[padding])
        self.rows = nn.Embedding.from_pretrained(self.start[torch.from_numpy(self.used)].clone(), freeze=False,
                                                 padding_idx=padding_row)  # (U, H): what trains
        self.scale = 1.0  # what weight decay has left of the rows not used: the product of (1 - lr wd)
        model.encoder.set_input_embeddings(self.rows)

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """Token ids of a training batch -> rows of the trained table (every id a training text holds has one)."""
        return self.lookup[ids]

    def decay_the_rest(self, optimizer: AdamW) -> None:
        """Before an optimizer step: the weight decay AdamW would apply to the rows not used, at its current rate."""
        group = next(g for g in optimizer.param_groups if any(p is self.rows.weight for p in g["params"]))
        self.scale *= 1 - group["lr"] * group["weight_decay"]

    def _fill_table(self) -> None:
        import torch

        with torch.no_grad():
            self.table.weight.copy_(self.start * self.scale)
            self.table.weight[torch.from_numpy(self.used)] = self.rows.weight

    @staticmethod
    @contextlib.contextmanager
    def whole_table(words: "UsedRows | None"):
        """The model with its whole table inside, for validation and saving; on leaving, the trained rows are read
        back from it (a restored checkpoint changes them). Does nothing when `words` is None."""
        import torch

        if words is None:
            yield
            return
        words._fill_table()
        words.model.encoder.set_input_embeddings(words.table)
        try:
            yield
        finally:
            with torch.no_grad():
                words.rows.weight.copy_(words.table.weight[torch.from_numpy(words.used)])
            words.model.encoder.set_input_embeddings(words.rows)

    def release(self) -> None:
        """Training is over: the whole table goes back into the model, for good."""
        self._fill_table()
        self.model.encoder.set_input_embeddings(self.table)
