// RUN: mixer-opt %s --split-input-file --mixrt-assign-precision="target=cpu precision=bf16" | FileCheck %s
// RUN: mixer-opt %s --split-input-file --mixrt-assign-precision="target=cpu precision=fp32" | FileCheck %s --check-prefix=FP32

// On the CPU dense, experts, attention and linear mixing take bf16 (the
// first two here): every product whose result is
// an activation is marked bf16, the router's product is not, and only the
// feed-forward hidden layer (between two dense steps) is stored in bf16. The
// LayerNorm's input and output, the experts' rows and the returned value
// stay f32.
// CHECK-LABEL: func.func @layer
// CHECK-SAME: -> memref<8x4xf32>
// CHECK: %[[H:.*]] = mixrt.alloc : memref<8x16xbf16>
// CHECK: "dense" ins(%{{.*}} : memref<8x4xf32>, {{.*}}) outs(%[[H]] : memref<8x16xbf16>) params {activation = "gelu", bf16 = true, transpose_w = false}
// CHECK: %[[Y:.*]] = mixrt.alloc : memref<8x4xf32>
// CHECK: "dense" ins(%[[H]], {{.*}} : memref<8x16xbf16>, {{.*}}) outs(%[[Y]] : memref<8x4xf32>) params {activation = "none", bf16 = true, transpose_w = false}
// CHECK: "layer_norm"{{.*}}: memref<8x4xf32>
// CHECK: "dense"{{.*}}outs(%{{.*}} : memref<8x2xf32>) params {activation = "none", transpose_w = false}
// CHECK: "softmax"
// CHECK: "dispatch"{{.*}}outs(%{{.*}} : memref<8x4xf32>)
// CHECK: "experts"{{.*}}outs(%{{.*}} : memref<8x4xf32>) params {activation = "gelu", bf16 = true, layout = "capacity"}
// CHECK: "combine"{{.*}}outs(%{{.*}} : memref<8x4xf32>)
// FP32-LABEL: func.func @layer
// FP32-NOT: bf16
func.func @layer(%x: memref<8x4xf32>, %w1: memref<4x16xf32> {mixer.param = "w1"}, %w2: memref<16x4xf32> {mixer.param = "w2"}, %s: memref<4xf32> {mixer.param = "s"}, %b: memref<4xf32> {mixer.param = "b"}, %wr: memref<4x2xf32> {mixer.param = "wr"}, %e1: memref<2x4x5xf32> {mixer.param = "e1"}, %e2: memref<2x5x4xf32> {mixer.param = "e2"}) -> memref<8x4xf32> {
  %none = mixrt.none : memref<0xf32>
  %h = mixrt.alloc : memref<8x16xf32>
  mixrt.kernel "dense" ins(%x, %w1, %none : memref<8x4xf32>, memref<4x16xf32>, memref<0xf32>) outs(%h : memref<8x16xf32>) params {activation = "gelu", transpose_w = false}
  %y = mixrt.alloc : memref<8x4xf32>
  mixrt.kernel "dense" ins(%h, %w2, %none : memref<8x16xf32>, memref<16x4xf32>, memref<0xf32>) outs(%y : memref<8x4xf32>) params {activation = "none", transpose_w = false}
  %n = mixrt.alloc : memref<8x4xf32>
  mixrt.kernel "layer_norm" ins(%y, %x, %s, %b : memref<8x4xf32>, memref<8x4xf32>, memref<4xf32>, memref<4xf32>) outs(%n : memref<8x4xf32>) params {epsilon = 1.0e-06 : f64}
  %l = mixrt.alloc : memref<8x2xf32>
  mixrt.kernel "dense" ins(%n, %wr, %none : memref<8x4xf32>, memref<4x2xf32>, memref<0xf32>) outs(%l : memref<8x2xf32>) params {activation = "none", transpose_w = false}
  %p = mixrt.alloc : memref<8x2xf32>
  mixrt.kernel "softmax" ins(%l : memref<8x2xf32>) outs(%p : memref<8x2xf32>) params {}
  %t = mixrt.alloc : memref<8xi32>
  %g = mixrt.alloc : memref<8xf32>
  %o = mixrt.alloc : memref<3xi32>
  mixrt.kernel "route_tokens_choose" ins(%p : memref<8x2xf32>) outs(%t, %g, %o : memref<8xi32>, memref<8xf32>, memref<3xi32>) params {batch_prioritized = false, capacity = 4 : i64, groups = 1 : i64, k = 1 : i64, tokens_per_group = 8 : i64}
  %xd = mixrt.alloc : memref<8x4xf32>
  mixrt.kernel "dispatch" ins(%n, %t : memref<8x4xf32>, memref<8xi32>) outs(%xd : memref<8x4xf32>) params {}
  %yd = mixrt.alloc : memref<8x4xf32>
  mixrt.kernel "experts" ins(%xd, %t, %o, %e1, %none, %e2, %none : memref<8x4xf32>, memref<8xi32>, memref<3xi32>, memref<2x4x5xf32>, memref<0xf32>, memref<2x5x4xf32>, memref<0xf32>) outs(%yd : memref<8x4xf32>) params {activation = "gelu", layout = "capacity"}
  %out = mixrt.alloc : memref<8x4xf32>
  mixrt.kernel "combine" ins(%yd, %t, %g : memref<8x4xf32>, memref<8xi32>, memref<8xf32>) outs(%out : memref<8x4xf32>) params {}
  return %out : memref<8x4xf32>
}

