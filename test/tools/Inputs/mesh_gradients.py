#!/usr/bin/env python3
"""Compiles a gradient artifact at one mesh and checks it against one process.

  mesh_gradients.py --mixc MIXC --mixer-run RUN --mpirun "MPIRUN" --ref "REF"
      MODEL.json WEIGHTS INPUT ONE_PROCESS_OUTPUT DP EP

Compiles MODEL.json with `--train --optimizer=none --noise --batch 8 --dp DP
--ep EP`, runs it under `MPIRUN -np DP·EP` on WEIGHTS and INPUT (whose `seed`
and `step` key the training noise; a negative seed draws none), and compares
the gathered outputs with ONE_PROCESS_OUTPUT (`REF compare --rtol 1e-6`),
printing what differs.
"""

import argparse
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag in ("--mixc", "--mixer-run", "--mpirun", "--ref"):
        parser.add_argument(flag, required=True)
    for name in ("model", "weights", "input", "expected"):
        parser.add_argument(name)
    parser.add_argument("dp", type=int)
    parser.add_argument("ep", type=int)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        artifact = Path(work) / "mesh.mxa"
        output = Path(work) / "mesh.safetensors"
        subprocess.run([args.mixc, args.model, "--batch", "8", "--train",
                        "--optimizer=none", "--noise", "--dp", str(args.dp),
                        "--ep",
                        str(args.ep), "-o", str(artifact)],
                       check=True, stdout=subprocess.DEVNULL)
        subprocess.run(shlex.split(args.mpirun) +
                       ["-np", str(args.dp * args.ep), args.mixer_run, "infer",
                        str(artifact), "--weights", args.weights, "--input",
                        args.input, "--output", str(output), "--threads", "1"],
                       check=True, stdout=subprocess.DEVNULL)
        compared = subprocess.run(
            shlex.split(args.ref) + ["compare", str(output), args.expected,
                                     "--rtol", "1e-6"],
            stdout=subprocess.PIPE, text=True)
    differing = [line for line in compared.stdout.splitlines()
                 if not line.endswith(" OK")]
    print(f"dp {args.dp} x ep {args.ep}: "
          f"{len(differing) or 'no'} outputs differ")
    for line in differing:
        print(line)
    return 1 if differing or compared.returncode else 0


if __name__ == "__main__":
    sys.exit(main())
