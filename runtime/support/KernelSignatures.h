//===- KernelSignatures.h - operand counts of every plan kernel -*- C++ -*-===//
//
// The kernel vocabulary shared by the compiler (which emits plan steps) and
// the runtime (which executes them): names, operand and result counts, and
// attribute names, as documented in docs/runtime.md.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_SUPPORT_KERNELSIGNATURES_H
#define MIXER_RUNTIME_SUPPORT_KERNELSIGNATURES_H

#include <cstddef>
#include <initializer_list>
#include <string_view>

namespace mixer {

/// numOperands of a kernel that takes any number (at least one) of operands.
inline constexpr int kVariadic = -1;

struct KernelSignature {
  std::string_view name;
  int numOperands; ///< or kVariadic
  int numResults;
  std::initializer_list<std::string_view> attributes;
  /// The leading `stateResults` results are parameters or optimizer state
  /// updated in place (read and written); the others are fresh arena
  /// buffers.
  int stateResults = 0;
  /// Attributes a step may leave out (a boolean reads as false when absent).
  std::initializer_list<std::string_view> optionalAttributes = {};

  /// Whether `attribute` is one of the kernel's attributes, required or
  /// optional.
  bool hasAttribute(std::string_view attribute) const {
    for (std::initializer_list<std::string_view> names :
         {attributes, optionalAttributes})
      for (std::string_view name : names)
        if (name == attribute)
          return true;
    return false;
  }
  /// Whether the kernel writes parameters or optimizer state.
  bool updatesState() const { return stateResults > 0; }
  /// Whether result `index` is updated in place rather than a fresh buffer.
  bool isStateResult(size_t index) const {
    return index < static_cast<size_t>(stateResults);
  }
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
    {"attention",
     6,
     1,
     {"num_heads", "head_dim", "pad_id", "causal", "dropout_rate", "stream"}},
    {"route_experts_choose", 1, 3, {"groups", "tokens_per_group", "capacity"}},
    {"route_tokens_choose",
     1,
     3,
     {"groups", "tokens_per_group", "k", "capacity", "batch_prioritized"}},
    {"route_sigmoid_topk", 1, 3, {"k"}},
    {"dispatch", 2, 1, {}},
    // `gather`: operand 0 is the token rows, read through the tokens (the
    // dispatch fused into the experts' loads; CUDA only).
    {"experts", 7, 1, {"activation"}, 0, {"gather"}},
    {"combine", 3, 1, {}},
    // Scalar arithmetic and losses.
    {"fill", 0, 1, {"value"}},
    {"broadcast", 1, 1, {}},
    {"reduce_sum", 1, 1, {}},
    {"multiply", 2, 1, {}},
    {"divide", 2, 1, {}},
    {"scale", 1, 1, {"factor"}},
    {"gather_positions", 2, 1, {}},
    {"softmax_cross_entropy", 3, 1, {}},
    {"squared_error", 2, 1, {}},
    {"label_mask", 1, 1, {}},
    {"argmax", 1, 1, {}},
    {"router_z_loss", 1, 1, {}},
    {"load_balancing_loss", 1, 1, {"groups", "k"}},
    {"entropy_regularizer", 1, 1, {}},
    // Backward kernels.
    {"activation_grad", 2, 1, {"kind"}},
    {"dense_weight_grad", 2, 1, {"transpose_w"}},
    {"reduce_rows", 1, 1, {}},
    {"layer_norm_grad", 4, 3, {"epsilon"}},
    {"softmax_grad", 2, 1, {}},
    {"take_position_grad", 1, 1, {"index"}},
    {"linear_mix_grad", 4, 3, {}},
    {"structured_mix_grad", 4, 3, {"toeplitz"}},
    {"embed_grad", 3, 3, {}},
    {"attention_grad",
     7,
     3,
     {"num_heads", "head_dim", "pad_id", "causal", "dropout_rate", "stream"}},
    {"dispatch_grad", 2, 1, {}},
    {"combine_grad", 4, 2, {}},
    {"experts_grad", 7, 5, {"activation"}, 0, {"gather"}},
    {"scatter_gate_grad", 3, 1, {}},
    {"route_grad", 4, 1, {"routing"}},
    {"gather_positions_grad", 2, 1, {}},
    {"softmax_cross_entropy_grad", 4, 1, {}},
    {"router_z_loss_grad", 2, 1, {}},
    {"load_balancing_loss_grad", 2, 1, {"groups", "k"}},
    {"entropy_regularizer_grad", 2, 1, {}},
    // Training step: regularisation noise and the optimizer update.
    {"random_scale", 3, 1, {"kind", "rate", "stream"}},
    {"drop_experts", 3, 1, {"rate", "stream", "gradient"}},
    {"noise_counter", 2, 1, {"micro_steps"}},
    {"accumulate_gradient", 2, 2, {"micro_steps"}, /*stateResults=*/1},
    {"global_norm", kVariadic, 1, {}},
    {"adamw",
     5,
     3,
     {"b1", "b2", "eps", "weight_decay", "max_norm", "micro_steps"},
     /*stateResults=*/3},
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
