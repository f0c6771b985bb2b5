#!/usr/bin/env bash
# bf16 cpu plans against fp32 plans: for every tiny model family (batch 2)
# and the three base models (batch 1, S 512), both plans run on the same
# weights (mixer-run init --seed 1) and the same random batch (seed 2), and
# the script prints a Markdown table of the relative RMS error
# (||bf16 - fp32|| / ||fp32||) and the largest error relative to the largest
# fp32 magnitude of sequence_output and pooled_output.
#
#   bench/bf16_accuracy.sh [OUT]        (default: out/bf16-accuracy)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-out/bf16-accuracy}
mkdir -p "$out"
bin=build/bin
ref="/usr/bin/python3 test/reference/mixer_ref.py"

run() { # model.json batch name
  local model=$1 batch=$2 name=$3
  $bin/mixc "$model" --batch "$batch" -o "$out/$name.mxa" > /dev/null
  $bin/mixc "$model" --batch "$batch" --precision bf16 -o "$out/$name.bf16.mxa" > /dev/null
  $bin/mixer-run init "$out/$name.mxa" --seed 1 -o "$out/$name.w.safetensors" > /dev/null
  $ref random-batch "$model" --batch "$batch" --seed 2 -o "$out/$name.in.safetensors"
  for plan in "$name" "$name.bf16"; do
    $bin/mixer-run infer "$out/$plan.mxa" --weights "$out/$name.w.safetensors" \
      --input "$out/$name.in.safetensors" --output "$out/$plan.out.safetensors" > /dev/null
  done
}

models=()
for model in sparse_mixer fast_sparse_mixer bert fnet hartley circulant toeplitz tokens_choose sigma_moe; do
  run "models/tiny/${model}_tiny.json" 2 "${model}_tiny"
  models+=("${model}_tiny")
done
for model in bert_base sparse_mixer_base fast_sparse_mixer_base; do
  run "models/$model.json" 1 "$model"
  models+=("$model")
done

/usr/bin/python3 - "$out" "${models[@]}" <<'PY'
import sys
import numpy as np
sys.path.insert(0, "test/reference")
from mixer_ref import read_tensors
out, names = sys.argv[1], sys.argv[2:]
print("| model | sequence_output rel. RMS | sequence_output max / max|fp32| | pooled_output rel. RMS | pooled_output max / max|fp32| |")
print("|---|---|---|---|---|")
for name in names:
    fp32 = read_tensors(f"{out}/{name}.out.safetensors")
    bf16 = read_tensors(f"{out}/{name}.bf16.out.safetensors")
    cells = []
    for key in ("sequence_output", "pooled_output"):
        if key not in fp32:
            cells += ["–", "–"]
            continue
        a = bf16[key].astype(np.float64)
        b = fp32[key].astype(np.float64)
        rms = np.linalg.norm(a - b) / np.linalg.norm(b)
        worst = np.abs(a - b).max() / np.abs(b).max()
        cells += [f"{rms:.2e}", f"{worst:.2e}"]
    print(f"| {name} | " + " | ".join(cells) + " |")
PY