// -----

// A dense layer whose result the function returns computes in bf16 and
// writes f32.
// CHECK-LABEL: func.func @pooler
// CHECK-SAME: -> memref<2x4xf32>
// CHECK: "dense"{{.*}}outs(%{{.*}} : memref<2x4xf32>) params {activation = "tanh", bf16 = true, transpose_w = false}
func.func @pooler(%x: memref<2x4xf32>, %w: memref<4x4xf32> {mixer.param = "w"}) -> memref<2x4xf32> {
  %none = mixrt.none : memref<0xf32>
  %y = mixrt.alloc : memref<2x4xf32>
  mixrt.kernel "dense" ins(%x, %w, %none : memref<2x4xf32>, memref<4x4xf32>, memref<0xf32>) outs(%y : memref<2x4xf32>) params {activation = "tanh", transpose_w = false}
  return %y : memref<2x4xf32>
}

// -----

// Attention and linear mixing compute their products in bf16: the Q, K and V
// projections and the attention output (between bf16 kernels) are stored in
// bf16; linear mixing reads the LayerNorm's f32 output and writes the f32
// buffer the next LayerNorm reads.
// CHECK-LABEL: func.func @mixing
// CHECK: %[[Q:.*]] = mixrt.alloc : memref<2x4x4xbf16>
// CHECK: "dense"{{.*}}outs(%[[Q]] : memref<2x4x4xbf16>) params {activation = "none", bf16 = true, transpose_w = false}
// CHECK: %[[K:.*]] = mixrt.alloc : memref<2x4x4xbf16>
// CHECK: %[[V:.*]] = mixrt.alloc : memref<2x4x4xbf16>
// CHECK: %[[A:.*]] = mixrt.alloc : memref<2x4x4xbf16>
// CHECK: "attention" ins(%[[Q]], %[[K]], %[[V]], {{.*}} : memref<2x4x4xbf16>, memref<2x4x4xbf16>, memref<2x4x4xbf16>, {{.*}}) outs(%[[A]] : memref<2x4x4xbf16>) params {bf16 = true, causal = false
// CHECK: "dense" ins(%[[A]], {{.*}}outs(%{{.*}} : memref<2x4x4xf32>) params {activation = "none", bf16 = true, transpose_w = false}
// CHECK: "layer_norm"{{.*}}outs(%[[N:.*]] : memref<2x4x4xf32>)
// CHECK: "linear_mix" ins(%[[N]], {{.*}} : memref<2x4x4xf32>, {{.*}}) outs(%{{.*}} : memref<2x4x4xf32>) params {bf16 = true}
// FP32-LABEL: func.func @mixing
// FP32-NOT: bf16
func.func @mixing(%x: memref<2x4x4xf32>, %wq: memref<4x4xf32> {mixer.param = "wq"}, %wk: memref<4x4xf32> {mixer.param = "wk"}, %wv: memref<4x4xf32> {mixer.param = "wv"}, %wo: memref<4x4xf32> {mixer.param = "wo"}, %s: memref<4xf32> {mixer.param = "s"}, %b: memref<4xf32> {mixer.param = "b"}, %ws: memref<4x4xf32> {mixer.param = "ws"}, %wh: memref<4x4xf32> {mixer.param = "wh"}) -> memref<2x4x4xf32> {
  %none = mixrt.none : memref<0xf32>
  %q = mixrt.alloc : memref<2x4x4xf32>
  mixrt.kernel "dense" ins(%x, %wq, %none : memref<2x4x4xf32>, memref<4x4xf32>, memref<0xf32>) outs(%q : memref<2x4x4xf32>) params {activation = "none", transpose_w = false}
  %k = mixrt.alloc : memref<2x4x4xf32>
  mixrt.kernel "dense" ins(%x, %wk, %none : memref<2x4x4xf32>, memref<4x4xf32>, memref<0xf32>) outs(%k : memref<2x4x4xf32>) params {activation = "none", transpose_w = false}
  %v = mixrt.alloc : memref<2x4x4xf32>
  mixrt.kernel "dense" ins(%x, %wv, %none : memref<2x4x4xf32>, memref<4x4xf32>, memref<0xf32>) outs(%v : memref<2x4x4xf32>) params {activation = "none", transpose_w = false}
  %a = mixrt.alloc : memref<2x4x4xf32>
  mixrt.kernel "attention" ins(%q, %k, %v, %none, %none, %none, %none : memref<2x4x4xf32>, memref<2x4x4xf32>, memref<2x4x4xf32>, memref<0xf32>, memref<0xf32>, memref<0xf32>, memref<0xf32>) outs(%a : memref<2x4x4xf32>) params {causal = false, dropout_rate = 0.0 : f64, head_dim = 2 : i64, num_heads = 2 : i64, pad_id = 0 : i64, stream = 0 : i64}
  %o = mixrt.alloc : memref<2x4x4xf32>
  mixrt.kernel "dense" ins(%a, %wo, %none : memref<2x4x4xf32>, memref<4x4xf32>, memref<0xf32>) outs(%o : memref<2x4x4xf32>) params {activation = "none", transpose_w = false}
  %n = mixrt.alloc : memref<2x4x4xf32>
  mixrt.kernel "layer_norm" ins(%o, %x, %s, %b : memref<2x4x4xf32>, memref<2x4x4xf32>, memref<4xf32>, memref<4xf32>) outs(%n : memref<2x4x4xf32>) params {epsilon = 1.0e-06 : f64}
  %m = mixrt.alloc : memref<2x4x4xf32>
  mixrt.kernel "linear_mix" ins(%n, %ws, %wh : memref<2x4x4xf32>, memref<4x4xf32>, memref<4x4xf32>) outs(%m : memref<2x4x4xf32>) params {}
  %y = mixrt.alloc : memref<2x4x4xf32>
  mixrt.kernel "layer_norm" ins(%m, %n, %s, %b : memref<2x4x4xf32>, memref<2x4x4xf32>, memref<4xf32>, memref<4xf32>) outs(%y : memref<2x4x4xf32>) params {epsilon = 1.0e-06 : f64}
  return %y : memref<2x4x4xf32>
}
