//===- EmbeddingOps.td - embedding ops ---------------------*- tablegen -*-===//

#ifndef MIXER_EMBEDDINGOPS_TD
#define MIXER_EMBEDDINGOPS_TD

include "dialects/mixer/MixerBase.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

def Mixer_EmbedOp : Mixer_Op<"embed", [Pure, DeclareOpInterfaceMethods<Mixer_GradientOpInterface>]> {
  let summary = "sum of word, position and token-type embeddings";
  let description = [{
    `result[b,s] = word[ids[b,s]] + position[0,s] + type[type_ids[b,s]]`.
    The position table holds at least S rows.

    ```mlir
    %e = mixer.embed %ids, %types, %word, %pos, %type
        : (tensor<2x8xi32>, tensor<2x8xi32>, tensor<64x16xf32>,
           tensor<1x8x16xf32>, tensor<4x16xf32>) -> tensor<2x8x16xf32>
    ```
  }];
  let arguments = (ins Mixer_I32Tensor:$ids, Mixer_I32Tensor:$type_ids, Mixer_F32Tensor:$word,
                       Mixer_F32Tensor:$position, Mixer_F32Tensor:$type);
  let results = (outs Mixer_F32Tensor:$result);
  let assemblyFormat = [{
    $ids `,` $type_ids `,` $word `,` $position `,` $type attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let kernel = "Embed";
}

#endif // MIXER_EMBEDDINGOPS_TD
