#!/usr/bin/python3
"""Side-by-side CPU benchmark: mixer against PyTorch eager.

For each model, compiles it with `mixc`, runs `mixer-run bench --json`, then
runs `bench/pytorch_baseline.py` on the same model, alternating the two so
that machine drift hits both alike, and prints a Markdown table.

* `--mode inference` (default): encoder + pooler outputs, as the PyTorch
  baseline computes; ms per example, GFLOP/s, the share of the machine's fp32
  GEMM peak, the speed-up over PyTorch and each model's speed-up over our BERT.
* `--mode train`: one whole training step (`mixc --train`: forward with
  dropout, MLM + NSP losses, backward, AdamW) against the baseline's
  `--mode train`; the same speed-ups, and the peak memory: the plan's arena,
  the parameters with their two AdamW moments, and the peak resident set of
  each process.

    bench/compare_cpu.py [--mode inference|train] [--batch 8] [--iters 5] \\
        [--rounds 2] [models/bert_base.json models/sparse_mixer_base.json ...]

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
DEFAULT_MODELS = ["models/bert_base.json", "models/sparse_mixer_base.json",
                  "models/fast_sparse_mixer_base.json"]
MIB = 1 << 20


def run_json(command: list[str]) -> dict:
    """Runs a command that prints one JSON object on its last line."""
    out = subprocess.run(command, check=True, capture_output=True, text=True,
                         cwd=REPO).stdout
    return json.loads(out.strip().splitlines()[-1])


def median(records: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in records)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=DEFAULT_MODELS)
    parser.add_argument("--mode", choices=("inference", "train"),
                        default="inference")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2,
                        help="alternating measurements per model and system")
    parser.add_argument("--build", default="build/bin")
    args = parser.parse_args()
    train = args.mode == "train"

    out_dir = REPO / "out" / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for model in args.models:
        name = Path(model).stem
        artifact = out_dir / f"{name}{'.train' if train else ''}.mxa"
        compile_flags = (["--train"] if train else
                         ["--outputs", "sequence_output,pooled_output"])
        subprocess.run([f"{args.build}/mixc", model, "--batch", str(args.batch),
                        *compile_flags, "-o", str(artifact)], check=True,
                       cwd=REPO, stdout=subprocess.DEVNULL)
        params = run_json([f"{args.build}/mixer-run", "params", str(artifact),
                           "--json"])["total"]
        ours, theirs = [], []
        for _ in range(args.rounds):
            ours.append(run_json([f"{args.build}/mixer-run", "bench",
                                  str(artifact), "--iters", str(args.iters),
                                  "--warmup", str(args.warmup), "--json"]))
            theirs.append(run_json([sys.executable, "bench/pytorch_baseline.py",
                                    model, "--mode", args.mode,
                                    "--batch", str(args.batch),
                                    "--runs", str(args.iters),
                                    "--warmup", str(args.warmup)]))
        rows.append((name, params, ours, theirs))

    bert = next((median(o, "ms_per_example") for n, _, o, _ in rows
                 if n.startswith("bert")), None)
    print(f"{args.mode}, batch {args.batch}, seq 512, fp32, "
          f"{rows[0][2][0]['threads']} threads; medians of {args.rounds} "
          f"alternating rounds of {args.iters} iterations after "
          f"{args.warmup} warm-up\n")
    print("| model | mixer ms/example | PyTorch ms/example | speed-up vs PyTorch "
          "| GFLOP/s | share of GEMM peak | speed-up vs our BERT |")
    print("|---|---|---|---|---|---|---|")
    for name, _, ours, theirs in rows:
        ms = median(ours, "ms_per_example")
        torch_ms = median(theirs, "ms_per_example")
        vs_bert = f"{bert / ms:.2f}x" if bert else "-"
        print(f"| {name} | {ms:.1f} | {torch_ms:.1f} | {torch_ms / ms:.2f}x "
              f"| {median(ours, 'gflops'):.0f} "
              f"| {100 * median(ours, 'share_of_gemm_peak'):.0f} % "
              f"(peak {median(ours, 'gemm_peak_gflops'):.0f}) | {vs_bert} |")
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
              f"| {max(r['peak_rss_bytes'] for r in theirs) / MIB:.0f} MiB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
