//===- DenseOps.td - dense, normalisation and pointwise ops --*- tablegen -*-===//

#ifndef MIXER_DENSEOPS_TD
#define MIXER_DENSEOPS_TD

include "dialects/mixer/MixerBase.td"
include "mlir/Interfaces/SideEffectInterfaces.td"
include "mlir/Interfaces/InferTypeOpInterface.td"

def Mixer_DenseOp : Mixer_Op<"dense", [Pure,
    DeclareOpInterfaceMethods<Mixer_GradientOpInterface>,
    DeclareOpInterfaceMethods<Mixer_FlopCountOpInterface>]> {
  let summary = "affine map over the last axis with an optional fused activation";
  let description = [{
    `result = activation(input · W + bias)` contracting the last axis of the
    input. W is `[K, N]`, or `[N, K]` when `transpose_weight` is set (tied
    embeddings, classification kernels). The bias is optional.

    ```mlir
    %y = mixer.dense %x, %w, %b {activation = #mixer<activation gelu>}
        : (tensor<2x8x16xf32>, tensor<16x32xf32>, tensor<32xf32>) -> tensor<2x8x32xf32>
    ```
  }];
  let arguments = (ins Mixer_F32Tensor:$input, Mixer_F32Tensor:$weight,
                       Optional<Mixer_F32Tensor>:$bias,
                       DefaultValuedAttr<Mixer_ActivationAttr,
                                         "::mixer::graph::Activation::none">:$activation,
                       UnitAttr:$transpose_weight);
  let results = (outs Mixer_F32Tensor:$result);
  let assemblyFormat = [{
    $input `,` $weight (`,` $bias^)? attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let kernel = "Dense";
  let kernelAttributeNames = [["transpose_weight", "transpose_w"]];
}

def Mixer_LayerNormOp : Mixer_Op<"layer_norm", [Pure, DeclareOpInterfaceMethods<Mixer_GradientOpInterface>]> {
  let summary = "LayerNorm over the last axis";
  let description = [{
    `(x − mean) · rsqrt(var + epsilon) · scale + bias` with `var = E[x²] − mean²`
    clamped at zero.
  }];
  let arguments = (ins Mixer_F32Tensor:$input, Mixer_F32Tensor:$scale, Mixer_F32Tensor:$bias,
                       F64Attr:$epsilon);
  let results = (outs Mixer_F32Tensor:$result);
  let assemblyFormat = [{
    $input `,` $scale `,` $bias attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Mixer_AddLayerNormOp : Mixer_Op<"add_layer_norm", [Pure]> {
  let summary = "LayerNorm(input + residual), fused";
  let description = [{
    The post-LN residual block `LayerNorm(x + sublayer(x))` in one pass over
    memory. Produced by `mixer-fuse-residual-layer-norm`.
  }];
  let arguments = (ins Mixer_F32Tensor:$input, Mixer_F32Tensor:$residual, Mixer_F32Tensor:$scale,
                       Mixer_F32Tensor:$bias, F64Attr:$epsilon);
  let results = (outs Mixer_F32Tensor:$result);
  let assemblyFormat = [{
    $input `,` $residual `,` $scale `,` $bias attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let kernel = "LayerNorm";
}

def Mixer_ActivationOp : Mixer_Op<"activation",
    [Pure, SameOperandsAndResultType, DeclareOpInterfaceMethods<Mixer_GradientOpInterface>]> {
  let summary = "pointwise activation (gelu is the tanh approximation, gelu_erf the exact x·Φ(x))";
  let arguments = (ins Mixer_F32Tensor:$input, Mixer_ActivationAttr:$kind);
  let results = (outs Mixer_F32Tensor:$result);
  let assemblyFormat = "$kind $input attr-dict `:` type($input)";
  let hasFolder = 1;
  let kernel = "Activation";
}

def Mixer_AddOp : Mixer_Op<"add",
    [Pure, SameOperandsAndResultType, Commutative, DeclareOpInterfaceMethods<Mixer_GradientOpInterface>]> {
  let summary = "elementwise sum";
  let arguments = (ins Mixer_F32Tensor:$lhs, Mixer_F32Tensor:$rhs);
  let results = (outs Mixer_F32Tensor:$result);
  let assemblyFormat = "$lhs `,` $rhs attr-dict `:` type($result)";
  let kernel = "Add";
}

def Mixer_SoftmaxOp : Mixer_Op<"softmax",
    [Pure, SameOperandsAndResultType, DeclareOpInterfaceMethods<Mixer_GradientOpInterface>]> {
  let summary = "softmax over the last axis";
  let description = [{
    With `bf16`, the bfloat16 router's softmax: every step rounded to the
    nearest bfloat16, op by op (docs/parameters.md). Its gradient is the
    float32 softmax gradient at the rounded probabilities.
  }];
  let arguments = (ins Mixer_F32Tensor:$input, UnitAttr:$bf16);
  let results = (outs Mixer_F32Tensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input)";
  let kernel = "Softmax";
}

def Mixer_RoundBf16Op : Mixer_Op<"round_bf16",
    [Pure, SameOperandsAndResultType, Idempotent,
     DeclareOpInterfaceMethods<Mixer_GradientOpInterface>]> {
  let summary = "round to the nearest bfloat16 (ties to even), kept as f32";
  let arguments = (ins Mixer_F32Tensor:$input);
  let results = (outs Mixer_F32Tensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input)";
  let kernel = "RoundBf16";
}

def Mixer_ReshapeOp : Mixer_Op<"reshape", [Pure, DeclareOpInterfaceMethods<Mixer_GradientOpInterface>]> {
  let summary = "row-major reshape (a view: no data moves)";
  let arguments = (ins AnyRankedTensor:$input);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input) `to` type($result)";
  let hasVerifier = 1;
  let hasFolder = 1;
}

def Mixer_TakePositionOp : Mixer_Op<"take_position", [Pure, DeclareOpInterfaceMethods<Mixer_GradientOpInterface>]> {
  let summary = "the hidden state at one sequence position of every example";
  let description = [{ `result[b] = input[b, index]` for input `[B, S, D]`. }];
  let arguments = (ins Mixer_F32Tensor:$input,
                       ConfinedAttr<I64Attr, [IntNonNegative]>:$index);
  let results = (outs Mixer_F32Tensor:$result);
  let assemblyFormat = "$input `[` $index `]` attr-dict `:` type($input) `to` type($result)";
  let hasVerifier = 1;
  let kernel = "TakePosition";
}

def Mixer_PoolOp : Mixer_Op<"pool", [Pure]> {
  let summary = "one row per example: the first position or the mean over non-pad tokens";
  let description = [{
    For input `[B, S, D]` and token ids `[B, S]`: `cls` takes `input[b, 0]`,
    `mean` the mean of the rows `input[b, s]` with `ids[b, s] != pad_id`
    (zeros when every token is padding). With `normalize` the row is then
    divided by its L2 norm (at least 1e-12): sentence embeddings.

    ```mlir
    %e = mixer.pool mean %h, %ids {normalize, pad_id = 0 : i64} : (tensor<2x8x16xf32>, tensor<2x8xi32>) -> tensor<2x16xf32>
    ```
  }];
  let arguments = (ins Mixer_F32Tensor:$input, Mixer_I32Tensor:$ids,
                       Mixer_PoolModeAttr:$mode, UnitAttr:$normalize,
                       I64Attr:$pad_id);
  let results = (outs Mixer_F32Tensor:$result);
  let assemblyFormat = [{
    $mode $input `,` $ids attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let kernel = "Pool";
}

def Mixer_ReduceSumOp : Mixer_Op<"reduce_sum",
    [Pure, DeclareOpInterfaceMethods<Mixer_GradientOpInterface>]> {
  let summary = "sum of every element into a scalar";
  let arguments = (ins Mixer_F32Tensor:$input);
  let results = (outs 0DTensorOf<[F32]>:$result);
  let assemblyFormat = "$input attr-dict `:` type($input) `to` type($result)";
  let kernel = "ReduceSum";
}

def Mixer_BroadcastOp : Mixer_Op<"broadcast",
    [Pure, DeclareOpInterfaceMethods<Mixer_GradientOpInterface>]> {
  let summary = "a scalar repeated into every element of a tensor";
  let arguments = (ins 0DTensorOf<[F32]>:$input);
  let results = (outs Mixer_F32Tensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input) `to` type($result)";
  let kernel = "Broadcast";
}

#endif // MIXER_DENSEOPS_TD
