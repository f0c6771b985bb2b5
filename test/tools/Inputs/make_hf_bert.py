"""Writes a tiny BERT model directory in the Hugging Face layout and the
sentence embeddings a BERT forward pass in that layout gives, for
mixer-run-import.test.

  make_hf_bert.py DIR [--variant NAME] [--expect FILE.npz --ids FILE.npz]

DIR gets config.json, model.safetensors (random weights, nn.Linear weights
stored [out, in] as PyTorch does), vocab.txt and sentence-transformers'
modules.json and 1_Pooling/config.json (mean pooling, normalised). --expect
writes the mean-pooled, L2-normalised embeddings of the batch in
Inputs/hf-bert-ids.txt computed here from the Hugging Face tensors directly
(exact GELU, post-LN blocks), independently of mixer's mapping, and --ids
those token ids as the input file of mixer-run infer. A variant
breaks the directory in one way (see VARIANTS).
"""

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "reference"))
import mixer_ref  # noqa: E402

V, D, H, F, L, P, TV = 40, 8, 2, 12, 2, 16, 2
VARIANTS = ["ok", "unknown_key", "shape", "missing", "truncated",
            "pytorch_bin", "extra_tensor"]


def config():
    return {"architectures": ["BertModel"], "model_type": "bert",
            "vocab_size": V, "hidden_size": D, "num_hidden_layers": L,
            "num_attention_heads": H, "intermediate_size": F,
            "hidden_act": "gelu", "max_position_embeddings": P,
            "type_vocab_size": TV, "layer_norm_eps": 1e-12,
            "pad_token_id": 0, "position_embedding_type": "absolute",
            "hidden_dropout_prob": 0.1, "initializer_range": 0.02,
            "transformers_version": "4.8.2"}


def weights(rng):
    t = {}

    def normal(*shape, scale=0.3):
        return rng.normal(0.0, scale, size=shape).astype(np.float32)

    t["embeddings.word_embeddings.weight"] = normal(V, D)
    t["embeddings.position_embeddings.weight"] = normal(P, D)
    t["embeddings.token_type_embeddings.weight"] = normal(TV, D)
    t["embeddings.LayerNorm.weight"] = 1 + normal(D, scale=0.1)
    t["embeddings.LayerNorm.bias"] = normal(D, scale=0.1)
    t["embeddings.position_ids"] = np.arange(P, dtype=np.int64)[None]
    for l in range(L):
        p = f"encoder.layer.{l}."
        for name in ("query", "key", "value"):
            t[p + f"attention.self.{name}.weight"] = normal(D, D)
            t[p + f"attention.self.{name}.bias"] = normal(D, scale=0.1)
        t[p + "attention.output.dense.weight"] = normal(D, D)
        t[p + "attention.output.dense.bias"] = normal(D, scale=0.1)
        t[p + "attention.output.LayerNorm.weight"] = 1 + normal(D, scale=0.1)
        t[p + "attention.output.LayerNorm.bias"] = normal(D, scale=0.1)
        t[p + "intermediate.dense.weight"] = normal(F, D)
        t[p + "intermediate.dense.bias"] = normal(F, scale=0.1)
        t[p + "output.dense.weight"] = normal(D, F)
        t[p + "output.dense.bias"] = normal(D, scale=0.1)
        t[p + "output.LayerNorm.weight"] = 1 + normal(D, scale=0.1)
        t[p + "output.LayerNorm.bias"] = normal(D, scale=0.1)
    t["pooler.dense.weight"] = normal(D, D)
    t["pooler.dense.bias"] = normal(D, scale=0.1)
    return t


def layer_norm(x, w, b):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-12) * w + b


def linear(x, t, name):
    return x @ t[name + ".weight"].astype(np.float64).T + t[name + ".bias"]


def embed(t, ids):
    """Mean-pooled, normalised embeddings of BertModel's last hidden state."""
    erf = np.vectorize(math.erf)
    mask = ids != 0
    seq = ids.shape[1]
    h = (t["embeddings.word_embeddings.weight"][ids]
         + t["embeddings.position_embeddings.weight"][:seq]
         + t["embeddings.token_type_embeddings.weight"][0]).astype(np.float64)
    h = layer_norm(h, t["embeddings.LayerNorm.weight"],
                   t["embeddings.LayerNorm.bias"])
    hd = D // H
    for l in range(L):
        p = f"encoder.layer.{l}."

        def heads(x):
            return x.reshape(x.shape[0], seq, H, hd).transpose(0, 2, 1, 3)

        q = heads(linear(h, t, p + "attention.self.query"))
        k = heads(linear(h, t, p + "attention.self.key"))
        v = heads(linear(h, t, p + "attention.self.value"))
        logits = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd)
        # Padding keys are masked; padding queries do not reach the pooled
        # output.
        logits = np.where(mask[:, None, None, :], logits, -1e30)
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        context = (probs @ v).transpose(0, 2, 1, 3).reshape(h.shape)
        h = layer_norm(h + linear(context, t, p + "attention.output.dense"),
                       t[p + "attention.output.LayerNorm.weight"],
                       t[p + "attention.output.LayerNorm.bias"])
        inner = linear(h, t, p + "intermediate.dense")
        inner = 0.5 * inner * (1 + erf(inner / math.sqrt(2)))
        h = layer_norm(h + linear(inner, t, p + "output.dense"),
                       t[p + "output.LayerNorm.weight"],
                       t[p + "output.LayerNorm.bias"])
    m = mask[:, :, None].astype(np.float64)
    pooled = (h * m).sum(1) / m.sum(1)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("dir")
    parser.add_argument("--variant", choices=VARIANTS, default="ok")
    parser.add_argument("--expect")
    parser.add_argument("--ids")
    args = parser.parse_args()
    out = Path(args.dir)
    (out / "1_Pooling").mkdir(parents=True, exist_ok=True)
    cfg = config()
    t = weights(np.random.default_rng(5))
    if args.variant == "unknown_key":
        cfg["rotary_dim"] = 4
    if args.variant == "shape":
        cfg["intermediate_size"] = F + 4
    if args.variant == "missing":
        del t["encoder.layer.1.output.dense.bias"]
    if args.variant == "extra_tensor":
        t["encoder.layer.0.attention.self.distance_embedding.weight"] = \
            np.zeros((3, D), np.float32)
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens += [f"w{i}" for i in range(V - len(tokens))]
    (out / "vocab.txt").write_text("\n".join(tokens) + "\n")
    (out / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "",
         "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize",
         "type": "sentence_transformers.models.Normalize"}]))
    (out / "1_Pooling/config.json").write_text(json.dumps({
        "word_embedding_dimension": D, "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False}))
    weights_file = out / ("pytorch_model.bin" if args.variant == "pytorch_bin"
                          else "model.safetensors")
    if args.variant == "pytorch_bin":
        weights_file.write_bytes(b"PK\x03\x04 a pickle")
    else:
        writable = {k: v for k, v in t.items()}
        mixer_ref.write_safetensors(weights_file, writable)
    if args.variant == "truncated":
        data = weights_file.read_bytes()
        weights_file.write_bytes(data[:len(data) - 100])
    if args.expect:
        ids_file = Path(__file__).resolve().parent / "hf-bert-ids.txt"
        ids = np.array([[int(x) for x in line.split()]
                        for line in ids_file.read_text().splitlines()])
        np.savez(args.expect,
                 sentence_embedding=embed(t, ids).astype(np.float32))
        np.savez(args.ids, input_ids=ids.astype(np.int32))


if __name__ == "__main__":
    main()
