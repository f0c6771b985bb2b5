// RUN: mixer-opt %s --mixer-fuse-dense-activation | FileCheck %s

// CHECK-LABEL: func.func @gelu_epilogue
func.func @gelu_epilogue(%x: tensor<8x16xf32>, %w: tensor<16x32xf32>, %b: tensor<32xf32>) -> tensor<8x32xf32> {
  // CHECK: %[[Y:.*]] = mixer.dense %{{.*}}, %{{.*}}, %{{.*}} {activation = #mixer<activation gelu>}
  // CHECK-NOT: mixer.activation
  // CHECK: return %[[Y]]
  %h = mixer.dense %x, %w, %b : (tensor<8x16xf32>, tensor<16x32xf32>, tensor<32xf32>) -> tensor<8x32xf32>
  %g = mixer.activation gelu %h : tensor<8x32xf32>
  return %g : tensor<8x32xf32>
}

// The pre-activation value is needed elsewhere: no fusion.
// CHECK-LABEL: func.func @reused_pre_activation
func.func @reused_pre_activation(%x: tensor<8x16xf32>, %w: tensor<16x32xf32>) -> (tensor<8x32xf32>, tensor<8x32xf32>) {
  // CHECK: mixer.dense %{{.*}}, %{{.*}} :
  // CHECK: mixer.activation tanh
  %h = mixer.dense %x, %w : (tensor<8x16xf32>, tensor<16x32xf32>) -> tensor<8x32xf32>
  %t = mixer.activation tanh %h : tensor<8x32xf32>
  return %h, %t : tensor<8x32xf32>, tensor<8x32xf32>
}

// A dense that already activates keeps the second activation separate.
// CHECK-LABEL: func.func @double_activation
func.func @double_activation(%x: tensor<8x16xf32>, %w: tensor<16x32xf32>) -> tensor<8x32xf32> {
  // CHECK: mixer.dense {{.*}} {activation = #mixer<activation relu>}
  // CHECK: mixer.activation tanh
  %h = mixer.dense %x, %w {activation = #mixer<activation relu>} : (tensor<8x16xf32>, tensor<16x32xf32>) -> tensor<8x32xf32>
  %t = mixer.activation tanh %h : tensor<8x32xf32>
  return %t : tensor<8x32xf32>
}
