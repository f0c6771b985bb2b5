"""Checks that a pre-training run's loss fell: reads metrics.jsonl as written
by `mixer-run pretrain --log` and compares the mean of a loss component over
the first and the last steps.

    loss_falls.py METRICS.jsonl [--key masked_lm_loss] [--head 10]
                  [--tail 20] [--ratio 0.8]

Exits 1 (naming both means) unless mean(last TAIL) <= RATIO * mean(first
HEAD), and when the file has fewer than HEAD + TAIL steps or a step repeats.
"""

import argparse
import json
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("metrics")
    parser.add_argument("--key", default="masked_lm_loss")
    parser.add_argument("--head", type=int, default=10)
    parser.add_argument("--tail", type=int, default=20)
    parser.add_argument("--ratio", type=float, default=0.8)
    args = parser.parse_args()
    with open(args.metrics) as lines:
        records = [json.loads(line) for line in lines if line.strip()]
    steps = [record["step"] for record in records]
    if steps != list(range(1, len(steps) + 1)):
        print(f"{args.metrics}: steps are not 1, 2, ...: {steps[:5]}...")
        return 1
    if len(records) < args.head + args.tail:
        print(f"{args.metrics}: {len(records)} steps, need "
              f"{args.head + args.tail}")
        return 1
    values = [record[args.key] for record in records]
    first = sum(values[:args.head]) / args.head
    last = sum(values[-args.tail:]) / args.tail
    verdict = "fell" if last <= args.ratio * first else "did not fall enough"
    print(f"{args.key}: first {args.head} steps {first:.4f}, last {args.tail} "
          f"steps {last:.4f} (ratio {last / first:.3f}, bound {args.ratio}): "
          f"{verdict}")
    return 0 if last <= args.ratio * first else 1


if __name__ == "__main__":
    sys.exit(main())
