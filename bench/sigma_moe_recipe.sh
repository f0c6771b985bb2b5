#!/usr/bin/env bash
# Trains a small sigma-MoE causal LM twice on data/corpus.txt (scripts/fetch-data)
# from the same seed and data order: once as mixer's defaults train it, once
# with the sigma-MoE paper's recipe (moe.init_scale sqrt(2 / layers), dropout
# 0.1 on the attention and sigma-MoE outputs, none on the attention
# probabilities; docs/dsl.md). Writes OUT/{default,paper}/metrics.jsonl, each
# model's evaluation (dropout off) and OUT/loss.png.
#
#   bench/sigma_moe_recipe.sh [OUT] [STEPS]      (defaults: out/sigma-recipe, 300)
#
# The model: the layout of models/sigma_moe_wt103_small.json at 8 layers,
# d_model 128 (4 heads of 32), 16 experts of 32, k 4, S 128, vocabulary 4000,
# batch 16.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-out/sigma-recipe}
steps=${2:-300}
mkdir -p "$out/default" "$out/paper"

/usr/bin/python3 - "$out" <<'EOF'
import json, math, sys
out = sys.argv[1]
with open("models/sigma_moe_wt103_small.json") as f:
    model = json.load(f)
model.update(num_layers=8, d_model=128)
model["embeddings"].update(vocab_size=4000, d_emb=128, max_seq_length=128)
model["attention"].update(num_heads=4, head_dim=32)
model["moe_layers"]["count"] = 8
model["moe"].update(expert_d_ff=32)
model["training"] = {"learning_rate": 1e-3}
default = json.loads(json.dumps(model))
del default["moe"]["init_scale"]
model["moe"]["init_scale"] = math.sqrt(2 / model["num_layers"])
model["training"].update(attention_dropout_rate=0,
                         attention_output_dropout_rate=0.1,
                         moe_output_dropout_rate=0.1)
for name, m in (("default", default), ("paper", model)):
    m["name"] = f"sigma_moe_recipe_{name}"
    with open(f"{out}/{name}/model.json", "w") as f:
        json.dump(m, f, indent=1)
EOF

[ -s "$out/spm.model" ] ||
  scripts/train-tokenizer data/corpus.txt "$out/spm" --model "$out/paper/model.json" > /dev/null
for run in default paper; do
  dir=$out/$run
  build/bin/mixc "$dir/model.json" --train --batch 16 -o "$dir/train.mxa" > /dev/null
  rm -rf "$dir/ckpt" "$dir/metrics.jsonl"
  build/bin/mixer-run pretrain "$dir/train.mxa" --corpus data/corpus.txt \
    --tokenizer "$out/spm.model" --steps "$steps" --total-steps "$steps" \
    --warmup-steps $((steps / 10 + 1)) \
    --seed 1 --checkpoint-dir "$dir/ckpt" --log "$dir/metrics.jsonl" 2> /dev/null
  build/bin/mixer-run eval "$dir/train.mxa" --weights "$dir/ckpt" \
    --tokenizer "$out/spm.model" --corpus data/corpus.txt --batches 20 --json \
    > "$dir/eval.json"
  echo "$run: $(cat "$dir/eval.json")"
done
scripts/plot-metrics "$out/default/metrics.jsonl" "$out/paper/metrics.jsonl" \
  -o "$out/loss.png" --keys causal_lm_loss --smooth 20 \
  --title "sigma-MoE, 8 x 128: mixer defaults vs the paper's recipe"
