#!/usr/bin/python3
"""Side-by-side benchmark: mixer against other runtimes on the same machine.

For each model, compiles it with `mixc`, runs `mixer-run bench --json`, then
runs the other systems on the same model, alternating the systems so that
drift hits all alike, and prints a Markdown table.

* `--target cpu` (default): mixer's fp32 and bf16 plans (`--precision`)
  against PyTorch eager (fp32) and, where the virtual environment of
  bench/setup-venv.sh exists (`--venv`), OpenVINO fp32 and bf16 and ONNX
  Runtime fp32 on the model exported to ONNX from the PyTorch twin and checked
  equal to it first (bench/onnx_baseline.py, whose export computes the router
  in float32); without it those columns are left out with a message. ms per example, the speed-ups of mixer's plans over
  each system, GFLOP/s and the share of the machine's fp32 and bf16 GEMM peaks
  (measured by mixer-run), and each model's speed-up over our BERT.
* `--target cuda`: `mixc --target cuda --precision bf16` (or fp32) against
  PyTorch eager and `torch.compile` under bf16 autocast on the same GPU; ms per
  example, TFLOP/s and model FLOP utilisation (the plan's FLOP count over the
  time, against the GPU's dense bf16 peak: `--peak-tflops`, or the data-sheet
  figure of the GPU model PyTorch reports), the speed-ups over both PyTorch
  runs and over our BERT.
* `--mode train`: one whole training step (`mixc --train`: forward with
  dropout, MLM + NSP losses, backward, AdamW) against the baseline's
  `--mode train`; on the CPU also the peak memory: the plan's arena, the
  parameters with their two AdamW moments, and each process's peak resident
  set.

    bench/compare.py [--target cpu|cuda] [--mode inference|train] \\
        [--batch N] [--iters 5] [--rounds 2] [--statistic median|min] \\
        [--precision fp32|bf16|both] [--venv DIR] [--peak-tflops T] \\
        [models/bert_base.json ...]

`--statistic` picks how the rounds' figures (each a median over `--iters`)
are summarised: their median (default) or their minimum, the least disturbed
round on a shared machine.

Run it on a quiet machine; the figures are ratios measured in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "test" / "reference"))

import mixer_ref  # noqa: E402
DEFAULT_MODELS = ["models/bert_base.json", "models/sparse_mixer_base.json",
                  "models/fast_sparse_mixer_base.json"]
MIB = 1 << 20
DEFAULT_VENV = Path(os.environ.get(
    "MIXER_BENCH_VENV", Path.home() / ".cache" / "mixer-venv-bench"))
# The ONNX systems of the cpu inference table: runtime and precision.
ONNX_SYSTEMS = {"OpenVINO fp32": ("openvino", "fp32"),
                "OpenVINO bf16": ("openvino", "bf16"),
                "ONNX Runtime fp32": ("onnxruntime", "fp32")}

# Dense bf16 tensor-core peaks (TFLOP/s) from the data sheets, by the name
# CUDA reports; the first match wins, so the specific names come first.
BF16_PEAK_TFLOPS = [("H100 PCIe", 756.0), ("H100 NVL", 835.0),
                    ("H100", 989.0), ("H200", 989.0), ("GH200", 989.0),
                    ("A100", 312.0), ("L40S", 362.0)]


def bf16_peak_tflops(device_name: str) -> float | None:
    """The data-sheet dense bf16 peak of the GPU named `device_name`."""
    for key, peak in BF16_PEAK_TFLOPS:
        if key in device_name:
            return peak
    return None


def run_json(command: list[str]) -> dict:
    """Runs a command that prints one JSON object on its last line."""
    out = subprocess.run(command, check=True, capture_output=True, text=True,
                         cwd=REPO).stdout
    return json.loads(out.strip().splitlines()[-1])


# How the rounds' figures are summarised (--statistic).
SUMMARY = {"median": statistics.median, "min": min}
summarise = statistics.median


def median(records: list[dict], key: str) -> float:
    """The rounds' `key` summarised by --statistic (the median by default)."""
    return summarise(r[key] for r in records)


def baseline_systems(args: argparse.Namespace,
                     onnx: Path | None) -> dict[str, list[str]]:
    """The runs to compare with, by column name: a command per round."""
    if args.target == "cuda":
        device = ["--device", "cuda", "--dtype", args.precision]
        return {name: [sys.executable, "bench/pytorch_baseline.py", *flags]
                for name, flags in (("PyTorch eager", device),
                                    ("torch.compile", [*device, "--compile"]))}
    systems = {"PyTorch": [sys.executable, "bench/pytorch_baseline.py"]}
    if onnx:
        for name, (runtime, precision) in ONNX_SYSTEMS.items():
            systems[name] = [str(args.venv / "bin" / "python"),
                             "bench/onnx_baseline.py", "run", str(onnx),
                             "--runtime", runtime, "--precision", precision]
    return systems


