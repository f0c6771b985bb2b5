#!/usr/bin/python3
"""mixer's fp32 and bf16 cpu plans side by side.

Compiles each model twice (`mixc --precision fp32` and `--precision bf16`,
encoder + pooler outputs), then runs `mixer-run bench --json` on the two
plans alternately for `--rounds` rounds, so that the load of a shared
machine hits both alike, and prints a Markdown table of the minimum ms per
example of each, GFLOP/s, the share of the machine's fp32 and bf16 GEMM peaks
(measured by mixer-run bench in each run; the best of the rounds), the bf16
speed-up and each model's speed-up over our BERT, with the load average
before and after.

    bench/bf16_speed.py [--batch 8] [--iters 2] [--warmup 1] [--rounds 2] \\
        [--threads 2] [models/bert_base.json ...]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from compare import DEFAULT_MODELS, REPO, run_json

PRECISIONS = ("fp32", "bf16")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=DEFAULT_MODELS)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--iters", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--build", default="build/bin")
    args = parser.parse_args()

    out_dir = REPO / "out" / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    artifacts = {}
    for model in args.models:
        for precision in PRECISIONS:
            artifact = out_dir / f"{Path(model).stem}.cpu.{precision}.mxa"
            subprocess.run([f"{args.build}/mixc", model, "--batch",
                            str(args.batch), "--precision", precision,
                            "--outputs", "sequence_output,pooled_output",
                            "-o", str(artifact)], check=True, cwd=REPO,
                           stdout=subprocess.DEVNULL)
            artifacts[model, precision] = artifact
    load_before = os.getloadavg()[0]
    runs = {key: [] for key in artifacts}
    for _ in range(args.rounds):
        for model in args.models:
            for precision in PRECISIONS:
                runs[model, precision].append(run_json([
                    f"{args.build}/mixer-run", "bench",
                    str(artifacts[model, precision]), "--iters",
                    str(args.iters), "--warmup", str(args.warmup), "--threads",
                    str(args.threads), "--json"]))
    load_after = os.getloadavg()[0]

    def best(model: str, precision: str, key: str) -> float:
        return min(r[key] for r in runs[model, precision])

    def peak(key: str) -> float:
        return max(r[key] for rs in runs.values() for r in rs)

    fp32_peak, bf16_peak = peak("gemm_peak_gflops"), peak("bf16_gemm_peak_gflops")
    print(f"batch {args.batch}, {args.threads} threads, minimum of {args.rounds} "
          f"alternating rounds of {args.iters} iterations after {args.warmup} "
          f"warm-up; GEMM peaks fp32 {fp32_peak:.0f}, bf16 {bf16_peak:.0f} "
          f"GFLOP/s (best over the runs); load average {load_before:.1f} "
          f"before, {load_after:.1f} after\n")
    print("| model | fp32 ms/example | bf16 ms/example | bf16 speed-up "
          "| fp32 GFLOP/s (share of fp32 peak) | bf16 GFLOP/s (share of bf16 "
          "peak) | bf16 speed-up vs our bf16 BERT |")
    print("|---|---|---|---|---|---|---|")
    bert = next((best(m, "bf16", "ms_per_example_min") for m in args.models
                 if Path(m).stem.startswith("bert")), None)
    for model in args.models:
        fp32 = best(model, "fp32", "ms_per_example_min")
        bf16 = best(model, "bf16", "ms_per_example_min")
        # GFLOP/s at the minimum time: the plan's FLOPs per example.
        flops = (runs[model, "fp32"][0]["gflops"] *
                 runs[model, "fp32"][0]["ms_per_example"])
        vs_bert = f"{bert / bf16:.2f}x" if bert else "-"
        print(f"| {Path(model).stem} | {fp32:.1f} | {bf16:.1f} "
              f"| {fp32 / bf16:.2f}x "
              f"| {flops / fp32:.0f} ({100 * flops / fp32 / fp32_peak:.0f} %) "
              f"| {flops / bf16:.0f} ({100 * flops / bf16 / bf16_peak:.0f} %) "
              f"| {vs_bert} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
