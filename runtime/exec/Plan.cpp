//===- Plan.cpp - Parsing and validating execution plans ------------------===//

#include "runtime/exec/Plan.h"

#include "runtime/io/Container.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <limits>
#include <optional>
#include <set>
#include <tuple>
#include <utility>

namespace mixer::exec {

namespace {

using json = nlohmann::json;

std::string describe(const std::vector<int64_t> &shape, io::DType dtype) {
  return io::formatShape(shape) + " " + io::dtypeName(dtype);
}

/// True for an unsigned JSON integer beyond the int64 range.
bool tooLarge(const json &value) {
  return value.is_number_unsigned() &&
         value.get<uint64_t>() >
             static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
}

/// `value` as an attribute of `attribute`'s type, or nothing when it has
/// another type or, for a string, is not one of the allowed values.
std::optional<AttrValue> readAttribute(const KernelAttribute &attribute,
                                       const json &value) {
  switch (attribute.type) {
  case AttrType::Bool:
    if (value.is_boolean())
      return value.get<bool>();
    break;
  case AttrType::Int:
    if (value.is_number_integer() && !tooLarge(value))
      return value.get<int64_t>();
    break;
  case AttrType::Real:
    if (value.is_number())
      return value.get<double>();
    break;
  case AttrType::String:
    if (value.is_string() && attribute.allows(value.get<std::string>()))
      return value.get<std::string>();
    break;
  }
  return std::nullopt;
}

/// "a boolean", ..., or for a string attribute its values: "fft or matmul".
std::string describeAllowed(const KernelAttribute &attribute) {
  if (attribute.type != AttrType::String)
    return std::string(describeAttrType(attribute.type));
  std::string text;
  for (size_t i = 0; i < attribute.values->size; ++i) {
    if (i > 0)
      text += i + 1 == attribute.values->size ? " or " : ", ";
    text += attribute.values->values[i];
  }
  return text;
}

/// Reads the plan JSON into a Plan, stopping at the first problem; the
/// message then names the artifact and the place.
class PlanParser {
public:
  explicit PlanParser(Plan &plan) : plan(plan) {}

  bool parse(const json &root);
  Status takeError() { return Status::error(std::move(message)); }

private:
  bool fail(const std::string &where, const std::string &text);

  /// The member `key` of `object`; fails when it is absent.
  const json *member(const json &object, const char *key,
                     const std::string &where);
  bool readInt(const json &object, const char *key, const std::string &where,
               int64_t &out);
  bool readNumber(const json &object, const char *key, const std::string &where,
                  double &out);
  bool readString(const json &object, const char *key, const std::string &where,
                  std::string &out);
  bool readArray(const json &object, const char *key, const std::string &where,
                 const json *&out);
  bool readObject(const json &object, const char *key, const std::string &where,
                  const json *&out);
  /// Reads "shape" and "dtype", computing the element and byte counts.
  bool readTensorType(const json &object, const std::string &where,
                      std::vector<int64_t> &shape, io::DType &dtype,
                      int64_t &numel, int64_t &bytes);

  bool parseHeader(const json &root);
  bool parseHeads(const json &root);
  /// Reads the mesh and collective bytes of a parallel plan.
  bool parseMesh(const json &root);
  /// Reads the shard and global shape of a parameter of a parallel plan.
  bool parseShard(const json &entry, const std::string &where,
                  ParamInfo &param);
  /// Reads how the ranks of a parallel plan hold an output.
  bool parseOutputShard(const json &entry, const std::string &where,
                        OutputInfo &output);
  /// Reads a table of named f32 tensors with an init ("params", "state").
  bool parseTensorTable(const json &array, const char *table,
                        std::vector<ParamInfo> &out);
  bool parseTraining(const json &root);
  /// Reads the training setting `key` when the plan has it.
  bool readOptionalNumber(const json &training, const char *key, double &out) {
    return !training.contains(key) ||
           readNumber(training, key, "training", out);
  }
  bool parseInputs(const json &array);
  bool parseValues(const json &array);
  bool parseSteps(const json &array);
  bool parseStep(const json &entry, size_t index);
  bool checkStepValues(const Step &step, const std::string &where);
  bool parseOutputs(const json &array);
  /// Checks mode, batch, seq, vocab_size and pad_id against the steps.
  bool checkHeaderAgainstPlan();
  /// Checks that every arena byte a step or output reads was last written
  /// through the same buffer by an earlier step.
  bool checkDefinedBeforeUse();
  /// Checks that experts steps of the capacity layout read the offsets of a
  /// capacity routing step.
  bool checkExpertLayouts();

