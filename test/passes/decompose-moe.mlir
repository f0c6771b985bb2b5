// RUN: mixer-opt %s --mixer-decompose-moe | FileCheck %s

// Experts-choose MoE becomes router logits, softmax, selection, dispatch,
// experts (of the capacity layout) and combine; no one-hot tensors appear.
// CHECK-LABEL: func.func @experts_choose
func.func @experts_choose(%x: tensor<2x8x16xf32>, %rk: tensor<16x4xf32>, %rb: tensor<4xf32>,
    %w1: tensor<4x16x32xf32>, %b1: tensor<4x32xf32>, %w2: tensor<4x32x16xf32>, %b2: tensor<4x16xf32>) -> tensor<2x8x16xf32> {
  // CHECK: %[[X:.*]] = mixer.reshape %{{.*}} : tensor<2x8x16xf32> to tensor<16x16xf32>
  // CHECK: %[[L:.*]] = mixer.dense %[[X]], %{{.*}}, %{{.*}} : {{.*}} -> tensor<16x4xf32>
  // CHECK-NOT: mixer.round_bf16
  // CHECK: %[[P:.*]] = mixer.softmax %[[L]]
  // CHECK: %[[T:.*]], %[[G:.*]], %[[O:.*]] = mixer.select_experts %[[P]] {capacity = 4 : i64, k = 1 : i64, num_groups = 2 : i64, routing = #mixer<routing experts_choose>} : (tensor<16x4xf32>) -> (tensor<32xi32>, tensor<32xf32>, tensor<5xi32>)
  // CHECK: %[[XD:.*]] = mixer.dispatch %[[X]], %[[T]] : {{.*}} -> tensor<32x16xf32>
  // CHECK: %[[YD:.*]] = mixer.experts %[[XD]], %[[T]], %[[O]], %{{.*}} bias %{{.*}}, %{{.*}} bias %{{.*}} {activation = #mixer<activation gelu>, layout = #mixer<expert_layout capacity>}
  // CHECK: %[[Y:.*]] = mixer.combine %[[YD]], %[[T]], %[[G]] : {{.*}} -> tensor<16x16xf32>
  // CHECK: mixer.reshape %[[Y]] : tensor<16x16xf32> to tensor<2x8x16xf32>
  %m = mixer.moe %x, %rk, %rb, %w1, %b1, %w2, %b2 {routing = #mixer<routing experts_choose>, num_groups = 2, capacity = 4, k = 1} : (tensor<2x8x16xf32>, tensor<16x4xf32>, tensor<4xf32>, tensor<4x16x32xf32>, tensor<4x32xf32>, tensor<4x32x16xf32>, tensor<4x16xf32>) -> tensor<2x8x16xf32>
  return %m : tensor<2x8x16xf32>
}

// Training noise: jitter scales the router's input only (dispatch reads the
// unperturbed tokens), expert dropout scales the experts' slot rows before
// they are combined; each with the layer's own stream.
// CHECK-LABEL: func.func @noisy_experts_choose
// CHECK-SAME: %[[SEED:[^:]*]]: tensor<i32>, %[[STEP:[^:]*]]: tensor<i32>
func.func @noisy_experts_choose(%x: tensor<2x8x16xf32>, %rk: tensor<16x4xf32>, %rb: tensor<4xf32>,
    %w1: tensor<4x16x32xf32>, %b1: tensor<4x32xf32>, %w2: tensor<4x32x16xf32>, %b2: tensor<4x16xf32>,
    %seed: tensor<i32>, %step: tensor<i32>) -> tensor<2x8x16xf32> {
  // CHECK: %[[X:.*]] = mixer.reshape %{{.*}} : tensor<2x8x16xf32> to tensor<16x16xf32>
  // CHECK: %[[XJ:.*]] = mixer.random_scale jitter %[[X]], %[[SEED]], %[[STEP]] {rate = 2.000000e-02 : f64, stream = 7 : i64} : tensor<16x16xf32>
  // CHECK: %[[L:.*]] = mixer.dense %[[XJ]], %{{.*}}, %{{.*}} : {{.*}} -> tensor<16x4xf32>
  // CHECK: %[[T:.*]], %[[G:.*]], %{{.*}} = mixer.select_experts
  // CHECK: %[[XD:.*]] = mixer.dispatch %[[X]], %[[T]]
  // CHECK: %[[YD:.*]] = mixer.experts %[[XD]]
  // CHECK: %[[YDD:.*]] = mixer.random_scale dropout %[[YD]], %[[SEED]], %[[STEP]] {blocks = 4 : i64, rate = 1.000000e-01 : f64, stream = 8 : i64} : tensor<32x16xf32>
  // CHECK: mixer.combine %[[YDD]], %[[T]], %[[G]]
  %m = mixer.moe %x, %rk, %rb, %w1, %b1, %w2, %b2 noise %seed, %step {routing = #mixer<routing experts_choose>, num_groups = 2, capacity = 4, k = 1, jitter_noise = 0.02 : f64, jitter_stream = 7, expert_dropout_rate = 0.1 : f64, expert_dropout_stream = 8} : (tensor<2x8x16xf32>, tensor<16x4xf32>, tensor<4xf32>, tensor<4x16x32xf32>, tensor<4x32xf32>, tensor<4x32x16xf32>, tensor<4x16xf32>, tensor<i32>, tensor<i32>) -> tensor<2x8x16xf32>
  return %m : tensor<2x8x16xf32>
}

// Expert dropout alone leaves the router input untouched.
// CHECK-LABEL: func.func @expert_dropout_only
// CHECK: %[[X:.*]] = mixer.reshape
// CHECK-NEXT: mixer.dense %[[X]]
// CHECK: mixer.random_scale dropout
// CHECK-NOT: mixer.random_scale
// CHECK: return
func.func @expert_dropout_only(%x: tensor<2x8x16xf32>, %rk: tensor<16x4xf32>, %rb: tensor<4xf32>,
    %w1: tensor<4x16x32xf32>, %b1: tensor<4x32xf32>, %w2: tensor<4x32x16xf32>, %b2: tensor<4x16xf32>,
    %seed: tensor<i32>, %step: tensor<i32>) -> tensor<2x8x16xf32> {
  %m = mixer.moe %x, %rk, %rb, %w1, %b1, %w2, %b2 noise %seed, %step {routing = #mixer<routing experts_choose>, num_groups = 2, capacity = 4, k = 1, expert_dropout_rate = 0.1 : f64, expert_dropout_stream = 0} : (tensor<2x8x16xf32>, tensor<16x4xf32>, tensor<4xf32>, tensor<4x16x32xf32>, tensor<4x32xf32>, tensor<4x32x16xf32>, tensor<4x16xf32>, tensor<i32>, tensor<i32>) -> tensor<2x8x16xf32>
  return %m : tensor<2x8x16xf32>
}

// A bfloat16 router multiplies bfloat16 operands without a bias, rounds
// its logits with the bias added and runs the bfloat16 softmax.
// CHECK-LABEL: func.func @tokens_choose_bf16_router
// CHECK-SAME: (%[[IN:[^:]*]]: tensor<2x8x16xf32>, %[[RK:[^:]*]]: tensor<16x4xf32>, %[[RB:[^:]*]]: tensor<4xf32>
func.func @tokens_choose_bf16_router(%x: tensor<2x8x16xf32>, %rk: tensor<16x4xf32>, %rb: tensor<4xf32>,
    %w1: tensor<4x16x32xf32>, %b1: tensor<4x32xf32>, %w2: tensor<4x32x16xf32>, %b2: tensor<4x16xf32>) -> tensor<2x8x16xf32> {
  // CHECK: %[[X:.*]] = mixer.reshape %[[IN]]
  // CHECK: %[[XR:.*]] = mixer.round_bf16 %[[X]] : tensor<16x16xf32>
  // CHECK: %[[KR:.*]] = mixer.round_bf16 %[[RK]] : tensor<16x4xf32>
  // CHECK: %[[D:.*]] = mixer.dense %[[XR]], %[[KR]] : (tensor<16x16xf32>, tensor<16x4xf32>) -> tensor<16x4xf32>
  // CHECK: %[[L:.*]] = mixer.router_logits_bf16 %[[D]], %[[RB]]
  // CHECK: %[[P:.*]] = mixer.softmax %[[L]] {bf16} : tensor<16x4xf32>
  // CHECK-NOT: mixer.round_bf16
  // CHECK: mixer.select_experts %[[P]] {batch_prioritized, capacity = 3 : i64, k = 2 : i64, num_groups = 1 : i64, router_bf16, routing = #mixer<routing tokens_choose>} : (tensor<16x4xf32>) -> (tensor<12xi32>, tensor<12xf32>, tensor<5xi32>)
  %m = mixer.moe %x, %rk, %rb, %w1, %b1, %w2, %b2 {routing = #mixer<routing tokens_choose>, num_groups = 1, capacity = 3, k = 2, batch_prioritized, router_bf16} : (tensor<2x8x16xf32>, tensor<16x4xf32>, tensor<4xf32>, tensor<4x16x32xf32>, tensor<4x32xf32>, tensor<4x32x16xf32>, tensor<4x16xf32>) -> tensor<2x8x16xf32>
  return %m : tensor<2x8x16xf32>
}

// sigma-MoE routes from logits against the transposed selector with sigmoid
// gates and runs bias-free ReLU experts of the grouped layout.
// CHECK-LABEL: func.func @sigma_moe
func.func @sigma_moe(%x: tensor<2x8x16xf32>, %sel: tensor<4x16xf32>, %keys: tensor<4x16x8xf32>, %values: tensor<4x8x16xf32>) -> tensor<2x8x16xf32> {
  // CHECK: %[[L:.*]] = mixer.dense %{{.*}}, %{{.*}} {transpose_weight} : (tensor<16x16xf32>, tensor<4x16xf32>) -> tensor<16x4xf32>
  // CHECK: %[[T:.*]], %[[G:.*]], %[[O:.*]] = mixer.route %[[L]] {capacity = 0 : i64, k = 2 : i64, num_groups = 1 : i64, routing = #mixer<routing sigmoid_topk>} : (tensor<16x4xf32>) -> (tensor<32xi32>, tensor<32xf32>, tensor<5xi32>)
  // CHECK: mixer.experts %{{.*}}, %[[T]], %[[O]], %{{[^ ]*}}, %{{[^ ]*}} {activation = #mixer<activation relu>, layout = #mixer<expert_layout grouped>}
  %m = mixer.sigma_moe %x, %sel, %keys, %values {k = 2} : (tensor<2x8x16xf32>, tensor<4x16xf32>, tensor<4x16x8xf32>, tensor<4x8x16xf32>) -> tensor<2x8x16xf32>
  return %m : tensor<2x8x16xf32>
}

// The router losses of a training step: the z-loss of the logits as the
// router computed them (the bfloat16 router's rounded logits) and, for
// tokens_choose, the load-balancing loss of the probabilities, from the same
// groups and k.
// CHECK-LABEL: func.func @tokens_choose_losses
func.func @tokens_choose_losses(%x: tensor<2x8x16xf32>, %rk: tensor<16x4xf32>, %rb: tensor<4xf32>,
    %w1: tensor<4x16x32xf32>, %b1: tensor<4x32xf32>, %w2: tensor<4x32x16xf32>, %b2: tensor<4x16xf32>) -> (tensor<2x8x16xf32>, tensor<f32>, tensor<f32>) {
  // CHECK: %[[LR:.*]] = mixer.router_logits_bf16
  // CHECK: %[[Z:.*]] = mixer.router_z_loss %[[LR]] : tensor<16x4xf32>
  // CHECK: %[[PR:.*]] = mixer.softmax %[[LR]] {bf16}
  // CHECK: %[[A:.*]] = mixer.load_balancing_loss %[[PR]] {k = 2 : i64, num_groups = 2 : i64} : tensor<16x4xf32>
  // CHECK: mixer.select_experts %[[PR]]
  // CHECK: %[[Y:.*]] = mixer.reshape {{.*}} to tensor<2x8x16xf32>
  // CHECK: return %[[Y]], %[[Z]], %[[A]]
  %m, %z, %a = mixer.moe %x, %rk, %rb, %w1, %b1, %w2, %b2 {routing = #mixer<routing tokens_choose>, num_groups = 2, capacity = 4, k = 2, batch_prioritized, router_bf16} : (tensor<2x8x16xf32>, tensor<16x4xf32>, tensor<4xf32>, tensor<4x16x32xf32>, tensor<4x32xf32>, tensor<4x32x16xf32>, tensor<4x16xf32>) -> (tensor<2x8x16xf32>, tensor<f32>, tensor<f32>)
  return %m, %z, %a : tensor<2x8x16xf32>, tensor<f32>, tensor<f32>
}

// Experts-choose layers have a z-loss only (no load-balancing loss).
// CHECK-LABEL: func.func @experts_choose_losses
// CHECK: %[[L:.*]] = mixer.dense
// CHECK-NEXT: %[[Z:.*]] = mixer.router_z_loss %[[L]]
// CHECK-NOT: mixer.load_balancing_loss
// CHECK: return %{{.*}}, %[[Z]]
func.func @experts_choose_losses(%x: tensor<2x8x16xf32>, %rk: tensor<16x4xf32>, %rb: tensor<4xf32>,
    %w1: tensor<4x16x32xf32>, %b1: tensor<4x32xf32>, %w2: tensor<4x32x16xf32>, %b2: tensor<4x16xf32>) -> (tensor<2x8x16xf32>, tensor<f32>) {
  %m, %z = mixer.moe %x, %rk, %rb, %w1, %b1, %w2, %b2 {routing = #mixer<routing experts_choose>, num_groups = 2, capacity = 4, k = 1} : (tensor<2x8x16xf32>, tensor<16x4xf32>, tensor<4xf32>, tensor<4x16x32xf32>, tensor<4x32xf32>, tensor<4x32x16xf32>, tensor<4x16xf32>) -> (tensor<2x8x16xf32>, tensor<f32>)
  return %m, %z : tensor<2x8x16xf32>, tensor<f32>
}

// sigma-MoE in a training step: the entropy regulariser of the raw logits,
// then expert dropout of the logits (the layer's stream) before the top-k.
// CHECK-LABEL: func.func @sigma_moe_training
// CHECK-SAME: %[[SEED:[^:]*]]: tensor<i32>, %[[STEP:[^:]*]]: tensor<i32>
func.func @sigma_moe_training(%x: tensor<2x8x16xf32>, %sel: tensor<4x16xf32>, %keys: tensor<4x16x8xf32>, %values: tensor<4x8x16xf32>,
    %seed: tensor<i32>, %step: tensor<i32>) -> (tensor<2x8x16xf32>, tensor<f32>) {
  // CHECK: %[[L:.*]] = mixer.dense %{{.*}}, %{{.*}} {transpose_weight}
  // CHECK: %[[H:.*]] = mixer.entropy_regularizer %[[L]] : tensor<16x4xf32>
  // CHECK: %[[D:.*]] = mixer.drop_experts %[[L]], %[[SEED]], %[[STEP]] {rate = 5.000000e-02 : f64, stream = 3 : i64} : tensor<16x4xf32>
  // CHECK: mixer.route %[[D]]
  // CHECK: return %{{.*}}, %[[H]]
  %m, %h = mixer.sigma_moe %x, %sel, %keys, %values noise %seed, %step {k = 2, expert_dropout_rate = 0.05 : f64, expert_dropout_stream = 3} : (tensor<2x8x16xf32>, tensor<4x16xf32>, tensor<4x16x8xf32>, tensor<4x8x16xf32>, tensor<i32>, tensor<i32>) -> (tensor<2x8x16xf32>, tensor<f32>)
  return %m, %h : tensor<2x8x16xf32>, tensor<f32>
}
