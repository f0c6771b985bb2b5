#!/usr/bin/python3
"""Checks the optimizer update of a training plan (mixc --train).

Every parameter P has the state entries adam_m/P and adam_v/P (zeros, P's
shape, in parameter order); the inputs seed and step are I32 scalars and
learning_rate an F32 scalar; and the plan ends with exactly one adamw step per
parameter that reads a gradient of P's shape, the learning_rate and step
inputs and, with clipping, the norm a global_norm step wrote, and that writes
P and its two moments where they are stored.

    mixc-train-check.py PLAN.json [--clipped]
"""

import argparse
import json
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plan")
    parser.add_argument("--clipped", action="store_true")
    args = parser.parse_args()
    with open(args.plan) as f:
        plan = json.load(f)
    params, state = plan["params"], plan["state"]
    values, steps = plan["values"], plan["steps"]

    expected = [(prefix + p["name"], p["shape"]) for p in params
                for prefix in ("adam_m/", "adam_v/")]
    assert [(s["name"], s["shape"]) for s in state] == expected, "state table"
    assert all(s["dtype"] == "F32" and s["init"] == {"kind": "zeros"}
               for s in state), "state dtype and init"

    first = next(i for i, s in enumerate(steps) if s["kernel"] == "adamw")
    updates = steps[first:]
    assert all(s["kernel"] == "adamw" for s in updates), "updates come last"
    assert len(updates) == len(params), "one update per parameter"

    inputs = {x["name"]: i for i, x in enumerate(plan["inputs"])}
    for name, dtype in (("seed", "I32"), ("step", "I32"),
                        ("learning_rate", "F32")):
        entry = plan["inputs"][inputs[name]]
        assert (entry["dtype"], entry["shape"]) == (dtype, []), name
    norms = [s["results"][0] for s in steps if s["kernel"] == "global_norm"]
    assert len(norms) == (1 if args.clipped else 0), "global norm steps"

    def storage(value: int) -> tuple:
        v = values[value]
        return (v["storage"], v.get("index"))

    updated = set()
    for step in updates:
        kind, k = storage(step["results"][0])
        assert kind == "param", "the first result is the parameter"
        assert [storage(r) for r in step["results"][1:]] == [
            ("state", 2 * k), ("state", 2 * k + 1)], "the moments of P"
        grad, lr, count, norm, micro = step["operands"]
        assert micro == -1, "no micro-step without gradient accumulation"
        assert values[grad]["shape"] == params[k]["shape"], "gradient shape"
        assert storage(lr) == ("input", inputs["learning_rate"])
        assert storage(count) == ("input", inputs["step"])
        assert norm == (norms[0] if args.clipped else -1), "norm operand"
        updated.add(k)
    assert updated == set(range(len(params))), "every parameter is updated"
    print(f"ok: {len(params)} parameters, {len(state)} state tensors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
