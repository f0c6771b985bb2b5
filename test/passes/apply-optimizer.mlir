// RUN: mixer-opt %s --split-input-file --verify-diagnostics --mixer-apply-optimizer | FileCheck %s

// Every parameter gets its two zero-initialised moments (in parameter order)
// and one adamw at the very end; the learning rate and the step count become
// inputs; the gradients leave the results, the updates join them after the
// outputs, each naming the argument it replaces.
// CHECK-LABEL: func.func @forward
// CHECK-SAME: (%[[X:.*]]: tensor<4x8xf32> {mixer.input = "x"}, %[[W:.*]]: tensor<8x2xf32> {mixer.param = "w"}, %[[B:.*]]: tensor<2xf32> {mixer.param = "b"},
// CHECK-SAME: %[[LR:.*]]: tensor<f32> {mixer.input = "learning_rate"}, %[[STEP:.*]]: tensor<i32> {mixer.input = "step"},
// CHECK-SAME: %[[MW:.*]]: tensor<8x2xf32> {mixer.init = {kind = "zeros"}, mixer.state = "adam_m/w"},
// CHECK-SAME: %[[VW:.*]]: tensor<8x2xf32> {mixer.init = {kind = "zeros"}, mixer.state = "adam_v/w"},
// CHECK-SAME: %[[MB:.*]]: tensor<2xf32> {mixer.init = {kind = "zeros"}, mixer.state = "adam_m/b"},
// CHECK-SAME: %[[VB:.*]]: tensor<2xf32> {mixer.init = {kind = "zeros"}, mixer.state = "adam_v/b"})
// CHECK-SAME: -> (tensor<f32>, tensor<4x2xf32>, tensor<8x2xf32> {mixer.update = "w"}, tensor<8x2xf32> {mixer.update = "adam_m/w"}, tensor<8x2xf32> {mixer.update = "adam_v/w"},
// CHECK-SAME: tensor<2xf32> {mixer.update = "b"}, tensor<2xf32> {mixer.update = "adam_m/b"}, tensor<2xf32> {mixer.update = "adam_v/b"})
// CHECK-SAME: mixer.outputs = ["loss", "logits"]
// CHECK: %[[Y:.*]] = mixer.dense
// CHECK: %[[L:.*]] = mixer.reduce_sum
// CHECK: %[[DW:.*]] = mixer.dense_weight_grad
// CHECK: %[[DB:.*]] = mixer.reduce_rows
// CHECK-NOT: mixer.global_norm
// CHECK: %[[W1:.*]], %[[MW1:.*]], %[[VW1:.*]] = mixer.adamw %[[W]], %[[MW]], %[[VW]], %[[DW]], %[[LR]], %[[STEP]] {b1 = 8.000000e-01 : f64, b2 = 0.98999999999999999 : f64, eps = 1.000000e-08 : f64, max_norm = 0.000000e+00 : f64, weight_decay = 1.000000e-01 : f64} : tensor<8x2xf32>
// CHECK-NEXT: %[[B1:.*]], %[[MB1:.*]], %[[VB1:.*]] = mixer.adamw %[[B]], %[[MB]], %[[VB]], %[[DB]], %[[LR]], %[[STEP]] {{.*}} : tensor<2xf32>
// CHECK-NEXT: return %[[L]], %[[Y]], %[[W1]], %[[MW1]], %[[VW1]], %[[B1]], %[[MB1]], %[[VB1]]
func.func @forward(%x: tensor<4x8xf32> {mixer.input = "x"},
                   %w: tensor<8x2xf32> {mixer.param = "w"},
                   %b: tensor<2xf32> {mixer.param = "b"})
    -> (tensor<f32>, tensor<8x2xf32>, tensor<4x2xf32>, tensor<2xf32>)
    attributes {mixer.outputs = ["loss", "grad/w", "logits", "grad/b"],
                mixer.training = {learning_rate = 1.0e-3 : f64, warmup_steps = 10 : i64, total_steps = 100 : i64,
                                  b1 = 0.8 : f64, b2 = 0.99 : f64, eps = 1.0e-8 : f64,
                                  weight_decay = 0.1 : f64, clip_grad_norm = 0.0 : f64}} {
  %y = mixer.dense %x, %w, %b : (tensor<4x8xf32>, tensor<8x2xf32>, tensor<2xf32>) -> tensor<4x2xf32>
  %l = mixer.reduce_sum %y : tensor<4x2xf32> to tensor<f32>
  %dy = mixer.fill 1.0 : tensor<4x2xf32>
  %dw = mixer.dense_weight_grad %x, %dy : (tensor<4x8xf32>, tensor<4x2xf32>) -> tensor<8x2xf32>
  %db = mixer.reduce_rows %dy : (tensor<4x2xf32>) -> tensor<2xf32>
  return %l, %dw, %y, %db : tensor<f32>, tensor<8x2xf32>, tensor<4x2xf32>, tensor<2xf32>
}

