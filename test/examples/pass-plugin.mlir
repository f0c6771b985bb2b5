// RUN: mixer-opt %s --load-pass-plugin=%count_ops_plugin --pass-pipeline='builtin.module(func.func(mixer-count-ops))' | FileCheck %s

// A pass built outside the compiler, loaded at run time.
// CHECK-LABEL: func.func @block
// CHECK-SAME: mixer.op_counts = {activation = 1 : i64, dense = 2 : i64}
func.func @block(%x: tensor<8x16xf32>, %w1: tensor<16x32xf32>, %w2: tensor<32x16xf32>) -> tensor<8x16xf32> {
  %h = mixer.dense %x, %w1 : (tensor<8x16xf32>, tensor<16x32xf32>) -> tensor<8x32xf32>
  %g = mixer.activation gelu %h : tensor<8x32xf32>
  %y = mixer.dense %g, %w2 : (tensor<8x32xf32>, tensor<32x16xf32>) -> tensor<8x16xf32>
  return %y : tensor<8x16xf32>
}
