// RUN: mixer-opt %s -split-input-file -verify-diagnostics

func.func @unknown_kernel(%x: memref<4xf32>) {
  // expected-error @+1 {{unknown kernel 'matmul'}}
  mixrt.kernel "matmul" ins(%x : memref<4xf32>) outs(%x : memref<4xf32>) params {}
  return
}

// -----

func.func @kernel_arity(%x: memref<4xf32>) {
  // expected-error @+1 {{kernel 'add' takes 2 operands and 1 results, got 1 and 1}}
  mixrt.kernel "add" ins(%x : memref<4xf32>) outs(%x : memref<4xf32>) params {}
  return
}

// -----

func.func @kernel_attribute(%x: memref<4xf32>) {
  // expected-error @+1 {{kernel 'softmax' has no attribute 'axis'}}
  mixrt.kernel "softmax" ins(%x : memref<4xf32>) outs(%x : memref<4xf32>) params {axis = 0}
  return
}

// -----

func.func @attribute_type(%x: memref<4xf32>, %y: memref<4xf32>) {
  %z = mixrt.alloc : memref<4xf32>
  // expected-error @+1 {{kernel 'layer_norm' attribute 'epsilon' must be an f64, not 1 : i64}}
  mixrt.kernel "layer_norm" ins(%x, %x, %y, %y : memref<4xf32>, memref<4xf32>, memref<4xf32>, memref<4xf32>) outs(%z : memref<4xf32>) params {epsilon = 1}
  return
}

// -----

func.func @attribute_value(%x: memref<4xf32>) {
  %y = mixrt.alloc : memref<4xf32>
  // expected-error @+1 {{kernel 'activation' attribute 'kind' must be one of "none" "gelu" "tanh" "relu" "gelu_erf", not "swish"}}
  mixrt.kernel "activation" ins(%x : memref<4xf32>) outs(%y : memref<4xf32>) params {kind = "swish"}
  return
}

// -----

func.func @boolean_attribute(%x: memref<4x4xf32>, %w: memref<4x4xf32>, %none: memref<0xf32>) {
  %y = mixrt.alloc : memref<4x4xf32>
  // expected-error @+1 {{kernel 'dense' attribute 'transpose_w' must be a bool, not 0 : i64}}
  mixrt.kernel "dense" ins(%x, %w, %none : memref<4x4xf32>, memref<4x4xf32>, memref<0xf32>) outs(%y : memref<4x4xf32>) params {activation = "none", transpose_w = 0}
  return
}

// -----

func.func @missing_attribute(%x: memref<4xf32>) {
  %y = mixrt.alloc : memref<4xf32>
  // expected-error @+1 {{kernel 'take_position' needs the attribute 'index'}}
  mixrt.kernel "take_position" ins(%x : memref<4xf32>) outs(%y : memref<4xf32>) params {}
  return
}

// -----

func.func @absent_required_operand(%x: memref<4x4xf32>) {
  %none = mixrt.none : memref<0xf32>
  %y = mixrt.alloc : memref<4x4xf32>
  // expected-error @+1 {{kernel 'dense' needs operand 1 (w), which is mixrt.none}}
  mixrt.kernel "dense" ins(%x, %none, %none : memref<4x4xf32>, memref<0xf32>, memref<0xf32>) outs(%y : memref<4x4xf32>) params {activation = "none", transpose_w = false}
  return
}

// -----

func.func @misaligned_offset() {
  // expected-error @+1 {{offset 8 is not a multiple of 64}}
  %b = mixrt.alloc {offset = 8} : memref<4xf32>
  return
}

// -----

func.func @view_count(%x: memref<4x4xf32>) {
  // expected-error @+1 {{cannot view 16 elements as 12}}
  %v = mixrt.view %x : memref<4x4xf32> to memref<3x4xf32>
  return
}

// -----

func.func @variadic_kernel_without_operands(%n: memref<f32>) {
  // expected-error @+1 {{kernel 'global_norm' takes one or more operands and 1 results, got 0 and 1}}
  "mixrt.kernel"(%n) <{callee = "global_norm", operandSegmentSizes = array<i32: 0, 1>, params = {}}> : (memref<f32>) -> ()
  return
}

// -----

func.func @update_into_arena(%g: memref<4xf32>, %lr: memref<f32>, %step: memref<i32>, %none: memref<0xf32>, %m: memref<4xf32>, %v: memref<4xf32>) {
  %w = mixrt.alloc : memref<4xf32>
  // expected-error @+1 {{kernel 'adamw' updates parameters or state in place: its result 0 must be a function argument}}
  mixrt.kernel "adamw" ins(%g, %lr, %step, %none, %none : memref<4xf32>, memref<f32>, memref<i32>, memref<0xf32>, memref<0xf32>) outs(%w, %m, %v : memref<4xf32>, memref<4xf32>, memref<4xf32>) params {b1 = 0.9, b2 = 0.999, eps = 1.0e-6, weight_decay = 0.01, max_norm = 0.0, micro_steps = 1}
  return
}

// -----

func.func @average_into_argument(%g: memref<4xf32>, %micro: memref<i32>, %acc: memref<4xf32>, %avg: memref<4xf32>) {
  // expected-error @+1 {{kernel 'accumulate_gradient' cannot write a function argument with result 1}}
  mixrt.kernel "accumulate_gradient" ins(%g, %micro : memref<4xf32>, memref<i32>) outs(%acc, %avg : memref<4xf32>, memref<4xf32>) params {micro_steps = 2}
  return
}

// -----

func.func @kernel_writes_argument(%x: memref<4xf32>, %y: memref<4xf32>) {
  // expected-error @+1 {{kernel 'softmax' cannot write a function argument (only kernels that update state do)}}
  mixrt.kernel "softmax" ins(%x : memref<4xf32>) outs(%y : memref<4xf32>) params {}
  return
}

// -----

func.func @kernel_writes_argument_view(%x: memref<4xf32>, %y: memref<4xf32>) {
  %v = mixrt.view %y : memref<4xf32> to memref<2x2xf32>
  // expected-error @+1 {{kernel 'round_bf16' cannot write a function argument (only kernels that update state do)}}
  mixrt.kernel "round_bf16" ins(%x : memref<4xf32>) outs(%v : memref<2x2xf32>) params {}
  return
}
