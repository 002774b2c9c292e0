"""Stage 7b, quantization: int8 ONNX graphs that stay close to fp32, tried in turn by export's guard.

    quantize(fp32, target, exclude=[])          dynamic int8 (weights per channel), `exclude`d products left fp32
    smooth(fp32, target, batches, alpha)          the same fp32 function with activation outliers moved into weights
    sensitive_nodes(fp32, batches)              the matrix products int8 hurts most, worst first
    candidates(fp32, work, batches)             int8 graphs to try, cheapest first: (how, path)

A dynamically quantized product splits each activation tensor into 256 even steps between its min and max. The
layer-norm outputs of BERT-family models have a few channels whose values are 10-100x the rest, so one large value
stretches the steps and the other channels keep a few levels each: a model whose head amplifies small changes (the
head-first recipe's, on unit-length embeddings) then moves probabilities by 0.3 on some texts. SmoothQuant (Xiao et
al., 2023) divides each input channel j of a product by s_j = max|x_j|^alpha / max|W_j|^(1 - alpha), measured on a
sample of texts, and multiplies row j of the weight by s_j: the same function in fp32, but activations without
outliers, whose weights take the rest. Where that is still not enough, the products whose outputs int8 changes
most keep fp32 weights.

`batches`: padded model inputs (dicts of (B, T) int64 arrays) of a sample of the validation texts, from export.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SMOOTH_ALPHA = 0.8  # the share of each channel's outlier moved into the weights (0.5: the paper's default for LLMs;
#                     0.8 passed the guard where 0.5 did not on the default SST-2 model, benchmarks/RESULTS.md)
SAMPLE = 256  # texts whose activations set the smoothing scales and rank the products


def quantize(source: Path, target: Path, exclude: list[str] = ()) -> None:
    """Dynamic int8: weights per output channel (signed bytes on CPUs with VNNI, else unsigned: weight_type),
    activations per tensor at run time."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Fused contrib ops (Attention, SkipLayerNorm) defeat shape inference: tell it activations are float.
    quantize_dynamic(str(source), str(target), weight_type=getattr(QuantType, weight_type()), per_channel=True,
                     nodes_to_exclude=list(exclude), extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


def weight_type() -> str:
    """"QInt8" where the CPU has VNNI (or is not x86), else "QUInt8". Without VNNI, ONNX Runtime multiplies unsigned
    activations by signed weights with an instruction (VPMADDUBSW) that saturates each pair's sum at 16 bits; unsigned
    weights take another kernel without that saturation. On an AVX2 CPU (emulated) the default SST-2 model's
    smoothed int8 graph moved a probability by 0.31 with signed weights and 0.13 with unsigned ones."""
    import platform

    import torch

    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686"):
        return "QInt8"
    vnni = getattr(torch.cpu, "_is_vnni_supported", None)  # asks CPUID, as ONNX Runtime's kernel choice does
    return "QInt8" if vnni is None or vnni() else "QUInt8"


def candidates(fp32: Path, work: Path, batches: list[dict]):
    """Yields (how, int8 file) to try in turn: the whole graph in int8; the smoothed graph in int8; then the smoothed
    graph with its 1, 2, 4, ... most sensitive products in fp32, up to half of them. `how` is a dict for
    finebert.json: {"smoothing": alpha or None, "fp32_nodes": [names], "weights": weight_type()}."""
    whole = work / "whole.int8.onnx"
    quantize(fp32, whole)
    weights = weight_type()
    yield {"smoothing": None, "fp32_nodes": [], "weights": weights}, whole
    smoothed = work / "smoothed.onnx"
    smooth(fp32, smoothed, batches, SMOOTH_ALPHA)
    target = work / "smoothed.int8.onnx"
    quantize(smoothed, target)
    yield {"smoothing": SMOOTH_ALPHA, "fp32_nodes": [], "weights": weights}, target
    ranked = sensitive_nodes(smoothed, batches)
    k = 1
    while k <= len(ranked) // 2:
        quantize(smoothed, target, exclude=ranked[:k])
        yield {"smoothing": SMOOTH_ALPHA, "fp32_nodes": ranked[:k], "weights": weights}, target
        k *= 2


def _products(model) -> list:
    """The nodes quantization turns into int8 products: MatMul and fused Attention nodes with a weight."""
    from collections import Counter

    weights = {w.name for w in model.graph.initializer}
    uses = Counter(name for n in model.graph.node for name in n.input)
    return [n for n in model.graph.node  # a weight two nodes share is left as it is: scaling it would change both
            if n.op_type in ("MatMul", "Attention") and len(n.input) > 1 and n.input[1] in weights
            and uses[n.input[1]] == 1]


def _activations(model, batches: list[dict], names: list[str]):
    """Yields {name: array} for each batch: the values of the graph's tensors `names` in fp32."""
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {o.name for o in probe.graph.output}
    probe.graph.output.extend(onnx.ValueInfoProto(name=x) for x in names if x not in known)
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    inputs = [i.name for i in session.get_inputs()]  # the exporter drops inputs a model ignores
    for batch in batches:
        yield dict(zip(names, session.run(names, {k: batch[k] for k in inputs})))


def smooth(source: Path, target: Path, batches: list[dict], alpha: float = SMOOTH_ALPHA) -> None:
    """Writes `source` with each product's input divided per channel by s (a Mul node before it) and its weight's
    rows multiplied by s: the same fp32 function, with activation outliers moved into the weights."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(source))
    weights = {w.name: w for w in model.graph.initializer}
    products = _products(model)
    inputs = list(dict.fromkeys(n.input[0] for n in products))
    peak = {}
    for values in _activations(model, batches, inputs):
        for x in inputs:
            m = np.abs(values[x]).reshape(-1, values[x].shape[-1]).max(axis=0)  # (K,) per input channel
            peak[x] = np.maximum(peak[x], m) if x in peak else m
    smoothing = {}  # a product's input -> the Mul node that smooths it
    for x in inputs:
        users = [n for n in products if n.input[0] == x]
        w = [numpy_helper.to_array(weights[n.input[1]]).astype(np.float32) for n in users]  # each (K, N)
        row_peak = np.max([np.abs(a).max(axis=1) for a in w], axis=0)  # (K,)
        s = np.clip(np.maximum(peak[x], 1e-5) ** alpha / np.maximum(row_peak, 1e-5) ** (1 - alpha), 1e-3, 1e3)
        inverse = numpy_helper.from_array((1 / s).astype(np.float32), name=f"{x}/smooth_scale")
        model.graph.initializer.append(inverse)
        smoothing[x] = helper.make_node("Mul", [x, inverse.name], [f"{x}/smoothed"], name=f"{x}/smooth")
        for node, a in zip(users, w):
            weights[node.input[1]].CopyFrom(numpy_helper.from_array((a * s[:, None]).astype(np.float32),
                                                                    name=node.input[1]))
            node.input[0] = f"{x}/smoothed"
    ordered = []  # each Mul just before the first node that reads it: the graph stays in topological order
    for node in model.graph.node:
        for name in node.input:
            x = name.removesuffix("/smoothed")
            if name.endswith("/smoothed") and x in smoothing:
                ordered.append(smoothing.pop(x))
        ordered.append(node)
    del model.graph.node[:]
    model.graph.node.extend(ordered)
    onnx.save(model, str(target))


def sensitive_nodes(source: Path, batches: list[dict]) -> list[str]:
    """The names of the graph's products, most sensitive to int8 first: each one's relative output error
    ||x'W' - xW|| / ||xW|| over the batches, with x' quantized as ONNX Runtime's dynamic quantization does
    (uint8, one scale per tensor per call) and W' as signed int8, symmetric, one scale per column (`quantize`'s
    weights on VNNI CPUs; its unsigned weights elsewhere round alike, and the ranking is all that is used)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(source))
    weights = {w.name: w for w in model.graph.initializer}
    products = [(n.name, n.input[0], n.input[1]) for n in _products(model)]
    w = {}
    for _, _, name in products:
        full = numpy_helper.to_array(weights[name]).astype(np.float32)  # (K, N)
        scale = np.maximum(np.abs(full).max(axis=0, keepdims=True), 1e-12) / 127  # (1, N)
        w[name] = (full, np.round(full / scale) * scale)
    error = dict.fromkeys((name for name, _, _ in products), 0.0)
    norm = dict.fromkeys(error, 0.0)
    for values in _activations(model, batches, list(dict.fromkeys(x for _, x, _ in products))):
        for name, x, weight in products:
            a = values[x].reshape(-1, values[x].shape[-1])  # (B*T, K)
            full, quantized = w[weight]
            y = a @ full  # (B*T, N)
            error[name] += float(np.square(_dynamic_uint8(a) @ quantized - y).sum())
            norm[name] += float(np.square(y).sum())
    return sorted(error, key=lambda n: -error[n] / max(norm[n], 1e-30))


def _dynamic_uint8(x: np.ndarray) -> np.ndarray:
    """x as ONNX Runtime's DynamicQuantizeLinear leaves it: 256 steps over [min(x, 0), max(x, 0)], dequantized."""
    low, high = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    scale = (high - low) / 255 or 1.0
    zero = np.clip(np.round(-low / scale), 0, 255)
    return (np.clip(np.round(x / scale) + zero, 0, 255) - zero) * scale
