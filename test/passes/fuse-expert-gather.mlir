// RUN: mixer-opt %s --split-input-file --mixrt-fuse-expert-gather=target=cuda | FileCheck %s
// RUN: mixer-opt %s --split-input-file --mixrt-fuse-expert-gather=target=cpu | FileCheck %s --check-prefix=CPU
// RUN: mixer-opt %s --split-input-file --mixrt-fuse-expert-gather | FileCheck %s --check-prefix=CPU

// The CPU experts read dispatched rows: nothing changes there.
// CPU-NOT: gather = true

// A dispatch read only by the experts disappears with its buffer: the
// experts read the token rows x [4, 8] through the tokens.
// CHECK-LABEL: func.func @forward
// CHECK-SAME: (%[[X:[^:]*]]: memref<4x8xf32>, %[[T:[^:]*]]: memref<6xi32>
// CHECK-NEXT: mixrt.none
// CHECK-NEXT: %[[YD:.*]] = mixrt.alloc : memref<6x8xf32>
// CHECK-NEXT: mixrt.kernel "experts" ins(%[[X]], %[[T]], {{.*}} : memref<4x8xf32>, memref<6xi32>, {{.*}}) outs(%[[YD]] : memref<6x8xf32>) params {activation = "gelu", gather = true, layout = "grouped"}
// CHECK-NEXT: return %[[YD]]
func.func @forward(%x: memref<4x8xf32>, %t: memref<6xi32>, %o: memref<3xi32>, %w1: memref<2x8x5xf32>, %w2: memref<2x5x8xf32>) -> memref<6x8xf32> {
  %none = mixrt.none : memref<0xf32>
  %xd = mixrt.alloc : memref<6x8xf32>
  mixrt.kernel "dispatch" ins(%x, %t : memref<4x8xf32>, memref<6xi32>) outs(%xd : memref<6x8xf32>) params {}
  %yd = mixrt.alloc : memref<6x8xf32>
  mixrt.kernel "experts" ins(%xd, %t, %o, %w1, %none, %w2, %none : memref<6x8xf32>, memref<6xi32>, memref<3xi32>, memref<2x8x5xf32>, memref<0xf32>, memref<2x5x8xf32>, memref<0xf32>) outs(%yd : memref<6x8xf32>) params {activation = "gelu", layout = "grouped"}
  return %yd : memref<6x8xf32>
}

// -----

// A training step: the forward experts and experts_grad both gather; the
// per-slot input gradient dxd stays, and dispatch_grad sums it into dx.
// CHECK-LABEL: func.func @training
// CHECK-SAME: (%[[X:[^:]*]]: memref<4x8xbf16>, %[[T:[^:]*]]: memref<6xi32>
// CHECK-NOT: "dispatch"
// CHECK: mixrt.kernel "experts" ins(%[[X]], %[[T]], {{.*}} params {activation = "relu", gather = true, layout = "grouped"}
// CHECK: mixrt.kernel "experts_grad" ins(%[[X]], %[[T]], {{.*}} outs(%[[DXD:[^,]*]], {{.*}} params {activation = "relu", gather = true, layout = "grouped"}
// CHECK: mixrt.kernel "dispatch_grad" ins(%[[DXD]], %[[T]] :
func.func @training(%x: memref<4x8xbf16>, %t: memref<6xi32>, %o: memref<3xi32>, %w1: memref<2x8x5xf32>, %w2: memref<2x5x8xf32>, %dyd: memref<6x8xbf16>) -> (memref<6x8xbf16>, memref<4x8xbf16>, memref<2x8x5xf32>) {
  %none = mixrt.none : memref<0xf32>
  %xd = mixrt.alloc : memref<6x8xbf16>
  mixrt.kernel "dispatch" ins(%x, %t : memref<4x8xbf16>, memref<6xi32>) outs(%xd : memref<6x8xbf16>) params {}
  %yd = mixrt.alloc : memref<6x8xbf16>
  mixrt.kernel "experts" ins(%xd, %t, %o, %w1, %none, %w2, %none : memref<6x8xbf16>, memref<6xi32>, memref<3xi32>, memref<2x8x5xf32>, memref<0xf32>, memref<2x5x8xf32>, memref<0xf32>) outs(%yd : memref<6x8xbf16>) params {activation = "relu", layout = "grouped"}
  %dxd = mixrt.alloc : memref<6x8xbf16>
  %dw1 = mixrt.alloc : memref<2x8x5xf32>
  %db1 = mixrt.alloc : memref<2x5xf32>
  %dw2 = mixrt.alloc : memref<2x5x8xf32>
  %db2 = mixrt.alloc : memref<2x8xf32>
  mixrt.kernel "experts_grad" ins(%xd, %t, %o, %w1, %none, %w2, %dyd : memref<6x8xbf16>, memref<6xi32>, memref<3xi32>, memref<2x8x5xf32>, memref<0xf32>, memref<2x5x8xf32>, memref<6x8xbf16>) outs(%dxd, %dw1, %db1, %dw2, %db2 : memref<6x8xbf16>, memref<2x8x5xf32>, memref<2x5xf32>, memref<2x5x8xf32>, memref<2x8xf32>) params {activation = "relu", layout = "grouped"}
  %dx = mixrt.alloc : memref<4x8xbf16>
  mixrt.kernel "dispatch_grad" ins(%dxd, %t : memref<6x8xbf16>, memref<6xi32>) outs(%dx : memref<4x8xbf16>) params {}
  return %yd, %dx, %dw1 : memref<6x8xbf16>, memref<4x8xbf16>, memref<2x8x5xf32>
}

