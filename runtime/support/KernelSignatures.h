//===- KernelSignatures.h - operand counts of every plan kernel -*- C++ -*-===//
//
// The kernel vocabulary shared by the compiler (which emits plan steps) and
// the runtime (which executes them): names, operand and result counts, and
// attribute names, as documented in docs/runtime.md.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_SUPPORT_KERNELSIGNATURES_H
#define MIXER_RUNTIME_SUPPORT_KERNELSIGNATURES_H

#include <initializer_list>
#include <string_view>

namespace mixer {

struct KernelSignature {
  std::string_view name;
  int numOperands;
  int numResults;
  std::initializer_list<std::string_view> attributes;
};

inline const KernelSignature kKernelSignatures[] = {
    {"embed", 5, 1, {}},
    {"dense", 3, 1, {"activation", "transpose_w"}},
    {"layer_norm", 4, 1, {"epsilon"}},
    {"activation", 1, 1, {"kind"}},
    {"add", 2, 1, {}},
    {"softmax", 1, 1, {}},
    {"round_bf16", 1, 1, {}},
    {"take_position", 1, 1, {"index"}},
    {"linear_mix", 3, 1, {}},
    {"spectral_mix", 1, 1, {"hartley", "algorithm"}},
    {"structured_mix", 3, 1, {"toeplitz", "algorithm"}},
    {"attention", 4, 1, {"num_heads", "head_dim", "pad_id", "causal"}},
    {"route_experts_choose", 1, 3, {"groups", "tokens_per_group", "capacity"}},
    {"route_tokens_choose",
     1,
     3,
     {"groups", "tokens_per_group", "k", "capacity", "batch_prioritized"}},
    {"route_sigmoid_topk", 1, 3, {"k"}},
    {"dispatch", 2, 1, {}},
    {"experts", 7, 1, {"activation"}},
    {"combine", 3, 1, {}},
};

/// The signature of `name`, or null if no kernel has that name.
inline const KernelSignature *findKernelSignature(std::string_view name) {
  for (const KernelSignature &signature : kKernelSignatures)
    if (signature.name == name)
      return &signature;
  return nullptr;
}

} // namespace mixer

#endif // MIXER_RUNTIME_SUPPORT_KERNELSIGNATURES_H
