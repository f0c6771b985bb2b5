#!/usr/bin/python3
"""Plain NumPy reference of the mixer models' forward pass (inference).

Written from docs/dsl.md and docs/parameters.md alone, so that end-to-end tests
can compare the compiled models with an implementation that shares no code
with them. Everything is computed in float64 and returned as float32.

Command line (run with /usr/bin/python3):

    mixer_ref.py forward MODEL.json --weights W.safetensors --input BATCH.npz \
        --output OUT.safetensors
    mixer_ref.py params MODEL.json
    mixer_ref.py compare A.safetensors B.safetensors --rtol 1e-4
    mixer_ref.py random-weights MODEL.json --seed 0 -o W.safetensors
    mixer_ref.py random-batch MODEL.json --batch 2 --seed 0 [--training] \
        [--noise-key SEED STEP] \
        -o BATCH.safetensors

Tensor files may be .safetensors, .npz or .npy (the latter named after the file
stem).
"""

from __future__ import annotations

import argparse
import json
import math
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np

LOWEST_FLOAT32 = float(np.finfo(np.float32).min)
LAYOUTS = ("BOTTOM", "MIDDLE", "MIXED", "TOP")
MIXING_KINDS = ("linear", "fourier", "hartley", "circulant", "toeplitz",
                "identity", "attention")

# ----------------------------------------------------------------------------
# Model JSON
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class MoeConfig:
    """The `moe` object with its defaults applied."""

    num_experts: int
    expert_d_ff: int
    routing: str
    k: int
    batch_prioritized: bool
    train_capacity_factor: float
    eval_capacity_factor: float
    min_expert_capacity: int
    max_group_size: int
    router_dtype: str


@dataclass(frozen=True)
class ModelConfig:
    """A model JSON with defaults applied and layer placements expanded."""

    name: str
    vocab_size: int
    type_vocab_size: int
    d_emb: int
    max_seq_length: int
    pad_id: int
    d_model: int
    num_layers: int
    d_ff: Optional[int]
    layer_norm_epsilon: float
    norm: str
    mixing_kind: str
    attention_layers: frozenset
    num_heads: int
    head_dim: int
    causal: bool
    moe_layers: frozenset
    moe: Optional[MoeConfig]
    pooler: bool
    mlm: bool
    nsp: bool
    num_classes: Optional[int]
    causal_lm: bool
    activation: str = "gelu"
    hidden_mapping_in: bool = True
    sentence_pooling: Optional[str] = None
    sentence_normalize: bool = False

    def is_attention_layer(self, layer: int) -> bool:
        """True if `layer` uses self-attention instead of `mixing_kind`."""
        return (self.mixing_kind == "attention"
                or layer in self.attention_layers)

    def is_moe_layer(self, layer: int) -> bool:
        """True if `layer` has an MoE feed-forward."""
        return layer in self.moe_layers


