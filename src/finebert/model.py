"""Stage 3, model: a BERT-family encoder with a linear head on the final hidden state of [CLS].

    h   = encoder(input_ids, attention_mask)[:, 0]     # (B, H)  the [CLS] state ("cls" pooling; or the
                                                        #         mean of token states, "mean", L2-normalised
                                                        #         for "normalized-mean")
    z   = W·dropout(h) + b                              # (B, C)  W: H x C, one logit per class
    p   = softmax(z)                                    # (B, C)  probabilities

Saved folders load as they are in Hugging Face `AutoModelForSequenceClassification` (BERT backbones,
cls pooling). HF's BERT head is `W'·tanh(Wp·h + bp) + b`; we write Wp = s·I, bp = 0 and W' = W/s with
s = HF_POOLER_SCALE, so tanh(s·h) = s·h to within 1e-7 relative and HF computes our z. Other
backbone families, and mean pooling, load in finebert only.

Training builds BERT backbones as `BertEncoder`, BERT written out here with Hugging Face's parameter
names, so its weights are theirs key for key: the training process then never imports transformers'
model classes (3.6 s of a 50 s run; benchmarks/RESULTS.md). Other families, and BERT configurations it
does not cover, load through transformers' AutoModel; so do saved models, which export traces.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from finebert.errors import ModelError, first_line

HF_POOLER_SCALE = 1e-4  # s above: small enough that tanh is linear, large enough for fp32 precision
# config.json's model_type in a folder whose logits Hugging Face's auto classes would not compute (mean pooling, or
# a family whose HF head is not ours): transformers then refuses the folder with this in its message, rather than
# load another model with no warning. The family's own type is kept beside it, under FAMILY_KEY, for finebert.
FINEBERT_ONLY = ("finebert-only: Hugging Face's auto classes would compute other logits from this folder "
                 "(pooling or head not theirs); load it with finebert.Classifier.load")
FAMILY_KEY = "finebert_model_type"


class TextClassifier(nn.Module):
    def __init__(self, encoder: nn.Module, num_labels: int, *, pooling: str = "cls", dropout: float = 0.1):
        super().__init__()
        if getattr(encoder, "pooler", None) is not None:
            encoder.pooler = None  # BERT's pretrained tanh pooler is not part of our head
        self.encoder = encoder
        self.pooling = pooling
        # Sentence pairs need segment ids; encoders without token type embeddings (DistilBERT) take none.
        self.uses_token_types = getattr(encoder.config, "type_vocab_size", 0) > 1
        # Packed batches need position ids from 0 in each text and a 4D mask: BERT takes both as they are.
        self.packs = encoder.config.model_type == "bert"
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, num_labels)  # z = W·h + b

    def pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               token_type_ids: torch.Tensor | None = None, *, position_ids: torch.Tensor | None = None,
               chunk_of_token: torch.Tensor | None = None, first_token: torch.Tensor | None = None) -> torch.Tensor:
        """(B, H): what the head reads, one vector per text. Takes a padded batch (attention_mask, one text
        per row) or a packed one (Tokenizer.pack: position_ids, chunk_of_token, first_token; several per row)."""
        extra = {"token_type_ids": token_type_ids} if self.uses_token_types and token_type_ids is not None else {}
        if chunk_of_token is not None:  # packed: a token attends only to the tokens of its own text
            attention_mask = additive_mask(chunk_of_token[:, None, :, None] == chunk_of_token[:, None, None, :])  # (R, 1, T, T)
            extra["position_ids"] = position_ids
        if self.pooling == "cls" and self.training and isinstance(self.encoder, BertEncoder):
            # Only the [CLS] states are read: the last layer computes those alone (the same numbers, ~1/8 less work)
            R, T = input_ids.shape
            only = first_token if chunk_of_token is not None else torch.arange(R, device=input_ids.device) * T
            return self.encoder(input_ids=input_ids, attention_mask=attention_mask, only=only, **extra)  # (B, H)
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **extra)  # (R, T, H)
        states = getattr(states, "last_hidden_state", states)  # transformers' encoders wrap it in an output object
        if chunk_of_token is not None:
            return self._pool_packed(states.flatten(0, 1), chunk_of_token.flatten(), first_token)
        if self.pooling == "cls":
            return states[:, 0]  # (B, H)
        mask = attention_mask.unsqueeze(-1).to(states.dtype)  # (B, T, 1)
        mean = (states * mask).sum(1) / mask.sum(1).clamp(min=1)  # (B, H)
        return nn.functional.normalize(mean, dim=-1) if self.pooling == "normalized-mean" else mean

    def _pool_packed(self, states: torch.Tensor, chunk: torch.Tensor, first_token: torch.Tensor) -> torch.Tensor:
        """(R*T, H) token states of a packed batch -> (B, H), pooled per text as `pooled` does for padded rows."""
        if self.pooling == "cls":
            return states[first_token]  # (B, H)
        real = chunk >= 0  # (R*T,)
        sums = states.new_zeros(len(first_token), states.shape[1]).index_add_(0, chunk[real], states[real])  # (B, H)
        mean = sums / torch.bincount(chunk[real], minlength=len(first_token)).unsqueeze(1).to(sums.dtype)  # (B, H)
        return nn.functional.normalize(mean, dim=-1) if self.pooling == "normalized-mean" else mean

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, **packed) -> torch.Tensor:
        return self.head(self.dropout(self.pooled(input_ids, attention_mask, token_type_ids, **packed)))  # (B, C) logits


def additive_mask(allowed: torch.Tensor) -> torch.Tensor:
    """What attention adds to its scores: 0 where `allowed` (bool), the lowest fp32 value elsewhere."""
    return torch.zeros(allowed.shape, device=allowed.device).masked_fill_(~allowed, torch.finfo(torch.float32).min)


# BERT's configuration defaults (transformers' BertConfig), for config.json files that leave some out.
BERT_DEFAULTS = dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                     intermediate_size=3072, hidden_act="gelu", hidden_dropout_prob=0.1,
                     attention_probs_dropout_prob=0.1, max_position_embeddings=512, type_vocab_size=2,
                     layer_norm_eps=1e-12, position_embedding_type="absolute")


class BertEncoder(nn.Module):
    """BERT (post-LayerNorm Transformer, exact GELU, absolute positions), as transformers' eager BertModel
    computes it, without the pooler. Module names follow theirs, so state dicts are interchangeable.

        x = LayerNorm(word[ids] + type[types] + position[positions])             # (B, T, H)
        per layer:  x = LayerNorm(x + Wo·attention(x))                           # (B, T, H)
                    x = LayerNorm(x + W2·gelu(W1·x))                             # (B, T, H), W1: H -> I
    """

    base_model_prefix = "bert"  # the key prefix of the encoder's weights in a saved BertFor... model
    hf_name = "BertModel"  # transformers' class for these weights

    def __init__(self, config: SimpleNamespace):
        super().__init__()
        self.config = config
        H, eps = config.hidden_size, config.layer_norm_eps
        self.embeddings = nn.ModuleDict(dict(
            word_embeddings=nn.Embedding(config.vocab_size, H),
            position_embeddings=nn.Embedding(config.max_position_embeddings, H),
            token_type_embeddings=nn.Embedding(config.type_vocab_size, H),
            LayerNorm=nn.LayerNorm(H, eps=eps), dropout=nn.Dropout(config.hidden_dropout_prob)))
        self.encoder = nn.ModuleDict(dict(layer=nn.ModuleList(_BertLayer(config)
                                                              for _ in range(config.num_hidden_layers))))

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings["word_embeddings"]

    def set_input_embeddings(self, module: nn.Module) -> None:
        self.embeddings["word_embeddings"] = module

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
                only: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, H) final hidden states. `attention_mask`: (B, T) of 1 for tokens and 0 for padding, or an
        additive (B, 1, T, T) mask of 0 and -inf-like values (packed batches). `only`: (n,) places in the
        flattened (B*T) tokens whose final states alone are wanted, e.g. each text's [CLS]: the last layer
        then computes those n states (its keys and values still read every token) and returns (n, H)."""
        B, T = input_ids.shape
        if position_ids is None:
            position_ids = torch.arange(T, device=input_ids.device).expand(B, T)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        e = self.embeddings
        x = e["word_embeddings"](input_ids) + e["token_type_embeddings"](token_type_ids)  # (B, T, H)
        x = e["dropout"](e["LayerNorm"](x + e["position_embeddings"](position_ids)))
        if attention_mask is not None and attention_mask.dim() == 2:  # (B, T) -> additive (B, 1, 1, T)
            attention_mask = additive_mask(attention_mask[:, None, None, :] != 0)
        *lower, last = self.encoder["layer"]
        for layer in lower:
            x = layer(x, attention_mask)
        return last(x, attention_mask, only)


