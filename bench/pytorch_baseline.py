#!/usr/bin/python3
"""PyTorch baseline for the mixer models (CPU or CUDA; eager or compiled).

Reads the same model JSON as `mixc` and runs the model the way a competent
PyTorch user would write it: plain tensor ops, a per-expert top-C over the
tokens of a routing group (a stable descending `torch.sort`, because
`torch.topk` breaks ties arbitrarily), `index_select` gather, one batched
matmul for all experts and an `index_add` combine. Supported: linear,
fourier, hartley, identity and attention mixing, dense feed-forward,
experts-choose MoE.

Usage (with /usr/bin/python3, Debian's python3-torch 1.13, on the CPU; any
PyTorch 2 on a GPU):

    bench/pytorch_baseline.py models/sparse_mixer_base.json [more.json ...] \
        [--batch 8] [--seq 512] [--runs 5] [--warmup 2] [--threads 2] \
        [--mode inference|train] [--mlm] \
        [--device cpu|cuda] [--dtype fp32|bf16] [--compile]

`--dtype bf16` runs the step under `torch.autocast` to bfloat16: matrix
products in bf16 with fp32 master weights, LayerNorm, softmax and losses in
fp32, as `mixc --precision bf16` does. `--compile` wraps the step's model
calls in `torch.compile` (PyTorch 2); its compilation happens in the warm-up.

Prints one JSON line per model with the median milliseconds per example and
the process's peak resident set. Inference times the encoder and pooler
(sequence_output and pooled_output), like the project's own benchmarks;
`--mlm` adds the MLM head over all positions. `--mode train` times the step
`mixc --train` compiles: zero_grad + forward with the dropout of the model's
`training` section (after the embedding projection, on the attention
probabilities, on dense feed-forward outputs, on expert output rows before the
gates) + MLM and NSP losses on 80 random masked positions per example and the
MoE layers' router z-losses + backward + AdamW with the section's b1, b2, eps
and weight decay.

BLAS configuration. Debian's torch does its fp32 matmuls in the system
`libblas.so.3`, which is OpenBLAS 0.3.21. Two settings decide its speed:

* Threading. The default alternative is the pthread build of OpenBLAS; under
  `torch.set_num_threads(2)` its threads and torch's OpenMP threads compete for
  the two cores (2.5-7x slower, timings swing by +-50 %). This script therefore
  re-executes itself with the OpenMP build of OpenBLAS (Debian package
  `libopenblas0-openmp`, which installs next to the pthread build without
  changing the system default) first on `LD_LIBRARY_PATH`, so BLAS and torch
  share one OpenMP thread pool, and with `OMP_NUM_THREADS` set to `--threads`.
  `--blas system` keeps the process environment as it is.
* Kernel selection. Some machines' environments set `OPENBLAS_CORETYPE=Haswell`
  (and `OPENBLAS_L2_SIZE`), which forces AVX2 kernels on AVX-512 CPUs and
  halves sgemm speed. The re-executed process has both variables removed, so
  OpenBLAS picks its kernels from the CPU itself.

The JSON line records the BLAS library actually loaded, its core name and
thread count, so a run in the wrong setting is visible.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import math
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Optional

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "test" / "reference"))

import mixer_ref  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

OPENMP_BLAS_DIR = Path("/usr/lib/x86_64-linux-gnu/openblas-openmp")
CONFIGURED_FLAG = "MIXER_BASELINE_BLAS_CONFIGURED"
SUPPORTED_MIXING = ("linear", "fourier", "hartley", "identity", "attention")


class MixerModel(torch.nn.Module):
    """A model JSON as a PyTorch module with the documented parameter names."""

    def __init__(self, cfg: mixer_ref.ModelConfig,
                 recipe: Optional[dict] = None):
        super().__init__()
        if cfg.mixing_kind not in SUPPORTED_MIXING:
            raise ValueError(f"mixing kind '{cfg.mixing_kind}' is not "
                             f"supported by the baseline")
        if cfg.moe is not None and cfg.moe.routing != "experts_choose":
            raise ValueError(f"routing '{cfg.moe.routing}' is not supported "
                             f"by the baseline")
        self.cfg = cfg
        self.recipe = recipe or {}
        # The router z-losses of the MoE layers of the current forward pass.
        self.router_z_losses = []
        self.params = torch.nn.ParameterDict({
            name: torch.nn.Parameter(torch.empty(shape))
            for name, shape in mixer_ref.parameter_specs(cfg)})

    def init_random(self, seed: int) -> None:
        """normal(0.02) weights and biases, LayerNorm scales one."""
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in self.params.items():
                if name.endswith("/scale"):
                    p.fill_(1.0)
                else:
                    p.normal_(0.0, 0.02, generator=gen)

    def load(self, weights: dict) -> None:
        """Copies numpy weights {name: array} into the parameters."""
        with torch.no_grad():
            for name, p in self.params.items():
                p.copy_(torch.from_numpy(np.asarray(weights[name])))

    def _dropout(self, x: torch.Tensor, key: str) -> torch.Tensor:
        """Inverted dropout at the recipe's `key` rate, in training only."""
        rate = self.recipe.get(key, 0.0)
        return F.dropout(x, rate, training=True) if self.training and rate \
            else x

    def _ln(self, prefix: str, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], self.params[f"{prefix}/scale"],
                            self.params[f"{prefix}/bias"],
                            self.cfg.layer_norm_epsilon)

    def _attention(self, layer: int, x: torch.Tensor,
                   mask: torch.Tensor) -> torch.Tensor:
        p, (b, s, d) = self.params, x.shape
        pre = f"encoder/attention_{layer}/self"
        heads, head_dim = self.cfg.num_heads, self.cfg.head_dim

        def project(name: str) -> torch.Tensor:
            w = p[f"{pre}/{name}/kernel"].reshape(d, heads * head_dim)
            y = torch.addmm(p[f"{pre}/{name}/bias"].reshape(-1),
                            x.reshape(b * s, d), w)
            return y.view(b, s, heads, head_dim).transpose(1, 2)

        q = project("query") / math.sqrt(head_dim)
        k, v = project("key"), project("value")
        logits = q @ k.transpose(-1, -2)
        logits = logits.masked_fill(~mask, torch.finfo(logits.dtype).min)
        probs = self._dropout(torch.softmax(logits, dim=-1),
                              "attention_dropout_rate")
        ctx = (probs @ v).transpose(1, 2)
        w_out = p[f"{pre}/out/kernel"].reshape(heads * head_dim, d)
        return torch.addmm(p[f"{pre}/out/bias"],
                           ctx.reshape(b * s, heads * head_dim),
                           w_out).view(b, s, d)

    def _mixing(self, layer: int, x: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        if self.cfg.is_attention_layer(layer):
            return self._attention(layer, x, mask)
        kind = self.cfg.mixing_kind
        if kind == "linear":
            pre = f"encoder/linear_transform_{layer}"
            return torch.matmul(self.params[f"{pre}/input_kernel"],
                                x @ self.params[f"{pre}/hidden_kernel"])
        if kind in ("fourier", "hartley"):
            # cuFFT and pocketfft have no bf16 transforms.
            spectrum = torch.fft.fft2(x.float(), dim=(-2, -1))
            return (spectrum.real - spectrum.imag if kind == "hartley"
                    else spectrum.real)
        return x

    def _experts_choose(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        p, moe = self.params, self.cfg.moe
        n, d = x.shape
        router = f"encoder/router_weights_{layer}"
        if moe.router_dtype == "bfloat16":
            # bfloat16 operands with float32 products, then every step of
            # the logits and the softmax in bfloat16 (1/s in float32).
            products = (x.bfloat16().float() @
                        p[f"{router}/kernel"].bfloat16().float())
            logits = products.bfloat16() + p[f"{router}/bias"].bfloat16()
            e = torch.exp(logits - logits.max(dim=-1, keepdim=True).values)
            total = e.float().cumsum(dim=-1)[..., -1:].bfloat16()
            probs = (e.float() * (1.0 / total.float())).bfloat16().to(x.dtype)
            logits = logits.float()
        else:
            logits = torch.addmm(p[f"{router}/bias"], x,
                                 p[f"{router}/kernel"])
            probs = torch.softmax(logits, dim=-1)
        if self.training:
            self.router_z_losses.append(
                torch.logsumexp(logits, dim=-1).square().mean())
        cf = (moe.train_capacity_factor if self.training
              else moe.eval_capacity_factor)
        groups, tokens, capacity = mixer_ref.group_shape(int(n), moe, cf)
        experts = moe.num_experts
        # Top-C tokens per expert. torch.topk leaves the order of ties open,
        # and bf16 probabilities tie often; a stable descending sort gives
        # ties to the lower token index, as the routing rule requires.
        per_expert = probs.view(groups, tokens, experts).transpose(1, 2)
        if torch.onnx.is_in_onnx_export():
            # ONNX's TopK gives ties to the lower index; the exporter has
            # no stable sort.
            gates, idx = torch.topk(per_expert, capacity, dim=-1)
        else:
            gates, idx = torch.sort(per_expert, dim=-1, descending=True,
                                    stable=True)
            gates, idx = gates[..., :capacity], idx[..., :capacity]
        # gates, idx: [G, E, C]
        idx = idx + (torch.arange(groups, device=x.device) * tokens).view(
            groups, 1, 1)
        rows = idx.transpose(0, 1).reshape(-1)  # expert-major [E*G*C]
        xe = x.index_select(0, rows).view(experts, groups * capacity, d)
        pre = f"encoder/expert_{layer}"
        hidden = torch.baddbmm(p[f"{pre}/intermediate/bias"].unsqueeze(1),
                               xe, p[f"{pre}/intermediate/kernel"])
        hidden = F.gelu(hidden, approximate="tanh")
        ye = torch.baddbmm(p[f"{pre}/output/bias"].unsqueeze(1), hidden,
                           p[f"{pre}/output/kernel"])
        ye = self._dropout(ye, "expert_dropout_rate")
        ye = ye * gates.transpose(0, 1).reshape(experts, groups * capacity, 1)
        # Under autocast the products are bf16 and x (a LayerNorm output) fp32.
        ye = ye.reshape(-1, d).to(x.dtype)
        if torch.onnx.is_in_onnx_export():
            # The exporter writes index_add as a ScatterND that overwrites
            # repeated rows; ScatterElements adds them.
            return torch.zeros_like(x).scatter_add(
                0, rows.unsqueeze(1).expand(-1, d), ye)
        return torch.zeros_like(x).index_add(0, rows, ye)

    def _feed_forward(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.is_moe_layer(layer):
            return self._experts_choose(layer, x.reshape(-1, x.shape[-1])
                                        ).view(x.shape)
        p, pre = self.params, f"encoder/feed_forward_{layer}"
        hidden = F.gelu(x @ p[f"{pre}/intermediate/kernel"]
                        + p[f"{pre}/intermediate/bias"], approximate="tanh")
        return self._dropout(
            hidden @ p[f"{pre}/output/kernel"] + p[f"{pre}/output/bias"],
            "dropout_rate")

    def encode(self, input_ids: torch.Tensor,
               type_ids: torch.Tensor) -> torch.Tensor:
        """Embeddings and encoder layers: sequence_output [B, S, D]."""
        cfg, p = self.cfg, self.params
        seq = input_ids.shape[1]
        emb = "encoder/embedder"
        e = (p[f"{emb}/word/embedding"][input_ids]
             + p[f"{emb}/position/embedding"][:, :seq]
             + p[f"{emb}/type/embedding"][type_ids])
        h = self._dropout(self._ln(f"{emb}/layer_norm", e)
                          @ p[f"{emb}/hidden_mapping_in/kernel"]
                          + p[f"{emb}/hidden_mapping_in/bias"], "dropout_rate")
        valid = input_ids != cfg.pad_id
        mask = valid[:, None, :, None] & valid[:, None, None, :]
        if cfg.causal:
            mask = mask & torch.ones(seq, seq, dtype=torch.bool,
                                     device=input_ids.device).tril()
        for layer in range(cfg.num_layers):
            block = f"encoder/encoder_{layer}"
            mix_ln = f"{block}/mixing_layer_norm"
            out_ln = f"{block}/output_layer_norm"
            if cfg.norm == "post":
                h = self._ln(mix_ln, h + self._mixing(layer, h, mask))
                h = self._ln(out_ln, h + self._feed_forward(layer, h))
            else:
                h = h + self._mixing(layer, self._ln(mix_ln, h), mask)
                h = h + self._feed_forward(layer, self._ln(out_ln, h))
        if cfg.norm == "pre":
            h = self._ln("encoder/final_layer_norm", h)
        return h

    def pool(self, h: torch.Tensor) -> torch.Tensor:
        """tanh(h[:, 0]·W + b)."""
        return torch.tanh(torch.addmm(self.params["encoder/pooler/bias"],
                                      h[:, 0],
                                      self.params["encoder/pooler/kernel"]))

    def mlm_logits(self, h: torch.Tensor) -> torch.Tensor:
        """MLM head over the rows of h (tied to the word embeddings)."""
        p = self.params
        g = F.gelu(h @ p["predictions_dense/kernel"]
                   + p["predictions_dense/bias"], approximate="tanh")
        g = self._ln("predictions_layer_norm", g)
        return (g @ p["encoder/embedder/word/embedding"].t()
                + p["predictions_output/output_bias"])

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        """pooled·Kᵀ + b (NSP or classification logits)."""
        return F.linear(pooled, self.params["classification/output_kernel"],
                        self.params["classification/output_bias"])

    def forward(self, input_ids: torch.Tensor, type_ids: torch.Tensor,
                mlm: bool = False) -> dict:
        """Encoder and pooler outputs, plus the MLM logits if `mlm`."""
        h = self.encode(input_ids, type_ids)
        out = {"sequence_output": h}
        if self.cfg.pooler:
            out["pooled_output"] = self.pool(h)
        if mlm:
            out["mlm_logits"] = self.mlm_logits(h)
        return out

    def pretraining_loss(self, input_ids: torch.Tensor, type_ids: torch.Tensor,
                         positions: torch.Tensor, labels: torch.Tensor,
                         nsp_labels: torch.Tensor) -> torch.Tensor:
        """Mean MLM cross-entropy at `positions` [B, P] plus mean NSP loss
        plus the weighted router z-losses."""
        self.router_z_losses = []
        h = self.encode(input_ids, type_ids)
        index = positions.unsqueeze(-1).expand(-1, -1, h.shape[-1])
        mlm = F.cross_entropy(self.mlm_logits(torch.gather(h, 1, index))
                              .flatten(0, 1), labels.flatten())
        nsp = F.cross_entropy(self.classify(self.pool(h)), nsp_labels)
        loss = mlm + nsp
        if self.router_z_losses:
            loss = loss + self.recipe.get("router_z_loss_factor", 0.0) * \
                torch.stack(self.router_z_losses).sum()
        return loss


# The `training` section's defaults (docs/dsl.md).
RECIPE_DEFAULTS = {"b1": 0.9, "b2": 0.999, "eps": 1e-6, "weight_decay": 0.01,
                   "learning_rate": 1e-4, "dropout_rate": 0.1,
                   "attention_dropout_rate": 0.1, "expert_dropout_rate": 0.1,
                   "router_z_loss_factor": 1e-4}


def training_recipe(model_path: str) -> dict:
    """The model JSON's `training` section with its defaults applied."""
    with open(model_path, encoding="utf-8") as f:
        section = json.load(f).get("training", {})
    return {key: float(section.get(key, default))
            for key, default in RECIPE_DEFAULTS.items()}


def peak_rss_bytes() -> int:
    """Peak resident set of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def blas_info() -> dict:
    """The BLAS shared objects mapped into this process and their settings."""
    libs = set()
    with open("/proc/self/maps", encoding="utf-8") as maps:
        for line in maps:
            path = line.split()[-1]
            if "blas" in Path(path).name:
                libs.add(path)
    info = {"libraries": sorted(libs),
            "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE")}
    for path in sorted(libs):
        lib = ctypes.CDLL(path)
        if hasattr(lib, "openblas_get_corename"):
            lib.openblas_get_corename.restype = ctypes.c_char_p
            parallel = {0: "serial", 1: "pthread", 2: "openmp"}
            info["openblas_core"] = lib.openblas_get_corename().decode()
            info["openblas_threads"] = lib.openblas_get_num_threads()
            info["openblas_parallel"] = parallel.get(
                lib.openblas_get_parallel(), "unknown")
            break
    return info


def random_inputs(cfg: mixer_ref.ModelConfig, batch: int, seq: int,
                  gen: torch.Generator) -> tuple:
    """Random non-pad token ids and type ids [batch, seq]."""
    ids = torch.randint(0, cfg.vocab_size - 1, (batch, seq), generator=gen)
    ids = ids + (ids >= cfg.pad_id).long()
    types = torch.randint(0, cfg.type_vocab_size, (batch, seq), generator=gen)
    return ids, types


def time_runs(step, warmup: int, runs: int, device: torch.device) -> list:
    """Wall-clock seconds of `runs` calls after `warmup` untimed calls, each
    waited for on the device."""
    def finish() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    for _ in range(warmup):
        step()
    finish()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        step()
        finish()
        times.append(time.perf_counter() - start)
    return times


def compiled(function, enabled: bool):
    """`function` through torch.compile when `enabled`."""
    if not enabled:
        return function
    if not hasattr(torch, "compile"):
        raise SystemExit(f"pytorch_baseline: --compile needs PyTorch 2 "
                         f"(this is {torch.__version__})")
    return torch.compile(function)


def benchmark(model_path: str, args: argparse.Namespace) -> dict:
    """Times one model; returns its JSON record."""
    cfg = mixer_ref.load_config(model_path)
    recipe = training_recipe(model_path)
    device = torch.device(args.device)
    model = MixerModel(cfg, recipe)
    model.init_random(args.seed)
    model.to(device)
    gen = torch.Generator().manual_seed(args.seed)
    ids, types = (t.to(device) for t in
                  random_inputs(cfg, args.batch, args.seq, gen))
    record = {"model": cfg.name, "mode": args.mode, "batch": args.batch,
              "seq": args.seq, "threads": torch.get_num_threads(),
              "device": (torch.cuda.get_device_name(device)
                         if device.type == "cuda" else "cpu"),
              "dtype": args.dtype, "compiled": args.compile}
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) \
        if args.dtype == "bf16" else contextlib.nullcontext
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    if args.mode == "inference":
        model.eval()
        forward = compiled(model, args.compile)

        def step() -> None:
            with torch.no_grad(), autocast():
                forward(ids, types, mlm=args.mlm)
        record["outputs"] = ["sequence_output", "pooled_output"] + (
            ["mlm_logits"] if args.mlm else [])
    else:
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(),
                                      lr=recipe["learning_rate"],
                                      betas=(recipe["b1"], recipe["b2"]),
                                      eps=recipe["eps"],
                                      weight_decay=recipe["weight_decay"])
        # The prediction slots of mixc's training artifacts.
        predictions = min(80, args.seq)
        positions = torch.stack(
            [torch.randperm(args.seq, generator=gen)[:predictions]
             for _ in range(args.batch)])
        labels = torch.randint(0, cfg.vocab_size, positions.shape,
                               generator=gen)
        nsp_labels = torch.randint(0, 2, (args.batch,), generator=gen)
        positions, labels, nsp_labels = (
            t.to(device) for t in (positions, labels, nsp_labels))
        loss_of = compiled(model.pretraining_loss, args.compile)

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            with autocast():
                loss = loss_of(ids, types, positions, labels, nsp_labels)
            loss.backward()
            optimizer.step()
        record["predictions_per_example"] = predictions
        record["dropout_rate"] = recipe["dropout_rate"]
        record["expert_dropout_rate"] = recipe["expert_dropout_rate"]
        record["attention_dropout_rate"] = recipe["attention_dropout_rate"]
    times = time_runs(step, args.warmup, args.runs, device)
    per_example = [1e3 * t / args.batch for t in times]
    record["ms_per_example"] = round(statistics.median(per_example), 3)
    record["runs_ms_per_example"] = [round(t, 3) for t in per_example]
    record["peak_rss_bytes"] = peak_rss_bytes()
    if device.type == "cuda":
        record["peak_device_bytes"] = torch.cuda.max_memory_allocated(device)
    return record


def reexec_with_blas_setup(threads: int) -> None:
    """Restarts the process with the BLAS setup of the module docstring."""
    env = dict(os.environ)
    env[CONFIGURED_FLAG] = "1"
    env["OMP_NUM_THREADS"] = str(threads)
    env.pop("OPENBLAS_CORETYPE", None)
    env.pop("OPENBLAS_L2_SIZE", None)
    if OPENMP_BLAS_DIR.is_dir():
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            filter(None, [str(OPENMP_BLAS_DIR), env.get("LD_LIBRARY_PATH")]))
    else:
        print(f"pytorch_baseline: warning: {OPENMP_BLAS_DIR} not found "
              f"(install libopenblas0-openmp); using the system BLAS",
              file=sys.stderr)
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def main(argv: Optional[list] = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="model JSON files")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mode", choices=("inference", "train"),
                        default="inference")
    parser.add_argument("--mlm", action="store_true",
                        help="include the MLM head in inference timings")
    parser.add_argument("--blas", choices=("openmp", "system"),
                        default="openmp",
                        help="on the CPU: re-execute with the OpenMP OpenBLAS "
                             "(default) or keep the environment as it is")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32",
                        help="bf16: autocast matrix products to bfloat16")
    parser.add_argument("--compile", action="store_true",
                        help="time the step through torch.compile")
    args = parser.parse_args(argv)
    if args.device == "cpu" and args.blas == "openmp" and \
            os.environ.get(CONFIGURED_FLAG) != "1":
        reexec_with_blas_setup(args.threads)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    blas = blas_info()
    for model_path in args.models:
        record = benchmark(model_path, args)
        record["torch"] = torch.__version__
        record["blas"] = blas
        print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
