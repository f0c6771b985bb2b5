// RUN: mixer-opt %s --split-input-file --verify-diagnostics --mixer-lower-to-runtime | FileCheck %s

// Tensors become arena buffers, ops become kernel calls, reshapes views, and
// an absent bias a mixrt.none operand.
// CHECK-LABEL: func.func @block
// CHECK-SAME: (%[[X:.*]]: memref<2x8x16xf32>, %[[W:.*]]: memref<16x32xf32>, %[[S:.*]]: memref<32xf32>)
// CHECK-SAME: -> memref<16x32xf32>
// CHECK-SAME: mixrt.flops = 1.638400e+04
func.func @block(%x: tensor<2x8x16xf32>, %w: tensor<16x32xf32>, %s: tensor<32xf32>) -> tensor<16x32xf32> {
  // CHECK: %[[NONE:.*]] = mixrt.none : memref<0xf32>
  // CHECK: %[[D:.*]] = mixrt.alloc : memref<2x8x32xf32>
  // CHECK: mixrt.kernel "dense" ins(%[[X]], %[[W]], %[[NONE]] : {{.*}}) outs(%[[D]] : memref<2x8x32xf32>) params {activation = "gelu", transpose_w = false}
  // CHECK: %[[N:.*]] = mixrt.alloc : memref<2x8x32xf32>
  // CHECK: mixrt.kernel "layer_norm" ins(%[[D]], %[[D]], %[[S]], %[[S]] : {{.*}}) outs(%[[N]] : {{.*}}) params {epsilon = 9.9999999999999998E-13 : f64}
  // CHECK: %[[V:.*]] = mixrt.view %[[N]] : memref<2x8x32xf32> to memref<16x32xf32>
  // CHECK: return %[[V]]
  %d = mixer.dense %x, %w {activation = #mixer<activation gelu>} : (tensor<2x8x16xf32>, tensor<16x32xf32>) -> tensor<2x8x32xf32>
  %n = mixer.add_layer_norm %d, %d, %s, %s {epsilon = 1.0e-12 : f64} : (tensor<2x8x32xf32>, tensor<2x8x32xf32>, tensor<32xf32>, tensor<32xf32>) -> tensor<2x8x32xf32>
  %v = mixer.reshape %n : tensor<2x8x32xf32> to tensor<16x32xf32>
  return %v : tensor<16x32xf32>
}

// -----

// Ops that one kernel runs take the lowering of their op definitions:
// operands in order (an absent optional one mixrt.none), attributes by name
// (transpose_weight is the kernel's transpose_w, dropout_stream its stream),
// unit attributes as booleans, enums as strings; the plain LayerNorm and its
// gradient get no residual, attention without dropout rate 0. The flops are
// those of the matrix products: dense and dense_weight_grad 2·32·4 each,
// attention 4·2·2·2·8, its gradient twice that.
// CHECK-LABEL: func.func @kernel_ops
// CHECK-SAME: mixrt.flops = 1.280000e+03
// CHECK: %[[NONE:.*]] = mixrt.none : memref<0xf32>
// CHECK: mixrt.kernel "dense" ins(%arg0, %arg1, %[[NONE]] : {{.*}}) outs(%{{.*}} : memref<8x4xf32>) params {activation = "none", transpose_w = true}
// CHECK: mixrt.kernel "layer_norm" ins(%arg0, %[[NONE]], %arg2, %arg2 : {{.*}}) outs({{.*}}) params {epsilon = 9.9999999999999995E-7 : f64}
// CHECK: mixrt.kernel "layer_norm_grad" ins(%arg0, %[[NONE]], %arg2, %arg0 : {{.*}}) outs({{.*}}) params {epsilon = 9.9999999999999995E-7 : f64}
// CHECK: mixrt.kernel "dense_weight_grad" ins(%arg0, %arg0 : {{.*}}) outs({{.*}}) params {transpose_w = false}
// CHECK: mixrt.kernel "random_scale" ins(%arg0, %arg4, %arg4, %[[NONE]] : {{.*}}) outs({{.*}}) params {kind = "jitter", rate = 1.000000e-01 : f64, stream = 1 : i64}
// CHECK: mixrt.kernel "load_balancing_loss" ins(%arg3 : memref<8x4xf32>) outs({{.*}}) params {groups = 2 : i64, k = 1 : i64}
// CHECK: mixrt.kernel "attention" ins(%arg5, %arg5, %arg5, %arg6, %[[NONE]], %[[NONE]], %[[NONE]] : {{.*}}) outs({{.*}}) params {causal = true, dropout_rate = 0.000000e+00 : f64, head_dim = 4 : i64, num_heads = 2 : i64, pad_id = 0 : i64, stream = 0 : i64}
// CHECK: mixrt.kernel "attention_grad" ins(%arg5, %arg5, %arg5, %arg6, %arg5, %arg4, %arg4, %[[NONE]] : {{.*}}) outs({{.*}}) params {causal = false, dropout_rate = 2.000000e-01 : f64, head_dim = 4 : i64, num_heads = 2 : i64, pad_id = 0 : i64, stream = 3 : i64}
// CHECK: mixrt.kernel "global_norm" ins(%arg0, %arg2 : memref<8x4xf32>, memref<4xf32>)
func.func @kernel_ops(%x: tensor<8x4xf32>, %w: tensor<4x4xf32>, %s: tensor<4xf32>,
                      %probs: tensor<8x4xf32>, %key: tensor<i32>,
                      %q: tensor<2x2x8xf32>, %ids: tensor<2x2xi32>)
    -> (tensor<8x4xf32>, tensor<8x4xf32>, tensor<8x4xf32>, tensor<4x4xf32>, tensor<8x4xf32>,
        tensor<f32>, tensor<2x2x8xf32>, tensor<2x2x8xf32>, tensor<f32>) {
  %d = mixer.dense %x, %w {transpose_weight} : (tensor<8x4xf32>, tensor<4x4xf32>) -> tensor<8x4xf32>
  %n = mixer.layer_norm %x, %s, %s {epsilon = 1.0e-6 : f64} : (tensor<8x4xf32>, tensor<4xf32>, tensor<4xf32>) -> tensor<8x4xf32>
  %dx, %ds, %db = mixer.layer_norm_grad %x, %s, %x {epsilon = 1.0e-6 : f64} : (tensor<8x4xf32>, tensor<4xf32>, tensor<8x4xf32>) -> (tensor<8x4xf32>, tensor<4xf32>, tensor<4xf32>)
  %dw = mixer.dense_weight_grad %x, %x : (tensor<8x4xf32>, tensor<8x4xf32>) -> tensor<4x4xf32>
  %j = mixer.random_scale jitter %x, %key, %key {rate = 0.1 : f64, stream = 1} : tensor<8x4xf32>
  %l = mixer.load_balancing_loss %probs {num_groups = 2, k = 1} : tensor<8x4xf32>
  %a = mixer.attention %q, %q, %q, %ids {num_heads = 2, head_dim = 4, pad_id = 0, causal} : (tensor<2x2x8xf32>, tensor<2x2x8xf32>, tensor<2x2x8xf32>, tensor<2x2xi32>) -> tensor<2x2x8xf32>
  %dq, %dk, %dv = mixer.attention_grad %q, %q, %q, %ids, %q noise %key, %key {num_heads = 2, head_dim = 4, pad_id = 0, dropout_rate = 0.2 : f64, dropout_stream = 3} : (tensor<2x2x8xf32>, tensor<2x2x8xf32>, tensor<2x2x8xf32>, tensor<2x2xi32>, tensor<2x2x8xf32>, tensor<i32>, tensor<i32>) -> (tensor<2x2x8xf32>, tensor<2x2x8xf32>, tensor<2x2x8xf32>)
  %g = mixer.global_norm %x, %s : tensor<8x4xf32>, tensor<4xf32>
  return %d, %n, %dx, %dw, %j, %l, %a, %dq, %g : tensor<8x4xf32>, tensor<8x4xf32>, tensor<8x4xf32>, tensor<4x4xf32>, tensor<8x4xf32>, tensor<f32>, tensor<2x2x8xf32>, tensor<2x2x8xf32>, tensor<f32>
}

// -----

// The fused router runs the softmax kernel (the bfloat16 router's for
// router_bf16) and then the selection kernel.
// CHECK-LABEL: func.func @router
func.func @router(%l: tensor<16x4xf32>) -> (tensor<32xi32>, tensor<32xf32>, tensor<5xi32>) {
  // CHECK-NOT: round_bf16
  // CHECK: mixrt.kernel "softmax" {{.*}} params {bf16 = true}
  // CHECK-NOT: round_bf16
  // CHECK: mixrt.kernel "route_tokens_choose" {{.*}} params {batch_prioritized = true, capacity = 4 : i64, groups = 2 : i64, k = 2 : i64, tokens_per_group = 8 : i64}
  %t, %g, %o = mixer.route %l {routing = #mixer<routing tokens_choose>, num_groups = 2, capacity = 4, k = 2, batch_prioritized, router_bf16} : (tensor<16x4xf32>) -> (tensor<32xi32>, tensor<32xf32>, tensor<5xi32>)
  return %t, %g, %o : tensor<32xi32>, tensor<32xf32>, tensor<5xi32>
}

// CHECK-LABEL: func.func @float32_router
func.func @float32_router(%l: tensor<16x4xf32>) -> (tensor<32xi32>, tensor<32xf32>, tensor<5xi32>) {
  // CHECK: mixrt.kernel "softmax" {{.*}} params {bf16 = false}
  // CHECK: mixrt.kernel "route_experts_choose"
  %t, %g, %o = mixer.route %l {routing = #mixer<routing experts_choose>, num_groups = 2, capacity = 4, k = 1} : (tensor<16x4xf32>) -> (tensor<32xi32>, tensor<32xf32>, tensor<5xi32>)
  return %t, %g, %o : tensor<32xi32>, tensor<32xf32>, tensor<5xi32>
}

// The bfloat16 router's logits and the gradient through its softmax.
// CHECK-LABEL: func.func @bf16_router_logits
func.func @bf16_router_logits(%d: tensor<16x4xf32>, %b: tensor<4xf32>, %t: tensor<32xi32>, %o: tensor<5xi32>, %g: tensor<32xf32>) -> (tensor<16x4xf32>, tensor<16x4xf32>) {
  // CHECK: mixrt.kernel "router_logits_bf16"
  // CHECK: mixrt.kernel "route_grad" {{.*}} params {router_bf16 = true, routing = "tokens_choose"}
  %l = mixer.router_logits_bf16 %d, %b : (tensor<16x4xf32>, tensor<4xf32>) -> tensor<16x4xf32>
  %dl = mixer.route_grad %l, %t, %o, %g {routing = #mixer<routing tokens_choose>, router_bf16} : (tensor<16x4xf32>, tensor<32xi32>, tensor<5xi32>, tensor<32xf32>) -> tensor<16x4xf32>
  return %l, %dl : tensor<16x4xf32>, tensor<16x4xf32>
}

// -----

func.func @undecomposed_moe(%x: tensor<2x8x16xf32>, %sel: tensor<4x16xf32>, %keys: tensor<4x16x8xf32>, %values: tensor<4x8x16xf32>) -> tensor<2x8x16xf32> {
  // expected-error @+1 {{must be decomposed (mixer-decompose-moe) before lowering to the runtime}}
  %m = mixer.sigma_moe %x, %sel, %keys, %values {k = 2} : (tensor<2x8x16xf32>, tensor<4x16xf32>, tensor<4x16x8xf32>, tensor<4x8x16xf32>) -> tensor<2x8x16xf32>
  return %m : tensor<2x8x16xf32>
}

// -----

func.func @unselected_algorithm(%x: tensor<2x8x16xf32>) -> tensor<2x8x16xf32> {
  // expected-error @+1 {{algorithm is still auto: run mixer-select-mixing-algorithm}}
  %y = mixer.spectral_mix %x : (tensor<2x8x16xf32>) -> tensor<2x8x16xf32>
  return %y : tensor<2x8x16xf32>
}

// -----

// The training step: dropout, the global norm and the update. The adamw
// kernel writes the parameter and its moments where they are stored, and the
// update results leave the function.
// CHECK-LABEL: func.func @training_step
// CHECK-SAME: (%[[W:arg0]]: memref<4x2xf32> {mixer.param = "w"}, %[[M:arg1]]: memref<4x2xf32> {mixer.state = "adam_m/w"}, %[[V:arg2]]: memref<4x2xf32> {mixer.state = "adam_v/w"},
// CHECK-SAME: %[[SEED:arg3]]: memref<i32>, %[[STEP:arg4]]: memref<i32>, %[[LR:arg5]]: memref<f32>)
// CHECK-SAME: -> memref<4x2xf32>
// CHECK-NOT: mixer.update
// CHECK: %[[Y:.*]] = mixrt.alloc : memref<4x2xf32>
// CHECK: mixrt.kernel "random_scale" ins(%[[W]], %[[SEED]], %[[STEP]], %{{.*}} : memref<4x2xf32>, memref<i32>, memref<i32>, memref<0xf32>) outs(%[[Y]] : memref<4x2xf32>) params {kind = "dropout", rate = 1.000000e-01 : f64, stream = 2 : i64}
// CHECK: %[[N:.*]] = mixrt.alloc : memref<f32>
// CHECK: mixrt.kernel "global_norm" ins(%[[Y]] : memref<4x2xf32>) outs(%[[N]] : memref<f32>) params {}
// CHECK: mixrt.kernel "adamw" ins(%[[Y]], %[[LR]], %[[STEP]], %[[N]], %{{.*}} : memref<4x2xf32>, memref<f32>, memref<i32>, memref<f32>, memref<0xf32>) outs(%[[W]], %[[M]], %[[V]] : memref<4x2xf32>, memref<4x2xf32>, memref<4x2xf32>) params {b1 = 9.000000e-01 : f64, b2 = 0.99899999999999999 : f64, eps = 9.9999999999999995E-7 : f64, max_norm = 1.000000e+00 : f64, micro_steps = 1 : i64, weight_decay = 1.000000e-02 : f64}
// CHECK-NEXT: return %[[Y]] : memref<4x2xf32>
func.func @training_step(%w: tensor<4x2xf32> {mixer.param = "w"},
                         %m: tensor<4x2xf32> {mixer.state = "adam_m/w"},
                         %v: tensor<4x2xf32> {mixer.state = "adam_v/w"},
                         %seed: tensor<i32>, %step: tensor<i32>, %lr: tensor<f32>)
    -> (tensor<4x2xf32>, tensor<4x2xf32> {mixer.update = "w"}, tensor<4x2xf32> {mixer.update = "adam_m/w"},
        tensor<4x2xf32> {mixer.update = "adam_v/w"}) {
  %y = mixer.random_scale dropout %w, %seed, %step {rate = 0.1 : f64, stream = 2} : tensor<4x2xf32>
  %n = mixer.global_norm %y : tensor<4x2xf32>
  %w1, %m1, %v1 = mixer.adamw %w, %m, %v, %y, %lr, %step norm %n {b1 = 0.9 : f64, b2 = 0.999 : f64, eps = 1.0e-6 : f64, weight_decay = 0.01 : f64, max_norm = 1.0 : f64} : tensor<4x2xf32>
  return %y, %w1, %m1, %v1 : tensor<4x2xf32>, tensor<4x2xf32>, tensor<4x2xf32>, tensor<4x2xf32>
}

// -----

// Gradient accumulation: the noise counter of the micro-step keys the
// attention dropout, whose kernel takes the counter's step and micro_step
// and forms it; accumulate_gradient updates its accumulator in place and
// writes the average to the arena, where the update reads it.
// CHECK-LABEL: func.func @accumulating_step
// CHECK-SAME: (%[[W:arg0]]: memref<2x3x4xf32> {mixer.param = "w"}, %[[M:arg1]]: memref<2x3x4xf32> {mixer.state = "adam_m/w"}, %[[V:arg2]]: memref<2x3x4xf32> {mixer.state = "adam_v/w"},
// CHECK-SAME: %[[ACC:arg3]]: memref<2x3x4xf32> {mixer.state = "grad_accum/w"}, %[[IDS:arg4]]: memref<2x3xi32>, %[[SEED:arg5]]: memref<i32>, %[[STEP:arg6]]: memref<i32>, %[[MICRO:arg7]]: memref<i32>, %[[LR:arg8]]: memref<f32>)
// CHECK-NOT: noise_counter
// CHECK: %[[A:.*]] = mixrt.alloc : memref<2x3x4xf32>
// CHECK-NEXT: mixrt.kernel "attention" ins(%[[W]], %[[W]], %[[W]], %[[IDS]], %[[SEED]], %[[STEP]], %[[MICRO]] : memref<2x3x4xf32>, memref<2x3x4xf32>, memref<2x3x4xf32>, memref<2x3xi32>, memref<i32>, memref<i32>, memref<i32>) outs(%[[A]] : memref<2x3x4xf32>) params {causal = false, dropout_rate = 1.000000e-01 : f64, head_dim = 2 : i64, micro_steps = 2 : i64, num_heads = 2 : i64, pad_id = 0 : i64, stream = 3 : i64}
// CHECK: %[[AVG:.*]] = mixrt.alloc : memref<2x3x4xf32>
// CHECK: mixrt.kernel "accumulate_gradient" ins(%[[A]], %[[MICRO]] : memref<2x3x4xf32>, memref<i32>) outs(%[[ACC]], %[[AVG]] : memref<2x3x4xf32>, memref<2x3x4xf32>) params {micro_steps = 2 : i64}
// CHECK: mixrt.kernel "adamw" ins(%[[AVG]], %[[LR]], %[[STEP]], %{{.*}}, %[[MICRO]] : {{.*}}) outs(%[[W]], %[[M]], %[[V]] : {{.*}}) params {{{.*}}micro_steps = 2 : i64
// CHECK-NEXT: return
func.func @accumulating_step(%w: tensor<2x3x4xf32> {mixer.param = "w"},
                             %m: tensor<2x3x4xf32> {mixer.state = "adam_m/w"},
                             %v: tensor<2x3x4xf32> {mixer.state = "adam_v/w"},
                             %acc: tensor<2x3x4xf32> {mixer.state = "grad_accum/w"},
                             %ids: tensor<2x3xi32>, %seed: tensor<i32>, %step: tensor<i32>,
                             %micro: tensor<i32>, %lr: tensor<f32>)
    -> (tensor<2x3x4xf32> {mixer.update = "w"}, tensor<2x3x4xf32> {mixer.update = "adam_m/w"},
        tensor<2x3x4xf32> {mixer.update = "adam_v/w"}, tensor<2x3x4xf32> {mixer.update = "grad_accum/w"}) {
  %c = mixer.noise_counter %step, %micro {micro_steps = 2 : i64}
  %a = mixer.attention %w, %w, %w, %ids noise %seed, %c {num_heads = 2, head_dim = 2, pad_id = 0, dropout_rate = 0.1 : f64, dropout_stream = 3} : (tensor<2x3x4xf32>, tensor<2x3x4xf32>, tensor<2x3x4xf32>, tensor<2x3xi32>, tensor<i32>, tensor<i32>) -> tensor<2x3x4xf32>
  %acc1, %avg = mixer.accumulate_gradient %acc, %a, %micro {micro_steps = 2 : i64} : tensor<2x3x4xf32>
  %w1, %m1, %v1 = mixer.adamw %w, %m, %v, %avg, %lr, %step micro_step %micro {b1 = 0.9 : f64, b2 = 0.999 : f64, eps = 1.0e-6 : f64, weight_decay = 0.01 : f64, max_norm = 0.0 : f64, micro_steps = 2 : i64} : tensor<2x3x4xf32>
  return %w1, %m1, %v1, %acc1 : tensor<2x3x4xf32>, tensor<2x3x4xf32>, tensor<2x3x4xf32>, tensor<2x3x4xf32>
}

// -----

// A read of the parameter (through a reshape) after its in-place update
// would see the new value.
func.func @read_after_update(%w: tensor<4x2xf32> {mixer.param = "w"}, %lr: tensor<f32>, %step: tensor<i32>) -> tensor<8xf32> {
  %flat = mixer.reshape %w : tensor<4x2xf32> to tensor<8xf32>
  // expected-error @+1 {{cannot update argument 0 in place: it is read after the update}}
  %w1, %m1, %v1 = mixer.adamw %w, %w, %w, %w, %lr, %step {b1 = 0.9 : f64, b2 = 0.999 : f64, eps = 1.0e-6 : f64, weight_decay = 0.01 : f64, max_norm = 0.0 : f64} : tensor<4x2xf32>
  // expected-note @+1 {{read here}}
  %y = mixer.activation tanh %flat : tensor<8xf32>
  return %y : tensor<8xf32>
}

// -----

func.func @update_of_a_temporary(%w: tensor<4x2xf32> {mixer.param = "w"}, %lr: tensor<f32>, %step: tensor<i32>) {
  %t = mixer.activation tanh %w : tensor<4x2xf32>
  // expected-error @+1 {{can only update function arguments (the parameters and optimizer state) in place}}
  %w1, %m1, %v1 = mixer.adamw %t, %w, %w, %w, %lr, %step {b1 = 0.9 : f64, b2 = 0.999 : f64, eps = 1.0e-6 : f64, weight_decay = 0.01 : f64, max_norm = 0.0 : f64} : tensor<4x2xf32>
  return
}

// -----

// expected-error @+1 {{result 0 updates 'w' but is not computed in its storage}}
func.func @update_not_in_place(%w: tensor<4x2xf32> {mixer.param = "w"}) -> (tensor<4x2xf32> {mixer.update = "w"}) {
  %t = mixer.activation tanh %w : tensor<4x2xf32>
  return %t : tensor<4x2xf32>
}

// -----

// A noise counter lowers into the noise kernels that read it as their step;
// another reader has nothing to read.
func.func @counter_elsewhere(%step: tensor<i32>, %micro: tensor<i32>) -> tensor<i32> {
  // expected-error @+1 {{'mixer.noise_counter' op may only be the step of noise ops, which take its step and micro_step}}
  %c = mixer.noise_counter %step, %micro {micro_steps = 2 : i64}
  // expected-note @+1 {{read here}}
  return %c : tensor<i32>
}
