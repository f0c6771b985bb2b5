// RUN: mixer-opt %s --split-input-file --mixer-decompose-moe --mixer-autodiff | FileCheck %s
// RUN: mixer-opt %s --split-input-file --mixer-decompose-moe --mixer-autodiff --canonicalize --mixer-lower-to-runtime --mixrt-plan-memory | FileCheck %s --check-prefix=LOWERED

// The whole backward graph lowers to runtime kernels and gets an arena plan.
// LOWERED-LABEL: func.func @forward
// LOWERED-SAME: mixrt.arena_bytes
// LOWERED-NOT: mixer.
// LOWERED: mixrt.kernel "combine_grad"
// LOWERED: mixrt.kernel "experts_grad" {{.*}} params {activation = "gelu"}
// LOWERED: mixrt.kernel "scatter_gate_grad"
// LOWERED: mixrt.kernel "softmax_grad"
// LOWERED-LABEL: func.func @forward
// LOWERED: mixrt.kernel "route_grad" {{.*}} params {routing = "sigmoid_topk"}

// Experts-choose MoE after decomposition: gradients flow through combine
// (slot rows and gates), the experts, dispatch, the selection (gates back to
// probabilities) and the router softmax; the assignment table stays fixed.
// CHECK-LABEL: func.func @forward
// CHECK-SAME: mixer.outputs = ["loss", "grad/rk", "grad/rb", "grad/w1", "grad/b1", "grad/w2", "grad/b2"]
// CHECK: %[[T:.*]], %[[G:.*]], %[[O:.*]] = mixer.select_experts %[[P:[^ ]*]]
// CHECK: %[[YD:.*]] = mixer.experts
// CHECK: %[[DYD:.*]], %[[DG:.*]] = mixer.combine_grad %[[YD]], %[[T]], %[[G]], %{{.*}}
// CHECK: %[[DXD:.*]], %[[DW1:.*]], %[[DB1:.*]], %[[DW2:.*]], %[[DB2:.*]] = mixer.experts_grad %{{.*}}, %[[T]], %[[O]], %{{.*}} bias %{{.*}}, %{{.*}}, %[[DYD]] {activation = #mixer<activation gelu>}
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
// CHECK: %{{.*}}, %[[DK:.*]], %{{.*}}, %[[DV:.*]], %{{.*}} = mixer.experts_grad %{{.*}}, %[[T]], %[[O]], %{{[^ ]*}}, %{{[^ ]*}}, %[[DYD]] {activation = #mixer<activation relu>}
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
