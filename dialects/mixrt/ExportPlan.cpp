//===- ExportPlan.cpp - planned mixrt module to an execution plan ---------===//

#include "dialects/mixrt/ExportPlan.h"
#include "dialects/mixer/MixerDialect.h"
#include "dialects/mixrt/MixrtDialect.h"

#include "mixer/Version.h"
#include "runtime/exec/Plan.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"

using namespace mlir;

namespace mixer {
namespace {

using exec::AttrValue;
using exec::StorageKind;

/// The plan's dtype of a buffer's element type, or nothing.
std::optional<io::DType> dtypeOf(Type element) {
  if (element.isF32())
    return io::DType::F32;
  if (element.isBF16())
    return io::DType::BF16;
  if (element.isInteger(32))
    return io::DType::I32;
  return std::nullopt;
}

/// A scalar attribute as the plan holds it, or nothing.
std::optional<AttrValue> attributeValue(Attribute attr) {
  if (auto b = dyn_cast<BoolAttr>(attr))
    return AttrValue(b.getValue());
  if (auto i = dyn_cast<IntegerAttr>(attr))
    return AttrValue(i.getInt());
  if (auto f = dyn_cast<FloatAttr>(attr))
    return AttrValue(f.getValueAsDouble());
  if (auto s = dyn_cast<StringAttr>(attr))
    return AttrValue(s.str());
  return std::nullopt;
}

/// Builds the plan's tables and steps from one function.
class PlanWriter {
public:
  PlanWriter(func::FuncOp func, exec::Plan &plan) : func(func), plan(plan) {}
  LogicalResult write(const PlanInfo &info);

private:
  /// Shape and dtype of a buffer of `type`; fails on an element type the
  /// plan has no dtype for.
  LogicalResult tensorType(Location loc, Type type, std::vector<int64_t> &shape,
                           io::DType &dtype);
  /// A parameter or optimizer state tensor: argument `index` named `name`
  /// with its initialiser and, sharded, its shard.
  LogicalResult tensor(unsigned index, StringAttr name, exec::ParamInfo &out);
  /// Index of `value` in the value table, adding it on first use; -1 for an
  /// absent optional operand.
  FailureOr<int64_t> valueId(Value value);
  /// Records the shard group and global shape of argument `index`, a
  /// parameter split over the ranks of a mesh group, in `out`.
  LogicalResult shard(unsigned index, DictionaryAttr attr,
                      exec::ParamInfo &out);
  /// The mesh of a parallel plan and the bytes one rank sends per run, by
  /// collective kernel.
  void writeMesh();
  LogicalResult writeSteps();
  LogicalResult writeOutputs();
  LogicalResult writeTraining(DictionaryAttr training);

