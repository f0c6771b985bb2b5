//===- GradientOps.td - ops of backward graphs -------------*- tablegen -*-===//
//
// Ops that reverse-mode differentiation emits besides the forward ops it
// reuses (dense with a transposed weight for input gradients, reshape,
// spectral_mix, which is self-adjoint).
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_GRADIENTOPS_TD
#define MIXER_GRADIENTOPS_TD

include "dialects/mixer/MixerBase.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

def Mixer_FillOp : Mixer_Op<"fill", [Pure]> {
  let summary = "a tensor with every element equal to `value`";
  let arguments = (ins F64Attr:$value);
  let results = (outs Mixer_F32Tensor:$result);
  let assemblyFormat = "$value attr-dict `:` type($result)";
  let kernel = "Fill";
}

def Mixer_ActivationGradOp : Mixer_Op<"activation_grad", [Pure,
    AllTypesMatch<["preactivation", "result_grad", "result"]>]> {
  let summary = "gradient of a pointwise activation from its input";
  let arguments = (ins Mixer_F32Tensor:$preactivation,
                       Mixer_F32Tensor:$result_grad, Mixer_ActivationAttr:$kind);
  let results = (outs Mixer_F32Tensor:$result);
  let assemblyFormat = [{
    $kind $preactivation `,` $result_grad attr-dict `:` type($result)
  }];
  let kernel = "ActivationGrad";
}

