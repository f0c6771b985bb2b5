//===- MoeOps.td - mixture-of-experts ops ------------------*- tablegen -*-===//
//
// The frontend emits `mixer.moe` / `mixer.sigma_moe`; `mixer-decompose-moe`
// rewrites them into router logits → route → dispatch → experts → combine.
//
// Routing results form an assignment table of A slots ordered by expert:
// expert e owns slots [offsets[e], offsets[e+1]); each slot holds a token
// index of the flattened batch (−1 = empty) and a gate. Capacity routings
// have A = E·G·C (slot (e·G + g)·C + c is slot c of expert e in group g);
// sigmoid_topk has A = N·k.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_MOEOPS_TD
#define MIXER_MOEOPS_TD

include "dialects/mixer/MixerBase.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

defvar Mixer_RoutingAttrs = (ins Mixer_RoutingAttr:$routing,
                   ConfinedAttr<I64Attr, [IntPositive]>:$num_groups,
                   ConfinedAttr<I64Attr, [IntNonNegative]>:$capacity,
                   ConfinedAttr<I64Attr, [IntPositive]>:$k,
                   UnitAttr:$batch_prioritized, UnitAttr:$router_bf16);

def Mixer_MoeOp : Mixer_Op<"moe", [Pure, AttrSizedOperandSegments]> {
  let summary = "capacity-routed mixture of GELU feed-forward experts";
  let description = [{
    Experts-choose or tokens-choose MoE over the flattened `[N, D]` tokens of
    the input, split into `num_groups` groups. Router probabilities are
    `softmax(x · router_kernel + router_bias)`; with `router_bf16` every step
    is rounded to bfloat16 (the operands, the product, the logits and each
    step of the softmax; docs/parameters.md). Each token's output is the
    gate-weighted sum of `GELU(x · W1[e] + b1[e]) · W2[e] + b2[e]` over the
    experts that took it; tokens no expert took get zeros.

    Training noise (with the `noise` operands `seed` and `step`, see
    mixer.random_scale): `jitter_noise` multiplies the router's input (not
    the experts' input) by factors uniform in [1 − j, 1 + j);
    `expert_dropout_rate` drops elements of each expert's output rows before
    they are combined. Each has its own stream.

    In a training step the op also returns its router losses, unscaled
    (`losses`): none, or the router z-loss of the logits, followed for
    tokens_choose by the load-balancing loss of the probabilities (spec
    §7.3, §7.5; experts_choose has none).
  }];
  let arguments = !con((ins Mixer_F32Tensor:$input, Mixer_F32Tensor:$router_kernel,
                            Mixer_F32Tensor:$router_bias, Mixer_F32Tensor:$w1, Mixer_F32Tensor:$b1,
                            Mixer_F32Tensor:$w2, Mixer_F32Tensor:$b2,
                            Optional<Mixer_I32Scalar>:$seed, Optional<Mixer_I32Scalar>:$step),
                       Mixer_RoutingAttrs,
                       (ins OptionalAttr<F64Attr>:$jitter_noise,
                            OptionalAttr<ConfinedAttr<I64Attr, [IntNonNegative]>>:$jitter_stream,
                            OptionalAttr<F64Attr>:$expert_dropout_rate,
                            OptionalAttr<ConfinedAttr<I64Attr, [IntNonNegative]>>:$expert_dropout_stream));
  let results = (outs Mixer_F32Tensor:$result,
                      Variadic<Mixer_F32Scalar>:$losses);
  let assemblyFormat = [{
    $input `,` $router_kernel `,` $router_bias `,` $w1 `,` $b1 `,` $w2 `,` $b2
    (`noise` $seed^ `,` $step)? attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// Checks the training noise: rates, streams and operands.
    ::llvm::LogicalResult verifyNoise();
  }];
}

