#!/usr/bin/env python3
"""Checks the include graph of the runtime against its layers.

Each runtime folder may include only the folders its layer sits on:
support < io < exec (the backend-neutral core) < cpu, cuda (the backends)
< target (picks a backend) < train (the loop). The communicators (comm) sit
on io beside exec; the backends, target and train may use them. convert
(checkpoints of other frameworks) sits on io and data. Prints every
include that crosses a layer and exits 1 if there is one.

  check-layers.py [--root DIR]   DIR: the source tree (default: this one)
"""

import argparse
import pathlib
import re
import sys

# Folder -> the runtime folders (and single headers) it may include.
ALLOWED = {
    "support": {"support"},
    "io": {"support", "io"},
    # Parameter initialisation draws from the kernels' header-only Philox
    # generator.
    "exec": {"support", "io", "exec", "cpu/CounterRandom.h"},
    # Collectives between ranks: host bytes, no plan.
    "comm": {"support", "io", "comm"},
    "cpu": {"support", "io", "exec", "comm", "cpu"},
    "cuda": {"support", "io", "exec", "comm", "cuda"},
    "target": {"support", "io", "exec", "comm", "cpu", "cuda", "target"},
    "data": {"support", "io", "data", "cpu/CounterRandom.h"},
    # A parallel run gathers its shards for checkpoints over the world.
    "train": {"support", "io", "exec", "comm", "data", "train"},
    # Checkpoint conversion reads tensor files and tokenizer vocabularies.
    "convert": {"support", "io", "data", "convert"},
}

INCLUDE = re.compile(r'^\s*#\s*include\s+"runtime/([^"]+)"', re.M)


def violations(root):
    runtime = root / "runtime"
    for path in sorted(runtime.rglob("*")):
        if path.suffix not in {".h", ".cpp", ".cu", ".cuh", ".def"}:
            continue
        folder = path.relative_to(runtime).parts[0]
        allowed = ALLOWED.get(folder)
        if allowed is None:
            yield f"{path.relative_to(root)}: runtime/{folder} has no layer"
            continue
        for included in INCLUDE.findall(path.read_text()):
            if included.split("/")[0] in allowed or included in allowed:
                continue
            yield (f"{path.relative_to(root)}: includes runtime/{included}, "
                   f"outside the layers runtime/{folder} may use")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=pathlib.Path,
                        default=pathlib.Path(__file__).resolve().parent.parent)
    args = parser.parse_args()
    found = list(violations(args.root))
    for message in found:
        print(f"error: {message}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
