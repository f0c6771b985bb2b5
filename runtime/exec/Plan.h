//===- Plan.h - The execution plan of an artifact ---------------*- C++ -*-===//
//
// An artifact (.mxa) is a container whose JSON header is the execution plan
// (docs/runtime.md): the parameter, input and output tables, every buffer the
// steps touch and the steps themselves. This is the plan's one codec: the
// compiler fills a Plan and writes it with Plan::toJson, the runtime reads it
// with Plan::fromJson (library MixerPlan, which the compiler's tools link
// without the runtime). Plan::fromJson checks everything the executor relies
// on once, at load, so that running a plan needs no further
// checks: value references in range, storage consistent with the parameter
// and input tables, arena slices inside the arena, known kernels with the
// operands, results and typed attributes of runtime/support/Kernels.def,
// every arena byte a step reads written before through the same buffer, and
// the header consistent with the steps. Every message names the artifact and
// the offending place.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_EXEC_PLAN_H
#define MIXER_RUNTIME_EXEC_PLAN_H

#include "runtime/io/Tensor.h"
#include "runtime/support/KernelParameters.h"
#include "runtime/support/KernelVocabulary.h"
#include "runtime/support/PlanFormat.h"
#include "runtime/support/Status.h"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <variant>
#include <vector>

namespace mixer::exec {

using mixer::kArenaAlignment;
using mixer::kPlanFormatVersion;

/// Where a value's bytes live. State is the optimizer state of a training
/// plan (the AdamW moments), which persists across runs like the parameters.
enum class StorageKind { Param, State, Input, Arena };

/// One buffer of the plan. Several values may share storage (reshapes, arena
/// reuse of dead values).
/// Element and byte counts (`numel`, `bytes`) here and in the tables below
/// are derived by Plan::fromJson; toJson does not write them.
struct ValueInfo {
  StorageKind storage = StorageKind::Arena;
  int64_t index = -1;  ///< parameter, state or input index
  int64_t offset = -1; ///< byte offset in the arena (Arena)
  std::vector<int64_t> shape;
  io::DType dtype = io::DType::F32;
  int64_t numel = 0;
  int64_t bytes = 0;

  bool operator==(const ValueInfo &other) const {
    return std::tie(storage, index, offset, shape, dtype, numel, bytes) ==
           std::tie(other.storage, other.index, other.offset, other.shape,
                    other.dtype, other.numel, other.bytes);
  }
};

/// How `mixer-run init` draws a parameter (docs/runtime.md).
enum class InitKind { Normal, TruncatedNormal, Zeros, Ones, NormalRowRenorm };

/// The spelling of each init kind in plans.
inline constexpr std::pair<InitKind, std::string_view> kInitKinds[] = {
    {InitKind::Normal, "normal"},
    {InitKind::TruncatedNormal, "truncated_normal"},
    {InitKind::Zeros, "zeros"},
    {InitKind::Ones, "ones"},
    {InitKind::NormalRowRenorm, "normal_row_renorm"},
};

/// The init kind spelled `name` in plans, or nothing.
inline std::optional<InitKind> parseInitKind(std::string_view name) {
  for (const auto &[kind, spelling] : kInitKinds)
    if (spelling == name)
      return kind;
  return std::nullopt;
}

/// Whether parameters of `kind` are drawn with a standard deviation.
inline bool hasStddev(InitKind kind) {
  return kind != InitKind::Zeros && kind != InitKind::Ones;
}

struct InitSpec {
  InitKind kind = InitKind::Zeros;
  /// Standard deviation of the drawn values (of the truncated distribution
  /// for TruncatedNormal); unused by Zeros and Ones.
  double stddev = 0.0;

  bool operator==(const InitSpec &other) const {
    return kind == other.kind && stddev == other.stddev;
  }
};

struct ParamInfo {
  std::string name;
  std::vector<int64_t> shape;
  io::DType dtype = io::DType::F32;
  InitSpec init;
  int64_t numel = 0;
  /// A parameter of a parallel plan split over the ranks of `shardGroup`
  /// ("ep"): the rank holds slice j (its rank in the group) of
  /// `globalShape`'s axis 0. Empty for a replicated parameter.
  std::string shardGroup;
  std::vector<int64_t> globalShape;

  bool operator==(const ParamInfo &other) const {
    return std::tie(name, shape, dtype, init, numel, shardGroup, globalShape) ==
           std::tie(other.name, other.shape, other.dtype, other.init,
                    other.numel, other.shardGroup, other.globalShape);
  }
};

/// The mesh of a parallel plan: dp replicas × ep expert shards, world =
/// dp · ep ranks (docs/runtime.md, "Parallel plans"); 1 × 1 for a
/// one-process plan.
struct MeshInfo {
  int64_t dp = 1, ep = 1;

  int64_t world() const { return dp * ep; }

  bool operator==(const MeshInfo &other) const {
    return dp == other.dp && ep == other.ep;
  }
};

struct InputInfo {
  std::string name;
  std::vector<int64_t> shape;
  io::DType dtype = io::DType::I32;
  /// Optional inputs default to zeros when an input file lacks them.
  bool optional = false;
  int64_t numel = 0;

