// RUN: mixer-opt %s --split-input-file --mixrt-assign-precision="target=cuda precision=bf16" | FileCheck %s
// RUN: mixer-opt %s --split-input-file --mixrt-assign-precision="target=cuda precision=fp32" | FileCheck %s --check-prefix=FP32
// RUN: not mixer-opt %s --split-input-file --mixrt-assign-precision="target=tpu precision=bf16" 2>&1 | FileCheck %s --check-prefix=TPU
// RUN: not mixer-opt %s --split-input-file --mixrt-assign-precision="target=cuda precision=fp8" 2>&1 | FileCheck %s --check-prefix=BAD

// TPU: error: precision bf16 is not supported by target 'tpu'
// BAD: error: unknown precision 'fp8' (expected fp32 or bf16)

// Producers write bf16 activations, elementwise kernels follow their
// operands (an absent one, as random_scale's micro_step, does not count),
// views take their buffer's type, and the function returns bf16.
// Parameters and the scalar loss stay f32.
// CHECK-LABEL: func.func @activations
// CHECK-SAME: -> (memref<4x8xbf16>, memref<f32>)
// CHECK: %[[H:.*]] = mixrt.alloc : memref<2x2x8xbf16>
// CHECK: "dense" ins({{.*}} : memref<2x2x4xf32>, memref<4x8xf32>, memref<0xf32>) outs(%[[H]] : memref<2x2x8xbf16>)
// CHECK: %[[D:.*]] = mixrt.alloc : memref<2x2x8xbf16>
// CHECK: "random_scale" ins(%[[H]], {{.*}} : memref<2x2x8xbf16>, memref<i32>, memref<i32>, memref<0xf32>) outs(%[[D]] : memref<2x2x8xbf16>)
// CHECK: %[[G:.*]] = mixrt.alloc : memref<2x2x8xbf16>
// CHECK: "activation" ins(%[[D]] : memref<2x2x8xbf16>) outs(%[[G]] : memref<2x2x8xbf16>)
// CHECK: %[[V:.*]] = mixrt.view %[[G]] : memref<2x2x8xbf16> to memref<4x8xbf16>
// CHECK: mixrt.alloc : memref<f32>
// CHECK: return %[[V]], %{{.*}} : memref<4x8xbf16>, memref<f32>
// FP32-LABEL: func.func @activations
// FP32-NOT: bf16
func.func @activations(%x: memref<2x2x4xf32>, %w: memref<4x8xf32> {mixer.param = "w"}, %labels: memref<4xi32>, %seed: memref<i32>, %step: memref<i32>) -> (memref<4x8xf32>, memref<f32>) {
  %none = mixrt.none : memref<0xf32>
  %h = mixrt.alloc : memref<2x2x8xf32>
  mixrt.kernel "dense" ins(%x, %w, %none : memref<2x2x4xf32>, memref<4x8xf32>, memref<0xf32>) outs(%h : memref<2x2x8xf32>) params {activation = "none", transpose_w = false}
  %d = mixrt.alloc : memref<2x2x8xf32>
  mixrt.kernel "random_scale" ins(%h, %seed, %step, %none : memref<2x2x8xf32>, memref<i32>, memref<i32>, memref<0xf32>) outs(%d : memref<2x2x8xf32>) params {kind = "dropout", rate = 0.1 : f64, stream = 0 : i64}
  %g = mixrt.alloc : memref<2x2x8xf32>
  mixrt.kernel "activation" ins(%d : memref<2x2x8xf32>) outs(%g : memref<2x2x8xf32>) params {kind = "gelu"}
  %v = mixrt.view %g : memref<2x2x8xf32> to memref<4x8xf32>
  %loss = mixrt.alloc : memref<f32>
  mixrt.kernel "softmax_cross_entropy" ins(%v, %labels, %none : memref<4x8xf32>, memref<4xi32>, memref<0xf32>) outs(%loss : memref<f32>) params {}
  return %v, %loss : memref<4x8xf32>, memref<f32>
}

// -----

