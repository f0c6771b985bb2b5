// RUN: mixer-opt %s --split-input-file --mixrt-plan-memory | FileCheck %s

// A chain of three equal buffers needs two slots: the first is dead once the
// second is written, so the third reuses its bytes.
// CHECK-LABEL: func.func @chain
// CHECK-SAME: mixrt.arena_bytes = 2048 : i64
// CHECK: %[[A:.*]] = mixrt.alloc {offset = 0 : i64} : memref<256xf32>
// CHECK: %[[B:.*]] = mixrt.alloc {offset = 1024 : i64} : memref<256xf32>
// CHECK: %[[C:.*]] = mixrt.alloc {offset = 0 : i64} : memref<256xf32>
func.func @chain(%x: memref<256xf32>) -> memref<256xf32> {
  %a = mixrt.alloc : memref<256xf32>
  mixrt.kernel "softmax" ins(%x : memref<256xf32>) outs(%a : memref<256xf32>) params {}
  %b = mixrt.alloc : memref<256xf32>
  mixrt.kernel "softmax" ins(%a : memref<256xf32>) outs(%b : memref<256xf32>) params {}
  %c = mixrt.alloc : memref<256xf32>
  mixrt.kernel "softmax" ins(%b : memref<256xf32>) outs(%c : memref<256xf32>) params {}
  return %c : memref<256xf32>
}

// -----

// A view keeps its source alive: the first buffer is read through a view by
// the last kernel, so nothing can share its bytes. Sizes round up to 64 bytes.
// CHECK-LABEL: func.func @view_extends_life
// CHECK-SAME: mixrt.arena_bytes = 2112 : i64
// CHECK: mixrt.alloc {offset = 0 : i64} : memref<256xf32>
// CHECK: mixrt.alloc {offset = 1024 : i64} : memref<256xf32>
// CHECK: mixrt.alloc {offset = 2048 : i64} : memref<3xf32>
func.func @view_extends_life(%x: memref<256xf32>) -> memref<3xf32> {
  %a = mixrt.alloc : memref<256xf32>
  mixrt.kernel "softmax" ins(%x : memref<256xf32>) outs(%a : memref<256xf32>) params {}
  %v = mixrt.view %a : memref<256xf32> to memref<16x16xf32>
  %b = mixrt.alloc : memref<256xf32>
  mixrt.kernel "softmax" ins(%x : memref<256xf32>) outs(%b : memref<256xf32>) params {}
  %c = mixrt.alloc : memref<3xf32>
  mixrt.kernel "softmax" ins(%b : memref<256xf32>) outs(%c : memref<3xf32>) params {}
  mixrt.kernel "softmax" ins(%v : memref<16x16xf32>) outs(%c : memref<3xf32>) params {}
  return %c : memref<3xf32>
}

// -----

// Returned buffers live to the end and are never overwritten by later ones.
// CHECK-LABEL: func.func @outputs_survive
// CHECK-SAME: mixrt.arena_bytes = 2048 : i64
// CHECK: mixrt.alloc {offset = 0 : i64}
// CHECK: mixrt.alloc {offset = 1024 : i64}
func.func @outputs_survive(%x: memref<256xf32>) -> (memref<256xf32>, memref<256xf32>) {
  %a = mixrt.alloc : memref<256xf32>
  mixrt.kernel "softmax" ins(%x : memref<256xf32>) outs(%a : memref<256xf32>) params {}
  %b = mixrt.alloc : memref<256xf32>
  mixrt.kernel "softmax" ins(%x : memref<256xf32>) outs(%b : memref<256xf32>) params {}
  return %a, %b : memref<256xf32>, memref<256xf32>
}

// -----

// The optimizer update writes the parameter and its moments in their own
// storage: the arena holds only the gradient, live until the update reads it.
// CHECK-LABEL: func.func @update_in_place
// CHECK-SAME: mixrt.arena_bytes = 1024 : i64
// CHECK: mixrt.alloc {offset = 0 : i64} : memref<256xf32>
// CHECK-NOT: mixrt.alloc
// CHECK: mixrt.kernel "adamw" {{.*}} outs(%arg0, %arg1, %arg2 :
func.func @update_in_place(%w: memref<256xf32>, %m: memref<256xf32>, %v: memref<256xf32>,
                           %lr: memref<f32>, %step: memref<i32>, %none: memref<0xf32>) {
  %g = mixrt.alloc : memref<256xf32>
  mixrt.kernel "softmax" ins(%w : memref<256xf32>) outs(%g : memref<256xf32>) params {}
  mixrt.kernel "adamw" ins(%g, %lr, %step, %none, %none : memref<256xf32>, memref<f32>, memref<i32>, memref<0xf32>, memref<0xf32>) outs(%w, %m, %v : memref<256xf32>, memref<256xf32>, memref<256xf32>) params {b1 = 0.9, b2 = 0.999, eps = 1.0e-6, weight_decay = 0.01, max_norm = 0.0, micro_steps = 1}
  return
}

// -----

// The lowest fit may lie between buffers live at the same time, in the bytes
// of one that is dead by then: %d fits where %b was, below %c.
// CHECK-LABEL: func.func @gap_of_a_dead_buffer
// CHECK-SAME: mixrt.arena_bytes = 3072 : i64
// CHECK: mixrt.alloc {offset = 0 : i64} : memref<256xf32>
// CHECK: mixrt.alloc {offset = 1024 : i64} : memref<256xf32>
// CHECK: mixrt.alloc {offset = 2048 : i64} : memref<256xf32>
// CHECK: mixrt.alloc {offset = 1024 : i64} : memref<64xf32>
func.func @gap_of_a_dead_buffer(%x: memref<256xf32>) -> memref<256xf32> {
  %a = mixrt.alloc : memref<256xf32>
  mixrt.kernel "softmax" ins(%x : memref<256xf32>) outs(%a : memref<256xf32>) params {}
  %b = mixrt.alloc : memref<256xf32>
  mixrt.kernel "softmax" ins(%a : memref<256xf32>) outs(%b : memref<256xf32>) params {}
  %c = mixrt.alloc : memref<256xf32>
  mixrt.kernel "softmax" ins(%b : memref<256xf32>) outs(%c : memref<256xf32>) params {}
  %d = mixrt.alloc : memref<64xf32>
  mixrt.kernel "softmax" ins(%c : memref<256xf32>) outs(%d : memref<64xf32>) params {}
  mixrt.kernel "add" ins(%a, %d : memref<256xf32>, memref<64xf32>) outs(%c : memref<256xf32>) params {}
  return %c : memref<256xf32>
}
