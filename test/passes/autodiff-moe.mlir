// RUN: mixer-opt %s --split-input-file --mixer-decompose-moe --mixer-autodiff | FileCheck %s
// RUN: mixer-opt %s --split-input-file --mixer-decompose-moe --mixer-autodiff --canonicalize --mixer-lower-to-runtime --mixrt-plan-memory | FileCheck %s --check-prefix=LOWERED

// The whole backward graph lowers to runtime kernels and gets an arena plan.
// LOWERED-LABEL: func.func @forward
// LOWERED-SAME: mixrt.arena_bytes
// LOWERED-NOT: mixer.
// LOWERED: mixrt.kernel "combine_grad"
// LOWERED: mixrt.kernel "experts_grad" {{.*}} params {activation = "gelu", layout = "capacity"}
// LOWERED: mixrt.kernel "scatter_gate_grad"
// LOWERED: mixrt.kernel "softmax_grad"
// LOWERED-LABEL: func.func @forward
// LOWERED: mixrt.kernel "route_grad" {{.*}} params {routing = "sigmoid_topk"}
// LOWERED-LABEL: func.func @forward
// LOWERED: mixrt.kernel "router_z_loss"
// LOWERED: mixrt.kernel "load_balancing_loss" {{.*}} params {groups = 2 : i64, k = 1 : i64}
// LOWERED: mixrt.kernel "load_balancing_loss_grad" {{.*}} params {groups = 2 : i64, k = 1 : i64}
// LOWERED: mixrt.kernel "router_z_loss_grad"
// LOWERED-LABEL: func.func @forward
// LOWERED: mixrt.kernel "entropy_regularizer"
// LOWERED: mixrt.kernel "drop_experts" {{.*}} params {gradient = false, rate = 1.000000e-01 : f64, stream = 0 : i64}
// LOWERED: mixrt.kernel "drop_experts" {{.*}} params {gradient = true, rate = 1.000000e-01 : f64, stream = 0 : i64}
// LOWERED: mixrt.kernel "entropy_regularizer_grad"

