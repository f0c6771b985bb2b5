//===- TrainingOps.td - noise and the optimizer update -----*- tablegen -*-===//
//
// Ops of the training step beyond the losses and gradients: the
// regularisation noise of the forward pass (dropout, router jitter), gradient
// accumulation over micro-steps and the AdamW update that ends the step.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_TRAININGOPS_TD
#define MIXER_TRAININGOPS_TD

include "dialects/mixer/MixerBase.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

def Mixer_RandomScaleOp : Mixer_Op<"random_scale", [Pure,
    AllTypesMatch<["input", "result"]>,
    DeclareOpInterfaceMethods<Mixer_GradientOpInterface>]> {
  let summary = "elementwise product with counter-based random factors (dropout, jitter)";
  let description = [{
    `result[i] = input[i] · r[i]` where `r[i]` depends only on `seed`,
    `stream`, `step` and the element index i: with `u` uniform in [0, 1),
    dropout draws `r = (u >= rate) / (1 − rate)` (inverted dropout), jitter
    `r = 1 − rate + 2·rate·u` (uniform in [1 − rate, 1 + rate)). The factors
    are the same whenever the op runs with the same key, so the op is pure,
    and its gradient is the same op applied to the result gradient. Every
    op of a function needs its own `stream`: two ops with the same stream
    draw the same factors.

    i is the element's index in the whole batch's tensor. On a rank of a
    parallel program the input is that rank's share of it: the input's
    elements form `blocks` equal blocks, and block b is the rank's
    contiguous part of block b of the whole tensor. One block (when `blocks`
    is absent) is the rank's rows of the batch; the slot rows of a capacity routing
    (ordered by expert, then group) have one block per expert.

    ```mlir
    %y = mixer.random_scale dropout %x, %seed, %step {rate = 1.0e-01 : f64, stream = 0 : i64} : tensor<2x8x16xf32>
    ```
  }];
  let arguments = (ins Mixer_F32Tensor:$input, Mixer_I32Scalar:$seed,
                       Mixer_I32Scalar:$step, Mixer_NoiseKindAttr:$kind,
                       F64Attr:$rate,
                       ConfinedAttr<I64Attr, [IntNonNegative]>:$stream,
                       OptionalAttr<ConfinedAttr<I64Attr, [IntPositive]>>:$blocks);
  let results = (outs Mixer_F32Tensor:$result);
  let assemblyFormat = [{
    $kind $input `,` $seed `,` $step attr-dict `:` type($result)
  }];
  let hasVerifier = 1;
  let kernel = "RandomScale";
}

def Mixer_DropExpertsOp : Mixer_Op<"drop_experts", [Pure,
    AllTypesMatch<["input", "result"]>,
    DeclareOpInterfaceMethods<Mixer_GradientOpInterface>]> {
  let summary = "σ-MoE expert dropout: removes experts from each token's selection";
  let description = [{
    On selection logits `[N, E]`: element i becomes −∞ (a dropped expert,
    which the top-k never prefers and whose sigmoid gate is 0) when
    `u[i] < rate`, with `u` the uniforms of mixer.random_scale for the same
    `seed`, `stream`, `step` and element index. With `gradient` the dropped
    elements become 0 instead: that is the op's gradient, so gradients flow
    through the kept logits only.

    ```mlir
    %d = mixer.drop_experts %logits, %seed, %step {rate = 5.0e-02 : f64, stream = 3 : i64} : tensor<18x4xf32>
    ```
  }];
  let arguments = (ins Mixer_F32Tensor:$input, Mixer_I32Scalar:$seed,
                       Mixer_I32Scalar:$step, F64Attr:$rate,
                       ConfinedAttr<I64Attr, [IntNonNegative]>:$stream,
                       UnitAttr:$gradient);
  let results = (outs Mixer_F32Tensor:$result);
  let assemblyFormat = "$input `,` $seed `,` $step attr-dict `:` type($result)";
  let hasVerifier = 1;
  let kernel = "DropExperts";
}

def Mixer_NoiseCounterOp : Mixer_Op<"noise_counter", [Pure]> {
  let summary = "the noise counter of a micro-step: step · micro_steps + micro_step";
  let description = [{
    With gradient accumulation one update runs `micro_steps` micro-steps;
    the noise ops of micro-step `micro_step` of the update that follows
    `step` updates draw with this counter (in place of `step`), so that
    every micro-step gets its own factors. The product wraps modulo 2³².
    Only noise ops may read it (as their `step`): `mixer-lower-to-runtime`
    passes its operands and `micro_steps` to their kernels, which form the
    counter themselves.

    ```mlir
    %c = mixer.noise_counter %step, %micro_step {micro_steps = 4 : i64}
    ```
  }];
  let arguments = (ins Mixer_I32Scalar:$step, Mixer_I32Scalar:$micro_step,
                       ConfinedAttr<I64Attr, [IntMinValue<2>]>:$micro_steps);
  let results = (outs Mixer_I32Scalar:$result);
  let assemblyFormat = "$step `,` $micro_step attr-dict";
}

