#!/usr/bin/env python3
"""How far mixer's bfloat16 router is from the alternatives around it.

1. Forward: the bfloat16 router of docs/parameters.md (bfloat16 operands,
   every step rounded) against the float32 router rounded only at its logits
   and probabilities: how many logits differ, and by how much the
   probabilities and a tiny model's outputs move (the NumPy reference).
2. Backward: mixer differentiates the bfloat16 router in float32 (roundings
   straight through, the softmax gradient at the rounded probabilities, the
   z-loss in float32). Differentiating through the bfloat16 operations
   instead (torch autograd on bfloat16 tensors, as the reference's JAX code
   does) gives other router gradients; this prints their relative distance
   (‖a − b‖ / ‖b‖ over each gradient) and the z-loss's.

    /usr/bin/python3 bench/bf16_router_gradients.py [--tokens 512] [--seeds 20]
"""

import argparse
import dataclasses
import pathlib
import sys

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] /
                       "test" / "reference"))
import mixer_ref  # noqa: E402


def rounded_float32_router(x, kernel, bias):
    """Logits and probabilities of the float32 router rounded to bfloat16."""
    logits = mixer_ref.round_to_bfloat16(x @ kernel + bias)
    probs = mixer_ref.round_to_bfloat16(
        mixer_ref.softmax(logits).astype(np.float32))
    return logits, probs


def recipe_logits(x, kernel, bias):
    f32 = np.float32
    products = (mixer_ref.round_to_bfloat16(x).astype(f32) @
                mixer_ref.round_to_bfloat16(kernel).astype(f32))
    return mixer_ref.round_to_bfloat16(
        mixer_ref.round_to_bfloat16(products).astype(f32) +
        mixer_ref.round_to_bfloat16(bias).astype(f32))


def relative(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def forward_differences(seeds):
    changed, total, prob_rel = 0, 0, []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((96 // 4, 16))
        kernel = rng.normal(0.0, 0.02, (16, 4)) * 10
        bias = rng.normal(0.0, 0.02, 4)
        old_logits, old_probs = rounded_float32_router(x, kernel, bias)
        logits = recipe_logits(x, kernel, bias)
        probs = mixer_ref.bfloat16_softmax(logits)
        changed += int(np.sum(old_logits != logits))
        total += logits.size
        prob_rel.append(np.max(np.abs(old_probs - probs) / probs))
    print(f"forward: {changed} of {total} logits differ between the rounded "
          f"float32 router and the bfloat16 router; probabilities up to "
          f"{max(prob_rel):.2e} relative (median row max "
          f"{np.median(prob_rel):.2e})")


def model_differences():
    path = pathlib.Path(__file__).resolve().parents[1] / "models" / "tiny"
    for name in ("fast_sparse_mixer_tiny", "sparse_mixer_tiny"):
        cfg = mixer_ref.load_config(path / f"{name}.json")
        cfg = dataclasses.replace(cfg, moe=dataclasses.replace(
            cfg.moe, router_dtype="bfloat16"))
        params = mixer_ref.random_weights(cfg, seed=1)
        batch = mixer_ref.random_batch(cfg, batch=3, seed=2)
        new = mixer_ref.forward(cfg, params, batch["input_ids"],
                                batch["type_ids"])
        saved = mixer_ref.router_probabilities
        mixer_ref.router_probabilities = (
            lambda x, k, b, _: rounded_float32_router(x, k, b)[1])
        try:
            old = mixer_ref.forward(cfg, params, batch["input_ids"],
                                    batch["type_ids"])
        finally:
            mixer_ref.router_probabilities = saved
        seq_new, seq_old = new["sequence_output"], old["sequence_output"]
        scale = np.max(np.abs(seq_new))
        print(f"forward, {name} with a bfloat16 router: sequence_output "
              f"differs by up to {np.max(np.abs(seq_new - seq_old)) / scale:.2e}"
              f" of its largest magnitude")


def torch_bf16_router(x, kernel, bias, upstream, z_weight):
    """Loss Σ upstream·p + z_weight·mean(lse²) through bfloat16 autograd."""
    x = torch.tensor(x, dtype=torch.float32, requires_grad=True)
    kernel = torch.tensor(kernel, dtype=torch.float32, requires_grad=True)
    bias = torch.tensor(bias, dtype=torch.float32, requires_grad=True)
    products = (x.bfloat16().float() @ kernel.bfloat16().float()).bfloat16()
    logits = products + bias.bfloat16()
    e = torch.exp(logits - logits.max(dim=-1, keepdim=True).values.detach())
    total = e.sum(dim=-1, keepdim=True)
    probs = (e.float() * (1.0 / total.float())).bfloat16()
    z_loss = torch.logsumexp(logits, dim=-1).square().mean()
    loss = (torch.tensor(upstream).bfloat16() * probs).float().sum() + \
        z_weight * z_loss.float()
    loss.backward()
    return (float(z_loss), x.grad.numpy(), kernel.grad.numpy(),
            bias.grad.numpy())


def float32_backward(x, kernel, bias, upstream, z_weight):
    """mixer's backward of the same loss (runtime kernels' formulas)."""
    f32 = np.float32
    xr = mixer_ref.round_to_bfloat16(x).astype(f32)
    kr = mixer_ref.round_to_bfloat16(kernel).astype(f32)
    logits = recipe_logits(x, kernel, bias).astype(f32)
    probs = mixer_ref.bfloat16_softmax(logits).astype(f32)
    dp = upstream.astype(f32)
    dl = probs * (dp - np.sum(probs * dp, axis=-1, keepdims=True))
    lse = (np.log(np.sum(np.exp(logits - logits.max(-1, keepdims=True)), -1))
           + logits.max(-1)).astype(f32)
    z_loss = float(np.mean(lse.astype(np.float64) ** 2))
    dl += z_weight * 2 * lse[:, None] * mixer_ref.softmax(logits) / len(x)
    return z_loss, dl @ kr.T, xr.T @ dl, dl.sum(axis=0)


def backward_differences(tokens, seeds):
    names = ("z-loss", "dx", "router kernel", "router bias")
    rel = {n: [] for n in names}
    for seed in range(seeds):
        rng = np.random.default_rng(100 + seed)
        x = rng.standard_normal((tokens, 16)).astype(np.float32)
        kernel = rng.normal(0.0, 0.2, (16, 8)).astype(np.float32)
        bias = rng.normal(0.0, 0.02, 8).astype(np.float32)
        upstream = rng.standard_normal((tokens, 8)).astype(np.float32)
        ours = float32_backward(x, kernel, bias, upstream, 1e-3)
        theirs = torch_bf16_router(x, kernel, bias, upstream, 1e-3)
        rel["z-loss"].append(abs(ours[0] - theirs[0]) / abs(theirs[0]))
        for n, a, b in zip(names[1:], ours[1:], theirs[1:]):
            rel[n].append(relative(a, b))
    for n in names:
        print(f"backward: {n}: relative difference median "
              f"{np.median(rel[n]):.1e}, max {np.max(rel[n]):.1e}")
    return rel


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--seeds", type=int, default=20)
    args = parser.parse_args()
    forward_differences(args.seeds)
    model_differences()
    backward_differences(args.tokens, args.seeds)


if __name__ == "__main__":
    main()
