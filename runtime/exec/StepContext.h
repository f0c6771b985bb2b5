//===- StepContext.h - Checking a plan step against its kernel --*- C++ -*-===//
//
// What every backend's kernel table needs to prepare a step: the step's
// operands and results with their roles ("operand 2 (word)", the names of
// Kernels.def), type checks that stop at the first problem with a message
// naming the artifact and the step, and the step's attributes, whose
// presence and types Plan::fromJson has checked. The CPU kernel table
// (runtime/cpu/KernelTable.cpp) and the CUDA kernel table build on it.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_EXEC_STEPCONTEXT_H
#define MIXER_RUNTIME_EXEC_STEPCONTEXT_H

#include "runtime/exec/Plan.h"
#include "runtime/exec/SlotLayout.h"
#include "runtime/support/KernelParameters.h"
#include "runtime/support/KernelVocabulary.h"
#include "runtime/support/Status.h"

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

namespace mixer::exec {

using io::DType;

/// "[2, 3] F32", the spelling of a tensor type in messages.
std::string describe(const std::vector<int64_t> &shape, DType dtype);

/// Product of every dimension but the last (the rows of a last-axis op).
int64_t leadingElements(const ValueInfo &value);

/// One operand or result of the step being prepared.
struct Arg {
  const ValueInfo *value = nullptr; ///< null when the operand is absent
  std::string role;                 ///< "operand 2 (word)", for messages
  int64_t slot = 0;                 ///< index into ValuePointers

  int64_t dim(size_t i) const { return value->shape[i]; }
};

/// The step being prepared: its operands and results, type checks that stop
/// at the first problem, and attribute accessors.
class StepContext {
public:
  StepContext(const Plan &plan, size_t index, int64_t &scratchBytes);

  const Arg &in(size_t i) const { return operands[i]; }
  size_t numOperands() const { return operands.size(); }
  const Arg &out(size_t i) const { return results[i]; }

  const Plan &getPlan() const { return plan; }
  /// This process's place in a parallel plan's world (rank 0 of 1 in one
  /// process).
  void setWorld(int64_t rank, int64_t size) {
    worldRank = rank, worldSize = size;
  }
  /// The index in the whole batch's tensor of the first element of block
  /// `block` of a noise kernel's tensor, whose blocks hold `blockElements`
  /// each: on rank r of a parallel plan block b is the rank's contiguous
  /// share of block b of the whole tensor (one block: the rank's rows of the
  /// batch; docs/runtime.md, "Parallel plans"), so the ranks draw together
  /// what one process draws.
  uint64_t firstNoiseElement(int64_t blockElements, int64_t block = 0) const {
    return static_cast<uint64_t>(block * worldSize + worldRank) *
           static_cast<uint64_t>(blockElements);
  }
  /// "steps[<index>] (<kernel>)": the step's label in a collective's errors.
  std::string label() const {
    return "steps[" + std::to_string(index) + "] (" +
           std::string(kernelName(step.kernel)) + ")";
  }
  /// The index of the last step before this one that writes `arg`'s value,
  /// or -1 when none does (a plan input, a parameter).
  int64_t producer(const Arg &arg) const;

  /// Records a message about this step; returns false.
  bool fail(const std::string &text) {
    message = where + ": " + text;
    return false;
  }
  bool check(bool condition, const std::string &text) {
    return condition || fail(text);
  }
  Status takeError() { return Status::error(std::move(message)); }

  /// `arg` has `dtype` and exactly `rank` dimensions.
  bool rank(const Arg &arg, DType dtype, size_t rank);
  /// `arg` has `dtype` and at least `rank` dimensions.
  bool minRank(const Arg &arg, DType dtype, size_t rank);
  /// `arg` is `shape` of `dtype`; an absent optional operand passes.
  bool shape(const Arg &arg, DType dtype, const std::vector<int64_t> &shape);

  // The attribute readers take names the step's kernel declares with that
  // type in Kernels.def; any other name is a bug in a kernel table and throws
  // std::logic_error.

  /// The Bool attribute `name`; false when an optional one is left out.
  bool boolAttr(const char *name) const;
  int64_t intAttr(const char *name) const;
  /// The Int attribute `name`, or `absent` when an optional one is left
  /// out.
  int64_t intAttr(const char *name, int64_t absent) const;
  double realAttr(const char *name) const;
  const std::string &stringAttr(const char *name) const;
  /// The String attribute `name`, or null when an optional one is left out.
  const std::string *optionalStringAttr(const char *name) const;
  /// The ActivationKinds attribute `name`.
  Activation activation(const char *name) const;
  /// The MixAlgorithms attribute `name`.
  MixAlgorithm algorithm(const char *name) const;
  /// The PoolModes attribute `name`.
  PoolMode poolMode(const char *name) const;

