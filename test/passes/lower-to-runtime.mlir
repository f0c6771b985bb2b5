// RUN: mixer-opt %s --split-input-file --verify-diagnostics --mixer-lower-to-runtime | FileCheck %s

// Tensors become arena buffers, ops become kernel calls, reshapes views, and
// an absent bias a mixrt.none operand.
// CHECK-LABEL: func.func @block
// CHECK-SAME: (%[[X:.*]]: memref<2x8x16xf32>, %[[W:.*]]: memref<16x32xf32>, %[[S:.*]]: memref<32xf32>)
// CHECK-SAME: -> memref<16x32xf32>
// CHECK-SAME: mixrt.flops = 1.638400e+04
func.func @block(%x: tensor<2x8x16xf32>, %w: tensor<16x32xf32>, %s: tensor<32xf32>) -> tensor<16x32xf32> {
  // CHECK: %[[NONE:.*]] = mixrt.none : memref<0xf32>
  // CHECK: %[[D:.*]] = mixrt.alloc : memref<2x8x32xf32>
  // CHECK: mixrt.kernel "dense" ins(%[[X]], %[[W]], %[[NONE]] : {{.*}}) outs(%[[D]] : memref<2x8x32xf32>) params {activation = "gelu", transpose_w = false}
  // CHECK: %[[N:.*]] = mixrt.alloc : memref<2x8x32xf32>
  // CHECK: mixrt.kernel "layer_norm" ins(%[[D]], %[[D]], %[[S]], %[[S]] : {{.*}}) outs(%[[N]] : {{.*}}) params {epsilon = 9.9999999999999998E-13 : f64}
  // CHECK: %[[V:.*]] = mixrt.view %[[N]] : memref<2x8x32xf32> to memref<16x32xf32>
  // CHECK: return %[[V]]
  %d = mixer.dense %x, %w {activation = #mixer<activation gelu>} : (tensor<2x8x16xf32>, tensor<16x32xf32>) -> tensor<2x8x32xf32>
  %n = mixer.add_layer_norm %d, %d, %s, %s {epsilon = 1.0e-12 : f64} : (tensor<2x8x32xf32>, tensor<2x8x32xf32>, tensor<32xf32>, tensor<32xf32>) -> tensor<2x8x32xf32>
  %v = mixer.reshape %n : tensor<2x8x32xf32> to tensor<16x32xf32>
  return %v : tensor<16x32xf32>
}

// -----

// The fused router runs the softmax kernel and then the selection kernel on
// the CPU.
// CHECK-LABEL: func.func @router
func.func @router(%l: tensor<16x4xf32>) -> (tensor<32xi32>, tensor<32xf32>, tensor<5xi32>) {
  // CHECK: mixrt.kernel "round_bf16"
  // CHECK: mixrt.kernel "softmax"
  // CHECK: mixrt.kernel "round_bf16"
  // CHECK: mixrt.kernel "route_tokens_choose" {{.*}} params {batch_prioritized = true, capacity = 4 : i64, groups = 2 : i64, k = 2 : i64, tokens_per_group = 8 : i64}
  %t, %g, %o = mixer.route %l {routing = #mixer<routing tokens_choose>, num_groups = 2, capacity = 4, k = 2, batch_prioritized, router_bf16} : (tensor<16x4xf32>) -> (tensor<32xi32>, tensor<32xf32>, tensor<5xi32>)
  return %t, %g, %o : tensor<32xi32>, tensor<32xf32>, tensor<5xi32>
}

// -----

func.func @undecomposed_moe(%x: tensor<2x8x16xf32>, %sel: tensor<4x16xf32>, %keys: tensor<4x16x8xf32>, %values: tensor<4x8x16xf32>) -> tensor<2x8x16xf32> {
  // expected-error @+1 {{must be decomposed (mixer-decompose-moe) before lowering to the runtime}}
  %m = mixer.sigma_moe %x, %sel, %keys, %values {k = 2} : (tensor<2x8x16xf32>, tensor<4x16xf32>, tensor<4x16x8xf32>, tensor<4x8x16xf32>) -> tensor<2x8x16xf32>
  return %m : tensor<2x8x16xf32>
}

// -----

func.func @unselected_algorithm(%x: tensor<2x8x16xf32>) -> tensor<2x8x16xf32> {
  // expected-error @+1 {{algorithm is still auto: run mixer-select-mixing-algorithm}}
  %y = mixer.spectral_mix %x : (tensor<2x8x16xf32>) -> tensor<2x8x16xf32>
  return %y : tensor<2x8x16xf32>
}