def Mixer_AccumulateGradientOp : Mixer_Op<"accumulate_gradient", [Pure,
    AllTypesMatch<["accumulator", "grad", "new_accumulator", "average"]>]> {
  let summary = "gradient accumulation over the micro-steps of one update";
  let description = [{
    One update runs `micro_steps` micro-steps, `micro_step` counting them
    from 0. With `s = accumulator + grad`:
    ```
    average = s / micro_steps
    new_accumulator = micro_step == micro_steps − 1 ? 0 : s
    ```
    so that on the last micro-step `average` is the mean gradient of the
    update and the accumulator starts the next update at zero. The
    accumulator is optimizer state (`mixer-apply-optimizer` adds it as the
    argument `grad_accum/<parameter>` and returns `new_accumulator` as its
    update, which `mixer-lower-to-runtime` computes in place).

    ```mlir
    %acc1, %avg = mixer.accumulate_gradient %acc, %g, %micro_step {micro_steps = 2 : i64} : tensor<16x32xf32>
    ```
  }];
  let arguments = (ins Mixer_F32Tensor:$accumulator, Mixer_F32Tensor:$grad,
                       Mixer_I32Scalar:$micro_step,
                       ConfinedAttr<I64Attr, [IntMinValue<2>]>:$micro_steps);
  let results = (outs Mixer_F32Tensor:$new_accumulator,
                      Mixer_F32Tensor:$average);
  let assemblyFormat = [{
    $accumulator `,` $grad `,` $micro_step attr-dict `:` type($grad)
  }];
}

def Mixer_GlobalNormOp : Mixer_Op<"global_norm", [Pure]> {
  let summary = "L2 norm of all elements of all operands together";
  let description = [{
    `sqrt(Σ_k Σ_i inputs[k][i]²)`: the norm that global-norm gradient
    clipping compares against its bound.

    ```mlir
    %n = mixer.global_norm %g1, %g2 : tensor<16x32xf32>, tensor<32xf32>
    ```
  }];
  let arguments = (ins Variadic<Mixer_F32Tensor>:$inputs);
  let results = (outs Mixer_F32Scalar:$result);
  let assemblyFormat = "$inputs attr-dict `:` type($inputs)";
  let hasVerifier = 1;
  let kernel = "GlobalNorm";
}

def Mixer_AdamWOp : Mixer_Op<"adamw", [Pure, AttrSizedOperandSegments,
    AllTypesMatch<["param", "adam_m", "adam_v", "grad", "new_param",
                   "new_adam_m", "new_adam_v"]>]> {
  let summary = "one AdamW update of a parameter and its two moments";
  let description = [{
    Update number `step + 1` (`step` counts the updates applied before) with
    learning rate `learning_rate`, as optax.adamw composes it:
    ```
    g = grad · min(1, max_norm / norm)          (only when max_norm > 0)
    m' = b1·m + (1 − b1)·g                       v' = b2·v + (1 − b2)·g²
    u = (m' / (1 − b1^t)) / (sqrt(v' / (1 − b2^t)) + eps) + weight_decay·param
    param' = param − learning_rate · u           (t = step + 1)
    ```
    The op has value semantics: its results are the new parameter and
    moments. `mixer-apply-optimizer` returns them from the function as
    updates of the argument they replace (result attribute `mixer.update`),
    and `mixer-lower-to-runtime` computes them in place in the argument's
    storage, which it may do only because nothing reads the old values
    afterwards. `norm` (the `mixer.global_norm` of all gradients) is present
    exactly when `max_norm > 0`.

    With gradient accumulation (`micro_steps > 1`, and then the operand
    `micro_step`) only the last micro-step of an update applies it: on
    micro-steps 0 … micro_steps − 2 the results are the parameter and
    moments unchanged, and `grad` (the `average` of
    mixer.accumulate_gradient) is not read.

    ```mlir
    %p1, %m1, %v1 = mixer.adamw %p, %m, %v, %g, %lr, %step {b1 = 0.9 : f64, b2 = 0.999 : f64, eps = 1.0e-06 : f64, weight_decay = 0.01 : f64, max_norm = 0.0 : f64} : tensor<16x32xf32>
    ```
  }];
  let arguments = (ins Mixer_F32Tensor:$param, Mixer_F32Tensor:$adam_m,
                       Mixer_F32Tensor:$adam_v, Mixer_F32Tensor:$grad,
                       Mixer_F32Scalar:$learning_rate, Mixer_I32Scalar:$step,
                       Optional<Mixer_F32Scalar>:$norm,
                       Optional<Mixer_I32Scalar>:$micro_step, F64Attr:$b1,
                       F64Attr:$b2, F64Attr:$eps, F64Attr:$weight_decay,
                       F64Attr:$max_norm,
                       DefaultValuedAttr<ConfinedAttr<I64Attr, [IntPositive]>,
                                         "1">:$micro_steps);
  let results = (outs Mixer_F32Tensor:$new_param, Mixer_F32Tensor:$new_adam_m,
                      Mixer_F32Tensor:$new_adam_v);
  let assemblyFormat = [{
    $param `,` $adam_m `,` $adam_v `,` $grad `,` $learning_rate `,` $step
    (`norm` $norm^)? (`micro_step` $micro_step^)? attr-dict `:` type($param)
  }];
  let hasVerifier = 1;
}

#endif // MIXER_TRAININGOPS_TD