def resolve_placement(placement, num_layers: int) -> frozenset:
    """Expands a placement (index list or {layout, count}) to a layer set."""
    if placement is None:
        return frozenset()
    if isinstance(placement, list):
        return frozenset(int(i) for i in placement)
    layout, n = placement["layout"], int(placement["count"])
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout '{layout}'")
    big_l = num_layers
    rules = {
        "BOTTOM": lambda l: l < n,
        "MIDDLE": lambda l: big_l - n <= 2 * l < big_l + n,
        "MIXED": lambda l: n > 0 and l % (big_l // n) == 0,
        "TOP": lambda l: l >= big_l - n,
    }
    return frozenset(l for l in range(num_layers) if rules[layout](l))


def parse_config(model: dict) -> ModelConfig:
    """Builds a ModelConfig from a parsed model JSON object."""
    emb = model["embeddings"]
    d_model = int(model["d_model"])
    num_layers = int(model["num_layers"])
    mixing = model["mixing"]
    if mixing["kind"] not in MIXING_KINDS:
        raise ValueError(f"unknown mixing kind '{mixing['kind']}'")
    attention = model.get("attention", {})
    num_heads = int(attention.get("num_heads", 1))
    moe = None
    moe_layers = resolve_placement(model.get("moe_layers"), num_layers)
    if moe_layers:
        m = model["moe"]
        routing = m.get("routing", {"type": "experts_choose"})
        moe = MoeConfig(
            num_experts=int(m["num_experts"]),
            expert_d_ff=int(m["expert_d_ff"]),
            routing=routing["type"],
            k=int(routing.get("k", 4 if routing["type"] == "sigmoid_topk"
                              else 1)),
            batch_prioritized=bool(routing.get("batch_prioritized", True)),
            train_capacity_factor=float(m.get("train_capacity_factor", 1.0)),
            eval_capacity_factor=float(m.get("eval_capacity_factor", 1.0)),
            min_expert_capacity=int(m.get("min_expert_capacity", 4)),
            max_group_size=int(m.get("max_group_size", 4096)),
            router_dtype=m.get("router_dtype", "float32"))
    heads = model.get("heads", {})
    classification = heads.get("classification")
    sentence = heads.get("sentence_embedding")
    return ModelConfig(
        name=model["name"],
        vocab_size=int(emb["vocab_size"]),
        type_vocab_size=int(emb.get("type_vocab_size", 4)),
        d_emb=int(emb.get("d_emb", d_model)),
        max_seq_length=int(emb["max_seq_length"]),
        pad_id=int(emb.get("pad_id", 0)),
        d_model=d_model,
        num_layers=num_layers,
        d_ff=int(model["d_ff"]) if "d_ff" in model else None,
        layer_norm_epsilon=float(model.get("layer_norm_epsilon", 1e-12)),
        norm=model.get("norm", "post"),
        mixing_kind=mixing["kind"],
        attention_layers=resolve_placement(mixing.get("attention_layers"),
                                           num_layers),
        num_heads=num_heads,
        head_dim=int(attention.get("head_dim", d_model // num_heads)),
        causal=bool(attention.get("causal", False)),
        moe_layers=moe_layers,
        moe=moe,
        pooler=bool(heads.get("pooler", False)),
        mlm=bool(heads.get("mlm", False)),
        nsp=bool(heads.get("nsp", False)),
        num_classes=(int(classification["num_classes"])
                     if classification is not None else None),
        causal_lm=bool(heads.get("causal_lm", False)),
        activation=model.get("activation", "gelu"),
        hidden_mapping_in=bool(emb.get("hidden_mapping_in", True)),
        sentence_pooling=sentence["pooling"] if sentence else None,
        sentence_normalize=bool(sentence.get("normalize", False))
        if sentence else False)


def load_config(path: Union[str, Path]) -> ModelConfig:
    """Reads a model JSON file."""
    with open(path, encoding="utf-8") as f:
        return parse_config(json.load(f))


# ----------------------------------------------------------------------------
# Parameter table (docs/parameters.md order)
# ----------------------------------------------------------------------------

def _layer_norm_params(prefix: str, width: int) -> list:
    return [(f"{prefix}/scale", (width,)), (f"{prefix}/bias", (width,))]


def _layer_params(cfg: ModelConfig, layer: int) -> list:
    d, s = cfg.d_model, cfg.max_seq_length
    enc = "encoder"
    specs = []
    if cfg.is_attention_layer(layer):
        h, hd = cfg.num_heads, cfg.head_dim
        base = f"{enc}/attention_{layer}/self"
        specs += [(f"{base}/{p}/kernel", (d, h, hd))
                  for p in ("query", "key", "value")]
        specs += [(f"{base}/{p}/bias", (h, hd))
                  for p in ("query", "key", "value")]
        specs += [(f"{base}/out/kernel", (h, hd, d)),
                  (f"{base}/out/bias", (d,))]
    elif cfg.mixing_kind in ("linear", "circulant", "toeplitz"):
        hidden, seq = {
            "linear": ((d, d), (s, s)),
            "circulant": ((d,), (s,)),
            "toeplitz": ((2 * d - 1,), (2 * s - 1,)),
        }[cfg.mixing_kind]
        base = f"{enc}/{cfg.mixing_kind}_transform_{layer}"
        specs += [(f"{base}/hidden_kernel", hidden),
                  (f"{base}/input_kernel", seq)]
    if cfg.is_moe_layer(layer):
        e, fe = cfg.moe.num_experts, cfg.moe.expert_d_ff
        expert = f"{enc}/expert_{layer}"
        router = f"{enc}/router_weights_{layer}"
        if cfg.moe.routing == "sigmoid_topk":
            specs += [(f"{expert}/keys", (e, d, fe)),
                      (f"{expert}/values", (e, fe, d)),
                      (f"{router}/expert_sel", (e, d))]
        else:
            specs += [(f"{expert}/intermediate/kernel", (e, d, fe)),
                      (f"{expert}/intermediate/bias", (e, fe)),
                      (f"{expert}/output/kernel", (e, fe, d)),
                      (f"{expert}/output/bias", (e, d)),
                      (f"{router}/kernel", (d, e)),
                      (f"{router}/bias", (e,))]
    else:
        ff, f = f"{enc}/feed_forward_{layer}", cfg.d_ff
        specs += [(f"{ff}/intermediate/kernel", (d, f)),
                  (f"{ff}/intermediate/bias", (f,)),
                  (f"{ff}/output/kernel", (f, d)),
                  (f"{ff}/output/bias", (d,))]
    for ln in ("mixing_layer_norm", "output_layer_norm"):
        specs += _layer_norm_params(f"{enc}/encoder_{layer}/{ln}", d)
    return specs


def parameter_specs(cfg: ModelConfig) -> list:
    """Returns [(name, shape)] for every parameter, in the documented order."""
    v, tv, de, d = cfg.vocab_size, cfg.type_vocab_size, cfg.d_emb, cfg.d_model
    emb = "encoder/embedder"
    specs = [(f"{emb}/word/embedding", (v, de)),
             (f"{emb}/position/embedding", (1, cfg.max_seq_length, de)),
             (f"{emb}/type/embedding", (tv, de))]
    specs += _layer_norm_params(f"{emb}/layer_norm", de)
    if cfg.hidden_mapping_in:
        specs += [(f"{emb}/hidden_mapping_in/kernel", (de, d)),
                  (f"{emb}/hidden_mapping_in/bias", (d,))]
    for layer in range(cfg.num_layers):
        specs += _layer_params(cfg, layer)
    if cfg.norm == "pre":
        specs += _layer_norm_params("encoder/final_layer_norm", d)
    if cfg.pooler:
        specs += [("encoder/pooler/kernel", (d, d)),
                  ("encoder/pooler/bias", (d,))]
    if cfg.mlm:
        specs += [("predictions_dense/kernel", (d, de)),
                  ("predictions_dense/bias", (de,))]
        specs += _layer_norm_params("predictions_layer_norm", de)
        specs += [("predictions_output/output_bias", (v,))]
    classes = 2 if cfg.nsp else cfg.num_classes
    if classes is not None:
        specs += [("classification/output_kernel", (classes, d)),
                  ("classification/output_bias", (classes,))]
    if cfg.causal_lm:
        specs += [("causal_lm/kernel", (d, v)), ("causal_lm/bias", (v,))]
    return specs


def parameter_count(cfg: ModelConfig) -> int:
    """Total number of parameter elements."""
    return sum(math.prod(shape) for _, shape in parameter_specs(cfg))


# ----------------------------------------------------------------------------
# Tensor files
# ----------------------------------------------------------------------------

_SAFETENSORS_DTYPES = {"F32": np.dtype("<f4"), "I32": np.dtype("<i4"),
                       "I64": np.dtype("<i8")}


def read_safetensors(path: Union[str, Path]) -> dict:
    """Reads every tensor of a safetensors file (F32/I32/I64)."""
    data = Path(path).read_bytes()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + header_len].decode("utf-8"))
    base = 8 + header_len
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in _SAFETENSORS_DTYPES:
            raise ValueError(f"{path}: tensor '{name}' has unsupported dtype "
                             f"{info['dtype']}")
        dtype = _SAFETENSORS_DTYPES[info["dtype"]]
        begin, end = info["data_offsets"]
        arr = np.frombuffer(data, dtype=dtype,
                            count=(end - begin) // dtype.itemsize,
                            offset=base + begin)
        tensors[name] = arr.reshape(info["shape"]).copy()
    return tensors


def write_safetensors(path: Union[str, Path], tensors: dict) -> None:
    """Writes tensors (float32, int32 or int64) in insertion order."""
    codes = {np.dtype(v): k for k, v in _SAFETENSORS_DTYPES.items()}
    header, chunks, offset = {}, [], 0
    for name, value in tensors.items():
        # ascontiguousarray makes scalars 1-d; the reshape keeps them 0-d.
        arr = np.ascontiguousarray(value).reshape(np.shape(value))
        dtype = arr.dtype.newbyteorder("<")
        if dtype not in codes:
            raise ValueError(f"{path}: tensor '{name}' has unsupported dtype "
                             f"{arr.dtype}")
        raw = arr.astype(dtype, copy=False).tobytes()
        header[name] = {"dtype": codes[dtype], "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for chunk in chunks:
            f.write(chunk)


def read_tensors(path: Union[str, Path]) -> dict:
    """Reads a .safetensors, .npz or .npy file into {name: array}."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    if path.suffix == ".npz":
        with np.load(path) as archive:
            return {name: archive[name] for name in archive.files}
    if path.suffix == ".npy":
        return {path.stem: np.load(path)}
    raise ValueError(f"{path}: unknown tensor file extension")


def write_tensors(path: Union[str, Path], tensors: dict) -> None:
    """Writes a .safetensors or .npz file, chosen by the extension."""
    path = Path(path)
    if path.suffix == ".safetensors":
        write_safetensors(path, tensors)
    elif path.suffix == ".npz":
        np.savez(path, **tensors)
    else:
        raise ValueError(f"{path}: cannot write this extension")


# ----------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------


def gelu(x: np.ndarray) -> np.ndarray:
    """Tanh-approximated GELU."""
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) *
                                    (x + 0.044715 * x ** 3)))


_erf = np.vectorize(math.erf, otypes=[np.float64])


def gelu_erf(x: np.ndarray) -> np.ndarray:
    """Exact GELU, x * Phi(x) = x / 2 (1 + erf(x / sqrt 2))."""
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def activation(name: str):
    """The GELU a model's `activation` names."""
    return {"gelu": gelu, "gelu_erf": gelu_erf}[name]


def pool(h: np.ndarray, input_ids: np.ndarray, pad_id: int, pooling: str,
         normalize: bool) -> np.ndarray:
    """Sentence embeddings [B, D]: h[:, 0] (cls) or the mean over the
    non-pad positions (mean; zeros without any), L2-normalised on request
    (the norm at least 1e-12)."""
    if pooling == "cls":
        rows = h[:, 0]
    else:
        mask = (input_ids != pad_id).astype(np.float64)[:, :, None]
        rows = (h * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1.0)
    if normalize:
        norm = np.sqrt((rows * rows).sum(axis=-1, keepdims=True))
        rows = rows / np.maximum(norm, 1e-12)
    return rows


def layer_norm(x: np.ndarray, scale: np.ndarray, bias: np.ndarray,
               eps: float) -> np.ndarray:
    """LayerNorm over the last axis with var = max(E[x²] − mean², 0)."""
    mean = x.mean(axis=-1, keepdims=True)
    var = np.maximum((x * x).mean(axis=-1, keepdims=True) - mean * mean, 0.0)
    return (x - mean) / np.sqrt(var + eps) * scale + bias


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax."""
    z = np.exp(x - x.max(axis=axis, keepdims=True))
    return z / z.sum(axis=axis, keepdims=True)


def round_to_bfloat16(x: np.ndarray) -> np.ndarray:
    """Rounds to float32, then to bfloat16 (nearest-even); returns float64."""
    f = np.asarray(x, dtype=np.float32)
    bits = f.view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    rounded = bits.astype(np.uint32).view(np.float32)
    return np.where(np.isnan(f), f, rounded).astype(np.float64)


def circulant_matrix(v: np.ndarray) -> np.ndarray:
    """Circ(v)[r, c] = v[(r − c) mod n]."""
    n = v.shape[0]
    r, c = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    return v[(r - c) % n]


def toeplitz_matrix(t: np.ndarray) -> np.ndarray:
    """Toep(t)[r, c] = t[(n − 1) + c − r] for t of length 2n − 1."""
    n = (t.shape[0] + 1) // 2
    r, c = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    return t[(n - 1) + c - r]


def mix_linear(x: np.ndarray, seq_kernel: np.ndarray,
               hidden_kernel: np.ndarray) -> np.ndarray:
    """Y[b] = W_s · X[b] · W_h (both untransposed)."""
    return np.einsum("ni,bij,jk->bnk", seq_kernel, x, hidden_kernel,
                     optimize=True)


def mix_structured(x: np.ndarray, seq_matrix: np.ndarray,
                   hidden_matrix: np.ndarray) -> np.ndarray:
    """Y[b] = M_s · X[b] · M_hᵀ (circulant and Toeplitz mixing)."""
    return np.einsum("ni,bij,kj->bnk", seq_matrix, x, hidden_matrix,
                     optimize=True)


def mix_fourier(x: np.ndarray, hartley: bool) -> np.ndarray:
    """Re of the 2-D DFT over (S, D) of each example; Re − Im for Hartley."""
    spectrum = np.fft.fft2(x, axes=(-2, -1))
    return spectrum.real - spectrum.imag if hartley else spectrum.real


def attention(x: np.ndarray, params: dict, prefix: str, input_ids: np.ndarray,
              pad_id: int, causal: bool) -> np.ndarray:
    """Multi-head self-attention with a padding (and optional causal) mask."""
    def project(name: str) -> np.ndarray:
        kernel = params[f"{prefix}/{name}/kernel"]
        return (np.einsum("bsd,dhk->bshk", x, kernel)
                + params[f"{prefix}/{name}/bias"])

    q, k, v = project("query"), project("key"), project("value")
    head_dim = q.shape[-1]
    logits = np.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(head_dim)
    valid = input_ids != pad_id
    mask = valid[:, None, :, None] & valid[:, None, None, :]
    if causal:
        seq = input_ids.shape[1]
        mask = mask & np.tril(np.ones((seq, seq), dtype=bool))
    probs = softmax(np.where(mask, logits, LOWEST_FLOAT32), axis=-1)
    context = np.einsum("bhqk,bkhd->bqhd", probs, v)
    return (np.einsum("bqhd,hdo->bqo", context, params[f"{prefix}/out/kernel"])
            + params[f"{prefix}/out/bias"])


def feed_forward(x: np.ndarray, w1: np.ndarray, b1: np.ndarray,
                 w2: np.ndarray, b2: np.ndarray, act=gelu) -> np.ndarray:
    """act(x·W1 + b1)·W2 + b2, act a GELU."""
    return act(x @ w1 + b1) @ w2 + b2


# ----------------------------------------------------------------------------
# MoE routing
# ----------------------------------------------------------------------------


def num_groups(num_tokens: int, max_group_size: int) -> int:
    """Smallest divisor of num_tokens ≥ max(num_tokens // max_group_size, 1).
    """
    n = max(num_tokens // max_group_size, 1)
    while num_tokens % n:
        n += 1
    return n


def group_shape(num_tokens: int, moe: MoeConfig,
                capacity_factor: float) -> tuple:
    """Returns (groups G, tokens per group T, expert capacity C)."""
    groups = num_groups(num_tokens, moe.max_group_size)
    tokens = num_tokens // groups
    # Python's round() rounds halves to even, as the routing rule requires.
    capacity = max(int(round(capacity_factor * tokens / moe.num_experts)),
                   moe.min_expert_capacity)
    if capacity > tokens:
        raise ValueError(f"expert capacity {capacity} exceeds the "
                         f"{tokens} tokens of a routing group")
    return groups, tokens, capacity


def bfloat16_softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis op by op in bfloat16, in float32 arithmetic.

    z = bf16(l − max l), e = bf16(exp z), s = bf16(Σ e) summed in index
    order, p = bf16(e · (1/s)) with 1/s in float32.
    """
    f32 = np.float32
    logits = np.asarray(logits, dtype=f32)
    with np.errstate(over="ignore", invalid="ignore"):
        z = round_to_bfloat16(logits - logits.max(axis=-1, keepdims=True))
    e = round_to_bfloat16(np.exp(z).astype(f32)).astype(f32)
    total = np.cumsum(e, axis=-1, dtype=f32)[..., -1:]
    inverse = f32(1) / round_to_bfloat16(total).astype(f32)
    return round_to_bfloat16(e * inverse)


def router_probabilities(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray,
                         router_dtype: str) -> np.ndarray:
    """The router's probabilities over experts.

    float32: softmax of x·W + b. bfloat16: x and W rounded to bfloat16, their
    products summed in float32, the logits bf16(bf16(x·W) + bf16(b)) and the
    bfloat16 softmax.
    """
    if router_dtype == "bfloat16":
        f32 = np.float32
        products = (round_to_bfloat16(x).astype(f32) @
                    round_to_bfloat16(kernel).astype(f32))
        logits = round_to_bfloat16(
            round_to_bfloat16(products).astype(f32) +
            round_to_bfloat16(bias).astype(f32))
        return bfloat16_softmax(logits)
    return softmax(x @ kernel + bias)


def _descending_order(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Indices sorting `values` descending; ties keep the lower index first."""
    return np.argsort(-values, axis=axis, kind="stable")


def route_experts_choose(probs: np.ndarray, capacity: int) -> np.ndarray:
    """Experts choose over one group's probs [T, E].

    Returns slot [T, E]: the buffer position of token t in expert e, or -1.
    Each expert takes its `capacity` most probable tokens.
    """
    slot = np.full(probs.shape, -1, dtype=np.int64)
    for e in range(probs.shape[1]):
        chosen = _descending_order(probs[:, e])[:capacity]
        slot[chosen, e] = np.arange(capacity)
    return slot


def route_tokens_choose(probs: np.ndarray, k: int, capacity: int,
                        batch_prioritized: bool) -> np.ndarray:
    """Tokens choose over one group's probs [T, E]; returns slot [T, E].

    Every token picks its k most probable experts. Buffers are filled with all
    first choices before any second choice; within one choice rank, tokens
    come in index order, or by descending top-1 probability with batch
    prioritized routing. Assignments beyond `capacity` are dropped.
    """
    num_tokens, num_experts = probs.shape
    choices = _descending_order(probs, axis=1)[:, :k]
    order = np.arange(num_tokens)
    if batch_prioritized:
        top1 = probs[np.arange(num_tokens), choices[:, 0]]
        order = _descending_order(top1)
    slot = np.full(probs.shape, -1, dtype=np.int64)
    filled = np.zeros(num_experts, dtype=np.int64)
    for rank in range(k):
        for t in order:
            e = choices[t, rank]
            if filled[e] < capacity:
                slot[t, e] = filled[e]
            filled[e] += 1
    return slot


def route_sigmoid_topk(gates: np.ndarray, k: int) -> np.ndarray:
    """σ-MoE selection: mask [N, E] of each token's k highest gates."""
    chosen = _descending_order(gates, axis=1)[:, :k]
    mask = np.zeros(gates.shape, dtype=bool)
    np.put_along_axis(mask, chosen, True, axis=1)
    return mask


def combine_experts(x: np.ndarray, weights: np.ndarray, taken: np.ndarray,
                    expert: Callable[[int, np.ndarray], np.ndarray]
                    ) -> np.ndarray:
    """out[t] = Σ_e taken[t,e] · weights[t,e] · expert(e, x[t])."""
    out = np.zeros_like(x)
    for e in range(weights.shape[1]):
        rows = np.nonzero(taken[:, e])[0]
        if rows.size:
            out[rows] += weights[rows, e, None] * expert(e, x[rows])
    return out


def moe_layer(x: np.ndarray, params: dict, layer: int,
              moe: MoeConfig) -> np.ndarray:
    """MoE feed-forward over the tokens x [N, D] of the whole batch."""
    expert_prefix = f"encoder/expert_{layer}"
    router_prefix = f"encoder/router_weights_{layer}"
    if moe.routing == "sigmoid_topk":
        logits = x @ params[f"{router_prefix}/expert_sel"].T
        gates = 0.5 * (1.0 + np.tanh(0.5 * logits))  # sigmoid without overflow
        keys = params[f"{expert_prefix}/keys"]
        values = params[f"{expert_prefix}/values"]
        return combine_experts(
            x, gates, route_sigmoid_topk(gates, moe.k),
            lambda e, xs: np.maximum(xs @ keys[e], 0.0) @ values[e])

    probs = router_probabilities(x, params[f"{router_prefix}/kernel"],
                                 params[f"{router_prefix}/bias"],
                                 moe.router_dtype)
    groups, tokens, capacity = group_shape(x.shape[0], moe,
                                           moe.eval_capacity_factor)
    slots = []
    for g in range(groups):
        group_probs = probs[g * tokens:(g + 1) * tokens]
        if moe.routing == "experts_choose":
            slots.append(route_experts_choose(group_probs, capacity))
        else:
            slots.append(route_tokens_choose(group_probs, moe.k, capacity,
                                             moe.batch_prioritized))
    taken = np.concatenate(slots) >= 0
    w1 = params[f"{expert_prefix}/intermediate/kernel"]
    b1 = params[f"{expert_prefix}/intermediate/bias"]
    w2 = params[f"{expert_prefix}/output/kernel"]
    b2 = params[f"{expert_prefix}/output/bias"]
    return combine_experts(
        x, probs, taken,
        lambda e, xs: feed_forward(xs, w1[e], b1[e], w2[e], b2[e]))


# ----------------------------------------------------------------------------
# Forward pass
# ----------------------------------------------------------------------------


def _mixing(cfg: ModelConfig, params: dict, layer: int, x: np.ndarray,
            input_ids: np.ndarray) -> np.ndarray:
    if cfg.is_attention_layer(layer):
        return attention(x, params, f"encoder/attention_{layer}/self",
                         input_ids, cfg.pad_id, cfg.causal)
    kind = cfg.mixing_kind
    if kind in ("fourier", "hartley"):
        return mix_fourier(x, hartley=kind == "hartley")
    if kind == "identity":
        return x
    prefix = f"encoder/{kind}_transform_{layer}"
    seq = params[f"{prefix}/input_kernel"]
    hidden = params[f"{prefix}/hidden_kernel"]
    if kind == "linear":
        return mix_linear(x, seq, hidden)
    build = circulant_matrix if kind == "circulant" else toeplitz_matrix
    return mix_structured(x, build(seq), build(hidden))


def _feed_forward(cfg: ModelConfig, params: dict, layer: int,
                  x: np.ndarray) -> np.ndarray:
    if cfg.is_moe_layer(layer):
        flat = x.reshape(-1, x.shape[-1])
        return moe_layer(flat, params, layer, cfg.moe).reshape(x.shape)
    p = f"encoder/feed_forward_{layer}"
    return feed_forward(x, params[f"{p}/intermediate/kernel"],
                        params[f"{p}/intermediate/bias"],
                        params[f"{p}/output/kernel"],
                        params[f"{p}/output/bias"], activation(cfg.activation))


def _check_params(cfg: ModelConfig, params: dict) -> None:
    for name, shape in parameter_specs(cfg):
        if name not in params:
            raise ValueError(f"missing parameter '{name}'")
        if tuple(params[name].shape) != tuple(shape):
            raise ValueError(f"parameter '{name}' has shape "
                             f"{list(params[name].shape)}, expected "
                             f"{list(shape)}")


def forward(cfg: ModelConfig, params: dict, input_ids: np.ndarray,
            type_ids: Optional[np.ndarray] = None) -> dict:
    """Runs the model on int ids [B, S]; returns float32 outputs by name."""
    _check_params(cfg, params)
    p = {name: np.asarray(params[name], dtype=np.float64)
         for name, _ in parameter_specs(cfg)}
    input_ids = np.asarray(input_ids, dtype=np.int64)
    if input_ids.ndim != 2 or input_ids.shape[1] > cfg.max_seq_length:
        raise ValueError(f"input_ids must be [B, S] with S <= "
                         f"{cfg.max_seq_length}, got {list(input_ids.shape)}")
    type_ids = (np.zeros_like(input_ids) if type_ids is None
                else np.asarray(type_ids, dtype=np.int64))
    seq = input_ids.shape[1]
    eps = cfg.layer_norm_epsilon

    def ln(prefix: str, x: np.ndarray) -> np.ndarray:
        return layer_norm(x, p[f"{prefix}/scale"], p[f"{prefix}/bias"], eps)

    emb = "encoder/embedder"
    e = (p[f"{emb}/word/embedding"][input_ids]
         + p[f"{emb}/position/embedding"][0, :seq]
         + p[f"{emb}/type/embedding"][type_ids])
    h = ln(f"{emb}/layer_norm", e)
    if cfg.hidden_mapping_in:
        h = (h @ p[f"{emb}/hidden_mapping_in/kernel"]
             + p[f"{emb}/hidden_mapping_in/bias"])
    for layer in range(cfg.num_layers):
        block = f"encoder/encoder_{layer}"
        mix_ln = f"{block}/mixing_layer_norm"
        out_ln = f"{block}/output_layer_norm"
        if cfg.norm == "post":
            h = ln(mix_ln, h + _mixing(cfg, p, layer, h, input_ids))
            h = ln(out_ln, h + _feed_forward(cfg, p, layer, h))
        else:
            h = h + _mixing(cfg, p, layer, ln(mix_ln, h), input_ids)
            h = h + _feed_forward(cfg, p, layer, ln(out_ln, h))
    if cfg.norm == "pre":
        h = ln("encoder/final_layer_norm", h)

    out = {"sequence_output": h}
    if cfg.sentence_pooling is not None:
        out["sentence_embedding"] = pool(h, input_ids, cfg.pad_id,
                                         cfg.sentence_pooling,
                                         cfg.sentence_normalize)
    if cfg.pooler:
        out["pooled_output"] = np.tanh(h[:, 0] @ p["encoder/pooler/kernel"]
                                       + p["encoder/pooler/bias"])
    if cfg.mlm:
        g = activation(cfg.activation)(h @ p["predictions_dense/kernel"]
                                       + p["predictions_dense/bias"])
        g = ln("predictions_layer_norm", g)
        out["mlm_logits"] = (g @ p[f"{emb}/word/embedding"].T
                             + p["predictions_output/output_bias"])
    if cfg.nsp or cfg.num_classes is not None:
        logits = (out["pooled_output"] @ p["classification/output_kernel"].T
                  + p["classification/output_bias"])
        out["nsp_logits" if cfg.nsp else "classification_logits"] = logits
    if cfg.causal_lm:
        out["causal_lm_logits"] = (h @ p["causal_lm/kernel"]
                                   + p["causal_lm/bias"])
    return {name: value.astype(np.float32) for name, value in out.items()}


# ----------------------------------------------------------------------------
# Test-data generators and comparison
# ----------------------------------------------------------------------------


def random_weights(cfg: ModelConfig, seed: int) -> dict:
    """normal(0.02) for every parameter; LayerNorm scales 1 + normal(0.1)."""
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shape in parameter_specs(cfg):
        value = rng.normal(0.0, 0.02, size=shape)
        if name.endswith("/scale"):
            value = 1.0 + rng.normal(0.0, 0.1, size=shape)
        weights[name] = value.astype(np.float32)
    return weights


def random_batch(cfg: ModelConfig, batch: int, seed: int) -> dict:
    """Random non-pad ids; odd rows end in a run of pad tokens."""
    rng = np.random.default_rng(seed)
    seq = cfg.max_seq_length
    ids = rng.integers(0, cfg.vocab_size - 1, size=(batch, seq))
    ids = ids + (ids >= cfg.pad_id)  # skip pad_id
    for row in range(1, batch, 2):
        length = int(rng.integers(max(seq // 2, 1), seq)) if seq > 1 else seq
        ids[row, length:] = cfg.pad_id
    types = rng.integers(0, cfg.type_vocab_size, size=(batch, seq))
    return {"input_ids": ids.astype(np.int32),
            "type_ids": types.astype(np.int32)}


def compare_tensors(actual: dict, expected: dict, rtol: float) -> tuple:
    """Checks max|a − b| <= rtol·max(1, max|b|) for every tensor of `expected`.

    Returns (ok, report lines).
    """
    ok, lines = True, []
    for name, b in expected.items():
        if name not in actual:
            ok = False
            lines.append(f"{name}: MISSING")
            continue
        a = np.asarray(actual[name], dtype=np.float64)
        b = np.asarray(b, dtype=np.float64)
        if a.shape != b.shape:
            ok = False
            lines.append(f"{name}: SHAPE {list(a.shape)} vs {list(b.shape)}")
            continue
        if a.size == 0:
            lines.append(f"{name}: empty OK")
            continue
        max_abs = float(np.max(np.abs(a - b)))
        scale = max(1.0, float(np.max(np.abs(b))))
        good = bool(np.isfinite(max_abs)) and max_abs <= rtol * scale
        ok = ok and good
        lines.append(f"{name}: max_abs {max_abs:.3e} "
                     f"rel {max_abs / scale:.3e} "
                     f"{'OK' if good else 'MISMATCH'}")
    return ok, lines


# ----------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------


def _cmd_forward(args: argparse.Namespace) -> int:
    cfg = load_config(args.model)
    batch = read_tensors(args.input)
    if "input_ids" not in batch:
        raise ValueError(f"{args.input}: no 'input_ids' tensor")
    outputs = forward(cfg, read_tensors(args.weights), batch["input_ids"],
                      batch.get("type_ids"))
    write_tensors(args.output, outputs)
    return 0


def _cmd_params(args: argparse.Namespace) -> int:
    cfg = load_config(args.model)
    for name, shape in parameter_specs(cfg):
        print(f"{name} {list(shape)}")
    print(f"total {parameter_count(cfg)}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    ok, lines = compare_tensors(read_tensors(args.actual),
                                read_tensors(args.expected), args.rtol)
    print("\n".join(lines))
    return 0 if ok else 1


def _cmd_random_weights(args: argparse.Namespace) -> int:
    write_tensors(args.output,
                  random_weights(load_config(args.model), args.seed))
    return 0


def training_batch(cfg: ModelConfig, batch: int, seed: int) -> dict:
    """Random ids plus the labels of the model's heads: masked-LM
    positions/labels, sentence labels, class labels or regression targets,
    next-token labels."""
    rng = np.random.default_rng(seed)
    tensors = random_batch(cfg, batch, seed)
    seq = tensors["input_ids"].shape[1]
    if cfg.mlm:
        predictions = min(80, seq)
        positions = np.stack([rng.permutation(seq)[:predictions]
                              for _ in range(batch)])
        labels = rng.integers(0, cfg.vocab_size, size=(batch, predictions))
        # Padded prediction slots (-1), a different count in each row, so
        # that the shares of a batch split over ranks count unequal labels.
        for row in range(batch):
            labels[row, 1 + (row * 5 + predictions // 2) % predictions:] = -1
        tensors["masked_lm_positions"] = positions.astype(np.int32)
        tensors["masked_lm_ids"] = labels.astype(np.int32)
    if cfg.nsp:
        tensors["next_sentence_labels"] = rng.integers(
            0, 2, size=batch).astype(np.int32)
    elif cfg.num_classes == 1:
        tensors["labels"] = rng.standard_normal(batch).astype(np.float32)
    elif cfg.num_classes:
        tensors["labels"] = rng.integers(
            0, cfg.num_classes, size=batch).astype(np.int32)
    if cfg.causal_lm:
        labels = rng.integers(0, cfg.vocab_size, size=(batch, seq))
        labels[:, seq - 2:] = -1  # positions without a next token
        tensors["labels"] = labels.astype(np.int32)
    return tensors



def _cmd_random_batch(args: argparse.Namespace) -> int:
    make = training_batch if args.training else random_batch
    tensors = make(load_config(args.model), args.batch, args.seed)
    if args.noise_key:
        tensors["seed"] = np.array(args.noise_key[0], dtype=np.int32)
        tensors["step"] = np.array(args.noise_key[1], dtype=np.int32)
    write_tensors(args.output, tensors)
    return 0


def main(argv: Optional[list] = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("forward", help="run the reference forward pass")
    p.add_argument("model")
    p.add_argument("--weights", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.set_defaults(func=_cmd_forward)

    p = sub.add_parser("params", help="print the parameter table")
    p.add_argument("model")
    p.set_defaults(func=_cmd_params)

    p = sub.add_parser("compare", help="compare the tensors of B with A")
    p.add_argument("actual", metavar="A")
    p.add_argument("expected", metavar="B")
    p.add_argument("--rtol", type=float, default=1e-4)
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("random-weights", help="write random weights")
    p.add_argument("model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(func=_cmd_random_weights)

    p = sub.add_parser("random-batch", help="write a random input batch")
    p.add_argument("model")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--training", action="store_true",
                   help="with the labels of the model's training heads")
    p.add_argument("--noise-key", type=int, nargs=2, metavar=("SEED", "STEP"),
                   help="with the inputs seed and step of a training "
                   "artifact's noise (a negative seed draws none)")
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(func=_cmd_random_batch)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError) as err:
        print(f"mixer_ref: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