class _BertLayer(nn.Module):
    def __init__(self, config: SimpleNamespace):
        super().__init__()
        H, I, eps = config.hidden_size, config.intermediate_size, config.layer_norm_eps
        self.heads = config.num_attention_heads
        self.attention = nn.ModuleDict({
            "self": nn.ModuleDict(dict(query=nn.Linear(H, H), key=nn.Linear(H, H), value=nn.Linear(H, H),
                                       dropout=nn.Dropout(config.attention_probs_dropout_prob))),
            "output": nn.ModuleDict(dict(dense=nn.Linear(H, H), LayerNorm=nn.LayerNorm(H, eps=eps),
                                         dropout=nn.Dropout(config.hidden_dropout_prob)))})
        self.intermediate = nn.ModuleDict(dict(dense=nn.Linear(H, I)))
        self.output = nn.ModuleDict(dict(dense=nn.Linear(I, H), LayerNorm=nn.LayerNorm(H, eps=eps),
                                         dropout=nn.Dropout(config.hidden_dropout_prob)))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, only: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, H) -> (B, T, H); with `only` ((n,) places in the flattened B*T tokens), just those: (n, H)."""
        B, T, H = x.shape
        qkv, out = self.attention["self"], self.attention["output"]

        def heads(t):  # (B, T, H) -> (B, A, T, H/A)
            return t.view(B, T, self.heads, H // self.heads).transpose(1, 2)

        k, v = heads(qkv["key"](x)), heads(qkv["value"](x))
        if only is None:
            q = heads(qkv["query"](x))  # (B, A, T, H/A)
        else:  # the queries of the n tokens wanted, each against the keys of its own row
            row, x = only // T, x.flatten(0, 1)[only]  # (n,), (n, H)
            q = qkv["query"](x).view(len(only), self.heads, 1, H // self.heads)  # (n, A, 1, H/A)
            k, v = k[row], v[row]  # (n, A, T, H/A)
            if mask is not None:  # (B, 1, 1 or T, T) -> the mask row of each query: (n, 1, 1, T)
                mask = mask[row, :, only % T if mask.shape[2] > 1 else 0].unsqueeze(2)
        scores = q @ k.transpose(2, 3) * (1 / math.sqrt(H // self.heads))  # (B, A, T, T) or (n, A, 1, T)
        if mask is not None:
            scores = scores + mask
        context = qkv["dropout"](scores.softmax(-1)) @ v  # (B, A, T, H/A) or (n, A, 1, H/A)
        context = context.transpose(1, 2).reshape(x.shape)  # (B, T, H) or (n, H)
        x = out["LayerNorm"](out["dropout"](out["dense"](context)) + x)
        hidden = nn.functional.gelu(self.intermediate["dense"](x))  # (B, T, I) or (n, I)
        return self.output["LayerNorm"](self.output["dropout"](self.output["dense"](hidden)) + x)


def _own_bert(backbone: Path) -> BertEncoder | None:
    """The backbone as a BertEncoder, or None where it needs transformers (another family, another BERT
    variant, weights only as pytorch_model.bin, or keys we do not know: transformers converts those)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        settings = json.loads((backbone / "config.json").read_text())
        settings["model_type"] = settings.pop(FAMILY_KEY, settings.get("model_type"))  # a finebert-only folder's family
        config = SimpleNamespace(**(BERT_DEFAULTS | settings))
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    if (getattr(config, "model_type", None) != "bert" or config.hidden_act != "gelu"
            or config.position_embedding_type != "absolute" or config.hidden_size % config.num_attention_heads):
        return None  # decided before reading the weights, which transformers will then read
    try:
        tensors = load_file(str(backbone / "model.safetensors"))
    except (OSError, SafetensorError):
        return None
    tensors = {k.removeprefix("bert."): v.float() for k, v in tensors.items()}
    tensors = {k: v for k, v in tensors.items()  # a finebert model folder's head (classifier.) is left out too
               if not k.startswith(("pooler.", "cls.", "classifier.")) and not k.endswith("position_ids")}
    encoder = BertEncoder(config)  # built on the CPU: its random weights cost 0.15 s, the meta device's first use 1 s
    if set(tensors) != set(encoder.state_dict()):
        return None
    encoder.load_state_dict(tensors, assign=True)
    return encoder


