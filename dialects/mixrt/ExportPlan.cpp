//===- ExportPlan.cpp - planned mixrt module to an execution plan ---------===//

#include "dialects/mixrt/ExportPlan.h"
#include "dialects/mixer/MixerDialect.h"
#include "dialects/mixrt/MixrtDialect.h"

#include "mixer/Version.h"
#include "runtime/support/PlanFormat.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"

#include <nlohmann/json.hpp>

using namespace mlir;
using json = nlohmann::json;

namespace mixer {
namespace {

std::string dtypeName(Type element) {
  if (element.isF32())
    return "F32";
  if (element.isBF16())
    return "BF16";
  if (element.isInteger(32))
    return "I32";
  return "";
}

json shapeJson(MemRefType type) { return json(type.getShape().vec()); }

json attributeJson(Attribute attr) {
  if (auto b = dyn_cast<BoolAttr>(attr))
    return b.getValue();
  if (auto i = dyn_cast<IntegerAttr>(attr))
    return i.getInt();
  if (auto f = dyn_cast<FloatAttr>(attr))
    return f.getValueAsDouble();
  if (auto s = dyn_cast<StringAttr>(attr))
    return s.str();
  return nullptr;
}

/// Builds the plan's value table and steps from one function.
class PlanWriter {
public:
  explicit PlanWriter(func::FuncOp func) : func(func) {}
  FailureOr<json> write(const PlanInfo &info);

private:
  /// Index of `value` in the value table, adding it on first use; -1 for an
  /// absent optional operand.
  FailureOr<int64_t> valueId(Value value);
  /// Adds a sharded parameter's `shard` and `global_shape` to its `entry`.
  void addShard(json &entry, DictionaryAttr shard);
  /// The bytes one rank sends per run, by collective kernel.
  json commBytes();

