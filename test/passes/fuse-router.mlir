// RUN: mixer-opt %s --mixer-fuse-router | FileCheck %s

// CHECK-LABEL: func.func @softmax_into_route
func.func @softmax_into_route(%l: tensor<16x4xf32>) -> (tensor<32xi32>, tensor<32xf32>, tensor<5xi32>) {
  // CHECK-NOT: mixer.softmax
  // CHECK: mixer.route %{{.*}} {capacity = 4 : i64, k = 1 : i64, num_groups = 2 : i64, routing = #mixer<routing experts_choose>}
  %p = mixer.softmax %l : tensor<16x4xf32>
  %t, %g, %o = mixer.select_experts %p {routing = #mixer<routing experts_choose>, num_groups = 2, capacity = 4, k = 1} : (tensor<16x4xf32>) -> (tensor<32xi32>, tensor<32xf32>, tensor<5xi32>)
  return %t, %g, %o : tensor<32xi32>, tensor<32xf32>, tensor<5xi32>
}

// The bfloat16 router's softmax fuses into a router_bf16 selection.
// CHECK-LABEL: func.func @bf16_router
// CHECK-SAME: (%[[L:.*]]: tensor<16x4xf32>)
func.func @bf16_router(%l: tensor<16x4xf32>) -> (tensor<32xi32>, tensor<32xf32>, tensor<5xi32>) {
  // CHECK-NOT: mixer.softmax
  // CHECK: mixer.route %[[L]] {{{.*}}router_bf16
  %p = mixer.softmax %l {bf16} : tensor<16x4xf32>
  %t, %g, %o = mixer.select_experts %p {routing = #mixer<routing experts_choose>, num_groups = 2, capacity = 4, k = 1, router_bf16} : (tensor<16x4xf32>) -> (tensor<32xi32>, tensor<32xf32>, tensor<5xi32>)
  return %t, %g, %o : tensor<32xi32>, tensor<32xf32>, tensor<5xi32>
}

// A softmax of another precision than the selection's stays.
// CHECK-LABEL: func.func @mismatched_precision
func.func @mismatched_precision(%l: tensor<16x4xf32>) -> (tensor<32xi32>, tensor<32xf32>, tensor<5xi32>) {
  // CHECK: mixer.softmax
  // CHECK: mixer.select_experts
  %p = mixer.softmax %l : tensor<16x4xf32>
  %t, %g, %o = mixer.select_experts %p {routing = #mixer<routing experts_choose>, num_groups = 2, capacity = 4, k = 1, router_bf16} : (tensor<16x4xf32>) -> (tensor<32xi32>, tensor<32xf32>, tensor<5xi32>)
  return %t, %g, %o : tensor<32xi32>, tensor<32xf32>, tensor<5xi32>
}

// Probabilities that are also returned are not fused away.
// CHECK-LABEL: func.func @shared_probabilities
func.func @shared_probabilities(%l: tensor<16x4xf32>) -> (tensor<16x4xf32>, tensor<32xi32>) {
  // CHECK: mixer.softmax
  // CHECK: mixer.select_experts
  %p = mixer.softmax %l : tensor<16x4xf32>
  %t, %g, %o = mixer.select_experts %p {routing = #mixer<routing experts_choose>, num_groups = 2, capacity = 4, k = 1} : (tensor<16x4xf32>) -> (tensor<32xi32>, tensor<32xf32>, tensor<5xi32>)
  return %p, %t : tensor<16x4xf32>, tensor<32xi32>
}
