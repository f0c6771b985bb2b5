// RUN: mixer-opt %s | mixer-opt | FileCheck %s
// RUN: mixer-opt %s --mlir-print-op-generic | mixer-opt | FileCheck %s

// CHECK-LABEL: func.func @embedding_and_dense
func.func @embedding_and_dense(%ids: tensor<2x8xi32>, %types: tensor<2x8xi32>,
    %word: tensor<64x16xf32>, %pos: tensor<1x8x16xf32>, %type: tensor<4x16xf32>,
    %w: tensor<16x32xf32>, %b: tensor<32xf32>, %s: tensor<32xf32>) -> tensor<2x8x32xf32> {
  // CHECK: mixer.embed %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} :
  %e = mixer.embed %ids, %types, %word, %pos, %type : (tensor<2x8xi32>, tensor<2x8xi32>, tensor<64x16xf32>, tensor<1x8x16xf32>, tensor<4x16xf32>) -> tensor<2x8x16xf32>
  // CHECK: mixer.dense {{.*}} {activation = #mixer<activation gelu>}
  %d = mixer.dense %e, %w, %b {activation = #mixer<activation gelu>} : (tensor<2x8x16xf32>, tensor<16x32xf32>, tensor<32xf32>) -> tensor<2x8x32xf32>
  // CHECK: mixer.dense {{.*}} {transpose_weight}
  %t = mixer.dense %d, %w {transpose_weight} : (tensor<2x8x32xf32>, tensor<16x32xf32>) -> tensor<2x8x16xf32>
  // CHECK: mixer.layer_norm {{.*}} {epsilon = 9.9999999999999998E-13 : f64}
  %n = mixer.layer_norm %d, %s, %b {epsilon = 1.0e-12 : f64} : (tensor<2x8x32xf32>, tensor<32xf32>, tensor<32xf32>) -> tensor<2x8x32xf32>
  // CHECK: mixer.add_layer_norm
  %r = mixer.add_layer_norm %n, %d, %s, %b {epsilon = 1.0e-12 : f64} : (tensor<2x8x32xf32>, tensor<2x8x32xf32>, tensor<32xf32>, tensor<32xf32>) -> tensor<2x8x32xf32>
  // CHECK: mixer.activation tanh
  %a = mixer.activation tanh %r : tensor<2x8x32xf32>
  // CHECK: mixer.add
  %sum = mixer.add %a, %r : tensor<2x8x32xf32>
  // CHECK: mixer.softmax
  %sm = mixer.softmax %sum : tensor<2x8x32xf32>
  // CHECK: mixer.round_bf16
  %rb = mixer.round_bf16 %sm : tensor<2x8x32xf32>
  // CHECK: mixer.take_position {{.*}}[0]
  %p = mixer.take_position %rb[0] : tensor<2x8x32xf32> to tensor<2x32xf32>
  // CHECK: mixer.reshape
  %f = mixer.reshape %rb : tensor<2x8x32xf32> to tensor<16x32xf32>
  // CHECK: mixer.activation gelu_erf
  %ge = mixer.activation gelu_erf %rb : tensor<2x8x32xf32>
  // CHECK: mixer.pool mean {{.*}} {normalize, pad_id = 0 : i64}
  %pm = mixer.pool mean %ge, %ids {normalize, pad_id = 0 : i64} : (tensor<2x8x32xf32>, tensor<2x8xi32>) -> tensor<2x32xf32>
  // CHECK: mixer.pool cls {{.*}} {pad_id = 3 : i64}
  %pc = mixer.pool cls %ge, %ids {pad_id = 3 : i64} : (tensor<2x8x32xf32>, tensor<2x8xi32>) -> tensor<2x32xf32>
  return %rb : tensor<2x8x32xf32>
}

// CHECK-LABEL: func.func @mixing
func.func @mixing(%x: tensor<2x8x16xf32>, %ws: tensor<8x8xf32>, %wh: tensor<16x16xf32>,
    %vs: tensor<8xf32>, %vh: tensor<16xf32>, %ts: tensor<15xf32>, %th: tensor<31xf32>,
    %ids: tensor<2x8xi32>) -> tensor<2x8x16xf32> {
  // CHECK: mixer.linear_mix
  %l = mixer.linear_mix %x, %ws, %wh : (tensor<2x8x16xf32>, tensor<8x8xf32>, tensor<16x16xf32>) -> tensor<2x8x16xf32>
  // CHECK: mixer.spectral_mix {{.*}} {algorithm = #mixer<algorithm fft>, hartley}
  %h = mixer.spectral_mix %l {hartley, algorithm = #mixer<algorithm fft>} : (tensor<2x8x16xf32>) -> tensor<2x8x16xf32>
  // CHECK: mixer.structured_mix
  %c = mixer.structured_mix %h, %vs, %vh : (tensor<2x8x16xf32>, tensor<8xf32>, tensor<16xf32>) -> tensor<2x8x16xf32>
  // CHECK: mixer.structured_mix {{.*}} {toeplitz}
  %t = mixer.structured_mix %c, %ts, %th {toeplitz} : (tensor<2x8x16xf32>, tensor<15xf32>, tensor<31xf32>) -> tensor<2x8x16xf32>
  // CHECK: mixer.attention {{.*}} {causal, head_dim = 8 : i64, num_heads = 2 : i64, pad_id = 0 : i64}
  %a = mixer.attention %t, %t, %t, %ids {num_heads = 2, head_dim = 8, pad_id = 0, causal} : (tensor<2x8x16xf32>, tensor<2x8x16xf32>, tensor<2x8x16xf32>, tensor<2x8xi32>) -> tensor<2x8x16xf32>
  return %a : tensor<2x8x16xf32>
}

// CHECK-LABEL: func.func @moe
func.func @moe(%x: tensor<2x8x16xf32>, %rk: tensor<16x4xf32>, %rb: tensor<4xf32>,
    %w1: tensor<4x16x32xf32>, %b1: tensor<4x32xf32>, %w2: tensor<4x32x16xf32>, %b2: tensor<4x16xf32>,
    %sel: tensor<4x16xf32>) -> tensor<2x8x16xf32> {
  // CHECK: mixer.moe {{.*}}routing = #mixer<routing experts_choose>
  %m = mixer.moe %x, %rk, %rb, %w1, %b1, %w2, %b2 {routing = #mixer<routing experts_choose>, num_groups = 1, capacity = 4, k = 1} : (tensor<2x8x16xf32>, tensor<16x4xf32>, tensor<4xf32>, tensor<4x16x32xf32>, tensor<4x32xf32>, tensor<4x32x16xf32>, tensor<4x16xf32>) -> tensor<2x8x16xf32>
  // CHECK: mixer.sigma_moe
  %s = mixer.sigma_moe %m, %sel, %w1, %w2 {k = 2} : (tensor<2x8x16xf32>, tensor<4x16xf32>, tensor<4x16x32xf32>, tensor<4x32x16xf32>) -> tensor<2x8x16xf32>
  %flat = mixer.reshape %s : tensor<2x8x16xf32> to tensor<16x16xf32>
  %logits = mixer.dense %flat, %rk : (tensor<16x16xf32>, tensor<16x4xf32>) -> tensor<16x4xf32>
  // CHECK: mixer.select_experts {{.*}}routing = #mixer<routing tokens_choose>
  %t0, %g0, %o0 = mixer.select_experts %logits {routing = #mixer<routing tokens_choose>, num_groups = 2, capacity = 3, k = 2, batch_prioritized} : (tensor<16x4xf32>) -> (tensor<24xi32>, tensor<24xf32>, tensor<5xi32>)
  // CHECK: mixer.route {{.*}}routing = #mixer<routing sigmoid_topk>
  %t, %g, %o = mixer.route %logits {routing = #mixer<routing sigmoid_topk>, num_groups = 1, capacity = 0, k = 2} : (tensor<16x4xf32>) -> (tensor<32xi32>, tensor<32xf32>, tensor<5xi32>)
  // CHECK: mixer.dispatch
  %xd = mixer.dispatch %flat, %t : (tensor<16x16xf32>, tensor<32xi32>) -> tensor<32x16xf32>
  // CHECK: mixer.experts {{.*}} bias {{.*}} bias
  %yd = mixer.experts %xd, %t, %o, %w1 bias %b1, %w2 bias %b2 {activation = #mixer<activation gelu>} : (tensor<32x16xf32>, tensor<32xi32>, tensor<5xi32>, tensor<4x16x32xf32>, tensor<4x32xf32>, tensor<4x32x16xf32>, tensor<4x16xf32>) -> tensor<32x16xf32>
  // CHECK: mixer.combine
  %y = mixer.combine %yd, %t, %g : (tensor<32x16xf32>, tensor<32xi32>, tensor<32xf32>) -> tensor<16x16xf32>
  return %s : tensor<2x8x16xf32>
}

// CHECK-LABEL: func.func @gradients
func.func @gradients(%x: tensor<2x8x16xf32>, %dy: tensor<2x8x32xf32>, %s: tensor<16xf32>,
    %ws: tensor<8x8xf32>, %wh: tensor<16x16xf32>, %dp: tensor<2x16xf32>,
    %ts: tensor<15xf32>, %th: tensor<31xf32>, %ids: tensor<2x8xi32>) -> tensor<f32> {
  // CHECK: mixer.fill 1.000000e+00 : tensor<f32>
  %one = mixer.fill 1.0 : tensor<f32>
  // CHECK: mixer.broadcast {{.*}} : tensor<f32> to tensor<2x8x16xf32>
  %b = mixer.broadcast %one : tensor<f32> to tensor<2x8x16xf32>
  // CHECK: mixer.reduce_sum {{.*}} : tensor<2x8x16xf32> to tensor<f32>
  %r = mixer.reduce_sum %b : tensor<2x8x16xf32> to tensor<f32>
  // CHECK: mixer.activation_grad gelu
  %a = mixer.activation_grad gelu %x, %b : tensor<2x8x16xf32>
  // CHECK: mixer.dense_weight_grad {{.*}} -> tensor<16x32xf32>
  %dw = mixer.dense_weight_grad %x, %dy : (tensor<2x8x16xf32>, tensor<2x8x32xf32>) -> tensor<16x32xf32>
  // CHECK: mixer.reduce_rows {{.*}} -> tensor<32xf32>
  %db = mixer.reduce_rows %dy : (tensor<2x8x32xf32>) -> tensor<32xf32>
  // CHECK: mixer.layer_norm_grad
  %dx, %ds, %dbias = mixer.layer_norm_grad %x, %s, %b {epsilon = 1.0e-12 : f64} : (tensor<2x8x16xf32>, tensor<16xf32>, tensor<2x8x16xf32>) -> (tensor<2x8x16xf32>, tensor<16xf32>, tensor<16xf32>)
  // CHECK: mixer.softmax_grad
  %sg = mixer.softmax_grad %x, %b : tensor<2x8x16xf32>
  // CHECK: mixer.take_position_grad {{.*}}[0] : tensor<2x16xf32> to tensor<2x8x16xf32>
  %tp = mixer.take_position_grad %dp[0] : tensor<2x16xf32> to tensor<2x8x16xf32>
  // CHECK: mixer.linear_mix_grad
  %lx, %lws, %lwh = mixer.linear_mix_grad %x, %ws, %wh, %b : (tensor<2x8x16xf32>, tensor<8x8xf32>, tensor<16x16xf32>, tensor<2x8x16xf32>) -> (tensor<2x8x16xf32>, tensor<8x8xf32>, tensor<16x16xf32>)
  // CHECK: mixer.structured_mix_grad {{.*}} {toeplitz}
  %tx, %tts, %tth = mixer.structured_mix_grad %x, %ts, %th, %b {toeplitz} : (tensor<2x8x16xf32>, tensor<15xf32>, tensor<31xf32>, tensor<2x8x16xf32>) -> (tensor<2x8x16xf32>, tensor<15xf32>, tensor<31xf32>)
  // CHECK: mixer.attention_grad
  %dq, %dk, %dv = mixer.attention_grad %x, %x, %x, %ids, %b {num_heads = 2, head_dim = 8, pad_id = 0, causal} : (tensor<2x8x16xf32>, tensor<2x8x16xf32>, tensor<2x8x16xf32>, tensor<2x8xi32>, tensor<2x8x16xf32>) -> (tensor<2x8x16xf32>, tensor<2x8x16xf32>, tensor<2x8x16xf32>)
  // CHECK: mixer.embed_grad
  %dword, %dpos, %dtype = mixer.embed_grad %ids, %ids, %b : (tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8x16xf32>) -> (tensor<64x16xf32>, tensor<1x8x16xf32>, tensor<4x16xf32>)
  return %r : tensor<f32>
}

// CHECK-LABEL: func.func @moe_gradients
func.func @moe_gradients(%xd: tensor<32x16xf32>, %t: tensor<32xi32>, %o: tensor<5xi32>, %g: tensor<32xf32>,
    %dout: tensor<16x16xf32>, %w1: tensor<4x16x8xf32>, %b1: tensor<4x8xf32>, %w2: tensor<4x8x16xf32>,
    %logits: tensor<16x4xf32>) -> tensor<16x4xf32> {
  // CHECK: mixer.dispatch_grad
  %dx = mixer.dispatch_grad %xd, %t : (tensor<32x16xf32>, tensor<32xi32>) -> tensor<16x16xf32>
  // CHECK: mixer.combine_grad
  %dyd, %dg = mixer.combine_grad %xd, %t, %g, %dout : (tensor<32x16xf32>, tensor<32xi32>, tensor<32xf32>, tensor<16x16xf32>) -> (tensor<32x16xf32>, tensor<32xf32>)
  // CHECK: mixer.experts_grad {{.*}} bias
  %a, %b, %c, %d, %e = mixer.experts_grad %xd, %t, %o, %w1 bias %b1, %w2, %dyd {activation = #mixer<activation gelu>} : (tensor<32x16xf32>, tensor<32xi32>, tensor<5xi32>, tensor<4x16x8xf32>, tensor<4x8xf32>, tensor<4x8x16xf32>, tensor<32x16xf32>) -> (tensor<32x16xf32>, tensor<4x16x8xf32>, tensor<4x8xf32>, tensor<4x8x16xf32>, tensor<4x16xf32>)
  // CHECK: mixer.scatter_gate_grad
  %dp = mixer.scatter_gate_grad %t, %o, %dg : (tensor<32xi32>, tensor<5xi32>, tensor<32xf32>) -> tensor<16x4xf32>
  // CHECK: mixer.route_grad {{.*}} {routing = #mixer<routing sigmoid_topk>}
  %dl = mixer.route_grad %logits, %t, %o, %dg {routing = #mixer<routing sigmoid_topk>} : (tensor<16x4xf32>, tensor<32xi32>, tensor<5xi32>, tensor<32xf32>) -> tensor<16x4xf32>
  return %dl : tensor<16x4xf32>
}

// The training step's noise and optimizer update; the MoE layer's noise
// operands and attributes.
// CHECK-LABEL: func.func @training_step
func.func @training_step(%x: tensor<2x8x16xf32>, %seed: tensor<i32>, %step: tensor<i32>,
    %w: tensor<16x4xf32>, %m: tensor<16x4xf32>, %v: tensor<16x4xf32>, %g: tensor<16x4xf32>,
    %b: tensor<4xf32>, %lr: tensor<f32>, %w1: tensor<4x16x32xf32>, %b1: tensor<4x32xf32>,
    %w2: tensor<4x32x16xf32>, %b2: tensor<4x16xf32>)
    -> (tensor<2x8x16xf32>, tensor<2x8x16xf32>, tensor<16x4xf32>, tensor<16x4xf32>, tensor<16x4xf32>, tensor<2x8x16xf32>) {
  // CHECK: mixer.random_scale dropout %{{.*}}, %{{.*}}, %{{.*}} {rate = 1.000000e-01 : f64, stream = 3 : i64} : tensor<2x8x16xf32>
  %d = mixer.random_scale dropout %x, %seed, %step {rate = 0.1 : f64, stream = 3} : tensor<2x8x16xf32>
  // CHECK: mixer.random_scale jitter
  %j = mixer.random_scale jitter %x, %seed, %step {rate = 0.01 : f64, stream = 4} : tensor<2x8x16xf32>
  // CHECK: %[[N:.*]] = mixer.global_norm %{{.*}}, %{{.*}} : tensor<16x4xf32>, tensor<4xf32>
  %n = mixer.global_norm %g, %b : tensor<16x4xf32>, tensor<4xf32>
  // CHECK: mixer.adamw %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} norm %[[N]] {b1 = 9.000000e-01 : f64, b2 = 0.99899999999999999 : f64, eps = 9.9999999999999995E-7 : f64, max_norm = 1.000000e+00 : f64, weight_decay = 0.000000e+00 : f64} : tensor<16x4xf32>
  %w_, %m_, %v_ = mixer.adamw %w, %m, %v, %g, %lr, %step norm %n {b1 = 0.9 : f64, b2 = 0.999 : f64, eps = 1.0e-6 : f64, weight_decay = 0.0 : f64, max_norm = 1.0 : f64} : tensor<16x4xf32>
  // CHECK: mixer.moe {{.*}} noise %{{.*}}, %{{.*}} {{{.*}}expert_dropout_rate = 1.000000e-01 : f64, expert_dropout_stream = 6 : i64, jitter_noise = 2.000000e-02 : f64, jitter_stream = 5 : i64
  %y = mixer.moe %x, %w, %b, %w1, %b1, %w2, %b2 noise %seed, %step {routing = #mixer<routing experts_choose>, num_groups = 1, capacity = 4, k = 1, jitter_noise = 0.02 : f64, jitter_stream = 5, expert_dropout_rate = 0.1 : f64, expert_dropout_stream = 6} : (tensor<2x8x16xf32>, tensor<16x4xf32>, tensor<4xf32>, tensor<4x16x32xf32>, tensor<4x32xf32>, tensor<4x32x16xf32>, tensor<4x16xf32>, tensor<i32>, tensor<i32>) -> tensor<2x8x16xf32>
  return %d, %j, %w_, %m_, %v_, %y : tensor<2x8x16xf32>, tensor<2x8x16xf32>, tensor<16x4xf32>, tensor<16x4xf32>, tensor<16x4xf32>, tensor<2x8x16xf32>
}

// Gradient accumulation: the micro-step's noise counter keys the attention
// dropout; the average feeds an update that only the last micro-step applies.
// CHECK-LABEL: func.func @accumulating_step
func.func @accumulating_step(%x: tensor<2x8x16xf32>, %ids: tensor<2x8xi32>, %seed: tensor<i32>,
    %step: tensor<i32>, %micro: tensor<i32>, %w: tensor<16x4xf32>, %acc: tensor<16x4xf32>,
    %g: tensor<16x4xf32>, %lr: tensor<f32>)
    -> (tensor<2x8x16xf32>, tensor<2x8x16xf32>, tensor<16x4xf32>, tensor<16x4xf32>, tensor<16x4xf32>) {
  // CHECK: %[[C:.*]] = mixer.noise_counter %{{.*}}, %{{.*}} {micro_steps = 2 : i64}
  %c = mixer.noise_counter %step, %micro {micro_steps = 2 : i64}
  // CHECK: mixer.attention {{.*}} noise %{{.*}}, %[[C]] {dropout_rate = 1.000000e-01 : f64, dropout_stream = 1 : i64, head_dim = 8 : i64, num_heads = 2 : i64, pad_id = 0 : i64}
  %a = mixer.attention %x, %x, %x, %ids noise %seed, %c {num_heads = 2, head_dim = 8, pad_id = 0, dropout_rate = 0.1 : f64, dropout_stream = 1} : (tensor<2x8x16xf32>, tensor<2x8x16xf32>, tensor<2x8x16xf32>, tensor<2x8xi32>, tensor<i32>, tensor<i32>) -> tensor<2x8x16xf32>
  // CHECK: mixer.attention_grad {{.*}} noise %{{.*}}, %[[C]] {dropout_rate = 1.000000e-01 : f64, dropout_stream = 1 : i64
  %dq, %dk, %dv = mixer.attention_grad %x, %x, %x, %ids, %a noise %seed, %c {num_heads = 2, head_dim = 8, pad_id = 0, dropout_rate = 0.1 : f64, dropout_stream = 1} : (tensor<2x8x16xf32>, tensor<2x8x16xf32>, tensor<2x8x16xf32>, tensor<2x8xi32>, tensor<2x8x16xf32>, tensor<i32>, tensor<i32>) -> (tensor<2x8x16xf32>, tensor<2x8x16xf32>, tensor<2x8x16xf32>)
  // CHECK: %[[ACC:.*]], %[[AVG:.*]] = mixer.accumulate_gradient %{{.*}}, %{{.*}}, %{{.*}} {micro_steps = 2 : i64} : tensor<16x4xf32>
  %acc1, %avg = mixer.accumulate_gradient %acc, %g, %micro {micro_steps = 2 : i64} : tensor<16x4xf32>
  // CHECK: mixer.adamw %{{.*}}, %{{.*}}, %{{.*}}, %[[AVG]], %{{.*}}, %{{.*}} micro_step %{{.*}} {{{.*}}micro_steps = 2 : i64
  %w_, %m_, %v_ = mixer.adamw %w, %w, %w, %avg, %lr, %step micro_step %micro {b1 = 0.9 : f64, b2 = 0.999 : f64, eps = 1.0e-6 : f64, weight_decay = 0.0 : f64, max_norm = 0.0 : f64, micro_steps = 2 : i64} : tensor<16x4xf32>
  return %a, %dq, %w_, %acc1, %avg : tensor<2x8x16xf32>, tensor<2x8x16xf32>, tensor<16x4xf32>, tensor<16x4xf32>, tensor<16x4xf32>
}

// The predicted class of each row, for evaluation metrics.
// CHECK-LABEL: func.func @argmax
func.func @argmax(%logits: tensor<6x10xf32>) -> tensor<6xi32> {
  // CHECK: mixer.argmax %{{.*}} : tensor<6x10xf32> to tensor<6xi32>
  %p = mixer.argmax %logits : tensor<6x10xf32> to tensor<6xi32>
  return %p : tensor<6xi32>
}

// Router losses of training steps, their gradients and sigma-MoE expert
// dropout.
// CHECK-LABEL: func.func @router_losses
func.func @router_losses(%l: tensor<10x4xf32>, %g: tensor<f32>, %k: tensor<i32>) -> (tensor<f32>, tensor<f32>, tensor<f32>, tensor<10x4xf32>, tensor<10x4xf32>, tensor<10x4xf32>, tensor<10x4xf32>) {
  // CHECK: mixer.router_z_loss %{{.*}} : tensor<10x4xf32>
  %z = mixer.router_z_loss %l : tensor<10x4xf32>
  // CHECK: mixer.load_balancing_loss %{{.*}} {k = 2 : i64, num_groups = 2 : i64} : tensor<10x4xf32>
  %a = mixer.load_balancing_loss %l {num_groups = 2, k = 2} : tensor<10x4xf32>
  // CHECK: mixer.entropy_regularizer %{{.*}} : tensor<10x4xf32>
  %h = mixer.entropy_regularizer %l : tensor<10x4xf32>
  // CHECK: mixer.router_z_loss_grad %{{.*}}, %{{.*}} : tensor<10x4xf32>
  %dz = mixer.router_z_loss_grad %l, %g : tensor<10x4xf32>
  // CHECK: mixer.load_balancing_loss_grad %{{.*}}, %{{.*}} {k = 2 : i64, num_groups = 2 : i64} : tensor<10x4xf32>
  %da = mixer.load_balancing_loss_grad %l, %g {num_groups = 2, k = 2} : tensor<10x4xf32>
  // CHECK: mixer.entropy_regularizer_grad %{{.*}}, %{{.*}} : tensor<10x4xf32>
  %dh = mixer.entropy_regularizer_grad %l, %g : tensor<10x4xf32>
  // CHECK: mixer.drop_experts %{{.*}}, %{{.*}}, %{{.*}} {gradient, rate = 5.000000e-02 : f64, stream = 1 : i64} : tensor<10x4xf32>
  %d = mixer.drop_experts %l, %k, %k {rate = 0.05 : f64, stream = 1, gradient} : tensor<10x4xf32>
  return %z, %a, %h, %dz, %da, %dh, %d : tensor<f32>, tensor<f32>, tensor<f32>, tensor<10x4xf32>, tensor<10x4xf32>, tensor<10x4xf32>, tensor<10x4xf32>
}