// -----

// With clip_grad_norm > 0 one global norm over every gradient (in parameter
// order) feeds every update; an existing step input (the forward pass's
// dropout key) is reused.
// CHECK-LABEL: func.func @forward
// CHECK-SAME: %[[STEP:arg[0-9]+]]: tensor<i32> {mixer.input = "step"}
// CHECK-SAME: %[[LR:arg[0-9]+]]: tensor<f32> {mixer.input = "learning_rate"}
// CHECK-NOT: mixer.input = "step"
// CHECK: %[[DW:.*]] = mixer.fill 2.000000e+00 : tensor<8x2xf32>
// CHECK: %[[DB:.*]] = mixer.fill 3.000000e+00 : tensor<2xf32>
// CHECK: %[[N:.*]] = mixer.global_norm %[[DW]], %[[DB]] : tensor<8x2xf32>, tensor<2xf32>
// CHECK: mixer.adamw {{.*}}, %[[DW]], %[[LR]], %[[STEP]] norm %[[N]] {{{.*}}max_norm = 1.500000e+00 : f64
// CHECK: mixer.adamw {{.*}}, %[[DB]], %[[LR]], %[[STEP]] norm %[[N]] {{{.*}}max_norm = 1.500000e+00 : f64
func.func @forward(%step: tensor<i32> {mixer.input = "step"},
                   %w: tensor<8x2xf32> {mixer.param = "w"},
                   %b: tensor<2xf32> {mixer.param = "b"})
    -> (tensor<f32>, tensor<8x2xf32>, tensor<2xf32>)
    attributes {mixer.outputs = ["loss", "grad/w", "grad/b"],
                mixer.training = {learning_rate = 1.0e-3 : f64, warmup_steps = 10 : i64, total_steps = 100 : i64,
                                  b1 = 0.9 : f64, b2 = 0.999 : f64, eps = 1.0e-6 : f64,
                                  weight_decay = 0.01 : f64, clip_grad_norm = 1.5 : f64}} {
  %l = mixer.fill 0.5 : tensor<f32>
  %dw = mixer.fill 2.0 : tensor<8x2xf32>
  %db = mixer.fill 3.0 : tensor<2xf32>
  return %l, %dw, %db : tensor<f32>, tensor<8x2xf32>, tensor<2xf32>
}

// -----