def Mixer_SigmaMoeOp : Mixer_Op<"sigma_moe", [Pure, AttrSizedOperandSegments]> {
  let summary = "sigma-MoE: sigmoid top-k routing over small ReLU experts";
  let description = [{
    `g = sigmoid(x · expert_selᵀ)`; each token takes its `k` highest gates
    (no renormalisation, no capacity) and gets
    `Σ g_e · ReLU(x · keys[e]) · values[e]`.

    Training: `expert_dropout_rate` (with the `noise` operands and its
    `expert_dropout_stream`) removes whole experts from each token's
    selection before the top-k (mixer.drop_experts); `losses` is empty or
    holds the entropy regulariser of the selection logits, unscaled
    (mixer.entropy_regularizer).
  }];
  let arguments = (ins Mixer_F32Tensor:$input, Mixer_F32Tensor:$expert_sel,
                       Mixer_F32Tensor:$keys, Mixer_F32Tensor:$values,
                       Optional<Mixer_I32Scalar>:$seed,
                       Optional<Mixer_I32Scalar>:$step,
                       ConfinedAttr<I64Attr, [IntPositive]>:$k,
                       OptionalAttr<F64Attr>:$expert_dropout_rate,
                       OptionalAttr<ConfinedAttr<I64Attr, [IntNonNegative]>>:$expert_dropout_stream);
  let results = (outs Mixer_F32Tensor:$result,
                      Variadic<Mixer_F32Scalar>:$losses);
  let assemblyFormat = [{
    $input `,` $expert_sel `,` $keys `,` $values (`noise` $seed^ `,` $step)?
    attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Router losses of training steps (spec §7.3, §7.5; σ-MoE: moe-systems §1.1).
// Their gradients flow into the router logits or probabilities only.
//===----------------------------------------------------------------------===//

def Mixer_RouterZLossOp : Mixer_Op<"router_z_loss", [Pure,
    DeclareOpInterfaceMethods<Mixer_GradientOpInterface>]> {
  let summary = "mean over tokens of the squared logsumexp of the router logits";
  let arguments = (ins Mixer_F32Tensor:$logits);
  let results = (outs Mixer_F32Scalar:$result);
  let assemblyFormat = "$logits attr-dict `:` type($logits)";
  let hasVerifier = 1;
  let kernel = "RouterZLoss";
}

def Mixer_LoadBalancingLossOp : Mixer_Op<"load_balancing_loss", [Pure,
    DeclareOpInterfaceMethods<Mixer_GradientOpInterface>]> {
  let summary = "Switch load-balancing loss of tokens-choose router probabilities";
  let description = [{
    Over probabilities `[N, E]` cut into `num_groups` groups, before any
    capacity dropping: `mean_{g,e}(f·P)·E²` with `f[g,e]` the fraction of
    the group's tokens that have e among their top `k` experts and `P[g,e]`
    the group's mean probability of e. The top-k choice is a constant of
    the gradient.
  }];
  let arguments = (ins Mixer_F32Tensor:$probs,
                       ConfinedAttr<I64Attr, [IntPositive]>:$num_groups,
                       ConfinedAttr<I64Attr, [IntPositive]>:$k);
  let results = (outs Mixer_F32Scalar:$result);
  let assemblyFormat = "$probs attr-dict `:` type($probs)";
  let hasVerifier = 1;
  let kernel = "LoadBalancingLoss";
  let kernelAttributeNames = [["num_groups", "groups"]];
}

def Mixer_EntropyRegularizerOp : Mixer_Op<"entropy_regularizer", [Pure,
    DeclareOpInterfaceMethods<Mixer_GradientOpInterface>]> {
  let summary = "negative entropy of the batch-mean softmax of selection logits";
  let description = [{
    σ-MoE's regulariser: `Σ_e p̄_e log p̄_e` with `p̄ = mean_t softmax(logits[t])`
    over every token of the batch (softmax, although the gates are sigmoids).
    With `group` (`world`, set by `mixer-partition-experts` in a parallel
    program) the mean spans the tokens of every rank: each rank returns the
    whole batch's regulariser, and the ranks exchange their log means.
  }];
  let arguments = (ins Mixer_F32Tensor:$logits, OptionalAttr<StrAttr>:$group);
  let results = (outs Mixer_F32Scalar:$result);
  let assemblyFormat = "$logits attr-dict `:` type($logits)";
  let hasVerifier = 1;
  let kernel = "EntropyRegularizer";
}

def Mixer_RouterLogitsBf16Op : Mixer_Op<"router_logits_bf16", [Pure,
    DeclareOpInterfaceMethods<Mixer_GradientOpInterface>]> {
  let summary = "the bfloat16 router's logits from its product and bias";
  let description = [{
    `bf16(bf16(products) + bf16(bias))` over `[N, E]` products of bfloat16
    operands and an `[E]` bias, every rounding to the nearest bfloat16 (ties
    to even). The roundings pass gradients straight through.
  }];
  let arguments = (ins Mixer_F32Tensor:$products, Mixer_F32Tensor:$bias);
  let results = (outs Mixer_F32Tensor:$result);
  let assemblyFormat = [{
    $products `,` $bias attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let kernel = "RouterLogitsBf16";
}

def Mixer_SelectExpertsOp : Mixer_Op<"select_experts", [Pure, DeclareOpInterfaceMethods<Mixer_GradientOpInterface>]> {
  let summary = "capacity routing from router probabilities";
  let description = [{
    Fills the assignment table from probabilities `[N, E]` (experts_choose or
    tokens_choose). `mixer-fuse-router` folds the preceding softmax into
    `mixer.route`.
  }];
  let arguments = !con((ins Mixer_F32Tensor:$probs), Mixer_RoutingAttrs);
  let results = (outs Mixer_I32Tensor:$tokens, Mixer_F32Tensor:$gates, Mixer_I32Tensor:$offsets);
  let assemblyFormat = "$probs attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def Mixer_RouteOp : Mixer_Op<"route", [Pure, DeclareOpInterfaceMethods<Mixer_GradientOpInterface>]> {
  let summary = "router from logits: softmax or sigmoid gates and expert selection in one op";
  let arguments = !con((ins Mixer_F32Tensor:$logits), Mixer_RoutingAttrs);
  let results = (outs Mixer_I32Tensor:$tokens, Mixer_F32Tensor:$gates, Mixer_I32Tensor:$offsets);
  let assemblyFormat = "$logits attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def Mixer_DispatchOp : Mixer_Op<"dispatch", [Pure, DeclareOpInterfaceMethods<Mixer_GradientOpInterface>]> {
  let summary = "gather the token rows of every slot (zeros for empty slots)";
  let arguments = (ins Mixer_F32Tensor:$input, Mixer_I32Tensor:$tokens);
  let results = (outs Mixer_F32Tensor:$result);
  let assemblyFormat = "$input `,` $tokens attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let kernel = "Dispatch";
}

def Mixer_ExpertsOp : Mixer_Op<"experts",
    [Pure, AttrSizedOperandSegments,
     DeclareOpInterfaceMethods<Mixer_GradientOpInterface>,
     DeclareOpInterfaceMethods<Mixer_FlopCountOpInterface>]> {
  let summary = "per-expert two-layer feed-forward over each expert's slots";
  let description = [{
    `layout` says how the routing that produced `offsets` lays out the
    slots: `capacity` (mixer.select_experts, or mixer.route with a capacity
    routing: every expert owns slots / E consecutive slots) or `grouped`
    (any offsets). `mixer-decompose-moe` sets it; the plan carries it to the
    runtime, which picks its kernels by it.
  }];
  let arguments = (ins Mixer_F32Tensor:$input, Mixer_I32Tensor:$tokens, Mixer_I32Tensor:$offsets,
                       Mixer_F32Tensor:$w1, Optional<Mixer_F32Tensor>:$b1, Mixer_F32Tensor:$w2,
                       Optional<Mixer_F32Tensor>:$b2, Mixer_ActivationAttr:$activation,
                       Mixer_ExpertLayoutAttr:$layout);
  let results = (outs Mixer_F32Tensor:$result);
  let assemblyFormat = [{
    $input `,` $tokens `,` $offsets `,` $w1 (`bias` $b1^)? `,` $w2 (`bias` $b2^)?
    attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let kernel = "Experts";
}

def Mixer_CombineOp : Mixer_Op<"combine", [Pure, DeclareOpInterfaceMethods<Mixer_GradientOpInterface>]> {
  let summary = "gate-weighted scatter-add of slot outputs back to tokens";
  let arguments = (ins Mixer_F32Tensor:$input, Mixer_I32Tensor:$tokens, Mixer_F32Tensor:$gates);
  let results = (outs Mixer_F32Tensor:$result);
  let assemblyFormat = [{
    $input `,` $tokens `,` $gates attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let kernel = "Combine";
}

#endif // MIXER_MOEOPS_TD
