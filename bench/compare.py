#!/usr/bin/python3
"""Side-by-side benchmark: mixer against PyTorch on the same machine.

For each model, compiles it with `mixc`, runs `mixer-run bench --json`, then
runs `bench/pytorch_baseline.py` on the same model, alternating the systems so
that drift hits all alike, and prints a Markdown table.

* `--target cpu` (default): fp32, against PyTorch eager; ms per example,
  GFLOP/s, the share of the machine's fp32 GEMM peak (measured by mixer-run),
  the speed-up over PyTorch and each model's speed-up over our BERT.
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
        [--batch N] [--iters 5] [--rounds 2] [--precision fp32|bf16] \\
        [--peak-tflops T] [models/bert_base.json ...]

Run it on a quiet machine; the figures are ratios measured in one run.
"""

from __future__ import annotations

import argparse
import json
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


def median(records: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in records)


def baseline_systems(args: argparse.Namespace) -> dict[str, list[str]]:
    """The PyTorch runs to compare with, by column name."""
    if args.target == "cpu":
        return {"PyTorch": []}
    device = ["--device", "cuda", "--dtype", args.precision]
    return {"PyTorch eager": device,
            "torch.compile": [*device, "--compile"]}


def print_cpu_table(rows: list, bert: float | None) -> None:
    print("| model | mixer ms/example | PyTorch ms/example | speed-up vs PyTorch "
          "| GFLOP/s | share of GEMM peak | speed-up vs our BERT |")
    print("|---|---|---|---|---|---|---|")
    for name, _, ours, theirs in rows:
        ms = median(ours, "ms_per_example")
        torch_ms = median(theirs["PyTorch"], "ms_per_example")
        vs_bert = f"{bert / ms:.2f}x" if bert else "-"
        print(f"| {name} | {ms:.1f} | {torch_ms:.1f} | {torch_ms / ms:.2f}x "
              f"| {median(ours, 'gflops'):.0f} "
              f"| {100 * median(ours, 'share_of_gemm_peak'):.0f} % "
              f"(peak {median(ours, 'gemm_peak_gflops'):.0f}) | {vs_bert} |")


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
    parser.add_argument("--precision", choices=("fp32", "bf16"),
                        help="activation precision on cuda (default bf16); "
                             "the cpu target is fp32")
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
    cuda = args.target == "cuda"
    if args.precision is None:
        args.precision = "bf16" if cuda else "fp32"
    if not cuda and args.precision != "fp32":
        parser.error("--precision bf16 needs --target cuda")
    if args.batch is None:
        args.batch = 64 if cuda else 8
    train = args.mode == "train"

    out_dir = REPO / "out" / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for model in args.models:
        name = Path(model).stem
        seq = mixer_ref.load_config(model).max_seq_length
        artifact = out_dir / (f"{name}.{args.target}.{args.precision}"
                              f"{'.train' if train else ''}.mxa")
        compile_flags = (["--train"] if train else
                         ["--outputs", "sequence_output,pooled_output"])
        subprocess.run([f"{args.build}/mixc", model, "--batch", str(args.batch),
                        "--target", args.target, "--precision", args.precision,
                        *compile_flags, "-o", str(artifact)], check=True,
                       cwd=REPO, stdout=subprocess.DEVNULL)
        params = run_json([f"{args.build}/mixer-run", "params", str(artifact),
                           "--json"])["total"]
        ours = []
        theirs = {system: [] for system in baseline_systems(args)}
        for _ in range(args.rounds):
            ours.append(run_json([f"{args.build}/mixer-run", "bench",
                                  str(artifact), "--iters", str(args.iters),
                                  "--warmup", str(args.warmup), "--json"]))
            for system, flags in baseline_systems(args).items():
                theirs[system].append(run_json([
                    sys.executable, "bench/pytorch_baseline.py", model,
                    "--mode", args.mode, "--batch", str(args.batch),
                    "--seq", str(seq), "--runs", str(args.iters), "--warmup", str(args.warmup),
                    *flags]))
        rows.append((name, params, ours, theirs))
    seq = mixer_ref.load_config(args.models[0]).max_seq_length

    bert = next((median(o, "ms_per_example") for n, _, o, _ in rows
                 if n.startswith("bert")), None)
    first = next(iter(rows[0][3].values()))[0]
    where = (f"{first['device']}, {args.precision}" if cuda else
             f"fp32, {rows[0][2][0]['threads']} threads")
    print(f"{args.mode}, batch {args.batch}, seq {seq}, {where}; medians of "
          f"{args.rounds} alternating rounds of {args.iters} iterations after "
          f"{args.warmup} warm-up; PyTorch {first['torch']}\n")
    if cuda:
        peak = args.peak_tflops or bf16_peak_tflops(first["device"])
        print(f"MFU against a dense bf16 peak of "
              f"{f'{peak:.0f} TFLOP/s' if peak else 'unknown (--peak-tflops)'}"
              f"\n")
        print_cuda_table(rows, bert, peak)
        return 0
    print_cpu_table(rows, bert)
    if not train:
        return 0
    print("\n| model | parameters | mixer arena (plan) | mixer parameters + "
          "AdamW moments | mixer peak RSS | PyTorch peak RSS |")
    print("|---|---|---|---|---|---|")
    for name, params, ours, theirs in rows:
        print(f"| {name} | {params / 1e6:.1f} M "
              f"| {ours[0]['peak_arena_bytes'] / MIB:.0f} MiB "
              f"| {3 * 4 * params / MIB:.0f} MiB "
              f"| {max(r['rss_bytes'] for r in ours) / MIB:.0f} MiB "
              f"| {max(r['peak_rss_bytes'] for r in theirs['PyTorch']) / MIB:.0f}"
              f" MiB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