// Gradient accumulation over 2 micro-steps: the micro-step becomes an input,
// every parameter gets an accumulator after its moments, and each gradient
// goes through accumulate_gradient; the global norm measures the averages,
// which the updates apply (on the last micro-step); the new accumulators are
// returned as updates after their parameter's.
// CHECK-LABEL: func.func @forward
// CHECK-SAME: (%[[W:.*]]: tensor<8x2xf32> {mixer.param = "w"}, %[[B:.*]]: tensor<2xf32> {mixer.param = "b"},
// CHECK-SAME: %[[LR:.*]]: tensor<f32> {mixer.input = "learning_rate"}, %[[STEP:.*]]: tensor<i32> {mixer.input = "step"}, %[[MICRO:.*]]: tensor<i32> {mixer.input = "micro_step"},
// CHECK-SAME: %[[MW:.*]]: tensor<8x2xf32> {mixer.init = {kind = "zeros"}, mixer.state = "adam_m/w"},
// CHECK-SAME: %[[VW:.*]]: tensor<8x2xf32> {mixer.init = {kind = "zeros"}, mixer.state = "adam_v/w"},
// CHECK-SAME: %[[AW:.*]]: tensor<8x2xf32> {mixer.init = {kind = "zeros"}, mixer.state = "grad_accum/w"},
// CHECK-SAME: %[[MB:.*]]: tensor<2xf32> {mixer.init = {kind = "zeros"}, mixer.state = "adam_m/b"},
// CHECK-SAME: %[[VB:.*]]: tensor<2xf32> {mixer.init = {kind = "zeros"}, mixer.state = "adam_v/b"},
// CHECK-SAME: %[[AB:.*]]: tensor<2xf32> {mixer.init = {kind = "zeros"}, mixer.state = "grad_accum/b"})
// CHECK-SAME: -> (tensor<f32>, tensor<8x2xf32> {mixer.update = "w"}, tensor<8x2xf32> {mixer.update = "adam_m/w"}, tensor<8x2xf32> {mixer.update = "adam_v/w"}, tensor<8x2xf32> {mixer.update = "grad_accum/w"},
// CHECK-SAME: tensor<2xf32> {mixer.update = "b"}, tensor<2xf32> {mixer.update = "adam_m/b"}, tensor<2xf32> {mixer.update = "adam_v/b"}, tensor<2xf32> {mixer.update = "grad_accum/b"})
// CHECK: %[[DW:.*]] = mixer.fill 2.000000e+00 : tensor<8x2xf32>
// CHECK: %[[DB:.*]] = mixer.fill 3.000000e+00 : tensor<2xf32>
// CHECK: %[[AW1:.*]], %[[GW:.*]] = mixer.accumulate_gradient %[[AW]], %[[DW]], %[[MICRO]] {micro_steps = 2 : i64} : tensor<8x2xf32>
// CHECK-NEXT: %[[AB1:.*]], %[[GB:.*]] = mixer.accumulate_gradient %[[AB]], %[[DB]], %[[MICRO]] {micro_steps = 2 : i64} : tensor<2xf32>
// CHECK-NEXT: %[[N:.*]] = mixer.global_norm %[[GW]], %[[GB]] : tensor<8x2xf32>, tensor<2xf32>
// CHECK-NEXT: %[[W1:.*]], %[[MW1:.*]], %[[VW1:.*]] = mixer.adamw %[[W]], %[[MW]], %[[VW]], %[[GW]], %[[LR]], %[[STEP]] norm %[[N]] micro_step %[[MICRO]] {b1 = 9.000000e-01 : f64, b2 = 0.99899999999999999 : f64, eps = 9.9999999999999995E-7 : f64, max_norm = 1.500000e+00 : f64, micro_steps = 2 : i64, weight_decay = 0.000000e+00 : f64} : tensor<8x2xf32>
// CHECK-NEXT: %[[B1:.*]], %[[MB1:.*]], %[[VB1:.*]] = mixer.adamw %[[B]], %[[MB]], %[[VB]], %[[GB]], %[[LR]], %[[STEP]] norm %[[N]] micro_step %[[MICRO]] {{.*}} : tensor<2xf32>
// CHECK-NEXT: return %{{.*}}, %[[W1]], %[[MW1]], %[[VW1]], %[[AW1]], %[[B1]], %[[MB1]], %[[VB1]], %[[AB1]]
func.func @forward(%w: tensor<8x2xf32> {mixer.param = "w"},
                   %b: tensor<2xf32> {mixer.param = "b"})
    -> (tensor<f32>, tensor<8x2xf32>, tensor<2xf32>)
    attributes {mixer.outputs = ["loss", "grad/w", "grad/b"],
                mixer.training = {learning_rate = 1.0e-3 : f64, warmup_steps = 10 : i64, total_steps = 100 : i64,
                                  b1 = 0.9 : f64, b2 = 0.999 : f64, eps = 1.0e-6 : f64,
                                  weight_decay = 0.0 : f64, clip_grad_norm = 1.5 : f64,
                                  gradient_accumulation_steps = 2 : i64}} {
  %l = mixer.fill 0.5 : tensor<f32>
  %dw = mixer.fill 2.0 : tensor<8x2xf32>
  %db = mixer.fill 3.0 : tensor<2xf32>
  return %l, %dw, %db : tensor<f32>, tensor<8x2xf32>, tensor<2xf32>
}

// -----

// expected-error @+1 {{mixer.training 'gradient_accumulation_steps' must be an integer >= 1}}
func.func @forward(%w: tensor<2xf32> {mixer.param = "w"}) -> (tensor<f32>, tensor<2xf32>)
    attributes {mixer.outputs = ["loss", "grad/w"],
                mixer.training = {b1 = 0.9 : f64, b2 = 0.999 : f64, eps = 1.0e-6 : f64, weight_decay = 0.01 : f64,
                                  clip_grad_norm = 0.0 : f64, gradient_accumulation_steps = 0 : i64}} {
  %l = mixer.fill 0.5 : tensor<f32>
  %dw = mixer.fill 2.0 : tensor<2xf32>
  return %l, %dw : tensor<f32>, tensor<2xf32>
}

// -----

// expected-error @+1 {{no optimizer settings (mixer.training) to apply}}
func.func @forward(%w: tensor<2xf32> {mixer.param = "w"}) -> (tensor<f32>, tensor<2xf32>)
    attributes {mixer.outputs = ["loss", "grad/w"]} {
  %l = mixer.fill 0.5 : tensor<f32>
  %dw = mixer.fill 2.0 : tensor<2xf32>
  return %l, %dw : tensor<f32>, tensor<2xf32>
}

// -----