  func::FuncOp func;
  exec::Plan &plan;
  DenseMap<Value, int64_t> ids;
  /// Storage and table index of each argument.
  DenseMap<unsigned, std::pair<StorageKind, int64_t>> argumentStorage;
};

LogicalResult PlanWriter::tensorType(Location loc, Type type,
                                     std::vector<int64_t> &shape,
                                     io::DType &dtype) {
  auto memref = cast<MemRefType>(type);
  shape = memref.getShape().vec();
  std::optional<io::DType> element = dtypeOf(memref.getElementType());
  if (!element)
    return emitError(loc) << "buffer of " << type
                          << " has no plan dtype (F32, BF16 or I32)";
  dtype = *element;
  return success();
}

LogicalResult PlanWriter::tensor(unsigned index, StringAttr name,
                                 exec::ParamInfo &out) {
  out.name = name.str();
  if (failed(tensorType(func.getLoc(), func.getArgument(index).getType(),
                        out.shape, out.dtype)))
    return failure();
  auto init =
      func.getArgAttrOfType<DictionaryAttr>(index, mixer::graph::kInitAttr);
  auto kind = init ? init.getAs<StringAttr>("kind") : StringAttr();
  std::optional<exec::InitKind> known =
      kind ? exec::parseInitKind(kind.getValue()) : std::nullopt;
  if (!known)
    return func.emitError() << "argument " << index << " ('" << out.name
                            << "') has no known init kind";
  out.init.kind = *known;
  if (auto stddev = init.getAs<FloatAttr>("stddev"))
    out.init.stddev = stddev.getValueAsDouble();
  if (auto attr = func.getArgAttrOfType<DictionaryAttr>(
          index, mixer::graph::kShardAttr))
    return shard(index, attr, out);
  return success();
}

FailureOr<int64_t> PlanWriter::valueId(Value value) {
  if (value.getDefiningOp<rt::NoneOp>())
    return -1;
  if (auto it = ids.find(value); it != ids.end())
    return it->second;
  exec::ValueInfo entry;
  if (failed(tensorType(value.getLoc(), value.getType(), entry.shape,
                        entry.dtype)))
    return failure();
  // Views share the storage of their source with another shape.
  Value storage = value;
  while (auto view = storage.getDefiningOp<rt::ViewOp>())
    storage = view.getSource();
  if (auto arg = dyn_cast<BlockArgument>(storage)) {
    std::tie(entry.storage, entry.index) =
        argumentStorage.lookup(arg.getArgNumber());
  } else if (auto alloc = storage.getDefiningOp<rt::AllocOp>()) {
    if (!alloc.getOffset())
      return alloc.emitOpError("has no arena offset: run mixrt-plan-memory");
    entry.storage = StorageKind::Arena;
    entry.offset = *alloc.getOffset();
  } else {
    return emitError(value.getLoc(), "buffer is neither an argument nor an "
                                     "arena allocation");
  }
  int64_t id = plan.values.size();
  plan.values.push_back(std::move(entry));
  ids[value] = id;
  return id;
}

LogicalResult PlanWriter::shard(unsigned index, DictionaryAttr attr,
                                exec::ParamInfo &out) {
  auto group = attr.getAs<StringAttr>("mesh_axis");
  auto axis = attr.getAs<IntegerAttr>("axis");
  if (!group || !axis || axis.getInt() != 0 || out.shape.empty())
    return func.emitError() << "argument " << index << " ('" << out.name
                            << "') is sharded other than along axis 0";
  out.shardGroup = group.str();
  out.globalShape = out.shape;
  out.globalShape[0] *= mixer::graph::meshOf(func).groupSize(group);
  return success();
}

void PlanWriter::writeMesh() {
  mixer::graph::Mesh mesh = mixer::graph::meshOf(func);
  plan.mesh = {mesh.dp, mesh.ep};
  for (auto kernel : func.getBody().front().getOps<rt::KernelOp>()) {
    auto group = kernel.getParams().getAs<StringAttr>("group");
    if (kernel.getKernelInfo().family != mixer::KernelFamily::Collective ||
        !group)
      continue;
    auto type = cast<MemRefType>(kernel.getInputs().front().getType());
    int64_t size = type.getNumElements() *
                   type.getElementType().getIntOrFloatBitWidth() / 8;
    int64_t peers = mesh.groupSize(group.getValue());
    // The all-to-all keeps its own block; a ragged one may send every row
    // away; the all-reduce sends (P - 1) / P of the buffer twice.
    mixer::Kernel callee = kernel.getKernel();
    int64_t sent =
        callee == mixer::Kernel::AllToAll    ? size * (peers - 1) / peers
        : callee == mixer::Kernel::AllToAllV ? size
                                             : 2 * size * (peers - 1) / peers;
    plan.commBytes[kernel.getCallee().str()] += sent;
  }
}

LogicalResult PlanWriter::writeSteps() {
  // The forward pass ends with the last step that writes a result of the
  // function; the gradient and optimizer steps follow it.
  auto ret = cast<func::ReturnOp>(func.getBody().front().getTerminator());
  auto storageOf = [](Value value) {
    while (auto view = value.getDefiningOp<rt::ViewOp>())
      value = view.getSource();
    return value;
  };
  DenseSet<Value> resultStorage;
  for (Value value : ret.getOperands())
    resultStorage.insert(storageOf(value));
  for (Operation &op : func.getBody().front()) {
    auto kernel = dyn_cast<rt::KernelOp>(op);
    if (!kernel)
      continue;
    exec::Step step;
    step.kernel = kernel.getKernel();
    for (Value operand : kernel.getInputs()) {
      FailureOr<int64_t> id = valueId(operand);
      if (failed(id))
        return failure();
      step.operands.push_back(*id);
    }
    for (Value result : kernel.getOutputs()) {
      FailureOr<int64_t> id = valueId(result);
      if (failed(id))
        return failure();
      step.results.push_back(*id);
      if (resultStorage.contains(storageOf(result)))
        plan.forwardSteps = plan.steps.size() + 1;
    }
    for (NamedAttribute attr : kernel.getParams()) {
      std::optional<AttrValue> value = attributeValue(attr.getValue());
      if (!value)
        return kernel.emitOpError()
               << "parameter '" << attr.getName().strref()
               << "' is not a boolean, integer, number or string";
      step.attrs[attr.getName().str()] = std::move(*value);
    }
    plan.steps.push_back(std::move(step));
  }
  return success();
}

LogicalResult PlanWriter::writeOutputs() {
  auto ret = cast<func::ReturnOp>(func.getBody().front().getTerminator());
  auto names = func->getAttrOfType<ArrayAttr>(mixer::graph::kOutputsAttr);
  if (!names || names.size() != ret.getNumOperands())
    return func.emitError("mixer.outputs must name every result");
  bool parallel = mixer::graph::meshOf(func).world() > 1;
  for (auto [index, name, value] : llvm::enumerate(names, ret.getOperands())) {
    FailureOr<int64_t> id = valueId(value);
    if (failed(id))
      return failure();
    exec::OutputInfo output{cast<StringAttr>(name).str(), *id, ""};
    // A parallel plan's output is the rank's rows of the batch unless the
    // compiler summed it over the ranks or it is a slice of the experts.
    if (parallel && !func.getResultAttr(index, mixer::graph::kReplicatedAttr)) {
      auto shard = func.getResultAttrOfType<DictionaryAttr>(
          index, mixer::graph::kShardAttr);
      auto group = shard ? shard.getAs<StringAttr>("mesh_axis") : StringAttr();
      output.shardGroup = group ? group.str() : mixer::graph::kWorldGroup.str();
    }
    plan.outputs.push_back(std::move(output));
  }
  return success();
}

LogicalResult PlanWriter::writeTraining(DictionaryAttr training) {
  exec::TrainingInfo info;
  auto real = [&](StringRef key, double &out) {
    if (auto attr = training.getAs<FloatAttr>(key))
      out = attr.getValueAsDouble();
  };
  auto integer = [&](StringRef key, int64_t &out) {
    if (auto attr = training.getAs<IntegerAttr>(key))
      out = attr.getInt();
  };
  real("learning_rate", info.learningRate);
  integer("warmup_steps", info.warmupSteps);
  integer("total_steps", info.totalSteps);
  integer("gradient_accumulation_steps", info.microSteps);
  real("b1", info.adamw.b1);
  real("b2", info.adamw.b2);
  real("eps", info.adamw.eps);
  real("weight_decay", info.adamw.weightDecay);
  real("clip_grad_norm", info.clipGradNorm);
  plan.training = info;
  return success();
}

LogicalResult PlanWriter::write(const PlanInfo &info) {
  for (BlockArgument arg : func.getArguments()) {
    unsigned index = arg.getArgNumber();
    if (auto name = func.getArgAttrOfType<StringAttr>(
            index, mixer::graph::kParamAttr)) {
      argumentStorage[index] = {StorageKind::Param, plan.params.size()};
      if (failed(tensor(index, name, plan.params.emplace_back())))
        return failure();
    } else if (auto name = func.getArgAttrOfType<StringAttr>(
                   index, mixer::graph::kStateAttr)) {
      argumentStorage[index] = {StorageKind::State, plan.state.size()};
      if (failed(tensor(index, name, plan.state.emplace_back())))
        return failure();
    } else if (auto input = func.getArgAttrOfType<StringAttr>(
                   index, mixer::graph::kInputAttr)) {
      argumentStorage[index] = {StorageKind::Input, plan.inputs.size()};
      exec::InputInfo &entry = plan.inputs.emplace_back();
      entry.name = input.str();
      entry.optional =
          func.getArgAttr(index, mixer::graph::kOptionalAttr) != nullptr;
      if (failed(tensorType(func.getLoc(), arg.getType(), entry.shape,
                            entry.dtype)))
        return failure();
    } else {
      return func.emitError() << "argument " << index
                              << " is neither a parameter, optimizer state "
                                 "nor an input";
    }
  }
  if (failed(writeSteps()) || failed(writeOutputs()))
    return failure();

  auto intAttr = [&](StringRef name) -> int64_t {
    auto attr = func->getAttrOfType<IntegerAttr>(name);
    return attr ? attr.getInt() : 0;
  };
  auto flops = func->getAttrOfType<FloatAttr>(mixer::rt::kFlopsAttr);
  auto model = func->getAttrOfType<StringAttr>(mixer::graph::kModelAttr);
  plan.compilerVersion = kVersion;
  plan.model = model ? model.str() : std::string();
  plan.target = info.target;
  plan.precision = info.precision;
  plan.mode = info.mode;
  plan.batch = intAttr(mixer::graph::kBatchAttr);
  plan.seq = intAttr(mixer::graph::kSeqAttr);
  plan.padId = intAttr(mixer::graph::kPadIdAttr);
  plan.vocabSize = intAttr(mixer::graph::kVocabSizeAttr);
  plan.arenaBytes = intAttr(mixer::rt::kArenaBytesAttr);
  plan.flops = flops ? flops.getValueAsDouble() : 0.0;
  if (auto heads =
          func->getAttrOfType<DictionaryAttr>(mixer::graph::kHeadsAttr)) {
    auto flag = [&](StringRef key) {
      auto attr = heads.getAs<BoolAttr>(key);
      return attr && attr.getValue();
    };
    plan.heads.maskedLm = flag("masked_lm");
    plan.heads.nextSentence = flag("next_sentence");
    plan.heads.causalLm = flag("causal_lm");
    if (auto classes = heads.getAs<IntegerAttr>("classes"))
      plan.heads.classes = classes.getInt();
  }
  // A parallel plan: its mesh and what each rank sends per run.
  if (func->getParentOfType<ModuleOp>()->hasAttr(mixer::graph::kMeshAttr))
    writeMesh();
  // A training step: the optimizer's settings and state.
  if (auto training =
          func->getAttrOfType<DictionaryAttr>(mixer::graph::kTrainingAttr))
    return writeTraining(training);
  if (!plan.state.empty())
    return func.emitError("optimizer state without the training settings "
                          "(mixer.training)");
  return success();
}

} // namespace

LogicalResult exportPlan(ModuleOp module, const PlanInfo &info,
                         exec::Plan &plan) {
  auto func = module.lookupSymbol<func::FuncOp>("forward");
  if (!func)
    return module.emitError("module has no @forward function");
  return PlanWriter(func, plan).write(info);
}

} // namespace mixer
