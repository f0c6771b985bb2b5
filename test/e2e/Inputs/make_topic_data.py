"""Writes a two-class JSONL set for fine-tuning tests: label 1 when the
sentence's subject is one of THE_SUBJECTS, 0 otherwise, about a third
positive so the majority-class rate is well below 1.

  make_topic_data.py OUT.jsonl COUNT SEED
"""
import json
import random
import sys

THE_SUBJECTS = ["The king", "The fox", "The baker"]
OTHER_SUBJECTS = ["A bird", "A child", "My sister", "A young horse", "My brother", "A bird"]
VERBS = ["finds", "likes", "watches", "paints", "keeps", "remembers"]
OBJECTS = ["a red ball", "the river", "a wooden boat", "the small house", "a heavy stone"]
PLACES = ["at night", "near the river", "under the bridge", "every day", "before winter"]

out, count, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
with open(out, "w", encoding="utf-8") as rows:
    for _ in range(count):
        label = int(rng.random() < 0.35)
        subject = rng.choice(THE_SUBJECTS if label else OTHER_SUBJECTS)
        text = f"{subject} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(PLACES)}."
        rows.write(json.dumps({"text": text, "label": label}) + "\n")
