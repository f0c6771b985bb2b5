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
