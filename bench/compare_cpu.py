#!/usr/bin/python3
"""Side-by-side CPU inference benchmark: mixer against PyTorch eager.

For each model, compiles it with `mixc` (encoder + pooler outputs, as the
PyTorch baseline computes), runs `mixer-run bench --json`, then runs
`bench/pytorch_baseline.py` on the same model, alternating the two so that
machine drift hits both alike. Prints a Markdown table with ms per example,
GFLOP/s, the share of the machine's fp32 GEMM peak, the speed-up over PyTorch
and each model's speed-up over our BERT.

    bench/compare_cpu.py [--batch 8] [--iters 5] [--rounds 2] \
        [models/bert_base.json models/sparse_mixer_base.json ...]

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


def run_json(command: list[str]) -> dict:
    """Runs a command that prints one JSON object on its last line."""
    out = subprocess.run(command, check=True, capture_output=True, text=True,
                         cwd=REPO).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=DEFAULT_MODELS)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2,
                        help="alternating measurements per model and system")
    parser.add_argument("--build", default="build/bin")
    args = parser.parse_args()

    out_dir = REPO / "out" / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for model in args.models:
        name = Path(model).stem
        artifact = out_dir / f"{name}.mxa"
        subprocess.run([f"{args.build}/mixc", model, "--batch", str(args.batch),
                        "--outputs", "sequence_output,pooled_output",
                        "-o", str(artifact)], check=True, cwd=REPO,
                       stdout=subprocess.DEVNULL)
        ours, theirs = [], []
        for _ in range(args.rounds):
            ours.append(run_json([f"{args.build}/mixer-run", "bench", str(artifact),
                                  "--iters", str(args.iters), "--json"]))
            theirs.append(run_json([sys.executable, "bench/pytorch_baseline.py", model,
                                    "--batch", str(args.batch),
                                    "--runs", str(args.iters)]))
        rows.append((name, ours, theirs))

    def median(records: list[dict], key: str) -> float:
        return statistics.median(r[key] for r in records)

    bert = next((median(o, "ms_per_example") for n, o, _ in rows
                 if n.startswith("bert")), None)
    print(f"batch {args.batch}, seq 512, fp32, {rows[0][1][0]['threads']} threads; "
          f"medians of {args.rounds} alternating rounds of {args.iters} iterations\n")
    print("| model | mixer ms/example | PyTorch ms/example | speed-up vs PyTorch "
          "| GFLOP/s | share of GEMM peak | speed-up vs our BERT |")
    print("|---|---|---|---|---|---|---|")
    for name, ours, theirs in rows:
        ms = median(ours, "ms_per_example")
        torch_ms = median(theirs, "ms_per_example")
        vs_bert = f"{bert / ms:.2f}x" if bert else "-"
        print(f"| {name} | {ms:.1f} | {torch_ms:.1f} | {torch_ms / ms:.2f}x "
              f"| {median(ours, 'gflops'):.0f} "
              f"| {100 * median(ours, 'share_of_gemm_peak'):.0f} % "
              f"(peak {median(ours, 'gemm_peak_gflops'):.0f}) | {vs_bert} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