  Plan &plan;
  std::string message;
};

bool PlanParser::fail(const std::string &where, const std::string &text) {
  message = plan.path + ": " + (where.empty() ? "" : where + ": ") + text;
  return false;
}

const json *PlanParser::member(const json &object, const char *key,
                               const std::string &where) {
  auto it = object.find(key);
  if (it == object.end()) {
    fail(where, std::string("missing '") + key + "'");
    return nullptr;
  }
  return &*it;
}

bool PlanParser::readInt(const json &object, const char *key,
                         const std::string &where, int64_t &out) {
  const json *value = member(object, key, where);
  if (!value)
    return false;
  if (!value->is_number_integer() || tooLarge(*value))
    return fail(where, std::string("'") + key + "' must be an integer, not " +
                           value->dump());
  out = value->get<int64_t>();
  return true;
}

bool PlanParser::readNumber(const json &object, const char *key,
                            const std::string &where, double &out) {
  const json *value = member(object, key, where);
  if (!value)
    return false;
  if (!value->is_number())
    return fail(where, std::string("'") + key + "' must be a number, not " +
                           value->dump());
  out = value->get<double>();
  return true;
}

bool PlanParser::readString(const json &object, const char *key,
                            const std::string &where, std::string &out) {
  const json *value = member(object, key, where);
  if (!value)
    return false;
  if (!value->is_string())
    return fail(where, std::string("'") + key + "' must be a string, not " +
                           value->dump());
  out = value->get<std::string>();
  return true;
}

bool PlanParser::readArray(const json &object, const char *key,
                           const std::string &where, const json *&out) {
  out = member(object, key, where);
  if (!out)
    return false;
  if (!out->is_array())
    return fail(where, std::string("'") + key + "' must be an array");
  return true;
}

bool PlanParser::readObject(const json &object, const char *key,
                            const std::string &where, const json *&out) {
  out = member(object, key, where);
  if (!out)
    return false;
  if (!out->is_object())
    return fail(where, std::string("'") + key + "' must be an object");
  return true;
}

bool PlanParser::readTensorType(const json &object, const std::string &where,
                                std::vector<int64_t> &shape, io::DType &dtype,
                                int64_t &numel, int64_t &bytes) {
  const json *dims;
  if (!readArray(object, "shape", where, dims))
    return false;
  shape.clear();
  numel = 1;
  for (const json &dim : *dims) {
    if (!dim.is_number_integer() || tooLarge(dim) || dim.get<int64_t>() < 0)
      return fail(where, "'shape' must hold non-negative integers, not " +
                             dims->dump());
    shape.push_back(dim.get<int64_t>());
    if (__builtin_mul_overflow(numel, shape.back(), &numel))
      return fail(where, "shape " + dims->dump() + " has too many elements");
  }
  std::string name;
  if (!readString(object, "dtype", where, name))
    return false;
  if (!io::parseDTypeName(name, dtype))
    return fail(where, "unknown dtype '" + name + "'");
  if (__builtin_mul_overflow(numel, io::dtypeSize(dtype), &bytes))
    return fail(where, "shape " + dims->dump() + " has too many bytes");
  return true;
}

bool PlanParser::parse(const json &root) {
  if (!root.is_object())
    return fail("", "the plan is not a JSON object");
  const json *params, *inputs, *values, *steps, *outputs;
  return parseHeader(root) && readArray(root, "params", "", params) &&
         parseTensorTable(*params, "params", plan.params) &&
         parseTraining(root) && readArray(root, "inputs", "", inputs) &&
         parseInputs(*inputs) && readArray(root, "values", "", values) &&
         parseValues(*values) && readArray(root, "steps", "", steps) &&
         parseSteps(*steps) && readArray(root, "outputs", "", outputs) &&
         parseOutputs(*outputs) && checkHeaderAgainstPlan() &&
         checkDefinedBeforeUse() && checkExpertLayouts();
}

bool PlanParser::parseHeader(const json &root) {
  // The version comes first: a plan of another version may differ in any
  // other field, and the version mismatch is what the user needs to know.
  if (!readInt(root, "format_version", "", plan.formatVersion))
    return false;
  auto compiler = root.find("compiler_version");
  std::string compilerVersion = compiler != root.end() && compiler->is_string()
                                    ? compiler->get<std::string>()
                                    : std::string("unknown");
  if (plan.formatVersion != kPlanFormatVersion)
    return fail("", "plan format version " +
                        std::to_string(plan.formatVersion) +
                        " (written by compiler version " + compilerVersion +
                        ") is not supported: this runtime reads plan format "
                        "version " +
                        std::to_string(kPlanFormatVersion) +
                        "; recompile it with mixc");
  if (!readString(root, "compiler_version", "", plan.compilerVersion) ||
      !readString(root, "model", "", plan.model) ||
      !readString(root, "target", "", plan.target) ||
      !readString(root, "mode", "", plan.mode) ||
      !readInt(root, "batch", "", plan.batch) ||
      !readInt(root, "seq", "", plan.seq) ||
      !readInt(root, "pad_id", "", plan.padId) ||
      !readInt(root, "vocab_size", "", plan.vocabSize) ||
      !readInt(root, "arena_bytes", "", plan.arenaBytes) ||
      !readInt(root, "forward_steps", "", plan.forwardSteps) ||
      !readNumber(root, "flops", "", plan.flops) || !parseHeads(root) ||
      !parseMesh(root))
    return false;
  if (plan.target != "cpu" && plan.target != "cuda")
    return fail("", "the plan targets '" + plan.target +
                        "' but this runtime executes 'cpu' and 'cuda' plans");
  // Plans written before precisions existed are fp32.
  if (root.contains("precision") &&
      !readString(root, "precision", "", plan.precision))
    return false;
  if (plan.precision != "fp32" && plan.precision != "bf16")
    return fail("", "unknown precision '" + plan.precision +
                        "' (expected fp32 or bf16)");
  if (plan.batch < 0 || plan.seq < 0 || plan.vocabSize < 0 ||
      plan.arenaBytes < 0 || plan.flops < 0)
    return fail("", "batch, seq, vocab_size, arena_bytes and flops must not "
                    "be negative");
  return true;
}

bool PlanParser::parseMesh(const json &root) {
  if (root.contains("mesh")) {
    const json *mesh;
    int64_t world;
    if (!readObject(root, "mesh", "", mesh) ||
        !readInt(*mesh, "dp", "mesh", plan.mesh.dp) ||
        !readInt(*mesh, "ep", "mesh", plan.mesh.ep) ||
        !readInt(*mesh, "world", "mesh", world))
      return false;
    if (plan.mesh.dp < 1 || plan.mesh.ep < 1 ||
        world != plan.mesh.dp * plan.mesh.ep || plan.batch % world != 0)
      return fail("mesh", "needs dp >= 1, ep >= 1, world = dp * ep and a "
                          "batch that divides into the world, got dp " +
                              std::to_string(plan.mesh.dp) + ", ep " +
                              std::to_string(plan.mesh.ep) + ", world " +
                              std::to_string(world) + ", batch " +
                              std::to_string(plan.batch));
  }
  if (!root.contains("comm_bytes"))
    return true;
  const json *bytes;
  if (!readObject(root, "comm_bytes", "", bytes))
    return false;
  for (auto it = bytes->begin(); it != bytes->end(); ++it) {
    const KernelInfo *kernel = findKernel(it.key());
    if (!kernel || kernel->family != KernelFamily::Collective)
      return fail("comm_bytes", "'" + it.key() + "' is no collective kernel");
    if (!readInt(*bytes, it.key().c_str(), "comm_bytes",
                 plan.commBytes[it.key()]))
      return false;
  }
  return true;
}

bool PlanParser::parseHeads(const json &root) {
  const json *heads;
  if (!readObject(root, "heads", "", heads))
    return false;
  HeadsInfo &info = plan.heads;
  for (auto it = heads->begin(); it != heads->end(); ++it) {
    const std::string &key = it.key();
    bool *flag = key == "masked_lm"       ? &info.maskedLm
                 : key == "next_sentence" ? &info.nextSentence
                 : key == "causal_lm"     ? &info.causalLm
                                          : nullptr;
    if (flag) {
      if (!it->is_boolean())
        return fail("heads",
                    "'" + key + "' must be a boolean, not " + it->dump());
      *flag = it->get<bool>();
    } else if (key == "classes") {
      if (!it->is_number_integer() || tooLarge(*it) || it->get<int64_t>() < 0)
        return fail("heads", "'classes' must be a non-negative integer, not " +
                                 it->dump());
      info.classes = it->get<int64_t>();
    } else {
      return fail("heads", "unknown key '" + key + "'");
    }
  }
  return true;
}

bool PlanParser::parseTensorTable(const json &array, const char *table,
                                  std::vector<ParamInfo> &out) {
  std::set<std::string> names;
  for (size_t i = 0; i < array.size(); ++i) {
    std::string where = table + ("[" + std::to_string(i) + "]");
    ParamInfo param;
    int64_t bytes;
    const json *init;
    std::string kind;
    if (!array[i].is_object())
      return fail(where, "must be an object");
    if (!readString(array[i], "name", where, param.name))
      return false;
    where += " '" + param.name + "'";
    if (!names.insert(param.name).second)
      return fail(where, std::string("the ") +
                             (&out == &plan.state ? "state" : "parameter") +
                             " name is used twice");
    if (!readTensorType(array[i], where, param.shape, param.dtype, param.numel,
                        bytes) ||
        !readObject(array[i], "init", where, init) ||
        !readString(*init, "kind", where + " init", kind))
      return false;
    if (param.dtype != io::DType::F32)
      return fail(where, std::string("dtype ") + io::dtypeName(param.dtype) +
                             " is not supported; parameters are F32");
    std::optional<InitKind> known = parseInitKind(kind);
    if (!known)
      return fail(where, "unknown init kind '" + kind + "'");
    param.init.kind = *known;
    if (hasStddev(param.init.kind)) {
      if (!readNumber(*init, "stddev", where + " init", param.init.stddev))
        return false;
      if (!(param.init.stddev >= 0))
        return fail(where, "init stddev must not be negative");
    }
    if (array[i].contains("shard") && !parseShard(array[i], where, param))
      return false;
    out.push_back(std::move(param));
  }
  return true;
}

bool PlanParser::parseShard(const json &entry, const std::string &where,
                            ParamInfo &param) {
  const json *shard;
  int64_t axis;
  io::DType dtype;
  int64_t numel, bytes;
  json global = {{"shape", entry.value("global_shape", json())},
                 {"dtype", "F32"}};
  if (!readObject(entry, "shard", where, shard) ||
      !readInt(*shard, "axis", where + " shard", axis) ||
      !readString(*shard, "mesh_axis", where + " shard", param.shardGroup) ||
      !readTensorType(global, where + " global", param.globalShape, dtype,
                      numel, bytes))
    return false;
  int64_t size = param.shardGroup == "ep"    ? plan.mesh.ep
                 : param.shardGroup == "edp" ? plan.mesh.dp
                                             : 0;
  if (axis != 0 || size == 0)
    return fail(where, "shards only axis 0 over 'ep' or 'edp'");
  std::vector<int64_t> expected = param.shape;
  if (!expected.empty())
    expected[0] *= size;
  if (param.globalShape != expected)
    return fail(where, "global_shape " + describe(param.globalShape, dtype) +
                           " is not the " + std::to_string(size) +
                           " shards of " + describe(param.shape, dtype));
  return true;
}

bool PlanParser::parseOutputShard(const json &entry, const std::string &where,
                                  OutputInfo &output) {
  const json *shard;
  int64_t axis;
  if (!readObject(entry, "shard", where, shard) ||
      !readInt(*shard, "axis", where + " shard", axis) ||
      !readString(*shard, "mesh_axis", where + " shard", output.shardGroup))
    return false;
  if (plan.mesh.world() == 1)
    return fail(where, "a one-process plan's outputs have no shard");
  if (axis != 0 || (output.shardGroup != "world" && output.shardGroup != "ep"))
    return fail(where, "shards only axis 0 over 'world' or 'ep'");
  if (plan.values[output.value].shape.empty())
    return fail(where, "a scalar cannot be sharded");
  return true;
}

bool PlanParser::parseTraining(const json &root) {
  if (!root.contains("training"))
    return true;
  const json *training, *state;
  TrainingInfo info;
  if (!readObject(root, "training", "", training) ||
      !readNumber(*training, "learning_rate", "training", info.learningRate) ||
      !readInt(*training, "warmup_steps", "training", info.warmupSteps) ||
      !readInt(*training, "total_steps", "training", info.totalSteps) ||
      (training->contains("gradient_accumulation_steps") &&
       !readInt(*training, "gradient_accumulation_steps", "training",
                info.microSteps)) ||
      !readOptionalNumber(*training, "b1", info.adamw.b1) ||
      !readOptionalNumber(*training, "b2", info.adamw.b2) ||
      !readOptionalNumber(*training, "eps", info.adamw.eps) ||
      !readOptionalNumber(*training, "weight_decay", info.adamw.weightDecay) ||
      !readOptionalNumber(*training, "clip_grad_norm", info.clipGradNorm) ||
      !readArray(root, "state", "", state) ||
      !parseTensorTable(*state, "state", plan.state))
    return false;
  if (!(info.learningRate >= 0) || info.warmupSteps < 0 ||
      info.totalSteps <= info.warmupSteps)
    return fail("training", "the schedule needs learning_rate >= 0, "
                            "warmup_steps >= 0 and total_steps > "
                            "warmup_steps");
  if (info.microSteps < 1)
    return fail("training", "gradient_accumulation_steps must be at least 1, "
                            "not " +
                                std::to_string(info.microSteps));
  plan.training = info;
  return true;
}

bool PlanParser::parseInputs(const json &array) {
  std::set<std::string> names;
  for (size_t i = 0; i < array.size(); ++i) {
    std::string where = "inputs[" + std::to_string(i) + "]";
    InputInfo input;
    int64_t bytes;
    if (!array[i].is_object())
      return fail(where, "must be an object");
    if (!readString(array[i], "name", where, input.name))
      return false;
    where += " '" + input.name + "'";
    if (!names.insert(input.name).second)
      return fail(where, "the input name is used twice");
    if (!readTensorType(array[i], where, input.shape, input.dtype, input.numel,
                        bytes))
      return false;
    if (input.dtype != io::DType::I32 && input.dtype != io::DType::F32)
      return fail(where, std::string("dtype ") + io::dtypeName(input.dtype) +
                             " is not supported; inputs are I32 or F32");
    auto optional = array[i].find("optional");
    if (optional != array[i].end()) {
      if (!optional->is_boolean())
        return fail(where, "'optional' must be a boolean");
      input.optional = optional->get<bool>();
    }
    plan.inputs.push_back(std::move(input));
  }
  return true;
}

bool PlanParser::parseValues(const json &array) {
  for (size_t i = 0; i < array.size(); ++i) {
    std::string where = "values[" + std::to_string(i) + "]";
    ValueInfo value;
    std::string storage;
    if (!array[i].is_object())
      return fail(where, "must be an object");
    if (!readTensorType(array[i], where, value.shape, value.dtype, value.numel,
                        value.bytes) ||
        !readString(array[i], "storage", where, storage))
      return false;
    // A key this runtime does not know may carry a meaning it would ignore.
    const char *placement = storage == "arena" ? "offset" : "index";
    for (auto it = array[i].begin(); it != array[i].end(); ++it)
      if (it.key() != "shape" && it.key() != "dtype" && it.key() != "storage" &&
          it.key() != placement)
        return fail(where, "unknown key '" + it.key() + "'");
    std::string type = describe(value.shape, value.dtype);
    if (value.dtype == io::DType::BF16 && plan.precision != "bf16")
      return fail(where, "value " + type + " is BF16 in an " + plan.precision +
                             " plan");
    if (storage == "param" || storage == "state" || storage == "input") {
      value.storage = storage == "param"   ? StorageKind::Param
                      : storage == "state" ? StorageKind::State
                                           : StorageKind::Input;
      if (!readInt(array[i], "index", where, value.index))
        return false;
      size_t count = storage == "param"   ? plan.params.size()
                     : storage == "state" ? plan.state.size()
                                          : plan.inputs.size();
      if (value.index < 0 || static_cast<size_t>(value.index) >= count)
        return fail(where, storage + " value refers to " + storage + " " +
                               std::to_string(value.index) +
                               " but the plan has " + std::to_string(count) +
                               " " + storage +
                               (storage == "state" ? " tensors" : "s"));
      auto viewed = [&](const auto &info) {
        return std::make_tuple(info.name, info.numel, info.dtype, info.shape);
      };
      auto [name, numel, dtype, shape] =
          storage == "param"   ? viewed(plan.params[value.index])
          : storage == "state" ? viewed(plan.state[value.index])
                               : viewed(plan.inputs[value.index]);
      // A value over a parameter or input is the tensor itself or a reshape.
      if (numel != value.numel || dtype != value.dtype)
        return fail(where, storage + " value " + type + " does not view " +
                               storage + " '" + name + "' " +
                               describe(shape, dtype) +
                               ": element counts or dtypes differ");
    } else if (storage == "arena") {
      value.storage = StorageKind::Arena;
      if (!readInt(array[i], "offset", where, value.offset))
        return false;
      if (value.offset < 0 || value.offset % kArenaAlignment != 0)
        return fail(where, "arena value " + type + " has offset " +
                               std::to_string(value.offset) +
                               ", which is not a non-negative multiple of " +
                               std::to_string(kArenaAlignment));
      int64_t end;
      if (__builtin_add_overflow(value.offset, value.bytes, &end) ||
          end > plan.arenaBytes)
        return fail(where, "arena value " + std::to_string(i) + " " + type +
                               " at offset " + std::to_string(value.offset) +
                               " ends past arena_bytes " +
                               std::to_string(plan.arenaBytes));
    } else {
      return fail(where, "unknown storage '" + storage +
                             "' (expected param, state, input or arena)");
    }
    plan.values.push_back(std::move(value));
  }
  return true;
}

bool PlanParser::parseSteps(const json &array) {
  for (size_t i = 0; i < array.size(); ++i)
    if (!parseStep(array[i], i))
      return false;
  return true;
}

bool PlanParser::parseStep(const json &entry, size_t index) {
  std::string where = "steps[" + std::to_string(index) + "]";
  Step step;
  std::string kernel;
  if (!entry.is_object())
    return fail(where, "must be an object");
  if (!readString(entry, "kernel", where, kernel))
    return false;
  const KernelInfo *info = findKernel(kernel);
  if (!info)
    return fail(where, "unknown kernel '" + kernel + "'");
  step.kernel = info->kernel;
  where += " (" + kernel + ")";

  const json *operands, *results, *attrs;
  if (!readArray(entry, "operands", where, operands) ||
      !readArray(entry, "results", where, results) ||
      !readObject(entry, "attrs", where, attrs))
    return false;
  // Operands may be -1 (absent) where the kernel allows it; results may not.
  auto readIds = [&](const json &ids, bool areOperands,
                     std::vector<int64_t> &out) {
    const char *what = areOperands ? "operand" : "result";
    bool variadic = areOperands && info->isVariadic();
    size_t expected =
        areOperands ? info->operands.size() : info->results.size();
    if (variadic ? ids.empty() : ids.size() != expected)
      return fail(where, "has " + std::to_string(ids.size()) + " " + what +
                             "s but the kernel takes " +
                             (variadic ? std::string("at least one")
                                       : std::to_string(expected)));
    for (size_t i = 0; i < ids.size(); ++i) {
      const KernelValue &value =
          areOperands ? info->operand(i) : info->result(i);
      std::string role = std::string(what) + " " + std::to_string(i);
      if (!ids[i].is_number_integer() || tooLarge(ids[i]))
        return fail(where, role + " must be an integer value id, not " +
                               ids[i].dump());
      int64_t id = ids[i].get<int64_t>();
      bool absent = areOperands && id == -1;
      if (absent && !value.optional)
        return fail(where, role + " (" + std::string(value.name) +
                               ") is absent (-1) but the kernel needs it");
      if (!absent && (id < 0 || static_cast<size_t>(id) >= plan.values.size()))
        return fail(where, role + " refers to value " + std::to_string(id) +
                               " but the plan has " +
                               std::to_string(plan.values.size()) + " values");
      out.push_back(id);
    }
    return true;
  };
  if (!readIds(*operands, true, step.operands) ||
      !readIds(*results, false, step.results))
    return false;

  for (auto it = attrs->begin(); it != attrs->end(); ++it) {
    const KernelAttribute *attribute = info->findAttribute(it.key());
    if (!attribute)
      return fail(where, "unknown attribute '" + it.key() + "'");
    std::optional<AttrValue> value = readAttribute(*attribute, it.value());
    if (!value)
      return fail(where, "attribute '" + it.key() + "' must be " +
                             describeAllowed(*attribute) + ", not " +
                             it.value().dump());
    step.attrs[it.key()] = std::move(*value);
  }
  for (const KernelAttribute &attribute : info->attributes)
    if (!attribute.optional && !step.attrs.count(std::string(attribute.name)))
      return fail(where,
                  "missing attribute '" + std::string(attribute.name) + "'");
  if (!checkStepValues(step, where))
    return false;
  plan.steps.push_back(std::move(step));
  return true;
}

bool PlanParser::checkStepValues(const Step &step, const std::string &where) {
  auto range = [&](int64_t id) {
    const ValueInfo &value = plan.values[id];
    return "value " + std::to_string(id) + " at arena bytes [" +
           std::to_string(value.offset) + ", " +
           std::to_string(value.offset + value.bytes) + ")";
  };
  auto overlap = [&](int64_t a, int64_t b) {
    const ValueInfo &x = plan.values[a], &y = plan.values[b];
    return x.storage == StorageKind::Arena && y.storage == StorageKind::Arena &&
           x.bytes > 0 && y.bytes > 0 && x.offset < y.offset + y.bytes &&
           y.offset < x.offset + x.bytes;
  };
  auto storageName = [](StorageKind kind) {
    switch (kind) {
    case StorageKind::Param:
      return "a parameter";
    case StorageKind::State:
      return "optimizer state";
    case StorageKind::Input:
      return "an input";
    case StorageKind::Arena:
      return "an arena buffer";
    }
    return "unknown";
  };
  for (size_t r = 0; r < step.results.size(); ++r) {
    int64_t id = step.results[r];
    StorageKind storage = plan.values[id].storage;
    bool persistent =
        storage == StorageKind::Param || storage == StorageKind::State;
    bool state = step.info().result(r).state;
    if (state ? !persistent : storage != StorageKind::Arena)
      return fail(where, "result " + std::to_string(r) + " writes value " +
                             std::to_string(id) + ", which is " +
                             storageName(storage) +
                             (state ? "; this kernel updates parameters or "
                                      "optimizer state in place"
                                    : "; results must live in the arena"));
    for (size_t o = 0; o < r; ++o)
      if (overlap(id, step.results[o]))
        return fail(where, "result " + std::to_string(r) + " (" + range(id) +
                               ") overlaps result " + std::to_string(o) + " (" +
                               range(step.results[o]) + ")");
    for (size_t o = 0; o < step.operands.size(); ++o)
      if (step.operands[o] >= 0 && !step.info().mayAlias(r, o) &&
          overlap(id, step.operands[o]))
        return fail(where, "result " + std::to_string(r) + " (" + range(id) +
                               ") overlaps operand " + std::to_string(o) +
                               " (" + range(step.operands[o]) + ")");
  }
  return true;
}

bool PlanParser::parseOutputs(const json &array) {
  std::set<std::string> names;
  for (size_t i = 0; i < array.size(); ++i) {
    std::string where = "outputs[" + std::to_string(i) + "]";
    OutputInfo output;
    if (!array[i].is_object())
      return fail(where, "must be an object");
    if (!readString(array[i], "name", where, output.name))
      return false;
    where += " '" + output.name + "'";
    if (!names.insert(output.name).second)
      return fail(where, "the output name is used twice");
    if (!readInt(array[i], "value", where, output.value))
      return false;
    if (output.value < 0 ||
        static_cast<size_t>(output.value) >= plan.values.size())
      return fail(where, "refers to value " + std::to_string(output.value) +
                             " but the plan has " +
                             std::to_string(plan.values.size()) + " values");
    if (array[i].contains("shard") && !parseOutputShard(array[i], where, output))
      return false;
    plan.outputs.push_back(std::move(output));
  }
  return true;
}

bool PlanParser::checkHeaderAgainstPlan() {
  if (plan.mode != "inference" && plan.mode != "train")
    return fail("", "unknown mode '" + plan.mode +
                        "' (expected inference or train)");
  if (plan.training && plan.mode != "train")
    return fail("",
                "an " + plan.mode + " plan must not have training settings");
  if (plan.vocabSize > 0 && (plan.padId < 0 || plan.padId >= plan.vocabSize))
    return fail("", "pad_id " + std::to_string(plan.padId) +
                        " is outside the vocabulary [0, " +
                        std::to_string(plan.vocabSize) + ")");
  if (plan.forwardSteps < 0 ||
      plan.forwardSteps > static_cast<int64_t>(plan.steps.size()))
    return fail("", "forward_steps " + std::to_string(plan.forwardSteps) +
                        " is outside [0, " + std::to_string(plan.steps.size()) +
                        "], the steps of the plan");
  // Each rank of a parallel plan holds its share of the batch.
  std::vector<int64_t> tokens = {plan.batch / plan.mesh.world(), plan.seq};
  for (size_t i = 0; i < plan.steps.size(); ++i) {
    const Step &step = plan.steps[i];
    if (step.kernel != Kernel::Embed)
      continue;
    std::string where = "steps[" + std::to_string(i) + "] (embed)";
    // Operands of another rank are the kernel's to refuse, with its message.
    const ValueInfo &ids = plan.values[step.operands[0]];
    const ValueInfo &word = plan.values[step.operands[2]];
    if (ids.shape.size() == 2 && ids.shape != tokens)
      return fail(where, "token ids " + io::formatShape(ids.shape) +
                             " are not [batch, seq] " +
                             io::formatShape(tokens));
    if (word.shape.size() == 2 && word.shape[0] != plan.vocabSize)
      return fail(where, "word embeddings " + io::formatShape(word.shape) +
                             " do not have vocab_size " +
                             std::to_string(plan.vocabSize) + " rows");
  }
  return true;
}

bool PlanParser::checkDefinedBeforeUse() {
  // Byte ranges of the arena written so far: start -> (end, the arena offset
  // of the buffer that wrote them). Views of one buffer share its offset.
  std::map<int64_t, std::pair<int64_t, int64_t>> written;
  auto write = [&](const ValueInfo &value) {
    int64_t begin = value.offset, end = value.offset + value.bytes;
    auto it = written.lower_bound(begin);
    if (it != written.begin() && std::prev(it)->second.first > begin)
      --it;
    std::vector<std::pair<int64_t, std::pair<int64_t, int64_t>>> kept;
    while (it != written.end() && it->first < end) {
      auto [start, range] = *it;
      if (start < begin)
        kept.push_back({start, {begin, range.second}});
      if (range.first > end)
        kept.push_back({end, range});
      it = written.erase(it);
    }
    for (const auto &entry : kept)
      written.insert(entry);
    written[begin] = {end, value.offset};
  };
  auto defined = [&](const ValueInfo &value) {
    int64_t at = value.offset, end = value.offset + value.bytes;
    auto it = written.upper_bound(at);
    if (it == written.begin())
      return at >= end;
    --it;
    while (at < end) {
      if (it == written.end() || it->first > at || it->second.first <= at ||
          it->second.second != value.offset)
        return false;
      at = it->second.first;
      ++it;
    }
    return true;
  };
  auto check = [&](int64_t id, const std::string &where,
                   const std::string &role) {
    const ValueInfo &value = plan.values[id];
    if (value.storage != StorageKind::Arena || value.bytes == 0 ||
        defined(value))
      return true;
    return fail(where, role + " reads value " + std::to_string(id) + " " +
                           describe(value.shape, value.dtype) +
                           " at arena offset " + std::to_string(value.offset) +
                           ", which no earlier step wrote");
  };
  for (size_t i = 0; i < plan.steps.size(); ++i) {
    const Step &step = plan.steps[i];
    std::string where = "steps[" + std::to_string(i) + "] (" +
                        std::string(step.info().name) + ")";
    for (size_t o = 0; o < step.operands.size(); ++o)
      if (step.operands[o] >= 0 &&
          !check(step.operands[o], where, "operand " + std::to_string(o)))
        return false;
    for (int64_t id : step.results)
      if (plan.values[id].storage == StorageKind::Arena)
        write(plan.values[id]);
  }
  for (size_t i = 0; i < plan.outputs.size(); ++i)
    if (!check(plan.outputs[i].value,
               "outputs[" + std::to_string(i) + "] '" + plan.outputs[i].name +
                   "'",
               "the output"))
      return false;
  return true;
}

bool PlanParser::checkExpertLayouts() {
  // The kernel of the step that wrote each value.
  std::map<int64_t, Kernel> producers;
  for (size_t i = 0; i < plan.steps.size(); ++i) {
    const Step &step = plan.steps[i];
    bool capacity =
        (step.kernel == Kernel::Experts ||
         step.kernel == Kernel::ExpertsGrad) &&
        std::get<std::string>(step.attrs.at("layout")) == "capacity";
    if (capacity) {
      int64_t offsets = step.operands[2];
      auto producer = producers.find(offsets);
      if (producer == producers.end() ||
          (producer->second != Kernel::RouteExpertsChoose &&
           producer->second != Kernel::RouteTokensChoose))
        return fail("steps[" + std::to_string(i) + "] (" +
                        std::string(step.info().name) + ")",
                    "the capacity layout needs the offsets of "
                    "route_experts_choose or route_tokens_choose, but value " +
                        std::to_string(offsets) + " is " +
                        (producer == producers.end()
                             ? std::string("not a step's result")
                             : "a result of " +
                                   std::string(kernelName(producer->second))));
    }
    for (int64_t id : step.results)
      producers[id] = step.kernel;
  }
  return true;
}

} // namespace

Expected<Plan> Plan::fromJson(const std::string &text,
                              const std::string &path) {
  json root = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded())
    return Status::error(path + ": the plan header is not valid JSON");
  Plan plan;
  plan.path = path;
  PlanParser parser(plan);
  if (!parser.parse(root))
    return parser.takeError();
  return plan;
}