// -----

// The dispatched rows have another reader (a softmax here), so they must
// exist: the dispatch stays and the experts read its result.
// CHECK-LABEL: func.func @other_user
// CHECK: %[[XD:.*]] = mixrt.alloc : memref<6x8xf32>
// CHECK: mixrt.kernel "dispatch" {{.*}} outs(%[[XD]] :
// CHECK: mixrt.kernel "experts" ins(%[[XD]], {{.*}} params {activation = "gelu", layout = "grouped"}
// CHECK: mixrt.kernel "softmax" ins(%[[XD]] :
func.func @other_user(%x: memref<4x8xf32>, %t: memref<6xi32>, %o: memref<3xi32>, %w1: memref<2x8x5xf32>, %w2: memref<2x5x8xf32>) -> (memref<6x8xf32>, memref<6x8xf32>) {
  %none = mixrt.none : memref<0xf32>
  %xd = mixrt.alloc : memref<6x8xf32>
  mixrt.kernel "dispatch" ins(%x, %t : memref<4x8xf32>, memref<6xi32>) outs(%xd : memref<6x8xf32>) params {}
  %yd = mixrt.alloc : memref<6x8xf32>
  mixrt.kernel "experts" ins(%xd, %t, %o, %w1, %none, %w2, %none : memref<6x8xf32>, memref<6xi32>, memref<3xi32>, memref<2x8x5xf32>, memref<0xf32>, memref<2x5x8xf32>, memref<0xf32>) outs(%yd : memref<6x8xf32>) params {activation = "gelu", layout = "grouped"}
  %s = mixrt.alloc : memref<6x8xf32>
  mixrt.kernel "softmax" ins(%xd : memref<6x8xf32>) outs(%s : memref<6x8xf32>) params {}
  return %yd, %s : memref<6x8xf32>, memref<6x8xf32>
}

// -----

// Experts that read the rows through other tokens (here a second routing's)
// do not index x with the dispatch's tokens: the dispatch stays.
// CHECK-LABEL: func.func @other_tokens
// CHECK: mixrt.kernel "dispatch"
// CHECK-NOT: gather = true
func.func @other_tokens(%x: memref<4x8xf32>, %t: memref<6xi32>, %u: memref<6xi32>, %o: memref<3xi32>, %w1: memref<2x8x5xf32>, %w2: memref<2x5x8xf32>) -> memref<6x8xf32> {
  %none = mixrt.none : memref<0xf32>
  %xd = mixrt.alloc : memref<6x8xf32>
  mixrt.kernel "dispatch" ins(%x, %t : memref<4x8xf32>, memref<6xi32>) outs(%xd : memref<6x8xf32>) params {}
  %yd = mixrt.alloc : memref<6x8xf32>
  mixrt.kernel "experts" ins(%xd, %u, %o, %w1, %none, %w2, %none : memref<6x8xf32>, memref<6xi32>, memref<3xi32>, memref<2x8x5xf32>, memref<0xf32>, memref<2x5x8xf32>, memref<0xf32>) outs(%yd : memref<6x8xf32>) params {activation = "gelu", layout = "grouped"}
  return %yd : memref<6x8xf32>
}

