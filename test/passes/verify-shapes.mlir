// RUN: mixer-opt %s --split-input-file --verify-diagnostics --mixer-verify-shapes | FileCheck %s

// Inputs, parameters and optimizer state are the three kinds of argument.
// CHECK-LABEL: func.func @static_model
func.func @static_model(%ids: tensor<2x8xi32> {mixer.input = "input_ids"},
                        %w: tensor<8x8xf32> {mixer.param = "w"},
                        %m: tensor<8x8xf32> {mixer.state = "adam_m/w"}) -> tensor<2x8xi32> {
  return %ids : tensor<2x8xi32>
}

// -----

// expected-error @+1 {{argument 0 has a dynamic shape: recompile for a fixed batch and sequence}}
func.func @dynamic_batch(%ids: tensor<?x8xi32> {mixer.input = "input_ids"}) {
  return
}

// -----

// expected-error @+1 {{argument 1 is neither a model input (mixer.input), a parameter (mixer.param) nor optimizer state (mixer.state)}}
func.func @unnamed_argument(%ids: tensor<2x8xi32> {mixer.input = "input_ids"}, %w: tensor<8xf32>) {
  return
}

// -----

// expected-error @+1 {{argument 0 has element type other than f32 or i32}}
func.func @f16_parameter(%w: tensor<8xf16> {mixer.param = "w"}) {
  return
}
