// RUN: mixer-opt %s -split-input-file -verify-diagnostics

func.func @dense_contraction_mismatch(%x: tensor<2x16xf32>, %w: tensor<8x32xf32>) {
  // expected-error @+1 {{input feature size 16 does not match the weight's contracted size 8}}
  %y = mixer.dense %x, %w : (tensor<2x16xf32>, tensor<8x32xf32>) -> tensor<2x32xf32>
  return
}

// -----

func.func @dense_bias_shape(%x: tensor<2x16xf32>, %w: tensor<16x32xf32>, %b: tensor<16xf32>) {
  // expected-error @+1 {{bias must have shape [32] but has [16]}}
  %y = mixer.dense %x, %w, %b : (tensor<2x16xf32>, tensor<16x32xf32>, tensor<16xf32>) -> tensor<2x32xf32>
  return
}

// -----

func.func @embed_short_position_table(%ids: tensor<2x8xi32>, %word: tensor<64x16xf32>, %pos: tensor<1x4x16xf32>, %type: tensor<4x16xf32>) {
  // expected-error @+1 {{position table has 4 rows but the sequence length is 8}}
  %e = mixer.embed %ids, %ids, %word, %pos, %type : (tensor<2x8xi32>, tensor<2x8xi32>, tensor<64x16xf32>, tensor<1x4x16xf32>, tensor<4x16xf32>) -> tensor<2x8x16xf32>
  return
}

// -----

func.func @layer_norm_scale(%x: tensor<2x16xf32>, %s: tensor<8xf32>, %b: tensor<16xf32>) {
  // expected-error @+1 {{scale must have shape [16] but has [8]}}
  %y = mixer.layer_norm %x, %s, %b {epsilon = 1.0e-12 : f64} : (tensor<2x16xf32>, tensor<8xf32>, tensor<16xf32>) -> tensor<2x16xf32>
  return
}

// -----

func.func @layer_norm_epsilon(%x: tensor<2x16xf32>, %s: tensor<16xf32>) {
  // expected-error @+1 {{epsilon must be positive}}
  %y = mixer.layer_norm %x, %s, %s {epsilon = 0.0 : f64} : (tensor<2x16xf32>, tensor<16xf32>, tensor<16xf32>) -> tensor<2x16xf32>
  return
}

// -----

func.func @reshape_count(%x: tensor<2x16xf32>) {
  // expected-error @+1 {{cannot reshape 32 elements into 30}}
  %y = mixer.reshape %x : tensor<2x16xf32> to tensor<2x15xf32>
  return
}

// -----

func.func @linear_mix_seq_kernel(%x: tensor<2x8x16xf32>, %ws: tensor<16x16xf32>) {
  // expected-error @+1 {{seq_kernel must have shape [8, 8] but has [16, 16]}}
  %y = mixer.linear_mix %x, %ws, %ws : (tensor<2x8x16xf32>, tensor<16x16xf32>, tensor<16x16xf32>) -> tensor<2x8x16xf32>
  return
}

// -----

func.func @toeplitz_kernel_length(%x: tensor<2x8x16xf32>, %ts: tensor<8xf32>, %th: tensor<31xf32>) {
  // expected-error @+1 {{seq_kernel must have shape [15] but has [8]}}
  %y = mixer.structured_mix %x, %ts, %th {toeplitz} : (tensor<2x8x16xf32>, tensor<8xf32>, tensor<31xf32>) -> tensor<2x8x16xf32>
  return
}

// -----

func.func @attention_width(%q: tensor<2x8x16xf32>, %ids: tensor<2x8xi32>) {
  // expected-error @+1 {{query width 16 must equal num_heads (3) x head_dim (4)}}
  %a = mixer.attention %q, %q, %q, %ids {num_heads = 3, head_dim = 4, pad_id = 0} : (tensor<2x8x16xf32>, tensor<2x8x16xf32>, tensor<2x8x16xf32>, tensor<2x8xi32>) -> tensor<2x8x16xf32>
  return
}

// -----

func.func @pool_ids_shape(%x: tensor<2x8x16xf32>, %ids: tensor<2x7xi32>) {
  // expected-error @+1 {{ids must have shape [2, 8] but has [2, 7]}}
  %y = mixer.pool mean %x, %ids {pad_id = 0 : i64} : (tensor<2x8x16xf32>, tensor<2x7xi32>) -> tensor<2x16xf32>
  return
}