// -----

// Token rows kept in f32 (the router's input) while the dispatched rows are
// bf16: the experts would read another element type, so the dispatch stays.
// CHECK-LABEL: func.func @element_type
// CHECK: mixrt.kernel "dispatch"
// CHECK-NOT: gather = true
func.func @element_type(%x: memref<4x8xf32>, %t: memref<6xi32>, %o: memref<3xi32>, %w1: memref<2x8x5xf32>, %w2: memref<2x5x8xf32>) -> memref<6x8xbf16> {
  %none = mixrt.none : memref<0xf32>
  %xd = mixrt.alloc : memref<6x8xbf16>
  mixrt.kernel "dispatch" ins(%x, %t : memref<4x8xf32>, memref<6xi32>) outs(%xd : memref<6x8xbf16>) params {}
  %yd = mixrt.alloc : memref<6x8xbf16>
  mixrt.kernel "experts" ins(%xd, %t, %o, %w1, %none, %w2, %none : memref<6x8xbf16>, memref<6xi32>, memref<3xi32>, memref<2x8x5xf32>, memref<0xf32>, memref<2x5x8xf32>, memref<0xf32>) outs(%yd : memref<6x8xbf16>) params {activation = "gelu", layout = "grouped"}
  return %yd : memref<6x8xbf16>
}

// -----

// A kernel after the dispatch writes the token rows in place (an optimizer
// update of a parameter the layer reads as its rows): the experts must read
// the copy taken before it, so the dispatch stays.
// CHECK-LABEL: func.func @rows_change
// CHECK: mixrt.kernel "dispatch"
// CHECK-NOT: gather = true
func.func @rows_change(%x: memref<4x8xf32> {mixer.param = "x"}, %t: memref<6xi32>, %o: memref<3xi32>, %w1: memref<2x8x5xf32>, %w2: memref<2x5x8xf32>, %g: memref<4x8xf32>, %lr: memref<f32>, %step: memref<i32>, %m: memref<4x8xf32>, %v: memref<4x8xf32>) -> memref<6x8xf32> {
  %none = mixrt.none : memref<0xf32>
  %xd = mixrt.alloc : memref<6x8xf32>
  mixrt.kernel "dispatch" ins(%x, %t : memref<4x8xf32>, memref<6xi32>) outs(%xd : memref<6x8xf32>) params {}
  %n = mixrt.none : memref<0xf32>
  %ni = mixrt.none : memref<0xi32>
  mixrt.kernel "adamw" ins(%g, %lr, %step, %n, %ni : memref<4x8xf32>, memref<f32>, memref<i32>, memref<0xf32>, memref<0xi32>) outs(%x, %m, %v : memref<4x8xf32>, memref<4x8xf32>, memref<4x8xf32>) params {b1 = 9.000000e-01 : f64, b2 = 9.990000e-01 : f64, eps = 1.000000e-08 : f64, weight_decay = 0.000000e+00 : f64, max_norm = 0.000000e+00 : f64, micro_steps = 1 : i64}
  %yd = mixrt.alloc : memref<6x8xf32>
  mixrt.kernel "experts" ins(%xd, %t, %o, %w1, %none, %w2, %none : memref<6x8xf32>, memref<6xi32>, memref<3xi32>, memref<2x8x5xf32>, memref<0xf32>, memref<2x5x8xf32>, memref<0xf32>) outs(%yd : memref<6x8xf32>) params {activation = "gelu", layout = "grouped"}
  return %yd : memref<6x8xf32>
}