// expected-error @+1 {{mixer.training has no f64 'weight_decay'}}
func.func @forward(%w: tensor<2xf32> {mixer.param = "w"}) -> (tensor<f32>, tensor<2xf32>)
    attributes {mixer.outputs = ["loss", "grad/w"],
                mixer.training = {b1 = 0.9 : f64, b2 = 0.999 : f64, eps = 1.0e-6 : f64, clip_grad_norm = 0.0 : f64}} {
  %l = mixer.fill 0.5 : tensor<f32>
  %dw = mixer.fill 2.0 : tensor<2xf32>
  return %l, %dw : tensor<f32>, tensor<2xf32>
}

// -----

// expected-error @+1 {{parameter 'b' has no gradient result 'grad/b': run mixer-autodiff first}}
func.func @forward(%w: tensor<2xf32> {mixer.param = "w"}, %b: tensor<2xf32> {mixer.param = "b"}) -> (tensor<f32>, tensor<2xf32>)
    attributes {mixer.outputs = ["loss", "grad/w"],
                mixer.training = {b1 = 0.9 : f64, b2 = 0.999 : f64, eps = 1.0e-6 : f64, weight_decay = 0.01 : f64, clip_grad_norm = 0.0 : f64}} {
  %l = mixer.fill 0.5 : tensor<f32>
  %dw = mixer.fill 2.0 : tensor<2xf32>
  return %l, %dw : tensor<f32>, tensor<2xf32>
}

// -----

// expected-error @+1 {{input 'step' must have type 'tensor<i32>', not 'tensor<2xi32>'}}
func.func @forward(%step: tensor<2xi32> {mixer.input = "step"}, %w: tensor<2xf32> {mixer.param = "w"}) -> (tensor<f32>, tensor<2xf32>)
    attributes {mixer.outputs = ["loss", "grad/w"],
                mixer.training = {b1 = 0.9 : f64, b2 = 0.999 : f64, eps = 1.0e-6 : f64, weight_decay = 0.01 : f64, clip_grad_norm = 0.0 : f64}} {
  %l = mixer.fill 0.5 : tensor<f32>
  %dw = mixer.fill 2.0 : tensor<2xf32>
  return %l, %dw : tensor<f32>, tensor<2xf32>
}

// -----

// On an expert-parallel mesh the clipping norm counts every rank's expert
// slice once: the norm of this rank's slices, tiled ep times and exchanged
// over `ep`, joins the replicated gradients in the global norm. The results
// keep their attributes (a summed loss stays `mixer.replicated`).
// CHECK-LABEL: func.func @forward
// CHECK-SAME: -> (tensor<f32> {mixer.replicated},
// CHECK: %[[LOCAL:.*]] = mixer.global_norm %[[DE:.*]] : tensor<1x4x4xf32>
// CHECK: %[[R:.*]] = mixer.reshape %[[LOCAL]] : tensor<f32> to tensor<1x1xf32>
// CHECK: %[[ONES:.*]] = mixer.fill 1.0{{.*}} : tensor<1x2xf32>
// CHECK: %[[T:.*]] = mixer.dense %[[R]], %[[ONES]]
// CHECK: %[[TILED:.*]] = mixer.reshape %[[T]] : tensor<1x2xf32> to tensor<2xf32>
// CHECK: %[[ALL:.*]] = mixer.all_to_all %[[TILED]] {group = "ep"} : tensor<2xf32>
// CHECK: %[[NORM:.*]] = mixer.global_norm %[[DW:.*]], %[[ALL]] : tensor<4x4xf32>, tensor<2xf32>
// CHECK: mixer.adamw {{.*}} norm %[[NORM]]
// CHECK: mixer.adamw {{.*}} norm %[[NORM]]
module attributes {mixer.mesh = {dp = 1 : i64, ep = 2 : i64}} {
func.func @forward(%w: tensor<4x4xf32> {mixer.param = "w"},
                   %e: tensor<1x4x4xf32> {mixer.param = "e", mixer.shard = {axis = 0 : i64, mesh_axis = "ep"}},
                   %dw: tensor<4x4xf32>, %de: tensor<1x4x4xf32>, %l: tensor<f32>)
    -> (tensor<f32> {mixer.replicated}, tensor<4x4xf32>, tensor<1x4x4xf32>)
    attributes {mixer.outputs = ["loss", "grad/w", "grad/e"],
                mixer.training = {learning_rate = 1.0e-3 : f64, warmup_steps = 10 : i64, total_steps = 100 : i64,
                                  b1 = 0.8 : f64, b2 = 0.99 : f64, eps = 1.0e-8 : f64,
                                  weight_decay = 0.1 : f64, clip_grad_norm = 1.0 : f64}} {
  return %l, %dw, %de : tensor<f32>, tensor<4x4xf32>, tensor<1x4x4xf32>
}
}