def timing_flags(args: argparse.Namespace, model: str, seq: int,
                 system: str) -> list[str]:
    """The shape and timing flags of one baseline run."""
    flags = ["--runs", str(args.iters), "--warmup", str(args.warmup)]
    if system in ONNX_SYSTEMS:
        return flags
    return [model, "--mode", args.mode, "--batch", str(args.batch), "--seq",
            str(seq), *flags]


def compared(precision: str, system: str) -> bool:
    """Whether mixer's `precision` plan gets a speed-up column against
    `system`: the systems of the same precision (PyTorch runs fp32)."""
    return not system.endswith("fp32" if precision == "bf16" else "bf16") \
        and (precision == "fp32" or system.endswith("bf16"))


def print_cpu_table(rows: list, bert: dict) -> None:
    precisions = list(rows[0][2])
    systems = list(rows[0][3])
    pairs = [(p, s) for p in precisions for s in systems if compared(p, s)]
    headers = ([f"mixer {p} ms/example" for p in precisions]
               + [f"{s} ms/example" for s in systems]
               + [f"mixer {p} speed-up vs {s}" for p, s in pairs]
               + [f"mixer {p} GFLOP/s (share of {p} GEMM peak)"
                  for p in precisions]
               + [f"mixer {p} speed-up vs our {p} BERT" for p in precisions])
    print("| model | " + " | ".join(headers) + " |")
    print("|---" * (1 + len(headers)) + "|")
    peak_key = {"fp32": "gemm_peak_gflops", "bf16": "bf16_gemm_peak_gflops"}
    for name, _, plans, theirs in rows:
        ms = {p: median(plans[p], "ms_per_example") for p in precisions}
        others = {s: median(theirs[s], "ms_per_example") for s in systems}
        cells = [f"{ms[p]:.1f}" for p in precisions]
        cells += [f"{others[s]:.1f}" for s in systems]
        cells += [f"{others[s] / ms[p]:.2f}x" for p, s in pairs]
        for p in precisions:
            # The plan's FLOPs per example over the summarised time, against
            # the best peak any round measured.
            flops = (plans[p][0]["gflops"] * plans[p][0]["ms_per_example"]
                     / ms[p])
            peak = max(r[peak_key[p]] for r in plans[p])
            cells.append(f"{flops:.0f} ({100 * flops / peak:.0f} % of "
                         f"{peak:.0f})")
        cells += [f"{bert[p] / ms[p]:.2f}x" if p in bert else "-"
                  for p in precisions]
        print(f"| {name} | " + " | ".join(cells) + " |")