  func::FuncOp func;
  DenseMap<Value, int64_t> ids;
  json values = json::array();
  json params = json::array();
  json state = json::array();
  json inputs = json::array();
  /// Index of each argument in its table, and the table's storage name.
  DenseMap<unsigned, std::pair<const char *, int64_t>> argumentStorage;
};

FailureOr<int64_t> PlanWriter::valueId(Value value) {
  if (value.getDefiningOp<rt::NoneOp>())
    return -1;
  if (auto it = ids.find(value); it != ids.end())
    return it->second;
  auto type = cast<MemRefType>(value.getType());
  json entry = {{"shape", shapeJson(type)},
                {"dtype", dtypeName(type.getElementType())}};
  // Views share the storage of their source with another shape.
  Value storage = value;
  while (auto view = storage.getDefiningOp<rt::ViewOp>())
    storage = view.getSource();
  if (auto arg = dyn_cast<BlockArgument>(storage)) {
    auto [table, index] = argumentStorage.lookup(arg.getArgNumber());
    entry["storage"] = table;
    entry["index"] = index;
  } else if (auto alloc = storage.getDefiningOp<rt::AllocOp>()) {
    if (!alloc.getOffset())
      return alloc.emitOpError("has no arena offset: run mixrt-plan-memory");
    entry["storage"] = "arena";
    entry["offset"] = *alloc.getOffset();
  } else {
    return emitError(value.getLoc(), "buffer is neither an argument nor an "
                                     "arena allocation");
  }
  int64_t id = values.size();
  values.push_back(entry);
  ids[value] = id;
  return id;
}

void PlanWriter::addShard(json &entry, DictionaryAttr shard) {
  auto group = shard.getAs<StringAttr>("mesh_axis");
  auto axis = shard.getAs<IntegerAttr>("axis");
  json global = entry["shape"];
  global[axis.getInt()] = global[axis.getInt()].get<int64_t>() *
                          mixer::graph::meshOf(func).groupSize(group);
  entry["shard"] = {{"axis", axis.getInt()}, {"mesh_axis", group.str()}};
  entry["global_shape"] = global;
}

json PlanWriter::commBytes() {
  json bytes = json::object();
  mixer::graph::Mesh mesh = mixer::graph::meshOf(func);
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
    std::string name = kernel.getCallee().str();
    bytes[name] = bytes.value(name, int64_t(0)) + sent;
  }
  return bytes;
}

FailureOr<json> PlanWriter::write(const PlanInfo &info) {
  for (BlockArgument arg : func.getArguments()) {
    unsigned index = arg.getArgNumber();
    auto type = cast<MemRefType>(arg.getType());
    json entry = {{"shape", shapeJson(type)},
                  {"dtype", dtypeName(type.getElementType())}};
    // Parameters and optimizer state: named tensors with an initialiser.
    auto addTensor = [&](StringAttr name, const char *storage, json &table) {
      entry["name"] = name.str();
      json init = json::object();
      if (auto dict = func.getArgAttrOfType<DictionaryAttr>(
              index, mixer::graph::kInitAttr))
        for (NamedAttribute attr : dict)
          init[attr.getName().str()] = attributeJson(attr.getValue());
      entry["init"] = init;
      if (auto shard = func.getArgAttrOfType<DictionaryAttr>(
              index, mixer::graph::kShardAttr))
        addShard(entry, shard);
      argumentStorage[index] = {storage, table.size()};
      table.push_back(entry);
    };
    if (auto name = func.getArgAttrOfType<StringAttr>(
            index, mixer::graph::kParamAttr)) {
      addTensor(name, "param", params);
    } else if (auto name = func.getArgAttrOfType<StringAttr>(
                   index, mixer::graph::kStateAttr)) {
      addTensor(name, "state", state);
    } else if (auto input = func.getArgAttrOfType<StringAttr>(
                   index, mixer::graph::kInputAttr)) {
      entry["name"] = input.str();
      entry["optional"] =
          func.getArgAttr(index, mixer::graph::kOptionalAttr) != nullptr;
      argumentStorage[index] = {"input", inputs.size()};
      inputs.push_back(entry);
    } else {
      return func.emitError() << "argument " << index
                              << " is neither a parameter, optimizer state "
                                 "nor an input";
    }
  }

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
  int64_t forwardSteps = 0;

  json steps = json::array();
  for (Operation &op : func.getBody().front()) {
    auto kernel = dyn_cast<rt::KernelOp>(op);
    if (!kernel)
      continue;
    json operands = json::array(), results = json::array();
    for (Value operand : kernel.getInputs()) {
      FailureOr<int64_t> id = valueId(operand);
      if (failed(id))
        return failure();
      operands.push_back(*id);
    }
    for (Value result : kernel.getOutputs()) {
      FailureOr<int64_t> id = valueId(result);
      if (failed(id))
        return failure();
      results.push_back(*id);
      if (resultStorage.contains(storageOf(result)))
        forwardSteps = steps.size() + 1;
    }
    json attrs = json::object();
    for (NamedAttribute attr : kernel.getParams())
      attrs[attr.getName().str()] = attributeJson(attr.getValue());
    steps.push_back({{"kernel", kernel.getCallee().str()},
                     {"operands", operands},
                     {"results", results},
                     {"attrs", attrs}});
  }

  auto names = func->getAttrOfType<ArrayAttr>(mixer::graph::kOutputsAttr);
  if (!names || names.size() != ret.getNumOperands())
    return func.emitError("mixer.outputs must name every result");
  json outputs = json::array();
  for (auto [name, value] : llvm::zip(names, ret.getOperands())) {
    FailureOr<int64_t> id = valueId(value);
    if (failed(id))
      return failure();
    outputs.push_back({{"name", cast<StringAttr>(name).str()}, {"value", *id}});
  }

  auto intAttr = [&](StringRef name) -> int64_t {
    auto attr = func->getAttrOfType<IntegerAttr>(name);
    return attr ? attr.getInt() : 0;
  };
  auto flops = func->getAttrOfType<FloatAttr>(mixer::rt::kFlopsAttr);
  auto model = func->getAttrOfType<StringAttr>(mixer::graph::kModelAttr);
  json heads = json::object();
  if (auto dict = func->getAttrOfType<DictionaryAttr>(mixer::graph::kHeadsAttr))
    for (NamedAttribute attr : dict)
      heads[attr.getName().str()] = attributeJson(attr.getValue());
  json plan = {{"format_version", kPlanFormatVersion},
               {"compiler_version", kVersion},
               {"model", model ? model.str() : std::string()},
               {"target", info.target},
               {"precision", info.precision},
               {"mode", info.mode},
               {"batch", intAttr(mixer::graph::kBatchAttr)},
               {"seq", intAttr(mixer::graph::kSeqAttr)},
               {"pad_id", intAttr(mixer::graph::kPadIdAttr)},
               {"vocab_size", intAttr(mixer::graph::kVocabSizeAttr)},
               {"arena_bytes", intAttr(mixer::rt::kArenaBytesAttr)},
               {"forward_steps", forwardSteps},
               {"heads", heads},
               {"flops", flops ? flops.getValueAsDouble() : 0.0},
               {"params", params},
               {"inputs", inputs},
               {"outputs", outputs},
               {"values", values},
               {"steps", steps}};
  // A parallel plan: its mesh and what each rank sends per run.
  if (func->getParentOfType<ModuleOp>()->hasAttr(mixer::graph::kMeshAttr)) {
    mixer::graph::Mesh mesh = mixer::graph::meshOf(func);
    plan["mesh"] = {{"dp", mesh.dp}, {"ep", mesh.ep}, {"world", mesh.world()}};
    plan["comm_bytes"] = commBytes();
  }
  // A training step: the optimizer's schedule and state.
  if (auto training =
          func->getAttrOfType<DictionaryAttr>(mixer::graph::kTrainingAttr)) {
    json settings = json::object();
    for (NamedAttribute attr : training)
      settings[attr.getName().str()] = attributeJson(attr.getValue());
    plan["training"] = settings;
    plan["state"] = state;
  } else if (!state.empty()) {
    return func.emitError("optimizer state without the training settings "
                          "(mixer.training)");
  }
  return plan;
}

} // namespace

FailureOr<std::string> exportPlan(ModuleOp module, const PlanInfo &info) {
  auto func = module.lookupSymbol<func::FuncOp>("forward");
  if (!func) {
    module.emitError("module has no @forward function");
    return failure();
  }
  FailureOr<json> plan = PlanWriter(func).write(info);
  if (failed(plan))
    return failure();
  return plan->dump();
}

} // namespace mixer