  /// Reserves `floats` of the shared scratch buffer; returns its slot.
  int64_t scratch(int64_t floats) {
    scratchBytes = std::max<int64_t>(scratchBytes, floats * sizeof(float));
    return scratchIndex;
  }

private:
  /// Throws unless the step's kernel declares `name` with `type`.
  void requireDeclared(const char *name, AttrType type) const;

  const Plan &plan;
  size_t index;
  const Step &step;
  std::string where;
  std::vector<Arg> operands, results;
  std::string message;
  int64_t &scratchBytes;
  int64_t scratchIndex;
  int64_t worldRank = 0, worldSize = 1;
};

/// Checks the routing results tokens I32[slots], gates F32[slots] and
/// offsets I32[experts + 1].
bool checkAssignments(StepContext &c, int64_t slots, int64_t experts);

/// Reads and checks the groups and k of a load-balancing step on probs
/// [N, E].
bool checkLoadBalancing(StepContext &c, const Arg &probs, int64_t &groups,
                        int64_t &k);

/// Reads and checks the attributes of a random_scale step: `kind` (sets
/// `dropout`), `rate` in [0, 1) for dropout and [0, 1] for jitter, and
/// `stream`.
bool readRandomScale(StepContext &c, bool &dropout, double &rate,
                     int64_t &stream);

/// Reads and checks the attributes of a drop_experts step: `rate` in [0, 1),
/// `stream` and `gradient` (the gradient fills dropped experts with 0, the
/// forward with -inf).
bool readDropExperts(StepContext &c, double &rate, int64_t &stream,
                     bool &gradient);

/// The attribute `routing` of a route_grad step.
Routing readRouting(const StepContext &c);

/// The attribute `layout` of an experts or experts_grad step.
ExpertLayout readExpertLayout(const StepContext &c);

/// Reads the attribute micro_steps: the micro-steps of one update, at least
/// 1. Each executor checks the micro_step operand where it reads it.
bool readMicroSteps(StepContext &c, int64_t &microSteps);

/// Checks what every executor's accumulate_gradient step shares: the
/// attribute micro_steps, grad (operand 0) and the results accumulator and
/// average of its F32 shape. The micro_step operand is checked by the
/// executor that reads it.
bool checkAccumulateGradient(StepContext &c, int64_t &microSteps);

/// Checks a micro_step input value against the update's micro-steps
/// (counted from 0).
Status checkMicroStep(int32_t microStep, int64_t microSteps);

/// The noise counter of micro-step `microStep` of the update after `step`
/// updates: step * microSteps + microStep, wrapping as the 32-bit counter
/// word does.
int32_t noiseCounter(int32_t step, int64_t microSteps, int32_t microStep);

/// The counter a noise kernel (random_scale, drop_experts, attention,
/// attention_grad) draws with: its operand step or, with gradient
/// accumulation (the operand micro_step and the attribute micro_steps),
/// noiseCounter(step, micro_steps, micro_step).
struct NoiseCounter {
  int64_t step = -1;      ///< slot of step; -1 when absent (no noise)
  int64_t microStep = -1; ///< slot of micro_step; -1: the counter is step
  int64_t microSteps = 1;