def Mixer_DenseWeightGradOp : Mixer_Op<"dense_weight_grad", [Pure,
    DeclareOpInterfaceMethods<Mixer_FlopCountOpInterface>]> {
  let summary = "weight gradient of mixer.dense: inputᵀ · result_grad";
  let description = [{
    Contracts every leading axis of `input [..., K]` and `result_grad
    [..., N]` into `[K, N]`, or `[N, K]` when `transpose_weight` (the layout
    of the dense op's weight).
  }];
  let arguments = (ins Mixer_F32Tensor:$input, Mixer_F32Tensor:$result_grad,
                       UnitAttr:$transpose_weight);
  let results = (outs Mixer_F32Tensor:$result);
  let assemblyFormat = [{
    $input `,` $result_grad attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let kernel = "DenseWeightGrad";
  let kernelAttributeNames = [["transpose_weight", "transpose_w"]];
}

def Mixer_ReduceRowsOp : Mixer_Op<"reduce_rows", [Pure]> {
  let summary = "sum over every axis but the last (bias gradients)";
  let arguments = (ins Mixer_F32Tensor:$input);
  let results = (outs Mixer_F32Tensor:$result);
  let assemblyFormat = "$input attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let kernel = "ReduceRows";
}

def Mixer_LayerNormGradOp : Mixer_Op<"layer_norm_grad", [Pure]> {
  let summary = "gradients of mixer.layer_norm (input, scale, bias)";
  let arguments = (ins Mixer_F32Tensor:$input, Mixer_F32Tensor:$scale,
                       Mixer_F32Tensor:$result_grad, F64Attr:$epsilon);
  let results = (outs Mixer_F32Tensor:$input_grad, Mixer_F32Tensor:$scale_grad,
                      Mixer_F32Tensor:$bias_grad);
  let assemblyFormat = [{
    $input `,` $scale `,` $result_grad attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Mixer_SoftmaxGradOp : Mixer_Op<"softmax_grad", [Pure,
    AllTypesMatch<["output", "result_grad", "result"]>]> {
  let summary = "gradient of mixer.softmax from its output";
  let arguments = (ins Mixer_F32Tensor:$output, Mixer_F32Tensor:$result_grad);
  let results = (outs Mixer_F32Tensor:$result);
  let assemblyFormat = "$output `,` $result_grad attr-dict `:` type($result)";
  let kernel = "SoftmaxGrad";
}

def Mixer_TakePositionGradOp : Mixer_Op<"take_position_grad", [Pure]> {
  let summary = "scatters [B, D] gradients to one position of [B, S, D] zeros";
  let arguments = (ins Mixer_F32Tensor:$result_grad,
                       ConfinedAttr<I64Attr, [IntNonNegative]>:$index);
  let results = (outs Mixer_F32Tensor:$result);
  let assemblyFormat = [{
    $result_grad `[` $index `]` attr-dict `:` type($result_grad) `to` type($result)
  }];
  let hasVerifier = 1;
  let kernel = "TakePositionGrad";
}

def Mixer_LinearMixGradOp : Mixer_Op<"linear_mix_grad", [Pure,
    DeclareOpInterfaceMethods<Mixer_FlopCountOpInterface>]> {
  let summary = "gradients of mixer.linear_mix (input, seq_kernel, hidden_kernel)";
  let arguments = (ins Mixer_F32Tensor:$input, Mixer_F32Tensor:$seq_kernel,
                       Mixer_F32Tensor:$hidden_kernel,
                       Mixer_F32Tensor:$result_grad);
  let results = (outs Mixer_F32Tensor:$input_grad,
                      Mixer_F32Tensor:$seq_kernel_grad,
                      Mixer_F32Tensor:$hidden_kernel_grad);
  let assemblyFormat = [{
    $input `,` $seq_kernel `,` $hidden_kernel `,` $result_grad attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let kernel = "LinearMixGrad";
}

def Mixer_EmbedGradOp : Mixer_Op<"embed_grad", [Pure]> {
  let summary = "gradients of mixer.embed's word, position and type tables";
  let description = [{
    Scatter-adds the rows of `result_grad [B, S, De]` into zero tables shaped
    like the forward op's tables (positions beyond S get zeros).
  }];
  let arguments = (ins Mixer_I32Tensor:$ids, Mixer_I32Tensor:$type_ids,
                       Mixer_F32Tensor:$result_grad);
  let results = (outs Mixer_F32Tensor:$word_grad,
                      Mixer_F32Tensor:$position_grad,
                      Mixer_F32Tensor:$type_grad);
  let assemblyFormat = [{
    $ids `,` $type_ids `,` $result_grad attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let kernel = "EmbedGrad";
}

def Mixer_AttentionGradOp : Mixer_Op<"attention_grad", [Pure,
    AttrSizedOperandSegments,
    DeclareOpInterfaceMethods<Mixer_FlopCountOpInterface>]> {
  let summary = "gradients of mixer.attention (query, key, value)";
  let description = [{
    Recomputes the attention probabilities from the queries and keys, and
    the dropout mask from the `noise` operands and the dropout attributes of
    the forward op, so the forward keeps no [B, H, S, S] tensor alive for
    the backward.
  }];
  let arguments = (ins Mixer_F32Tensor:$query, Mixer_F32Tensor:$key,
                       Mixer_F32Tensor:$value, Mixer_I32Tensor:$ids,
                       Mixer_F32Tensor:$result_grad,
                       Optional<Mixer_I32Scalar>:$seed,
                       Optional<Mixer_I32Scalar>:$step,
                       ConfinedAttr<I64Attr, [IntPositive]>:$num_heads,
                       ConfinedAttr<I64Attr, [IntPositive]>:$head_dim,
                       I64Attr:$pad_id, UnitAttr:$causal,
                       OptionalAttr<F64Attr>:$dropout_rate,
                       OptionalAttr<ConfinedAttr<I64Attr, [IntNonNegative]>>:$dropout_stream);
  let results = (outs Mixer_F32Tensor:$query_grad, Mixer_F32Tensor:$key_grad,
                      Mixer_F32Tensor:$value_grad);
  let assemblyFormat = [{
    $query `,` $key `,` $value `,` $ids `,` $result_grad
    (`noise` $seed^ `,` $step)? attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let kernel = "AttentionGrad";
  let kernelAttributeNames = [["dropout_stream", "stream"]];
}

def Mixer_StructuredMixGradOp : Mixer_Op<"structured_mix_grad", [Pure]> {
  let summary = "gradients of mixer.structured_mix (input and both kernel vectors)";
  let arguments = (ins Mixer_F32Tensor:$input, Mixer_F32Tensor:$seq_kernel,
                       Mixer_F32Tensor:$hidden_kernel,
                       Mixer_F32Tensor:$result_grad, UnitAttr:$toeplitz);
  let results = (outs Mixer_F32Tensor:$input_grad,
                      Mixer_F32Tensor:$seq_kernel_grad,
                      Mixer_F32Tensor:$hidden_kernel_grad);
  let assemblyFormat = [{
    $input `,` $seq_kernel `,` $hidden_kernel `,` $result_grad attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let kernel = "StructuredMixGrad";
}

//===----------------------------------------------------------------------===//
// Mixture of experts. Gradients flow through the gates; the assignment table
// (which tokens each expert took) is a constant of the backward pass.
//===----------------------------------------------------------------------===//

def Mixer_DispatchGradOp : Mixer_Op<"dispatch_grad", [Pure]> {
  let summary = "sum of the slot-row gradients back onto their tokens";
  let arguments = (ins Mixer_F32Tensor:$result_grad, Mixer_I32Tensor:$tokens);
  let results = (outs Mixer_F32Tensor:$result);
  let assemblyFormat = [{
    $result_grad `,` $tokens attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let kernel = "DispatchGrad";
}

def Mixer_CombineGradOp : Mixer_Op<"combine_grad", [Pure]> {
  let summary = "gradients of mixer.combine (slot rows and gates)";
  let description = [{
    `input_grad[i] = gates[i] · result_grad[tokens[i]]` and
    `gates_grad[i] = ⟨input[i], result_grad[tokens[i]]⟩`; empty slots get 0.
  }];
  let arguments = (ins Mixer_F32Tensor:$input, Mixer_I32Tensor:$tokens,
                       Mixer_F32Tensor:$gates, Mixer_F32Tensor:$result_grad);
  let results = (outs Mixer_F32Tensor:$input_grad, Mixer_F32Tensor:$gates_grad);
  let assemblyFormat = [{
    $input `,` $tokens `,` $gates `,` $result_grad attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let kernel = "CombineGrad";
}

def Mixer_ExpertsGradOp : Mixer_Op<"experts_grad", [Pure,
    DeclareOpInterfaceMethods<Mixer_FlopCountOpInterface>]> {
  let summary = "gradients of mixer.experts (slot rows and expert weights)";
  let description = [{
    Recomputes each expert's hidden pre-activations from its slot rows (one
    GEMM) instead of keeping them from the forward pass. The bias gradients
    are produced whether or not the forward op had biases; unused ones are
    dead values. `layout` is the forward op's.
  }];
  let arguments = (ins Mixer_F32Tensor:$input, Mixer_I32Tensor:$tokens,
                       Mixer_I32Tensor:$offsets, Mixer_F32Tensor:$w1,
                       Optional<Mixer_F32Tensor>:$b1, Mixer_F32Tensor:$w2,
                       Mixer_F32Tensor:$result_grad,
                       Mixer_ActivationAttr:$activation,
                       Mixer_ExpertLayoutAttr:$layout);
  let results = (outs Mixer_F32Tensor:$input_grad, Mixer_F32Tensor:$w1_grad,
                      Mixer_F32Tensor:$b1_grad, Mixer_F32Tensor:$w2_grad,
                      Mixer_F32Tensor:$b2_grad);
  let assemblyFormat = [{
    $input `,` $tokens `,` $offsets `,` $w1 (`bias` $b1^)? `,` $w2 `,`
    $result_grad attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let kernel = "ExpertsGrad";
}

def Mixer_ScatterGateGradOp : Mixer_Op<"scatter_gate_grad", [Pure]> {
  let summary = "gate gradients back to the [tokens, experts] scores they came from";
  let description = [{
    `result[tokens[i], e(i)] += gates_grad[i]` where e(i) is the expert whose
    segment (offsets) holds slot i; zeros elsewhere.
  }];
  let arguments = (ins Mixer_I32Tensor:$tokens, Mixer_I32Tensor:$offsets,
                       Mixer_F32Tensor:$gates_grad);
  let results = (outs Mixer_F32Tensor:$result);
  let assemblyFormat = [{
    $tokens `,` $offsets `,` $gates_grad attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let kernel = "ScatterGateGrad";
}

def Mixer_RouteGradOp : Mixer_Op<"route_grad", [Pure]> {
  let summary = "gradient of mixer.route's gates with respect to its logits";
  let description = [{
    Capacity routings: the gate gradients scattered onto the probabilities,
    then through the softmax (recomputed from the logits, by the bfloat16
    router's softmax with `router_bf16`); sigmoid_topk: through the sigmoid.
  }];
  let arguments = (ins Mixer_F32Tensor:$logits, Mixer_I32Tensor:$tokens,
                       Mixer_I32Tensor:$offsets, Mixer_F32Tensor:$gates_grad,
                       Mixer_RoutingAttr:$routing, UnitAttr:$router_bf16);
  let results = (outs Mixer_F32Tensor:$result);
  let assemblyFormat = [{
    $logits `,` $tokens `,` $offsets `,` $gates_grad attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let kernel = "RouteGrad";
}

/// Gradient of a router loss with respect to its `[N, E]` operand, scaled by
/// the loss gradient `result_grad`.
class Mixer_RouterLossGradOp<string mnemonic, string summaryText>
    : Mixer_Op<mnemonic, [Pure, AllTypesMatch<["input", "result"]>]> {
  let summary = summaryText;
  let arguments = (ins Mixer_F32Tensor:$input, Mixer_F32Scalar:$result_grad);
  let results = (outs Mixer_F32Tensor:$result);
  let assemblyFormat = "$input `,` $result_grad attr-dict `:` type($result)";
}

def Mixer_RouterZLossGradOp : Mixer_RouterLossGradOp<"router_z_loss_grad",
    "gradient of mixer.router_z_loss: 2·lse_t·softmax(logits[t]) / N"> {
  let kernel = "RouterZLossGrad";
}
def Mixer_EntropyRegularizerGradOp : Mixer_RouterLossGradOp<
    "entropy_regularizer_grad", "gradient of mixer.entropy_regularizer"> {
  let description = [{
    With `group` (that of the forward op) the ranks' regulariser is one
    value: its gradient sums the ranks' loss gradients (the adjoint of the
    exchange) and reads the whole batch's mean.
  }];
  let arguments = (ins Mixer_F32Tensor:$input, Mixer_F32Scalar:$result_grad,
                       OptionalAttr<StrAttr>:$group);
  let kernel = "EntropyRegularizerGrad";
}

def Mixer_LoadBalancingLossGradOp : Mixer_Op<"load_balancing_loss_grad", [Pure,
    AllTypesMatch<["probs", "result"]>]> {
  let summary = "gradient of mixer.load_balancing_loss with respect to the probabilities";
  let description = [{
    `E·count[g,e] / (G·T²)` per token of group g, times the loss gradient,
    with `count[g,e]` the number of the group's tokens that chose e.
  }];
  let arguments = (ins Mixer_F32Tensor:$probs, Mixer_F32Scalar:$result_grad,
                       ConfinedAttr<I64Attr, [IntPositive]>:$num_groups,
                       ConfinedAttr<I64Attr, [IntPositive]>:$k);
  let results = (outs Mixer_F32Tensor:$result);
  let assemblyFormat = "$probs `,` $result_grad attr-dict `:` type($result)";
  let kernel = "LoadBalancingLossGrad";
  let kernelAttributeNames = [["num_groups", "groups"]];
}

#endif // MIXER_GRADIENTOPS_TD
