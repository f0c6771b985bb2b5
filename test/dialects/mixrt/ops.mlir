// RUN: mixer-opt %s | mixer-opt | FileCheck %s

// CHECK-LABEL: func.func @kernel_calls
func.func @kernel_calls(%x: memref<16x16xf32>, %w: memref<16x32xf32>) -> memref<4x4x32xf32> {
  // CHECK: %[[NONE:.*]] = mixrt.none : memref<0xf32>
  %none = mixrt.none : memref<0xf32>
  // CHECK: %[[Y:.*]] = mixrt.alloc {offset = 64 : i64} : memref<16x32xf32>
  %y = mixrt.alloc {offset = 64} : memref<16x32xf32>
  // CHECK: mixrt.kernel "dense" ins(%{{.*}}, %{{.*}}, %[[NONE]] : {{.*}}) outs(%[[Y]] : memref<16x32xf32>) params {activation = "gelu", transpose_w = false}
  mixrt.kernel "dense" ins(%x, %w, %none : memref<16x16xf32>, memref<16x32xf32>, memref<0xf32>) outs(%y : memref<16x32xf32>) params {activation = "gelu", transpose_w = false}
  // CHECK: mixrt.view %[[Y]] : memref<16x32xf32> to memref<4x4x32xf32>
  %v = mixrt.view %y : memref<16x32xf32> to memref<4x4x32xf32>
  return %v : memref<4x4x32xf32>
}

// Variadic kernels take any number of operands; kernels that update state
// write function arguments with their state results (accumulate_gradient's
// first) and the arena with the others.
// CHECK-LABEL: func.func @training_kernels
func.func @training_kernels(%w: memref<16x4xf32>, %m: memref<16x4xf32>, %v: memref<16x4xf32>,
    %b: memref<4xf32>, %lr: memref<f32>, %step: memref<i32>, %acc: memref<16x4xf32>, %micro: memref<i32>) {
  %g = mixrt.alloc {offset = 0} : memref<16x4xf32>
  %n = mixrt.alloc {offset = 256} : memref<f32>
  %avg = mixrt.alloc {offset = 320} : memref<16x4xf32>
  // CHECK: mixrt.kernel "accumulate_gradient" ins(%{{.*}}, %arg7 : memref<16x4xf32>, memref<i32>) outs(%arg6, %{{.*}} : memref<16x4xf32>, memref<16x4xf32>) params {micro_steps = 2 : i64}
  mixrt.kernel "accumulate_gradient" ins(%g, %micro : memref<16x4xf32>, memref<i32>) outs(%acc, %avg : memref<16x4xf32>, memref<16x4xf32>) params {micro_steps = 2}
  // A kernel without operands prints as it parses.
  // CHECK: mixrt.kernel "fill" ins() outs(%{{.*}} : memref<f32>) params {value = 1.000000e+00 : f64}
  mixrt.kernel "fill" ins() outs(%n : memref<f32>) params {value = 1.0 : f64}
  // CHECK: mixrt.kernel "global_norm" ins(%{{.*}}, %{{.*}}, %{{.*}} : memref<16x4xf32>, memref<4xf32>, memref<16x4xf32>) outs(%{{.*}} : memref<f32>) params {}
  mixrt.kernel "global_norm" ins(%avg, %b, %w : memref<16x4xf32>, memref<4xf32>, memref<16x4xf32>) outs(%n : memref<f32>) params {}
  // CHECK: mixrt.kernel "adamw" ins({{.*}}) outs(%arg0, %arg1, %arg2 : memref<16x4xf32>, memref<16x4xf32>, memref<16x4xf32>)
  mixrt.kernel "adamw" ins(%avg, %lr, %step, %n, %micro : memref<16x4xf32>, memref<f32>, memref<i32>, memref<f32>, memref<i32>) outs(%w, %m, %v : memref<16x4xf32>, memref<16x4xf32>, memref<16x4xf32>) params {b1 = 0.9, b2 = 0.999, eps = 1.0e-6, weight_decay = 0.01, max_norm = 1.0, micro_steps = 2}
  return
}
