// RUN: mixer-opt %s --split-input-file --verify-diagnostics --mixer-autodiff | FileCheck %s

// A dense → GELU → LayerNorm → sum chain: gradients flow backwards through
// every op; the bias used twice receives the sum of both contributions; a
// parameter the loss does not use gets zeros.
// CHECK-LABEL: func.func @forward
// CHECK-SAME: (%[[X:.*]]: tensor<2x4x8xf32> {mixer.input = "x"}, %[[W:.*]]: tensor<8x6xf32> {mixer.param = "w"}, %[[B:.*]]: tensor<6xf32> {mixer.param = "b"}, %[[S:.*]]: tensor<6xf32> {mixer.param = "s"}, %{{.*}}: tensor<3xf32> {mixer.param = "unused"})
// CHECK-SAME: mixer.outputs = ["loss", "hidden", "grad/w", "grad/b", "grad/s", "grad/unused"]
// CHECK: %[[H:.*]] = mixer.dense %[[X]], %[[W]], %[[B]]
// CHECK: %[[G:.*]] = mixer.activation gelu %[[H]]
// CHECK: %[[L:.*]] = mixer.reduce_sum
// CHECK: %[[ONE:.*]] = mixer.fill 1.000000e+00 : tensor<f32>
// CHECK: %[[DN:.*]] = mixer.broadcast %[[ONE]] : tensor<f32> to tensor<2x4x6xf32>
// CHECK: %[[DG:.*]], %[[DS:.*]], %[[DB1:.*]] = mixer.layer_norm_grad %[[G]], %[[S]], %[[DN]]
// CHECK: %[[DH:.*]] = mixer.activation_grad gelu %[[H]], %[[DG]]
// CHECK: mixer.dense %[[DH]], %[[W]] {transpose_weight}
// CHECK: %[[DW:.*]] = mixer.dense_weight_grad %[[X]], %[[DH]] : (tensor<2x4x8xf32>, tensor<2x4x6xf32>) -> tensor<8x6xf32>
// CHECK: %[[DB2:.*]] = mixer.reduce_rows %[[DH]]
// CHECK: %[[DB:.*]] = mixer.add %[[DB1]], %[[DB2]]
// CHECK: %[[ZERO:.*]] = mixer.fill 0.000000e+00 : tensor<3xf32>
// CHECK: return %[[L]], %[[H]], %[[DW]], %[[DB]], %[[DS]], %[[ZERO]]
func.func @forward(%x: tensor<2x4x8xf32> {mixer.input = "x"},
                   %w: tensor<8x6xf32> {mixer.param = "w"},
                   %b: tensor<6xf32> {mixer.param = "b"},
                   %s: tensor<6xf32> {mixer.param = "s"},
                   %unused: tensor<3xf32> {mixer.param = "unused"}) -> (tensor<f32>, tensor<2x4x6xf32>)
    attributes {mixer.outputs = ["loss", "hidden"]} {
  %h = mixer.dense %x, %w, %b : (tensor<2x4x8xf32>, tensor<8x6xf32>, tensor<6xf32>) -> tensor<2x4x6xf32>
  %g = mixer.activation gelu %h : tensor<2x4x6xf32>
  %n = mixer.layer_norm %g, %s, %b {epsilon = 1.0e-12 : f64} : (tensor<2x4x6xf32>, tensor<6xf32>, tensor<6xf32>) -> tensor<2x4x6xf32>
  %l = mixer.reduce_sum %n : tensor<2x4x6xf32> to tensor<f32>
  return %l, %h : tensor<f32>, tensor<2x4x6xf32>
}

// -----