def _quiet_transformers():
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()  # "Loading weights" bars


def build_model(backbone: Path, num_labels: int, *, pooling: str, dropout: float,
                attention: str = "eager") -> TextClassifier:
    """The pretrained encoder from a local folder, with a freshly initialised head (seed first).

    `dropout` is set on every dropout layer, the encoder's and the head's. Eager attention is the default
    because it trains fastest on CPUs: at batch 32 of 14-40 tokens, forward + backward in bf16 took
    77-143 ms eager without dropout against 93-241 ms with PyTorch's SDPA kernels (benchmarks/RESULTS.md).
    """
    encoder = _own_bert(backbone) if attention == "eager" else None
    if encoder is None:
        from transformers import AutoModel

        _quiet_transformers()
        try:
            # safetensors only: a folder with pytorch_model.bin alone is refused here, never unpickled
            encoder = AutoModel.from_pretrained(str(backbone), config=hf_config(backbone), attn_implementation=attention,
                                                use_safetensors=True)
        except Exception as e:  # missing, torn or foreign weights: whatever the loader raises, the folder is unusable
            raise ModelError(f"{backbone}: cannot load a Hugging Face encoder from it ({first_line(e)}); "
                             "give a BERT-family model folder with its weights") from None
    model = TextClassifier(encoder, num_labels, pooling=pooling, dropout=dropout)
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = dropout  # attention layers read their rate from here too
    nn.init.normal_(model.head.weight, std=0.02)
    nn.init.zeros_(model.head.bias)
    return model