  bool operator==(const InputInfo &other) const {
    return std::tie(name, shape, dtype, optional, numel) ==
           std::tie(other.name, other.shape, other.dtype, other.optional,
                    other.numel);
  }
};

/// The optimizer settings of a training plan, from the model JSON: the
/// runtime computes each update's learning rate from the schedule; the
/// AdamW settings and the clipping norm, which the adamw steps carry, are
/// recorded for the reader.
struct TrainingInfo {
  double learningRate = 0.0; ///< peak, reached at the end of warm-up
  int64_t warmupSteps = 0;
  int64_t totalSteps = 0;
  /// Micro-steps (runs on consecutive micro-batches) per update: the
  /// training setting gradient_accumulation_steps, 1 when absent.
  int64_t microSteps = 1;
  AdamWConfig adamw;
  double clipGradNorm = 0.0; ///< 0: no clipping

  bool operator==(const TrainingInfo &other) const {
    return std::tie(learningRate, warmupSteps, totalSteps, microSteps, adamw.b1,
                    adamw.b2, adamw.eps, adamw.weightDecay, clipGradNorm) ==
           std::tie(other.learningRate, other.warmupSteps, other.totalSteps,
                    other.microSteps, other.adamw.b1, other.adamw.b2,
                    other.adamw.eps, other.adamw.weightDecay,
                    other.clipGradNorm);
  }
};

/// The heads of the model, which say its task: pre-training (masked LM with
/// or without next-sentence prediction, or causal LM) or sequence
/// classification or regression.
struct HeadsInfo {
  bool maskedLm = false;
  bool nextSentence = false;
  bool causalLm = false;
  /// Outputs of the classifier over the pooled output: the classes of
  /// sequence classification (1: regression), 2 for next-sentence
  /// prediction; 0: no classifier.
  int64_t classes = 0;

  bool operator==(const HeadsInfo &other) const {
    return std::tie(maskedLm, nextSentence, causalLm, classes) ==
           std::tie(other.maskedLm, other.nextSentence, other.causalLm,
                    other.classes);
  }
};

struct OutputInfo {
  std::string name;
  int64_t value = -1;
  /// How the ranks of a parallel plan hold the output: `world` (each rank
  /// its rows of the batch: the global output is the ranks' values joined
  /// along axis 0 in rank order), `ep` (each rank of an expert group a
  /// slice of axis 0, the same in every group) or empty (every rank the
  /// same value; always empty in a one-process plan).
  std::string shardGroup;

  bool operator==(const OutputInfo &other) const {
    return std::tie(name, value, shardGroup) ==
           std::tie(other.name, other.value, other.shardGroup);
  }
};

/// A step attribute, of the kernel's type for it (Kernels.def): a Bool, Int,
/// Real (double, also when the plan spells an integer) or String.
using AttrValue = std::variant<bool, int64_t, double, std::string>;

struct Step {
  Kernel kernel = Kernel::Embed;
  /// Indices into Plan::values; -1 marks an absent optional operand.
  std::vector<int64_t> operands;
  std::vector<int64_t> results;
  std::map<std::string, AttrValue> attrs;

  const KernelInfo &info() const { return kernelInfo(kernel); }
  bool operator==(const Step &other) const {
    return std::tie(kernel, operands, results, attrs) ==
           std::tie(other.kernel, other.operands, other.results, other.attrs);
  }
};

/// A parsed and validated execution plan.
struct Plan {
  /// The artifact the plan was read from; prefixes every message.
  std::string path;
  int64_t formatVersion = kPlanFormatVersion;
  std::string compilerVersion;
  std::string model;
  /// "cpu" or "cuda": which executor runs the plan.
  std::string target;
  /// "fp32", or "bf16": activation values may be BF16 and products bf16.
  std::string precision = "fp32";
  std::string mode;
  int64_t batch = 0;
  int64_t seq = 0;
  /// Token id that pads sequences (text input, attention masks).
  int64_t padId = 0;
  /// Number of token ids of the word embedding (random benchmark inputs).
  int64_t vocabSize = 0;
  int64_t arenaBytes = 0;
  /// The steps of the forward pass, which come first: a train plan's
  /// evaluation runs only these.
  int64_t forwardSteps = 0;
  HeadsInfo heads;
  /// Floating-point operations of one run over the whole batch.
  double flops = 0.0;
  MeshInfo mesh;
  /// Bytes one rank sends to others per run, by collective kernel (an upper
  /// bound for all_to_all_v).
  std::map<std::string, int64_t> commBytes;
  std::vector<ParamInfo> params;
  /// Optimizer state tensors, in the format of the parameters (train plans).
  std::vector<ParamInfo> state;
  /// Present in train plans.
  std::optional<TrainingInfo> training;
  std::vector<InputInfo> inputs;
  std::vector<OutputInfo> outputs;
  std::vector<ValueInfo> values;
  std::vector<Step> steps;

  /// Parses and validates the plan JSON `text`; `path` names the artifact in
  /// messages.
  static Expected<Plan> fromJson(const std::string &text,
                                 const std::string &path);
  /// The plan JSON that fromJson reads back to this plan, indented by
  /// `indent` spaces per level (-1: on one line).
  std::string toJson(int indent = -1) const;
  /// Reads the artifact container at `path` and parses its header.
  static Expected<Plan> load(const std::string &path);

  /// Total number of parameter elements.
  int64_t numParameterElements() const;
  /// True for a plan that updates its parameters (mode "train" with an
  /// optimizer state).
  bool updatesParameters() const { return training.has_value(); }
  /// Index of the input or output named `name`, or -1.
  int64_t findInput(const std::string &name) const;
  int64_t findOutput(const std::string &name) const;

  /// Every field equal, `path` included.
  bool operator==(const Plan &other) const;
};

/// The spelling of an init kind in plans ("truncated_normal", ...).
const char *initKindName(InitKind kind);

} // namespace mixer::exec

#endif // MIXER_RUNTIME_EXEC_PLAN_H