// -----

func.func @pool_result_shape(%x: tensor<2x8x16xf32>, %ids: tensor<2x8xi32>) {
  // expected-error @+1 {{result must have shape [2, 16] but has [2, 8]}}
  %y = mixer.pool cls %x, %ids {pad_id = 0 : i64} : (tensor<2x8x16xf32>, tensor<2x8xi32>) -> tensor<2x8xf32>
  return
}

// -----

func.func @take_position_range(%x: tensor<2x8x16xf32>) {
  // expected-error @+1 {{position 8 is outside the sequence of length 8}}
  %y = mixer.take_position %x[8] : tensor<2x8x16xf32> to tensor<2x16xf32>
  return
}

// -----

func.func @moe_capacity_exceeds_group(%x: tensor<2x8x16xf32>, %rk: tensor<16x4xf32>, %rb: tensor<4xf32>,
    %w1: tensor<4x16x32xf32>, %b1: tensor<4x32xf32>, %w2: tensor<4x32x16xf32>, %b2: tensor<4x16xf32>) {
  // expected-error @+1 {{expert capacity 9 must be in [1, 8] (tokens per group)}}
  %m = mixer.moe %x, %rk, %rb, %w1, %b1, %w2, %b2 {routing = #mixer<routing experts_choose>, num_groups = 2, capacity = 9, k = 1} : (tensor<2x8x16xf32>, tensor<16x4xf32>, tensor<4xf32>, tensor<4x16x32xf32>, tensor<4x32xf32>, tensor<4x32x16xf32>, tensor<4x16xf32>) -> tensor<2x8x16xf32>
  return
}

// -----

func.func @moe_groups_divide(%x: tensor<2x8x16xf32>, %rk: tensor<16x4xf32>, %rb: tensor<4xf32>,
    %w1: tensor<4x16x32xf32>, %b1: tensor<4x32xf32>, %w2: tensor<4x32x16xf32>, %b2: tensor<4x16xf32>) {
  // expected-error @+1 {{num_groups = 3 does not divide the 16 tokens}}
  %m = mixer.moe %x, %rk, %rb, %w1, %b1, %w2, %b2 {routing = #mixer<routing experts_choose>, num_groups = 3, capacity = 2, k = 1} : (tensor<2x8x16xf32>, tensor<16x4xf32>, tensor<4xf32>, tensor<4x16x32xf32>, tensor<4x32xf32>, tensor<4x32x16xf32>, tensor<4x16xf32>) -> tensor<2x8x16xf32>
  return
}

// -----

func.func @moe_expert_weights(%x: tensor<2x8x16xf32>, %rk: tensor<16x4xf32>, %rb: tensor<4xf32>,
    %w1: tensor<4x16x32xf32>, %b1: tensor<4x32xf32>, %w2: tensor<4x16x32xf32>, %b2: tensor<4x16xf32>) {
  // expected-error @+1 {{w2 must have shape [4, 32, 16] but has [4, 16, 32]}}
  %m = mixer.moe %x, %rk, %rb, %w1, %b1, %w2, %b2 {routing = #mixer<routing experts_choose>, num_groups = 1, capacity = 4, k = 1} : (tensor<2x8x16xf32>, tensor<16x4xf32>, tensor<4xf32>, tensor<4x16x32xf32>, tensor<4x32xf32>, tensor<4x16x32xf32>, tensor<4x16xf32>) -> tensor<2x8x16xf32>
  return
}

// -----

func.func @sigma_moe_k(%x: tensor<2x8x16xf32>, %sel: tensor<4x16xf32>, %keys: tensor<4x16x8xf32>, %values: tensor<4x8x16xf32>) {
  // expected-error @+1 {{k = 5 exceeds the 4 experts}}
  %m = mixer.sigma_moe %x, %sel, %keys, %values {k = 5} : (tensor<2x8x16xf32>, tensor<4x16xf32>, tensor<4x16x8xf32>, tensor<4x8x16xf32>) -> tensor<2x8x16xf32>
  return
}

// -----

func.func @route_slots(%logits: tensor<16x4xf32>) {
  // expected-error @+1 {{tokens must have shape [16] but has [12]}}
  %t, %g, %o = mixer.route %logits {routing = #mixer<routing experts_choose>, num_groups = 2, capacity = 2, k = 1} : (tensor<16x4xf32>) -> (tensor<12xi32>, tensor<12xf32>, tensor<5xi32>)
  return
}

// -----

func.func @select_experts_sigmoid(%p: tensor<16x4xf32>) {
  // expected-error @+1 {{sigmoid_topk routes from logits: use mixer.route}}
  %t, %g, %o = mixer.select_experts %p {routing = #mixer<routing sigmoid_topk>, num_groups = 1, capacity = 0, k = 2} : (tensor<16x4xf32>) -> (tensor<32xi32>, tensor<32xf32>, tensor<5xi32>)
  return
}

// -----

func.func @combine_width(%yd: tensor<8x16xf32>, %t: tensor<8xi32>, %g: tensor<8xf32>) {
  // expected-error @+1 {{result width must equal the input width}}
  %y = mixer.combine %yd, %t, %g : (tensor<8x16xf32>, tensor<8xi32>, tensor<8xf32>) -> tensor<4x8xf32>
  return
}

// -----

func.func @dense_weight_grad_rows(%x: tensor<4x16xf32>, %dy: tensor<2x32xf32>) {
  // expected-error @+1 {{input and result_grad must have the same rows}}
  %dw = mixer.dense_weight_grad %x, %dy : (tensor<4x16xf32>, tensor<2x32xf32>) -> tensor<16x32xf32>
  return
}

// -----

func.func @dense_weight_grad_layout(%x: tensor<4x16xf32>, %dy: tensor<4x32xf32>) {
  // expected-error @+1 {{result must have shape [32, 16] but has [16, 32]}}
  %dw = mixer.dense_weight_grad %x, %dy {transpose_weight} : (tensor<4x16xf32>, tensor<4x32xf32>) -> tensor<16x32xf32>
  return
}

// -----

func.func @layer_norm_grad_scale(%x: tensor<4x16xf32>, %s: tensor<8xf32>) {
  // expected-error @+1 {{scale must have shape [16] but has [8]}}
  %dx, %ds, %db = mixer.layer_norm_grad %x, %s, %x {epsilon = 1.0e-12 : f64} : (tensor<4x16xf32>, tensor<8xf32>, tensor<4x16xf32>) -> (tensor<4x16xf32>, tensor<8xf32>, tensor<8xf32>)
  return
}

// -----

func.func @take_position_grad_range(%dp: tensor<2x16xf32>) {
  // expected-error @+1 {{position 8 is outside the sequence of length 8}}
  %tp = mixer.take_position_grad %dp[8] : tensor<2x16xf32> to tensor<2x8x16xf32>
  return
}

// -----

func.func @embed_grad_width(%ids: tensor<2x8xi32>, %dy: tensor<2x8x16xf32>) {
  // expected-error @+1 {{gradient tables must have width 16}}
  %w, %p, %t = mixer.embed_grad %ids, %ids, %dy : (tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8x16xf32>) -> (tensor<64x8xf32>, tensor<1x8x16xf32>, tensor<4x16xf32>)
  return
}

// -----

func.func @structured_mix_grad_kernel(%x: tensor<2x8x16xf32>, %vs: tensor<8xf32>, %vh: tensor<16xf32>) {
  // expected-error @+1 {{seq_kernel must have shape [15] but has [8]}}
  %dx, %dvs, %dvh = mixer.structured_mix_grad %x, %vs, %vh, %x {toeplitz} : (tensor<2x8x16xf32>, tensor<8xf32>, tensor<16xf32>, tensor<2x8x16xf32>) -> (tensor<2x8x16xf32>, tensor<8xf32>, tensor<16xf32>)
  return
}

// -----

func.func @scatter_gate_grad_columns(%t: tensor<32xi32>, %o: tensor<5xi32>, %dg: tensor<32xf32>) {
  // expected-error @+1 {{result must have one column per expert (4)}}
  %dp = mixer.scatter_gate_grad %t, %o, %dg : (tensor<32xi32>, tensor<5xi32>, tensor<32xf32>) -> tensor<16x3xf32>
  return
}

// -----

func.func @experts_grad_bias(%xd: tensor<32x16xf32>, %t: tensor<32xi32>, %o: tensor<5xi32>, %w1: tensor<4x16x8xf32>, %w2: tensor<4x8x16xf32>) {
  // expected-error @+1 {{b1_grad must have shape [4, 8] but has [4, 16]}}
  %a, %b, %c, %d, %e = mixer.experts_grad %xd, %t, %o, %w1, %w2, %xd {activation = #mixer<activation relu>} : (tensor<32x16xf32>, tensor<32xi32>, tensor<5xi32>, tensor<4x16x8xf32>, tensor<4x8x16xf32>, tensor<32x16xf32>) -> (tensor<32x16xf32>, tensor<4x16x8xf32>, tensor<4x16xf32>, tensor<4x8x16xf32>, tensor<4x16xf32>)
  return
}

// -----

func.func @gather_positions_rows(%h: tensor<2x8x4xf32>, %pos: tensor<3x2xi32>) {
  // expected-error @+1 {{positions must have one row per example}}
  %g = mixer.gather_positions %h, %pos : (tensor<2x8x4xf32>, tensor<3x2xi32>) -> tensor<6x4xf32>
  return
}

// -----

func.func @cross_entropy_labels(%logits: tensor<6x10xf32>, %labels: tensor<5xi32>) {
  // expected-error @+1 {{labels must have shape [6] but has [5]}}
  %ce = mixer.softmax_cross_entropy %logits, %labels : (tensor<6x10xf32>, tensor<5xi32>) -> tensor<f32>
  return
}

// -----

func.func @dropout_rate_one(%x: tensor<4xf32>, %k: tensor<i32>) {
  // expected-error @+1 {{rate must be in [0, 1), got 1}}
  %y = mixer.random_scale dropout %x, %k, %k {rate = 1.0 : f64, stream = 0} : tensor<4xf32>
  return
}

// -----

func.func @random_scale_negative_stream(%x: tensor<4xf32>, %k: tensor<i32>) {
  // expected-error @+1 {{attribute 'stream' failed to satisfy constraint}}
  %y = mixer.random_scale jitter %x, %k, %k {rate = 0.1 : f64, stream = -1} : tensor<4xf32>
  return
}

// -----

func.func @random_scale_key_not_scalar(%x: tensor<4xf32>, %k: tensor<2xi32>) {
  // expected-error @+1 {{operand #1 must be 0D tensor of 32-bit signless integer values}}
  %y = "mixer.random_scale"(%x, %k, %k) {kind = #mixer<noise dropout>, rate = 0.1 : f64, stream = 0} : (tensor<4xf32>, tensor<2xi32>, tensor<2xi32>) -> tensor<4xf32>
  return
}

// -----

func.func @global_norm_of_nothing() {
  // expected-error @+1 {{needs at least one operand}}
  %n = "mixer.global_norm"() : () -> tensor<f32>
  return
}

// -----

func.func @adamw_norm_without_clipping(%w: tensor<4xf32>, %lr: tensor<f32>, %s: tensor<i32>, %n: tensor<f32>) {
  // expected-error @+1 {{takes a norm operand exactly when max_norm > 0}}
  %a, %b, %c = mixer.adamw %w, %w, %w, %w, %lr, %s norm %n {b1 = 0.9 : f64, b2 = 0.999 : f64, eps = 1.0e-6 : f64, weight_decay = 0.01 : f64, max_norm = 0.0 : f64} : tensor<4xf32>
  return
}

// -----

func.func @adamw_clipping_without_norm(%w: tensor<4xf32>, %lr: tensor<f32>, %s: tensor<i32>) {
  // expected-error @+1 {{takes a norm operand exactly when max_norm > 0}}
  %a, %b, %c = mixer.adamw %w, %w, %w, %w, %lr, %s {b1 = 0.9 : f64, b2 = 0.999 : f64, eps = 1.0e-6 : f64, weight_decay = 0.01 : f64, max_norm = 1.0 : f64} : tensor<4xf32>
  return
}

// -----

func.func @adamw_micro_steps_without_micro_step(%w: tensor<4xf32>, %lr: tensor<f32>, %s: tensor<i32>) {
  // expected-error @+1 {{takes a micro_step operand exactly when micro_steps > 1}}
  %a, %b, %c = mixer.adamw %w, %w, %w, %w, %lr, %s {b1 = 0.9 : f64, b2 = 0.999 : f64, eps = 1.0e-6 : f64, weight_decay = 0.01 : f64, max_norm = 0.0 : f64, micro_steps = 2 : i64} : tensor<4xf32>
  return
}

// -----

func.func @accumulate_one_micro_step(%g: tensor<4xf32>, %s: tensor<i32>) {
  // expected-error @+1 {{attribute 'micro_steps' failed to satisfy constraint}}
  %a, %b = mixer.accumulate_gradient %g, %g, %s {micro_steps = 1 : i64} : tensor<4xf32>
  return
}

// -----

func.func @attention_dropout_without_key(%q: tensor<2x8x16xf32>, %ids: tensor<2x8xi32>) {
  // expected-error @+1 {{takes the noise operands seed and step exactly when it has a dropout_rate}}
  %a = mixer.attention %q, %q, %q, %ids {num_heads = 2, head_dim = 8, pad_id = 0, dropout_rate = 0.1 : f64, dropout_stream = 0} : (tensor<2x8x16xf32>, tensor<2x8x16xf32>, tensor<2x8x16xf32>, tensor<2x8xi32>) -> tensor<2x8x16xf32>
  return
}

// -----

func.func @attention_dropout_rate_one(%q: tensor<2x8x16xf32>, %ids: tensor<2x8xi32>, %k: tensor<i32>) {
  // expected-error @+1 {{dropout_rate must be in [0, 1), got 1}}
  %a = mixer.attention %q, %q, %q, %ids noise %k, %k {num_heads = 2, head_dim = 8, pad_id = 0, dropout_rate = 1.0 : f64, dropout_stream = 0} : (tensor<2x8x16xf32>, tensor<2x8x16xf32>, tensor<2x8x16xf32>, tensor<2x8xi32>, tensor<i32>, tensor<i32>) -> tensor<2x8x16xf32>
  return
}

// -----

func.func @adamw_b2_one(%w: tensor<4xf32>, %lr: tensor<f32>, %s: tensor<i32>) {
  // expected-error @+1 {{b1 and b2 must be in [0, 1)}}
  %a, %b, %c = mixer.adamw %w, %w, %w, %w, %lr, %s {b1 = 0.9 : f64, b2 = 1.0 : f64, eps = 1.0e-6 : f64, weight_decay = 0.01 : f64, max_norm = 0.0 : f64} : tensor<4xf32>
  return
}

// -----

func.func @adamw_eps_zero(%w: tensor<4xf32>, %lr: tensor<f32>, %s: tensor<i32>) {
  // expected-error @+1 {{eps must be positive}}
  %a, %b, %c = mixer.adamw %w, %w, %w, %w, %lr, %s {b1 = 0.9 : f64, b2 = 0.999 : f64, eps = 0.0 : f64, weight_decay = 0.01 : f64, max_norm = 0.0 : f64} : tensor<4xf32>
  return
}

// -----

func.func @adamw_negative_decay(%w: tensor<4xf32>, %lr: tensor<f32>, %s: tensor<i32>) {
  // expected-error @+1 {{weight_decay must not be negative}}
  %a, %b, %c = mixer.adamw %w, %w, %w, %w, %lr, %s {b1 = 0.9 : f64, b2 = 0.999 : f64, eps = 1.0e-6 : f64, weight_decay = -0.01 : f64, max_norm = 0.0 : f64} : tensor<4xf32>
  return
}

// -----

func.func @adamw_moment_shape(%w: tensor<4xf32>, %m: tensor<2x2xf32>, %lr: tensor<f32>, %s: tensor<i32>) {
  // expected-error @+1 {{failed to verify that all of {param, adam_m, adam_v, grad, new_param, new_adam_m, new_adam_v} have same type}}
  %a, %b, %c = "mixer.adamw"(%w, %m, %w, %w, %lr, %s) {b1 = 0.9 : f64, b2 = 0.999 : f64, eps = 1.0e-6 : f64, weight_decay = 0.01 : f64, max_norm = 0.0 : f64, operandSegmentSizes = array<i32: 1, 1, 1, 1, 1, 1, 0, 0>} : (tensor<4xf32>, tensor<2x2xf32>, tensor<4xf32>, tensor<4xf32>, tensor<f32>, tensor<i32>) -> (tensor<4xf32>, tensor<4xf32>, tensor<4xf32>)
  return
}

// -----

func.func @moe_noise_without_key(%x: tensor<2x8x16xf32>, %rk: tensor<16x4xf32>, %rb: tensor<4xf32>, %w1: tensor<4x16x32xf32>, %b1: tensor<4x32xf32>, %w2: tensor<4x32x16xf32>, %b2: tensor<4x16xf32>) {
  // expected-error @+1 {{takes the noise operands seed and step exactly when it has jitter_noise or expert_dropout_rate}}
  %y = mixer.moe %x, %rk, %rb, %w1, %b1, %w2, %b2 {routing = #mixer<routing experts_choose>, num_groups = 1, capacity = 4, k = 1, expert_dropout_rate = 0.1 : f64, expert_dropout_stream = 0} : (tensor<2x8x16xf32>, tensor<16x4xf32>, tensor<4xf32>, tensor<4x16x32xf32>, tensor<4x32xf32>, tensor<4x32x16xf32>, tensor<4x16xf32>) -> tensor<2x8x16xf32>
  return
}

// -----

func.func @moe_rate_without_stream(%x: tensor<2x8x16xf32>, %rk: tensor<16x4xf32>, %rb: tensor<4xf32>, %w1: tensor<4x16x32xf32>, %b1: tensor<4x32xf32>, %w2: tensor<4x32x16xf32>, %b2: tensor<4x16xf32>, %k: tensor<i32>) {
  // expected-error @+1 {{a noise rate and its stream go together}}
  %y = mixer.moe %x, %rk, %rb, %w1, %b1, %w2, %b2 noise %k, %k {routing = #mixer<routing experts_choose>, num_groups = 1, capacity = 4, k = 1, jitter_noise = 0.1 : f64} : (tensor<2x8x16xf32>, tensor<16x4xf32>, tensor<4xf32>, tensor<4x16x32xf32>, tensor<4x32xf32>, tensor<4x32x16xf32>, tensor<4x16xf32>, tensor<i32>, tensor<i32>) -> tensor<2x8x16xf32>
  return
}

// -----

func.func @moe_shared_stream(%x: tensor<2x8x16xf32>, %rk: tensor<16x4xf32>, %rb: tensor<4xf32>, %w1: tensor<4x16x32xf32>, %b1: tensor<4x32xf32>, %w2: tensor<4x32x16xf32>, %b2: tensor<4x16xf32>, %k: tensor<i32>) {
  // expected-error @+1 {{jitter and expert dropout need different streams}}
  %y = mixer.moe %x, %rk, %rb, %w1, %b1, %w2, %b2 noise %k, %k {routing = #mixer<routing experts_choose>, num_groups = 1, capacity = 4, k = 1, jitter_noise = 0.1 : f64, jitter_stream = 2, expert_dropout_rate = 0.1 : f64, expert_dropout_stream = 2} : (tensor<2x8x16xf32>, tensor<16x4xf32>, tensor<4xf32>, tensor<4x16x32xf32>, tensor<4x32xf32>, tensor<4x32x16xf32>, tensor<4x16xf32>, tensor<i32>, tensor<i32>) -> tensor<2x8x16xf32>
  return
}

// -----

func.func @moe_jitter_too_large(%x: tensor<2x8x16xf32>, %rk: tensor<16x4xf32>, %rb: tensor<4xf32>, %w1: tensor<4x16x32xf32>, %b1: tensor<4x32xf32>, %w2: tensor<4x32x16xf32>, %b2: tensor<4x16xf32>, %k: tensor<i32>) {
  // expected-error @+1 {{jitter_noise must be in [0, 1), got 1.5}}
  %y = mixer.moe %x, %rk, %rb, %w1, %b1, %w2, %b2 noise %k, %k {routing = #mixer<routing experts_choose>, num_groups = 1, capacity = 4, k = 1, jitter_noise = 1.5 : f64, jitter_stream = 2} : (tensor<2x8x16xf32>, tensor<16x4xf32>, tensor<4xf32>, tensor<4x16x32xf32>, tensor<4x32xf32>, tensor<4x32x16xf32>, tensor<4x16xf32>, tensor<i32>, tensor<i32>) -> tensor<2x8x16xf32>
  return
}

// -----

func.func @argmax_shape(%logits: tensor<6x10xf32>) {
  // expected-error @+1 {{result must have shape [6] but has [10]}}
  %p = mixer.argmax %logits : tensor<6x10xf32> to tensor<10xi32>
  return
}

// -----

func.func @moe_losses_count(%x: tensor<2x8x16xf32>, %rk: tensor<16x4xf32>, %rb: tensor<4xf32>, %w1: tensor<4x16x32xf32>, %b1: tensor<4x32xf32>, %w2: tensor<4x32x16xf32>, %b2: tensor<4x16xf32>) {
  // expected-error @+1 {{returns no router losses or exactly 1 for experts_choose routing, not 2}}
  %y, %z, %a = mixer.moe %x, %rk, %rb, %w1, %b1, %w2, %b2 {routing = #mixer<routing experts_choose>, num_groups = 1, capacity = 4, k = 1} : (tensor<2x8x16xf32>, tensor<16x4xf32>, tensor<4xf32>, tensor<4x16x32xf32>, tensor<4x32xf32>, tensor<4x32x16xf32>, tensor<4x16xf32>) -> (tensor<2x8x16xf32>, tensor<f32>, tensor<f32>)
  return
}

// -----

func.func @sigma_moe_dropout_without_key(%x: tensor<2x8x16xf32>, %sel: tensor<4x16xf32>, %keys: tensor<4x16x8xf32>, %values: tensor<4x8x16xf32>) {
  // expected-error @+1 {{takes the noise operands seed and step exactly when it has expert_dropout_rate}}
  %m = mixer.sigma_moe %x, %sel, %keys, %values {k = 2, expert_dropout_rate = 0.05 : f64, expert_dropout_stream = 0} : (tensor<2x8x16xf32>, tensor<4x16xf32>, tensor<4x16x8xf32>, tensor<4x8x16xf32>) -> tensor<2x8x16xf32>
  return
}

// -----

func.func @sigma_moe_losses_count(%x: tensor<2x8x16xf32>, %sel: tensor<4x16xf32>, %keys: tensor<4x16x8xf32>, %values: tensor<4x8x16xf32>) {
  // expected-error @+1 {{returns at most one loss (the entropy regulariser), not 2}}
  %m, %a, %b = mixer.sigma_moe %x, %sel, %keys, %values {k = 2} : (tensor<2x8x16xf32>, tensor<4x16xf32>, tensor<4x16x8xf32>, tensor<4x8x16xf32>) -> (tensor<2x8x16xf32>, tensor<f32>, tensor<f32>)
  return
}

// -----

func.func @load_balancing_groups(%p: tensor<10x4xf32>) {
  // expected-error @+1 {{num_groups = 3 does not divide the 10 tokens}}
  %a = mixer.load_balancing_loss %p {num_groups = 3, k = 1} : tensor<10x4xf32>
  return
}

// -----

func.func @load_balancing_k(%p: tensor<10x4xf32>) {
  // expected-error @+1 {{k = 5 exceeds the 4 experts}}
  %a = mixer.load_balancing_loss %p {num_groups = 2, k = 5} : tensor<10x4xf32>
  return
}

// -----

func.func @router_z_loss_rank(%l: tensor<2x5x4xf32>) {
  // expected-error @+1 {{router scores must have rank 2}}
  %z = mixer.router_z_loss %l : tensor<2x5x4xf32>
  return
}

// -----

func.func @router_logits_bf16_bias(%d: tensor<10x4xf32>, %b: tensor<5xf32>) {
  // expected-error @+1 {{bias must have shape [4]}}
  %l = mixer.router_logits_bf16 %d, %b : (tensor<10x4xf32>, tensor<5xf32>) -> tensor<10x4xf32>
  return
}

// -----

func.func @drop_experts_rate(%l: tensor<10x4xf32>, %k: tensor<i32>) {
  // expected-error @+1 {{rate must be in [0, 1), got 1}}
  %d = mixer.drop_experts %l, %k, %k {rate = 1.0 : f64, stream = 0} : tensor<10x4xf32>
  return
}
