//===- MixerOps.td - mixer dialect operations --------------*- tablegen -*-===//
//
// Ops are grouped by family, one file each.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_OPS_TD
#define MIXER_OPS_TD

include "dialects/mixer/MixerBase.td"
include "dialects/mixer/EmbeddingOps.td"
include "dialects/mixer/DenseOps.td"
include "dialects/mixer/MixingOps.td"
include "dialects/mixer/AttentionOps.td"
include "dialects/mixer/MoeOps.td"
include "dialects/mixer/LossOps.td"
include "dialects/mixer/TrainingOps.td"
include "dialects/mixer/GradientOps.td"
include "dialects/mixer/CollectiveOps.td"

#endif // MIXER_OPS_TD
