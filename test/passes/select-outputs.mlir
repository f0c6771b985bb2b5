// RUN: mixer-opt %s --split-input-file --verify-diagnostics '--mixer-select-outputs=outputs=pooled_output' | FileCheck %s

// CHECK-LABEL: func.func @forward
// CHECK-SAME: -> tensor<2x16xf32>
// CHECK-SAME: mixer.outputs = ["pooled_output"]
// CHECK: %[[P:.*]] = mixer.take_position
// CHECK: return %[[P]] : tensor<2x16xf32>
func.func @forward(%x: tensor<2x8x16xf32>) -> (tensor<2x8x16xf32>, tensor<2x16xf32>)
    attributes {mixer.outputs = ["sequence_output", "pooled_output"]} {
  %p = mixer.take_position %x[0] : tensor<2x8x16xf32> to tensor<2x16xf32>
  return %x, %p : tensor<2x8x16xf32>, tensor<2x16xf32>
}

// -----

// expected-error @+1 {{model has no output 'pooled_output' (outputs: sequence_output)}}
func.func @forward(%x: tensor<2x8x16xf32>) -> tensor<2x8x16xf32>
    attributes {mixer.outputs = ["sequence_output"]} {
  return %x : tensor<2x8x16xf32>
}