// The router's logits and probabilities stay f32: routing demands its
// operand in f32, which keeps the softmax before it and the router's dense
// in f32 too, while the dense still reads the bf16 activation.
// CHECK-LABEL: func.func @router
// CHECK: %[[X:.*]] = mixrt.alloc : memref<8x4xbf16>
// CHECK: "layer_norm"{{.*}}outs(%[[X]] : memref<8x4xbf16>)
// CHECK: %[[L:.*]] = mixrt.alloc : memref<8x2xf32>
// CHECK: "dense" ins(%[[X]], {{.*}}outs(%[[L]] : memref<8x2xf32>)
// CHECK: %[[P:.*]] = mixrt.alloc : memref<8x2xf32>
// CHECK: "softmax" ins(%[[L]] : memref<8x2xf32>) outs(%[[P]] : memref<8x2xf32>)
// CHECK: "route_tokens_choose" ins(%[[P]] : memref<8x2xf32>)
func.func @router(%in: memref<8x4xf32>, %s: memref<4xf32> {mixer.param = "s"}, %b: memref<4xf32> {mixer.param = "b"}, %w: memref<4x2xf32> {mixer.param = "w"}) -> memref<8xi32> {
  %none = mixrt.none : memref<0xf32>
  %x = mixrt.alloc : memref<8x4xf32>
  mixrt.kernel "layer_norm" ins(%in, %none, %s, %b : memref<8x4xf32>, memref<0xf32>, memref<4xf32>, memref<4xf32>) outs(%x : memref<8x4xf32>) params {epsilon = 1.0e-06 : f64}
  %l = mixrt.alloc : memref<8x2xf32>
  mixrt.kernel "dense" ins(%x, %w, %none : memref<8x4xf32>, memref<4x2xf32>, memref<0xf32>) outs(%l : memref<8x2xf32>) params {activation = "none", transpose_w = false}
  %p = mixrt.alloc : memref<8x2xf32>
  mixrt.kernel "softmax" ins(%l : memref<8x2xf32>) outs(%p : memref<8x2xf32>) params {}
  %t = mixrt.alloc : memref<8xi32>
  %g = mixrt.alloc : memref<8xf32>
  %o = mixrt.alloc : memref<3xi32>
  mixrt.kernel "route_tokens_choose" ins(%p : memref<8x2xf32>) outs(%t, %g, %o : memref<8xi32>, memref<8xf32>, memref<3xi32>) params {batch_prioritized = false, capacity = 4 : i64, groups = 1 : i64, k = 1 : i64, tokens_per_group = 8 : i64}
  return %t : memref<8xi32>
}

// -----

