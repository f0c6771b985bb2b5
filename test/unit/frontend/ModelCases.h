//===- ModelCases.h - Model texts shared by the frontend tests --*- C++ -*-===//
//
// Small model texts with the exact diagnostic the parser must give (file
// "m.json"; positions counted by hand) and whether the JSON Schema can see
// the same mistake. ModelParserTest checks the messages; SchemaTest checks the
// schema verdicts.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_TEST_UNIT_FRONTEND_MODELCASES_H
#define MIXER_TEST_UNIT_FRONTEND_MODELCASES_H

namespace mixer::test {

/// What frontend/model.schema.json says about a case.
enum class SchemaVerdict {
  Rejects, ///< the rule is expressible in the schema
  Accepts, ///< the rule relates numbers or needs duplicate-key detection
  NotJson, ///< a syntax error: no schema applies
};

struct InvalidCase {
  const char *name;
  const char *text;
  const char *message;
  SchemaVerdict schema;
};

struct ValidCase {
  const char *name;
  const char *text;
};

inline const InvalidCase kInvalidCases[] = {
    // JSON syntax.
    {"syntax_trailing_comma", R"json({
  "name": "m",
})json",
     "m.json:3:1: syntax error while parsing object key - unexpected '}'; "
     "expected string literal",
     SchemaVerdict::NotJson},
    {"syntax_unterminated", "{\n  \"name\": \"m\"\n",
     "m.json:3:1: syntax error while parsing object - unexpected end of "
     "input; expected '}'",
     SchemaVerdict::NotJson},
    {"number_overflow", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 1e400, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear"}
})json",
     "m.json:4:14: /d_model: number 1e400 is out of range",
     SchemaVerdict::Rejects},

    // Types.
    {"root_not_object", "[1, 2]",
     "m.json:1:1: /: expected an object, got an array", SchemaVerdict::Rejects},
    {"string_for_integer", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": "16", "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear"}
})json",
     "m.json:4:14: /d_model: expected an integer, got \"16\"",
     SchemaVerdict::Rejects},
    {"fraction_for_integer", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16.5, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear"}
})json",
     "m.json:4:14: /d_model: expected an integer, got 16.5",
     SchemaVerdict::Rejects},
    {"integer_for_bool", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear"},
  "heads": {"pooler": 1}
})json",
     "m.json:6:23: /heads/pooler: expected a boolean (true or false), got 1",
     SchemaVerdict::Rejects},
    {"array_for_object", R"json({
  "name": "m",
  "embeddings": [64, 8],
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear"}
})json",
     "m.json:3:17: /embeddings: expected an object, got an array",
     SchemaVerdict::Rejects},

    // Ranges.
    {"below_minimum", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 0, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear"}
})json",
     "m.json:4:14: /d_model: must be >= 1, got 0", SchemaVerdict::Rejects},
    {"epsilon_not_positive", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32, "layer_norm_epsilon": 0,
  "mixing": {"kind": "linear"}
})json",
     "m.json:4:69: /layer_norm_epsilon: must be > 0, got 0",
     SchemaVerdict::Rejects},
    {"above_integer_maximum", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 3000000000, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear"}
})json",
     "m.json:3:32: /embeddings/vocab_size: must be <= 2147483647, got "
     "3000000000",
     SchemaVerdict::Rejects},
    {"too_many_layers", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 70000, "d_ff": 32,
  "mixing": {"kind": "linear"}
})json",
     "m.json:4:32: /num_layers: must be <= 4096, got 70000",
     SchemaVerdict::Rejects},
    {"max_seq_length_zero", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 0},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear"}
})json",
     "m.json:3:54: /embeddings/max_seq_length: must be >= 1, got 0",
     SchemaVerdict::Rejects},
    {"empty_name", R"json({
  "name": "",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear"}
})json",
     "m.json:2:11: /name: must not be empty", SchemaVerdict::Rejects},

    // Keys.
    {"unknown_key_suggestion", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear", "attention_layers": [3]},
  "attention": {"num_heads": 2, "casual": true}
})json",
     "m.json:6:33: /attention/casual: unknown key 'casual' (did you mean "
     "'causal'?)",
     SchemaVerdict::Rejects},
    {"unknown_key_list", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear", "attention_layers": [3]},
  "attention": {"num_heads": 2, "dropout": 0.1}
})json",
     "m.json:6:33: /attention/dropout: unknown key 'dropout' (known keys: "
     "num_heads, head_dim, causal)",
     SchemaVerdict::Rejects},
    {"duplicate_key", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32, "d_model": 16,
  "mixing": {"kind": "linear"}
})json",
     "m.json:4:47: /d_model: duplicate key 'd_model'", SchemaVerdict::Accepts},
    {"missing_nested_key", R"json({
  "name": "m",
  "embeddings": {"max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear"}
})json",
     "m.json:3:17: /embeddings/vocab_size: missing required key 'vocab_size'",
     SchemaVerdict::Rejects},
    {"missing_root_key", R"json({
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear"}
})json",
     "m.json:1:1: /name: missing required key 'name'", SchemaVerdict::Rejects},
    {"several_errors_in_document_order", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear", "attention_layers": [3]},
  "attention": {"num_head": 2}
})json",
     "m.json:6:16: /attention/num_heads: missing required key 'num_heads'\n"
     "m.json:6:17: /attention/num_head: unknown key 'num_head' (did you mean "
     "'num_heads'?)",
     SchemaVerdict::Rejects},

    // Enumerations; columns count characters, not bytes.
    {"enum_suggestion", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "fourrier"}
})json",
     "m.json:5:22: /mixing/kind: must be one of \"linear\", \"fourier\", "
     "\"hartley\", \"circulant\", \"toeplitz\", \"identity\", \"attention\", "
     "got \"fourrier\" (did you mean \"fourier\"?)",
     SchemaVerdict::Rejects},
    {"enum_case", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear", "attention_layers": {"layout": "top", "count": 1}},
  "attention": {"num_heads": 2}
})json",
     "m.json:5:63: /mixing/attention_layers/layout: must be one of "
     "\"BOTTOM\", \"MIDDLE\", \"MIXED\", \"TOP\", got \"top\" (did you mean "
     "\"TOP\"?)",
     SchemaVerdict::Rejects},
    {"enum_after_multibyte_character", R"json({
  "name": "müller", "dtype": "float16",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear"}
})json",
     "m.json:2:30: /dtype: must be one of \"float32\", got \"float16\" (did "
     "you mean \"float32\"?)",
     SchemaVerdict::Rejects},

    // Placements.
    {"duplicate_layer_index", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear", "attention_layers": [3, 3]},
  "attention": {"num_heads": 2}
})json",
     "m.json:5:56: /mixing/attention_layers/1: duplicate layer index 3",
     SchemaVerdict::Rejects},
    {"layer_index_out_of_range", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear", "attention_layers": [1, 4]},
  "attention": {"num_heads": 2}
})json",
     "m.json:5:56: /mixing/attention_layers/1: layer index must be between 0 "
     "and num_layers - 1 (3), got 4",
     SchemaVerdict::Accepts},
    {"negative_layer_index", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear", "attention_layers": [-1]},
  "attention": {"num_heads": 2}
})json",
     "m.json:5:53: /mixing/attention_layers/0: must be >= 0, got -1",
     SchemaVerdict::Rejects},
    {"layout_count_too_large", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear"},
  "moe_layers": {"layout": "TOP", "count": 5},
  "moe": {"num_experts": 4, "expert_d_ff": 8}
})json",
     "m.json:6:44: /moe_layers/count: must be between 0 and num_layers (4), "
     "got 5",
     SchemaVerdict::Accepts},
    {"placement_not_list_or_layout", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear"},
  "moe_layers": 2,
  "moe": {"num_experts": 4, "expert_d_ff": 8}
})json",
     "m.json:6:17: /moe_layers: expected a list of layer indices or an object "
     "{\"layout\": ..., \"count\": ...}, got 2",
     SchemaVerdict::Rejects},

    // Sections required by the layers.
    {"heads_not_dividing_d_model", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear", "attention_layers": [3]},
  "attention": {"num_heads": 3}
})json",
     "m.json:6:30: /attention/num_heads: must divide d_model (16) when "
     "head_dim is absent, got 3",
     SchemaVerdict::Accepts},
    {"attention_missing_for_layout", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear", "attention_layers": {"layout": "TOP", "count": 1}}
})json",
     "m.json:1:1: /attention: missing required key 'attention' (layer 3 uses "
     "attention)",
     SchemaVerdict::Rejects},
    {"attention_missing_for_kind", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "attention"}
})json",
     "m.json:1:1: /attention: missing required key 'attention' (layer 0 uses "
     "attention)",
     SchemaVerdict::Rejects},
    {"moe_missing", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear"},
  "moe_layers": [2]
})json",
     "m.json:1:1: /moe: missing required key 'moe' (layer 2 is an MoE layer)",
     SchemaVerdict::Rejects},
    {"d_ff_missing_with_moe_layers", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4,
  "mixing": {"kind": "linear"},
  "moe_layers": {"layout": "BOTTOM", "count": 2},
  "moe": {"num_experts": 4, "expert_d_ff": 8}
})json",
     "m.json:1:1: /d_ff: missing required key 'd_ff' (layer 2 has a dense "
     "feed-forward)",
     SchemaVerdict::Accepts},
    {"d_ff_missing_without_moe", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4,
  "mixing": {"kind": "linear"}
})json",
     "m.json:1:1: /d_ff: missing required key 'd_ff' (layer 0 has a dense "
     "feed-forward)",
     SchemaVerdict::Rejects},
    {"pad_id_outside_vocab", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8, "pad_id": 64},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear"}
})json",
     "m.json:3:67: /embeddings/pad_id: must be between 0 and vocab_size - 1 "
     "(63), got 64",
     SchemaVerdict::Accepts},
    {"attention_layers_with_attention_kind", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "attention", "attention_layers": [1]},
  "attention": {"num_heads": 2}
})json",
     "m.json:5:35: /mixing/attention_layers: not allowed when kind is "
     "\"attention\" (every layer attends)",
     SchemaVerdict::Rejects},
    {"use_fft_with_linear", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear", "use_fft": true}
})json",
     "m.json:5:43: /mixing/use_fft: only applies to fourier, hartley, "
     "circulant and toeplitz mixing, not \"linear\"",
     SchemaVerdict::Rejects},

    // Heads.
    {"nsp_without_pooler", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear"},
  "heads": {"mlm": true, "nsp": true}
})json",
     "m.json:6:33: /heads/nsp: requires \"pooler\": true",
     SchemaVerdict::Rejects},
    {"classification_without_pooler", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear"},
  "heads": {"classification": {"num_classes": 3}}
})json",
     "m.json:6:31: /heads/classification: requires \"pooler\": true",
     SchemaVerdict::Rejects},
    {"nsp_with_classification", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear"},
  "heads": {"pooler": true, "nsp": true, "classification": {"num_classes": 3}}
})json",
     "m.json:6:60: /heads/classification: cannot be combined with \"nsp\": "
     "true (both own the classification parameters)",
     SchemaVerdict::Rejects},
    {"zero_classes", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear"},
  "heads": {"pooler": true, "classification": {"num_classes": 0}}
})json",
     "m.json:6:63: /heads/classification/num_classes: must be >= 1, got 0",
     SchemaVerdict::Rejects},

    // MoE.
    {"capacity_key_with_sigmoid_topk", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear"},
  "moe_layers": [1, 2],
  "moe": {
    "num_experts": 4, "expert_d_ff": 8,
    "routing": {"type": "sigmoid_topk", "k": 2},
    "min_expert_capacity": 2
  }
})json",
     "m.json:10:5: /moe/min_expert_capacity: not allowed with sigmoid_topk "
     "routing (dropless: no groups, no capacity)",
     SchemaVerdict::Rejects},
    {"init_scale_with_capacity_routing", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear"},
  "moe_layers": [1, 2],
  "moe": {"num_experts": 4, "expert_d_ff": 8, "init_scale": 0.5}
})json",
     "m.json:7:47: /moe/init_scale: only applies to sigmoid_topk routing (the "
     "sigma-MoE keys, values and expert_sel)",
     SchemaVerdict::Rejects},
    {"init_scale_zero", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear"},
  "moe_layers": [1, 2],
  "moe": {"num_experts": 4, "expert_d_ff": 8, "routing": {"type": "sigmoid_topk", "k": 2}, "init_scale": 0}
})json",
     "m.json:7:106: /moe/init_scale: must be > 0, got 0",
     SchemaVerdict::Rejects},
    {"k_exceeds_experts", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear"},
  "moe_layers": [1, 2],
  "moe": {
    "num_experts": 4, "expert_d_ff": 8,
    "routing": {"type": "tokens_choose", "k": 5}
  }
})json",
     "m.json:9:47: /moe/routing/k: must be between 1 and num_experts (4), got "
     "5",
     SchemaVerdict::Accepts},
    {"k_with_experts_choose", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear"},
  "moe_layers": [1, 2],
  "moe": {
    "num_experts": 4, "expert_d_ff": 8,
    "routing": {"type": "experts_choose", "k": 1}
  }
})json",
     "m.json:9:43: /moe/routing/k: not allowed with experts_choose routing",
     SchemaVerdict::Rejects},
    {"batch_prioritized_with_sigmoid_topk", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear"},
  "moe_layers": [1, 2],
  "moe": {
    "num_experts": 4, "expert_d_ff": 8,
    "routing": {"type": "sigmoid_topk", "batch_prioritized": true}
  }
})json",
     "m.json:9:41: /moe/routing/batch_prioritized: not allowed with "
     "sigmoid_topk routing",
     SchemaVerdict::Rejects},
    {"min_expert_capacity_zero", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear"},
  "moe_layers": [1, 2],
  "moe": {
    "num_experts": 4, "expert_d_ff": 8,
    "min_expert_capacity": 0
  }
})json",
     "m.json:9:28: /moe/min_expert_capacity: must be >= 1, got 0",
     SchemaVerdict::Rejects},
    {"max_group_size_zero", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear"},
  "moe_layers": [1, 2],
  "moe": {
    "num_experts": 4, "expert_d_ff": 8,
    "max_group_size": 0
  }
})json",
     "m.json:9:23: /moe/max_group_size: must be >= 1, got 0",
     SchemaVerdict::Rejects},
    {"training_not_object", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear"},
  "training": 0.1
})json",
     "m.json:6:15: /training: expected an object, got 0.1",
     SchemaVerdict::Rejects},
    {"training_unknown_key", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear"},
  "training": {"learning_rte": 0.001}
})json",
     "m.json:6:16: /training/learning_rte: unknown key 'learning_rte' (did you "
     "mean 'learning_rate'?)",
     SchemaVerdict::Rejects},
    {"training_learning_rate_zero", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear"},
  "training": {"learning_rate": 0}
})json",
     "m.json:6:33: /training/learning_rate: must be > 0, got 0",
     SchemaVerdict::Rejects},
    {"training_dropout_rate_one", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear"},
  "training": {"dropout_rate": 1}
})json",
     "m.json:6:32: /training/dropout_rate: must be in [0, 1), got 1",
     SchemaVerdict::Rejects},
    {"training_attention_dropout_rate_one", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear"},
  "training": {"attention_dropout_rate": 1}
})json",
     "m.json:6:42: /training/attention_dropout_rate: must be in [0, 1), got 1",
     SchemaVerdict::Rejects},
    {"training_gradient_accumulation_zero", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear"},
  "training": {"gradient_accumulation_steps": 0}
})json",
     "m.json:6:47: /training/gradient_accumulation_steps: must be >= 1, got 0",
     SchemaVerdict::Rejects},
    {"training_gradient_accumulation_fraction", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear"},
  "training": {"gradient_accumulation_steps": 1.5}
})json",
     "m.json:6:47: /training/gradient_accumulation_steps: expected an integer, "
     "got 1.5",
     SchemaVerdict::Rejects},
    {"training_b2_negative", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear"},
  "training": {"b2": -0.5}
})json",
     "m.json:6:22: /training/b2: must be in [0, 1), got -0.5",
     SchemaVerdict::Rejects},
    {"training_weight_decay_negative", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear"},
  "training": {"weight_decay": -0.01}
})json",
     "m.json:6:32: /training/weight_decay: must be >= 0, got -0.01",
     SchemaVerdict::Rejects},
    {"training_jitter_string", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear"},
  "training": {"jitter_noise": "0.1"}
})json",
     "m.json:6:32: /training/jitter_noise: expected a number, got \"0.1\"",
     SchemaVerdict::Rejects},
    {"training_negative_loss_factor", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear"},
  "training": {"auxiliary_loss_factor": -1}
})json",
     "m.json:6:41: /training/auxiliary_loss_factor: must be >= 0, got -1",
     SchemaVerdict::Rejects},
    {"training_moe_output_dropout_one", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear"},
  "training": {"moe_output_dropout_rate": 1}
})json",
     "m.json:6:43: /training/moe_output_dropout_rate: must be in [0, 1), got 1",
     SchemaVerdict::Rejects},
    {"training_sigma_dropout_one", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear"},
  "training": {"sigma_moe_expert_dropout": 1}
})json",
     "m.json:6:44: /training/sigma_moe_expert_dropout: must be in [0, 1), got "
     "1",
     SchemaVerdict::Rejects},
    {"training_warmup_fraction", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear"},
  "training": {"warmup_steps": 2.5}
})json",
     "m.json:6:32: /training/warmup_steps: expected an integer, got 2.5",
     SchemaVerdict::Rejects},
    {"training_total_not_after_warmup", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear"},
  "training": {"warmup_steps": 100, "total_steps": 100}
})json",
     "m.json:6:52: /training/total_steps: must be greater than warmup_steps "
     "(100), got 100",
     SchemaVerdict::Accepts},
    {"training_warmup_beyond_default_total", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear"},
  "training": {"warmup_steps": 2000000}
})json",
     "m.json:6:32: /training/warmup_steps: must be less than total_steps "
     "(1000000), got 2000000",
     SchemaVerdict::Accepts},
    // The BERT-family options.
    {"gelu_erf_with_moe", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32, "activation": "gelu_erf",
  "mixing": {"kind": "linear"},
  "moe_layers": [1],
  "moe": {"num_experts": 4, "expert_d_ff": 8}
})json",
     "m.json:4:61: /activation: \"gelu_erf\" applies to dense feed-forward "
     "layers only, but layer 1 is an MoE layer (its experts compute the tanh "
     "GELU)",
     SchemaVerdict::Rejects},
    {"no_hidden_mapping_with_other_width", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8, "d_emb": 8,
                 "hidden_mapping_in": false},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear"}
})json",
     "m.json:4:39: /embeddings/hidden_mapping_in: false needs d_emb equal to "
     "d_model (16), got d_emb 8",
     SchemaVerdict::Accepts},
    {"sentence_embedding_pooling", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear"},
  "heads": {"sentence_embedding": {"pooling": "max"}}
})json",
     "m.json:6:47: /heads/sentence_embedding/pooling: must be one of \"cls\", "
     "\"mean\", got \"max\"",
     SchemaVerdict::Rejects},
};