// Experts-choose MoE after decomposition: gradients flow through combine
// (slot rows and gates), the experts, dispatch, the selection (gates back to
// probabilities) and the router softmax; the assignment table stays fixed.
// CHECK-LABEL: func.func @forward
// CHECK-SAME: mixer.outputs = ["loss", "grad/rk", "grad/rb", "grad/w1", "grad/b1", "grad/w2", "grad/b2"]
// CHECK: %[[T:.*]], %[[G:.*]], %[[O:.*]] = mixer.select_experts %[[P:[^ ]*]]
// CHECK: %[[YD:.*]] = mixer.experts
// CHECK: %[[DYD:.*]], %[[DG:.*]] = mixer.combine_grad %[[YD]], %[[T]], %[[G]], %{{.*}}
// CHECK: %[[DXD:.*]], %[[DW1:.*]], %[[DB1:.*]], %[[DW2:.*]], %[[DB2:.*]] = mixer.experts_grad %{{.*}}, %[[T]], %[[O]], %{{.*}} bias %{{.*}}, %{{.*}}, %[[DYD]] {activation = #mixer<activation gelu>, layout = #mixer<expert_layout capacity>}
// CHECK: mixer.dispatch_grad %[[DXD]], %[[T]]
// CHECK: %[[DP:.*]] = mixer.scatter_gate_grad %[[T]], %[[O]], %[[DG]] : (tensor<32xi32>, tensor<5xi32>, tensor<32xf32>) -> tensor<16x4xf32>
// CHECK: mixer.softmax_grad %[[P]], %[[DP]]
// CHECK: return {{.*}}, %[[DW1]], %[[DB1]], %[[DW2]], %[[DB2]] :
func.func @forward(%x: tensor<2x8x16xf32> {mixer.input = "x"}, %rk: tensor<16x4xf32> {mixer.param = "rk"},
    %rb: tensor<4xf32> {mixer.param = "rb"}, %w1: tensor<4x16x32xf32> {mixer.param = "w1"},
    %b1: tensor<4x32xf32> {mixer.param = "b1"}, %w2: tensor<4x32x16xf32> {mixer.param = "w2"},
    %b2: tensor<4x16xf32> {mixer.param = "b2"}) -> tensor<f32> attributes {mixer.outputs = ["loss"]} {
  %m = mixer.moe %x, %rk, %rb, %w1, %b1, %w2, %b2 {routing = #mixer<routing experts_choose>, num_groups = 2, capacity = 4, k = 1} : (tensor<2x8x16xf32>, tensor<16x4xf32>, tensor<4xf32>, tensor<4x16x32xf32>, tensor<4x32xf32>, tensor<4x32x16xf32>, tensor<4x16xf32>) -> tensor<2x8x16xf32>
  %l = mixer.reduce_sum %m : tensor<2x8x16xf32> to tensor<f32>
  return %l : tensor<f32>
}

// -----

// sigma-MoE: the router gradient goes through the sigmoid gates (route_grad);
// the bias-free experts pass no bias gradients on.
// CHECK-LABEL: func.func @forward
// CHECK-SAME: mixer.outputs = ["loss", "grad/sel", "grad/keys", "grad/values"]
// CHECK: %[[L:.*]] = mixer.dense %{{.*}}, %{{.*}} {transpose_weight}
// CHECK: %[[T:.*]], %[[G:.*]], %[[O:.*]] = mixer.route %[[L]]
// CHECK: %[[DYD:.*]], %[[DG:.*]] = mixer.combine_grad
// CHECK: %{{.*}}, %[[DK:.*]], %{{.*}}, %[[DV:.*]], %{{.*}} = mixer.experts_grad %{{.*}}, %[[T]], %[[O]], %{{[^ ]*}}, %{{[^ ]*}}, %[[DYD]] {activation = #mixer<activation relu>, layout = #mixer<expert_layout grouped>}
// CHECK: %[[DL:.*]] = mixer.route_grad %[[L]], %[[T]], %[[O]], %[[DG]] {routing = #mixer<routing sigmoid_topk>}
// CHECK: %[[DSEL:.*]] = mixer.dense_weight_grad %{{.*}}, %[[DL]] {transpose_weight}
// CHECK: return %{{.*}}, %[[DSEL]], %[[DK]], %[[DV]] :
func.func @forward(%x: tensor<2x8x16xf32> {mixer.input = "x"}, %sel: tensor<4x16xf32> {mixer.param = "sel"},
    %keys: tensor<4x16x8xf32> {mixer.param = "keys"}, %values: tensor<4x8x16xf32> {mixer.param = "values"}) -> tensor<f32>
    attributes {mixer.outputs = ["loss"]} {
  %m = mixer.sigma_moe %x, %sel, %keys, %values {k = 2} : (tensor<2x8x16xf32>, tensor<4x16xf32>, tensor<4x16x8xf32>, tensor<4x8x16xf32>) -> tensor<2x8x16xf32>
  %l = mixer.reduce_sum %m : tensor<2x8x16xf32> to tensor<f32>
  return %l : tensor<f32>
}

// -----

// Router losses: the z-loss gradient reaches the logits, the load-balancing
// gradient the probabilities (beside the gate gradients), and both go on
// through the softmax into the router kernel.
// CHECK-LABEL: func.func @forward
// CHECK: %[[L:.*]] = mixer.dense
// CHECK: %[[Z:.*]] = mixer.router_z_loss %[[L]]
// CHECK: %[[P:.*]] = mixer.softmax %[[L]]
// CHECK: %[[A:.*]] = mixer.load_balancing_loss %[[P]] {k = 1 : i64, num_groups = 2 : i64}
// CHECK: %[[ONE:.*]] = mixer.fill 1.000000e+00
// CHECK: %[[DA:.*]] = mixer.scale %[[ONE]] by 1.000000e-02
// CHECK: %[[DZ:.*]] = mixer.scale %[[ONE]] by 1.000000e-04
// CHECK: %[[DPG:.*]] = mixer.scatter_gate_grad
// CHECK: %[[DPA:.*]] = mixer.load_balancing_loss_grad %[[P]], %[[DA]] {k = 1 : i64, num_groups = 2 : i64} : tensor<16x4xf32>
// CHECK: %[[DP:.*]] = mixer.add %[[DPG]], %[[DPA]]
// CHECK: %[[DLS:.*]] = mixer.softmax_grad %[[P]], %[[DP]]
// CHECK: %[[DLZ:.*]] = mixer.router_z_loss_grad %[[L]], %[[DZ]] : tensor<16x4xf32>
// CHECK: %[[DL:.*]] = mixer.add %[[DLS]], %[[DLZ]]
// CHECK: mixer.dense_weight_grad %{{.*}}, %[[DL]]
func.func @forward(%x: tensor<2x8x16xf32> {mixer.input = "x"}, %rk: tensor<16x4xf32> {mixer.param = "rk"},
    %rb: tensor<4xf32> {mixer.param = "rb"}, %w1: tensor<4x16x32xf32> {mixer.param = "w1"},
    %b1: tensor<4x32xf32> {mixer.param = "b1"}, %w2: tensor<4x32x16xf32> {mixer.param = "w2"},
    %b2: tensor<4x16xf32> {mixer.param = "b2"}) -> tensor<f32> attributes {mixer.outputs = ["loss"]} {
  %m, %z, %a = mixer.moe %x, %rk, %rb, %w1, %b1, %w2, %b2 {routing = #mixer<routing tokens_choose>, num_groups = 2, capacity = 4, k = 1} : (tensor<2x8x16xf32>, tensor<16x4xf32>, tensor<4xf32>, tensor<4x16x32xf32>, tensor<4x32xf32>, tensor<4x32x16xf32>, tensor<4x16xf32>) -> (tensor<2x8x16xf32>, tensor<f32>, tensor<f32>)
  %s = mixer.reduce_sum %m : tensor<2x8x16xf32> to tensor<f32>
  %zs = mixer.scale %z by 1.0e-4 : tensor<f32>
  %as = mixer.scale %a by 1.0e-2 : tensor<f32>
  %t = mixer.add %s, %zs : tensor<f32>
  %l = mixer.add %t, %as : tensor<f32>
  return %l : tensor<f32>
}

// -----

// sigma-MoE training: the gate gradients go back through the dropped logits
// (route_grad), then through the same expert dropout with zeros for the
// dropped experts; the entropy regulariser adds its gradient of the raw
// logits.
// CHECK-LABEL: func.func @forward
// CHECK-SAME: (%{{[^:]*}}: tensor<2x8x16xf32> {mixer.input = "x"}, %[[SEED:[^:]*]]: tensor<i32> {mixer.input = "seed"}, %[[STEP:[^:]*]]: tensor<i32>
// CHECK: %[[L:.*]] = mixer.dense %{{.*}}, %{{.*}} {transpose_weight}
// CHECK: %[[D:.*]] = mixer.drop_experts %[[L]], %[[SEED]], %[[STEP]] {rate = 1.000000e-01 : f64, stream = 0 : i64}
// CHECK: %[[T:.*]], %[[G:.*]], %[[O:.*]] = mixer.route %[[D]]
// CHECK: %[[DR:.*]] = mixer.route_grad %[[D]], %[[T]], %[[O]], %{{.*}}
// CHECK: %[[DD:.*]] = mixer.drop_experts %[[DR]], %[[SEED]], %[[STEP]] {gradient, rate = 1.000000e-01 : f64, stream = 0 : i64}
// CHECK: %[[DH:.*]] = mixer.entropy_regularizer_grad %[[L]], %{{.*}} : tensor<16x4xf32>
// CHECK: %[[DL:.*]] = mixer.add %[[DD]], %[[DH]]
// CHECK: mixer.dense_weight_grad %{{.*}}, %[[DL]] {transpose_weight}
func.func @forward(%x: tensor<2x8x16xf32> {mixer.input = "x"}, %seed: tensor<i32> {mixer.input = "seed"},
    %step: tensor<i32> {mixer.input = "step"}, %sel: tensor<4x16xf32> {mixer.param = "sel"},
    %keys: tensor<4x16x8xf32> {mixer.param = "keys"}, %values: tensor<4x8x16xf32> {mixer.param = "values"}) -> tensor<f32>
    attributes {mixer.outputs = ["loss"]} {
  %m, %h = mixer.sigma_moe %x, %sel, %keys, %values noise %seed, %step {k = 2, expert_dropout_rate = 0.1 : f64, expert_dropout_stream = 0} : (tensor<2x8x16xf32>, tensor<4x16xf32>, tensor<4x16x8xf32>, tensor<4x8x16xf32>, tensor<i32>, tensor<i32>) -> (tensor<2x8x16xf32>, tensor<f32>)
  %s = mixer.reduce_sum %m : tensor<2x8x16xf32> to tensor<f32>
  %l = mixer.add %s, %h : tensor<f32>
  return %l : tensor<f32>
}

// -----

// The bfloat16 router: the logit gradients (through the rounded probabilities
// and the z-loss) pass the roundings straight through; the bias gets their sum
// over tokens, the kernel the product with the rounded inputs.
// CHECK-LABEL: func.func @forward
// CHECK-SAME: %[[RK:[^:]*]]: tensor<16x4xf32> {mixer.param = "rk"}
// CHECK: %[[XR:.*]] = mixer.round_bf16
// CHECK: %[[KR:.*]] = mixer.round_bf16 %[[RK]]
// CHECK: %[[D:.*]] = mixer.dense %[[XR]], %[[KR]]
// CHECK: %[[L:.*]] = mixer.router_logits_bf16 %[[D]]
// CHECK: %[[P:.*]] = mixer.softmax %[[L]] {bf16}
// CHECK: %[[DLS:.*]] = mixer.softmax_grad %[[P]]
// CHECK: %[[DLZ:.*]] = mixer.router_z_loss_grad %[[L]]
// CHECK: %[[DL:.*]] = mixer.add %[[DLS]], %[[DLZ]]
// CHECK-DAG: %[[DB:.*]] = mixer.reduce_rows %[[DL]] : (tensor<16x4xf32>) -> tensor<4xf32>
// CHECK-DAG: %[[DK:.*]] = mixer.dense_weight_grad %[[XR]], %[[DL]]
// CHECK: return %{{[0-9]+}}, %[[DK]], %[[DB]], %
func.func @forward(%x: tensor<2x8x16xf32> {mixer.input = "x"}, %rk: tensor<16x4xf32> {mixer.param = "rk"},
    %rb: tensor<4xf32> {mixer.param = "rb"}, %w1: tensor<4x16x32xf32> {mixer.param = "w1"},
    %b1: tensor<4x32xf32> {mixer.param = "b1"}, %w2: tensor<4x32x16xf32> {mixer.param = "w2"},
    %b2: tensor<4x16xf32> {mixer.param = "b2"}) -> tensor<f32> attributes {mixer.outputs = ["loss"]} {
  %m, %z = mixer.moe %x, %rk, %rb, %w1, %b1, %w2, %b2 {routing = #mixer<routing experts_choose>, num_groups = 2, capacity = 4, k = 1, router_bf16} : (tensor<2x8x16xf32>, tensor<16x4xf32>, tensor<4xf32>, tensor<4x16x32xf32>, tensor<4x32xf32>, tensor<4x32x16xf32>, tensor<4x16xf32>) -> (tensor<2x8x16xf32>, tensor<f32>)
  %s = mixer.reduce_sum %m : tensor<2x8x16xf32> to tensor<f32>
  %zs = mixer.scale %z by 1.0e-4 : tensor<f32>
  %l = mixer.add %s, %zs : tensor<f32>
  return %l : tensor<f32>
}
