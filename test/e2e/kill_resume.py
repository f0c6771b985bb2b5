"""Kills a pre-training run with SIGKILL at random moments and resumes it each
time; the run must always resume, and end with the bits of a run that was
never interrupted and a metrics log that holds each step once.

    kill_resume.py --dir D [--kills 20] [--seed 1] MIXER_RUN PRETRAIN_ARGS...

PRETRAIN_ARGS are `mixer-run pretrain` arguments without --checkpoint-dir,
--resume and --log; they must include --steps N and --checkpoint-every 1.
A kill counts as one during a save when the save's temporaries are left
behind; the run is killed until it was killed at least KILLS times, at
least half of them during a save. Exits 1 naming what went wrong; prints
the kill counts.
"""

import argparse
import filecmp
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path


def save_under_way(checkpoints: Path) -> bool:
    """Whether a save was interrupted: its temporaries are still there."""
    if not checkpoints.is_dir():
        return False
    return any(p.name.startswith(".step_") or p.name.startswith("latest.tmp.")
               for p in checkpoints.iterdir())


def final_step(args: list) -> int:
    return int(args[args.index("--steps") + 1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mixer_run")
    parser.add_argument("--dir", required=True, type=Path)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("pretrain", nargs=argparse.REMAINDER)
    options = parser.parse_args()
    pretrain = [a for a in options.pretrain if a != "--"]
    steps = final_step(pretrain)
    rng = random.Random(options.seed)

    log = options.dir / "interrupted.jsonl"

    def command(directory: Path, resume: bool) -> list:
        return ([options.mixer_run, "pretrain"] + pretrain +
                ["--checkpoint-dir", str(directory)] +
                (["--resume", "--log", str(log)] if resume else []))

    reference = options.dir / "uninterrupted"
    start = time.monotonic()
    subprocess.run(command(reference, False), check=True,
                   stderr=subprocess.DEVNULL)
    duration = time.monotonic() - start

    interrupted = options.dir / "interrupted"
    during_save = elsewhere = attempts = 0
    wanted_during = options.kills // 2
    while during_save + elsewhere < options.kills or during_save < wanted_during:
        attempts += 1
        if attempts > 40 * options.kills:
            print(f"gave up after {attempts} attempts: {during_save} kills "
                  f"during a save, {elsewhere} elsewhere", file=sys.stderr)
            return 1
        process = subprocess.Popen(command(interrupted, True),
                                   stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.0, duration))
        if process.poll() is not None:
            # The run ended (or failed) before the kill.
            _, errors = process.communicate()
            if process.returncode != 0:
                print(f"a resumed run failed: {errors.decode()}",
                      file=sys.stderr)
                return 1
            # Finished: start over from scratch so that kills keep landing.
            for path in sorted(interrupted.rglob("*"), reverse=True):
                path.unlink() if not path.is_dir() else path.rmdir()
            log.unlink()
            continue
        process.send_signal(signal.SIGKILL)
        process.communicate()
        if save_under_way(interrupted):
            during_save += 1
        else:
            elsewhere += 1

    finish = subprocess.run(command(interrupted, True), capture_output=True)
    if finish.returncode != 0:
        print(f"the last resume failed: {finish.stderr.decode()}",
              file=sys.stderr)
        return 1
    for name in ("params.safetensors", "optimizer.safetensors"):
        ours = interrupted / f"step_{steps}" / name
        theirs = reference / f"step_{steps}" / name
        if not filecmp.cmp(ours, theirs, shallow=False):
            print(f"{ours} differs from {theirs}", file=sys.stderr)
            return 1
    logged = [json.loads(line)["step"] for line in log.open()]
    if logged != list(range(1, steps + 1)):
        print(f"{log} holds steps {logged}, not 1 to {steps} once each",
              file=sys.stderr)
        return 1
    print(f"{during_save + elsewhere} kills ({during_save} during a save), "
          f"every resume ended bit-identical to the uninterrupted run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
