#!/usr/bin/python3
"""Helpers of gradient-accumulation.test.

    accumulation.py variant BASE.json OUT.json [--classes N] [--micro-steps K]
                    [--dropout R] [--clip C]
        writes BASE with a classification head of N classes (instead of its
        pre-training heads) when --classes is given, K micro-steps per update,
        dropout rate R everywhere (embeddings, feed-forward, attention) and
        gradient clipping at global norm C.
    accumulation.py data CORPUS OUT.jsonl --examples N
        writes N single-segment examples from the corpus lines, labelled by
        the parity of their word count.
    accumulation.py compare A.safetensors B.safetensors --atol T
        fails unless both files hold the same tensors, equal to within T.
    accumulation.py losses A.jsonl B.jsonl --atol T
        fails unless both metrics files log the same steps with losses equal
        to within T.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reference"))
import mixer_ref  # noqa: E402


def variant(args: argparse.Namespace) -> int:
    model = json.loads(Path(args.base).read_text())
    model["name"] += "_variant"
    if args.classes:
        model["heads"] = {"pooler": True,
                          "classification": {"num_classes": args.classes}}
    training = model.setdefault("training", {})
    training["gradient_accumulation_steps"] = args.micro_steps
    training["dropout_rate"] = args.dropout
    training["attention_dropout_rate"] = args.dropout
    training["clip_grad_norm"] = args.clip
    Path(args.out).write_text(json.dumps(model))
    return 0


def data(args: argparse.Namespace) -> int:
    lines = [line.strip() for line in Path(args.corpus).read_text().splitlines()
             if line.strip()]
    with open(args.out, "w") as out:
        for i in range(args.examples):
            text = lines[i % len(lines)]
            out.write(json.dumps({"text": text,
                                  "label": len(text.split()) % 2}) + "\n")
    return 0


def compare(args: argparse.Namespace) -> int:
    a, b = mixer_ref.read_safetensors(args.a), mixer_ref.read_safetensors(args.b)
    if a.keys() != b.keys():
        print(f"different tensors: {sorted(a.keys() ^ b.keys())}")
        return 1
    worst = max(float(np.max(np.abs(a[n].astype(np.float64) - b[n])))
                for n in a)
    print(f"{len(a)} tensors, largest difference {worst:.3e}")
    return 0 if worst <= args.atol else 1


def losses(args: argparse.Namespace) -> int:
    def read(path: str) -> dict:
        return {r["step"]: r["loss"]
                for r in map(json.loads, Path(path).read_text().splitlines())}
    a, b = read(args.a), read(args.b)
    if a.keys() != b.keys() or not a:
        print(f"different steps: {sorted(a)} and {sorted(b)}")
        return 1
    worst = max(abs(a[s] - b[s]) for s in a)
    print(f"{len(a)} steps, largest loss difference {worst:.3e}")
    return 0 if worst <= args.atol else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("variant")
    p.add_argument("base")
    p.add_argument("out")
    p.add_argument("--classes", type=int, default=0)
    p.add_argument("--micro-steps", type=int, default=1)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--clip", type=float, default=0.0)
    p.set_defaults(run=variant)
    p = sub.add_parser("data")
    p.add_argument("corpus")
    p.add_argument("out")
    p.add_argument("--examples", type=int, required=True)
    p.set_defaults(run=data)
    for name, run in (("compare", compare), ("losses", losses)):
        p = sub.add_parser(name)
        p.add_argument("a")
        p.add_argument("b")
        p.add_argument("--atol", type=float, required=True)
        p.set_defaults(run=run)
    args = parser.parse_args()
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
