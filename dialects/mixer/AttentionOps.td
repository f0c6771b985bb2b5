//===- AttentionOps.td - attention ops ---------------------*- tablegen -*-===//

#ifndef MIXER_ATTENTIONOPS_TD
#define MIXER_ATTENTIONOPS_TD

include "dialects/mixer/MixerBase.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

def Mixer_AttentionOp : Mixer_Op<"attention", [Pure, AttrSizedOperandSegments,
    DeclareOpInterfaceMethods<Mixer_GradientOpInterface>,
    DeclareOpInterfaceMethods<Mixer_FlopCountOpInterface>]> {
  let summary = "multi-head scaled dot-product attention core";
  let description = [{
    Queries, keys and values are `[B, S, H·hd]` (heads-major within the last
    axis, as the Q/K/V dense layers produce them). Logits are scaled by
    `1/sqrt(head_dim)`; a key is masked for a query when either token id
    equals `pad_id`, and, if `causal`, when it lies after the query. Masked
    logits become the lowest finite float before the softmax.

    Training dropout on the probabilities (with the `noise` operands `seed`
    and `step`, see mixer.random_scale): `P' = P · mask / (1 − dropout_rate)`
    before the product with V, where element (b, h, q, k) of the
    `[B, H, S, S]` probabilities is kept when the uniform of that element
    index in the op's `dropout_stream` is at least `dropout_rate`.

    ```mlir
    %o = mixer.attention %q, %k, %v, %ids noise %seed, %step {dropout_rate = 1.0e-01 : f64, dropout_stream = 2 : i64, head_dim = 8 : i64, num_heads = 2 : i64, pad_id = 0 : i64} : (tensor<2x8x16xf32>, tensor<2x8x16xf32>, tensor<2x8x16xf32>, tensor<2x8xi32>, tensor<i32>, tensor<i32>) -> tensor<2x8x16xf32>
    ```
  }];
  let arguments = (ins Mixer_F32Tensor:$query, Mixer_F32Tensor:$key, Mixer_F32Tensor:$value,
                       Mixer_I32Tensor:$ids,
                       Optional<Mixer_I32Scalar>:$seed, Optional<Mixer_I32Scalar>:$step,
                       ConfinedAttr<I64Attr, [IntPositive]>:$num_heads,
                       ConfinedAttr<I64Attr, [IntPositive]>:$head_dim,
                       I64Attr:$pad_id, UnitAttr:$causal,
                       OptionalAttr<F64Attr>:$dropout_rate,
                       OptionalAttr<ConfinedAttr<I64Attr, [IntNonNegative]>>:$dropout_stream);
  let results = (outs Mixer_F32Tensor:$result);
  let assemblyFormat = [{
    $query `,` $key `,` $value `,` $ids (`noise` $seed^ `,` $step)? attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let kernel = "Attention";
  let kernelAttributeNames = [["dropout_stream", "stream"]];
}

#endif // MIXER_ATTENTIONOPS_TD
