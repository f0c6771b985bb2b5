// RUN: mixer-opt %s -split-input-file -verify-diagnostics
// The function-interface attributes are checked by the dialect wherever they
// are attached, before any pass runs.

// expected-error @+1 {{'mixer.param' must be a string}}
func.func @param_not_a_string(%x: tensor<4xf32> {mixer.param = 3 : i64}) {
  return
}

// -----

// expected-error @+1 {{'mixer.optional' must be a unit attribute}}
func.func @optional_with_a_value(%x: tensor<4xi32> {mixer.input = "type_ids", mixer.optional = true}) {
  return
}

// -----

// expected-error @+1 {{'mixer.outputs' is not an argument attribute}}
func.func @function_attribute_on_an_argument(%x: tensor<4xf32> {mixer.outputs = ["y"]}) {
  return
}

// -----

// expected-error @+1 {{'mixer.outputs' must be an array of strings}}
func.func @outputs_not_names(%x: tensor<4xf32> {mixer.input = "x"}) -> tensor<4xf32> attributes {mixer.outputs = [1 : i64]} {
  return %x : tensor<4xf32>
}

// -----

// expected-error @+1 {{'mixer.batch' must be an integer}}
func.func @batch_not_an_integer() attributes {mixer.batch = "two"} {
  return
}

// -----

// expected-error @+1 {{'mixer.input' is not a function or module attribute}}
func.func @argument_attribute_on_a_function() attributes {mixer.input = "x"} {
  return
}

// -----

// expected-error @+1 {{'mixer.update' must be a string}}
func.func @update_not_a_name(%x: tensor<4xf32> {mixer.param = "w"}) -> (tensor<4xf32> {mixer.update = 1 : i64}) {
  return %x : tensor<4xf32>
}

// -----

// expected-error @+1 {{'mixrt.flops' must be a float}}
func.func @flops_not_a_float() attributes {mixrt.flops = 3 : i64} {
  return
}

// -----

// Attributes of other names are left to whoever set them (pass plugins).
func.func @plugin_attribute() attributes {mixer.op_counts = {dense = 1 : i64}} {
  return
}
