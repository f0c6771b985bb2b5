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