Expected<Plan> Plan::load(const std::string &path) {
  Expected<io::Container> container = io::readContainer(path);
  if (!container)
    return container.takeStatus();
  return fromJson(container->header, path);
}

int64_t Plan::findInput(const std::string &name) const {
  for (size_t i = 0; i < inputs.size(); ++i)
    if (inputs[i].name == name)
      return i;
  return -1;
}

int64_t Plan::findOutput(const std::string &name) const {
  for (size_t i = 0; i < outputs.size(); ++i)
    if (outputs[i].name == name)
      return i;
  return -1;
}

int64_t Plan::numParameterElements() const {
  int64_t total = 0;
  for (const ParamInfo &param : params)
    total += param.numel;
  return total;
}

const char *initKindName(InitKind kind) {
  for (const auto &[known, name] : kInitKinds)
    if (known == kind)
      return name.data();
  return "unknown";
}

bool Plan::operator==(const Plan &other) const {
  return std::tie(path, formatVersion, compilerVersion, model, target,
                  precision, mode, batch, seq, padId, vocabSize, arenaBytes,
                  forwardSteps, heads, flops, mesh, commBytes, params, state,
                  training, inputs, outputs, values, steps) ==
         std::tie(other.path, other.formatVersion, other.compilerVersion,
                  other.model, other.target, other.precision, other.mode,
                  other.batch, other.seq, other.padId, other.vocabSize,
                  other.arenaBytes, other.forwardSteps, other.heads,
                  other.flops, other.mesh, other.commBytes, other.params,
                  other.state, other.training, other.inputs, other.outputs,
                  other.values, other.steps);
}

