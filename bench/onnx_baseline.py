#!/usr/bin/python3
"""OpenVINO and ONNX Runtime baselines for the mixer models on the CPU.

Two steps, in two Python environments:

    bench/onnx_baseline.py export models/bert_base.json --batch 8 \\
        [--seq S] [--seed 0] -o out/bench/bert_base.onnx

runs under Debian's python3-torch: it builds the PyTorch twin of
bench/pytorch_baseline.py (random weights, `--seed`), runs it on random
non-pad inputs and exports it to ONNX (opset 17, fixed shapes, outputs
sequence_output and pooled_output). The inputs and the twin's outputs go
beside the model as `<name>.twin.npz`.

The export's router computes in float32 whatever the model's router_dtype.
A bfloat16 router rounds every probability to 8 bits, so many tokens tie or
nearly tie, and the last-bit differences of any other runtime's fp32 sums
(ONNX Runtime, OpenVINO) flip some experts' choices: their outputs then
differ from the twin's by 1e-3 to 1e-2 and no check to 1e-4 is possible.
The router's product is under 0.1 % of a model's FLOPs, so the timings do
not depend on it.

    ~/.cache/mixer-venv-bench/bin/python bench/onnx_baseline.py run \\
        out/bench/bert_base.onnx --runtime openvino --precision bf16 \\
        [--runs 5] [--warmup 2] [--threads 2]

runs under the virtual environment of bench/setup-venv.sh (OpenVINO and ONNX
Runtime from PyPI): it compiles the ONNX model for the CPU, runs it once on
the twin's inputs and compares each output with the twin's (relative error
‖y − y_twin‖ / ‖y_twin‖). An fp32 run whose error reaches 1e-4 stops with an
error before any timing; a bf16 run reports its error. It then times `--runs`
calls after `--warmup` and prints one JSON line with the median and minimum
ms per example and the errors.

* OpenVINO: `INFERENCE_PRECISION_HINT` f32 or bf16 (bf16 products and
  activations with fp32 accumulation where the CPU has AVX512_BF16 or AMX),
  the latency hint, one stream and `--threads` inference threads.
* ONNX Runtime: fp32 only, CPU execution provider, every graph optimisation
  (ORT_ENABLE_ALL), `--threads` intra-op threads, sequential execution.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUTPUTS = ("sequence_output", "pooled_output")
FP32_TOLERANCE = 1e-4


def twin_path(onnx_path: Path) -> Path:
    return onnx_path.with_suffix(".twin.npz")


def export(args: argparse.Namespace) -> int:
    """Exports the PyTorch twin of a model JSON to ONNX, with its outputs."""
    sys.path.insert(0, str(REPO / "bench"))
    import pytorch_baseline
    import torch

    from pytorch_baseline import mixer_ref

    cfg = mixer_ref.load_config(args.model)
    if cfg.moe is not None:
        cfg = dataclasses.replace(
            cfg, moe=dataclasses.replace(cfg.moe, router_dtype="float32"))
    if not cfg.pooler:
        raise SystemExit(f"onnx_baseline: {args.model}: the model has no "
                         f"pooler")
    model = pytorch_baseline.MixerModel(cfg)
    model.init_random(args.seed)
    model.eval()
    seq = args.seq or cfg.max_seq_length
    gen = torch.Generator().manual_seed(args.seed)
    ids, types = pytorch_baseline.random_inputs(cfg, args.batch, seq, gen)

    class Outputs(torch.nn.Module):
        """The twin with its outputs as a tuple, as ONNX wants them."""

        def __init__(self, twin: torch.nn.Module):
            super().__init__()
            self.twin = twin

        def forward(self, ids: torch.Tensor, types: torch.Tensor) -> tuple:
            out = self.twin(ids, types)
            return tuple(out[name] for name in OUTPUTS)

    wrapped = Outputs(model)
    out_path = Path(args.output)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(out_path.name + ".partial")
    with torch.no_grad():
        expected = wrapped(ids, types)
        torch.onnx.export(wrapped, (ids, types), str(partial),
                          opset_version=17, input_names=["ids", "types"],
                          output_names=list(OUTPUTS))
    np.savez(twin_path(out_path), ids=ids.numpy(), types=types.numpy(),
             **{name: t.numpy() for name, t in zip(OUTPUTS, expected)})
    partial.rename(out_path)
    print(json.dumps({"model": cfg.name, "onnx": str(out_path),
                      "batch": args.batch, "seq": seq,
                      "torch": torch.__version__}))
    return 0


def openvino_session(path: Path, precision: str, threads: int):
    """A callable running the model with OpenVINO, and its version."""
    import openvino

    core = openvino.Core()
    compiled = core.compile_model(str(path), "CPU", {
        "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
        "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1",
        "INFERENCE_NUM_THREADS": str(threads)})
    request = compiled.create_infer_request()

    def infer(feeds: dict) -> dict:
        result = request.infer(feeds)
        return {name: np.asarray(result[compiled.output(name)])
                for name in OUTPUTS}
    return infer, openvino.__version__


def onnxruntime_session(path: Path, precision: str, threads: int):
    """A callable running the model with ONNX Runtime, and its version."""
    import onnxruntime

    if precision != "fp32":
        raise SystemExit("onnx_baseline: ONNX Runtime runs fp32 only")
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = \
        onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    session = onnxruntime.InferenceSession(
        str(path), options, providers=["CPUExecutionProvider"])

    def infer(feeds: dict) -> dict:
        return dict(zip(OUTPUTS, session.run(list(OUTPUTS), feeds)))
    return infer, onnxruntime.__version__


def relative_error(y: np.ndarray, reference: np.ndarray) -> float:
    y, reference = y.astype(np.float64), reference.astype(np.float64)
    return float(np.linalg.norm(y - reference) / np.linalg.norm(reference))


def run(args: argparse.Namespace) -> int:
    """Checks one runtime against the twin, then times it."""
    path = Path(args.onnx)
    twin = np.load(twin_path(path))
    feeds = {"ids": twin["ids"], "types": twin["types"]}
    session = (openvino_session if args.runtime == "openvino"
               else onnxruntime_session)
    infer, version = session(path, args.precision, args.threads)
    outputs = infer(feeds)
    errors = {name: relative_error(outputs[name], twin[name])
              for name in OUTPUTS}
    if args.precision == "fp32" and max(errors.values()) >= FP32_TOLERANCE:
        raise SystemExit(f"onnx_baseline: {path}: {args.runtime} differs "
                         f"from the PyTorch twin (relative errors {errors}, "
                         f"limit {FP32_TOLERANCE})")
    for _ in range(args.warmup):
        infer(feeds)
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        infer(feeds)
        times.append(time.perf_counter() - start)
    batch = twin["ids"].shape[0]
    per_example = [1e3 * t / batch for t in times]
    print(json.dumps({
        "onnx": str(path), "runtime": args.runtime, "version": version,
        "precision": args.precision, "threads": args.threads, "batch": batch,
        "ms_per_example": round(statistics.median(per_example), 3),
        "ms_per_example_min": round(min(per_example), 3),
        "relative_error": errors}), flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    steps = parser.add_subparsers(dest="step", required=True)
    exporting = steps.add_parser("export", help="PyTorch twin to ONNX")
    exporting.add_argument("model", help="model JSON")
    exporting.add_argument("-o", "--output", required=True)
    exporting.add_argument("--batch", type=int, default=8)
    exporting.add_argument("--seq", type=int,
                           help="default: the model's max_seq_length")
    exporting.add_argument("--seed", type=int, default=0)
    running = steps.add_parser("run", help="check and time one runtime")
    running.add_argument("onnx", help="a model written by `export`")
    running.add_argument("--runtime", choices=("openvino", "onnxruntime"),
                         required=True)
    running.add_argument("--precision", choices=("fp32", "bf16"),
                         default="fp32")
    running.add_argument("--runs", type=int, default=5)
    running.add_argument("--warmup", type=int, default=2)
    running.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    return export(args) if args.step == "export" else run(args)


if __name__ == "__main__":
    sys.exit(main())