/// Texts both the parser and the schema accept, each at the edge of a rule.
inline const ValidCase kValidCases[] = {
    {"bert_family_options", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "type_vocab_size": 2, "max_seq_length": 8,
                 "hidden_mapping_in": false},
  "d_model": 16, "num_layers": 2, "d_ff": 32, "activation": "gelu_erf",
  "mixing": {"kind": "attention"},
  "attention": {"num_heads": 2},
  "heads": {"sentence_embedding": {"pooling": "mean", "normalize": true}}
})json"},
    {"minimal", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear"}
})json"},
    {"moe_given_but_unused", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear"},
  "moe": {"num_experts": 4, "expert_d_ff": 8}
})json"},
    {"head_dim_not_dividing", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear", "attention_layers": [3]},
  "attention": {"num_heads": 3, "head_dim": 5}
})json"},
    {"all_moe_without_d_ff", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4,
  "mixing": {"kind": "linear"},
  "moe_layers": {"layout": "BOTTOM", "count": 4},
  "moe": {"num_experts": 4, "expert_d_ff": 8}
})json"},
    {"integral_number_as_integer", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16.0, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear"}
})json"},
    {"causal_attention_with_mlm_and_nsp", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "attention"},
  "attention": {"num_heads": 2, "causal": true},
  "heads": {"pooler": true, "mlm": true, "nsp": true}
})json"},
    {"empty_placements_need_nothing", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear", "attention_layers": []},
  "moe_layers": {"layout": "MIXED", "count": 0}
})json"},
    {"schema_reference", R"json({
  "$schema": "../frontend/model.schema.json",
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear"}
})json"},
    {"sigmoid_topk_with_k_equal_to_experts", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear"},
  "moe_layers": [1, 2],
  "moe": {"num_experts": 4, "expert_d_ff": 8, "routing": {"type": "sigmoid_topk", "k": 4}}
})json"},
    {"training_at_the_edges", R"json({
  "name": "m",
  "embeddings": {"vocab_size": 64, "max_seq_length": 8},
  "d_model": 16, "num_layers": 4, "d_ff": 32,
  "mixing": {"kind": "linear"},
  "training": {"warmup_steps": 0, "total_steps": 1, "b1": 0, "b2": 0,
               "weight_decay": 0, "clip_grad_norm": 0, "dropout_rate": 0,
               "expert_dropout_rate": 0, "jitter_noise": 0}
})json"},
};

} // namespace mixer::test

#endif // MIXER_TEST_UNIT_FRONTEND_MODELCASES_H