namespace {

const char *storageName(StorageKind storage) {
  switch (storage) {
  case StorageKind::Param:
    return "param";
  case StorageKind::State:
    return "state";
  case StorageKind::Input:
    return "input";
  case StorageKind::Arena:
    return "arena";
  }
  return "unknown";
}

/// A table of named f32 tensors with their init ("params", "state").
json tensorTable(const std::vector<ParamInfo> &table) {
  json out = json::array();
  for (const ParamInfo &param : table) {
    json init = {{"kind", initKindName(param.init.kind)}};
    if (hasStddev(param.init.kind))
      init["stddev"] = param.init.stddev;
    json entry = {{"name", param.name},
                  {"shape", param.shape},
                  {"dtype", io::dtypeName(param.dtype)},
                  {"init", init}};
    if (!param.shardGroup.empty()) {
      entry["shard"] = {{"axis", 0}, {"mesh_axis", param.shardGroup}};
      entry["global_shape"] = param.globalShape;
    }
    out.push_back(entry);
  }
  return out;
}

} // namespace

std::string Plan::toJson(int indent) const {
  json valueTable = json::array();
  for (const ValueInfo &value : values) {
    json entry = {{"shape", value.shape},
                  {"dtype", io::dtypeName(value.dtype)},
                  {"storage", storageName(value.storage)}};
    if (value.storage == StorageKind::Arena)
      entry["offset"] = value.offset;
    else
      entry["index"] = value.index;
    valueTable.push_back(entry);
  }
  json inputTable = json::array();
  for (const InputInfo &input : inputs)
    inputTable.push_back({{"name", input.name},
                          {"shape", input.shape},
                          {"dtype", io::dtypeName(input.dtype)},
                          {"optional", input.optional}});
  json outputTable = json::array();
  for (const OutputInfo &output : outputs) {
    json entry = {{"name", output.name}, {"value", output.value}};
    if (!output.shardGroup.empty())
      entry["shard"] = {{"axis", 0}, {"mesh_axis", output.shardGroup}};
    outputTable.push_back(entry);
  }
  json stepTable = json::array();
  for (const Step &step : steps) {
    json attrs = json::object();
    for (const auto &[name, value] : step.attrs)
      std::visit([&, &name = name](const auto &v) { attrs[name] = v; }, value);
    stepTable.push_back({{"kernel", std::string(step.info().name)},
                         {"operands", step.operands},
                         {"results", step.results},
                         {"attrs", attrs}});
  }
  json root = {{"format_version", formatVersion},
               {"compiler_version", compilerVersion},
               {"model", model},
               {"target", target},
               {"precision", precision},
               {"mode", mode},
               {"batch", batch},
               {"seq", seq},
               {"pad_id", padId},
               {"vocab_size", vocabSize},
               {"arena_bytes", arenaBytes},
               {"forward_steps", forwardSteps},
               {"heads",
                {{"masked_lm", heads.maskedLm},
                 {"next_sentence", heads.nextSentence},
                 {"causal_lm", heads.causalLm},
                 {"classes", heads.classes}}},
               {"flops", flops},
               {"params", tensorTable(params)},
               {"inputs", inputTable},
               {"outputs", outputTable},
               {"values", valueTable},
               {"steps", stepTable}};
  if (training) {
    root["training"] = {{"learning_rate", training->learningRate},
                        {"warmup_steps", training->warmupSteps},
                        {"total_steps", training->totalSteps},
                        {"gradient_accumulation_steps", training->microSteps},
                        {"b1", training->adamw.b1},
                        {"b2", training->adamw.b2},
                        {"eps", training->adamw.eps},
                        {"weight_decay", training->adamw.weightDecay},
                        {"clip_grad_norm", training->clipGradNorm}};
    root["state"] = tensorTable(state);
  }
  // A parallel plan: its mesh and what each rank sends per run.
  if (mesh.world() > 1 || !commBytes.empty()) {
    root["mesh"] = {{"dp", mesh.dp}, {"ep", mesh.ep}, {"world", mesh.world()}};
    root["comm_bytes"] = commBytes;
  }
  return root.dump(indent);
}

} // namespace mixer::exec