def hf_compatible(model: TextClassifier) -> bool:
    """True when HF AutoModelForSequenceClassification computes the same logits from our saved folder."""
    return model.encoder.config.model_type == "bert" and model.pooling == "cls"


def save_model(model: TextClassifier, folder: Path, labels: list[str], *, multi_label: bool = False) -> None:
    """Writes config.json and model.safetensors in Hugging Face's layout (see the module docstring)."""
    from safetensors.torch import save_file

    config = model.encoder.config
    prefix = model.encoder.base_model_prefix  # "bert", "distilbert", ...
    config.id2label = dict(enumerate(labels))
    config.label2id = {name: i for i, name in enumerate(labels)}
    config.problem_type = "multi_label_classification" if multi_label else "single_label_classification"
    name = getattr(model.encoder, "hf_name", type(model.encoder).__name__)  # "BertModel", "DistilBertModel", ...
    config.architectures = [f"{name.removesuffix('Model')}ForSequenceClassification" if hf_compatible(model) else name]
    settings = config.to_diff_dict() if hasattr(config, "to_diff_dict") else dict(vars(config))  # transformers' or ours
    if not hf_compatible(model):  # HF's auto classes refuse this folder, saying why, instead of computing other logits
        settings[FAMILY_KEY], settings["model_type"] = config.model_type, FINEBERT_ONLY
    (folder / "config.json").write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")

    tensors = {f"{prefix}.{k}": v.detach().float().contiguous() for k, v in model.encoder.state_dict().items()}
    weight, bias = model.head.weight.detach().float(), model.head.bias.detach().float()  # (C, H), (C,)
    if config.model_type == "bert":
        hidden = weight.shape[1]
        tensors[f"{prefix}.pooler.dense.weight"] = torch.eye(hidden) * HF_POOLER_SCALE  # (H, H)
        tensors[f"{prefix}.pooler.dense.bias"] = torch.zeros(hidden)
        weight = weight / HF_POOLER_SCALE
    tensors["classifier.weight"], tensors["classifier.bias"] = weight.contiguous(), bias.contiguous()
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})


