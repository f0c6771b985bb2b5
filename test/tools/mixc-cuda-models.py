#!/usr/bin/python3
"""Compiles every model of a directory for the cuda target.

For each model JSON under MODELS (recursively), in fp32 and bf16, for
inference and for the training step, runs `MIXC model --target cuda
--precision P [--train] --batch 1 --emit=plan` and checks the plan: it
records target cuda and the precision; parameters and optimizer state are
F32; BF16 values exist exactly in bf16 plans and only in the arena; losses
are F32. Prints one line per plan and a summary; exits 1 on any failure.

    mixc-cuda-models.py MIXC MODELS
"""

import json
import pathlib
import subprocess
import sys


def check_plan(plan, precision, train):
    """Returns the problems of one plan."""
    problems = []
    if plan["target"] != "cuda" or plan["precision"] != precision:
        problems.append(f"records {plan['target']}/{plan['precision']}")
    for table in ("params", "state"):
        for entry in plan.get(table, []):
            if entry["dtype"] != "F32":
                problems.append(f"{table} {entry['name']} is {entry['dtype']}")
    bf16 = [v for v in plan["values"] if v["dtype"] == "BF16"]
    if precision == "bf16" and not bf16:
        problems.append("no BF16 activation")
    if precision == "fp32" and bf16:
        problems.append("BF16 values in an fp32 plan")
    if any(v["storage"] != "arena" for v in bf16):
        problems.append("BF16 value outside the arena")
    for output in plan["outputs"]:
        if output["name"].endswith("loss"):
            dtype = plan["values"][output["value"]]["dtype"]
            if dtype != "F32":
                problems.append(f"output {output['name']} is {dtype}")
    if train and "training" not in plan:
        problems.append("no training settings")
    return problems


def main() -> int:
    mixc, models = sys.argv[1], pathlib.Path(sys.argv[2])
    failures = plans = 0
    paths = sorted(models.rglob("*.json"))
    for path in paths:
        for precision in ("fp32", "bf16"):
            for train in (False, True):
                mode = "train" if train else "inference"
                command = [mixc, str(path), "--target", "cuda", "--precision",
                           precision, "--batch", "1", "--emit=plan"]
                if train:
                    command.append("--train")
                result = subprocess.run(command, capture_output=True,
                                        text=True)
                plans += 1
                if result.returncode != 0:
                    problems = [result.stderr.strip().splitlines()[0]]
                else:
                    problems = check_plan(json.loads(result.stdout),
                                          precision, train)
                status = "FAIL" if problems else "ok"
                print(f"{status} {path.stem} {precision} {mode}"
                      + "".join(f": {p}" for p in problems))
                failures += bool(problems)
    print(f"{plans - failures} of {plans} plans of {len(paths)} models "
          "compiled for cuda")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
