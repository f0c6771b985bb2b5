#!/usr/bin/env python3
"""Offline register and spill check of the CUDA kernels.

Assembles each PTX file with `ptxas -v` for the architecture its `.target`
names (the PTX the build produced; no GPU needed) and fails when a kernel
spills (any spill store or load, or a stack frame) or uses more registers
than its budget. Budgets come from a file of `<regex> <max registers>` lines
('#' starts a comment); the first regex found in the kernel's mangled name
decides, else --default-budget. With --log, parses a saved `ptxas -v` log
instead of running ptxas. A PTX argument may hold several paths separated
by ';' (a CMake list).
"""

import argparse
import concurrent.futures
import re
import subprocess
import sys

ENTRY = re.compile(r"Compiling entry function '([^']+)' for '(sm_\w+)'")
PROPERTIES = re.compile(r"Function properties for (\S+)")
FRAME = re.compile(
    r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
REGISTERS = re.compile(r"Used (\d+) registers")
TARGET = re.compile(r"^\s*\.target\s+(sm_\w+)", re.M)


def read_budgets(path):
    budgets = []
    if not path:
        return budgets
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            fields = line.split()
            if len(fields) != 2 or not fields[1].isdigit():
                sys.exit(f"{path}:{number}: expected '<regex> <max registers>'")
            budgets.append((re.compile(fields[0]), int(fields[1])))
    return budgets


def parse(log, source):
    """(kernel, arch) -> {'registers': n, 'frame': (stack, stores, loads)}."""
    kernels = {}
    entry = None
    properties = None
    for line in log.splitlines():
        if m := ENTRY.search(line):
            entry = (m.group(1), m.group(2))
            kernels.setdefault(entry, {"source": source})
        elif m := PROPERTIES.search(line):
            properties = m.group(1)
        elif m := FRAME.search(line):
            if entry and properties == entry[0]:
                kernels[entry]["frame"] = tuple(int(g) for g in m.groups())
        elif m := REGISTERS.search(line):
            if entry:
                kernels[entry]["registers"] = int(m.group(1))
    return kernels


def assemble(ptxas, path):
    with open(path) as f:
        target = TARGET.search(f.read())
    if not target:
        return path, None, f"{path}: no .target directive"
    run = subprocess.run([ptxas, "-v", f"-arch={target.group(1)}", path,
                          "-o", "/dev/null"], capture_output=True, text=True)
    if run.returncode != 0:
        return path, None, f"{path}: ptxas failed:\n{run.stderr}"
    return path, run.stdout + run.stderr, None


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("ptx", nargs="*", help="PTX files to assemble")
    parser.add_argument("--ptxas", default="ptxas")
    parser.add_argument("--budgets", help="file of '<regex> <registers>'")
    parser.add_argument("--default-budget", type=int, default=128)
    parser.add_argument("--log", help="a saved `ptxas -v` log to check")
    args = parser.parse_args()

    budgets = read_budgets(args.budgets)
    paths = [p for arg in args.ptx for p in arg.split(";") if p]
    kernels = {}
    problems = []
    if args.log:
        with open(args.log) as f:
            kernels.update(parse(f.read(), args.log))
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        for path, log, error in pool.map(lambda p: assemble(args.ptxas, p),
                                         paths):
            if error:
                problems.append(error)
            else:
                kernels.update(parse(log, path))
    if not kernels and not problems:
        problems.append("no kernel found in the input")

    for (name, arch), info in sorted(kernels.items()):
        budget = next((limit for pattern, limit in budgets
                       if pattern.search(name)), args.default_budget)
        registers = info.get("registers")
        stack, stores, loads = info.get("frame", (0, 0, 0))
        where = f"{info['source']}: {name} ({arch})"
        if registers is None:
            problems.append(f"{where}: no register count in the ptxas output")
        elif registers > budget:
            problems.append(f"{where}: uses {registers} registers, over its "
                            f"budget of {budget}")
        if stores or loads:
            problems.append(f"{where}: {stores} bytes spill stores, {loads} "
                            "bytes spill loads")
        elif stack:
            problems.append(f"{where}: {stack} bytes stack frame")
        print(f"{arch} {registers if registers is not None else '?':>3}/"
              f"{budget:<3} regs  spill {stores}/{loads}  {name}")
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    print(f"{len(kernels)} kernels checked, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