def load_model(folder: Path, *, pooling: str, attention: str = "sdpa") -> TextClassifier:
    """Rebuilds a TextClassifier from a folder written by save_model."""
    from safetensors.torch import load_file
    from transformers import AutoModel

    _quiet_transformers()
    try:
        config = hf_config(folder)
    except Exception as e:
        raise ModelError(f"{folder}: cannot read config.json ({first_line(e)}); train the model again") from None
    try:
        tensors = load_file(str(folder / "model.safetensors"))
    except Exception as e:  # missing (FileNotFoundError) or torn (SafetensorError)
        raise ModelError(f"{folder}: cannot read model.safetensors ({first_line(e)}); train it again") from None
    try:  # "eager" for ONNX export: plain ops that trace cleanly
        encoder = AutoModel.from_config(config, attn_implementation=attention)
    except ValueError:  # a family without PyTorch's SDPA attention in transformers (MPNet, DeBERTa-v2): the plain one
        encoder = AutoModel.from_config(config, attn_implementation="eager")
    prefix = encoder.base_model_prefix + "."
    model = TextClassifier(encoder, len(config.id2label), pooling=pooling, dropout=0.0)
    weights = {k[len(prefix):]: v for k, v in tensors.items()
               if k.startswith(prefix) and not k.startswith(prefix + "pooler.")}
    missing, unexpected = model.encoder.load_state_dict(weights, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise ModelError(f"{folder}: model.safetensors does not match config.json ({(missing or unexpected)[0]}); train it again")
    scale = HF_POOLER_SCALE if config.model_type == "bert" else 1.0
    with torch.no_grad():
        model.head.weight.copy_(tensors["classifier.weight"] * scale)
        model.head.bias.copy_(tensors["classifier.bias"])
    return model.eval()


def hf_config(folder: Path):
    """The transformers configuration in a folder's config.json, a finebert-only folder's (FINEBERT_ONLY) too."""
    from transformers import CONFIG_MAPPING, AutoConfig

    settings = json.loads((Path(folder) / "config.json").read_text())
    family = settings.pop(FAMILY_KEY, None)
    if family is None:
        return AutoConfig.from_pretrained(str(folder))
    settings["model_type"] = family
    return CONFIG_MAPPING[family].from_dict(settings)


def bf16_supported(device: torch.device) -> bool:
    """bf16 autocast pays where the hardware has bf16 arithmetic: AVX-512 BF16/AMX CPUs, Ampere+ GPUs.
    A CPU whose PyTorch kernels are held below AVX-512 (ATEN_CPU_CAPABILITY=avx2) counts as without."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if torch.backends.cpu.get_cpu_capability() != "AVX512":
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
