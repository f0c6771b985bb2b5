#!/usr/bin/env python3
"""Compares the losses of two training runs' metrics files.

  compare_losses.py A.jsonl B.jsonl --rtol R

Every step of B must be in A with the same loss and loss terms (the keys
"loss" and "*_loss") to R relative; prints one line per step and exits 1
when a value differs or a step is missing.
"""

import argparse
import json
import sys


def losses(path):
    steps = {}
    with open(path) as lines:
        for line in lines:
            record = json.loads(line)
            steps[record["step"]] = {
                key: value for key, value in record.items()
                if key == "loss" or key.endswith("_loss")}
    return steps


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--rtol", type=float, required=True)
    args = parser.parse_args()
    a, b = losses(args.a), losses(args.b)
    failed = not b
    for step, expected in sorted(b.items()):
        got = a.get(step)
        if got is None or got.keys() != expected.keys():
            print(f"step {step}: missing or other loss terms in {args.a}")
            failed = True
            continue
        worst = max(abs(got[k] - v) / max(abs(v), 1e-30)
                    for k, v in expected.items())
        ok = worst <= args.rtol
        failed |= not ok
        print(f"step {step}: {len(expected)} losses, largest relative "
              f"difference {worst:.2g} {'OK' if ok else 'MISMATCH'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
