//===- StepContext.cpp - Checking a plan step against its kernel ----------===//

#include "runtime/exec/StepContext.h"

#include <cmath>
#include <limits>
#include <stdexcept>

namespace mixer::exec {

std::string describe(const std::vector<int64_t> &shape, DType dtype) {
  return io::formatShape(shape) + " " + io::dtypeName(dtype);
}

int64_t leadingElements(const ValueInfo &value) {
  int64_t rows = 1;
  for (size_t i = 0; i + 1 < value.shape.size(); ++i)
    rows *= value.shape[i];
  return rows;
}

StepContext::StepContext(const Plan &plan, size_t index, int64_t &scratchBytes)
    : plan(plan), index(index), step(plan.steps[index]),
      where(describeStep(plan, index)), scratchBytes(scratchBytes),
      scratchIndex(scratchSlot(plan)) {
  const KernelInfo &info = step.info();
  auto makeArgs = [&](const std::vector<int64_t> &ids, bool areOperands,
                      std::vector<Arg> &args) {
    for (size_t i = 0; i < ids.size(); ++i) {
      Arg arg;
      int64_t id = ids[i];
      const KernelValue &kernelValue =
          areOperands ? info.operand(i) : info.result(i);
      arg.role = std::string(areOperands ? "operand " : "result ") +
                 std::to_string(i) + " (" + std::string(kernelValue.name) + ")";
      arg.value = id >= 0 ? &plan.values[id] : nullptr;
      arg.slot = id >= 0 ? id : static_cast<int64_t>(absentSlot(plan));
      args.push_back(std::move(arg));
    }
  };
  makeArgs(step.operands, true, operands);
  makeArgs(step.results, false, results);
}

int64_t StepContext::producer(const Arg &arg) const {
  for (size_t i = index; i-- > 0;) {
    const std::vector<int64_t> &written = plan.steps[i].results;
    if (std::find(written.begin(), written.end(), arg.slot) != written.end())
      return static_cast<int64_t>(i);
  }
  return -1;
}

bool StepContext::rank(const Arg &arg, DType dtype, size_t rank) {
  return check(arg.value->dtype == dtype && arg.value->shape.size() == rank,
               arg.role + " is " +
                   describe(arg.value->shape, arg.value->dtype) +
                   " but the kernel needs a rank-" + std::to_string(rank) +
                   " " + io::dtypeName(dtype) + " tensor");
}

bool StepContext::minRank(const Arg &arg, DType dtype, size_t rank) {
  return check(arg.value->dtype == dtype && arg.value->shape.size() >= rank,
               arg.role + " is " +
                   describe(arg.value->shape, arg.value->dtype) +
                   " but the kernel needs a " + io::dtypeName(dtype) +
                   " tensor of rank " + std::to_string(rank) + " or more");
}

bool StepContext::shape(const Arg &arg, DType dtype,
                        const std::vector<int64_t> &shape) {
  if (!arg.value)
    return true;
  return check(arg.value->dtype == dtype && arg.value->shape == shape,
               arg.role + " is " +
                   describe(arg.value->shape, arg.value->dtype) +
                   " but the kernel needs " + describe(shape, dtype));
}

void StepContext::requireDeclared(const char *name, AttrType type) const {
  // A kernel table that reads an attribute its kernel does not declare has a
  // typo; an optional boolean would otherwise silently read as false.
  if (!kernelInfo(step.kernel).hasAttribute(name, type))
    throw std::logic_error("attribute '" + std::string(name) + "' of kernel '" +
                           std::string(kernelName(step.kernel)) +
                           "' is read as " +
                           std::string(describeAttrType(type)) +
                           ", which Kernels.def does not declare");
}

bool StepContext::boolAttr(const char *name) const {
  requireDeclared(name, AttrType::Bool);
  auto it = step.attrs.find(name);
  return it != step.attrs.end() && std::get<bool>(it->second);
}

int64_t StepContext::intAttr(const char *name) const {
  requireDeclared(name, AttrType::Int);
  return std::get<int64_t>(step.attrs.at(name));
}

int64_t StepContext::intAttr(const char *name, int64_t absent) const {
  auto it = step.attrs.find(name);
  return it == step.attrs.end() ? absent : std::get<int64_t>(it->second);
}

double StepContext::realAttr(const char *name) const {
  requireDeclared(name, AttrType::Real);
  return std::get<double>(step.attrs.at(name));
}

const std::string &StepContext::stringAttr(const char *name) const {
  requireDeclared(name, AttrType::String);
  return std::get<std::string>(step.attrs.at(name));
}

const std::string *StepContext::optionalStringAttr(const char *name) const {
  requireDeclared(name, AttrType::String);
  auto found = step.attrs.find(name);
  return found == step.attrs.end() ? nullptr
                                   : &std::get<std::string>(found->second);
}

namespace {

/// The runtime's values of a string attribute, by spelling.
template <typename Enum, size_t N>
using Spellings = std::pair<std::string_view, Enum>[N];

/// Whether `spellings` spells every value of `values` (and no other).
template <typename Enum, size_t N>
constexpr bool spellsEvery(const Spellings<Enum, N> &spellings,
                           const KernelEnum &values) {
  if (N != values.size)
    return false;
  for (std::string_view value : values) {
    bool spelled = false;
    for (const auto &spelling : spellings)
      spelled = spelled || spelling.first == value;
    if (!spelled)
      return false;
  }
  return true;
}

/// The value spelled `text`, one of the strings Plan::fromJson allows.
template <typename Enum, size_t N>
Enum spelled(const Spellings<Enum, N> &spellings, std::string_view text) {
  size_t i = 0;
  while (spellings[i].first != text)
    ++i;
  return spellings[i].second;
}

constexpr Spellings<Activation, 5> kActivations = {
    {"none", Activation::None},
    {"gelu", Activation::Gelu},
    {"tanh", Activation::Tanh},
    {"relu", Activation::Relu},
    {"gelu_erf", Activation::GeluErf}};
static_assert(spellsEvery(kActivations, ActivationKinds));

constexpr Spellings<PoolMode, 2> kPoolModes = {{"cls", PoolMode::Cls},
                                               {"mean", PoolMode::Mean}};
static_assert(spellsEvery(kPoolModes, PoolModes));

constexpr Spellings<MixAlgorithm, 2> kMixAlgorithms = {
    {"fft", MixAlgorithm::Fft}, {"matmul", MixAlgorithm::Matmul}};
static_assert(spellsEvery(kMixAlgorithms, MixAlgorithms));

constexpr Spellings<Routing, 3> kRoutings = {
    {"experts_choose", Routing::ExpertsChoose},
    {"tokens_choose", Routing::TokensChoose},
    {"sigmoid_topk", Routing::SigmoidTopK}};
static_assert(spellsEvery(kRoutings, Routings));

constexpr Spellings<ExpertLayout, 2> kExpertLayouts = {
    {"capacity", ExpertLayout::Capacity}, {"grouped", ExpertLayout::Grouped}};
static_assert(spellsEvery(kExpertLayouts, ExpertLayouts));

} // namespace

Activation StepContext::activation(const char *name) const {
  return spelled(kActivations, stringAttr(name));
}

MixAlgorithm StepContext::algorithm(const char *name) const {
  return spelled(kMixAlgorithms, stringAttr(name));
}

PoolMode StepContext::poolMode(const char *name) const {
  return spelled(kPoolModes, stringAttr(name));
}

bool checkAssignments(StepContext &c, int64_t slots, int64_t experts) {
  return c.shape(c.out(0), DType::I32, {slots}) &&
         c.shape(c.out(1), DType::F32, {slots}) &&
         c.shape(c.out(2), DType::I32, {experts + 1});
}

bool checkLoadBalancing(StepContext &c, const Arg &probs, int64_t &groups,
                        int64_t &k) {
  groups = c.intAttr("groups"), k = c.intAttr("k");
  return c.check(groups > 0 && probs.dim(0) % groups == 0,
                 "attribute 'groups' " + std::to_string(groups) +
                     " does not divide the " + std::to_string(probs.dim(0)) +
                     " tokens") &&
         c.check(k > 0 && k <= probs.dim(1),
                 "attribute 'k' " + std::to_string(k) + " is outside [1, " +
                     std::to_string(probs.dim(1)) + "] (the experts)");
}

bool readRandomScale(StepContext &c, bool &dropout, double &rate,
                     int64_t &stream) {
  dropout = c.stringAttr("kind") == "dropout";
  rate = c.realAttr("rate"), stream = c.intAttr("stream");
  return c.check(dropout ? rate >= 0 && rate < 1 : rate >= 0 && rate <= 1,
                 "attribute 'rate' " + std::to_string(rate) + " is outside " +
                     (dropout ? "[0, 1)" : "[0, 1]"));
}

bool readDropExperts(StepContext &c, double &rate, int64_t &stream,
                     bool &gradient) {
  rate = c.realAttr("rate"), stream = c.intAttr("stream");
  gradient = c.boolAttr("gradient");
  return c.check(rate >= 0 && rate < 1, "attribute 'rate' " +
                                            std::to_string(rate) +
                                            " is outside [0, 1)");
}

Routing readRouting(const StepContext &c) {
  return spelled(kRoutings, c.stringAttr("routing"));
}

ExpertLayout readExpertLayout(const StepContext &c) {
  return spelled(kExpertLayouts, c.stringAttr("layout"));
}

bool readMicroSteps(StepContext &c, int64_t &microSteps) {
  microSteps = c.intAttr("micro_steps");
  return c.check(microSteps >= 1, "attribute 'micro_steps' must be at least 1, "
                                  "not " +
                                      std::to_string(microSteps));
}

Status checkMicroStep(int32_t microStep, int64_t microSteps) {
  if (microStep >= 0 && microStep < microSteps)
    return Status::success();
  return Status::error("input 'micro_step' is " + std::to_string(microStep) +
                       " but an update has " + std::to_string(microSteps) +
                       " micro-steps, counted from 0");
}

bool checkAccumulateGradient(StepContext &c, int64_t &microSteps) {
  const Arg &grad = c.in(0);
  return readMicroSteps(c, microSteps) && c.minRank(grad, DType::F32, 0) &&
         c.shape(c.out(0), DType::F32, grad.value->shape) &&
         c.shape(c.out(1), DType::F32, grad.value->shape);
}

int32_t noiseCounter(int32_t step, int64_t microSteps, int32_t microStep) {
  uint32_t counter =
      static_cast<uint32_t>(step) * static_cast<uint32_t>(microSteps) +
      static_cast<uint32_t>(microStep);
  return static_cast<int32_t>(counter);
}

bool NoiseCounter::read(StepContext &c, const Arg &stepArg,
                        const Arg &microArg) {
  microSteps = c.intAttr("micro_steps", 1);
  if (!c.check(microSteps >= 1, "attribute 'micro_steps' must be at least 1, "
                                "not " +
                                    std::to_string(microSteps)) ||
      !c.check(bool(microArg.value) == (microSteps > 1),
               "the operand micro_step must be present exactly when "
               "micro_steps > 1") ||
      !c.check(bool(stepArg.value) || !microArg.value,
               "the operand micro_step needs the operand step") ||
      !c.shape(stepArg, DType::I32, {}) || !c.shape(microArg, DType::I32, {}))
    return false;
  step = stepArg.value ? stepArg.slot : -1;
  microStep = microArg.value ? microArg.slot : -1;
  return true;
}

Expected<int32_t> NoiseCounter::at(int32_t stepValue,
                                   int32_t microValue) const {
  if (microStep < 0)
    return stepValue;
  if (Status valid = checkMicroStep(microValue, microSteps); !valid)
    return valid;
  return noiseCounter(stepValue, microSteps, microValue);
}

bool checkAdamW(StepContext &c, AdamWConfig &config, double &maxNorm,
                int64_t &microSteps) {
  const Arg &grad = c.in(0), &norm = c.in(3), &micro = c.in(4);
  const Arg &param = c.out(0), &m = c.out(1), &v = c.out(2);
  config.b1 = c.realAttr("b1"), config.b2 = c.realAttr("b2");
  config.eps = c.realAttr("eps");
  config.weightDecay = c.realAttr("weight_decay");
  maxNorm = c.realAttr("max_norm");
  if (!readMicroSteps(c, microSteps) ||
      !c.check(bool(micro.value) == (microSteps > 1),
               "the operand micro_step must be present exactly when "
               "micro_steps > 1") ||
      !c.minRank(param, DType::F32, 0) ||
      !c.shape(grad, DType::F32, param.value->shape) ||
      !c.shape(m, DType::F32, param.value->shape) ||
      !c.shape(v, DType::F32, param.value->shape) ||
      !c.shape(norm, DType::F32, {}))
    return false;
  if (Status valid = validateAdamW(config); !valid)
    return c.fail(valid.message()), false;
  return c.check(maxNorm >= 0 && std::isfinite(maxNorm),
                 "attribute 'max_norm' must be finite and non-negative") &&
         c.check(maxNorm == 0 || norm.value,
                 "clipping (max_norm > 0) needs the norm operand");
}

bool readGroups(StepContext &c, int64_t &groups, int64_t &tokensPerGroup,
                int64_t &capacity) {
  const Arg &probs = c.in(0);
  groups = c.intAttr("groups");
  tokensPerGroup = c.intAttr("tokens_per_group");
  capacity = c.intAttr("capacity");
  if (!c.rank(probs, DType::F32, 2))
    return false;
  return c.check(groups > 0 && tokensPerGroup >= 0 &&
                     groups * tokensPerGroup == probs.dim(0),
                 probs.role + " is " +
                     describe(probs.value->shape, DType::F32) + " but groups " +
                     std::to_string(groups) + " x tokens_per_group " +
                     std::to_string(tokensPerGroup) + " needs " +
                     std::to_string(groups * tokensPerGroup) + " rows") &&
         c.check(capacity >= 0 && capacity <= tokensPerGroup,
                 "attribute 'capacity' is " + std::to_string(capacity) +
                     " but must lie in [0, tokens_per_group " +
                     std::to_string(tokensPerGroup) + "]");
}

namespace {
/// Reads k in [1, experts].
bool readTopK(StepContext &c, int64_t experts, int64_t &k) {
  k = c.intAttr("k");
  return c.check(k >= 1 && k <= experts,
                 "attribute 'k' is " + std::to_string(k) +
                     " but must lie in [1, " + std::to_string(experts) +
                     " experts]");
}
} // namespace

bool checkRouteExpertsChoose(StepContext &c, int64_t &groups,
                             int64_t &tokensPerGroup, int64_t &capacity) {
  if (!readGroups(c, groups, tokensPerGroup, capacity))
    return false;
  int64_t experts = c.in(0).dim(1);
  return checkAssignments(c, experts * groups * capacity, experts);
}

bool checkRouteTokensChoose(StepContext &c, int64_t &groups,
                            int64_t &tokensPerGroup, int64_t &capacity,
                            int64_t &k, bool &prioritized) {
  prioritized = c.boolAttr("batch_prioritized");
  if (!readGroups(c, groups, tokensPerGroup, capacity))
    return false;
  int64_t experts = c.in(0).dim(1);
  return readTopK(c, experts, k) &&
         checkAssignments(c, experts * groups * capacity, experts);
}

bool checkRouteSigmoidTopK(StepContext &c, int64_t &k) {
  const Arg &logits = c.in(0);
  if (!c.rank(logits, DType::F32, 2))
    return false;
  return readTopK(c, logits.dim(1), k) &&
         checkAssignments(c, logits.dim(0) * k, logits.dim(1));
}

bool checkArgmax(StepContext &c, DType act, int64_t &rows, int64_t &cols) {
  const Arg &x = c.in(0);
  if (!c.minRank(x, act, 1))
    return false;
  rows = leadingElements(*x.value), cols = x.value->shape.back();
  return c.shape(c.out(0), DType::I32,
                 {x.value->shape.begin(), x.value->shape.end() - 1}) &&
         c.check(cols > 0, "cannot take the argmax of empty rows");
}

bool checkRows(StepContext &c, const Arg &x, DType act,
               std::initializer_list<const Arg *> likeX, int64_t &rows,
               int64_t &cols) {
  if (!c.minRank(x, act, 1))
    return false;
  for (const Arg *arg : likeX)
    if (!c.shape(*arg, act, x.value->shape))
      return false;
  rows = leadingElements(*x.value), cols = x.value->shape.back();
  return true;
}

bool checkLayerNorm(StepContext &c, DType act,
                    std::initializer_list<const Arg *> likeX,
                    std::initializer_list<const Arg *> perColumn,
                    float &epsilon, int64_t &rows, int64_t &cols) {
  const Arg &x = c.in(0);
  if (!c.minRank(x, act, 1))
    return false;
  cols = x.value->shape.back();
  if (!c.shape(c.in(1), act, x.value->shape))
    return false;
  for (const Arg *arg : perColumn)
    if (!c.shape(*arg, DType::F32, {cols}))
      return false;
  for (const Arg *arg : likeX)
    if (!c.shape(*arg, act, x.value->shape))
      return false;
  rows = leadingElements(*x.value);
  epsilon = static_cast<float>(c.realAttr("epsilon"));
  return true;
}

bool checkEmbedding(StepContext &c, const Arg &ids, const Arg &typeIds,
                    const Arg &word, const Arg &pos, const Arg &type) {
  if (!c.rank(ids, DType::I32, 2) || !c.rank(word, DType::F32, 2) ||
      !c.rank(pos, DType::F32, 3) || !c.rank(type, DType::F32, 2))
    return false;
  int64_t seq = ids.dim(1), width = word.dim(1);
  return c.shape(typeIds, DType::I32, {ids.dim(0), seq}) &&
         c.check(pos.dim(0) == 1 && pos.dim(1) >= seq && pos.dim(2) == width,
                 pos.role + " is " + describe(pos.value->shape, DType::F32) +
                     " but the kernel needs [1, S, " + std::to_string(width) +
                     "] with S >= " + std::to_string(seq)) &&
         c.shape(type, DType::F32, {type.dim(0), width});
}

bool checkTakePosition(StepContext &c, const Arg &sequence, const Arg &rows,
                       DType act, int64_t &index) {
  index = c.intAttr("index");
  if (!c.rank(sequence, act, 3))
    return false;
  int64_t seq = sequence.dim(1);
  return c.check(index >= 0 && index < seq,
                 "attribute 'index' is " + std::to_string(index) +
                     " but the sequence has " + std::to_string(seq) +
                     " positions") &&
         c.shape(rows, act, {sequence.dim(0), sequence.dim(2)});
}

bool checkPool(StepContext &c, DType act, PoolMode &mode, bool &normalize,
               int32_t &padId) {
  const Arg &x = c.in(0), &ids = c.in(1), &y = c.out(0);
  mode = c.poolMode("mode");
  normalize = c.boolAttr("normalize");
  int64_t pad = c.intAttr("pad_id");
  if (!c.rank(x, act, 3) || !c.shape(ids, DType::I32, {x.dim(0), x.dim(1)}) ||
      !c.shape(y, act, {x.dim(0), x.dim(2)}))
    return false;
  padId = static_cast<int32_t>(pad);
  return c.check(pad >= std::numeric_limits<int32_t>::min() &&
                     pad <= std::numeric_limits<int32_t>::max(),
                 "attribute 'pad_id' is " + std::to_string(pad) +
                     ", outside the range of token ids") &&
         c.check(mode != PoolMode::Mean || ids.value,
                 "mean pooling needs operand 1 (ids) to find the padding") &&
         c.check(mode != PoolMode::Cls || x.dim(1) > 0,
                 "cannot take position 0 of an empty sequence");
}

bool checkGather(StepContext &c, const Arg &tokens, const Arg &positions,
                 const Arg &rows, DType act) {
  if (!c.rank(tokens, act, 3) || !c.rank(positions, DType::I32, 2))
    return false;
  return c.check(positions.dim(0) == tokens.dim(0),
                 positions.role + " is " +
                     describe(positions.value->shape, DType::I32) +
                     " but the batch is " + std::to_string(tokens.dim(0))) &&
         c.shape(rows, act, {tokens.dim(0) * positions.dim(1), tokens.dim(2)});
}

bool checkCrossEntropy(StepContext &c, const Arg &logits, const Arg &labels,
                       const Arg &weights, DType act) {
  return c.rank(logits, act, 2) &&
         c.shape(labels, DType::I32, {logits.dim(0)}) &&
         c.shape(weights, DType::F32, {logits.dim(0)});
}

bool checkRouterScores(StepContext &c, const Arg &scores, const Arg *dscores) {
  return c.rank(scores, DType::F32, 2) &&
         c.check(scores.dim(0) > 0 && scores.dim(1) > 0,
                 scores.role + " must have at least one token and expert") &&
         (!dscores || c.shape(*dscores, DType::F32, scores.value->shape));
}

bool checkRouterLogitsBf16(StepContext &c) {
  const Arg &products = c.in(0);
  return checkRouterScores(c, products, &c.out(0)) &&
         c.shape(c.in(1), DType::F32, {products.dim(1)});
}

bool checkGateGrad(StepContext &c, const Arg &tokens, const Arg &offsets,
                   const Arg &dgates, const Arg &scores) {
  if (!c.rank(tokens, DType::I32, 1) || !c.rank(scores, DType::F32, 2))
    return false;
  return c.shape(offsets, DType::I32, {scores.dim(1) + 1}) &&
         c.shape(dgates, DType::F32, {tokens.dim(0)});
}

bool checkCombine(StepContext &c, const Arg &rows, const Arg &tokens,
                  const Arg *gates, const Arg &tokenRows, DType act) {
  if (!c.rank(rows, act, 2) || !c.rank(tokenRows, act, 2))
    return false;
  int64_t slots = rows.dim(0);
  return c.shape(tokens, DType::I32, {slots}) &&
         (!gates || c.shape(*gates, DType::F32, {slots})) &&
         c.shape(tokenRows, act, {tokenRows.dim(0), rows.dim(1)});
}

bool checkLinearMix(StepContext &c, DType act,
                    std::initializer_list<const Arg *> likeX) {
  const Arg &x = c.in(0);
  if (!c.rank(x, act, 3) ||
      !c.shape(c.in(1), DType::F32, {x.dim(1), x.dim(1)}) ||
      !c.shape(c.in(2), DType::F32, {x.dim(2), x.dim(2)}))
    return false;
  for (const Arg *arg : likeX)
    if (!c.shape(*arg, act, x.value->shape))
      return false;
  return true;
}

bool checkStructuredMix(StepContext &c, DType act,
                        std::initializer_list<const Arg *> likeX,
                        bool &toeplitz) {
  const Arg &x = c.in(0);
  toeplitz = c.boolAttr("toeplitz");
  if (!c.rank(x, act, 3) ||
      !c.shape(c.in(1), DType::F32, {toeplitz ? 2 * x.dim(1) - 1 : x.dim(1)}) ||
      !c.shape(c.in(2), DType::F32, {toeplitz ? 2 * x.dim(2) - 1 : x.dim(2)}))
    return false;
  for (const Arg *arg : likeX)
    if (!c.shape(*arg, act, x.value->shape))
      return false;
  return true;
}

} // namespace mixer::exec