// The bfloat16 router rounds the bf16 activation into an f32 copy (the
// activation itself stays bf16 for the experts); its product, logits and
// probabilities are f32.
// CHECK-LABEL: func.func @bf16_router
// CHECK: %[[X:.*]] = mixrt.alloc : memref<8x4xbf16>
// CHECK: %[[XR:.*]] = mixrt.alloc : memref<8x4xf32>
// CHECK: "round_bf16" ins(%[[X]] : memref<8x4xbf16>) outs(%[[XR]] : memref<8x4xf32>)
// CHECK: %[[D:.*]] = mixrt.alloc : memref<8x2xf32>
// CHECK: "dense" ins(%[[XR]], {{.*}}outs(%[[D]] : memref<8x2xf32>)
// CHECK: %[[L:.*]] = mixrt.alloc : memref<8x2xf32>
// CHECK: "router_logits_bf16" ins(%[[D]], {{.*}}outs(%[[L]] : memref<8x2xf32>)
// CHECK: "softmax" ins(%[[L]] : memref<8x2xf32>) outs(%{{.*}} : memref<8x2xf32>) params {bf16 = true}
// CHECK: "dispatch" ins(%[[X]], {{.*}} : memref<8x4xbf16>
// FP32-LABEL: func.func @bf16_router
// FP32: "round_bf16" ins(%{{.*}} : memref<8x4xf32>)
func.func @bf16_router(%in: memref<8x4xf32>, %s: memref<4xf32> {mixer.param = "s"}, %b: memref<4xf32> {mixer.param = "b"}, %w: memref<4x2xf32> {mixer.param = "w"}, %rb: memref<2xf32> {mixer.param = "rb"}) -> (memref<8xi32>, memref<8x4xf32>) {
  %none = mixrt.none : memref<0xf32>
  %x = mixrt.alloc : memref<8x4xf32>
  mixrt.kernel "layer_norm" ins(%in, %none, %s, %b : memref<8x4xf32>, memref<0xf32>, memref<4xf32>, memref<4xf32>) outs(%x : memref<8x4xf32>) params {epsilon = 1.0e-06 : f64}
  %xr = mixrt.alloc : memref<8x4xf32>
  mixrt.kernel "round_bf16" ins(%x : memref<8x4xf32>) outs(%xr : memref<8x4xf32>) params {}
  %d = mixrt.alloc : memref<8x2xf32>
  mixrt.kernel "dense" ins(%xr, %w, %none : memref<8x4xf32>, memref<4x2xf32>, memref<0xf32>) outs(%d : memref<8x2xf32>) params {activation = "none", transpose_w = false}
  %l = mixrt.alloc : memref<8x2xf32>
  mixrt.kernel "router_logits_bf16" ins(%d, %rb : memref<8x2xf32>, memref<2xf32>) outs(%l : memref<8x2xf32>) params {}
  %p = mixrt.alloc : memref<8x2xf32>
  mixrt.kernel "softmax" ins(%l : memref<8x2xf32>) outs(%p : memref<8x2xf32>) params {bf16 = true}
  %t = mixrt.alloc : memref<8xi32>
  %g = mixrt.alloc : memref<8xf32>
  %o = mixrt.alloc : memref<3xi32>
  mixrt.kernel "route_tokens_choose" ins(%p : memref<8x2xf32>) outs(%t, %g, %o : memref<8xi32>, memref<8xf32>, memref<3xi32>) params {batch_prioritized = false, capacity = 4 : i64, groups = 1 : i64, k = 1 : i64, tokens_per_group = 8 : i64}
  %xd = mixrt.alloc : memref<8x4xf32>
  mixrt.kernel "dispatch" ins(%x, %t : memref<8x4xf32>, memref<8xi32>) outs(%xd : memref<8x4xf32>) params {}
  return %t, %xd : memref<8xi32>, memref<8x4xf32>
}

// -----

// Parameter gradients stay f32; the activation gradient is bf16, and an add
// of an f32 and a bf16 buffer stays f32.
// CHECK-LABEL: func.func @gradients
// CHECK: "layer_norm_grad"{{.*}}outs(%{{.*}}, %{{.*}}, %{{.*}} : memref<8x4xbf16>, memref<4xf32>, memref<4xf32>)
// CHECK: "dense_weight_grad"{{.*}}outs(%{{.*}} : memref<4x4xf32>)
// CHECK: "add"{{.*}}outs(%{{.*}} : memref<4xf32>)
func.func @gradients(%x: memref<8x4xf32>, %s: memref<4xf32> {mixer.param = "s"}, %dy: memref<8x4xf32>) -> (memref<8x4xf32>, memref<4x4xf32>, memref<4xf32>) {
  %none = mixrt.none : memref<0xf32>
  %dx = mixrt.alloc : memref<8x4xf32>
  %ds = mixrt.alloc : memref<4xf32>
  %db = mixrt.alloc : memref<4xf32>
  mixrt.kernel "layer_norm_grad" ins(%x, %none, %s, %dy : memref<8x4xf32>, memref<0xf32>, memref<4xf32>, memref<8x4xf32>) outs(%dx, %ds, %db : memref<8x4xf32>, memref<4xf32>, memref<4xf32>) params {epsilon = 1.0e-06 : f64}
  %dw = mixrt.alloc : memref<4x4xf32>
  mixrt.kernel "dense_weight_grad" ins(%x, %dx : memref<8x4xf32>, memref<8x4xf32>) outs(%dw : memref<4x4xf32>) params {transpose_w = false}
  %sum = mixrt.alloc : memref<4xf32>
  mixrt.kernel "add" ins(%ds, %db : memref<4xf32>, memref<4xf32>) outs(%sum : memref<4xf32>) params {}
  return %dx, %dw, %sum : memref<8x4xf32>, memref<4x4xf32>, memref<4xf32>
}
