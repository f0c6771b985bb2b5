// RUN: mixer-opt %s --mixer-fuse-residual-layer-norm | FileCheck %s

// CHECK-LABEL: func.func @post_ln_block
func.func @post_ln_block(%x: tensor<2x8x16xf32>, %m: tensor<2x8x16xf32>, %s: tensor<16xf32>, %b: tensor<16xf32>) -> tensor<2x8x16xf32> {
  // CHECK: %[[Y:.*]] = mixer.add_layer_norm %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} {epsilon = 9.9999999999999998E-13 : f64}
  // CHECK-NOT: mixer.add
  // CHECK: return %[[Y]]
  %sum = mixer.add %x, %m : tensor<2x8x16xf32>
  %y = mixer.layer_norm %sum, %s, %b {epsilon = 1.0e-12 : f64} : (tensor<2x8x16xf32>, tensor<16xf32>, tensor<16xf32>) -> tensor<2x8x16xf32>
  return %y : tensor<2x8x16xf32>
}

// The pre-LN residual sum is reused by the next block: no fusion.
// CHECK-LABEL: func.func @reused_sum
func.func @reused_sum(%x: tensor<2x8x16xf32>, %m: tensor<2x8x16xf32>, %s: tensor<16xf32>, %b: tensor<16xf32>) -> (tensor<2x8x16xf32>, tensor<2x8x16xf32>) {
  // CHECK: mixer.add
  // CHECK: mixer.layer_norm
  %sum = mixer.add %x, %m : tensor<2x8x16xf32>
  %y = mixer.layer_norm %sum, %s, %b {epsilon = 1.0e-12 : f64} : (tensor<2x8x16xf32>, tensor<16xf32>, tensor<16xf32>) -> tensor<2x8x16xf32>
  return %sum, %y : tensor<2x8x16xf32>, tensor<2x8x16xf32>
}