  /// Reads the attribute micro_steps (1 when left out) and checks the
  /// operands `stepArg` and `microArg`: I32 scalars, micro_step present
  /// exactly when micro_steps > 1 (and then step too).
  bool read(StepContext &c, const Arg &stepArg, const Arg &microArg);
  /// The counter of a run whose step and micro_step inputs hold
  /// `stepValue` and `microValue` (unused without micro_step); fails when
  /// the micro-step lies outside the update.
  Expected<int32_t> at(int32_t stepValue, int32_t microValue) const;
};

/// Reads and checks what every executor's adamw step shares: the attributes
/// (b1, b2, eps, weight_decay, max_norm, micro_steps), grad (operand 0) and
/// the results param, adam_m, adam_v of one F32 shape, the norm (operand 3)
/// an F32 scalar when present and required for clipping, and micro_step
/// (operand 4) present exactly when micro_steps > 1. The learning rate, step
/// and micro_step scalars are checked by the executor that reads them.
bool checkAdamW(StepContext &c, AdamWConfig &config, double &maxNorm,
                int64_t &microSteps);

/// Reads the group attributes of the capacity routings and checks them
/// against probs [groups * tokens_per_group, experts] (operand 0).
bool readGroups(StepContext &c, int64_t &groups, int64_t &tokensPerGroup,
                int64_t &capacity);

/// Reads and checks route_experts_choose: the group attributes, probs and
/// the assignments of every expert's capacity slots in every group.
bool checkRouteExpertsChoose(StepContext &c, int64_t &groups,
                             int64_t &tokensPerGroup, int64_t &capacity);

/// Reads and checks route_tokens_choose: as route_experts_choose, and k in
/// [1, experts] and batch_prioritized.
bool checkRouteTokensChoose(StepContext &c, int64_t &groups,
                            int64_t &tokensPerGroup, int64_t &capacity,
                            int64_t &k, bool &prioritized);

/// Reads and checks route_sigmoid_topk: logits F32[N, E], k in [1, E] and
/// the assignments of N * k slots.
bool checkRouteSigmoidTopK(StepContext &c, int64_t &k);

//===----------------------------------------------------------------------===//
// Operand checks of plan kernels, shared by the CPU and the CUDA kernel
// table. `act` is the dtype of the step's activations: F32 on the CPU, F32 or
// BF16 in a cuda plan (the table finds it from the plan's precision).
//===----------------------------------------------------------------------===//

/// Checks argmax: x [..., C] of dtype `act` with C > 0 and y I32[...]. Sets
/// the rows and columns.
bool checkArgmax(StepContext &c, DType act, int64_t &rows, int64_t &cols);

/// Checks a row-wise step on `x` [..., C] of dtype `act` (softmax and
/// activations and their gradients): every value of `likeX` has x's shape
/// and dtype. Sets the rows (the leading elements) and the columns C.
bool checkRows(StepContext &c, const Arg &x, DType act,
               std::initializer_list<const Arg *> likeX, int64_t &rows,
               int64_t &cols);

/// Checks layer_norm and layer_norm_grad: the attribute epsilon, x [..., C]
/// (operand 0) with the residual (operand 1, optional) and `likeX`, and
/// the F32 [C] vectors `perColumn` (scale, bias, their gradients).
bool checkLayerNorm(StepContext &c, DType act,
                    std::initializer_list<const Arg *> likeX,
                    std::initializer_list<const Arg *> perColumn,
                    float &epsilon, int64_t &rows, int64_t &cols);

/// Checks ids I32[B, S], type_ids? I32[B, S] and the tables word [V, D],
/// pos [1, S' >= S, D], type [TV, D] (F32) of an embedding or its gradient.
bool checkEmbedding(StepContext &c, const Arg &ids, const Arg &typeIds,
                    const Arg &word, const Arg &pos, const Arg &type);

/// Reads `index` and checks `sequence` [B, S, D] and `rows` [B, D] of a
/// position slice or its gradient.
bool checkTakePosition(StepContext &c, const Arg &sequence, const Arg &rows,
                       DType act, int64_t &index);

/// Reads the attributes of a pool step and checks x [B, S, D] (operand 0),
/// ids I32[B, S] (operand 1, required by mean pooling) and y [B, D].
bool checkPool(StepContext &c, DType act, PoolMode &mode, bool &normalize,
               int32_t &padId);

/// Checks x [B, S, D] (`tokens`), positions I32[B, P] and rows [B*P, D]
/// (`rows`) of a masked-LM gather or its gradient.
bool checkGather(StepContext &c, const Arg &tokens, const Arg &positions,
                 const Arg &rows, DType act);

/// Checks logits [R, C], labels I32[R] and the optional weights F32[R] of a
/// cross-entropy step or its gradient.
bool checkCrossEntropy(StepContext &c, const Arg &logits, const Arg &labels,
                       const Arg &weights, DType act);

/// Checks router scores F32[N, E] with at least one token and expert, and
/// the gradient result `dscores` (when given) of the same shape.
bool checkRouterScores(StepContext &c, const Arg &scores,
                       const Arg *dscores = nullptr);

/// Checks router_logits_bf16: products F32[N, E] (router scores), bias
/// F32[E] and logits of the products' shape.
bool checkRouterLogitsBf16(StepContext &c);

/// Checks tokens I32[slots], offsets I32[experts + 1] and dgates F32[slots]
/// of a gate gradient whose result is `scores` F32[N, experts].
bool checkGateGrad(StepContext &c, const Arg &tokens, const Arg &offsets,
                   const Arg &dgates, const Arg &scores);

/// Checks the slot rows `rows` [A, D], tokens I32[A], the optional gates
/// F32[A] and the token rows `tokenRows` [N, D] of a combine (or of the
/// gradient of a dispatch).
bool checkCombine(StepContext &c, const Arg &rows, const Arg &tokens,
                  const Arg *gates, const Arg &tokenRows, DType act);

/// Checks x [B, S, D] (operand 0), ws F32[S, S] and wh F32[D, D] (operands
/// 1, 2) and `likeX` of a linear mixing step or its gradient.
bool checkLinearMix(StepContext &c, DType act,
                    std::initializer_list<const Arg *> likeX);

/// Reads `toeplitz` and checks x [B, S, D] (operand 0), vs F32[S] and vh
/// F32[D] (operands 1, 2; [2S - 1] and [2D - 1] for Toeplitz mixing) and
/// `likeX` of a structured mixing step or its gradient.
bool checkStructuredMix(StepContext &c, DType act,
                        std::initializer_list<const Arg *> likeX,
                        bool &toeplitz);

} // namespace mixer::exec

#endif // MIXER_RUNTIME_EXEC_STEPCONTEXT_H