def print_cuda_table(rows: list, bert: float | None,
                     peak: float | None) -> None:
    systems = list(rows[0][3])
    print("| model | mixer ms/example | "
          + " | ".join(f"{s} ms/example" for s in systems)
          + " | mixer TFLOP/s | mixer MFU | "
          + " | ".join(f"{s} MFU" for s in systems) + " | "
          + " | ".join(f"speed-up vs {s}" for s in systems)
          + " | speed-up vs our BERT |")
    print("|---" * (5 + 3 * len(systems)) + "|")

    def mfu(tflops: float) -> str:
        return f"{100 * tflops / peak:.0f} %" if peak else "-"
    for name, _, ours, theirs in rows:
        ms = median(ours, "ms_per_example")
        tflops = median(ours, "gflops") / 1e3
        # The baselines run the same model: the plan's FLOP count per example.
        flop_per_example = tflops * 1e12 * ms / 1e3
        others = {s: median(theirs[s], "ms_per_example") for s in systems}
        vs_bert = f"{bert / ms:.2f}x" if bert else "-"
        print(f"| {name} | {ms:.3f} | "
              + " | ".join(f"{others[s]:.3f}" for s in systems)
              + f" | {tflops:.0f} | {mfu(tflops)} | "
              + " | ".join(mfu(flop_per_example / (others[s] / 1e3) / 1e12)
                           for s in systems) + " | "
              + " | ".join(f"{others[s] / ms:.2f}x" for s in systems)
              + f" | {vs_bert} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=DEFAULT_MODELS)
    parser.add_argument("--target", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--mode", choices=("inference", "train"),
                        default="inference")
    parser.add_argument("--precision", choices=("fp32", "bf16", "both"),
                        help="mixer's plans: on cuda fp32 or bf16 (default); "
                             "on the cpu fp32, bf16 or both (default; "
                             "training: fp32)")
    parser.add_argument("--statistic", choices=tuple(SUMMARY),
                        default="median",
                        help="summary of the rounds' figures")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV,
                        help="the OpenVINO and ONNX Runtime virtual "
                             "environment (bench/setup-venv.sh)")
    parser.add_argument("--batch", type=int,
                        help="default 8 on the CPU, 64 on a GPU")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2,
                        help="alternating measurements per model and system")
    parser.add_argument("--peak-tflops", type=float,
                        help="the GPU's dense bf16 peak, for the MFU columns")
    parser.add_argument("--build", default="build/bin")
    args = parser.parse_args()
    global summarise
    summarise = SUMMARY[args.statistic]
    cuda = args.target == "cuda"
    train = args.mode == "train"
    if args.precision is None:
        args.precision = "bf16" if cuda else "fp32" if train else "both"
    if cuda and args.precision == "both":
        parser.error("--precision both is for the cpu target")
    if not cuda and train and args.precision != "fp32":
        parser.error("cpu training plans are fp32")
    precisions = (["fp32", "bf16"] if args.precision == "both"
                  else [args.precision])
    if args.batch is None:
        args.batch = 64 if cuda else 8
    onnx_runs = not cuda and not train
    if onnx_runs and not (args.venv / "bin" / "python").exists():
        print(f"compare: no virtual environment at {args.venv} "
              f"(bench/setup-venv.sh): leaving out OpenVINO and ONNX Runtime",
              file=sys.stderr)
        onnx_runs = False

    out_dir = REPO / "out" / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    versions = {}
    for model in args.models:
        name = Path(model).stem
        seq = mixer_ref.load_config(model).max_seq_length
        artifacts = {}
        for precision in precisions:
            artifacts[precision] = out_dir / (
                f"{name}.{args.target}.{precision}"
                f"{'.train' if train else ''}.mxa")
            compile_flags = (["--train"] if train else
                             ["--outputs", "sequence_output,pooled_output"])
            subprocess.run([f"{args.build}/mixc", model, "--batch",
                            str(args.batch), "--target", args.target,
                            "--precision", precision, *compile_flags, "-o",
                            str(artifacts[precision])], check=True, cwd=REPO,
                           stdout=subprocess.DEVNULL)
        params = run_json([f"{args.build}/mixer-run", "params",
                           str(artifacts[precisions[0]]), "--json"])["total"]
        onnx = None
        if onnx_runs:
            onnx = out_dir / f"{name}.b{args.batch}.onnx"
            run_json([sys.executable, "bench/onnx_baseline.py", "export",
                      model, "--batch", str(args.batch), "-o", str(onnx)])
        systems = baseline_systems(args, onnx)
        ours = {precision: [] for precision in precisions}
        theirs = {system: [] for system in systems}
        for _ in range(args.rounds):
            for precision in precisions:
                ours[precision].append(run_json([
                    f"{args.build}/mixer-run", "bench",
                    str(artifacts[precision]), "--iters", str(args.iters),
                    "--warmup", str(args.warmup), "--json"]))
            for system, command in systems.items():
                record = run_json([*command, *timing_flags(args, model, seq,
                                                           system)])
                theirs[system].append(record)
                versions[system.removesuffix(" fp32").removesuffix(
                    " bf16")] = record.get("torch", record.get("version"))
        rows.append((name, params, ours, theirs))
    seq = mixer_ref.load_config(args.models[0]).max_seq_length

    bert = {p: median(o[p], "ms_per_example") for n, _, o, _ in rows
            if n.startswith("bert") for p in o}
    first = next(iter(rows[0][3].values()))[0]
    where = (f"{first['device']}, {args.precision}" if cuda else
             f"{rows[0][2][precisions[0]][0]['threads']} threads")
    statistic = "medians" if args.statistic == "median" else "minimum"
    print(f"{args.mode}, batch {args.batch}, seq {seq}, {where}; {statistic} "
          f"of {args.rounds} alternating rounds of {args.iters} iterations "
          f"after {args.warmup} warm-up; "
          + ", ".join(f"{system} {version}"
                      for system, version in versions.items()) + "\n")
    if cuda:
        peak = args.peak_tflops or bf16_peak_tflops(first["device"])
        print(f"MFU against a dense bf16 peak of "
              f"{f'{peak:.0f} TFLOP/s' if peak else 'unknown (--peak-tflops)'}"
              f"\n")
        print_cuda_table([(n, p, o[args.precision], t)
                          for n, p, o, t in rows],
                         bert.get(args.precision), peak)
        return 0
    print_cpu_table(rows, bert)
    if not train:
        return 0
    print("\n| model | parameters | mixer arena (plan) | mixer parameters + "
          "AdamW moments | mixer peak RSS | PyTorch peak RSS |")
    print("|---|---|---|---|---|---|")
    for name, params, ours, theirs in rows:
        print(f"| {name} | {params / 1e6:.1f} M "
              f"| {ours['fp32'][0]['peak_arena_bytes'] / MIB:.0f} MiB "
              f"| {3 * 4 * params / MIB:.0f} MiB "
              f"| {max(r['rss_bytes'] for r in ours['fp32']) / MIB:.0f} MiB "
              f"| {max(r['peak_rss_bytes'] for r in theirs['PyTorch']) / MIB:.0f}"
              f" MiB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
