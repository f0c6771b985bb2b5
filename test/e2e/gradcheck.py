#!/usr/bin/python3
"""Finite-difference check of a training artifact's gradients.

Runs `mixer-run infer` on an artifact compiled with `mixc --train`, which
returns the loss and the gradient of every parameter, then evaluates the loss
at weights moved by ±eps along a random direction d and compares the central
difference (L(w + eps·d) − L(w − eps·d)) / 2eps with ⟨grad, d⟩. The forward
and the backward are different code (forward kernels against the backward
graph the autodiff pass built and its backward kernels), so agreement checks
the gradients end to end.

    gradcheck.py ARTIFACT MODEL.json --mixer-run build/bin/mixer-run --batch 2

An artifact compiled with `mixc --noise` also takes the training noise's key:
--noise-key SEED STEP gives it, so that the loss is differentiated under that
one fixed draw of the dropout masks.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reference"))
import mixer_ref  # noqa: E402


def run(mixer_run: str, artifact: str, weights: dict, batch_path: Path,
        work: Path) -> dict:
    weights_path = work / "w.safetensors"
    out_path = work / "out.safetensors"
    mixer_ref.write_safetensors(weights_path, weights)
    subprocess.run([mixer_run, "infer", artifact, "--weights", str(weights_path),
                    "--input", str(batch_path), "--output", str(out_path)],
                   check=True, stdout=subprocess.DEVNULL)
    return mixer_ref.read_safetensors(out_path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact")
    parser.add_argument("model")
    parser.add_argument("--mixer-run", required=True)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eps", type=float, default=1e-5)
    parser.add_argument("--rtol", type=float, default=2e-2)
    parser.add_argument("--noise-key", type=int, nargs=2,
                        metavar=("SEED", "STEP"))
    args = parser.parse_args()

    cfg = mixer_ref.load_config(args.model)
    weights = mixer_ref.random_weights(cfg, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        batch_path = work / "batch.safetensors"
        tensors = mixer_ref.training_batch(cfg, args.batch, args.seed)
        if args.noise_key:
            tensors["seed"] = np.array(args.noise_key[0], dtype=np.int32)
            tensors["step"] = np.array(args.noise_key[1], dtype=np.int32)
        mixer_ref.write_safetensors(batch_path, tensors)
        outputs = run(args.mixer_run, args.artifact, weights, batch_path, work)
        # Half along the gradient (a derivative well above the float32 noise
        # of the loss), half random (so that a gradient wrong in direction
        # does not go unnoticed), each with entries of RMS 1.
        grads = {name: outputs["grad/" + name].astype(np.float64)
                 for name in weights}
        scale = np.sqrt(sum(float(np.sum(g * g)) for g in grads.values()) /
                        sum(g.size for g in grads.values()))
        direction = {name: (0.5 * grads[name] / max(scale, 1e-30) +
                            0.5 * rng.standard_normal(w.shape))
                     for name, w in weights.items()}
        analytic = sum(float(np.sum(grads[name] * d))
                       for name, d in direction.items())
        losses = []
        for sign in (1.0, -1.0):
            moved = {name: (w + sign * args.eps * direction[name]).astype(
                         np.float32)
                     for name, w in weights.items()}
            losses.append(float(run(args.mixer_run, args.artifact, moved,
                                    batch_path, work)["loss"]))
    numeric = (losses[0] - losses[1]) / (2 * args.eps)
    error = abs(numeric - analytic) / max(abs(numeric), abs(analytic), 1e-6)
    print(f"loss {float(outputs['loss']):.6f}: directional derivative "
          f"analytic {analytic:.6e}, finite difference {numeric:.6e}, "
          f"relative error {error:.2e}")
    return 0 if error <= args.rtol else 1


if __name__ == "__main__":
    sys.exit(main())
