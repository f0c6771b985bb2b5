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
}

def Mixer_DenseWeightGradOp : Mixer_Op<"dense_weight_grad", [Pure]> {
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
}

def Mixer_ReduceRowsOp : Mixer_Op<"reduce_rows", [Pure]> {
  let summary = "sum over every axis but the last (bias gradients)";
  let arguments = (ins Mixer_F32Tensor:$input);
  let results = (outs Mixer_F32Tensor:$result);
  let assemblyFormat = "$input attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
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
}

def Mixer_LinearMixGradOp : Mixer_Op<"linear_mix_grad", [Pure]> {
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
}

def Mixer_AttentionGradOp : Mixer_Op<"attention_grad", [Pure]> {
  let summary = "gradients of mixer.attention (query, key, value)";
  let description = [{
    Recomputes the attention probabilities from the queries and keys, so the
    forward keeps no [B, H, S, S] tensor alive for the backward.
  }];
  let arguments = (ins Mixer_F32Tensor:$query, Mixer_F32Tensor:$key,
                       Mixer_F32Tensor:$value, Mixer_I32Tensor:$ids,
                       Mixer_F32Tensor:$result_grad,
                       ConfinedAttr<I64Attr, [IntPositive]>:$num_heads,
                       ConfinedAttr<I64Attr, [IntPositive]>:$head_dim,
                       I64Attr:$pad_id, UnitAttr:$causal);
  let results = (outs Mixer_F32Tensor:$query_grad, Mixer_F32Tensor:$key_grad,
                      Mixer_F32Tensor:$value_grad);
  let assemblyFormat = [{
    $query `,` $key `,` $value `,` $ids `,` $result_grad attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
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
}

#endif // MIXER_GRADIENTOPS_TD