// Linear mixing, the pooler's position slice, reshape and a transposed
// (tied) weight; Fourier mixing is its own adjoint.
// CHECK-LABEL: func.func @forward
// CHECK: %[[DT:.*]] = mixer.broadcast
// CHECK: %[[DP:.*]] = mixer.dense %[[DT]], %{{.*}} : (tensor<2x4xf32>, tensor<4x8xf32>) -> tensor<2x8xf32>
// CHECK: mixer.dense_weight_grad %{{.*}}, %[[DT]] {transpose_weight} : (tensor<2x8xf32>, tensor<2x4xf32>) -> tensor<4x8xf32>
// CHECK: %[[DM:.*]] = mixer.take_position_grad %[[DP]][0] : tensor<2x8xf32> to tensor<2x3x8xf32>
// CHECK: %[[DF:.*]] = mixer.spectral_mix %[[DM]] {algorithm = #mixer<algorithm fft>}
// CHECK: %[[DX:.*]], %[[DWS:.*]], %[[DWH:.*]] = mixer.linear_mix_grad %{{.*}}, %{{.*}}, %{{.*}}, %[[DF]]
// CHECK: return {{.*}}, %[[DWS]], %[[DWH]], %{{.*}} :
func.func @forward(%x: tensor<2x3x8xf32> {mixer.input = "x"},
                   %ws: tensor<3x3xf32> {mixer.param = "ws"},
                   %wh: tensor<8x8xf32> {mixer.param = "wh"},
                   %k: tensor<4x8xf32> {mixer.param = "k"}) -> tensor<f32>
    attributes {mixer.outputs = ["loss"]} {
  %m = mixer.linear_mix %x, %ws, %wh : (tensor<2x3x8xf32>, tensor<3x3xf32>, tensor<8x8xf32>) -> tensor<2x3x8xf32>
  %f = mixer.spectral_mix %m {algorithm = #mixer<algorithm fft>} : (tensor<2x3x8xf32>) -> tensor<2x3x8xf32>
  %p = mixer.take_position %f[0] : tensor<2x3x8xf32> to tensor<2x8xf32>
  %t = mixer.dense %p, %k {transpose_weight} : (tensor<2x8xf32>, tensor<4x8xf32>) -> tensor<2x4xf32>
  %l = mixer.reduce_sum %t : tensor<2x4xf32> to tensor<f32>
  return %l : tensor<f32>
}

// -----

// Embeddings, attention and Toeplitz mixing: multi-result gradient ops, no
// gradient for the integer ids.
// CHECK-LABEL: func.func @forward
// CHECK: %[[DQ:.*]], %[[DK:.*]], %[[DV:.*]] = mixer.attention_grad %[[E:[^,]*]], %[[E]], %[[E]], %{{.*}}, %{{.*}} {head_dim = 2 : i64, num_heads = 2 : i64, pad_id = 0 : i64}
// CHECK: %[[DE1:.*]] = mixer.add %[[DQ]], %[[DK]]
// CHECK: %[[DE2:.*]] = mixer.add %[[DE1]], %[[DV]]
// CHECK: %{{.*}}, %[[DTS:.*]], %[[DTH:.*]] = mixer.structured_mix_grad
// CHECK: %[[DW:.*]], %[[DP:.*]], %[[DT:.*]] = mixer.embed_grad %{{.*}}, %{{.*}}, %{{.*}} : (tensor<2x8xi32>, tensor<2x8xi32>, tensor<2x8x4xf32>) -> (tensor<16x4xf32>, tensor<1x8x4xf32>, tensor<3x4xf32>)
// CHECK: return %{{.*}}, %[[DW]], %[[DP]], %[[DT]], %[[DTS]], %[[DTH]]
func.func @forward(%ids: tensor<2x8xi32> {mixer.input = "input_ids"}, %types: tensor<2x8xi32> {mixer.input = "type_ids"},
                   %word: tensor<16x4xf32> {mixer.param = "word"}, %pos: tensor<1x8x4xf32> {mixer.param = "pos"},
                   %type: tensor<3x4xf32> {mixer.param = "type"}, %ts: tensor<15xf32> {mixer.param = "ts"},
                   %th: tensor<7xf32> {mixer.param = "th"}) -> tensor<f32>
    attributes {mixer.outputs = ["loss"]} {
  %e = mixer.embed %ids, %types, %word, %pos, %type : (tensor<2x8xi32>, tensor<2x8xi32>, tensor<16x4xf32>, tensor<1x8x4xf32>, tensor<3x4xf32>) -> tensor<2x8x4xf32>
  %m = mixer.structured_mix %e, %ts, %th {toeplitz, algorithm = #mixer<algorithm matmul>} : (tensor<2x8x4xf32>, tensor<15xf32>, tensor<7xf32>) -> tensor<2x8x4xf32>
  %a = mixer.attention %m, %m, %m, %ids {num_heads = 2, head_dim = 2, pad_id = 0} : (tensor<2x8x4xf32>, tensor<2x8x4xf32>, tensor<2x8x4xf32>, tensor<2x8xi32>) -> tensor<2x8x4xf32>
  %l = mixer.reduce_sum %a : tensor<2x8x4xf32> to tensor<f32>
  return %l : tensor<f32>
}

// -----

func.func @forward(%x: tensor<2x8xf32> {mixer.input = "x"}, %w: tensor<8x8xf32> {mixer.param = "w"}) -> tensor<f32>
    attributes {mixer.outputs = ["loss"]} {
  // expected-error @+1 {{has a fused activation whose input is not kept: differentiate before mixer-fuse-dense-activation}}
  %h = mixer.dense %x, %w {activation = #mixer<activation gelu>} : (tensor<2x8xf32>, tensor<8x8xf32>) -> tensor<2x8xf32>
  %l = mixer.reduce_sum %h : tensor<2x8xf32> to tensor<f32>
  return %l : tensor<f32>
}

// -----

func.func @forward(%x: tensor<2x8x4xf32> {mixer.input = "x"}, %sel: tensor<2x4xf32> {mixer.param = "sel"},
                   %keys: tensor<2x4x3xf32> {mixer.param = "keys"}, %values: tensor<2x3x4xf32> {mixer.param = "values"}) -> tensor<f32>
    attributes {mixer.outputs = ["loss"]} {
  // expected-error @+1 {{'mixer.sigma_moe' op has no gradient}}
  %m = mixer.sigma_moe %x, %sel, %keys, %values {k = 1} : (tensor<2x8x4xf32>, tensor<2x4xf32>, tensor<2x4x3xf32>, tensor<2x3x4xf32>) -> tensor<2x8x4xf32>
  %l = mixer.reduce_sum %m : tensor<2x8x4xf32> to tensor<f32>
  return %l : tensor<f32>
}

// -----

// expected-error @+1 {{no output named 'loss' to differentiate}}
func.func @forward(%x: tensor<2x8xf32> {mixer.input = "x"}) -> tensor<2x8xf32>
    attributes {mixer.outputs = ["sequence_output"]} {
  return %x : tensor<2x8xf32>
}

// -----

// The pre-training loss shape: masked-LM cross-entropy over gathered
// positions normalised by the weight sum (mixer.divide), plus a scaled
// regression term.
// CHECK-LABEL: func.func @forward
// CHECK: %[[CE:.*]] = mixer.softmax_cross_entropy %[[LOGITS:[^,]*]], %[[LABELS:[^ ]*]] weights %[[W:[^ ]*]] :
// CHECK: %[[NORM:.*]] = mixer.reduce_sum %[[W]]
// CHECK: %[[MLM:.*]] = mixer.divide %[[CE]], %[[NORM]]
// CHECK: %[[DCE:.*]] = mixer.divide %{{.*}}, %[[NORM]]
// CHECK: %[[DLOGITS:.*]] = mixer.softmax_cross_entropy_grad %[[LOGITS]], %[[LABELS]], %[[DCE]] weights %[[W]]
// CHECK: mixer.dense_weight_grad %{{.*}}, %[[DLOGITS]] {transpose_weight}
// CHECK: mixer.gather_positions_grad %{{.*}}, %{{.*}} : (tensor<6x4xf32>, tensor<2x3xi32>) -> tensor<2x8x4xf32>
func.func @forward(%h: tensor<2x8x4xf32> {mixer.input = "hidden"}, %pos: tensor<2x3xi32> {mixer.input = "positions"},
                   %labels: tensor<6xi32> {mixer.input = "labels"}, %w: tensor<6xf32> {mixer.input = "weights"},
                   %target: tensor<2xf32> {mixer.input = "target"},
                   %word: tensor<10x4xf32> {mixer.param = "word"}, %head: tensor<4x1xf32> {mixer.param = "head"}) -> tensor<f32>
    attributes {mixer.outputs = ["loss"]} {
  %g = mixer.gather_positions %h, %pos : (tensor<2x8x4xf32>, tensor<2x3xi32>) -> tensor<6x4xf32>
  %logits = mixer.dense %g, %word {transpose_weight} : (tensor<6x4xf32>, tensor<10x4xf32>) -> tensor<6x10xf32>
  %ce = mixer.softmax_cross_entropy %logits, %labels weights %w : (tensor<6x10xf32>, tensor<6xi32>, tensor<6xf32>) -> tensor<f32>
  %norm = mixer.reduce_sum %w : tensor<6xf32> to tensor<f32>
  %mlm = mixer.divide %ce, %norm : tensor<f32>
  %first = mixer.take_position %h[0] : tensor<2x8x4xf32> to tensor<2x4xf32>
  %score = mixer.dense %first, %head : (tensor<2x4xf32>, tensor<4x1xf32>) -> tensor<2x1xf32>
  %flat = mixer.reshape %score : tensor<2x1xf32> to tensor<2xf32>
  %se = mixer.squared_error %flat, %target : (tensor<2xf32>, tensor<2xf32>) -> tensor<f32>
  %reg = mixer.scale %se by 5.000000e-01 : tensor<f32>
  %loss = mixer.add %mlm, %reg : tensor<f32>
  return %loss : tensor<f32>
}

// -----

// The gradient of dropout is the same dropout (same key, rate and stream) of
// the result gradient; the key itself has no gradient.
// CHECK-LABEL: func.func @forward
// CHECK-SAME: %[[SEED:arg[0-9]+]]: tensor<i32> {mixer.input = "seed"}, %[[STEP:arg[0-9]+]]: tensor<i32> {mixer.input = "step"}
// CHECK: mixer.random_scale dropout %{{.*}}, %[[SEED]], %[[STEP]] {rate = 2.500000e-01 : f64, stream = 5 : i64}
// CHECK: %[[DY:.*]] = mixer.broadcast
// CHECK: %[[DX:.*]] = mixer.random_scale dropout %[[DY]], %[[SEED]], %[[STEP]] {rate = 2.500000e-01 : f64, stream = 5 : i64} : tensor<2x4xf32>
// CHECK: return %{{.*}}, %[[DX]] : tensor<f32>, tensor<2x4xf32>
func.func @forward(%seed: tensor<i32> {mixer.input = "seed"}, %step: tensor<i32> {mixer.input = "step"},
                   %w: tensor<2x4xf32> {mixer.param = "w"}) -> tensor<f32>
    attributes {mixer.outputs = ["loss"]} {
  %y = mixer.random_scale dropout %w, %seed, %step {rate = 0.25 : f64, stream = 5} : tensor<2x4xf32>
  %l = mixer.reduce_sum %y : tensor<2x4xf32> to tensor<f32>
  return %l : tensor<f32>
}
