//===- AttentionOps.td - attention ops ---------------------*- tablegen -*-===//

#ifndef MIXER_ATTENTIONOPS_TD
#define MIXER_ATTENTIONOPS_TD

include "dialects/mixer/MixerBase.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

def Mixer_AttentionOp : Mixer_Op<"attention", [Pure, DeclareOpInterfaceMethods<Mixer_GradientOpInterface>]> {
  let summary = "multi-head scaled dot-product attention core";
  let description = [{
    Queries, keys and values are `[B, S, H·hd]` (heads-major within the last
    axis, as the Q/K/V dense layers produce them). Logits are scaled by
    `1/sqrt(head_dim)`; a key is masked for a query when either token id
    equals `pad_id`, and, if `causal`, when it lies after the query. Masked
    logits become the lowest finite float before the softmax.
  }];
  let arguments = (ins Mixer_F32Tensor:$query, Mixer_F32Tensor:$key, Mixer_F32Tensor:$value,
                       Mixer_I32Tensor:$ids,
                       ConfinedAttr<I64Attr, [IntPositive]>:$num_heads,
                       ConfinedAttr<I64Attr, [IntPositive]>:$head_dim,
                       I64Attr:$pad_id, UnitAttr:$causal);
  let results = (outs Mixer_F32Tensor:$result);
  let assemblyFormat = [{
    $query `,` $key `,` $value `,` $ids attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

#endif // MIXER_ATTENTIONOPS_TD
