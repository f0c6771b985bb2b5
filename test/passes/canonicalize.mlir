// RUN: mixer-opt %s --canonicalize | FileCheck %s

// CHECK-LABEL: func.func @reshape_chain
// CHECK-SAME: (%[[X:.*]]: tensor<2x8x16xf32>)
// CHECK-NEXT: %[[R:.*]] = mixer.reshape %[[X]] : tensor<2x8x16xf32> to tensor<256xf32>
// CHECK-NEXT: return %[[R]]
func.func @reshape_chain(%x: tensor<2x8x16xf32>) -> tensor<256xf32> {
  %a = mixer.reshape %x : tensor<2x8x16xf32> to tensor<16x16xf32>
  %b = mixer.reshape %a : tensor<16x16xf32> to tensor<256xf32>
  return %b : tensor<256xf32>
}

// CHECK-LABEL: func.func @identity_reshape_and_activation
// CHECK-SAME: (%[[X:.*]]: tensor<8x16xf32>)
// CHECK-NEXT: return %[[X]]
func.func @identity_reshape_and_activation(%x: tensor<8x16xf32>) -> tensor<8x16xf32> {
  %a = mixer.reshape %x : tensor<8x16xf32> to tensor<8x16xf32>
  %b = mixer.activation none %a : tensor<8x16xf32>
  return %b : tensor<8x16xf32>
}

// Pure ops without users disappear.
// CHECK-LABEL: func.func @dead_dense
// CHECK-NOT: mixer.dense
func.func @dead_dense(%x: tensor<8x16xf32>, %w: tensor<16x16xf32>) -> tensor<8x16xf32> {
  %d = mixer.dense %x, %w : (tensor<8x16xf32>, tensor<16x16xf32>) -> tensor<8x16xf32>
  return %x : tensor<8x16xf32>
}
